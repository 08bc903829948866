"""Exact detection of upsampling, and the scan restored on its native pixel grid.

A scan enlarged by a factor s > 1 with a known interpolation kernel is, before the
final rounding to integers, ``y = A_r x A_c^T``: separable, with ``A`` an (m, n)
matrix of full column rank (m > n) whose rows hold the kernel's weights. Given the
file ``y`` and a candidate (n_rows, n_cols, kernel), the least-squares restore
``x^ = pinv(A_r) y pinv(A_c)^T`` gives back the scanner's pixels up to that
rounding, and the re-synthesis residual ``y - A_r x^ A_c^T`` is at the rounding
floor: a per-pixel variance of about ``(1 - n_r n_c / (m_r m_c)) / 12`` (in units of
the file's integer steps). A scan that was not enlarged carries high-frequency
content and sensor noise that no smaller grid can represent, and its residual is
far above that floor. The test needs no model and no training: it is a statement
about the file's numbers.

Conventions matched (:func:`kernel_matrix`): Pillow's ``Image.resize`` (centre-aligned:
output pixel i sits at input coordinate ``(i + 0.5) n / m - 0.5``; when enlarging,
the filter's support is not widened; at the borders the weights that fall inside
the image are renormalised to sum to one; horizontal pass first, rounded to the
integer type between the passes). Kernels: Pillow's BICUBIC (cubic convolution,
a = -0.5), BILINEAR, LANCZOS (a = 3), and the a = -0.75 cubic (OpenCV's
INTER_CUBIC kernel; with Pillow's border handling, which OpenCV does not share:
OpenCV replicates the edge pixel; not checked against OpenCV).

Pillow's output is reproduced by these matrices to within 1 grey level (its 22-bit
fixed-point weights; tests/test_resampling.py).

The search (:func:`detect_upsampling`), bounded (about 0.3 s on a 2,000 x 2,000 scan
that is no enlargement, about 2 s with the whole-scan restore when it is; one core):

1. shortlist: per axis, the periodicity of a second-difference residual gives the
   original size exactly as a DFT bin (:func:`periodicity_candidates`), plus the size
   the other axis suggests for the same factor;
2. 1-D least squares (banded normal equations, O(m) each) on 16 lines x 512 samples
   per axis: every shortlisted size with the bicubic kernel, the promising ones and
   their neighbours n - 1, n + 1 with every kernel; kept per axis and kernel: sizes
   that fit (``FLOOR_1D``, ``NEAR``) and that n - 1 fits at least ``MIN_MARGIN`` times
   worse (an enlargement of smooth content is fitted about as well by any larger grid;
   the original is the smallest that fits);
3. 2-D restore on a central 512 x 512 window for the best few (rows, cols, kernel) and
   then the smaller candidates with the winner's kernel; the lowest residual / floor
   ratio wins (a smaller grid within ``TIE_RATIO`` of it first);
4. the whole scan restored with it (all channels; clipped samples re-fitted).

It fires only when the whole scan's residual is at most ``MAX_FLOOR_RATIO`` times the
rounding floor (and at most ``MAX_RESIDUAL`` steps), with the 1-D margin of step 2.
Pixels at the clip (0 or full scale) and 2 px around them are left out of every fit's
residual (``y = A x`` fails there: Pillow clips after each pass).

Not searched: JPEG files (``lossy``; their compression error is far above the rounding
floor, so the exact test cannot hold for a real enlargement, and on the virtual bank's
smooth content the raw test did pass for a smaller grid on 6 of 120 JPEG re-saves at the
first margin tried, 1.3; BENCHMARKS.md). Downsampling loses information and is not
inverted; a JPEG saved after the enlargement is not found (the test being honest, not a
miss to tune away). Constants tuned on the dev set of BENCHMARKS.md ("Delivery chain",
exact upsampling test) and synthetic checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse
from scipy.linalg import cho_solve_banded, cholesky_banded, solveh_banded

MIN_FACTOR = 1.05  # smallest enlargement searched (m / n)
MAX_FACTOR = 2.0  # largest
MIN_SIDE = 96  # a side shorter than this is not searched (too few degrees of freedom)
STRIP = 16  # lines of the 1-D test strip on each axis
WINDOW = 512  # samples of each line in the 1-D test (the middle of the axis)
PEAKS = 4  # periodicity peaks per axis that suggest original sizes
# the decision (tuned on the dev set and synthetic checks, BENCHMARKS.md)
MAX_FLOOR_RATIO = 1.3  # 2-D residual sd at most this many times the rounding floor
MAX_RESIDUAL = 0.6  # and at most this many integer steps
MIN_MARGIN = 1.5  # on each axis n - 1 (and every smaller size tried) left a 1-D residual this many times larger
NEAR = 1.15  # 1-D fits within this factor of the best one count as fitting as well
FLOOR_1D = 0.40  # a 1-D residual sd (integer steps) this low fits (rounding alone leaves about 0.29 to 0.38)
CONFIRM = 4  # (rows, cols, kernel) combinations restored in 2-D on the central window
CONFIRM_WINDOW = 512  # its side (px of the file)
EDGE = 8  # px at the window's edge left out of its residual
TIE_RATIO = 0.1  # 2-D fits within this much (residual / floor) of the best count as ties: the smaller grid wins
MIN_USABLE = 20_000  # pixels away from the clip needed to test at all


def _cubic(a: float):
    def f(x: np.ndarray) -> np.ndarray:
        x = np.abs(x)
        near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
        far = ((x - 5.0) * x + 8.0) * x * a - 4.0 * a
        return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))
    return f


def _triangle(x: np.ndarray) -> np.ndarray:
    return np.maximum(0.0, 1.0 - np.abs(x))


def _lanczos3(x: np.ndarray) -> np.ndarray:
    return np.where(np.abs(x) < 3.0, np.sinc(x) * np.sinc(x / 3.0), 0.0)


# name -> (kernel, support in input pixels)
KERNELS: dict[str, tuple[Any, float]] = {
    "bicubic": (_cubic(-0.5), 2.0),  # Pillow BICUBIC
    "bilinear": (_triangle, 1.0),  # Pillow BILINEAR
    "lanczos3": (_lanczos3, 3.0),  # Pillow LANCZOS
    "cubic-0.75": (_cubic(-0.75), 2.0),  # OpenCV INTER_CUBIC's kernel, Pillow's borders
}
SEARCH_KERNEL = "bicubic"
LOSSY = ("JPEG file: not searched (its pixels carry the compression's error, far above the rounding floor, "
         "so an exact fit can neither hold for a real enlargement nor mean one when smooth content allows it)")


def kernel_weights(n: int, m: int, kernel: str, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Enlarging n -> m samples: (first input index, weights (len, K)) of each output sample in ``rows``.

    Output sample i lies at input coordinate ``c = (i + 0.5) n / m`` (pixel centres at
    j + 0.5); it takes the input samples whose centre lies within the kernel's support
    of c (the window Pillow takes: from ``floor(c - support + 0.5)`` to
    ``floor(c + support + 0.5)``, cut to the image), weights ``f(j + 0.5 - c)``
    normalised to sum to one. ``rows``: output samples (all when None).
    """
    f, support = KERNELS[kernel]
    i = np.arange(m) if rows is None else rows
    c = (i + 0.5) * (n / m)
    lo = np.clip(np.floor(c - support + 0.5).astype(np.int64), 0, n)
    hi = np.clip(np.floor(c + support + 0.5).astype(np.int64), 0, n)
    k = int((hi - lo).max())
    j = lo[:, None] + np.arange(k)[None, :]
    w = np.where(j < hi[:, None], f(j + 0.5 - c[:, None]), 0.0)
    w /= w.sum(axis=1, keepdims=True)
    return lo, w


def _matrix(lo: np.ndarray, w: np.ndarray, n: int) -> sparse.csr_matrix:
    m, k = w.shape
    cols = (lo[:, None] + np.arange(k)[None, :]).ravel()
    keep = (w.ravel() != 0.0) & (cols < n)
    return sparse.csr_matrix((w.ravel()[keep], (np.repeat(np.arange(m), k)[keep], cols[keep])), shape=(m, n))


def kernel_matrix(n: int, m: int, kernel: str) -> sparse.csr_matrix:
    """The (m, n) enlargement matrix of ``kernel`` (rows: output samples)."""
    lo, w = kernel_weights(n, m, kernel)
    return _matrix(lo, w, n)


def _normal_banded(lo: np.ndarray, w: np.ndarray, n: int, ridge: float = 0.0) -> np.ndarray:
    """A^T A (+ ridge I) of an enlargement matrix in LAPACK's upper banded storage ((K, n) array).

    Row i of A holds ``w[i]`` at columns ``lo[i] ... lo[i] + K - 1`` (zero weights where the
    window was cut); every pair of taps (p <= q) adds ``w_p w_q`` at (lo + p, lo + q).
    """
    k = w.shape[1]
    p, q = np.triu_indices(k)
    col = lo[:, None] + q[None, :]  # the upper element's column; diagonal offset q - p
    vals = w[:, p] * w[:, q]
    ok = (col < n) & (vals != 0.0)
    ab = np.bincount(((k - 1 - (q - p))[None, :] * n + col)[ok], weights=vals[ok], minlength=k * n)
    ab = ab.reshape(k, n)
    ab[k - 1] += ridge
    return ab


def _apply_t(lo: np.ndarray, w: np.ndarray, n: int, y: np.ndarray) -> np.ndarray:
    """A^T y for a vector y (one value per row of A)."""
    k = w.shape[1]
    col = lo[:, None] + np.arange(k)[None, :]
    ok = col < n
    return np.bincount(col[ok], weights=(w * y[:, None])[ok], minlength=n)


def _apply(lo: np.ndarray, w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """A x for a vector x."""
    col = np.minimum(lo[:, None] + np.arange(w.shape[1])[None, :], len(x) - 1)
    return np.sum(w * x[col], axis=1)


def window_sd(y: np.ndarray, ok: np.ndarray, m: int, start: int, n: int, kernel: str) -> float:
    """Residual sd of the 1-D fits of the columns of ``y`` (L, k) onto n samples.

    ``y`` holds output samples start..start+L of an m-sample axis, k lines of them; ``ok``
    (L, k): the samples that count (unsaturated: the model ``y = A x`` holds only below
    the clip). The k lines are fitted at once as one block-diagonal banded system. The
    sd is normalised by the degrees of freedom left (samples counted - unknowns they
    touch).
    """
    L, k = y.shape
    lo, w = kernel_weights(n, m, kernel, np.arange(start, start + L))
    lo = lo - int(lo.min())
    nn = int((lo + w.shape[1]).max())
    line, row = np.nonzero(ok.T)  # kept samples, line by line
    if row.size < 16:
        return float("inf")
    lo_all = lo[row] + line * nn
    w_all = w[row]
    nk = k * nn
    yv = y.T[line, row]
    x = solveh_banded(_normal_banded(lo_all, w_all, nk, ridge=1e-9), _apply_t(lo_all, w_all, nk, yv),
                      check_finite=False)
    r = yv - _apply(lo_all, w_all, x)
    cols = lo_all[:, None] + np.arange(w_all.shape[1])
    touched = np.zeros(nk, bool)
    touched[cols[(w_all != 0) & (cols < nk)]] = True
    dof = row.size - int(touched.sum())
    return float(np.sqrt(np.sum(r * r) / dof)) if dof > 0 else float("inf")


def floor_sd(m: tuple[int, int], n: tuple[int, int]) -> float:
    """RMS of the residual that rounding to integers alone leaves (units of the file's integer steps)."""
    return float(np.sqrt(max(0.0, 1.0 - (n[0] * n[1]) / (m[0] * m[1])) / 12.0))


@dataclass(frozen=True)
class Upsampling:
    """A detected enlargement: what the ``scan.resampling`` block of the JSON says (docs/formats.md)."""

    size_before: tuple[int, int]  # (rows, cols) of the restored grid
    size_after: tuple[int, int]  # (rows, cols) of the file
    kernel: str
    residual_sd: float  # RMS of the 2-D re-synthesis residual, integer steps
    floor_sd: float  # what rounding alone leaves
    margin: float  # 1-D: lowest residual of a smaller size tried (n - 1 included) / this one's; weaker axis
    restored: np.ndarray  # (rows, cols, 3) float64, the least-squares restore (not rounded)

    def native_pixels(self, dtype: np.dtype | type) -> np.ndarray:
        """The restore rounded and clipped to ``dtype``'s range: the scan on its original grid."""
        from scanlab.core.io.imaging import full_scale

        return np.clip(np.rint(self.restored), 0, full_scale(dtype)).astype(dtype)

    @property
    def factor(self) -> tuple[float, float]:
        """(rows, cols) enlargement factors."""
        return (self.size_after[0] / self.size_before[0], self.size_after[1] / self.size_before[1])

    def to_json(self) -> dict[str, Any]:
        """The ``scan.resampling`` object."""
        return {
            "factor": [round(f, 4) for f in self.factor],
            "size_before": list(self.size_before),
            "size_after": list(self.size_after),
            "kernel": self.kernel,
            "residual_sd": round(self.residual_sd, 4),
            "floor_sd": round(self.floor_sd, 4),
            "margin": round(self.margin, 2),
            "restored": True,
        }


def _saturated(g: np.ndarray, top: float) -> np.ndarray:
    """Samples at the clip (0 or the full scale) and their neighbours (2 px): ``y = A x`` fails there."""
    from scipy import ndimage

    s = (g <= 0) | (g >= top)
    return ndimage.binary_dilation(s, iterations=2) if s.any() else s


def _lines(size: int, k: int, ok: np.ndarray | None = None, pool: int = 8) -> np.ndarray:
    """k line indices away from the margins; with ``ok`` (samples, lines), those with most usable samples."""
    cand = np.unique(np.linspace(size // 8, size - size // 8 - 1, k * (pool if ok is not None else 1))
                     .round().astype(int))
    if ok is None:
        return cand
    best = np.argsort(-ok[:, cand].sum(axis=0), kind="stable")[:k]
    return np.sort(cand[best])


def periodicity_candidates(g: np.ndarray, peaks: int = PEAKS) -> list[int]:
    """Original sizes suggested by the periodicity of axis 0 of ``g`` (m, k), strongest peak first.

    Enlarging n -> m makes the interpolation phase of output sample i advance by n / m
    per sample, so the strength of a second-difference residual is periodic with
    frequency ``1 - n / m`` cycles per sample: DFT bin ``m - n`` of the profile of length
    m (and its harmonics). The profile is ``|2 y_i - y_(i-1) - y_(i+1)|`` averaged over
    the lines; its spectrum is divided by a running median (content is broadband and
    low-frequency) and the ``peaks`` most prominent local maxima in the searched range
    give n = m - b, and n = m - b / 2 or (m + b) / 2 in case b is the second harmonic.
    """
    from scipy.ndimage import median_filter

    m = g.shape[0]
    d = np.zeros(m - 2)
    for c in range(0, g.shape[1], 256):  # in slices of lines: a large scan's temporaries stay small
        b = g[:, c:c + 256].astype(np.float64)
        d += np.abs(2.0 * b[1:-1] - b[:-2] - b[2:]).sum(axis=1)
    d /= g.shape[1]
    s = np.abs(np.fft.rfft(d - d.mean(), n=m))
    base = median_filter(s, size=31, mode="nearest") + 1e-12
    z = s / base
    lo_b = max(1, int(np.floor(m - m / MIN_FACTOR)))
    hi_b = len(s) - 1
    idx = np.arange(lo_b, hi_b + 1)
    local = idx[(z[idx] >= z[np.maximum(idx - 1, 0)]) & (z[idx] >= z[np.minimum(idx + 1, len(s) - 1)])]
    top = local[np.argsort(-z[local], kind="stable")][:peaks]
    lo_n, hi_n = int(np.ceil(m / MAX_FACTOR)), int(np.floor(m / MIN_FACTOR))
    out: list[int] = []
    for b in top:
        for n in (m - b, m - b / 2, (m + b) / 2):
            if float(n).is_integer() and lo_n <= n <= hi_n and int(n) not in out:
                out.append(int(n))
    return out


@dataclass
class Search:
    """What the search found, fired or not (for notes and the benchmark)."""

    candidate: tuple[int, int] | None = None
    kernel: str | None = None
    residual_sd: float | None = None
    floor_sd: float | None = None
    margin: float | None = None
    fired: bool = False
    reason: str = ""
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON view (benchmark notes)."""
        return dict(self.__dict__)


def _window_weights(n: int, m: int, start: int, length: int, kernel: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Weights of output samples start..start+length (first input index made relative) and the inputs touched."""
    lo, w = kernel_weights(n, m, kernel, np.arange(start, start + length))
    base = int(lo.min())
    return lo - base, w, min(int((lo - base + w.shape[1]).max()), n - base)


def restore_2d(y: np.ndarray, n: tuple[int, int], kernel: str, top: float, *, m: tuple[int, int] | None = None,
               start: tuple[int, int] = (0, 0), iterations: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares restore of ``y`` (L_r, L_c, C) onto an (n_r, n_c) grid: (x^, re-synthesis of y).

    ``y`` is the whole enlarged image (the default) or a window of it, from ``start`` in an
    image of ``m`` (rows, cols); x^ then covers the original samples the window touches.
    Samples at the clip (0 or ``top``) only say that the true value lay beyond it: after
    each pass those whose re-synthesis lies further beyond the clip take that value, and
    the fit is repeated (``iterations`` passes in all), so clipped highlights do not drag
    the restore down.
    """
    m = m or y.shape[:2]
    lor, wr, nr = _window_weights(n[0], m[0], start[0], y.shape[0], kernel)
    loc, wc, nc = _window_weights(n[1], m[1], start[1], y.shape[1], kernel)
    ar, ac = _matrix(lor, wr, nr), _matrix(loc, wc, nc)
    # the normal equations are factored once for all channels and passes
    cr = (cholesky_banded(_normal_banded(lor, wr, nr, 1e-9), check_finite=False), False)
    cc = (cholesky_banded(_normal_banded(loc, wc, nc, 1e-9), check_finite=False), False)
    xs, preds = [], []
    for ch in range(y.shape[2]):
        obs = y[..., ch].astype(np.float64)
        hi_clip, lo_clip = obs >= top, obs <= 0
        yy = obs
        for it in range(iterations):
            t = cho_solve_banded(cr, ar.T @ yy, check_finite=False)  # (n_r, L_c)
            x = cho_solve_banded(cc, ac.T @ t.T, check_finite=False).T  # (n_r, n_c)
            pred = ar @ (ac @ x.T).T
            if it + 1 < iterations and (hi_clip.any() or lo_clip.any()):
                yy = np.where(hi_clip & (pred > top), pred, np.where(lo_clip & (pred < 0), pred, obs))
            else:
                break
        xs.append(x)
        preds.append(pred)
    return np.stack(xs, axis=-1), np.stack(preds, axis=-1)


def _axis_fits(g: np.ndarray, bad: np.ndarray, cands: list[int]) -> dict[tuple[int, str], float]:
    """1-D residual sd of (candidate size, kernel) pairs on axis 0 of ``g`` (m, k).

    Every candidate size is tried with the search kernel; the one with the lowest
    residual and the two smallest that fit about as well (:func:`_fits`: an enlargement
    by a large factor of smooth content is fitted about as well by any larger grid, the
    original being the smallest), each with its neighbours n - 1 and n + 1, are tried
    with every kernel.
    """
    m = g.shape[0]
    if not cands:
        return {}
    L = min(m, WINDOW)
    start = (m - L) // 2
    ok_all = ~bad[start:start + L]
    lines = _lines(g.shape[1], STRIP, ok_all)
    y, ok = g[start:start + L][:, lines], ok_all[:, lines]
    sds = {(n, SEARCH_KERNEL): window_sd(y, ok, m, start, n, SEARCH_KERNEL) for n in cands}
    a = {n: v for (n, _), v in sds.items()}
    lowest = min(a, key=a.get)
    for n0 in sorted({lowest, *sorted(n for n in a if _fits(a[n], a[lowest]))[:2]}):
        for n in (n0 - 1, n0, n0 + 1):
            for k in KERNELS:
                if (n, k) not in sds:
                    sds[(n, k)] = window_sd(y, ok, m, start, n, k)
    return sds


def _fits(sd: float, lowest: float) -> bool:
    """A 1-D fit as good as the best one: within ``NEAR`` of it or at the rounding level ``FLOOR_1D``."""
    return sd <= max(FLOOR_1D, NEAR * lowest)


def _axis_options(sds: dict[tuple[int, str], float], kernel: str) -> list[tuple[int, float, float]]:
    """For one kernel on one axis: the sizes worth confirming, as (size, 1-D sd, margin).

    Among the sizes tried with every kernel: the smallest that fits as well as the best
    (:func:`_fits`) and the best itself. The margin is the lowest sd of the smaller sizes
    tried (n - 1 always is) over the size's own; sizes whose n - 1 was not tried, or whose
    margin is below ``MIN_MARGIN``, are left out."""
    tried = {n: v for (n, k), v in sds.items() if k == kernel}
    full = [n for n in tried if (n - 1) in tried and all((n, k) in sds for k in KERNELS)]
    if not full:
        return []
    best = min(full, key=lambda n: tried[n])
    out = []
    for n in sorted({min(n for n in full if _fits(tried[n], tried[best])), best}):
        margin = min(v for c, v in tried.items() if c < n) / max(tried[n], 1e-9)
        if margin >= MIN_MARGIN:
            out.append((n, tried[n], margin))
    return out


def _residual_sd(y: np.ndarray, pred: np.ndarray, top: float, keep: np.ndarray) -> float:
    res = y.astype(np.float64) - np.clip(pred, 0.0, top)
    return float(np.sqrt(np.mean(res[keep] ** 2))) if keep.any() else float("inf")


def _cross(cands: list[int], m_from: int, m_to: int) -> list[int]:
    """Sizes on the other axis for the same factor (a scan is usually enlarged alike both ways)."""
    return [int(round(m_to * n / m_from)) for n in cands[:2]]


def detect_upsampling(pixels: np.ndarray, *, lossy: bool = False) -> tuple[Upsampling | None, Search]:
    """Is ``pixels`` ((H, W, 3) uint8/uint16, a decoded scan) an enlargement of a smaller grid?

    Returns the detection (with the restored pixels) or None, and what the search saw.
    ``lossy``: the file is a JPEG (or a PDF's DCT image); it is not searched (:data:`LOSSY`).

    Candidates: per axis, the sizes the periodicity suggests (and those the other axis's
    suggest for the same factor); 1-D fits (:func:`_axis_fits`) keep, per kernel and axis,
    the sizes whose n - 1 fits at least ``MIN_MARGIN`` times worse (:func:`_axis_options`).
    The (rows, cols, kernel) combinations, best 1-D fit first (at most ``CONFIRM``), are
    restored in 2-D on a central window of the scan; of those whose residual there is at
    most ``MAX_FLOOR_RATIO`` times the rounding floor, the best (lowest ratio; within
    ``TIE_RATIO`` of it, the smallest grid, after the smaller periodicity candidates were
    tried too with the winner's kernel) is restored on the whole scan, and fires when the whole scan's residual also is (and at most
    ``MAX_RESIDUAL`` integer steps).
    """
    import time

    from scanlab.core.io.imaging import full_scale

    t0 = time.perf_counter()
    h, w = pixels.shape[:2]
    found = Search()

    def done(reason: str, fired: bool = False) -> Search:
        found.reason, found.fired, found.seconds = reason, fired, round(time.perf_counter() - t0, 3)
        return found

    if lossy:
        return None, done(LOSSY)
    if pixels.ndim != 3 or min(h, w) < MIN_SIDE:
        return None, done(f"scan smaller than {MIN_SIDE} px: not searched")
    top = full_scale(pixels.dtype)
    g = pixels[..., 1].astype(np.float32)  # integer samples: exact in float32 (16-bit included)
    bad = _saturated(g, top)
    usable = int(bad.size - np.count_nonzero(bad))
    if usable < MIN_USABLE:
        return None, done(f"only {usable} pixels lie away from the clip (0 or full scale): not searched")
    pr, pc = periodicity_candidates(g), periodicity_candidates(g.T)
    lo_r, hi_r = int(np.ceil(h / MAX_FACTOR)), int(np.floor(h / MIN_FACTOR))
    lo_c, hi_c = int(np.ceil(w / MAX_FACTOR)), int(np.floor(w / MIN_FACTOR))
    cr = list(dict.fromkeys(pr + [n for n in _cross(pc, w, h) if lo_r <= n <= hi_r]))
    cc = list(dict.fromkeys(pc + [n for n in _cross(pr, h, w) if lo_c <= n <= hi_c]))
    if not cr or not cc:
        return None, done("no periodicity peak in the searched range")
    sr, sc = _axis_fits(g, bad, cr), _axis_fits(g.T, bad.T, cc)
    combos = []
    for k in KERNELS:
        for nr, vr, mr in _axis_options(sr, k):
            for nc, vc, mc in _axis_options(sc, k):
                combos.append((vr * vr + vc * vc, nr, nc, k, min(mr, mc)))
    if not combos:
        return None, done(f"no size fits clearly better than the next smaller one (margin {MIN_MARGIN}) on both axes")
    combos.sort()
    # 2-D on a central window
    lr, lc = min(h, CONFIRM_WINDOW), min(w, CONFIRM_WINDOW)
    r0, c0 = (h - lr) // 2, (w - lc) // 2
    win, keep_w = pixels[r0:r0 + lr, c0:c0 + lc], ~bad[r0:r0 + lr, c0:c0 + lc]
    inner = np.zeros_like(keep_w)
    inner[EDGE:-EDGE, EDGE:-EDGE] = True  # the window's edge samples are fitted by half-determined unknowns
    passed = []

    def confirm(nr: int, nc: int, k: str, margin: float) -> None:
        _, pred = restore_2d(win, (nr, nc), k, top, m=(h, w), start=(r0, c0))
        rsd = _residual_sd(win, pred, top, keep_w & inner)
        fl = floor_sd((h, w), (nr, nc))
        passed.append((rsd / fl <= MAX_FLOOR_RATIO and rsd <= MAX_RESIDUAL, nr * nc, rsd / fl, nr, nc, k, margin))

    def choice() -> tuple | None:
        ok = [p for p in passed if p[0]]
        if not ok:
            return None
        best = min(p[2] for p in ok)  # the best fit; a smaller grid that fits about as well wins (smooth content)
        return min((p for p in ok if p[2] <= best + TIE_RATIO), key=lambda p: p[1:3])

    for _, nr, nc, k, margin in combos[:CONFIRM]:
        confirm(nr, nc, k, margin)
    first = choice()
    if first is not None:  # a larger grid also fits an enlargement of smooth content: try the smaller candidates
        _, _, _, nr, nc, k, margin = first
        sr_, sc_ = [n for n in cr if n < nr][:2], [n for n in cc if n < nc][:2]
        for a, b in [(a, nc) for a in sr_] + [(nr, b) for b in sc_] + [(a, b) for a in sr_[:1] for b in sc_[:1]]:
            confirm(a, b, k, margin)
        first = choice()
    if first is None:
        first = min(passed, key=lambda p: p[2])
    _, _, wratio, nr, nc, kernel, margin = first
    found.candidate, found.kernel, found.margin = (nr, nc), kernel, round(float(margin), 3)
    found.floor_sd = round(floor_sd((h, w), (nr, nc)), 4)
    if not first[0]:
        return None, done(f"re-synthesis residual on the central window is {wratio:.2f} times the rounding floor "
                          f"at best (limit {MAX_FLOOR_RATIO})")
    x, pred = restore_2d(pixels, (nr, nc), kernel, top)
    rsd = _residual_sd(pixels, pred, top, ~bad)
    found.residual_sd = round(rsd, 4)
    ratio = rsd / found.floor_sd
    if ratio > MAX_FLOOR_RATIO or rsd > MAX_RESIDUAL:
        return None, done(f"re-synthesis residual {rsd:.3f} is {ratio:.2f} times the rounding floor "
                          f"{found.floor_sd:.3f} (limit {MAX_FLOOR_RATIO})")
    done("re-synthesis residual at the rounding floor", fired=True)
    return Upsampling((nr, nc), (h, w), kernel, rsd, found.floor_sd, float(margin), x), found
