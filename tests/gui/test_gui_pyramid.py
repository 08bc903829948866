"""Display pyramid and the view's level/crop choice for large scans."""

from __future__ import annotations

import numpy as np
import pytest

from scanlab.gui.pyramid import build_pyramid, halve, pick_level

pytestmark = pytest.mark.gui


def test_halve_is_a_rounded_box_average():
    a = np.array([[[0], [2]], [[4], [7]]], dtype=np.uint8)
    assert halve(a)[0, 0, 0] == 3  # (0+2+4+7)/4 = 3.25
    big = np.full((4, 6, 3), 65535, dtype=np.uint16)
    assert halve(big).max() == 65535  # no overflow for 16-bit scans


def test_pyramid_levels_and_choice():
    px = np.zeros((3000, 2000, 3), dtype=np.uint8)
    levels = build_pyramid(px)
    assert levels[0] is px
    assert [lv.shape[:2] for lv in levels] == [(3000, 2000), (1500, 1000), (750, 500)]
    assert pick_level(0.5, 3) == 0
    assert pick_level(1.9, 3) == 0
    assert pick_level(2.0, 3) == 1
    assert pick_level(100.0, 3) == 2


@pytest.mark.gui
def test_view_draws_a_level_when_zoomed_out_and_a_crop_at_one_to_one(qtbot, gui_settings):
    from scanlab.gui.scan_view import ScanView

    view = ScanView()
    qtbot.addWidget(view)
    view.resize(600, 500)
    view.show()
    px = np.random.default_rng(0).integers(0, 255, (2400, 2400, 3), dtype=np.uint8)
    rel = np.random.default_rng(1).random((2400, 2400), dtype=np.float32)
    view.set_scan(px)
    view.set_map(rel)
    assert view.base.image.shape[0] < 2400  # zoomed out: a coarser level
    assert view.heat.image.shape == view.base.image.shape[:2]
    view.actual_size()
    assert view._level == 0
    assert view.base.image.shape[0] < 2400 and view.base.image.shape[1] < 2400  # a crop
    r0, _, c0, _ = view._crop
    np.testing.assert_array_equal(view.base.image[0, 0], px[r0, c0])
    np.testing.assert_array_equal(view.heat.image[0, 0], rel[r0, c0])
