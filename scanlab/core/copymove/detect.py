"""Copy-move detection: candidates (content or noise), then the noise-residual test.

For a candidate (a target region and the map ``A`` from target to source
coordinates) the normalised residuals of the two ends are compared on 4x4-pixel
cells: per cell the sums of ``r_t * r_s``, ``r_t^2``, ``r_s^2`` and the number of
pixels where both are noise. A window of ``BOX`` x ``BOX`` cells gives a local
correlation ``rho`` and its Fisher score ``z = atanh(rho) * sqrt(n - 3) / inflation``.

**Null.** For two independent noise fields ``z`` is standard normal. Two regions of
one scan are not quite independent (JPEG, the residual's leftover content), so the
*inflation* is measured on the scan itself: the robust spread of ``z`` over all
cells of (a) displaced copies of the scan at fixed offsets and (b) every content
candidate tested, nearly all of which are repeated glyphs or words printed once,
i.e. same-content pairs that are not copies. ``z`` is divided by the larger.

**Decision.** Cells with ``z >= Z_CELL`` form connected components; a component is
trimmed to the cells above half its peak correlation (the window spreads a region
by half its width), and its pooled correlation gives the pair's ``z``; its p-value
is the one-sided normal tail times the number of components examined (Bonferroni).
A pair is reported when ``p <= ALPHA``, ``rho >= RHO_MIN`` and both ends cover at
least ``MIN_AREA`` pixels. Translations are refined to the pixel (+-``factor + 1``)
and affine maps to half a pixel before the test, since noise decorrelates within a
pixel of misalignment.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage, signal
from scipy.special import ndtr

from scanlab.core.copymove.candidates import Candidate

CELL = 4
BOX = 5  # cells per side of the local-correlation window (20 px)
Z_CELL = 4.5
RHO_MIN = 0.2
ALPHA = 1e-3
MIN_AREA = 96  # px at each end
Z_PAIR_MIN = 6.0  # pair-level z below which nothing is reported, whatever the null


@dataclass
class CellStats:
    """Per-cell sums of one candidate over its target box (cell grid origin y0, x0)."""

    y0: int
    x0: int
    sxy: np.ndarray
    sxx: np.ndarray
    syy: np.ndarray
    n: np.ndarray

    def boxed(self) -> tuple[np.ndarray, np.ndarray]:
        """(rho, raw z) of the BOX x BOX window around every cell."""
        def bs(a: np.ndarray) -> np.ndarray:
            return ndimage.uniform_filter(a, BOX, mode="constant") * (BOX * BOX)
        return corr_z(bs(self.sxy), bs(self.sxx), bs(self.syy), bs(self.n))


def corr_z(sxy: np.ndarray, sxx: np.ndarray, syy: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Correlation and Fisher z (not yet divided by the inflation) from pooled sums."""
    rho = sxy / np.sqrt(np.maximum(sxx * syy, 1e-12))
    rho = np.clip(rho, -0.999, 0.999)
    z = np.arctanh(rho) * np.sqrt(np.maximum(n - 3.0, 0.0))
    return rho, z


def _cells(a: np.ndarray) -> np.ndarray:
    h, w = a.shape
    return a.reshape(h // CELL, CELL, w // CELL, CELL).sum(axis=(1, 3), dtype=np.float64).astype(np.float32)


def source_values(field: np.ndarray, weight: np.ndarray, a: np.ndarray, box: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The source end's residual and weight sampled on the target box (bilinear for affine maps)."""
    y0, x0, y1, x1 = box
    h, w = field.shape
    if np.allclose(a[:, :2], np.eye(2)) and np.allclose(a[:, 2], np.round(a[:, 2])):
        dy, dx = int(round(a[0, 2])), int(round(a[1, 2]))
        out = np.zeros((y1 - y0, x1 - x0), np.float32)
        wout = np.zeros((y1 - y0, x1 - x0), np.float32)
        sy0, sy1 = max(y0 + dy, 0), min(y1 + dy, h)
        sx0, sx1 = max(x0 + dx, 0), min(x1 + dx, w)
        if sy1 > sy0 and sx1 > sx0:
            out[sy0 - y0 - dy : sy1 - y0 - dy, sx0 - x0 - dx : sx1 - x0 - dx] = field[sy0:sy1, sx0:sx1]
            wout[sy0 - y0 - dy : sy1 - y0 - dy, sx0 - x0 - dx : sx1 - x0 - dx] = weight[sy0:sy1, sx0:sx1]
        return out, wout
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    coords = np.stack([a[0, 0] * yy + a[0, 1] * xx + a[0, 2], a[1, 0] * yy + a[1, 1] * xx + a[1, 2]])
    v = ndimage.map_coordinates(field, coords, order=1, mode="constant", cval=0.0, prefilter=False)
    wv = ndimage.map_coordinates(weight.astype(np.float32), coords, order=1, mode="constant", cval=0.0, prefilter=False)
    return v.astype(np.float32), (wv > 0.999).astype(np.float32)


def cell_stats(field: np.ndarray, weight: np.ndarray, a: np.ndarray, box: tuple[int, int, int, int]) -> CellStats | None:
    """Per-cell sums of the candidate ``a`` over ``box`` (snapped to the cell grid)."""
    y0, x0, y1, x1 = box
    y0, x0 = (y0 // CELL) * CELL, (x0 // CELL) * CELL
    y1, x1 = y0 + ((y1 - y0) // CELL) * CELL, x0 + ((x1 - x0) // CELL) * CELL
    if y1 - y0 < CELL * 2 or x1 - x0 < CELL * 2:
        return None
    t = field[y0:y1, x0:x1]
    s, ws = source_values(field, weight, a, (y0, x0, y1, x1))
    both = (weight[y0:y1, x0:x1] * ws) > 0
    t = np.where(both, t, 0.0)
    s = np.where(both, s, 0.0)
    return CellStats(y0 // CELL, x0 // CELL, _cells(t * s), _cells(t * t), _cells(s * s), _cells(both.astype(np.float32)))


def refine(field: np.ndarray, weight: np.ndarray, cand: Candidate, radius: int) -> np.ndarray:
    """The map near ``cand.transform`` that maximises the pooled correlation over its box."""
    y0, x0, y1, x1 = cand.box
    t = field[y0:y1, x0:x1]
    if cand.is_translation:
        dy0, dx0 = (int(v) for v in np.round(cand.transform[:, 2]))
        h, w = field.shape
        sy0, sx0 = y0 + dy0 - radius, x0 + dx0 - radius
        sy1, sx1 = y1 + dy0 + radius, x1 + dx0 + radius
        if sy0 < 0 or sx0 < 0 or sy1 > h or sx1 > w:
            return np.round(cand.transform)
        s = field[sy0:sy1, sx0:sx1]
        # all (2r+1)^2 shifts at once: cross-correlation and the source energy under the box
        num = signal.fftconvolve(s, t[::-1, ::-1], mode="valid")
        s2 = signal.fftconvolve(s * s, np.ones_like(t), mode="valid")
        score = num / np.sqrt(np.maximum(s2 * float((t * t).sum()), 1e-9))
        iy, ix = np.unravel_index(int(np.argmax(score)), score.shape)
        a = np.round(cand.transform)
        a[0, 2] += iy - radius
        a[1, 2] += ix - radius
        return a
    best, best_rho = cand.transform, -1.0
    wt = weight[y0:y1, x0:x1]
    steps = np.arange(-1.0, 1.01, 0.5)
    for dy in steps:
        for dx in steps:
            a = cand.transform.copy()
            a[0, 2] += dy
            a[1, 2] += dx
            s, ws = source_values(field, weight, a, cand.box)
            both = wt & (ws > 0)
            ts, ss = t[both], s[both]
            if ts.size < 16:
                continue
            rho = float(ts @ ss) / float(np.sqrt(max(float(ts @ ts) * float(ss @ ss), 1e-12)))
            if rho > best_rho:
                best, best_rho = a, rho
    return best


@dataclass
class Component:
    """A connected set of cells that passed the cell test, with its pooled statistics."""

    cand: Candidate
    transform: np.ndarray
    cells: np.ndarray  # bool, on the CellStats grid
    stats: CellStats
    rho: float
    z_raw: float
    n: float


def components(
    cs: CellStats, cand: Candidate, a: np.ndarray, inflation: float, boxed: tuple[np.ndarray, np.ndarray]
) -> list[Component]:
    """Connected cell sets with ``z >= Z_CELL`` (after the inflation), trimmed at half peak."""
    rho_b, z_b = boxed
    lab, nl = ndimage.label(z_b / inflation >= Z_CELL, structure=np.ones((3, 3)))
    out = []
    for c, sl in enumerate(ndimage.find_objects(lab), start=1):
        if sl is None:
            continue
        m = lab[sl] == c
        rb = rho_b[sl]
        m &= rb >= 0.5 * float(rb[m].max())
        if m.sum() < 2:
            continue
        sums = [float(a_[sl][m].sum()) for a_ in (cs.sxy, cs.sxx, cs.syy, cs.n)]
        rho, z = corr_z(*sums)
        cells = np.zeros_like(lab, dtype=bool)
        cells[sl] = m
        out.append(Component(cand, a, cells, cs, float(rho), float(z), sums[3]))
    return out


def robust_spread(z: np.ndarray) -> float:
    """1.4826 x median absolute deviation (the standard deviation for a normal sample)."""
    if z.size < 50:
        return 1.0
    med = float(np.median(z))
    return float(np.median(np.abs(z - med))) * 1.4826


def empirical_threshold(null: np.ndarray) -> float:
    """The pair-level bar set by the scan's own same-content pairs: median + 6 robust spreads, at least Z_PAIR_MIN."""
    if null.size < 20:
        return Z_PAIR_MIN
    med = float(np.median(null))
    return max(Z_PAIR_MIN, med + 6.0 * max(robust_spread(null) if null.size >= 50 else float(np.std(null)), 0.5))


def standardise(z: float, null: np.ndarray) -> float:
    """``z`` in units of the same-content null's spread above its median (unchanged when the null is small or tight)."""
    if null.size < 20:
        return z
    spread = max(1.0, robust_spread(null) if null.size >= 50 else float(np.std(null)))
    return min(z, (z - float(np.median(null))) / spread)


def p_value(z: float, n_tests: int) -> float:
    """One-sided normal tail of ``z`` times ``n_tests`` (Bonferroni), at most 1."""
    return float(min(1.0, ndtr(-z) * max(1, n_tests)))
