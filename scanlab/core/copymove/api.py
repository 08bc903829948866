"""The copy-move layer: one function from a scan's pixels to a score map and a list of pairs.

:func:`detect_copymove` runs the steps of :mod:`.dup` in order: block-match
candidates on a reduced work image, the exact-duplication test of every candidate at
full resolution (``q``: SSD at the best integer shift over SSD one pixel away), the
scan's own null of same-content pairs, and the merge of accepted candidates into pairs.

The null is conditioned on the displacement (16 classes, :func:`_grid_class`): along
each axis, whether it is zero and whether it is a multiple of 8. Two regions whose
displacement is a multiple of 8 along an axis were quantised in the same phase of
JPEG's 8x8 grid along it; two regions on the same row (or column) of a flatbed scan
share the sensor's column sampling (or the motor's row phase), so repeated glyphs there
are as identical as a copy. A candidate is compared only with the scan's other
candidates of its class, never with those at its own displacement (its own copy's other
parts). The bar depends on the candidate:

* a large candidate (``LARGE_VOTES`` matched blocks or more: a word, a stamp, a
  signature) whose ends share neither a row nor a column: ``q <= min(LARGE_MAX_Q,
  LARGE_MARGIN x`` the lowest ``q`` of its class's null). Authentic repeats that large
  and that identical are rare off the rows and columns, so the bar need not sit far
  below the null's extreme;
* any other candidate (single glyphs, same-row or same-column repeats): ``q <=
  min(MAX_Q, MARGIN x`` the lowest ``q`` of its class's null).

A candidate that also repeats at -d, 2d or d/2 (:func:`.dup.periodicity`: table rules,
ruled forms) is the content's own period, not a copy, and is not reported. Thresholds
were chosen on dev forgeries (seeds 7, 11, 13, 17), never on the benchmark's seed 0.
A pair's masks are the rectangle its identical content spans, grown by ``MASK_PAD``
(the paper moved with it), less what clearly differs at the displacement.

The integer-shift test cannot model a copy that was rotated or scaled before it was
pasted; the geometric stage (:mod:`.geo`, ``geometric=True``) refits the most-voted
candidates with a similarity and reports those whose fitted rotation or scale is
non-trivial and that the similarity explains far better than the scan's other
candidates (``found_by`` "geometric"; ``transform`` carries the similarity, so
``rotation_deg`` and ``scale`` of :meth:`CopyMovePair.to_json` are the fitted ones).

At JPEG 75 the re-save error is as large as two glyph prints' phase difference and ``q``
of a copy does not fall below the null. When the caller passes the file's
``jpeg_quality`` (the service does, for a JPEG with standard tables) and it is
``jpegid.MAX_QUALITY`` or lower, the most-voted large candidates the shift test left are
re-tested for JPEG consistency (:mod:`.jpegid`: one pre-save region that both ends'
quantisation cells admit), and reported (``found_by`` "jpeg") when consistent over many
more content blocks than any candidate at another displacement (:func:`.jpegid.select`).

The score map is (H, W) float32 in [0, 1]: NaN where the no-signal rule
(:mod:`scanlab.core.engine.nosignal`) finds no evidence in any 64x64 window
covering the pixel; ``0.5 + 0.5 * strength`` on both ends of every reported pair (so
>= 0.5 exactly there); elsewhere ``0.49 * q_null / (q + q_null)`` of the best tested
candidate covering the pixel, a hint that never reaches the reporting level.
Blank paper carries no content for the candidate search and is not examined.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from scanlab.core.copymove import dup, geo, jpegid
from scanlab.core.copymove.fields import grey
from scanlab.core.engine.nosignal import DEFAULT_RULE, EvidenceRule, window_evidence
from scanlab.core.errors import ScanLabError
from scanlab.core.io.imaging import full_scale
from scanlab.core.jobs import CancelToken, ProgressFn, check, report

MIN_OFFSET = 12  # px: a digit copied just after its own line's last digit lies one advance away
MARGIN = 0.16  # a candidate's q must be below MARGIN x the lowest q of its class's null
MAX_Q = 0.005  # ... and below this whatever the null (a copy differs by the re-save alone)
# a large candidate at a displacement sharing neither a row nor a column (see _grid_class):
LARGE_VOTES = 30  # matched blocks (work grid) from which a candidate counts as large (a word, a stamp)
LARGE_MARGIN = 0.5  # its q must be below LARGE_MARGIN x the lowest q of its class's null
LARGE_MAX_Q = 0.03  # ... and below this
MIN_NULL = 20  # a class null smaller than this borrows the pooled null of all classes
MIN_AREA = 64  # px: smaller ends are not reported
GROW = 48  # px: how far beyond its matched blocks a pair's mask may reach
MASK_PAD = 2  # px: how far the copied paper reaches beyond the identical content
MASK_DIFF = 50.0  # 8-bit levels^2: local mean squared difference above which a pixel is not part of the copy
TEXTURE = 25.0  # mean squared gradient (8-bit levels^2 per px^2) above which a region is textured


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
    q: float = 1.0  # SSD at the copy's shift / SSD one pixel off (see .dup): ~0 for a copy
    q_null: float = 1.0  # the lowest q of the scan's same-content null of the pair's class

    @property
    def area(self) -> int:
        """Pixels of the target end."""
        return int(self.target_mask.sum())

    @property
    def rotation_deg(self) -> float:
        """Rotation of ``transform`` in degrees (0 for a shifted copy)."""
        return float(np.degrees(np.arctan2(self.transform[0, 1], self.transform[0, 0])))

    @property
    def scale(self) -> float:
        """Scale of ``transform`` (1 for a shifted copy)."""
        return float(np.sqrt(abs(np.linalg.det(self.transform[:, :2]))))

    def to_json(self) -> dict:
        """Plain-JSON description (boxes as [y, x, h, w])."""
        return {
            "source_box": list(self.source_box), "target_box": list(self.target_box), "area": self.area,
            "transform": np.round(self.transform, 4).tolist(),
            "rotation_deg": self.rotation_deg,
            "scale": self.scale,
            "correlation": round(self.correlation, 4), "z": round(self.z, 2), "p_value": self.p_value,
            "found_by": self.origin, "q": round(self.q, 5), "q_null": round(self.q_null, 5),
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
    alpha: float = 1e-3,
    geometric: bool = True,
    jpeg_quality: int | None = None,
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
        Largest empirical p-value (rank of ``q`` in the scan's own null) of a reported pair.
    geometric : bool
        Run the geometric stage (:mod:`.geo`: rotated or scaled copies) after the shift test.
    jpeg_quality : int or None
        The IJG quality of the file the pixels were decoded from (standard tables), when it
        is a JPEG. At ``jpegid.MAX_QUALITY`` or lower, large candidates the shift test
        leaves are re-tested for JPEG consistency (:mod:`.jpegid`, ``found_by`` "jpeg").
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
    total = 4
    report(progress, 0, total)
    g = grey(image)
    ev = evidence_pixels(image if image.ndim == 3 else np.repeat(image[:, :, None], 3, 2), rule)
    check(cancel)
    report(progress, 1, total)
    cands, f = dup.candidates(g, MIN_OFFSET)
    check(cancel)
    report(progress, 2, total)
    gy, gx = np.gradient(g)
    grad2 = gy * gy + gx * gx
    del gy, gx
    # the coarse search steps by f pixels: a box of f pixels keeps its SSD smooth at that step
    blur = ndimage.uniform_filter(g, f + 1) if f > 1 else ndimage.uniform_filter(g, 2)
    dup.test_candidates(g, grad2, blur, cands, f, MIN_OFFSET, cancel=cancel)
    del blur
    report(progress, 3, total)
    tested = [c for c in cands if np.isfinite(c.q)]
    qs = np.array([c.q for c in tested])
    cls = np.array([_grid_class(c) for c in tested], dtype=np.int64).reshape(-1)
    dyx = np.array([(c.dy, c.dx) for c in tested], dtype=np.int64).reshape(-1, 2)
    accepted: list[tuple[dup.DupCandidate, float, float]] = []
    hint = np.zeros((h, w), np.float32)
    q_bar = np.inf
    for i, c in enumerate(tested):
        # the null: the scan's other candidates of the same JPEG-grid class, never this displacement
        null = _class_null(i, qs, cls, dyx)
        q0 = float(null.min()) if null.size else np.inf
        y0, x0, y1, x1 = c.box
        v = np.float32(0.49 * q0 / max(c.q + q0, 1e-12)) if np.isfinite(q0) else np.float32(0.49)
        np.maximum(hint[y0:y1, x0:x1], v, out=hint[y0:y1, x0:x1])
        bar = min(LARGE_MAX_Q, LARGE_MARGIN * q0) if _large_generic(c) else min(MAX_Q, MARGIN * q0)
        if null.size >= MIN_NULL:
            q_bar = min(q_bar, bar)
        p = float((1 + np.count_nonzero(null <= c.q)) / (1 + null.size))
        if (null.size >= MIN_NULL and c.q <= bar and p <= max(alpha, 1.0 / (1 + null.size))
                and dup.periodicity(g, grad2, c) >= dup.PERIODIC):
            accepted.append((c, q0, p))
    pairs = _pairs(g, grad2, accepted, (h, w))
    check(cancel)
    if jpeg_quality is not None and int(jpeg_quality) <= jpegid.MAX_QUALITY and image.dtype == np.uint8:
        done = {id(c) for c, _, _ in accepted}
        pairs = _merge(pairs + _jpeg_pairs(g, grad2, image, int(jpeg_quality), tested, qs, cls, dyx, done))
        check(cancel)
    if geometric:
        pairs = _merge(pairs + _geo_pairs(g, grad2, cands, jpeg_quality))
    report(progress, 4, total)
    score = np.where(ev, hint, np.nan).astype(np.float32)
    for pr in pairs:
        for (y, x, bh, bw), m in ((pr.target_box, pr.target_mask), (pr.source_box, pr.source_mask)):
            sl = score[y : y + bh, x : x + bw]
            sl[m] = np.float32(0.5 + 0.5 * min(1.0, pr.z / 4.0))
    report(progress, total, total)
    no_ev = np.isnan(score)
    noise = float(np.median(np.abs(g[1::4, 1::4] - g[::4, ::4]))) if h > 8 and w > 8 else 0.0
    return CopyMoveResult(score, no_ev, pairs, len(cands), len(tested), 1.0, noise,
                          time.perf_counter() - t0, float(q_bar) if np.isfinite(q_bar) else 0.0)


def _class_null(i: int, qs: np.ndarray, cls: np.ndarray, dyx: np.ndarray) -> np.ndarray:
    """The ``q`` null of tested candidate ``i``: the scan's other candidates of its class, never its own
    displacement (its copy's other parts); the pooled null of all classes when its class has fewer than
    ``MIN_NULL``."""
    other = np.abs(dyx - dyx[i]).max(axis=1) > 2
    null = qs[other & (cls == cls[i])]
    return null if null.size >= MIN_NULL else qs[other]


def _grid_class(c: dup.DupCandidate) -> int:
    """0..15: whether the displacement is zero along y, along x, a multiple of 8 (JPEG's block) along y, along x."""
    return int(c.dy == 0) * 8 + int(c.dx == 0) * 4 + int(c.dy % 8 == 0) * 2 + int(c.dx % 8 == 0)


def _large_generic(c: dup.DupCandidate) -> bool:
    """A large candidate (a word, a stamp) whose ends share neither a row nor a column of the scan."""
    return c.votes >= LARGE_VOTES and c.dy != 0 and c.dx != 0


def _pairs(g: np.ndarray, grad2: np.ndarray, accepted: list, shape: tuple[int, int]) -> list[CopyMovePair]:
    """Merge accepted candidates that share a displacement into pairs and cut their masks (:func:`_cut`)."""
    h, w = shape
    groups: list[list] = []
    for item in sorted(accepted, key=lambda t: t[0].q):
        c = item[0]
        for grp in groups:
            g0 = grp[0][0]
            if abs(g0.dy - c.dy) <= 1 and abs(g0.dx - c.dx) <= 1:
                grp.append(item)
                break
        else:
            groups.append([item])
    out = []
    edge_thr = float(np.percentile(grad2[::4, ::4], 90))
    for grp in groups:
        best, q0, p = grp[0]
        dy, dx = best.dy, best.dx
        # a window around the matched blocks: a copy may reach beyond the blocks that matched
        y0 = max(0, min(c.box[0] for c, _, _ in grp) - GROW, -dy)
        x0 = max(0, min(c.box[1] for c, _, _ in grp) - GROW, -dx)
        y1 = min(h, max(c.box[2] for c, _, _ in grp) + GROW, h - dy)
        x1 = min(w, max(c.box[3] for c, _, _ in grp) + GROW, w - dx)
        if y1 - y0 < 8 or x1 - x0 < 8:
            continue
        t = g[y0:y1, x0:x1]
        s = g[y0 + dy : y1 + dy, x0 + dx : x1 + dx]
        gmax = np.maximum(grad2[y0:y1, x0:x1], grad2[y0 + dy : y1 + dy, x0 + dx : x1 + dx])
        seed = np.zeros(t.shape, bool)
        for c, _, _ in grp:  # the matched blocks
            seed[max(0, c.box[0] - y0) : c.box[2] - y0, max(0, c.box[1] - x0) : c.box[3] - x0] = True
        m = _cut(t, s, gmax, seed, best.level, edge_thr)
        if m is None:
            continue
        ys, xs = np.nonzero(m)
        by0, bx0, by1, bx1 = int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1
        mm = m[by0:by1, bx0:bx1]
        ty, tx = y0 + by0, x0 + bx0
        a = np.array([[1.0, 0.0, float(dy)], [0.0, 1.0, float(dx)]])
        ts, ss = t[m] - ndimage.uniform_filter(t, 3)[m], s[m] - ndimage.uniform_filter(s, 3)[m]
        rho = float(ts @ ss / np.sqrt(max(float(ts @ ts) * float(ss @ ss), 1e-12)))
        strength = float(np.log2(q0 / max(best.q, 1e-9)))
        box_t = (ty, tx, mm.shape[0], mm.shape[1])
        box_s = (ty + dy, tx + dx, mm.shape[0], mm.shape[1])
        out.append(CopyMovePair(box_s, box_t, mm.copy(), mm.copy(), a, rho, strength, p, "content",
                                q=float(best.q), q_null=float(q0)))
    return _merge(out)


def _jpeg_pairs(g: np.ndarray, grad2: np.ndarray, image: np.ndarray, quality: int, tested: list,
                qs: np.ndarray, cls: np.ndarray, dyx: np.ndarray, done: set) -> list[CopyMovePair]:
    """Pairs of the JPEG-consistency test (:func:`.jpegid.select`), ``found_by`` "jpeg"."""
    h, w = g.shape
    out = []
    for i, k, k0, p in jpegid.select(image, quality, tested, dyx, done):
        c = tested[i]
        if dup.periodicity(g, grad2, c) < dup.PERIODIC:
            continue
        null = _class_null(i, qs, cls, dyx)
        q0 = float(null.min()) if null.size else 1.0
        for pr in _pairs(g, grad2, [(c, q0, p)], (h, w)):
            pr.origin = "jpeg"
            pr.z = jpegid.strength(k, k0)
            out.append(pr)
    return out


def _cut(t: np.ndarray, s: np.ndarray, gmax: np.ndarray, seed: np.ndarray, level: float, edge_thr: float):
    """The mask (window-sized) of a copy's target end, ``t`` aligned with its source ``s``; None when too small.

    Where, inside the window, the content (the gradient ``gmax`` of either end, dilated by a
    few pixels) lies and the aligned difference stays at the level of the accepted samples,
    connected to the matched ``seed``; then the rectangle that content spans, grown by
    ``MASK_PAD`` (the paper moved with it), less what clearly differs.
    """
    # content: strong edges (dilated a little) or texture; blank paper is neither, so a
    # copy's mask does not spread over the paper around it, which matches anyway
    content = ndimage.binary_dilation(gmax > edge_thr, iterations=3) | (ndimage.uniform_filter(gmax, 7) > TEXTURE)
    local = ndimage.uniform_filter((t - s) ** 2, 5)
    same = local <= 4.0 * max(level, 1e-3) * np.maximum(ndimage.uniform_filter(gmax, 5), 1.0)
    # (bit-identical neighbourhoods count whatever their content: paper never repeats exactly)
    m = ndimage.binary_closing(same & (content | (local < 1e-6)), np.ones((5, 5)), border_value=0)
    lab, n = ndimage.label(m)
    keep = np.unique(lab[seed & m])
    m = ndimage.binary_fill_holes(np.isin(lab, keep[keep > 0]))
    if m.sum() < MIN_AREA:
        return None
    ys, xs = np.nonzero(m & content)  # (clipped paper is bit-identical anywhere: it spans nothing)
    if len(ys) == 0:
        return None
    rect = np.zeros_like(m)
    rect[max(0, ys.min() - MASK_PAD) : ys.max() + 1 + MASK_PAD, max(0, xs.min() - MASK_PAD) : xs.max() + 1 + MASK_PAD] = True
    return ndimage.binary_opening(rect & (local <= MASK_DIFF), np.ones((3, 3))) | m


def _geo_pairs(g: np.ndarray, grad2: np.ndarray, cands: list, jpeg_quality: int | None = None) -> list[CopyMovePair]:
    """Pairs of the geometric stage (:mod:`.geo`): rotated or scaled copies, ``found_by`` "geometric"."""
    h, w = g.shape
    gb = ndimage.gaussian_filter(g, geo.BLUR)
    sc = geo.screen(g, grad2, gb, cands)
    edge_thr = float(np.percentile(grad2[::4, ::4], 90))
    out = []
    for r in geo.verify(g, grad2, gb, sc, jpeg_quality):
        if not r["accepted"]:
            continue
        a = r["affine"]
        y0, x0, y1, x1 = r["box"]
        win = (max(0, y0 - GROW), max(0, x0 - GROW), min(h, y1 + GROW), min(w, x1 + GROW))
        t = g[win[0] : win[2], win[1] : win[3]]
        s = geo.warped_source(g, a, win)
        gmax = np.maximum(grad2[win[0] : win[2], win[1] : win[3]], np.maximum(geo.warped_source(grad2, a, win), 0.0))
        seed = np.zeros(t.shape, bool)
        seed[y0 - win[0] : y1 - win[0], x0 - win[1] : x1 - win[1]] = True
        m = _cut(t, s, gmax, seed, r["level"], edge_thr)
        if m is None:
            continue
        ys, xs = np.nonzero(m)
        by0, bx0, by1, bx1 = int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1
        mm = m[by0:by1, bx0:bx1]
        box_t = (win[0] + by0, win[1] + bx0, by1 - by0, bx1 - bx0)
        box_s, ms = geo.preimage(a, box_t, mm, (h, w))
        if ms.sum() < MIN_AREA:
            continue
        ts, ss = t[m] - ndimage.uniform_filter(t, 3)[m], s[m] - ndimage.uniform_filter(s, 3)[m]
        rho = float(ts @ ss / np.sqrt(max(float(ts @ ts) * float(ss @ ss), 1e-12)))
        s0 = r["s_null"] if np.isfinite(r["s_null"]) else geo.max_s(jpeg_quality) / geo.MARGIN
        out.append(CopyMovePair(box_s, box_t, ms, mm.copy(), a, rho, float(np.log2(s0 / max(r["s"], 1e-12))),
                                r["p_value"], "geometric", q=r["s"], q_null=float(s0)))
    return _one_per_warped_end(out)


def _one_per_warped_end(pairs: list[CopyMovePair]) -> list[CopyMovePair]:
    """Of geometric pairs that share an end and fit the same rotation and scale (either way round),
    keep the strongest: a rotated copy fits its source and every identical print of the source's
    content alike (printed text repeats pixel for pixel), and only one of them was copied."""
    kept: list[CopyMovePair] = []
    for p in sorted(pairs, key=lambda q: -q.z):
        if not any(
            abs(abs(p.rotation_deg) - abs(k.rotation_deg)) < 0.5
            and min(abs(p.scale - k.scale), abs(p.scale - 1 / k.scale)) < 0.02
            and any(_overlap(a, b) for a in (p.target_box, p.source_box) for b in (k.target_box, k.source_box))
            for k in kept
        ):
            kept.append(p)
    return kept


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
