"""Sub-image grids, zig-zag order and training patches.

Conventions: arrays are (row, col); a sub-image is n rows x m cols; its position
is its top-left corner. A sub-image of size n > 64 is represented by the 64x64
*windows* inside it on a grid of step ``WINDOW_STEP`` (= 4, the network's dense
stride) anchored at the sub-image's corner: offsets 0, 4, 8, ..., <= n - 64.
P(sub-image) is the mean of those windows' class probabilities (a deterministic
definition the naive and dense engines share).
"""

from __future__ import annotations

import numpy as np

from scanlab.core.engine.network import PATCH, STRIDE

WINDOW_STEP = STRIDE

Size = tuple[int, int]


def as_pair(v: int | tuple[int, int] | list[int]) -> Size:
    """``64`` -> (64, 64); ``(128, 96)`` stays."""
    if isinstance(v, (tuple, list)):
        a, b = v
        return int(a), int(b)
    return int(v), int(v)


def parse_size(text: str) -> Size:
    """Parse ``"64"`` or ``"128x96"`` (rows x cols)."""
    t = text.lower().replace(" ", "")
    parts = t.split("x") if "x" in t else [t, t]
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise ValueError(f"bad size {text!r}: expected N or NxM")
    return int(parts[0]), int(parts[1])


def validate_grid(shape: Size, sub: Size, stride: Size) -> None:
    """Raise ValueError with a one-line reason for an impossible sub-image grid."""
    h, w = shape
    n, m = sub
    if n < PATCH or m < PATCH:
        raise ValueError(f"sub-image size {n}x{m} is smaller than the {PATCH}x{PATCH} patch")
    if stride[0] < 1 or stride[1] < 1:
        raise ValueError(f"stride {stride[0]}x{stride[1]} must be at least 1")
    if n > h or m > w:
        raise ValueError(f"sub-image {n}x{m} is larger than the image ({h}x{w})")


def grid_positions(length: int, size: int, step: int) -> np.ndarray:
    """Corners 0, step, 2*step, ... of windows of ``size`` that fit in ``length``."""
    if size > length:
        return np.zeros(0, dtype=np.int64)
    return np.arange(0, length - size + 1, step, dtype=np.int64)


def subimage_grid(shape: Size, sub: Size, stride: Size) -> tuple[np.ndarray, np.ndarray]:
    """Row and column corners of the sub-image grid (a separable grid)."""
    validate_grid(shape, sub, stride)
    return grid_positions(shape[0], sub[0], stride[0]), grid_positions(shape[1], sub[1], stride[1])


def window_offsets(size: int) -> np.ndarray:
    """Offsets of the 64-px windows inside a sub-image side of ``size``."""
    return np.arange(0, size - PATCH + 1, WINDOW_STEP, dtype=np.int64)


def zigzag(ny: int, nx: int) -> np.ndarray:
    """Boustrophedon order of an ny x nx grid: row 0 left to right, row 1 right to left...

    Returns an (ny*nx, 2) int array of (row, col) grid indices.
    """
    out = np.empty((ny * nx, 2), dtype=np.int64)
    k = 0
    for r in range(ny):
        cols = range(nx) if r % 2 == 0 else range(nx - 1, -1, -1)
        for c in cols:
            out[k] = (r, c)
            k += 1
    return out


def training_patch_corners(
    shape: Size, sub: Size, rng: np.random.Generator
) -> np.ndarray:
    """One random 64x64 patch corner inside each non-overlapping sub-image, zig-zag order.

    Returns an (N, 2) int array of (row, col) pixel corners.
    """
    n, m = sub
    ys = grid_positions(shape[0], n, n)
    xs = grid_positions(shape[1], m, m)
    order = zigzag(len(ys), len(xs))
    dy = rng.integers(0, n - PATCH + 1, size=len(order))
    dx = rng.integers(0, m - PATCH + 1, size=len(order))
    return np.stack([ys[order[:, 0]] + dy, xs[order[:, 1]] + dx], axis=1)


def vote_grid(shape: Size, sub: Size) -> tuple[np.ndarray, np.ndarray]:
    """The non-overlapping sub-image grid used for the image vote."""
    return subimage_grid(shape, sub, sub)
