"""Unknown-scanner scores: k-nearest-neighbour distance in the network's feature space.

Chosen by measurement (BENCHMARKS.md, "Open-set methods"): max-softmax, entropy,
per-class Mahalanobis and k-NN, on the logits and on the 96 pooled penultimate
features, were compared on the same validation, fresh-known and unknown-scanner
windows of the shipped model. k-NN on the features and k-NN on the logits
separated unknown virtual scanners equally (image AUROC 0.90 / 0.91) and both
rated the real pages as far from every known scanner, but the logit variant
degenerates with few classes (with 3 classes the unit-length centred logits lie
on a circle: a tiny lab model could not tell a fourth scanner from the three it
knew), so the features are used.

Per window (the 64x64 windows of the non-overlapping grid that have evidence):

* feature ``f``: the penultimate features averaged over the window (the input of
  the last linear layer), scaled to unit length;
* distance ``d = 1 - cos`` to the k-th nearest feature of a bank of validation
  windows (stored in the model file as ``open_set.bank``);
* window unknown score ``u = F(d)``, the fraction of held-out validation windows
  with a smaller distance (``open_set.quantiles``), so ``u`` is uniform on [0, 1]
  for the known scanners and close to 1 for windows unlike any of them.

The image's unknown score is the mean ``u`` over its windows with evidence.
The validation images are split in two (alternating per class): the bank comes
from one half and the quantiles and thresholds from the other, so no window is
scored against itself.

Method ``other-output`` (the shipped model, :class:`OtherScorer`): the network was
trained with outlier exposure, one extra "other scanner" output beside its Ns
classes, on thousands of virtual scanner designs (``benchmarks/train_other.py``).
The extra output's row of the last linear layer is stored as the
``open_set.other_weight`` / ``open_set.other_bias`` tensors, so the network and its
file format stay architecture v1. A window's score is ``u = P(other)``, the softmax
over the Ns class logits and the other logit; the image's score is again the mean
over its windows with evidence. Measured against the k-NN scorers in BENCHMARKS.md.
The analysis takes P(other) from the vote's own network pass (the engines'
``window_outputs(other=OtherScorer.head())``: one more row of the last layer), so
the trunk never runs again for it; :func:`score_image` is the separate-pass
reference the tests compare with. The k-NN scorers still run the trunk once more
over the windows with evidence (:func:`window_features`): the dense pass pools
its class logits, not the 96 features, at the window grid.

Method ``gauss-image`` (what ``scanlab train`` writes, :mod:`scanlab.core.evidence.gauss`):
the Mahalanobis distance of the image's *mean* window feature from the nearest class
mean of the training windows; its whitening projection is C more rows of the last
layer, pooled at the vote windows in the vote's pass (the engines' ``other=`` with a
(C, C) weight returns the raw rows), so it too never runs the trunk again.

The rotation check (:func:`turned_window_score`) scores a bounded, deterministic
sample of at most :data:`ROTATION_SAMPLE` windows with evidence, each turned.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from scanlab.core.engine.network import PATCH, ScannerNet
from scanlab.core.evidence.gauss import GaussScorer
from scanlab.core.io.imaging import full_scale

METHOD = "knn-features"
LOGIT_METHOD = "knn-logits"  # same scorer on the centred log-probabilities of the windows
OTHER_METHOD = "other-output"  # extra "other scanner" output trained with outlier exposure
GAUSS_METHOD = "gauss-image"  # Mahalanobis distance of the image's mean feature (core/evidence/gauss.py)
METHODS = (METHOD, LOGIT_METHOD, OTHER_METHOD, GAUSS_METHOD)
K = 10
BANK_MAX = 1024  # windows kept in the bank (96 floats each: ~400 kB in the model file)
N_QUANTILES = 1001
_CHUNK = 8192


def features(raw: np.ndarray) -> np.ndarray:
    """(n, C) raw penultimate features -> unit length (float32)."""
    f = raw.astype(np.float64)
    nrm = np.linalg.norm(f, axis=-1, keepdims=True)
    return (f / np.maximum(nrm, 1e-12)).astype(np.float32)


def logit_features(probs: np.ndarray) -> np.ndarray:
    """(n, Ns) window probabilities -> centred log-probabilities (the logits up to a constant)."""
    lp = np.log(np.maximum(probs.astype(np.float64), 1e-30))
    return (lp - lp.mean(axis=-1, keepdims=True)).astype(np.float32)


def window_features(
    net: ScannerNet, image: np.ndarray, corners: np.ndarray, *, batch: int = 256, device: torch.device | None = None
) -> np.ndarray:
    """Pooled penultimate features (n, C) of the 64x64 windows at ``corners`` ((n, 2) rows/cols).

    ``image`` is the decoded (H, W, 3) uint8/uint16 scan or a float (3, H, W) array;
    windows are converted to float one batch at a time.
    """
    dev = device or torch.device("cpu")
    net = net.to(dev).eval()
    out = np.zeros((len(corners), net.feature_channels), dtype=np.float32)
    floating = np.issubdtype(image.dtype, np.floating)
    scale = full_scale(image.dtype)
    with torch.inference_mode():
        for s in range(0, len(corners), batch):
            cs = corners[s : s + batch]
            if floating:
                crops = np.stack([image[:, y : y + PATCH, x : x + PATCH] for y, x in cs])
            else:
                crops = np.stack([image[y : y + PATCH, x : x + PATCH] for y, x in cs]).transpose(0, 3, 1, 2)
            x = torch.from_numpy(np.ascontiguousarray(crops, dtype=np.float32) / np.float32(scale)).to(dev)
            out[s : s + len(cs)] = net.trunk(x).mean(dim=(2, 3)).float().cpu().numpy()
    return out


def fused_window_features(
    net: ScannerNet, windows: np.ndarray, *, batch: int = 64, device: torch.device | None = None
) -> np.ndarray:
    """Pooled penultimate features (n, C) of (n, 3, 64, 64) float windows in [0, 1], on the fused trunk.

    The dense engine's inference copy of the trunk (batch norms folded, fused
    ReLUs, channels-last): the same features as :func:`window_features` up to
    float rounding, at about half the cost on the CPU.
    """
    from scanlab.core.engine.fused import FusedTrunk

    dev = device or torch.device("cpu")
    trunk = FusedTrunk(net, dev)
    out = np.zeros((len(windows), net.feature_channels), dtype=np.float32)
    with torch.inference_mode():
        for s in range(0, len(windows), batch):
            x = torch.from_numpy(windows[s : s + batch]).to(dev).contiguous(memory_format=torch.channels_last)
            f = trunk.stage2(trunk.stage1(trunk.stem(x), 0, 0), 0, 0)
            out[s : s + len(x)] = f.mean(dim=(2, 3)).float().cpu().numpy()
    return out


@dataclass
class KnnScorer:
    """The fitted open-set model: bank of features, k, and the distance quantiles."""

    bank: np.ndarray  # (n_bank, Ns) float32
    quantiles: np.ndarray  # (N_QUANTILES,) float32, increasing
    k: int = K

    def distances(self, raw: np.ndarray) -> np.ndarray:
        """1 - cosine similarity to the k-th nearest bank feature, for (n, C) raw features."""
        shape = raw.shape[:-1]
        f = features(raw.reshape(-1, raw.shape[-1]))
        k = min(self.k, len(self.bank))
        out = np.empty(len(f), dtype=np.float32)
        for s in range(0, len(f), _CHUNK):
            sim = f[s : s + _CHUNK] @ self.bank.T
            kth = np.partition(sim, sim.shape[1] - k, axis=1)[:, sim.shape[1] - k]
            out[s : s + _CHUNK] = 1.0 - kth
        return out.reshape(shape)

    def window_scores(self, raw: np.ndarray) -> np.ndarray:
        """Unknown score in [0, 1] per window (the distance's quantile among held-out known windows)."""
        d = self.distances(raw)
        q = self.quantiles
        return (np.searchsorted(q, d, side="left") / (len(q) - 1)).clip(0.0, 1.0).astype(np.float32)

    def extras(self) -> dict[str, np.ndarray]:
        """Tensors stored in the model file (names begin ``open_set.``)."""
        return {"open_set.bank": self.bank.astype(np.float32), "open_set.quantiles": self.quantiles.astype(np.float32)}

    @classmethod
    def from_extras(cls, extras: dict, params: dict) -> KnnScorer | None:
        """Rebuild from a model file's extra tensors; None when they are missing."""
        b, q = extras.get("open_set.bank"), extras.get("open_set.quantiles")
        if b is None or q is None:
            return None
        def conv(t: object) -> np.ndarray:
            return t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)

        return cls(conv(b).astype(np.float32), conv(q).astype(np.float32), int(params.get("k", K)))


@dataclass
class OtherScorer:
    """The "other scanner" output: one more row of the last linear layer."""

    weight: np.ndarray  # (C,) float32
    bias: float

    def window_scores(self, raw: np.ndarray, net: ScannerNet) -> np.ndarray:
        """P(other) per window from (n, C) raw pooled features: softmax over the Ns + 1 logits."""
        f = torch.from_numpy(np.ascontiguousarray(raw, dtype=np.float32))
        with torch.inference_mode():  # on the CPU, without moving the network
            zk = torch.nn.functional.linear(f, net.fc.weight.detach().cpu(), net.fc.bias.detach().cpu())
            z = torch.cat([zk, (f @ torch.from_numpy(self.weight) + self.bias)[:, None]], dim=1)
            return torch.softmax(z.double(), dim=1)[:, -1].float().numpy()

    def head(self) -> tuple[np.ndarray, float]:
        """(weight, bias) of the extra row, for the engines' one-pass output (``other=``)."""
        return self.weight, self.bias

    def extras(self) -> dict[str, np.ndarray]:
        """Tensors stored in the model file (names begin ``open_set.``)."""
        return {"open_set.other_weight": self.weight.astype(np.float32),
                "open_set.other_bias": np.array([self.bias], np.float32)}

    @classmethod
    def from_extras(cls, extras: dict, n_features: int | None = None) -> OtherScorer | None:
        """Rebuild from a model file's extra tensors; None when they are missing or do not fit."""
        w, b = extras.get("open_set.other_weight"), extras.get("open_set.other_bias")
        if w is None or b is None:
            return None
        w = (w.detach().cpu().numpy() if hasattr(w, "detach") else np.asarray(w)).astype(np.float32).reshape(-1)
        b = (b.detach().cpu().numpy() if hasattr(b, "detach") else np.asarray(b)).astype(np.float32).reshape(-1)
        if len(b) != 1 or (n_features is not None and len(w) != n_features):
            return None
        return cls(w, float(b[0]))


def scorer_from_model(method: str | None, extras: dict, params: dict) -> KnnScorer | OtherScorer | GaussScorer | None:
    """The scorer a model file describes (None when the method is unknown or its tensors are missing).

    Tensor sizes were checked against the network when the file was loaded
    (:func:`scanlab.core.modelfile.store.load_model`).
    """
    if method == OTHER_METHOD:
        return OtherScorer.from_extras(extras)
    if method == GAUSS_METHOD:
        return GaussScorer.from_extras(extras, params)
    if method in (METHOD, LOGIT_METHOD):
        return KnnScorer.from_extras(extras, params)
    return None


def image_score(window_scores: np.ndarray, evidence: np.ndarray) -> float | None:
    """Mean window score over the windows with evidence (None when there are none)."""
    m = evidence.astype(bool)
    if not m.any():
        return None
    return float(window_scores[m].mean())


def fit_knn(
    feats: np.ndarray, image_ids: np.ndarray, labels: np.ndarray, *, seed: int = 0
) -> tuple[KnnScorer, np.ndarray]:
    """Fit the k-NN scorer on validation windows with evidence.

    Parameters
    ----------
    feats : (n, C) raw window features (any per-window vectors)
    image_ids : (n,) image index of each window
    labels : (n,) class of each window (its image's class)

    Returns
    -------
    (scorer, held_out_image_scores) : the scores of the held-out half's images
        are what the threshold is chosen from.
    """
    imgs = np.unique(image_ids)
    # alternate images within each class: the bank half and the held-out half
    img_class = {int(i): int(labels[image_ids == i][0]) for i in imgs}
    half = {}
    for c in sorted(set(img_class.values())):
        members = [i for i in imgs if img_class[int(i)] == c]
        for r, i in enumerate(members):
            half[int(i)] = r % 2
    in_bank = np.array([half[int(i)] == 0 for i in image_ids])
    f_bank = features(feats[in_bank])
    rng = np.random.default_rng(seed)
    if len(f_bank) > BANK_MAX:
        f_bank = f_bank[np.sort(rng.choice(len(f_bank), BANK_MAX, replace=False))]
    scorer = KnnScorer(f_bank, np.zeros(2, np.float32))
    d_held = scorer.distances(feats[~in_bank])
    scorer.quantiles = np.quantile(d_held, np.linspace(0, 1, N_QUANTILES)).astype(np.float32)
    u = scorer.window_scores(feats[~in_bank])
    held_ids = image_ids[~in_bank]
    scores = np.array([u[held_ids == i].mean() for i in np.unique(held_ids)])
    return scorer, scores


def feature_windows(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The non-overlapping 64x64 window grid of an image and its evidence: (ys, xs, evidence)."""
    from scanlab.core.engine.nosignal import window_evidence
    from scanlab.core.engine.patches import vote_grid
    from scanlab.core.io.imaging import image_hw

    ys, xs = vote_grid(image_hw(image), (PATCH, PATCH))
    return ys, xs, window_evidence(image, ys, xs)


def score_image(
    scorer: KnnScorer | OtherScorer | GaussScorer, net: ScannerNet, image: np.ndarray, *, device: torch.device | None = None,
    method: str = METHOD, window_probs: np.ndarray | None = None,
) -> tuple[float | None, np.ndarray, np.ndarray, np.ndarray]:
    """Image unknown score and the per-window scores (NaN without evidence) on the 64-px grid.

    ``window_probs`` (len(ys), len(xs), Ns): the calibrated probabilities of that
    grid, needed by the logit method (the analysis already has them).
    Returns (image score or None, window scores (len(ys), len(xs)), ys, xs).
    """
    ys, xs, ev = feature_windows(image)
    grid = np.full(ev.shape, np.nan, dtype=np.float32)
    if ev.any():
        iy, ix = np.nonzero(ev)
        if method == LOGIT_METHOD:
            if window_probs is None:
                raise ValueError("the logit method needs the window probabilities of the 64-px grid")
            grid[iy, ix] = scorer.window_scores(logit_features(window_probs[iy, ix]))
        else:
            f = window_features(net, image, np.stack([ys[iy], xs[ix]], axis=1), device=device)
            grid[iy, ix] = scorer.window_scores(f, net) if isinstance(scorer, OtherScorer) else scorer.window_scores(f)
            if isinstance(scorer, GaussScorer):  # its image score is that of the mean feature
                return scorer.image_score(f), grid, ys, xs
    return image_score(np.nan_to_num(grid), ev), grid, ys, xs


ROTATION_SAMPLE = 256  # windows the rotation check scores per turn


def sample_windows(evidence: np.ndarray, limit: int = ROTATION_SAMPLE) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``limit`` windows with evidence, evenly spread over them in row-major order (deterministic).

    Returns the (row, column) grid indices of the chosen windows.
    """
    iy, ix = np.nonzero(evidence)
    if len(iy) > limit:
        pick = np.unique(np.linspace(0, len(iy) - 1, limit).round().astype(np.int64))
        iy, ix = iy[pick], ix[pick]
    return iy, ix


def turned_window_score(
    scorer: KnnScorer | OtherScorer | GaussScorer, net: ScannerNet, image: np.ndarray, corners: np.ndarray, k: int, *,
    method: str = METHOD, temperature: float = 1.0, device: torch.device | None = None,
) -> float | None:
    """Mean unknown score of the 64x64 windows at ``corners``, each turned by ``k`` quarter turns.

    The rotation check (:func:`scanlab.core.evidence.gating.rotation_warning`)
    asks it on a bounded sample of windows with evidence (:func:`sample_windows`)
    instead of re-running the network over the whole turned scan: turning a
    window is turning the scan, up to which windows the grid cuts.
    """
    if len(corners) == 0:
        return None
    floating = np.issubdtype(image.dtype, np.floating)
    if floating:
        crops = np.stack([image[:, y : y + PATCH, x : x + PATCH] for y, x in corners])
        crops = np.rot90(crops, k, axes=(2, 3))
    else:
        crops = np.stack([image[y : y + PATCH, x : x + PATCH] for y, x in corners])
        crops = np.rot90(crops, k, axes=(1, 2))
    x = np.ascontiguousarray(crops if floating else crops.transpose(0, 3, 1, 2), dtype=np.float32)
    if not floating:
        x /= np.float32(full_scale(image.dtype))
    f = fused_window_features(net, x, device=device)
    if isinstance(scorer, GaussScorer):  # the sample's mean feature, as for the image score
        return scorer.image_score(f)
    if isinstance(scorer, OtherScorer):
        u = scorer.window_scores(f, net)
    elif method == LOGIT_METHOD:
        with torch.inference_mode():
            z = torch.nn.functional.linear(torch.from_numpy(f), net.fc.weight.detach().cpu(), net.fc.bias.detach().cpu())
            p = torch.softmax(z.double() / temperature, dim=1).float().numpy()
        u = scorer.window_scores(logit_features(p))
    else:
        u = scorer.window_scores(f)
    return float(np.mean(u))
