"""Block features for the copy-move candidates, and the grey image they are computed on.

**Block features** (candidates for copies of textured content: glyphs, words, stamps).
On a grey image reduced to about ``WORK_PIXELS`` and blurred, every block of
``BLOCK`` x ``BLOCK`` work pixels on a grid of the caller's stride is described by its 4x4
grid of cell means, less the block mean, divided by the block's contrast. Such
low-frequency features survive JPEG re-compression, and small rotations (a few
degrees) or scalings (0.9-1.1) move them by a fraction of a cell; blocks without
contrast (blank paper) carry no feature and are not examined.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from scanlab.core.io.imaging import full_scale

WORK_PIXELS = 600_000  # block features are computed on an image reduced to about this size
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
    ii = integral_image(work)
    ii2 = integral_image(work * work)
    hh, ww = work.shape
    ys = np.arange(0, hh - BLOCK + 1, stride)
    xs = np.arange(0, ww - BLOCK + 1, stride)
    yy, xx = (a.ravel() for a in np.meshgrid(ys, xs, indexing="ij"))
    n = float(BLOCK * BLOCK)
    mean = box_sum(ii, yy, xx, BLOCK) / n
    std = np.sqrt(np.maximum(box_sum(ii2, yy, xx, BLOCK) / n - mean**2, 0.0))
    keep = std >= MIN_CONTRAST
    yk, xk, mk, sk = yy[keep], xx[keep], mean[keep], std[keep]
    offs = np.arange(4) * c
    # cell (i, j) of the block at (y, x): the c x c mean whose corner is (y + i c, x + j c)
    cy = (yk[:, None, None] + offs[None, :, None]).repeat(4, axis=2)
    cx = (xk[:, None, None] + offs[None, None, :]).repeat(4, axis=1)
    cells = box_sum(ii, cy, cx, c) / float(c * c)
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


def integral_image(a: np.ndarray) -> np.ndarray:
    ii = np.zeros((a.shape[0] + 1, a.shape[1] + 1))
    ii[1:, 1:] = a.cumsum(0, dtype=np.float64).cumsum(1)
    return ii


def box_sum(ii: np.ndarray, y: np.ndarray, x: np.ndarray, k: int) -> np.ndarray:
    """Sums of the k x k boxes with top-left corners (y, x), from an integral image."""
    return ii[y + k, x + k] - ii[y, x + k] - ii[y + k, x] + ii[y, x]
