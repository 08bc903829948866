"""Reliability colour map for image exports (the GUI uses pyqtgraph's own maps).

The paper draws reliability 0 as dark blue and 1 as dark red; this is a
jet-like ramp through blue, cyan, yellow and red. NaN (uncovered) pixels become
fully transparent.
"""

from __future__ import annotations

import numpy as np

_STOPS = np.array([0.0, 0.125, 0.375, 0.625, 0.875, 1.0])
_COLORS = np.array(
    [[0, 0, 131], [0, 0, 255], [0, 255, 255], [255, 255, 0], [255, 0, 0], [128, 0, 0]], dtype=np.float64
)


def lut(n: int = 256) -> np.ndarray:
    """(n, 3) uint8 lookup table for values 0..1."""
    x = np.linspace(0, 1, n)
    return np.stack([np.interp(x, _STOPS, _COLORS[:, c]) for c in range(3)], axis=1).round().astype(np.uint8)


def colorize(values: np.ndarray, alpha: int = 255) -> np.ndarray:
    """(H, W) float map in [0, 1] with NaN -> (H, W, 4) uint8 RGBA, NaN transparent."""
    table = lut()
    v = np.nan_to_num(np.clip(values, 0.0, 1.0), nan=0.0)
    idx = np.round(v * 255).astype(np.intp)
    rgba = np.empty(values.shape + (4,), dtype=np.uint8)
    rgba[..., :3] = table[idx]
    rgba[..., 3] = np.where(np.isnan(values), 0, alpha).astype(np.uint8)
    return rgba
