"""The unknown threshold of the ``other-output`` scorer, for any number of references.

A lab with ten scans per scanner has one or two validation images per class: a
quantile of one or two image scores is noise. The rule therefore uses the two
distributions the run does have:

* **known**: the scores of the validation images. With at least
  ``min_per_class`` of them in every class, their 98% quantile (the rule the
  shipped model uses). With fewer, pseudo-images are drawn from the validation
  *windows* of one class at a time (:data:`PSEUDO_WINDOWS` windows each, fewer than
  a real scan has, so their means spread wider than real image scores do: the
  estimate errs towards a higher threshold), and the threshold's known end is the
  larger of their 98% quantile and the largest real validation image score.
* **outliers**: the scores of outlier designs the extra output was *not* trained on
  (held-out designs of the virtual outlier bank), each design one pseudo-image; their
  5% quantile is the outlier end.

When the known end lies below the outlier end, the threshold is their midpoint on
the logit scale (both are probabilities; the midpoint in logits leaves the same
odds margin to both sides). When they overlap, the known end wins: the threshold
keeps known scans attributed and the overlap is recorded (``separable: false``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

# The largest score (the k-NN rule) hangs on one odd image; the target is >= 97% of
# known scans attributed, so 98% leaves one point for votes and confidence.
KNOWN_QUANTILE = 0.98
OUTLIER_QUANTILE = 0.05
PSEUDO_WINDOWS = 16  # windows per pseudo-image (a 512 px scan has 64)
PSEUDO_IMAGES = 2000
MAX_THRESHOLD = 0.999


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return float(np.log(p / (1 - p)))


def pseudo_image_scores(
    window_scores: np.ndarray, image_ids: np.ndarray, image_class: dict[int, int], *, seed: int = 0
) -> np.ndarray:
    """Means of :data:`PSEUDO_WINDOWS` windows drawn (with replacement) from one class's windows."""
    rng = np.random.default_rng(seed)
    cls = np.array([image_class[int(i)] for i in image_ids])
    classes = sorted(set(image_class.values()))
    out = []
    for c in classes:
        u = window_scores[cls == c]
        if len(u) == 0:
            continue
        m = min(PSEUDO_WINDOWS, len(u))
        idx = rng.integers(0, len(u), (PSEUDO_IMAGES // len(classes), m))
        out.append(u[idx].mean(axis=1))
    return np.concatenate(out) if out else np.zeros(0)


def _with_outlier_end(
    known: float, known_rule: str, outlier_scores: np.ndarray | None, rec: dict[str, Any]
) -> tuple[float, str]:
    """Threshold and rule from the known end and, when there are held-out outlier designs, the outlier end.

    Separable: the midpoint on the logit scale; overlapping: the known end (known scans
    stay attributed). Records the outlier end, its sample size and the rejection rate in ``rec``.
    """
    if outlier_scores is None or len(outlier_scores) == 0:
        return known, known_rule
    out_end = float(np.quantile(outlier_scores, OUTLIER_QUANTILE))
    rec.update({"outlier_end": round(out_end, 6), "n_outlier_designs": int(len(outlier_scores)),
                "separable": bool(known < out_end)})
    if known < out_end:
        thr = float(1 / (1 + np.exp(-(_logit(known) + _logit(out_end)) / 2)))
        rule = (f"midpoint on the logit scale between the known end ({known_rule}) and the outlier end "
                f"({OUTLIER_QUANTILE:.0%} quantile of {len(outlier_scores)} held-out outlier designs)")
    else:
        thr = known
        rule = (f"{known_rule}; the held-out outlier designs overlap it ({OUTLIER_QUANTILE:.0%} quantile "
                f"{out_end:.3f}), so known scans are kept attributed")
    rec["outlier_rejected_at_threshold"] = round(float((outlier_scores > thr).mean()), 4)
    return thr, rule


def other_output_threshold(
    window_scores: np.ndarray,
    image_ids: np.ndarray,
    image_class: dict[int, int],
    outlier_scores: np.ndarray | None,
    *,
    min_per_class: int,
) -> tuple[float, dict[str, Any]]:
    """The unknown threshold and the manifest block that says how it was set.

    Parameters
    ----------
    window_scores, image_ids : (n,)
        P(other) of every validation window with evidence, and its image.
    image_class : dict
        Class of each validation image id.
    outlier_scores : (m,), optional
        One score per held-out outlier design (mean over its windows); None: no outliers.
    min_per_class : int
        Validation images per class from which their own quantile is trusted.

    Returns
    -------
    (threshold, record)
        ``record`` holds ``threshold_rule`` (one sentence) and the sample sizes.
    """
    imgs = np.unique(image_ids)
    img_scores = np.array([window_scores[image_ids == i].mean() for i in imgs])
    per_class = np.bincount([image_class[int(i)] for i in imgs], minlength=max(image_class.values()) + 1)
    rec: dict[str, Any] = {"n_val_images": int(len(imgs)), "n_val_windows": int(len(window_scores)),
                           "min_val_images_per_class": int(per_class.min())}
    if per_class.min() >= min_per_class:
        known = float(np.quantile(img_scores, KNOWN_QUANTILE))
        known_rule = f"{KNOWN_QUANTILE:.0%} quantile of the validation image scores"
    else:
        pseudo = pseudo_image_scores(window_scores, image_ids, image_class)
        known = max(float(np.quantile(pseudo, KNOWN_QUANTILE)), float(img_scores.max()))
        known_rule = (f"the larger of the largest validation image score and the {KNOWN_QUANTILE:.0%} quantile of "
                      f"{len(pseudo)} pseudo-images of {PSEUDO_WINDOWS} validation windows of one class "
                      f"(fewer than {min_per_class} validation images in some class)")
        rec["n_pseudo_images"] = int(len(pseudo))
    rec["known_end"] = round(known, 6)
    thr, rule = _with_outlier_end(known, known_rule, outlier_scores, rec)
    rec["known_val_rejected_at_threshold"] = round(float((img_scores > thr).mean()), 4)
    rec["threshold_rule"] = rule
    return round(min(MAX_THRESHOLD, thr), 4), rec


def gauss_threshold(
    crossfit_scores: np.ndarray, val_scores: np.ndarray, outlier_scores: np.ndarray | None
) -> tuple[float, dict[str, Any]]:
    """The unknown threshold of the ``gauss-image`` scorer (:mod:`scanlab.core.evidence.gauss`).

    Known end: the larger of the :data:`KNOWN_QUANTILE` quantile of the training
    images' cross-fitted scores (each scored by a Gaussian fitted without it) and the
    largest validation image score (images the network never trained on). Outlier
    end and the combination as in :func:`other_output_threshold`.
    """
    parts, known = [], 0.0
    if len(crossfit_scores):
        known = float(np.quantile(crossfit_scores, KNOWN_QUANTILE))
        parts.append(f"the {KNOWN_QUANTILE:.0%} quantile of {len(crossfit_scores)} training images' "
                     "cross-fitted scores (leave one image out)")
    if len(val_scores):
        known = max(known, float(np.max(val_scores)))
        parts.append(f"the largest of {len(val_scores)} validation image scores")
    known_rule = "the larger of " + " and ".join(parts) if len(parts) > 1 else (parts[0] if parts else "none")
    rec: dict[str, Any] = {"n_crossfit_images": int(len(crossfit_scores)), "n_val_images": int(len(val_scores)),
                           "known_end": round(known, 6)}
    thr, rule = _with_outlier_end(known, known_rule, outlier_scores, rec)
    all_known = np.concatenate([crossfit_scores, val_scores])
    rec["known_val_rejected_at_threshold"] = round(float((np.asarray(val_scores) > thr).mean()), 4) if len(val_scores) else None
    rec["known_rejected_at_threshold"] = round(float((all_known > thr).mean()), 4) if len(all_known) else None
    rec["threshold_rule"] = rule
    return round(min(MAX_THRESHOLD, thr), 4), rec
