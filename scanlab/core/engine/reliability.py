"""Image classification (majority vote) and the reliability map of eq. (1), with evidence masking.

(The analysis *job*, file in / result out, is :mod:`scanlab.services.analysis`;
this module is the arithmetic on window probabilities.)

Both are built from window probabilities (:mod:`scanlab.core.engine.engines`):

* P(sub-image) = mean of the probabilities of the 64x64 windows inside it at
  offsets 0, 4, 8, ... (see :mod:`scanlab.core.engine.patches`); for n = m = 64 it is
  simply the window itself.
* The image label is the majority vote of argmax P(sub-image) over the
  non-overlapping sub-image grid; ties go to the class with the higher mean
  probability. Vote counts and mean probabilities are kept.
* The reliability map for class s: P_s(x) = mean over the sub-images (of the
  map grid with stride t) that contain pixel x of P_s(sub-image); NaN where no
  sub-image covers x. Computed in O(pixels) with running sums.
* **No evidence** (:mod:`scanlab.core.engine.nosignal`): windows without sensor signal
  are left out. P(sub-image) averages only its windows with evidence; a sub-image
  none of whose windows has evidence does not vote and does not enter eq. (1).
  A pixel is "no evidence" when every sub-image covering it is; elsewhere its
  eq. (1) value averages only the sub-images with evidence. Both engines share
  this code, so the naive reference follows the same rule.
* **Calibration**: with a temperature T, every window probability becomes
  softmax(log p / T) before anything else (temperature scaling of the logits:
  log p differs from the logits by a per-window constant only).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from scanlab.core.engine.engines import Engine, OtherHead, get_engine, window_outputs
from scanlab.core.engine.network import PATCH, ScannerNet
from scanlab.core.engine.nosignal import window_evidence
from scanlab.core.engine.patches import Size, as_pair, subimage_grid, vote_grid, window_offsets
from scanlab.core.io.imaging import image_hw
from scanlab.core.jobs import CancelToken, ProgressFn, check


@dataclass
class SubImageProbs:
    """P(sub-image) on a separable grid: ``probs[i, j]`` is the sub-image at (ys[i], xs[j])."""

    ys: np.ndarray
    xs: np.ndarray
    sub: Size
    stride: Size
    probs: np.ndarray  # (len(ys), len(xs), Ns) float32
    evidence: np.ndarray | None = None  # (len(ys), len(xs)) bool; None: all windows have evidence
    # (len(ys), len(xs)) P(other) of the open set's extra output, 64-px grids only (None: not asked for)
    other: np.ndarray | None = None

    def evidence_mask(self) -> np.ndarray:
        """(len(ys), len(xs)) bool, True where the sub-image has evidence."""
        if self.evidence is None:
            return np.ones(self.probs.shape[:2], dtype=bool)
        return self.evidence


@dataclass
class Classification:
    """The image-level decision."""

    label_index: int
    votes: np.ndarray  # (Ns,) int
    mean_probs: np.ndarray  # (Ns,) float
    n_patches: int  # sub-images that voted (with evidence)
    patch_labels: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, int))
    n_no_evidence: int = 0  # sub-images left out of the vote

    @property
    def has_evidence(self) -> bool:
        """False when no sub-image had evidence (the label then comes from all windows)."""
        return self.n_patches > 0


def _window_coords(corners: np.ndarray, size: int) -> np.ndarray:
    offs = window_offsets(size)
    return (corners[:, None] + offs[None, :]).ravel()


def _sum_windows(w: np.ndarray, wy: np.ndarray, wx: np.ndarray, ys: np.ndarray, xs: np.ndarray, sub: Size) -> np.ndarray:
    """Sum over each sub-image's windows, separably (rows, then columns)."""
    oy, ox = window_offsets(sub[0]), window_offsets(sub[1])
    acc_y = np.zeros((len(ys),) + w.shape[1:], dtype=np.float64)
    for o in oy:
        acc_y += w[np.searchsorted(wy, ys + o)]
    acc = np.zeros((len(ys), len(xs)) + w.shape[2:], dtype=np.float64)
    for o in ox:
        acc += acc_y[:, np.searchsorted(wx, xs + o)]
    return acc


def _average_windows(
    w: np.ndarray, ev: np.ndarray, wy: np.ndarray, wx: np.ndarray, ys: np.ndarray, xs: np.ndarray, sub: Size
) -> tuple[np.ndarray, np.ndarray]:
    """Mean over each sub-image's windows with evidence (all windows where none has any).

    Returns the (len(ys), len(xs), Ns) means and the (len(ys), len(xs)) evidence mask.
    """
    e = ev.astype(np.float64)
    n_ev = _sum_windows(e, wy, wx, ys, xs, sub)
    s_ev = _sum_windows(w * e[:, :, None], wy, wx, ys, xs, sub)
    s_all = _sum_windows(w, wy, wx, ys, xs, sub)
    n_all = len(window_offsets(sub[0])) * len(window_offsets(sub[1]))
    has = n_ev > 0
    mean = np.where(has[:, :, None], s_ev / np.maximum(n_ev, 1)[:, :, None], s_all / n_all)
    return mean.astype(np.float32), has


def apply_temperature(p: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T) along the last axis (temperature scaling from probabilities)."""
    if temperature == 1.0:
        return p
    z = np.log(np.maximum(p.astype(np.float64), 1e-30)) / temperature
    z -= z.max(axis=-1, keepdims=True)
    q = np.exp(z)
    return (q / q.sum(axis=-1, keepdims=True)).astype(np.float32)


def subimage_probs_multi(
    net: ScannerNet,
    image: np.ndarray,
    grids: list[tuple[Size, Size]],
    *,
    engine: Engine | None = None,
    device: torch.device | None = None,
    cancel: CancelToken | None = None,
    progress: ProgressFn | None = None,
    temperature: float = 1.0,
    evidence: bool = True,
    other: OtherHead | None = None,
) -> list[SubImageProbs]:
    """P(sub-image) for several (sub, stride) grids from **one** engine call.

    The windows the grids need are merged, so classify + map share the work.
    ``temperature`` calibrates the window probabilities; ``evidence=False``
    switches the no-signal rule off (every window counts, as before it existed).
    ``other``: the open set's extra output row; its per-window P(other) (raw
    logits, no temperature) comes from the same pass and is kept on the 64-px grids.
    """
    engine = engine or get_engine()
    device = device or torch.device("cpu")
    shape = image_hw(image)
    layouts = []
    all_y, all_x = [], []
    for sub, stride in grids:
        ys, xs = subimage_grid(shape, sub, stride)
        layouts.append((ys, xs, sub, stride))
        all_y.append(_window_coords(ys, sub[0]))
        all_x.append(_window_coords(xs, sub[1]))
    wy = np.unique(np.concatenate(all_y))
    wx = np.unique(np.concatenate(all_x))
    w, w_other = window_outputs(engine, net, image, wy, wx, device=device, other=other, cancel=cancel,
                                progress=progress)
    w = apply_temperature(w, temperature)
    check(cancel)
    ev = window_evidence(image, wy, wx) if evidence else np.ones(w.shape[:2], dtype=bool)
    out = []
    for ys, xs, sub, stride in layouts:
        po = None
        if sub == (PATCH, PATCH):
            iy, ix = np.searchsorted(wy, ys), np.searchsorted(wx, xs)
            probs, has = w[iy][:, ix], ev[np.ix_(iy, ix)]
            po = None if w_other is None else w_other[np.ix_(iy, ix)]
        else:
            probs, has = _average_windows(w, ev, wy, wx, ys, xs, sub)
        out.append(SubImageProbs(ys, xs, sub, stride, np.ascontiguousarray(probs, dtype=np.float32), has, po))
    return out


def classify_from_subimages(sp: SubImageProbs) -> Classification:
    """Majority vote over the sub-images of ``sp`` that have evidence (normally the non-overlapping grid).

    When none has evidence, votes are all zero, ``n_patches`` is 0 and the label
    and mean probabilities come from every sub-image (the caller reports the
    result as inconclusive).
    """
    p_all = sp.probs.reshape(-1, sp.probs.shape[-1]).astype(np.float64)
    ev = sp.evidence_mask().ravel()
    n_classes = p_all.shape[1]
    p = p_all[ev] if ev.any() else p_all
    labels = p.argmax(axis=1)
    votes = np.bincount(labels, minlength=n_classes) if ev.any() else np.zeros(n_classes, dtype=np.int64)
    mean = p.mean(axis=0)
    best = np.flatnonzero(votes == votes.max())
    label = int(best[np.argmax(mean[best])])
    return Classification(label, votes, mean, int(ev.sum()), labels, n_no_evidence=int((~ev).sum()))


def _box_sums(values: np.ndarray, ys: np.ndarray, xs: np.ndarray, sub: Size, h: int, w: int, r0: int, r1: int,
               row_sum: np.ndarray) -> np.ndarray:
    """Rows [r0, r1) of the per-pixel sum of ``values`` over the sub-images covering each pixel."""
    m = sub[1]
    dx = np.zeros((r1 - r0, w + 1), dtype=np.float64)
    dx[:, xs] += row_sum[r0:r1]
    dx[:, xs + m] -= row_sum[r0:r1]
    return np.cumsum(dx[:, :w], axis=1)


def _row_sums(v: np.ndarray, ys: np.ndarray, n: int, h: int) -> np.ndarray:
    """(H, len(xs)) running sum over the sub-images covering each row (difference array)."""
    dy = np.zeros((h + 1, v.shape[1]), dtype=np.float64)
    np.add.at(dy, ys, v)
    np.add.at(dy, ys + n, -v)
    return np.cumsum(dy[:h], axis=0)


def reliability_map(
    sub_probs: np.ndarray,
    ys: np.ndarray,
    xs: np.ndarray,
    sub: Size,
    shape: Size,
    *,
    evidence: np.ndarray | None = None,
    cancel: CancelToken | None = None,
) -> np.ndarray:
    """Eq. (1): per-pixel mean of P_s over the sub-images (with evidence) containing the pixel.

    Parameters
    ----------
    sub_probs : ndarray of shape (len(ys), len(xs))
        P_s(sub-image) for one class s (or any per-sub-image score).
    ys, xs : ndarray
        Sub-image corners (distinct, increasing).
    sub : (n, m)
        Sub-image size.
    shape : (H, W)
        Image size.
    evidence : ndarray of bool, shape (len(ys), len(xs)), optional
        Sub-images with evidence; the others are left out of the mean.

    Returns
    -------
    ndarray of shape (H, W), float32
        NaN where no sub-image with evidence covers the pixel (uncovered or no evidence).

    Notes
    -----
    O(H*W + H*len(xs)) time; memory two (H, len(xs)) float64 arrays plus the
    float32 output, processed in row blocks.
    """
    h, w = shape
    e = np.ones(sub_probs.shape, dtype=np.float64) if evidence is None else evidence.astype(np.float64)
    num_rows = _row_sums(sub_probs.astype(np.float64) * e, ys, sub[0], h)
    cnt_rows = _row_sums(e, ys, sub[0], h)
    out = np.empty((h, w), dtype=np.float32)
    block = max(1, (1 << 22) // max(1, w))
    for r0 in range(0, h, block):
        check(cancel)
        r1 = min(h, r0 + block)
        s = _box_sums(sub_probs, ys, xs, sub, h, w, r0, r1, num_rows)
        cnt = _box_sums(e, ys, xs, sub, h, w, r0, r1, cnt_rows)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[r0:r1] = np.where(cnt > 0.5, s / np.where(cnt > 0.5, cnt, 1), np.nan)
    return out


def coverage_map(ys: np.ndarray, xs: np.ndarray, sub: Size, shape: Size) -> np.ndarray:
    """(H, W) bool: pixels covered by at least one sub-image of the grid."""
    h, w = shape
    cy = np.zeros(h + 1)
    np.add.at(cy, ys, 1)
    np.add.at(cy, ys + sub[0], -1)
    cx = np.zeros(w + 1)
    np.add.at(cx, xs, 1)
    np.add.at(cx, xs + sub[1], -1)
    return (np.cumsum(cy[:h]) > 0)[:, None] & (np.cumsum(cx[:w]) > 0)[None, :]


@dataclass
class ImageAnalysis:
    """Everything one analysis of one image produced."""

    classification: Classification
    vote: SubImageProbs
    map_grid: SubImageProbs | None
    shape: Size
    engine: str
    compute_s: float
    # the non-overlapping 64-px window grid with P(other) (``other`` set), when asked for
    other_grid: SubImageProbs | None = None

    def _grid(self) -> SubImageProbs:
        if self.map_grid is None:
            raise ValueError("this analysis computed no map")
        return self.map_grid

    def class_reliability(self, class_index: int, *, cancel: CancelToken | None = None) -> np.ndarray:
        """Eq. (1) map (H, W) for the class with this index; NaN = no evidence or uncovered.

        (By class *name*: :meth:`scanlab.services.analysis.AnalysisResult.map_for`.)
        """
        g = self._grid()
        return reliability_map(
            g.probs[:, :, class_index], g.ys, g.xs, g.sub, self.shape, evidence=g.evidence, cancel=cancel
        )

    def score_map(self, scores: np.ndarray, *, cancel: CancelToken | None = None) -> np.ndarray:
        """Eq. (1)-style map of any per-sub-image score of the map grid (e.g. the unknown score)."""
        g = self._grid()
        return reliability_map(scores, g.ys, g.xs, g.sub, self.shape, evidence=g.evidence, cancel=cancel)

    def no_evidence_mask(self) -> np.ndarray:
        """(H, W) bool: covered pixels all of whose covering sub-images lack evidence."""
        g = self._grid()
        cov = coverage_map(g.ys, g.xs, g.sub, self.shape)
        if g.evidence is None or g.evidence.all():
            return np.zeros(self.shape, dtype=bool)
        rel = reliability_map(np.zeros(g.evidence.shape), g.ys, g.xs, g.sub, self.shape, evidence=g.evidence)
        return cov & np.isnan(rel)

    def class_index_map(self, *, cancel: CancelToken | None = None) -> np.ndarray:
        """(H, W) int16: per pixel the class with the highest eq. (1) probability; -1 = no evidence/uncovered."""
        best = np.full(self.shape, -np.inf, dtype=np.float32)
        idx = np.full(self.shape, -1, dtype=np.int16)
        for k in range(self._grid().probs.shape[-1]):
            m = self.class_reliability(k, cancel=cancel)
            better = m > best  # NaN compares False: no-evidence pixels stay -1
            best[better] = m[better]
            idx[better] = k
        return idx


def analyze_image(
    net: ScannerNet,
    image: np.ndarray,
    *,
    vote_sub: int | Size = PATCH,
    map_sub: int | Size | None = None,
    map_stride: int | Size = 4,
    engine: Engine | str | None = None,
    device: torch.device | None = None,
    cancel: CancelToken | None = None,
    progress: ProgressFn | None = None,
    temperature: float = 1.0,
    evidence: bool = True,
    other: OtherHead | None = None,
) -> ImageAnalysis:
    """Classify an image and, when ``map_sub`` is given, prepare its reliability maps.

    Parameters
    ----------
    net : ScannerNet
        The network (its mode is set to eval).
    image : ndarray
        float32 (3, H, W) in [0, 1], or the decoded uint8/uint16 (H, W, 3) scan
        (the dense engine converts it per tile, saving a float copy of the scan).
    vote_sub : int or (n, m)
        Sub-image size of the non-overlapping vote grid.
    map_sub, map_stride : int or (n, m)
        Sub-image size and stride of the reliability map; ``None`` skips the map.
    engine : Engine or str, optional
        ``"dense"`` or ``"naive"``; the default engine when omitted.
    temperature : float
        Calibration temperature applied to every window (1: raw softmax).
    evidence : bool
        Apply the no-signal rule (default); False counts every window.
    other : (weight (C,), bias), optional
        The open set's "other scanner" row of the last layer: P(other) of the
        non-overlapping 64-px windows comes from the same pass
        (``ImageAnalysis.other_grid``), so the trunk never runs again for it.

    Returns
    -------
    ImageAnalysis
        ``compute_s`` is the engine's own time (no loading or decoding).
    """
    eng = get_engine(engine) if engine is None or isinstance(engine, str) else engine
    grids = [(as_pair(vote_sub), as_pair(vote_sub))]
    shape = image_hw(image)
    vote_grid(shape, grids[0][0])  # validates before any work
    if map_sub is not None:
        grids.append((as_pair(map_sub), as_pair(map_stride)))
        subimage_grid(shape, *grids[1])
    if other is not None and grids[0][0] != (PATCH, PATCH):
        grids.append(((PATCH, PATCH), (PATCH, PATCH)))  # the open set's grid (its windows join the same pass)
    t0 = time.perf_counter()
    res = subimage_probs_multi(
        net, image, grids, engine=eng, device=device, cancel=cancel, progress=progress,
        temperature=temperature, evidence=evidence, other=other,
    )
    cls = classify_from_subimages(res[0])
    return ImageAnalysis(
        classification=cls,
        vote=res[0],
        map_grid=res[1] if map_sub is not None else None,
        shape=shape,
        engine=eng.name,
        compute_s=time.perf_counter() - t0,
        other_grid=None if other is None else res[0] if grids[0][0] == (PATCH, PATCH) else res[-1],
    )
