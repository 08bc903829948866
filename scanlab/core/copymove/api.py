"""The copy-move layer: one function from a scan's pixels to a score map and a list of pairs.

:func:`detect_copymove` runs the steps of this package in order: the normalised
noise residual and the block features (:mod:`.fields`), the candidates
(:mod:`.candidates`), the inflation of the null measured on the scan, the
noise-residual test of every candidate (:mod:`.detect`), and the merge of
duplicate findings into pairs.

The score map is (H, W) float32 in [0, 1]: NaN where the no-signal rule
(:mod:`scanlab.core.engine.nosignal`) finds no evidence in any 64x64 window
covering the pixel (flat or clipped paper carries no noise to compare);
``0.5 + 0.5 * rho`` on both ends of every reported pair (so >= 0.5 exactly there);
elsewhere ``0.49 * max(0, rho)`` of the best tested candidate window, a hint that
never reaches the reporting level.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from scanlab.core.copymove import detect as dt
from scanlab.core.copymove.candidates import Candidate, content_candidates, noise_peaks
from scanlab.core.copymove.fields import block_features, grey, residual
from scanlab.core.engine.nosignal import DEFAULT_RULE, EvidenceRule, window_evidence
from scanlab.core.errors import ScanLabError
from scanlab.core.io.imaging import full_scale
from scanlab.core.jobs import CancelToken, ProgressFn, check, report

MIN_OFFSET = 24  # px: nearer displacements are texture, not a copy the test can tell
MAX_CANDIDATES = 1500
MAX_PEAKS = 12
PEAK_Z = 6.0
_NULL_OFFSETS = ((57, 131), (-93, 71), (211, -37), (13, 263))


@dataclass
class CopyMovePair:
    """One reported copy: two regions of the same scan that share their noise.

    The test cannot say which end is the original; ``source`` is the end that
    ``transform`` maps to: source (y, x) = transform @ (y, x, 1) of a target pixel.
    """

    source_box: tuple[int, int, int, int]  # y, x, h, w
    target_box: tuple[int, int, int, int]
    source_mask: np.ndarray = field(repr=False)  # bool, source_box-sized
    target_mask: np.ndarray = field(repr=False)  # bool, target_box-sized
    transform: np.ndarray = field(repr=False)  # (2, 3)
    correlation: float = 0.0
    z: float = 0.0
    p_value: float = 1.0
    origin: str = "content"

    @property
    def area(self) -> int:
        """Pixels of the target end."""
        return int(self.target_mask.sum())

    def to_json(self) -> dict:
        """Plain-JSON description (boxes as [y, x, h, w])."""
        a = self.transform
        return {
            "source_box": list(self.source_box), "target_box": list(self.target_box), "area": self.area,
            "transform": np.round(a, 4).tolist(),
            "rotation_deg": float(np.degrees(np.arctan2(a[0, 1], a[0, 0]))),
            "scale": float(np.sqrt(abs(np.linalg.det(a[:, :2])))),
            "correlation": round(self.correlation, 4), "z": round(self.z, 2), "p_value": self.p_value,
            "found_by": self.origin,
        }


@dataclass
class CopyMoveResult:
    """Score map, pairs and what was examined."""

    score: np.ndarray = field(repr=False)  # (H, W) float32, NaN = no evidence
    no_evidence: np.ndarray = field(repr=False)  # (H, W) bool
    pairs: list[CopyMovePair]
    n_candidates: int
    n_tests: int
    inflation: float
    noise_level: float
    compute_s: float
    z_bar: float = 0.0  # the pair-level bar this scan's same-content null set

    def summary(self) -> dict:
        """The ``copymove`` block of ``classify --json``: counts, largest and strongest pair."""
        largest = max(self.pairs, key=lambda p: p.area, default=None)
        strongest = max(self.pairs, key=lambda p: p.z, default=None)
        return {
            "n_pairs": len(self.pairs),
            "largest": largest.to_json() if largest else None,
            "strongest": strongest.to_json() if strongest else None,
            "n_candidates": self.n_candidates,
            "compute_s": round(self.compute_s, 3),
        }


def evidence_pixels(image: np.ndarray, rule: EvidenceRule = DEFAULT_RULE) -> np.ndarray:
    """(H, W) bool: a 64x64 window on the stride-16 grid that covers the pixel has evidence."""
    h, w = image.shape[:2]
    if h < 64 or w < 64:
        return np.zeros((h, w), bool)
    ys = np.unique(np.r_[np.arange(0, h - 63, 16), h - 64])
    xs = np.unique(np.r_[np.arange(0, w - 63, 16), w - 64])
    ev = window_evidence(image, ys, xs, rule)
    out = np.zeros((h, w), np.int32)
    # paint each evidence window (vectorised as a 2-D difference array)
    d = np.zeros((h + 1, w + 1), np.int32)
    yy, xx = np.nonzero(ev)
    np.add.at(d, (ys[yy], xs[xx]), 1)
    np.add.at(d, (ys[yy] + 64, xs[xx]), -1)
    np.add.at(d, (ys[yy], xs[xx] + 64), -1)
    np.add.at(d, (ys[yy] + 64, xs[xx] + 64), 1)
    out = d.cumsum(0).cumsum(1)[:h, :w]
    return out > 0


def detect_copymove(
    image: np.ndarray,
    *,
    rule: EvidenceRule = DEFAULT_RULE,
    alpha: float = dt.ALPHA,
    cancel: CancelToken | None = None,
    progress: ProgressFn | None = None,
) -> CopyMoveResult:
    """Find regions of a scan copied from elsewhere in the same scan.

    Parameters
    ----------
    image : ndarray
        The decoded scan: uint8/uint16 (H, W, 3) or (H, W).
    rule : EvidenceRule
        The no-signal rule that decides where the map is NaN.
    alpha : float
        Family-wise level of the pair test (Bonferroni over the components examined).
    cancel, progress
        Cooperative cancel token and ``progress(done, total)`` callback.

    Returns
    -------
    CopyMoveResult
    """
    t0 = time.perf_counter()
    if image.ndim not in (2, 3) or image.shape[0] < 64 or image.shape[1] < 64:
        raise ScanLabError(f"copy-move: need an image of at least 64x64 pixels, got shape {tuple(image.shape)}")
    h, w = image.shape[:2]
    total = 6
    report(progress, 0, total)
    g = grey(image)
    res = residual(g, 255.0)
    ev = evidence_pixels(image if image.ndim == 3 else np.repeat(image[:, :, None], 3, 2), rule)
    check(cancel)
    report(progress, 1, total)
    bf = block_features(g)
    cands = content_candidates(bf, (h, w), MIN_OFFSET, MAX_CANDIDATES)
    # rotated or scaled copies: their displacements spread over several fine bins, so
    # coarse groups are fitted again and kept only when the fit is not a translation
    cands += content_candidates(bf, (h, w), MIN_OFFSET, 15, bin_size=24, tile=256, min_votes=12,
                                affine_only=True)
    check(cancel)
    report(progress, 2, total)
    peaks = noise_peaks(res.field, MIN_OFFSET, MAX_PEAKS, PEAK_Z) if res.noise_level > 0 else []
    report(progress, 3, total)
    # the null's spread: fixed displacements of the whole scan, then every content candidate
    null_z = []
    for dy, dx in _NULL_OFFSETS:
        if abs(dy) < h // 2 and abs(dx) < w // 2:
            c = Candidate((max(0, -dy), max(0, -dx), min(h, h - dy), min(w, w - dx)), np.array([[1.0, 0, dy], [0, 1.0, dx]]), 0, "null")
            cs = dt.cell_stats(res.field, res.weight, c.transform, c.box)
            if cs is not None:
                null_z.append(cs.boxed()[1][::2, ::2].ravel())
    tested: list[tuple[Candidate, np.ndarray, dt.CellStats, tuple[np.ndarray, np.ndarray]]] = []
    factor = bf.factor
    for k, c in enumerate(cands + peaks):
        if k % 64 == 0:
            check(cancel)
        a = dt.refine(res.field, res.weight, c, factor + 1) if c.origin == "content" else c.transform
        cs = dt.cell_stats(res.field, res.weight, a, c.box)
        if cs is None:
            continue
        boxed = cs.boxed()
        tested.append((c, a, cs, boxed))
        if c.origin == "content":
            null_z.append(boxed[1].ravel())
    report(progress, 4, total)
    zs = np.concatenate(null_z) if null_z else np.zeros(0)
    inflation = max(1.0, dt.robust_spread(zs))
    comps = [comp for c, a, cs, bx in tested for comp in dt.components(cs, c, a, inflation, bx)]
    n_tests = max(1, len(comps))
    hint = np.zeros((h // dt.CELL + 1, w // dt.CELL + 1), np.float32)
    for _c, _a, cs, (rb, _z) in tested:
        sl = (slice(cs.y0, cs.y0 + rb.shape[0]), slice(cs.x0, cs.x0 + rb.shape[1]))
        np.maximum(hint[sl], np.clip(rb, 0, 1), out=hint[sl])
    # same-content null at the pair level: the components of the content candidates,
    # nearly all repeated glyphs and words printed once (see detect's module docstring)
    # the null: content components, one value per displacement (the strongest), so that
    # a large copy split into many components counts once; a component is never
    # compared with displacements within 4 px of its own
    per: dict[tuple[int, int], float] = {}
    for c in comps:
        if c.cand.origin == "content":
            key = (int(round(c.transform[0, 2])), int(round(c.transform[1, 2])))
            per[key] = max(per.get(key, -np.inf), c.z_raw / inflation)
    keys = np.array(list(per.keys()), dtype=np.float64).reshape(-1, 2)
    vals = np.array(list(per.values()))
    pairs = []
    for comp in comps:
        z = comp.z_raw / inflation
        if z < dt.Z_PAIR_MIN or comp.rho < dt.RHO_MIN:
            continue
        far = np.abs(keys - comp.transform[:, 2][None, :]).max(axis=1) > 4 if len(keys) else np.zeros(0, bool)
        null = vals[far]
        bar = dt.empirical_threshold(null)
        p = dt.p_value(dt.standardise(z, null), n_tests)
        if z < bar or p > alpha:
            continue
        pair = _pair(comp, z, p, (h, w))
        if pair is not None and pair.area >= dt.MIN_AREA and int(pair.source_mask.sum()) >= dt.MIN_AREA:
            pairs.append(pair)
    pairs = _merge(pairs)
    report(progress, 5, total)
    score = np.where(ev, 0.49 * np.repeat(np.repeat(hint, dt.CELL, 0), dt.CELL, 1)[:h, :w], np.nan).astype(np.float32)
    for pr in pairs:
        for (y, x, bh, bw), m in ((pr.target_box, pr.target_mask), (pr.source_box, pr.source_mask)):
            sl = score[y : y + bh, x : x + bw]
            sl[m] = np.float32(0.5 + 0.5 * max(0.0, pr.correlation))
    report(progress, total, total)
    no_ev = np.isnan(score)
    return CopyMoveResult(score, no_ev, pairs, len(cands) + len(peaks), n_tests, inflation, res.noise_level,
                          time.perf_counter() - t0, dt.empirical_threshold(vals))


def _pair(comp: dt.Component, z: float, p: float, shape: tuple[int, int]) -> CopyMovePair | None:
    """Pixel masks of both ends of a component (target cells, mapped through the transform)."""
    h, w = shape
    cy, cx = np.nonzero(comp.cells)
    ty0, tx0 = (comp.stats.y0 + cy.min()) * dt.CELL, (comp.stats.x0 + cx.min()) * dt.CELL
    cells = comp.cells[cy.min() : cy.max() + 1, cx.min() : cx.max() + 1]
    tmask = np.repeat(np.repeat(cells, dt.CELL, 0), dt.CELL, 1)[: h - ty0, : w - tx0]
    a = comp.transform
    yy, xx = np.nonzero(tmask)
    sy = a[0, 0] * (yy + ty0) + a[0, 1] * (xx + tx0) + a[0, 2]
    sx = a[1, 0] * (yy + ty0) + a[1, 1] * (xx + tx0) + a[1, 2]
    sy, sx = np.rint(sy).astype(int), np.rint(sx).astype(int)
    ok = (sy >= 0) & (sy < h) & (sx >= 0) & (sx < w)
    if not ok.any():
        return None
    sy, sx = sy[ok], sx[ok]
    sy0, sx0 = int(sy.min()), int(sx.min())
    smask = np.zeros((int(sy.max()) - sy0 + 1, int(sx.max()) - sx0 + 1), bool)
    smask[sy - sy0, sx - sx0] = True
    smask = ndimage.binary_closing(smask, np.ones((3, 3)), border_value=0) | smask  # fill resampling holes
    return CopyMovePair(
        (sy0, sx0, smask.shape[0], smask.shape[1]), (int(ty0), int(tx0), tmask.shape[0], tmask.shape[1]),
        smask, tmask.astype(bool), a, comp.rho, float(z), p, comp.cand.origin,
    )


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def _merge(pairs: list[CopyMovePair]) -> list[CopyMovePair]:
    """Keep the strongest of pairs that describe the same copy (overlapping ends, either way round)."""
    out: list[CopyMovePair] = []
    for p in sorted(pairs, key=lambda q: -q.z):
        same = any(
            (_overlap(p.target_box, q.target_box) and _overlap(p.source_box, q.source_box))
            or (_overlap(p.target_box, q.source_box) and _overlap(p.source_box, q.target_box))
            for q in out
        )
        if not same:
            out.append(p)
    return out


def pair_masks(result: CopyMoveResult, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Full-size boolean masks of all sources and all targets."""
    src = np.zeros(shape, bool)
    tgt = np.zeros(shape, bool)
    for p in result.pairs:
        for (y, x, bh, bw), m, out in ((p.source_box, p.source_mask, src), (p.target_box, p.target_mask, tgt)):
            out[y : y + bh, x : x + bw] |= m
    return src, tgt


__all__ = ["CopyMovePair", "CopyMoveResult", "detect_copymove", "evidence_pixels", "full_scale", "pair_masks"]
