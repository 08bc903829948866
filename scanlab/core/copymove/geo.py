"""Geometric stage: copies that were rotated or scaled before they were pasted.

A forger's rotated or scaled copy is its source resampled by a similarity (rotation,
scale, translation), then re-compressed with the page. The integer-shift test of
:mod:`.dup` cannot model it. Printed text, on the other hand, repeats by translation
only: two prints of a glyph are related by a shift (rotation ~0, scale ~1). So each
block-match candidate (a few hundred at most, by votes) is refined, all at once, by
Gauss-Newton on its strongest-gradient pixels (blurred image first, then the scan):

* ``sim``: the best similarity, sampled with cubic convolution (``CUBIC_A`` = -1, the
  bicubic of PIL's affine transform); ``e_sim`` its mean squared residual;
* ``e_tr``: the best sub-pixel *translation* from there; ``gain = e_sim / e_tr``;
* ``qg = e_sim /`` the smallest residual with the similarity moved one pixel (8 ways):
  the analogue of ``q``, ~(re-save error / edge gradient)^2 for a copy.

A candidate whose fitted similarity is non-trivial (``|rotation| >= MIN_ROT_DEG`` or
``|scale - 1| >= MIN_SCALE``) and within the stage's scope (``MAX_ROT_DEG``,
``MAX_SCALE``: what the block features match, and text in another point size stays out)
and whose ``s = qg x gain`` is below ``SCREEN_S`` is a seed. The refined candidates near
a seed whose own fit is the same similarity form its region; it is refitted there with
more pixels and reported when its ``s`` is at most ``MAX_S`` (raised for files saved
below JPEG quality ``CAP_QUALITY``, :func:`max_s`) and ``MARGIN x`` the lowest ``s`` of
the scan's other non-trivial candidates (the scan's own null: same-content pairs whose
fit found a spurious rotation or scale; never a candidate with an end on either end of
the region, which is the copy itself seen from its other end or against another print of
its source's content), its ``qg`` at most ``MAX_QG``, and the region holds
``MIN_SUPPORT`` matched blocks (a word, a stamp; a single glyph's fit is too loose). The
refit drops the region's samples near its border that fit no similarity (its blocks
overhang the pasted area by up to a block: ``TRIM``; only in a region with ``MIN_INNER``
of its samples further inside, where the fit is vouched for), and a region that keeps
fewer than ``MIN_KEPT`` of them is not one copy. Masks: where the target matches the
warped source (``api._cut``), and that region's preimage. Thresholds were chosen on dev
forgeries (seeds 7, 11, 13, 17; the null, the trimmed refit and :func:`max_s` on seeds
19-109 as well), never on seed 0; BENCHMARKS.md has the figures.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from scanlab.core.copymove import dup
from scanlab.core.copymove.fields import BLOCK, work_factor

BLUR = 1.5  # px: Gaussian sigma of the image the coarse fit runs on
CUBIC_A = -1.0  # the cubic-convolution kernel of PIL's affine transform ("bicubic")
MIN_VOTES = 8  # candidates with fewer matched blocks are not refined
MAX_CANDIDATES = 400  # at most this many (by votes) per scan
N_SCREEN = 256  # edge pixels per candidate in the screen
N_VERIFY = 1536  # edge pixels of a seed's region in the verification
MIN_ROT_DEG = 0.5  # a non-trivial similarity rotates by at least this ...
MIN_SCALE = 0.015  # ... or scales by at least this
MAX_ROT_DEG = 8.0  # the stage's scope: the block features match copies rotated by a few degrees ...
MAX_SCALE = 0.12  # ... or scaled by about 0.9-1.1 (text in another point size is a scaled repeat)
MIN_SUPPORT = 30  # matched blocks (summed over a region's candidates): a word, a stamp, not a glyph
SCREEN_S = 0.02  # a candidate with s below this (and a non-trivial fit) is a seed
MAX_S = 0.004  # a region is reported at s <= min(MAX_S, MARGIN x the null's lowest s)
MARGIN = 0.3
CAP_QUALITY = 90  # MAX_S holds for files saved at this JPEG quality or above (see max_s)
MAX_QG = 0.1  # ... and qg below this
NEAR = 3.0  # px: a candidate belongs to a seed's region when the similarity predicts its displacement this well
SAME_M = 0.015  # two fits are the same similarity when their linear parts differ by less than this
TRIM = 9.0  # verification: samples within a block of the region's border whose squared residual exceeds TRIM x
# the region's median are dropped (a candidate's blocks overhang the pasted area by up to a block)
MIN_INNER = 0.25  # ... only in a region with at least this fraction of its samples a block or more inside its border
MIN_KEPT = 0.7  # ... and a region that keeps fewer than this fraction of its samples is not reported
REACH = 160  # px: how far from the seed's box such candidates are gathered


def _weights(f: np.ndarray, a: float = CUBIC_A) -> tuple[list, list]:
    """Cubic-convolution weights of the taps -1..2 at fraction ``f`` in [0, 1) and their derivatives in ``f``.

    The kernel is (a + 2)|t|^3 - (a + 3)|t|^2 + 1 for |t| <= 1 and a(|t|^3 - 5|t|^2 + 8|t| - 4)
    for 1 < |t| < 2; the outer taps (-1, 2) lie at |t| = 1 + f and 2 - f, the inner ones at f, 1 - f.
    """
    def near(t):
        return (t * ((a + 2) * t - (a + 3))) * t + 1

    def far(t):
        return a * (((t - 5) * t + 8) * t - 4)

    def dnear(t):
        return t * (3 * (a + 2) * t - 2 * (a + 3))

    def dfar(t):
        return a * ((3 * t - 10) * t + 8)

    g = 1.0 - f
    return [far(1.0 + f), near(f), near(g), far(1.0 + g)], [dfar(1.0 + f), dnear(f), -dnear(g), -dfar(1.0 + g)]


def sample(g: np.ndarray, y: np.ndarray, x: np.ndarray, grad: bool = True):
    """Cubic-convolution values of ``g`` at (y, x) (edge-clamped) and, with ``grad``, d/dy and d/dx."""
    h, w = g.shape
    iy, ix = np.floor(y).astype(np.int64), np.floor(x).astype(np.int64)
    wy, dwy = _weights(y - iy)
    wx, dwx = _weights(x - ix)
    cols = [np.clip(ix + j - 1, 0, w - 1) for j in range(4)]
    v, vy, vx = np.zeros(len(y)), np.zeros(len(y)), np.zeros(len(y))
    for i in range(4):
        r = np.clip(iy + i - 1, 0, h - 1)
        taps = [g[r, c] for c in cols]
        row = wx[0] * taps[0] + wx[1] * taps[1] + wx[2] * taps[2] + wx[3] * taps[3]
        v += wy[i] * row
        if grad:
            vy += dwy[i] * row
            vx += wy[i] * (dwx[0] * taps[0] + dwx[1] * taps[1] + dwx[2] * taps[2] + dwx[3] * taps[3])
    return (v, vy, vx) if grad else v


class Batch:
    """Samples of many regions at once: rows ``py, px`` of region ``cid`` (contiguous), centred at ``cen``."""

    def __init__(self, py: np.ndarray, px: np.ndarray, cid: np.ndarray, cen: np.ndarray) -> None:
        self.py, self.px, self.cid = py.astype(np.float64), px.astype(np.float64), cid
        self.starts = np.r_[0, np.nonzero(np.diff(cid))[0] + 1]
        self.count = np.diff(np.r_[self.starts, len(cid)]).astype(np.float64)
        self.u = self.py - cen[cid, 0]
        self.v = self.px - cen[cid, 1]
        self.cen = cen
        self.sc = np.sqrt(np.add.reduceat(self.u**2 + self.v**2, self.starts) / self.count).clip(1.0)

    def mean(self, a: np.ndarray) -> np.ndarray:
        return np.add.reduceat(a, self.starts) / self.count

    def warp(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Source (y, x) of the samples: c + (ty, tx) + [[1 + a, -b], [b, 1 + a]] @ (target - c)."""
        q = p[self.cid]
        c = self.cen[self.cid]
        return (c[:, 0] + q[:, 0] + (1 + q[:, 2]) * self.u - q[:, 3] * self.v,
                c[:, 1] + q[:, 1] + q[:, 3] * self.u + (1 + q[:, 2]) * self.v)

    def error(self, g: np.ndarray, t: np.ndarray, p: np.ndarray) -> np.ndarray:
        """Mean squared residual per region; inf where a sample leaves the scan."""
        sy, sx = self.warp(p)
        r = sample(g, sy, sx, grad=False) - t
        h, w = g.shape
        out = self.mean(r * r)
        off = self.mean(((sy < 1) | (sx < 1) | (sy > h - 3) | (sx > w - 3)).astype(np.float64))
        out[off > 0] = np.inf
        return out

    def fit(self, g: np.ndarray, t: np.ndarray, p0: np.ndarray, *, similarity: bool = True, iters: int = 6):
        """Gauss-Newton fit (per region) of the similarity, or of the translation alone."""
        p = p0.astype(np.float64).copy()
        best, err = p.copy(), np.full(len(p), np.inf)
        k = 4 if similarity else 2
        sc = self.sc[self.cid]
        for it in range(iters + 1):
            sy, sx = self.warp(p)
            val, gy, gx = sample(g, sy, sx)
            r = val - t
            e = self.mean(r * r)
            better = e < err
            best[better], err[better] = p[better], e[better]
            if it == iters:
                break
            jac = [gy, gx, (gy * self.u + gx * self.v) / sc, (gx * self.u - gy * self.v) / sc][:k]
            jtj = np.stack([self.mean(jac[i] * jac[j]) for i in range(k) for j in range(k)], 1).reshape(-1, k, k)
            jtr = np.stack([self.mean(jac[i] * r) for i in range(k)], 1)
            jtj += (1e-6 * np.trace(jtj, axis1=1, axis2=2) + 1e-9)[:, None, None] * np.eye(k)
            step = -np.linalg.solve(jtj, jtr[:, :, None])[:, :, 0]
            if similarity:
                step[:, 2:] /= self.sc[:, None]
            p[:, :k] += step
        h, w = g.shape
        off = self.mean(((sy < 1) | (sx < 1) | (sy > h - 3) | (sx > w - 3)).astype(np.float64))
        err[off > 0] = np.inf
        return best, err


def rotation_scale(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotation (degrees) and scale of centred parameters (n, 4)."""
    return np.degrees(np.arctan2(p[:, 3], 1 + p[:, 2])), np.hypot(1 + p[:, 2], p[:, 3])


def in_scope(rot, scale):
    """A non-trivial similarity within the stage's scope (see the constants)."""
    dev = np.abs(np.asarray(scale) - 1)
    rot = np.abs(np.asarray(rot))
    return ((rot >= MIN_ROT_DEG) | (dev >= MIN_SCALE)) & (rot <= MAX_ROT_DEG) & (dev <= MAX_SCALE)


def to_affine(p: np.ndarray, c: np.ndarray) -> np.ndarray:
    """(2, 3) affine A, source (y, x) = A @ (y, x, 1), of centred parameters ``p`` about ``c``."""
    m = np.array([[1 + p[2], -p[3]], [p[3], 1 + p[2]]])
    return np.c_[m, c + p[:2] - m @ c]


def from_affine(a: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Centred parameters about ``c`` of a similarity given as a (2, 3) affine."""
    t = a[:, :2] @ c + a[:, 2] - c
    return np.array([t[0], t[1], a[0, 0] - 1, a[1, 0]])


def _stats(b: Batch, g: np.ndarray, gb: np.ndarray, t: np.ndarray, tb: np.ndarray, p0: np.ndarray, coarse: bool):
    """Fitted similarity, its residual, qg and gain of every region of the batch (see module docstring)."""
    p = b.fit(gb, tb, p0, iters=8)[0] if coarse else p0
    p, e_sim = b.fit(g, t, p, iters=5)
    pt = p.copy()
    pt[:, 2:] = 0.0
    e_tr = b.fit(g, t, pt, similarity=False, iters=5)[1]
    nb = np.full(len(p), np.inf)
    for dy, dx in ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)):
        q = p.copy()
        q[:, 0] += dy
        q[:, 1] += dx
        nb = np.minimum(nb, b.error(g, t, q))
    with np.errstate(invalid="ignore"):
        qg = np.where(np.isfinite(e_sim), e_sim / np.maximum(nb, 1e-9), np.inf)
        gain = np.where(np.isfinite(e_sim), e_sim / np.maximum(e_tr, 1e-9), np.inf)
    return p, e_sim, qg, gain


def screen(g: np.ndarray, grad2: np.ndarray, gb: np.ndarray, cands: list) -> dict:
    """Refine the candidates with the most votes (see module docstring); their fits and statistics."""
    h, w = g.shape
    pick = sorted((c for c in cands if c.votes >= MIN_VOTES and np.isfinite(c.q)), key=lambda c: -c.votes)
    pick = pick[:MAX_CANDIDATES]
    ys, xs, ids, cen, kept = [], [], [], [], []
    for c in pick:
        y0, x0, y1, x1 = c.box[0], c.box[1], min(c.box[2], h), min(c.box[3], w)
        py, px = dup.edge_samples(g, grad2, (y0, x0, y1, x1), N_SCREEN)
        if len(py) < 32:
            continue
        ys.append(py)
        xs.append(px)
        ids.append(np.full(len(py), len(kept)))
        cen.append(((y0 + y1 - 1) / 2.0, (x0 + x1 - 1) / 2.0))
        kept.append(c)
    if not kept:
        return {"cands": []}
    b = Batch(np.concatenate(ys), np.concatenate(xs), np.concatenate(ids), np.array(cen))
    iy, ix = b.py.astype(np.int64), b.px.astype(np.int64)
    p0 = np.array([[c.dy, c.dx, 0.0, 0.0] for c in kept])
    p, e_sim, qg, gain = _stats(b, g, gb, g[iy, ix], gb[iy, ix], p0, True)
    nontrivial = in_scope(*rotation_scale(p))
    s = np.where(np.isfinite(e_sim), qg * gain, np.inf)
    return {"cands": kept, "p": p, "cen": np.array(cen), "s": s, "qg": qg, "nontrivial": nontrivial}


def verify(g: np.ndarray, grad2: np.ndarray, gb: np.ndarray, sc: dict, jpeg_quality: int | None = None) -> list[dict]:
    """Seeds (non-trivial, low ``s``) grown into regions, refitted, and tested against the scan's null
    (the bar :func:`max_s` of the file's JPEG quality, when known)."""
    if not sc["cands"]:
        return []
    h, w = g.shape
    s, nt = sc["s"], sc["nontrivial"]
    seeds = [i for i in np.argsort(s) if nt[i] and s[i] <= SCREEN_S]
    cands, cen0 = sc["cands"], sc["cen"]
    boxes = np.array([c.box for c in cands], float)
    affs = [to_affine(p, c) for p, c in zip(sc["p"], cen0, strict=True)]
    regions, members = [], []
    for i in seeds:
        a = affs[i]
        if any(i in m for _, _, m in members):
            continue
        y0, x0, y1, x1 = cands[i].box
        # the seed's region: refined candidates nearby whose own fit is the same similarity
        near = [j for j in range(len(cands)) if j == i or (
            nt[j] and np.isfinite(s[j]) and _explains(affs[j], a, cen0[j])
            and boxes[j, 2] > y0 - REACH and boxes[j, 0] < y1 + REACH and boxes[j, 3] > x0 - REACH and boxes[j, 1] < x1 + REACH)]
        box = (int(boxes[near, 0].min()), int(boxes[near, 1].min()), int(min(h, boxes[near, 2].max())), int(min(w, boxes[near, 3].max())))
        regions.append(a)
        members.append((i, box, set(near)))
    if not members:
        return []
    ys, xs, ids, cen = [], [], [], []
    for k, (_, box, _) in enumerate(members):
        py, px = dup.edge_samples(g, grad2, box, N_VERIFY)
        ys.append(py)
        xs.append(px)
        ids.append(np.full(len(py), k))
        cen.append(((box[0] + box[2] - 1) / 2.0, (box[1] + box[3] - 1) / 2.0))
    cen = np.array(cen)
    b = Batch(np.concatenate(ys), np.concatenate(xs), np.concatenate(ids), cen)
    iy, ix = b.py.astype(np.int64), b.px.astype(np.int64)
    p0 = np.array([from_affine(r, c) for r, c in zip(regions, cen, strict=True)])
    p, e_sim, qg, gain = _stats(b, g, gb, g[iy, ix], gb[iy, ix], p0, False)
    # a region's box reaches beyond the copy (its blocks overhang the pasted area): samples there
    # fit no similarity and would swamp the mean; drop them (TRIM x the region's median squared
    # residual) and refit on the rest. Regions that keep less than MIN_KEPT are not one copy.
    # Only samples within a block's reach of the region's border may go: a region whose misfits lie
    # inside it (text beside table rules that fit a spurious scale) keeps them and fails.
    sy, sx = b.warp(p)
    r2 = (sample(g, sy, sx, grad=False) - g[iy, ix]) ** 2
    med = np.array([np.median(r2[b.cid == k]) for k in range(len(members))])
    bx = np.array([box for _, box, _ in members], np.int64)[b.cid]
    rim = np.minimum.reduce([iy - bx[:, 0], bx[:, 2] - 1 - iy, ix - bx[:, 1], bx[:, 3] - 1 - ix])
    inner = rim >= BLOCK * work_factor(h, w)
    n_samples = np.bincount(b.cid, minlength=len(members))
    # a region that is all rim (a small box) keeps every sample: nothing inside it vouches for the fit
    trims = np.bincount(b.cid[inner], minlength=len(members)) >= MIN_INNER * n_samples
    keep = (r2 <= TRIM * np.maximum(med[b.cid], 1.0)) | inner | ~trims[b.cid]
    kept = np.bincount(b.cid[keep], minlength=len(members)) / n_samples
    b = Batch(b.py[keep], b.px[keep], b.cid[keep], cen)
    iy, ix = b.py.astype(np.int64), b.px.astype(np.int64)
    p, e_sim, qg, gain = _stats(b, g, gb, g[iy, ix], gb[iy, ix], p, False)
    rot, scale = rotation_scale(p)
    cap = max_s(jpeg_quality)
    out = []
    for k, (i, box, mem) in enumerate(members):
        # the null: the scan's other refined candidates with a non-trivial fit, none with an end on
        # either end of this region (the copy seen from its other end, or against another print of
        # its source's content, is this copy, not the null)
        ends = (box, _image_box(to_affine(p[k], cen[k]), box))
        own = {j for j, c in enumerate(sc["cands"])
               if any(_inside(e, end) for e in _ends(c) for end in ends)}
        null = np.array([s[j] for j in range(len(s)) if nt[j] and j not in own and j != i])
        s0 = float(null.min()) if null.size else np.inf
        sk = float(qg[k] * gain[k])
        support = sum(cands[j].votes for j in mem)
        ok = (bool(in_scope(rot[k], scale[k])) and np.isfinite(e_sim[k]) and support >= MIN_SUPPORT and kept[k] >= MIN_KEPT
              and qg[k] <= MAX_QG and sk <= min(cap, MARGIN * s0))
        p_value = float((1 + np.count_nonzero(null <= sk)) / (1 + null.size))
        out.append({"affine": to_affine(p[k], cen[k]), "box": box, "s": sk, "s_null": s0, "qg": float(qg[k]), "p_value": p_value,
                    "gain": float(gain[k]), "level": float(e_sim[k] / max(float(grad2[iy[b.cid == k], ix[b.cid == k]].mean()), 1e-6)),
                    "rotation": float(rot[k]), "scale": float(scale[k]), "kept": float(kept[k]), "accepted": bool(ok),
                    "members": mem})
    return out


def max_s(jpeg_quality: int | None) -> float:
    """The absolute bar on a region's ``s``: ``MAX_S`` at JPEG quality ``CAP_QUALITY`` and above (or when the
    quality is unknown), scaled below it by the re-save error's variance, i.e. the square of the IJG
    table scale (200 - 2 q for q >= 50) over its value at ``CAP_QUALITY``."""
    if jpeg_quality is None or jpeg_quality >= CAP_QUALITY:
        return MAX_S
    q = max(50, int(jpeg_quality))
    return MAX_S * ((200.0 - 2 * q) / (200.0 - 2 * CAP_QUALITY)) ** 2


def _ends(c) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]]:
    """A candidate's target box and its source box (the target box moved by its displacement)."""
    y0, x0, y1, x1 = c.box
    return c.box, (y0 + c.dy, x0 + c.dx, y1 + c.dy, x1 + c.dx)


def _image_box(a: np.ndarray, box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """The bounding box (y0, x0, y1, x1) of ``box`` mapped by the affine ``a``."""
    cy = np.array([box[0], box[0], box[2], box[2]], float)
    cx = np.array([box[1], box[3], box[1], box[3]], float)
    sy = a[0, 0] * cy + a[0, 1] * cx + a[0, 2]
    sx = a[1, 0] * cy + a[1, 1] * cx + a[1, 2]
    return int(np.floor(sy.min())), int(np.floor(sx.min())), int(np.ceil(sy.max())), int(np.ceil(sx.max()))


def _inside(a, b) -> bool:
    """Box ``a`` overlaps box ``b`` (both y0, x0, y1, x1)."""
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _explains(a: np.ndarray, r: np.ndarray, at: np.ndarray) -> bool:
    """Two similarities whose linear parts agree within ``SAME_M`` (~1 degree, 1.5%) and that map
    the point ``at`` within ``NEAR`` pixels of each other."""
    if np.abs(a[:, :2] - r[:, :2]).max() >= SAME_M:
        return False
    return bool(np.abs((a[:, :2] - r[:, :2]) @ at + a[:, 2] - r[:, 2]).max() <= NEAR)


def warped_source(g: np.ndarray, a: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The scan sampled at the source of every pixel of ``box`` (y0, x0, y1, x1) under ``a``."""
    yy, xx = np.mgrid[box[0] : box[2], box[1] : box[3]].astype(np.float64)
    sy = a[0, 0] * yy + a[0, 1] * xx + a[0, 2]
    sx = a[1, 0] * yy + a[1, 1] * xx + a[1, 2]
    return sample(g, sy.ravel(), sx.ravel(), grad=False).reshape(yy.shape)


def preimage(a: np.ndarray, tbox: tuple[int, int, int, int], tmask: np.ndarray, shape: tuple[int, int]):
    """The source end: the box and mask of the pixels that ``a`` maps the target mask onto."""
    ty, tx = tbox[0], tbox[1]
    ys, xs = np.nonzero(tmask)
    sy = a[0, 0] * (ys + ty) + a[0, 1] * (xs + tx) + a[0, 2]
    sx = a[1, 0] * (ys + ty) + a[1, 1] * (xs + tx) + a[1, 2]
    y0, x0 = max(0, int(np.floor(sy.min()))), max(0, int(np.floor(sx.min())))
    y1, x1 = min(shape[0], int(np.ceil(sy.max())) + 1), min(shape[1], int(np.ceil(sx.max())) + 1)
    inv = np.linalg.inv(a[:, :2])
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    d = np.stack([yy - a[0, 2], xx - a[1, 2]])
    ty_ = np.rint(inv[0, 0] * d[0] + inv[0, 1] * d[1]).astype(np.int64) - ty
    tx_ = np.rint(inv[1, 0] * d[0] + inv[1, 1] * d[1]).astype(np.int64) - tx
    ok = (ty_ >= 0) & (ty_ < tmask.shape[0]) & (tx_ >= 0) & (tx_ < tmask.shape[1])
    m = np.zeros(yy.shape, bool)
    m[ok] = tmask[ty_[ok], tx_[ok]]
    return (y0, x0, y1 - y0, x1 - x0), ndimage.binary_closing(m, np.ones((3, 3))) | m
