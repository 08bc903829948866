"""One colour map for screen, PNG export and report: the published data pyqtgraph ships."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from scanlab.core.colormap import (
    COLORMAPS,
    DEFAULT_COLORMAP,
    NO_EVIDENCE_GREY,
    NO_EVIDENCE_HATCH,
    colorize,
    lut,
    stripe_for,
)
from scanlab.core.errors import ScanLabError


@pytest.mark.parametrize("name", COLORMAPS)
def test_lut_is_the_screens_colour_map(name):
    """The same 256 colours as pyqtgraph's map of that name (what the app draws with)."""
    pg = pytest.importorskip("pyqtgraph")
    want = pg.colormap.get(name).getLookupTable(0.0, 1.0, 256, alpha=False)
    assert np.array_equal(lut(256, name), want)


def test_default_is_inferno_and_ends_are_inferno_ends():
    assert DEFAULT_COLORMAP == "inferno"
    t = lut()
    assert tuple(t[0]) == (0, 0, 4) and tuple(t[-1]) == (252, 255, 164)  # inferno's published end colours


def test_unknown_colour_map_is_a_clear_error():
    with pytest.raises(ScanLabError, match="not one of"):
        lut(256, "jet")


def test_colorize_nan_transparent_and_named_map():
    v = np.array([[0.0, 1.0, np.nan]])
    rgba = colorize(v, name="viridis")
    assert tuple(rgba[0, 0, :3]) == tuple(lut(256, "viridis")[0]) and rgba[0, 2, 3] == 0


def test_report_overlay_hatches_no_evidence_like_the_screen():
    from scanlab.services import report_figures as figs

    rel = np.full((32, 32), 0.8, np.float32)
    mask = np.zeros((32, 32), bool)
    mask[:, 16:] = True
    rel[mask] = np.nan
    img = np.asarray(figs.overlay(None, rel, opacity=1.0, no_evidence=mask))
    right = {tuple(p) for p in img[:, 16:].reshape(-1, 3)}
    # grey with the stripes the screen draws over this colour map (core.colormap.stripe_for)
    assert right <= {NO_EVIDENCE_GREY, stripe_for()} and len(right) == 2
    assert tuple(img[0, 0]) == tuple(lut()[round(0.8 * 255)])
    bar = np.asarray(figs.colorbar(400, 150, cmap="viridis"))
    col = bar[20:300, 30]  # inside the colour strip
    assert tuple(lut(256, "viridis")[-1]) in {tuple(p) for p in col}
    assert (bar.reshape(-1, 3) == stripe_for("viridis")).all(axis=1).any()  # the legend swatch, same stripes
    assert not (bar.reshape(-1, 3) == NO_EVIDENCE_HATCH).all(axis=1).any()  # never the neutral grey stripes


def test_screen_png_export_and_report_draw_the_same_no_evidence_stripes():
    from scanlab.services.exports import render_png

    v = np.full((16, 16), 0.5, np.float32)
    mask = np.zeros((16, 16), bool)
    mask[:, 8:] = True
    for name in ("inferno", "cividis", "viridis"):
        png = np.asarray(Image.open(io.BytesIO(render_png(v, "reliability", mask, None, name))))[:, :, :3]
        assert stripe_for(name) in {tuple(p) for p in png[:, 8:].reshape(-1, 3)}


def test_png_export_uses_the_chosen_colour_map():
    from scanlab.services.exports import render_png

    v = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    for name in ("inferno", "cividis"):
        png = np.asarray(Image.open(io.BytesIO(render_png(v, "reliability", None, None, name))))
        assert tuple(png[0, 0, :3]) == tuple(lut(256, name)[0])
