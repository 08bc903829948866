"""Image classification (majority vote) and the reliability map of eq. (1).

Both are built from window probabilities (:mod:`scanlab.core.engine`):

* P(sub-image) = mean of the probabilities of the 64x64 windows inside it at
  offsets 0, 4, 8, ... (see :mod:`scanlab.core.patches`); for n = m = 64 it is
  simply the window itself.
* The image label is the majority vote of argmax P(sub-image) over the
  non-overlapping sub-image grid; ties go to the class with the higher mean
  probability. Vote counts and mean probabilities are kept.
* The reliability map for class s: P_s(x) = mean over the sub-images (of the
  map grid with stride t) that contain pixel x of P_s(sub-image); NaN where no
  sub-image covers x. Computed in O(pixels) with running sums.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from scanlab.core.engine import Engine, get_engine
from scanlab.core.imaging import image_hw
from scanlab.core.jobs import CancelToken, ProgressFn, check
from scanlab.core.network import PATCH, ScannerNet
from scanlab.core.patches import Size, as_pair, subimage_grid, vote_grid, window_offsets


@dataclass
class SubImageProbs:
    """P(sub-image) on a separable grid: ``probs[i, j]`` is the sub-image at (ys[i], xs[j])."""

    ys: np.ndarray
    xs: np.ndarray
    sub: Size
    stride: Size
    probs: np.ndarray  # (len(ys), len(xs), Ns) float32


@dataclass
class Classification:
    """The image-level decision."""

    label_index: int
    votes: np.ndarray  # (Ns,) int
    mean_probs: np.ndarray  # (Ns,) float
    n_patches: int
    patch_labels: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, int))


def _window_coords(corners: np.ndarray, size: int) -> np.ndarray:
    offs = window_offsets(size)
    return (corners[:, None] + offs[None, :]).ravel()


def _average_windows(
    w: np.ndarray, wy: np.ndarray, wx: np.ndarray, ys: np.ndarray, xs: np.ndarray, sub: Size
) -> np.ndarray:
    """Mean over each sub-image's windows, separably (rows, then columns)."""
    oy, ox = window_offsets(sub[0]), window_offsets(sub[1])
    acc_y = np.zeros((len(ys), w.shape[1], w.shape[2]), dtype=np.float64)
    for o in oy:
        acc_y += w[np.searchsorted(wy, ys + o)]
    acc_y /= len(oy)
    acc = np.zeros((len(ys), len(xs), w.shape[2]), dtype=np.float64)
    for o in ox:
        acc += acc_y[:, np.searchsorted(wx, xs + o)]
    acc /= len(ox)
    return acc.astype(np.float32)


def subimage_probs_multi(
    net: ScannerNet,
    image: np.ndarray,
    grids: list[tuple[Size, Size]],
    *,
    engine: Engine | None = None,
    device: torch.device | None = None,
    cancel: CancelToken | None = None,
    progress: ProgressFn | None = None,
) -> list[SubImageProbs]:
    """P(sub-image) for several (sub, stride) grids from **one** engine call.

    The windows the grids need are merged, so classify + map share the work.
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
    w = engine.window_probs(net, image, wy, wx, device=device, cancel=cancel, progress=progress)
    check(cancel)
    out = []
    for ys, xs, sub, stride in layouts:
        if sub == (PATCH, PATCH):
            probs = w[np.searchsorted(wy, ys)][:, np.searchsorted(wx, xs)]
        else:
            probs = _average_windows(w, wy, wx, ys, xs, sub)
        out.append(SubImageProbs(ys, xs, sub, stride, np.ascontiguousarray(probs, dtype=np.float32)))
    return out


def classify_from_subimages(sp: SubImageProbs) -> Classification:
    """Majority vote over the sub-images of ``sp`` (normally the non-overlapping grid)."""
    p = sp.probs.reshape(-1, sp.probs.shape[-1]).astype(np.float64)
    labels = p.argmax(axis=1)
    n_classes = p.shape[1]
    votes = np.bincount(labels, minlength=n_classes)
    mean = p.mean(axis=0)
    best = np.flatnonzero(votes == votes.max())
    label = int(best[np.argmax(mean[best])])
    return Classification(label, votes, mean, int(p.shape[0]), labels)


def reliability_map(
    sub_probs: np.ndarray,
    ys: np.ndarray,
    xs: np.ndarray,
    sub: Size,
    shape: Size,
    *,
    cancel: CancelToken | None = None,
) -> np.ndarray:
    """Eq. (1): per-pixel mean of P_s over the sub-images containing the pixel.

    Parameters
    ----------
    sub_probs : ndarray of shape (len(ys), len(xs))
        P_s(sub-image) for one class s.
    ys, xs : ndarray
        Sub-image corners (distinct, increasing).
    sub : (n, m)
        Sub-image size.
    shape : (H, W)
        Image size.

    Returns
    -------
    ndarray of shape (H, W), float32
        NaN where no sub-image covers the pixel.

    Notes
    -----
    O(H*W + H*len(xs)) time; memory one (H, len(xs)) float64 array plus the
    float32 output, processed in row blocks.
    """
    h, w = shape
    n, m = sub
    v = sub_probs.astype(np.float64)
    # Rows: running sum over the sub-images covering each row, via a difference array.
    dy = np.zeros((h + 1, len(xs)), dtype=np.float64)
    dy[ys] += v
    dy[ys + n] -= v
    row_sum = np.cumsum(dy[:h], axis=0)  # (H, len(xs))
    cy = np.zeros(h + 1)
    np.add.at(cy, ys, 1)
    np.add.at(cy, ys + n, -1)
    count_y = np.cumsum(cy[:h])
    cx = np.zeros(w + 1)
    np.add.at(cx, xs, 1)
    np.add.at(cx, xs + m, -1)
    count_x = np.cumsum(cx[:w])
    out = np.empty((h, w), dtype=np.float32)
    block = max(1, (1 << 22) // max(1, w))
    for r0 in range(0, h, block):
        check(cancel)
        r1 = min(h, r0 + block)
        dx = np.zeros((r1 - r0, w + 1), dtype=np.float64)
        dx[:, xs] += row_sum[r0:r1]
        dx[:, xs + m] -= row_sum[r0:r1]
        s = np.cumsum(dx[:, :w], axis=1)
        cnt = count_y[r0:r1, None] * count_x[None, :]
        with np.errstate(invalid="ignore", divide="ignore"):
            out[r0:r1] = np.where(cnt > 0, s / np.where(cnt > 0, cnt, 1), np.nan)
    return out


@dataclass
class ImageAnalysis:
    """Everything one analysis of one image produced."""

    classification: Classification
    vote: SubImageProbs
    map_grid: SubImageProbs | None
    shape: Size
    engine: str
    compute_s: float

    def map_for(self, class_index: int, *, cancel: CancelToken | None = None) -> np.ndarray:
        """Reliability map (H, W) for any class (the predicted one by default elsewhere)."""
        if self.map_grid is None:
            raise ValueError("this analysis computed no map")
        g = self.map_grid
        return reliability_map(g.probs[:, :, class_index], g.ys, g.xs, g.sub, self.shape, cancel=cancel)


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
    t0 = time.perf_counter()
    res = subimage_probs_multi(net, image, grids, engine=eng, device=device, cancel=cancel, progress=progress)
    cls = classify_from_subimages(res[0])
    return ImageAnalysis(
        classification=cls,
        vote=res[0],
        map_grid=res[1] if map_sub is not None else None,
        shape=shape,
        engine=eng.name,
        compute_s=time.perf_counter() - t0,
    )
