"""Which windows carry sensor evidence at all: the no-signal rule.

A scanner's traces (per-column sensor gain/offset, noise, banding) live in the
small fluctuations of the pixel values. Where the content is clipped (paper
white pushed to the maximum, saturated black) or flattened (uniform paper or
tint, smoothed by JPEG), those fluctuations are gone, and any class probability
the network returns there says nothing about the scanner. Such windows are left
out of the vote and out of the eq. (1) average (:mod:`scanlab.core.engine.reliability`);
maps draw them as "no evidence", never as low reliability.

The rule, per 64x64 window (both engines use it, it is computed from the pixels,
not from the network):

* the **noise residual** ``r = x - box3x3(x)`` of every channel, in 8-bit units
  (16-bit scans are scaled by 255/65535 first);
* the window's residual energy ``E = sqrt(mean(r^2))`` over its pixels and
  channels, and its **clipped fraction**: the share of pixels with any channel at
  0 or at the format maximum;
* the window has **no evidence** when ``E < MIN_RESIDUAL`` or the clipped
  fraction exceeds ``MAX_CLIPPED``.

The statistics are accumulated on 4x4-pixel cells (so a 100 MP scan needs a few
tens of MB, not a float copy of the scan); a window whose corner is not a
multiple of 4 uses the 16x16 cells starting at ``corner // 4``, i.e. the block
shifted by at most 3 px. The thresholds were set by measurement on the virtual
bank and on the real pages (BENCHMARKS.md, "No-signal rule").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scanlab.core.engine.network import PATCH
from scanlab.core.io.imaging import full_scale

CELL = 4
MIN_RESIDUAL = 0.3  # 8-bit levels (RMS of the 3x3 box residual); see BENCHMARKS.md
MAX_CLIPPED = 0.5  # fraction of pixels with a channel at 0 or at the maximum
_STRIP = 256  # rows per strip (a multiple of CELL): bounds the float working set


@dataclass(frozen=True)
class EvidenceRule:
    """Thresholds of the no-signal rule (defaults: the measured ones)."""

    min_residual: float = MIN_RESIDUAL
    max_clipped: float = MAX_CLIPPED

    def to_dict(self) -> dict[str, float]:
        """JSON form (recorded beside results)."""
        return {"min_residual": self.min_residual, "max_clipped": self.max_clipped, "cell": CELL}


DEFAULT_RULE = EvidenceRule()


def _layout(image: np.ndarray) -> tuple[bool, float, int, int]:
    """(channels_first, scale to 8-bit levels, H, W) of either image layout."""
    scale = 255.0 / full_scale(image.dtype)
    if np.issubdtype(image.dtype, np.floating):
        return True, scale, int(image.shape[1]), int(image.shape[2])
    return False, scale, int(image.shape[0]), int(image.shape[1])


def _strip(image: np.ndarray, r0: int, r1: int, channels_first: bool, scale: float) -> np.ndarray:
    """Rows [r0, r1) as float32 (3, rows, W) in 8-bit levels."""
    a = image[:, r0:r1] if channels_first else np.moveaxis(image[r0:r1], -1, 0)
    return np.asarray(a, dtype=np.float32) * np.float32(scale)


def _box3(x: np.ndarray) -> np.ndarray:
    """3x3 mean over the last two axes, edges replicated."""
    p = np.pad(x, ((0, 0), (1, 1), (1, 1)), mode="edge")
    v = p[:, :-2] + p[:, 1:-1] + p[:, 2:]
    return (v[:, :, :-2] + v[:, :, 1:-1] + v[:, :, 2:]) / np.float32(9.0)


def cell_statistics(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per 4x4 cell: sum of squared residuals (over channels) and clipped-pixel count.

    Parameters
    ----------
    image : ndarray
        float (3, H, W) in [0, 1] or the decoded uint8/uint16 (H, W, 3) scan.

    Returns
    -------
    (r2, clipped) : ndarrays of shape (H // 4, W // 4), float64
    """
    cf, scale, h, w = _layout(image)
    hc, wc = h // CELL, w // CELL
    top = 255.0
    r2 = np.zeros((hc, wc))
    clip = np.zeros((hc, wc))
    for c0 in range(0, hc, _STRIP // CELL):
        c1 = min(hc, c0 + _STRIP // CELL)
        r0, r1 = c0 * CELL, c1 * CELL
        # one row of halo each side so the box filter is exact inside the strip
        h0, h1 = max(0, r0 - 1), min(h, r1 + 1)
        x = _strip(image, h0, h1, cf, scale)
        res = (x - _box3(x))[:, r0 - h0 : r0 - h0 + (r1 - r0), : wc * CELL]
        e = (res.astype(np.float64) ** 2).sum(axis=0)
        xs = x[:, r0 - h0 : r0 - h0 + (r1 - r0), : wc * CELL]
        cl = ((xs <= 0.0) | (xs >= top - 1e-3)).any(axis=0).astype(np.float64)
        r2[c0:c1] = e.reshape(c1 - c0, CELL, wc, CELL).sum(axis=(1, 3))
        clip[c0:c1] = cl.reshape(c1 - c0, CELL, wc, CELL).sum(axis=(1, 3))
    return r2, clip


def _window_sums(cells: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Sum of the 16x16 cells of every window (corner rows ys x corner cols xs)."""
    k = PATCH // CELL
    ii = np.zeros((cells.shape[0] + 1, cells.shape[1] + 1))
    ii[1:, 1:] = cells.cumsum(0).cumsum(1)
    cy = np.asarray(ys, dtype=np.int64) // CELL
    cx = np.asarray(xs, dtype=np.int64) // CELL
    return ii[np.ix_(cy + k, cx + k)] - ii[np.ix_(cy, cx + k)] - ii[np.ix_(cy + k, cx)] + ii[np.ix_(cy, cx)]


def window_statistics(image: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Residual RMS (8-bit levels) and clipped fraction of the 64x64 windows at ``ys x xs``.

    Returns
    -------
    (energy, clipped) : ndarrays of shape (len(ys), len(xs))
    """
    r2, clip = cell_statistics(image)
    n = float(PATCH * PATCH)
    energy = np.sqrt(np.maximum(_window_sums(r2, ys, xs), 0.0) / (3.0 * n))  # cumsum rounding can dip below 0
    return energy, _window_sums(clip, ys, xs) / n


def window_evidence(
    image: np.ndarray, ys: np.ndarray, xs: np.ndarray, rule: EvidenceRule = DEFAULT_RULE
) -> np.ndarray:
    """True where the window at (ys[i], xs[j]) carries sensor evidence (see module docstring)."""
    energy, clipped = window_statistics(image, ys, xs)
    return (energy >= rule.min_residual) & (clipped <= rule.max_clipped)
