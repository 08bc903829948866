"""Display pyramids for large scans (no Qt): what the view draws at each zoom.

pyqtgraph's ``autoDownsample`` re-averages the *full* scan on the GUI thread each
time the zoom crosses a factor of two (about 6 s for a 16 MP RGB scan on a laptop
CPU). Instead the worker thread builds 2x2 box-averaged levels once, and the view
draws the level whose pixels are closest to screen pixels (at most ~2x the pixels
on screen). The reliability map is smooth (box averages over >= 64 px), so it is
decimated by plain slicing, which is free.
"""

from __future__ import annotations

import math

import numpy as np

MIN_SIDE = 512
"""Stop halving once the longer side is at most this."""


def halve(pixels: np.ndarray) -> np.ndarray:
    """2x2 box average of an (M, N, C) uint8/uint16 image (odd last row/column dropped)."""
    h, w = pixels.shape[0] // 2 * 2, pixels.shape[1] // 2 * 2
    a = pixels[:h, :w]
    acc = np.uint16 if a.dtype == np.uint8 else np.uint32
    s = a[0::2, 0::2].astype(acc)
    s += a[1::2, 0::2]
    s += a[0::2, 1::2]
    s += a[1::2, 1::2]
    s += 2
    return (s >> 2).astype(pixels.dtype)


def build_pyramid(pixels: np.ndarray, min_side: int = MIN_SIDE) -> list[np.ndarray]:
    """Level 0 is ``pixels`` itself; level k is 2**k times smaller per side.

    Parameters
    ----------
    pixels : ndarray of shape (M, N, 3), uint8 or uint16
    min_side : int
        No level is made smaller than this on its longer side.

    Returns
    -------
    list of ndarray
    """
    levels = [pixels]
    while max(levels[-1].shape[:2]) > 2 * min_side:
        levels.append(halve(levels[-1]))
    return levels


def pick_level(image_px_per_screen_px: float, n_levels: int) -> int:
    """The coarsest level that still has at least one pixel per screen pixel."""
    if not math.isfinite(image_px_per_screen_px) or image_px_per_screen_px <= 1.0:
        return 0
    return int(min(n_levels - 1, max(0, math.floor(math.log2(image_px_per_screen_px)))))
