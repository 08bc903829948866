"""The two fields the copy-move detector works on: the noise residual and block features.

**Noise residual.** A digital copy carries the noise of its source pixel for pixel
(up to the re-compression after the edit); two glyphs printed once and scanned once
share their shape but not their noise. The residual ``r = g - box3x3(g)`` of the grey
image (8-bit levels) holds both noise and the edges of the content; to keep the
content out of the comparison, pixels whose local residual energy is more than
``EDGE_FACTOR`` times the page's noise level (glyph edges, halftone dots) get weight
0, clipped pixels too, and the rest is divided by the noise level and clipped to
+-3. The per-column and per-row means are then removed: a scanner's sensor column
pattern repeats down every row and its motor banding along every row, so without
this any two regions in the same columns would "share noise".

**Block features** (candidates for copies of textured content: glyphs, words, stamps).
On a grey image reduced to about ``WORK_PIXELS`` and blurred, every block of
``BLOCK`` x ``BLOCK`` work pixels on a stride-``STRIDE`` grid is described by its 4x4
grid of cell means, less the block mean, divided by the block's contrast. Such
low-frequency features survive JPEG re-compression, and small rotations (a few
degrees) or scalings (0.9-1.1) move them by a fraction of a cell; blocks without
contrast (blank paper) carry no feature and are left to the noise path.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from scanlab.core.io.imaging import full_scale

NOISE_FLOOR = 0.5  # 8-bit levels: local residual RMS below this is quantisation, not noise
EDGE_FACTOR = 3.0  # local residual RMS above this many noise levels: content, not noise
WORK_PIXELS = 1_500_000  # block features are computed on an image reduced to about this size
BLOCK = 16  # block side (work pixels)
STRIDE = 4  # block grid stride (work pixels)
MIN_CONTRAST = 6.0  # 8-bit levels (block std): below it a block is blank paper


def grey(image: np.ndarray) -> np.ndarray:
    """(H, W) float32 grey in 8-bit levels from uint8/uint16 (H, W[, C]) or float (C, H, W) in [0, 1]."""
    scale = np.float32(255.0 / full_scale(image.dtype))
    if image.ndim == 2:
        return image.astype(np.float32) * scale
    if np.issubdtype(image.dtype, np.floating):  # the engines' (3, H, W) layout
        return image.mean(axis=0, dtype=np.float32) * scale
    return image.mean(axis=2, dtype=np.float32) * scale


@dataclass
class Residual:
    """The normalised noise residual of a scan and its weights."""

    field: np.ndarray  # (H, W) float32: normalised residual (0 where weight is 0)
    weight: np.ndarray  # (H, W) bool: the pixel's residual is noise (not edge, not clipped)
    noise_level: float  # 8-bit levels: median local residual RMS


def residual(g: np.ndarray, top: float = 255.0, rows: bool = False, cols: bool = True, grid: bool = True, floor: float = NOISE_FLOOR) -> Residual:
    """Normalised noise residual of the grey image ``g`` (see module docstring)."""
    r = g - ndimage.uniform_filter(g, 3, mode="nearest")
    local = np.sqrt(ndimage.uniform_filter(r * r, 7, mode="nearest"))
    sample = local[::4, ::4]
    sample = sample[sample > 1e-3]
    sigma = float(np.median(sample)) if sample.size else 0.0
    if sigma <= 1e-3:
        z = np.zeros_like(g)
        return Residual(z, np.zeros(g.shape, bool), sigma)
    clipped = (g <= 0.0) | (g >= top - 1e-3)
    clipped = ndimage.maximum_filter(clipped, 3)
    weight = (local < EDGE_FACTOR * sigma) & (local >= floor) & ~clipped
    # JPEG's 8x8 grid: the residual next to a block edge is the step between two blocks'
    # quantised coefficients, the same wherever the content is alike; drop those rows/cols
    for axis in ((0, 1) if grid else ()):
        prof = np.abs(r).mean(axis=1 - axis)
        n8 = (len(prof) // 8) * 8
        if n8 >= 64:
            phase = prof[:n8].reshape(-1, 8).mean(axis=0)
            if phase.max() > 1.15 * np.median(phase):
                edge = int(np.argmax(phase))  # the step sits between positions edge and edge+1
                idx = np.arange(g.shape[axis]) % 8
                bad = (idx == edge) | (idx == (edge + 1) % 8)
                weight &= ~bad[:, None] if axis == 0 else ~bad[None, :]
    f = np.clip(r / np.float32(sigma), -3.0, 3.0) * weight
    # remove the sensor column pattern and the motor's row pattern (see module docstring)
    if cols:
        n = weight.sum(axis=0)
        f -= (f.sum(axis=0) / np.maximum(n, 1))[None, :] * weight
    if rows:
        n = weight.sum(axis=1)
        f -= (f.sum(axis=1) / np.maximum(n, 1))[:, None] * weight
    return Residual(f.astype(np.float32, copy=False), weight, sigma)


@dataclass
class BlockFeatures:
    """Features of the textured blocks of the work image."""

    factor: int  # full-resolution pixels per work pixel
    ys: np.ndarray  # block top-left rows (work pixels)
    xs: np.ndarray  # block top-left columns (work pixels)
    features: np.ndarray  # (n, 8) float32


def work_factor(h: int, w: int) -> int:
    """Integer reduction that brings an h x w scan to about ``WORK_PIXELS``."""
    return max(1, int(round(np.sqrt(h * w / WORK_PIXELS))))


def block_features(g: np.ndarray, stride: int = STRIDE) -> BlockFeatures:
    """Features of every textured block on the ``stride`` grid (see module docstring)."""
    f = work_factor(*g.shape)
    h, w = (g.shape[0] // f) * f, (g.shape[1] // f) * f
    work = g[:h, :w].reshape(h // f, f, w // f, f).mean(axis=(1, 3)) if f > 1 else g
    work = ndimage.gaussian_filter(work, 1.0)
    c = BLOCK // 4
    ii = _integral(work)
    ii2 = _integral(work * work)
    hh, ww = work.shape
    ys = np.arange(0, hh - BLOCK + 1, stride)
    xs = np.arange(0, ww - BLOCK + 1, stride)
    yy, xx = (a.ravel() for a in np.meshgrid(ys, xs, indexing="ij"))
    n = float(BLOCK * BLOCK)
    mean = _box_sum(ii, yy, xx, BLOCK) / n
    std = np.sqrt(np.maximum(_box_sum(ii2, yy, xx, BLOCK) / n - mean**2, 0.0))
    keep = std >= MIN_CONTRAST
    yk, xk, mk, sk = yy[keep], xx[keep], mean[keep], std[keep]
    offs = np.arange(4) * c
    # cell (i, j) of the block at (y, x): the c x c mean whose corner is (y + i c, x + j c)
    cy = (yk[:, None, None] + offs[None, :, None]).repeat(4, axis=2)
    cx = (xk[:, None, None] + offs[None, None, :]).repeat(4, axis=1)
    cells = _box_sum(ii, cy, cx, c) / float(c * c)
    feats = (cells.reshape(len(yk), 16) - mk[:, None]) / sk[:, None]
    # the 8 lowest 2-D DCT frequencies of the 4x4 cell grid (DC excluded): the k-d tree
    # is far faster in 8 dimensions than in 16, and these carry the block's shape
    feats = feats @ _DCT8
    return BlockFeatures(f, yk.astype(np.int32), xk.astype(np.int32), feats.astype(np.float32))


def _dct_basis() -> np.ndarray:
    n = np.arange(4)
    c = np.cos(np.pi * (2 * n[None, :] + 1) * n[:, None] / 8.0)  # c[u, x]
    c[0] /= np.sqrt(2.0)
    c *= np.sqrt(2.0 / 4.0)
    pairs = [(0, 1), (1, 0), (1, 1), (0, 2), (2, 0), (1, 2), (2, 1), (2, 2)]
    return np.stack([np.outer(c[u], c[v]).ravel() for u, v in pairs], axis=1).astype(np.float32)


_DCT8 = _dct_basis()  # (16, 8)


def _integral(a: np.ndarray) -> np.ndarray:
    ii = np.zeros((a.shape[0] + 1, a.shape[1] + 1))
    ii[1:, 1:] = a.cumsum(0, dtype=np.float64).cumsum(1)
    return ii


def _box_sum(ii: np.ndarray, y: np.ndarray, x: np.ndarray, k: int) -> np.ndarray:
    """Sums of the k x k boxes with top-left corners (y, x), from an integral image."""
    return ii[y + k, x + k] - ii[y, x + k] - ii[y + k, x] + ii[y, x]
