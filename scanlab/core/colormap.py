"""Colour maps for image exports and the report: the same published maps the screen uses.

The app draws maps with pyqtgraph's colour maps; the PNG export and the PDF report
must draw the same colours. pyqtgraph ships the published colour-map data as CSV
files (``pyqtgraph/colors/maps/``: matplotlib's perceptually uniform maps, CC0;
Google's turbo, Apache-2.0; Peter Kovesi's CET maps, CC-BY). Those files are read
here *without importing pyqtgraph* (core never imports Qt, and pyqtgraph pulls Qt
in): the package folder is located with :func:`importlib.util.find_spec`. The
colours are interpolated linearly between the file's evenly spaced stops, as
``pyqtgraph.colormap.get(name).getLookupTable`` does.

NaN (uncovered) pixels become fully transparent; the "no evidence" state is a grey
hatch drawn on top by :func:`hatch_no_evidence`.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np

from scanlab.core.errors import ScanLabError

#: Colour maps offered for continuous maps (reliability, unknown score), screen and print.
COLORMAPS = ("inferno", "viridis", "magma", "plasma", "cividis", "turbo", "CET-D1")
DEFAULT_COLORMAP = "inferno"


def _maps_folder() -> Path:
    """pyqtgraph's ``colors/maps`` folder, found without importing pyqtgraph."""
    spec = importlib.util.find_spec("pyqtgraph")
    if spec is None or not spec.submodule_search_locations:
        raise ScanLabError("pyqtgraph is not installed: its colour-map data are needed to draw maps")
    return Path(next(iter(spec.submodule_search_locations))) / "colors" / "maps"


@functools.lru_cache(maxsize=16)
def _stops(name: str) -> np.ndarray:
    """(N, 3) float RGB stops in 0..1 of a published colour map, in file order (value 0 first)."""
    if name not in COLORMAPS:
        raise ScanLabError(f"colour map {name!r}: not one of {', '.join(COLORMAPS)}")
    path = _maps_folder() / f"{name}.csv"
    rows = []
    try:
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line and not line.startswith(";"):
                rows.append([float(v) for v in line.split(",")[:3]])
    except (OSError, ValueError) as e:
        raise ScanLabError(f"{path}: colour-map data unreadable ({e})") from None
    if len(rows) < 2:
        raise ScanLabError(f"{path}: colour-map data has fewer than 2 colours")
    return np.asarray(rows, dtype=np.float64)


def lut(n: int = 256, name: str = DEFAULT_COLORMAP) -> np.ndarray:
    """(n, 3) uint8 lookup table of colour map ``name`` for values 0..1."""
    stops = _stops(name)
    pos = np.linspace(0.0, 1.0, len(stops))
    x = np.linspace(0.0, 1.0, n)
    rgb = np.stack([np.interp(x, pos, stops[:, c]) for c in range(3)], axis=1)
    return (rgb * 255).round().astype(np.uint8)


def colorize(values: np.ndarray, alpha: int = 255, name: str = DEFAULT_COLORMAP) -> np.ndarray:
    """(H, W) float map in [0, 1] with NaN -> (H, W, 4) uint8 RGBA, NaN transparent."""
    table = lut(256, name)
    v = np.nan_to_num(np.clip(values, 0.0, 1.0), nan=0.0)
    idx = np.round(v * 255).astype(np.intp)
    rgba = np.empty(values.shape + (4,), dtype=np.uint8)
    rgba[..., :3] = table[idx]
    rgba[..., 3] = np.where(np.isnan(values), 0, alpha).astype(np.uint8)
    return rgba


NO_EVIDENCE_GREY = (150, 150, 150)
NO_EVIDENCE_HATCH = (105, 105, 105)  # neutral stripes, only where no colour map is known
STRIPE_CANDIDATES = ((0, 190, 255), (255, 0, 255), (0, 255, 0), (255, 255, 255))


def no_evidence_stripe(table: np.ndarray) -> tuple[int, int, int]:
    """The stripe colour of the no-evidence hatching for a colour map: the candidate farthest from it.

    ``table`` is the (N, 3) colour table of the map drawn under the hatching; the
    result is the colour of :data:`STRIPE_CANDIDATES` whose nearest table entry is
    farthest away, so hatching never looks like a value of the map.
    """
    t = np.asarray(table, float)[:, :3]
    dist = [float(np.min(np.linalg.norm(t - np.asarray(c, float), axis=1))) for c in STRIPE_CANDIDATES]
    return STRIPE_CANDIDATES[int(np.argmax(dist))]


def stripe_for(name: str | None = DEFAULT_COLORMAP) -> tuple[int, int, int]:
    """The no-evidence stripe colour drawn over colour map ``name`` (None: the class colours).

    Screen, PNG export and report all take it from here, so the hatching is the same
    wherever the analyst sees it.
    """
    return no_evidence_stripe(class_colors(20) if name is None else lut(256, name))


NO_EVIDENCE_WORDS = "hatched (grey with coloured stripes): no evidence"


# categorical colours for per-region attribution (tab20-like; repeats past 20 classes)
_PALETTE = np.array([
    [31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189], [140, 86, 75],
    [227, 119, 194], [188, 189, 34], [23, 190, 207], [127, 127, 127], [174, 199, 232], [255, 187, 120],
    [152, 223, 138], [255, 152, 150], [197, 176, 213], [196, 156, 148], [247, 182, 210], [219, 219, 141],
    [158, 218, 229], [57, 59, 121],
], dtype=np.uint8)


def class_colors(n: int) -> np.ndarray:
    """(n, 3) uint8 distinct colours for class indices 0..n-1."""
    return _PALETTE[np.arange(n) % len(_PALETTE)]


def hatch_no_evidence(rgba: np.ndarray, mask: np.ndarray, period: int = 8,
                      stripe_colour: tuple[int, int, int] = NO_EVIDENCE_HATCH, base_alpha: int = 255) -> np.ndarray:
    """Paint ``mask`` pixels as grey with diagonal coloured stripes (the "no evidence" state), in place.

    The stripes are opaque; the grey between them has ``base_alpha`` (below 255 the
    scan shows through).
    """
    if not mask.any():
        return rgba
    yy, xx = np.nonzero(mask)
    stripe = ((yy + xx) % period) < 2
    rgba[yy, xx, :3] = np.where(stripe[:, None], stripe_colour, NO_EVIDENCE_GREY)
    rgba[yy, xx, 3] = np.where(stripe, 255, base_alpha)
    return rgba


def colorize_classes(index: np.ndarray, n_classes: int, alpha: int = 255) -> np.ndarray:
    """(H, W) int class indices (-1: none) -> RGBA; -1 transparent (callers hatch no-evidence)."""
    table = class_colors(n_classes)
    rgba = np.zeros(index.shape + (4,), dtype=np.uint8)
    ok = index >= 0
    rgba[ok, :3] = table[index[ok]]
    rgba[ok, 3] = alpha
    return rgba
