"""Exact-duplication test: a copied region and its source were pixel-identical before the last save.

Why this test and not a correlation of noise residuals (the first version of this layer): after a JPEG re-save
at quality 75-95 the virtual scanners' noise is at or below the quantisation step, so
the noise residual of flat paper carries almost nothing to correlate. What a copy
keeps instead is *identity*: at the copy's integer displacement the two regions differ
only by the re-compression error, glyph edges included. Two prints of the same glyph,
scanned once, have a sub-pixel phase of their own (the renderer's fractional advance,
the motor's jitter), so at the best integer displacement their edges still differ by a
sizeable fraction of the edge gradient. The statistic of a candidate is therefore

    q = SSD(best integer shift) / median SSD(the 8 shifts one pixel away)

over the candidate's edge pixels: about (JPEG error / edge gradient)^2 for a copy,
about delta^2 for a glyph pair whose phases differ by delta pixels. The scan's own
candidates (nearly all repeated glyphs) give the null, and a pair is reported only when
its ``q`` lies far below it.

Candidates (:func:`candidates`) are block matches on a reduced work image: blocks with
content, described by low-frequency DCT features plus their mean and contrast (an exact
copy keeps both), matched with a k-d tree; the matches are grouped by displacement and
by position. Blank paper (no content) is not searched here. :func:`periodicity` tells a
repeat of periodic content (table rules) from a copy: the former repeats at -d, 2d or
d/2 as well. Copies rotated or scaled before they were pasted fail this test (no integer
shift fits them); :mod:`.geo` tests them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from scanlab.core.copymove.fields import BLOCK, STRIDE, block_features, box_sum, integral_image
from scanlab.core.jobs import CancelToken, check

K_NEIGHBOURS = 5
MAX_FEATURE_DISTANCE = 0.35  # contrast-normalised DCT features: a re-saved copy stays well inside
MAX_LEVEL_DISTANCE = 0.08  # relative difference of block mean and of block contrast
FINE = 1  # work pixels: grid of the blocks a query may match
SMALL = BLOCK // STRIDE  # grid steps: a group spanning no more than one block is connected anyway
MIN_BLOCKS = 3  # matched blocks per candidate
N_SAMPLES = 384  # edge pixels per candidate that the shift search and the test use
MIN_STRUCTURE = 0.05  # SSD one pixel off / mean squared gradient: below it the samples have no 2-D structure
COARSE = 3  # coarse search: +-COARSE steps of the work factor
PERIODIC = 0.5  # periodicity() below it: the repeat is the content's own period


@dataclass
class DupCandidate:
    """Target region (full resolution, y1/x1 exclusive) and its estimated displacement to the source."""

    box: tuple[int, int, int, int]
    dy: int
    dx: int
    votes: int
    q: float = np.inf  # the test statistic (module docstring); inf when not testable
    level: float = np.inf  # SSD at the best shift / mean squared gradient of the samples


def candidates(g: np.ndarray, min_offset: int) -> tuple[list[DupCandidate], int]:
    """Block-match candidates of the grey image ``g`` (see module docstring) and the work factor."""
    # the tree holds every block on a fine grid, the queries come from the coarse grid: a copy's
    # displacement is arbitrary, and only a fine grid holds a block within a pixel of its source
    bf = block_features(g, stride=FINE)
    f = bf.factor
    if len(bf.ys) < 2:
        return [], f
    feats = bf.features.astype(np.float64)
    tree = cKDTree(feats)
    queries = np.nonzero((bf.ys % STRIDE == 0) & (bf.xs % STRIDE == 0))[0]
    k = min(K_NEIGHBOURS + 1, len(feats))
    dist, idx = tree.query(feats[queries], k=k, distance_upper_bound=MAX_FEATURE_DISTANCE, eps=0.5)
    ti = np.repeat(queries, k)
    si = idx.ravel()
    ok = dist.ravel() <= MAX_FEATURE_DISTANCE
    ti, si = ti[ok], si[ok]
    lev = bf_levels(g, bf)
    ok = (np.abs(lev[ti] - lev[si]) <= np.maximum(MAX_LEVEL_DISTANCE * lev[ti], 2.0)).all(axis=1)
    ti, si = ti[ok], si[ok]
    dy = bf.ys[si].astype(np.int64) - bf.ys[ti]
    dx = bf.xs[si].astype(np.int64) - bf.xs[ti]
    far = (dy * dy + dx * dx) * f * f >= min_offset * min_offset
    ti, si, dy, dx = ti[far], si[far], dy[far], dx[far]
    # each pair appears both ways round: keep the one whose displacement points down (or right)
    flip = (dy < 0) | ((dy == 0) & (dx < 0))
    ti, si = np.where(flip, si, ti), np.where(flip, ti, si)
    dy = bf.ys[si].astype(np.int64) - bf.ys[ti]
    dx = bf.xs[si].astype(np.int64) - bf.xs[ti]
    if len(ti) == 0:
        return [], f
    # group: same displacement (in grid steps), then connected target blocks on the grid
    gy, gx = bf.ys[ti] // STRIDE, bf.xs[ti] // STRIDE  # the query grid
    key = np.stack([dy // STRIDE, dx // STRIDE], 1)
    _, inv = np.unique(key, axis=0, return_inverse=True)
    inv = inv.ravel()
    order = np.lexsort((gx, gy, inv))
    out: list[DupCandidate] = []
    starts = np.r_[0, np.nonzero(np.diff(inv[order]))[0] + 1, len(order)]
    for a, b in zip(starts[:-1], starts[1:], strict=True):
        if b - a < MIN_BLOCKS:
            continue
        sel = order[a:b]
        yy, xx = gy[sel], gx[sel]
        y0, x0 = int(yy.min()), int(xx.min())
        if yy.max() - y0 <= SMALL and xx.max() - x0 <= SMALL:
            ly, n = np.ones(len(sel), np.int64), 1  # one glyph's worth of blocks: one candidate, no labelling
        else:
            grid = np.zeros((int(yy.max()) - y0 + 1, int(xx.max()) - x0 + 1), bool)
            grid[yy - y0, xx - x0] = True
            lab, n = ndimage.label(grid, structure=np.ones((3, 3)))
            ly = lab[yy - y0, xx - x0]
        counts = np.bincount(ly, minlength=n + 1)
        for c in np.nonzero(counts >= MIN_BLOCKS)[0]:
            if c == 0:
                continue
            m = ly == c
            by, bx = bf.ys[ti[sel[m]]], bf.xs[ti[sel[m]]]
            box = (int(by.min()) * f, int(bx.min()) * f, (int(by.max()) + BLOCK) * f, (int(bx.max()) + BLOCK) * f)
            out.append(DupCandidate(box, int(np.median(dy[sel[m]])) * f, int(np.median(dx[sel[m]])) * f, int(m.sum())))
    return out, f


def bf_levels(g: np.ndarray, bf) -> np.ndarray:
    """(n, 2) mean and contrast of every feature block (in 8-bit levels, on the work image)."""
    f = bf.factor
    h, w = (g.shape[0] // f) * f, (g.shape[1] // f) * f
    work = g[:h, :w].reshape(h // f, f, w // f, f).mean(axis=(1, 3)) if f > 1 else g
    n = float(BLOCK * BLOCK)
    mean = box_sum(integral_image(work), bf.ys, bf.xs, BLOCK) / n
    std = np.sqrt(np.maximum(box_sum(integral_image(work * work), bf.ys, bf.xs, BLOCK) / n - mean**2, 0.0))
    return np.stack([mean, std], 1)


def _ssd(g: np.ndarray, py: np.ndarray, px: np.ndarray, t: np.ndarray, sy: np.ndarray, sx: np.ndarray) -> np.ndarray:
    """Mean squared difference of ``t`` (at py, px) and ``g`` at (py + sy, px + sx) for every shift; inf off the scan."""
    h, w = g.shape
    yy = py[None, :] + sy[:, None]
    xx = px[None, :] + sx[:, None]
    inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
    v = g[np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)]
    d = ((v - t[None, :]) ** 2).mean(axis=1)
    d[~inside.all(axis=1)] = np.inf
    return d


def edge_samples(g: np.ndarray, grad2: np.ndarray, box: tuple[int, int, int, int], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the (up to) ``n`` strongest-gradient unclipped pixels of ``box`` (y0, x0, y1, x1)."""
    y0, x0, y1, x1 = box
    gb = grad2[y0:y1, x0:x1]
    # clipped pixels (solid ink at 0, paper at full scale) are identical in any two regions
    flat = np.where((g[y0:y1, x0:x1] > 0.5) & (g[y0:y1, x0:x1] < 254.5), gb, 0.0).ravel()
    n = min(n, flat.size)
    top = np.argpartition(flat, flat.size - n)[flat.size - n :]
    py, px = np.divmod(top, x1 - x0)
    return py + y0, px + x0


def _samples(g: np.ndarray, grad2: np.ndarray, box: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """:func:`edge_samples` with ``N_SAMPLES`` pixels."""
    return edge_samples(g, grad2, box, N_SAMPLES)


def periodicity(g: np.ndarray, grad2: np.ndarray, c: DupCandidate) -> float:
    """SSD of a tested candidate's samples at -d, 2d and d/2 over their smallest SSD one pixel off d.

    A region that repeats at ``d`` because the scan's content is periodic (table rules,
    a ruled form, a dotted leader) repeats at these shifts too; a copy's target does
    not (they land on unrelated content). Small (< ``PERIODIC``): periodic, not a copy.
    """
    h, w = g.shape
    y0, x0, y1, x1 = c.box
    py, px = _samples(g, grad2, (y0, x0, min(y1, h), min(x1, w)))
    t = g[py, px]
    shifts = [(-c.dy, -c.dx), (2 * c.dy, 2 * c.dx)]
    if c.dy % 2 == 0 and c.dx % 2 == 0:
        shifts.append((c.dy // 2, c.dx // 2))
    sh = np.array(shifts)
    other = _ssd(g, py, px, t, sh[:, 0], sh[:, 1])
    nb = _ssd(g, py, px, t, c.dy + _N8[:, 0], c.dx + _N8[:, 1])
    return float(other.min()) / max(float(nb.min()), 1e-9)


_N8 = np.array([(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)])


def test_candidates(
    g: np.ndarray, grad2: np.ndarray, blur: np.ndarray, cands: list[DupCandidate], f: int, min_offset: int,
    *, cancel: CancelToken | None = None,
) -> None:
    """Find each candidate's best integer displacement and fill in ``q`` and ``level`` (in place).

    ``grad2`` is the squared gradient magnitude of ``g`` and ``blur`` ``g`` blurred at the
    work scale (the coarse search steps by ``f`` pixels on it).
    """
    h, w = g.shape
    cy, cx = np.mgrid[-COARSE : COARSE + 1, -COARSE : COARSE + 1].reshape(2, -1) * f
    fy, fx = np.mgrid[-f : f + 1, -f : f + 1].reshape(2, -1)
    for i, c in enumerate(cands):
        if i % 256 == 0:
            check(cancel)
        y0, x0, y1, x1 = c.box
        y1, x1 = min(y1, h), min(x1, w)
        if (y1 - y0) * (x1 - x0) < 16:
            continue
        py, px = _samples(g, grad2, (y0, x0, y1, x1))
        d = _ssd(blur, py, px, blur[py, px], c.dy + cy, c.dx + cx)
        k = int(np.argmin(d))
        if not np.isfinite(d[k]):
            continue
        by, bx = c.dy + int(cy[k]), c.dx + int(cx[k])
        t = g[py, px]
        d = _ssd(g, py, px, t, by + fy, bx + fx)
        k = int(np.argmin(d))
        by, bx = by + int(fy[k]), bx + int(fx[k])
        if by * by + bx * bx < min_offset * min_offset:
            continue
        c.dy, c.dx = by, bx
        best = float(d[k])
        nb = _ssd(g, py, px, t, by + _N8[:, 0], bx + _N8[:, 1])
        g2 = max(float(grad2[py, px].mean()), 1e-6)
        # nb.min tiny: a straight edge (table rule) or a periodic pattern, which any shift along it keeps
        c.q = best / float(nb.min()) if float(nb.min()) >= MIN_STRUCTURE * g2 else 1.0
        c.level = best / g2


__all__ = ["DupCandidate", "candidates", "edge_samples", "periodicity", "test_candidates"]
