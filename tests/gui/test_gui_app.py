"""run_gui: the --screenshot path and the no-display fallback."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from scanlab.core.errors import ScanLabError
from scanlab.gui.app import run_gui

pytestmark = pytest.mark.gui


def test_screenshot_is_written_after_the_analysis(qapp, tmp_path, scan, tiny_model):
    out = tmp_path / "shot.png"
    assert run_gui([scan], screenshot=str(out), model=tiny_model) == 0
    img = np.asarray(Image.open(out).convert("RGB"))
    assert img.shape[0] >= 400 and img.shape[1] >= 600
    assert img.std() > 20, "blank screenshot"
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 500


def test_screenshot_of_a_pdf_waits_for_its_first_page(qapp, tmp_path, scan, tiny_model):
    """A PDF opens as one document per embedded image: the grab waits for page 1's analysis."""
    import zlib

    import pikepdf

    px = np.asarray(Image.open(scan).convert("RGB"))
    pdf = pikepdf.Pdf.new()
    for _ in range(2):
        s = pikepdf.Stream(pdf, zlib.compress(px.tobytes()))
        s.Type, s.Subtype, s.Filter = pikepdf.Name.XObject, pikepdf.Name.Image, pikepdf.Name.FlateDecode
        s.Width, s.Height, s.BitsPerComponent, s.ColorSpace = px.shape[1], px.shape[0], 8, pikepdf.Name.DeviceRGB
        page = pdf.add_blank_page(page_size=(px.shape[1], px.shape[0]))
        page.Resources = pikepdf.Dictionary(XObject=pikepdf.Dictionary({"/Im0": s}))
        page.Contents = pdf.make_stream(f"q {px.shape[1]} 0 0 {px.shape[0]} 0 0 cm /Im0 Do Q".encode())
    doc = tmp_path / "doc.pdf"
    pdf.save(doc)
    out = tmp_path / "shot.png"
    assert run_gui([str(doc)], screenshot=str(out), model=tiny_model) == 0  # 1: it grabbed before any analysis
    assert out.exists()


def test_screenshot_of_a_failed_analysis_returns_nonzero(qapp, tmp_path, tiny_model):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    out = tmp_path / "shot.png"
    assert run_gui([str(bad)], screenshot=str(out), model=tiny_model) != 0
    assert out.exists()


def test_no_display_raises_for_interactive_use(monkeypatch):
    for var in ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    with pytest.raises(ScanLabError, match="no display available"):
        run_gui([])


def test_overlay_is_visible_in_the_rendered_view(qtbot, window, scan):
    with qtbot.waitSignal(window.analysis_settled, timeout=30_000):
        window.open_paths([scan])
    window.controls.opacity_slider.setValue(100)
    qtbot.wait(50)
    with_overlay = np.asarray(Image.fromqimage(window.view.grab().toImage()).convert("RGB")).astype(
        int
    )
    window.controls.overlay_check.setChecked(False)
    qtbot.wait(50)
    without = np.asarray(Image.fromqimage(window.view.grab().toImage()).convert("RGB")).astype(int)
    changed = np.abs(with_overlay - without).sum(axis=2) > 30
    assert changed.mean() > 0.05, "the heatmap does not change the rendered view"
