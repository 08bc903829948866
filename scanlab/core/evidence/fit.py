"""Everything a training run fits after the weights: calibration, open-set scorer, thresholds.

:func:`fit_evidence_model` is the one entry point (``scanlab train`` calls it just
before saving, for models trained from scratch and fine-tuned lab models alike;
the shipped model was updated with it). It reads the validation images once,
through the same engine and no-signal rule as an analysis, and returns the
manifest keys ``calibration``, ``open_set`` and ``training_input`` plus the extra
tensors to store in the model file.

Too small a collection (fewer than :data:`MIN_VAL_IMAGES_PER_CLASS` validation
images in some class) gives ``calibration.calibrated = false`` with the reason. The
k-NN scorers then get no method either (their thresholds would rest on one or two
images); the ``other-output`` scorer, which every ``scanlab train`` run now trains,
sets its threshold from the validation windows and the held-out outlier designs
(:mod:`scanlab.core.evidence.threshold`) and records the rule and its sample sizes; so
does ``gauss-image`` (what ``scanlab train`` uses), fitted on the training windows and
cross-fitted over the training images. The temperature is fitted from
:data:`MIN_CAL_WINDOWS_PER_CLASS` validation windows per class when there are fewer than
3 validation images.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from scanlab.core.engine.engines import Engine, get_engine
from scanlab.core.engine.network import PATCH, ScannerNet
from scanlab.core.engine.reliability import apply_temperature, subimage_probs_multi
from scanlab.core.evidence import calibration as cal
from scanlab.core.evidence import gauss, openset
from scanlab.core.evidence.threshold import KNOWN_QUANTILE, gauss_threshold, other_output_threshold
from scanlab.core.evidence.verdict import (
    DEFAULT_THRESHOLDS,
    MEAN_FEATURE_CHECK,
    MEAN_FEATURE_CHECK_RULE,
)
from scanlab.core.jobs import CancelToken, ProgressFn, check, report

MIN_VAL_IMAGES_PER_CLASS = 3
MIN_CAL_WINDOWS_PER_CLASS = 32  # validation windows per class that fit the temperature (one number)
UNKNOWN_MARGIN = 0.01  # added to the largest held-out known image score (k-NN methods)
# other-output with >= MIN_VAL_IMAGES_PER_CLASS validation images per class: the known end of
# the threshold keeps this share of them (see scanlab.core.evidence.threshold).
OTHER_KEEP = KNOWN_QUANTILE


def dpi_range(paths: Iterable[str]) -> list[float] | None:
    """[lo, hi] of the resolutions recorded in the files' headers (None when none records one)."""
    from PIL import Image

    vals = []
    for p in paths:
        try:
            with Image.open(p) as im:
                d = im.info.get("dpi")
        except OSError:
            continue
        if d and all(isinstance(v, (int, float)) and v > 1 for v in d):
            vals.append(float(max(d)))
    return [min(vals), max(vals)] if vals else None


def _bit_depth(pixels: np.ndarray) -> int:
    return 16 if pixels.dtype == np.uint16 else 8


def collect_windows(
    net: ScannerNet,
    val_images: Iterable[tuple[np.ndarray, int]],
    *,
    engine: Engine | str | None = None,
    device: torch.device | None = None,
    cancel: CancelToken | None = None,
    progress: ProgressFn | None = None,
    total: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[int], set[int]]:
    """Raw probabilities and features of the 64x64 windows with evidence, their labels and image ids."""
    eng = get_engine(engine) if engine is None or isinstance(engine, str) else engine
    probs, feats, labels, ids, per_image_class, depths = [], [], [], [], [], set()
    for i, (pixels, label) in enumerate(val_images):
        check(cancel)
        sp = subimage_probs_multi(net, pixels, [((PATCH, PATCH), (PATCH, PATCH))], engine=eng, device=device)[0]
        ev = sp.evidence_mask()
        p = sp.probs[ev]
        iy, ix = np.nonzero(ev)
        feats.append(openset.window_features(net, pixels, np.stack([sp.ys[iy], sp.xs[ix]], axis=1), device=device))
        probs.append(p)
        labels.append(np.full(len(p), int(label)))
        ids.append(np.full(len(p), i))
        per_image_class.append(int(label))
        if not np.issubdtype(pixels.dtype, np.floating):
            depths.add(_bit_depth(pixels))
        report(progress, i + 1, total or i + 1)
    if not probs:
        return (np.zeros((0, net.n_classes), np.float32), np.zeros((0, net.feature_channels), np.float32),
                np.zeros(0, int), np.zeros(0, int), per_image_class, depths)
    return (np.concatenate(probs), np.concatenate(feats), np.concatenate(labels), np.concatenate(ids),
            per_image_class, depths)


def fit_evidence_model(
    net: ScannerNet,
    val_images: Iterable[tuple[np.ndarray, int]],
    classes: list[str],
    *,
    engine: Engine | str | None = None,
    device: torch.device | None = None,
    cancel: CancelToken | None = None,
    progress: ProgressFn | None = None,
    total: int | None = None,
    demonstration: bool = False,
    dpi_range: list[float] | None = None,
    diagram: str | None = None,
    method: str = openset.METHOD,
    other: openset.OtherScorer | None = None,
    outliers: tuple[np.ndarray, np.ndarray] | None = None,
    negatives: Iterable[np.ndarray] | None = None,
    train_images: Iterable[tuple[np.ndarray, int]] | None = None,
    copies: int = 1,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Fit temperature, open-set scorer and thresholds on the validation images.

    Parameters
    ----------
    net : ScannerNet
        The trained network (eval mode is set).
    val_images : iterable of (pixels, class index)
        Decoded scans (uint8/uint16 (H, W, 3), as :func:`scanlab.core.io.imaging.load_scan` gives).
    classes : list of str
        Class names in output order.
    demonstration : bool
        True for a model trained only on virtual scanners.
    dpi_range : [lo, hi], optional
        Resolution range of the training scans (None: unknown).
    diagram : str, optional
        Where to write the reliability diagram PNG.
    method : str
        ``knn-features`` (default, works with any number of classes) or
        ``knn-logits`` (measured on the shipped model) or ``other-output`` (needs ``other``).
    other : OtherScorer, optional
        The extra "other scanner" output of a network trained with outlier exposure
        (``benchmarks/train_other.py``, :mod:`scanlab.core.training.other`); required by ``other-output``.
    outliers : (windows, group ids), optional
        uint8 (m, 64, 64, 3) outlier windows the extra output was *not* trained on and
        their design (group) ids: the outlier end of the ``other-output`` threshold.
    negatives : iterable of decoded scans, optional
        The lab's own scans of other scanners held out from training: their image
        scores check the threshold (``open_set.negatives``).
    train_images : iterable of (pixels, class index), optional
        The training split: ``gauss-image`` fits its class means and covariance on
        their windows (cross-fitted for the threshold); required by that method.
    copies : int
        ``val_images`` holds every validation scan this many times (the scans as they
        are, then the same scans through the delivery chain): the rule of at least
        ``MIN_VAL_IMAGES_PER_CLASS`` images per class counts distinct scans only.

    Returns
    -------
    (manifest_updates, extra_tensors)
        Keys ``calibration``, ``open_set``, ``demonstration``, ``training_input``;
        tensors named ``open_set.*`` (numpy float32).
    """
    net.eval()
    probs, feats, labels, ids, img_class, depths = collect_windows(
        net, val_images, engine=engine, device=device, cancel=cancel, progress=progress, total=total
    )
    updates: dict[str, Any] = {
        "demonstration": bool(demonstration),
        "training_input": {"dpi": dpi_range, "bit_depths": sorted(depths) or [8], "modes": ["RGB"]},
    }
    counts = np.bincount(np.asarray(img_class, dtype=int), minlength=len(classes)) if img_class else np.zeros(len(classes), int)
    counts = counts // max(1, copies)  # distinct scans
    win_counts = np.bincount(labels, minlength=len(classes)) if len(labels) else np.zeros(len(classes), int)
    few_images = counts.min() < MIN_VAL_IMAGES_PER_CLASS
    short = [f"{c} ({int(n)})" for c, n in zip(classes, counts, strict=True) if n < MIN_VAL_IMAGES_PER_CLASS]
    why = (
        f"too few validation images to calibrate or set thresholds: need at least "
        f"{MIN_VAL_IMAGES_PER_CLASS} per class, short: {', '.join(short) or 'no windows with evidence'}"
    )
    # The temperature is one number: the validation *windows* fit it when every class has
    # MIN_CAL_WINDOWS_PER_CLASS of them, even from one image (a 512 px scan has 64).
    if len(probs) == 0 or (few_images and win_counts.min() < MIN_CAL_WINDOWS_PER_CLASS):
        updates["calibration"] = {"calibrated": False, "reason": why if len(probs) == 0 else
                                  f"{why}, and fewer than {MIN_CAL_WINDOWS_PER_CLASS} validation windows with "
                                  "evidence in some class"}
        if method in (openset.OTHER_METHOD, openset.GAUSS_METHOD) and len(probs):  # thresholds need no 3 per class
            updates["open_set"], extras = _open_set_of(method, net, other, feats, ids, img_class, outliers,
                                                       negatives, device, train_images, len(classes), cancel)
            return updates, extras
        updates["open_set"] = {"method": None, "thresholds": dict(DEFAULT_THRESHOLDS), "reason": why}
        return updates, {}
    check(cancel)
    t = cal.fit_temperature(probs, labels)
    calibrated = apply_temperature(probs, t)
    bins_before, bins_after = cal.reliability_bins(probs, labels), cal.reliability_bins(calibrated, labels)
    updates["calibration"] = {
        "calibrated": True, "method": "temperature", "temperature": round(t, 6),
        "ece_before": round(cal.ece(probs, labels), 6), "ece_after": round(cal.ece(calibrated, labels), 6),
        "nll_before": round(cal.nll(probs, labels), 6), "nll_after": round(cal.nll(probs, labels, t), 6),
        "n_bins": cal.N_BINS, "fitted_on": "val", "n_images": int(len(img_class)), "n_windows": int(len(labels)),
        "level": "64x64 windows with evidence", "reason": None,
        "bins": cal.bins_block(bins_before, bins_after),
        "rule": (f"temperature minimising the NLL of the {len(labels)} validation windows with evidence"
                 + (f" (fewer than {MIN_VAL_IMAGES_PER_CLASS} validation images in some class: "
                    f"at least {MIN_CAL_WINDOWS_PER_CLASS} windows in every class suffice for one number)"
                    if few_images else "")),
        "min_windows_per_class": int(win_counts.min()),
    }
    if diagram:  # drawn from the stored bins, the same data the wizard's Evaluate page plots
        stored = cal.bins_from_block(updates["calibration"])
        cal.draw_reliability_diagram(*stored, diagram, title=f"validation windows, T = {t:.2f}")
    if method in (openset.OTHER_METHOD, openset.GAUSS_METHOD):
        updates["open_set"], extras = _open_set_of(method, net, other, feats, ids, img_class, outliers,
                                                   negatives, device, train_images, len(classes), cancel)
        return updates, extras
    if few_images:  # the k-NN thresholds rest on held-out validation images
        updates["open_set"] = {"method": None, "thresholds": dict(DEFAULT_THRESHOLDS), "reason": why}
        return updates, {}
    check(cancel)
    thr = dict(DEFAULT_THRESHOLDS)
    vectors = openset.logit_features(calibrated) if method == openset.LOGIT_METHOD else feats
    scorer, held_scores = openset.fit_knn(vectors, ids, labels)
    extras = scorer.extras()
    params = {"k": scorer.k, "bank_windows": int(len(scorer.bank)), "quantiles": int(len(scorer.quantiles)),
              "feature": ("unit-length centred log-probabilities (calibrated)" if method == openset.LOGIT_METHOD
                          else "unit-length pooled penultimate features of 64x64 windows"),
              "image_score": "mean over the windows with evidence"}
    thr["unknown"] = round(float(min(0.999, held_scores.max() + UNKNOWN_MARGIN)), 4)
    rule = (f"largest held-out validation image score + {UNKNOWN_MARGIN} "
            "(held-out half: the other half is the k-NN bank)")
    updates["open_set"] = {
        "method": method,
        "params": params,
        "thresholds": thr,
        "threshold_rule": rule,
        "fitted_on": "val", "n_images": int(len(img_class)), "reason": None,
    }
    return updates, {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in extras.items()}


def stack_features(net: ScannerNet, windows: np.ndarray, *, batch: int = 256,
                   device: torch.device | None = None) -> np.ndarray:
    """Pooled penultimate features (n, C) of a stack of uint8 (n, 64, 64, 3) windows."""
    dev = device or torch.device("cpu")
    net = net.to(dev).eval()
    out = np.zeros((len(windows), net.feature_channels), np.float32)
    with torch.inference_mode():
        for s in range(0, len(windows), batch):
            w = np.ascontiguousarray(windows[s : s + batch].transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255)
            out[s : s + len(w)] = net.trunk(torch.from_numpy(w).to(dev)).mean(dim=(2, 3)).float().cpu().numpy()
    return out


def _open_set_of(
    method: str, net: ScannerNet, other: openset.OtherScorer | None, feats: np.ndarray, ids: np.ndarray,
    img_class: list[int], outliers: tuple[np.ndarray, np.ndarray] | None, negatives: Iterable[np.ndarray] | None,
    device: torch.device | None, train_images: Iterable[tuple[np.ndarray, int]] | None, n_classes: int,
    cancel: CancelToken | None,
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The ``open_set`` block and extra tensors of the two scorers whose thresholds need no 3 images per class."""
    if method == openset.GAUSS_METHOD:
        return _gauss_open_set(net, feats, ids, outliers, negatives, device, train_images, n_classes, other, cancel)
    return _other_open_set(net, other, feats, ids, img_class, outliers, negatives, device)


def _gauss_open_set(
    net: ScannerNet, feats: np.ndarray, ids: np.ndarray, outliers: tuple[np.ndarray, np.ndarray] | None,
    negatives: Iterable[np.ndarray] | None, device: torch.device | None,
    train_images: Iterable[tuple[np.ndarray, int]] | None, n_classes: int, other: openset.OtherScorer | None,
    cancel: CancelToken | None,
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``gauss-image``: Gaussian fitted on the training windows, threshold from cross-fitting (gauss.py)."""
    if train_images is None:
        raise ValueError("the gauss-image method needs the training images (train_images=)")
    t0 = time.perf_counter()
    tf, tl, ti = [], [], []
    for i, (px, lab) in enumerate(train_images):
        check(cancel)
        ys, xs, ev = openset.feature_windows(px)
        iy, ix = np.nonzero(ev)
        if len(iy) > gauss.MAX_WINDOWS_PER_IMAGE:  # evenly spread, deterministic: bounds the cost on big scans
            pick = np.linspace(0, len(iy) - 1, gauss.MAX_WINDOWS_PER_IMAGE).round().astype(np.int64)
            iy, ix = iy[pick], ix[pick]
        tf.append(openset.window_features(net, px, np.stack([ys[iy], xs[ix]], axis=1), device=device))
        tl.append(np.full(len(iy), int(lab)))
        ti.append(np.full(len(iy), i))
    f_tr, l_tr, i_tr = np.concatenate(tf), np.concatenate(tl), np.concatenate(ti)
    scorer, cf_scores, _ = gauss.fit_gauss(f_tr, l_tr, i_tr, n_classes)
    val_scores = np.array([scorer.image_score(feats[ids == i]) for i in np.unique(ids)])
    out_scores = None
    if outliers is not None and len(outliers[0]):
        of = stack_features(net, outliers[0], device=device)
        out_scores = np.array([scorer.image_score(of[outliers[1] == g]) for g in np.unique(outliers[1])])
    thr_u, rec = gauss_threshold(cf_scores, val_scores, out_scores)
    thr = dict(DEFAULT_THRESHOLDS)
    thr["unknown"] = thr_u
    thr[MEAN_FEATURE_CHECK] = 1.0  # verdict rule 4: the vote must name the class nearest to the mean feature
    block: dict[str, Any] = {
        "method": openset.GAUSS_METHOD,
        "mean_feature_check_rule": MEAN_FEATURE_CHECK_RULE,
        "params": {"feature": "pooled penultimate features of 64x64 windows, whitened (open_set.gauss_proj)",
                   "image_score": "d2 / (d2 + ref), d2 = smallest squared Mahalanobis distance (/ C) of the mean "
                                  "feature of the windows with evidence to a class mean",
                   "window_score": "the same with the window's own feature and ref_window",
                   "ref": round(scorer.ref, 6), "ref_window": round(scorer.ref_window, 6),
                   "shrinkage": gauss.SHRINK, "train_windows": int(len(f_tr)),
                   "train_images": int(len(np.unique(i_tr))), "windows": "64x64, non-overlapping grid",
                   "fit_seconds": round(time.perf_counter() - t0, 2)},
        "thresholds": thr,
        "threshold_rule": rec.pop("threshold_rule"),
        "threshold_samples": rec,
        "fitted_on": "train (cross-fitted) + val" + ("" if out_scores is None else " + held-out outlier designs"),
        "n_images": int(len(np.unique(ids))), "reason": None,
    }
    if negatives is not None:
        neg_scores = []
        for px in negatives:
            _, nf, _, _, _, _ = collect_windows(net, [(px, 0)], device=device)
            if len(nf):
                neg_scores.append(float(scorer.image_score(nf)))
        if neg_scores:
            block["negatives"] = {"n_images": len(neg_scores),
                                  "rejected": round(float(np.mean(np.array(neg_scores) > thr_u)), 4),
                                  "scores": [round(x, 4) for x in neg_scores]}
    tensors = dict(scorer.extras())
    if other is not None:  # the trained "other scanner" row stays in the file (not the scorer; for comparison)
        tensors.update(other.extras())
    return block, {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in tensors.items()}


def _other_open_set(
    net: ScannerNet,
    other: openset.OtherScorer | None,
    feats: np.ndarray,
    ids: np.ndarray,
    img_class: list[int],
    outliers: tuple[np.ndarray, np.ndarray] | None,
    negatives: Iterable[np.ndarray] | None,
    device: torch.device | None,
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The ``open_set`` block of the other-output scorer: threshold from validation windows and outliers."""
    if other is None:
        raise ValueError("the other-output method needs the network's extra output (other=)")
    u = other.window_scores(feats, net)
    out_scores = None
    if outliers is not None and len(outliers[0]):
        ou = other.window_scores(stack_features(net, outliers[0], device=device), net)
        groups = outliers[1]
        out_scores = np.array([ou[groups == g].mean() for g in np.unique(groups)])
    thr_u, rec = other_output_threshold(u, ids, dict(enumerate(img_class)), out_scores,
                                        min_per_class=MIN_VAL_IMAGES_PER_CLASS)
    thr = dict(DEFAULT_THRESHOLDS)
    thr["unknown"] = thr_u
    rule = rec.pop("threshold_rule")
    block: dict[str, Any] = {
        "method": openset.OTHER_METHOD,
        "params": {"feature": "P(other scanner): softmax over the class logits and the extra output's logit",
                   "image_score": "mean over the windows with evidence", "windows": "64x64, non-overlapping grid"},
        "thresholds": thr,
        "threshold_rule": rule,
        "threshold_samples": rec,
        "fitted_on": "val" if out_scores is None else "val + held-out outlier designs",
        "n_images": int(len(img_class)), "reason": None,
    }
    if negatives is not None:
        neg_scores = []
        for px in negatives:
            _, nf, _, _, _, _ = collect_windows(net, [(px, 0)], device=device)
            if len(nf):
                neg_scores.append(float(other.window_scores(nf, net).mean()))
        if neg_scores:
            block["negatives"] = {"n_images": len(neg_scores),
                                  "rejected": round(float(np.mean(np.array(neg_scores) > thr_u)), 4),
                                  "scores": [round(x, 4) for x in neg_scores]}
    extras = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in other.extras().items()}
    return block, extras
