"""Candidate pairs for the copy-move test: where might a region have been copied from?

Two generators, both cheap next to the test itself:

* **Content matches** (:func:`content_candidates`): every textured block of the work
  image (:func:`~scanlab.core.copymove.fields.block_features`) is matched to its
  ``K`` nearest blocks in feature space (a k-d tree) that lie at least ``min_offset``
  away. The displacement of each match votes in a coarse bin; a bin's matches that
  lie together on the page form one candidate, and an affine map (target ->
  source) is fitted to them by trimmed least squares, so rotated and scaled copies
  give one candidate, not a scatter. On a text page most candidates are repeated
  glyphs and words: the noise test, not this step, tells them apart.
* **Noise peaks** (:func:`noise_peaks`): the circular autocorrelation of the
  normalised residual (one FFT) peaks at the displacement of any translated copy,
  textured or not: this is what finds a patch of blank paper pasted over text,
  which has no content to match. JPEG's 8x8 grid and periodic layouts lift whole
  lattices of displacements, so each value is compared with the mean of its four
  neighbours 8 px away before the peaks are picked.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import fft, ndimage
from scipy.spatial import cKDTree

from scanlab.core.copymove.fields import BLOCK, BlockFeatures

K_NEIGHBOURS = 4
MAX_FEATURE_DISTANCE = 0.8  # features are contrast-normalised DCT coefficients (block energy <= 4)
BIN = 8  # work pixels: displacement bin of the vote
MIN_VOTES = 3


@dataclass
class Candidate:
    """A possible copy: target region and the map from target to source coordinates."""

    box: tuple[int, int, int, int]  # target (y0, x0, y1, x1), full resolution, y1/x1 exclusive
    transform: np.ndarray  # (2, 3): source (y, x) = A @ (y, x, 1) of a target pixel
    votes: int
    origin: str  # "content" or "noise"

    @property
    def is_translation(self) -> bool:
        """True when the linear part is the identity (within 1e-6)."""
        return bool(np.allclose(self.transform[:, :2], np.eye(2), atol=1e-6))


def _translation(dy: float, dx: float) -> np.ndarray:
    return np.array([[1.0, 0.0, dy], [0.0, 1.0, dx]])


def _fit_affine(tgt: np.ndarray, src: np.ndarray) -> np.ndarray:
    """Trimmed least-squares affine src = A @ (tgt, 1); a translation when too few points or near-identity."""
    t = np.median(src - tgt, axis=0)
    if len(tgt) < 8 or np.ptp(src - tgt, axis=0).max() <= 4:  # offsets agree: a translation
        return _translation(*t)
    keep = np.ones(len(tgt), bool)
    a = _translation(*t)
    for _ in range(3):  # drop the worst quarter of residuals, refit
        x = np.c_[tgt[keep], np.ones(keep.sum())]
        sol, *_ = np.linalg.lstsq(x, src[keep], rcond=None)
        a = sol.T
        err = np.linalg.norm(np.c_[tgt, np.ones(len(tgt))] @ a.T - src, axis=1)
        keep = err <= np.quantile(err, 0.75) + 1e-9
    lin = a[:, :2]
    # only rotations and scalings of a few percent are modelled; anything else is a bad fit
    if np.abs(lin - np.eye(2)).max() < 0.012 or np.abs(lin - np.eye(2)).max() > 0.2:
        return _translation(*np.median(src[keep] - tgt[keep], axis=0))
    return a


def content_candidates(
    bf: BlockFeatures, shape: tuple[int, int], min_offset: int, max_candidates: int,
    bin_size: int = BIN, tile: int = 4 * BLOCK, min_votes: int = MIN_VOTES, affine_only: bool = False,
) -> list[Candidate]:
    """Candidates from block-feature matches (see module docstring), most votes first."""
    n = len(bf.ys)
    if n < 2:
        return []
    tree = cKDTree(bf.features)
    k = min(K_NEIGHBOURS + 1, n)
    _, idx = tree.query(bf.features, k=k, distance_upper_bound=MAX_FEATURE_DISTANCE, workers=-1)
    f = bf.factor
    pos = np.c_[bf.ys, bf.xs].astype(np.float64)
    i = np.repeat(np.arange(n), k).reshape(n, k)[:, 1:].ravel()
    j = idx[:, 1:].ravel()
    ok = j < n  # missing neighbours come back as index n
    i, j = i[ok], j[ok]
    d = pos[j] - pos[i]
    far = np.hypot(d[:, 0], d[:, 1]) * f >= min_offset
    i, j, d = i[far], j[far], d[far]
    # one orientation per pair: the displacement points "down" (or right on the same row)
    flip = (d[:, 0] < 0) | ((d[:, 0] == 0) & (d[:, 1] < 0))
    i, j = np.where(flip, j, i), np.where(flip, i, j)
    d[flip] = -d[flip]
    if len(i) == 0:
        return []
    # one vote per match in (displacement bin, place on the page): matches further apart
    # than a tile are separate candidates (a glyph pair here, another one there)
    kb = np.floor(d / bin_size).astype(np.int64)
    kt = (pos[i] // tile).astype(np.int64)
    key = (((kb[:, 0] + 4096) * 16384 + (kb[:, 1] + 8192)) * 4096 + kt[:, 0]) * 4096 + kt[:, 1]
    uniq, inv, counts = np.unique(key, return_inverse=True, return_counts=True)
    good = np.flatnonzero(counts >= min_votes)
    if good.size == 0:
        return []
    good = good[np.argsort(-counts[good], kind="stable")][:max_candidates]
    order = np.argsort(inv, kind="stable")
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    out: list[Candidate] = []
    half = BLOCK * f / 2.0
    h, w = shape
    for g in good:
        members = order[starts[g] : starts[g] + counts[g]]
        tp = pos[i[members]] * f + half
        sp = pos[j[members]] * f + half
        a = _fit_affine(tp, sp)
        if affine_only and np.allclose(a[:, :2], np.eye(2)):
            continue
        y0, x0 = np.maximum(tp.min(axis=0) - half - 8, 0).astype(int)
        y1 = int(min(h, tp[:, 0].max() + half + 8))
        x1 = int(min(w, tp[:, 1].max() + half + 8))
        out.append(Candidate((int(y0), int(x0), y1, x1), a, int(counts[g]), "content"))
    out.sort(key=lambda c: -c.votes)
    return out[:max_candidates]


def noise_peaks(field: np.ndarray, min_offset: int, max_peaks: int, min_z: float) -> list[Candidate]:
    """Translated-copy candidates from the residual's autocorrelation (see module docstring)."""
    h, w = field.shape
    spec = fft.rfft2(field, workers=-1)
    ac = fft.irfft2(spec * np.conj(spec), s=(h, w), workers=-1).astype(np.float32)
    del spec
    bg = (np.roll(ac, 8, 0) + np.roll(ac, -8, 0) + np.roll(ac, 8, 1) + np.roll(ac, -8, 1)) / 4
    s = ac - bg
    del ac, bg
    # displacements (dy, dx) with dy in [0, h/2): the other half is the same pairs swapped
    s = s[: h // 2]
    yy = np.arange(s.shape[0])[:, None]
    xx = np.arange(w)[None, :]
    dx = np.where(xx > w // 2, xx - w, xx)
    s[(yy**2 + dx**2) < min_offset**2] = 0.0
    s[0, w // 2 :] = 0.0  # dy = 0: keep dx > 0 only
    med = float(np.median(s[::3, ::3]))
    mad = float(np.median(np.abs(s[::3, ::3] - med))) * 1.4826 + 1e-12
    z = (s - med) / mad
    peaks = (z >= min_z) & (z == ndimage.maximum_filter(z, 5, mode="wrap"))
    py, px = np.nonzero(peaks)
    order = np.argsort(-z[py, px])[:max_peaks]
    out = []
    for k in order:
        dy, ddx = int(py[k]), int(dx[0, px[k]])
        # target x, source x + (dy, dx): the box is wherever both lie inside the scan
        y0, y1 = 0, h - dy
        x0, x1 = max(0, -ddx), min(w, w - ddx)
        out.append(Candidate((y0, x0, y1, x1), _translation(dy, ddx), int(z[py[k], px[k]]), "noise"))
    return out
