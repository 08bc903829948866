"""Unknown-scanner score ``gauss-image``: Mahalanobis distance of the image's mean feature.

Chosen by measurement for lab models (BENCHMARKS.md, "Lab models say unknown"):
on a lab model trained on 3 scanners x 10 scans, with development banks drawn with
other seeds and another unseen bank than the benchmark's, the image-level AUC
(fresh known scans against never-seen scanners) was 0.77 for this score against
0.69 for the mean P(other) of the "other scanner" output, 0.70-0.72 for
per-window Mahalanobis and k-NN scores (mean or median over the windows), and
0.73 / 0.60 with 3 x 5 scans.

The model (fitted on the *training* windows, which every lab has, so it needs no
validation image):

* ``f``: the pooled penultimate features of a 64x64 window (the input of the last
  linear layer);
* class means ``mu_c`` and one shared within-class covariance ``S``, shrunk towards
  ``tr(S) / C * I`` by :data:`SHRINK` (96 features from a few thousand windows);
* ``A``: the upper Cholesky factor of ``S^-1`` transposed, so that
  ``(f - mu)^T S^-1 (f - mu) = |A f - A mu|^2``.

``A`` is stored as extra rows of the last linear layer (``open_set.gauss_proj``,
bias zero), so the vote's own network pass gives every window's projection
``A f`` (the dense engine pools after the head, and the head is linear): the
trunk never runs again. An image's score is ``d2 = min_c |mean(A f) - A mu_c|^2 / C``
over its windows with evidence, reported as ``d2 / (d2 + ref)`` (in [0, 1); 0.5
at ``ref``, the median cross-fitted distance of the training images), so 0 is
"at a class centre" and values near 1 are far from every known scanner. The map's
per-window score is the same with the window's own projection and the window
reference ``ref_window``.

Averaging over the image's windows keeps what the windows share (the scanner's
traces) and averages away what they do not (the content), which is why the
image mean separates better than the mean of per-window distances.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

METHOD = "gauss-image"
SHRINK = 0.1  # shrinkage of the shared covariance towards a multiple of the identity (measured: 0.01-0.3 alike)
MAX_WINDOWS_PER_IMAGE = 256  # training windows per image used for the fit (evenly spread; bounds the cost)


def _conv(t: Any) -> np.ndarray:
    return t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)


@dataclass
class GaussScorer:
    """Class means and the whitening projection of the shared covariance (see module docstring)."""

    proj: np.ndarray  # (C, C) float32: rows A, one more "row of the last layer" each
    centres: np.ndarray  # (Ns, C) float32: A mu_c
    ref: float  # image reference distance (median cross-fitted training image d2)
    ref_window: float  # window reference distance (median cross-fitted training window d2)

    def head(self) -> tuple[np.ndarray, np.ndarray]:
        """(weight (C, C), bias (C,)) of the extra rows, for the engines' one-pass output (``extra=``)."""
        return self.proj, np.zeros(len(self.proj), np.float32)

    def project(self, raw: np.ndarray) -> np.ndarray:
        """(n, C) raw pooled features -> (n, C) projections ``A f`` (float64)."""
        return raw.astype(np.float64) @ self.proj.astype(np.float64).T

    def _sq_distances(self, proj: np.ndarray) -> np.ndarray:
        """(n, Ns) squared Mahalanobis distances of (n, C) projections to every class mean."""
        c = self.centres.astype(np.float64)
        return ((proj[:, None, :] - c[None, :, :]) ** 2).sum(-1)

    def distance(self, proj: np.ndarray) -> np.ndarray:
        """Smallest squared Mahalanobis distance to a class mean, divided by C, of (n, C) projections."""
        return self._sq_distances(proj).min(1) / proj.shape[1]

    def image_score_of(self, proj: np.ndarray) -> float | None:
        """Image score from the (n, C) projections of its windows with evidence (None when n = 0)."""
        if len(proj) == 0:
            return None
        d = float(self.distance(proj.mean(0, keepdims=True))[0])
        return d / (d + self.ref)

    def image_class_of(self, proj: np.ndarray) -> int | None:
        """The class whose mean is nearest (Mahalanobis) to the image's mean feature, from the (n, C)
        projections of its windows with evidence (None when n = 0): the mean-feature check of the verdict."""
        if len(proj) == 0:
            return None
        return int(self._sq_distances(proj.mean(0, keepdims=True))[0].argmin())

    def window_scores_of(self, proj: np.ndarray) -> np.ndarray:
        """Per-window scores in [0, 1) of (n, C) projections (the map's layer)."""
        d = self.distance(proj)
        return (d / (d + self.ref_window)).astype(np.float32)

    def window_scores(self, raw: np.ndarray, net: Any = None) -> np.ndarray:
        """Per-window scores of (n, C) raw features (``net`` unused: same call as the other scorers)."""
        return self.window_scores_of(self.project(raw))

    def image_score(self, raw: np.ndarray) -> float | None:
        """Image score of (n, C) raw window features (the separate-pass reference)."""
        return self.image_score_of(self.project(raw))

    def extras(self) -> dict[str, np.ndarray]:
        """Tensors stored in the model file (names begin ``open_set.``)."""
        return {"open_set.gauss_proj": self.proj.astype(np.float32),
                "open_set.gauss_centres": self.centres.astype(np.float32)}

    @classmethod
    def from_extras(cls, extras: dict, params: dict) -> GaussScorer | None:
        """Rebuild from a model file's extra tensors and ``open_set.params``; None when something is missing."""
        p, c = extras.get("open_set.gauss_proj"), extras.get("open_set.gauss_centres")
        ref, refw = params.get("ref"), params.get("ref_window")
        if p is None or c is None or not isinstance(ref, (int, float)) or not isinstance(refw, (int, float)):
            return None
        p, c = _conv(p).astype(np.float32), _conv(c).astype(np.float32)
        if p.ndim != 2 or p.shape[0] != p.shape[1] or c.ndim != 2 or c.shape[1] != p.shape[1] or ref <= 0 or refw <= 0:
            return None
        return cls(p, c, float(ref), float(refw))


def _fit(feats: np.ndarray, labels: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(A, A mu) from raw features and labels (classes without a window get the mean of all)."""
    f = feats.astype(np.float64)
    allmu = f.mean(0)
    mus = np.stack([f[labels == c].mean(0) if (labels == c).any() else allmu for c in range(n_classes)])
    r = f - mus[labels]
    cov = r.T @ r / max(1, len(f))
    t = max(float(np.trace(cov)) / len(cov), 1e-12)
    cov = (1 - SHRINK) * cov + SHRINK * t * np.eye(len(cov))
    # S^-1 = L L^T (Cholesky of the precision): |L^T (f - mu)|^2 is the Mahalanobis distance
    lo = np.linalg.cholesky(np.linalg.inv(cov))
    a = lo.T
    return a, mus @ a.T


def fit_gauss(
    feats: np.ndarray, labels: np.ndarray, image_ids: np.ndarray, n_classes: int
) -> tuple[GaussScorer, np.ndarray, np.ndarray]:
    """Fit on training windows; cross-fitted image and window distances for the threshold.

    Parameters
    ----------
    feats : (n, C) raw pooled features of training windows with evidence
    labels : (n,) class of each window
    image_ids : (n,) training image of each window

    Returns
    -------
    (scorer, image_d2, image_class)
        ``image_d2``: each training image's distance under a model fitted on the
        *other* training images (leave one image out), so the known end of the
        threshold is measured on images the Gaussian did not see; ``image_class``
        their classes.
    """
    a, centres = _fit(feats, labels, n_classes)
    imgs = np.unique(image_ids)
    img_d, img_c, win_d = [], [], []
    for i in imgs:
        m = image_ids == i
        if m.all():  # a single training image: nothing to cross-fit against
            continue
        ai, ci = _fit(feats[~m], labels[~m], n_classes)
        s = GaussScorer(ai.astype(np.float32), ci.astype(np.float32), 1.0, 1.0)
        pr = s.project(feats[m])
        img_d.append(float(s.distance(pr.mean(0, keepdims=True))[0]))
        img_c.append(int(labels[m][0]))
        win_d.append(s.distance(pr))
    img_d_a = np.array(img_d)
    ref = float(np.median(img_d_a)) if len(img_d_a) else 1.0
    ref_w = float(np.median(np.concatenate(win_d))) if win_d else 1.0
    scorer = GaussScorer(a.astype(np.float32), centres.astype(np.float32), max(ref, 1e-9), max(ref_w, 1e-9))
    return scorer, img_d_a / (img_d_a + scorer.ref), np.array(img_c, int)
