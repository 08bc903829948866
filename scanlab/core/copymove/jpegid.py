"""JPEG-consistency test for copies in a page saved once at low JPEG quality (<= ``MAX_QUALITY``).

At JPEG 75 the re-save error at glyph edges is as large as the sub-pixel phase difference
between two prints of the same glyph, so ``q`` (:mod:`.dup`) of a copy is no lower than
the null's extremes. What a copy keeps is that its two ends are *one* region saved twice:
before the save, target and source were the same pixels ``x``, quantised on two 8x8 grid
phases (the displacement is not a multiple of 8). So there is an ``x`` whose DCT
coefficients fall in the target's quantisation cells on the target's grid *and* in the
source's cells on the source's grid. :func:`consistency` looks for it by alternating
projections (POCS) onto the two sets of cells, starting from the decoded target, and
counts the 8x8 content blocks of the target grid where the remaining violation is
small. Cells are read from the decoded luminance with the file's own table (the IJG
table of its estimated quality: :mod:`scanlab.core.io.jpegfacts`).

At JPEG 75 the cells are wide: many authentic repeats are consistent too, but only over
a few blocks (a glyph, a short word); a copied stamp or word is consistent over most of
its blocks. The bar (``api``) is therefore on the number of consistent blocks, relative to
the largest consistent repeat among the scan's other large candidates (:func:`select`). Chosen on dev
seeds 7, 11, 13, 17 (``benchmarks/copymove_jpeg_probe.py``; BENCHMARKS.md).
"""

from __future__ import annotations

import numpy as np
from scipy.fft import dctn, idctn

from scanlab.core.io.jpegfacts import ijg_table

MAX_QUALITY = 80  # the test runs on files saved at this JPEG quality or lower (above it, q works)
ITERS = 30  # alternating projections
CONTENT_STD = 8.0  # 8-bit levels: an 8x8 block with less is paper, not counted
BLOCK_OK = 0.5  # squared coefficient units: a block whose violation stays below this is consistent
MAX_SIDE = 384  # px: a candidate's window is cut to this (centred) to bound the cost on large scans
VOTES = 30  # matched blocks a candidate needs to be examined (and to enter the null)
MAX_Q = 0.3  # ... and its shift-test q at most this
MAX_CANDS = 32  # the most-voted candidates examined per scan
FRACTION = 0.95  # share of a candidate's content blocks that must be consistent
MIN_BLOCKS = 64  # consistent content blocks a reported candidate needs ...
RATIO = 4.0  # ... and this many times those of the largest consistent candidate at another displacement


def luma_table(quality: int) -> np.ndarray:
    """(8, 8) float: the IJG luminance table of ``quality``."""
    return ijg_table(quality).reshape(8, 8).astype(np.float64)


def luminance(image: np.ndarray) -> np.ndarray:
    """(H, W) float64 JFIF luminance in 8-bit levels of a uint8 (H, W, 3) or (H, W) image."""
    if image.ndim == 2:
        return image.astype(np.float64)
    return image[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def _grid(shape: tuple[int, int], oy: int, ox: int) -> tuple[int, int, int, int]:
    return oy, ox, (shape[0] - oy) // 8, (shape[1] - ox) // 8


def _coefs(x: np.ndarray, g: tuple[int, int, int, int]) -> np.ndarray:
    oy, ox, ny, nx = g
    return dctn(x[oy : oy + ny * 8, ox : ox + nx * 8].reshape(ny, 8, nx, 8) - 128.0, axes=(1, 3), norm="ortho")


def _project(x: np.ndarray, g: tuple[int, int, int, int], lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Project ``x`` (in place) onto the cells on grid ``g``; the squared violation per block before."""
    oy, ox, ny, nx = g
    c = _coefs(x, g)
    cc = np.clip(c, lo, hi)
    x[oy : oy + ny * 8, ox : ox + nx * 8] = (idctn(cc, axes=(1, 3), norm="ortho") + 128.0).reshape(ny * 8, nx * 8)
    return ((c - cc) ** 2).sum(axis=(1, 3))


def consistency(lum: np.ndarray, box: tuple[int, int, int, int], dy: int, dx: int, table: np.ndarray) -> tuple[int, int]:
    """(content blocks, consistent content blocks) of target ``box`` (y0, x0, y1, x1) with source at +(dy, dx).

    (0, 0) when the window holds no full block on either grid or no content.
    """
    h, w = lum.shape
    y0, x0, y1, x1 = box
    y0, x0 = max(y0, 0, -dy), max(x0, 0, -dx)
    y1, x1 = min(y1, h, h - dy), min(x1, w, w - dx)
    if y1 - y0 > MAX_SIDE:
        y0 = (y0 + y1 - MAX_SIDE) // 2
        y1 = y0 + MAX_SIDE
    if x1 - x0 > MAX_SIDE:
        x0 = (x0 + x1 - MAX_SIDE) // 2
        x1 = x0 + MAX_SIDE
    if y1 - y0 < 16 or x1 - x0 < 16:
        return 0, 0
    t = lum[y0:y1, x0:x1]
    s = lum[y0 + dy : y1 + dy, x0 + dx : x1 + dx]
    ga = _grid(t.shape, -y0 % 8, -x0 % 8)
    gb = _grid(t.shape, -(y0 + dy) % 8, -(x0 + dx) % 8)
    if min(ga[2], ga[3], gb[2], gb[3]) < 1:
        return 0, 0
    oy, ox, ny, nx = ga
    content = t[oy : oy + ny * 8, ox : ox + nx * 8].reshape(ny, 8, nx, 8).std(axis=(1, 3)) > CONTENT_STD
    if not content.any():
        return 0, 0
    q = table.reshape(1, 8, 1, 8)
    ka, kb = np.round(_coefs(t, ga) / q), np.round(_coefs(s, gb) / q)
    lo_a, hi_a, lo_b, hi_b = (ka - 0.5) * q, (ka + 0.5) * q, (kb - 0.5) * q, (kb + 0.5) * q
    x = t.copy()
    for _ in range(ITERS):
        _project(x, ga, lo_a, hi_a)
        _project(x, gb, lo_b, hi_b)
    v = _project(x, ga, lo_a, hi_a)
    return int(content.sum()), int((v[content] <= BLOCK_OK).sum())


def select(image: np.ndarray, quality: int, tested: list, dyx: np.ndarray, done: set) -> list[tuple[int, int, int, float]]:
    """Candidates of ``tested`` (:class:`.dup.DupCandidate`, displacements ``dyx``) that pass the test.

    The ``MAX_CANDS`` most-voted with ``VOTES`` or more votes and ``q <= MAX_Q`` whose
    displacement is not a multiple of 8 along both axes are examined (:func:`consistency`);
    one not in ``done`` (``id`` of the candidates already accepted) passes when ``FRACTION``
    of its content blocks are consistent, at least ``MIN_BLOCKS`` of them, and ``RATIO``
    times those of the largest consistent examined candidate at another displacement (the
    scan's own null of authentic repeats). Returns (index, consistent blocks, the null's
    largest, empirical p-value) per passing candidate.
    """
    idx = [i for i, c in enumerate(tested) if c.votes >= VOTES and c.q <= MAX_Q and (c.dy % 8 or c.dx % 8)]
    idx = sorted(idx, key=lambda i: -tested[i].votes)[:MAX_CANDS]
    if not idx:
        return []
    lum = luminance(image)
    table = luma_table(quality)
    res = {i: consistency(lum, tested[i].box, tested[i].dy, tested[i].dx, table) for i in idx}
    full = {i: k for i, (n, k) in res.items() if n and k >= FRACTION * n}
    out = []
    for i, k in full.items():
        if id(tested[i]) in done or k < MIN_BLOCKS:
            continue
        k0 = max((kk for j, kk in full.items() if np.abs(dyx[j] - dyx[i]).max() > 2), default=0)
        if k < RATIO * k0:
            continue
        n_null = sum(1 for j in res if np.abs(dyx[j] - dyx[i]).max() > 2)
        out.append((i, k, k0, 1.0 / (1 + n_null)))
    return out


def strength(k: int, k0: int) -> float:
    """A pair's ``z``: log2 of its consistent blocks over the null's largest (at least MIN_BLOCKS / RATIO)."""
    return float(np.log2(k / max(k0, MIN_BLOCKS / RATIO)))


__all__ = ["MAX_QUALITY", "consistency", "luma_table", "luminance", "select", "strength"]
