"""The training job: data folder in, model file out (used by the CLI and the GUI wizard).

The model file is written atomically once the model is complete (trained, tested,
calibrated): a run cancelled, failed or killed before that leaves any previous file at
the output path untouched.
After every epoch a checkpoint goes to the per-user cache (one per output path);
``resume=True`` (``scanlab train --resume``) continues a crashed or cancelled run
from it, and a successful save deletes it.

Then (unless ``delivery_check=False``) the saved model's verdicts are measured on its
test split through the delivery chain (:mod:`scanlab.services.delivery_check`) and the
file is written again, atomically, with ``delivery_chain_measured``. The model is
complete before that check starts: a cancel (or a kill) during the check keeps the
saved model, without the measurement (``training.delivery_check: "interrupted"``).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scanlab.core.engine.engines import select_device
from scanlab.core.engine.network import build_model
from scanlab.core.errors import Cancelled, ScanLabError
from scanlab.core.evidence.coverage import reference_coverage, window_brightness
from scanlab.core.evidence.fit import dpi_range, fit_evidence_model
from scanlab.core.evidence.openset import GAUSS_METHOD, OtherScorer, feature_windows
from scanlab.core.io.delivery import delivered
from scanlab.core.io.fileio import check_writable, refuse_overwrite
from scanlab.core.io.imaging import ImageLoadError, as_uint8
from scanlab.core.io.jpegfacts import input_summary
from scanlab.core.jobs import CancelToken, ProgressFn, check, report
from scanlab.core.modelfile.store import load_model, make_manifest, save_model
from scanlab.core.training.dataset import (
    CachedImages,
    Dataset,
    DatasetError,
    ImageCache,
    check_layout,
    discover,
    parse_split,
    split_dataset,
)
from scanlab.core.training.loop import (
    EpochCallback,
    TrainConfig,
    evaluate_arrays,
    fit,
    load_checkpoint,
)
from scanlab.services import budget as budget_mod
from scanlab.services import delivery_check
from scanlab.services.models import get_model, resolve_model_path
from scanlab.services.other_output import (
    negative_files,
    oe_window_count,
    split_negatives,
    train_open_set,
)
from scanlab.services.paths import cache_dir

# Default length of the "other scanner" training (BENCHMARKS.md, "Lab models say unknown"):
# a share of the run's own batches, so its cost stays a fixed fraction of the training.
OE_SHARE = 1.0
OE_MIN_STEPS = 100
OE_MAX_STEPS = 400
# The unknown-scanner scorer of every trained model: chosen on development banks over the mean
# P(other) of the extra output, per-window Mahalanobis and k-NN (core/evidence/gauss.py, BENCHMARKS.md).
OPEN_SET_METHOD = GAUSS_METHOD
NO_NEGATIVES = "the lab gave no negative scans (DATA_DIR/_other/ or --other DIR)"


@dataclass(frozen=True)
class TrainRequest:
    """A JSON-serialisable description of a training run."""

    data_dir: str
    output: str
    config: TrainConfig = field(default_factory=TrainConfig)
    split: str = "6:1:3"
    base: str = "default"  # "default", "none" or a model path
    device: str = "auto"
    engine: str | None = None
    name: str | None = None
    cache: str | None = None  # decoded-image cache folder; None: the per-user cache; "": a temporary one
    units: bool = False  # Model/Unit/... layout
    holdout_unit: bool = False  # test split = one whole unit per class (needs ``units``)
    resume: bool = False  # continue from this output's last checkpoint
    checkpoint: str | None = None  # checkpoint file; None: derived from the output path
    exclude: tuple[str, ...] = ()  # files left out (unreadable, label conflicts), paths as found
    strict_files: bool = False  # True: an unreadable image stops the run instead of being skipped
    other: str | None = None  # folder of the lab's negatives (scans of no reference scanner), besides DATA_DIR/_other
    open_set: bool = True  # False: no "other scanner" output (benchmarks that measure its cost)
    outlier_cache: str | None = None  # outlier-window cache folder; None: <per-user cache>/outliers
    budget_s: float | None = None  # time budget: patches per epoch from a measured throughput (services.budget)
    distributed: int = 1  # DDP processes (services.training_ddp); 1: this process alone
    ray: str | None = None  # "auto", "local" or a Ray address: the DDP processes are Ray Train workers
    delivery_check: bool = True  # measure the verdicts on the test split through the delivery chain after saving


def checkpoint_path(req: TrainRequest) -> Path:
    """Where the checkpoint of a run writing ``req.output`` lives (per-user cache)."""
    if req.checkpoint:
        return Path(req.checkpoint)
    key = hashlib.sha256(str(Path(req.output).resolve()).encode()).hexdigest()[:20]
    return cache_dir() / "checkpoints" / f"{key}.pt"


def _fingerprint(req: TrainRequest, folder_hash: str) -> str:
    """Data + recipe + split + base: a checkpoint only resumes the run that made it."""
    d = {"data": folder_hash, "recipe": req.config.recipe(), "split": req.split, "base": req.base,
         "units": req.units, "holdout_unit": req.holdout_unit}
    if req.distributed > 1 or req.ray is not None:  # another world size draws other batches per process
        d["distributed"] = req.distributed
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()


def _cache_split(
    ds: Dataset,
    split: str,
    cache: ImageCache,
    cancel: CancelToken | None,
    progress: ProgressFn | None,
    skipped: list[dict[str, str]] | None = None,
) -> CachedImages:
    """Decode one split into the cache. Unreadable images are dropped from the split and
    listed in ``skipped`` (path relative to the data folder, reason); with ``skipped``
    None the first one stops the run (``--strict-files``)."""
    items = ds.split[split]
    files, shapes, kept = [], [], []
    for k, s in enumerate(items):
        check(cancel)
        try:
            f = cache.ensure(s)
        except ImageLoadError as e:
            if skipped is None:
                raise
            reason = str(e)
            prefix = f"{s.path}: "
            skipped.append({
                "path": s.path.relative_to(ds.root).as_posix(),
                "reason": reason[len(prefix):] if reason.startswith(prefix) else reason,
            })
            continue
        files.append(f)
        shapes.append(np.load(f, mmap_mode="r").shape[:2])
        kept.append(s)
        report(progress, k + 1, len(items))
    ds.split[split] = kept
    labs = [s.label for s in kept]
    if split in ("train", "val"):
        for ci, cname in enumerate(ds.classes):
            if ci not in labs:
                raise DatasetError(
                    f"{ds.root / cname}: no readable {split} image left after skipping unreadable files"
                )
    return CachedImages(files, labs, shapes)


def iter_images(images: CachedImages) -> Iterator[tuple[np.ndarray, int]]:
    """Yield (decoded pixels (H, W, 3), class index) of a split, one memory-mapped image at a time."""
    for i in range(len(images)):
        yield images[i], images.labels[i]


def iter_delivered(images: CachedImages, p: float, seed: int) -> Iterator[tuple[np.ndarray, int]]:
    """:func:`iter_images`, then (``p`` > 0) every image once more after one random delivery path.

    A model trained with the delivery chain (``TrainConfig.delivery_chain``) has its
    calibration and open-set thresholds fitted on validation scans as they are *and* as a
    lab receives them (re-saved as JPEG, resampled, tone-changed: the whole scan, as a user
    would), so that a re-saved scan of a known scanner is judged by a threshold that saw one.
    """
    yield from iter_images(images)
    if p <= 0:
        return
    rng = np.random.default_rng([seed, 41])
    for i in range(len(images)):
        yield delivered(as_uint8(np.asarray(images[i])), rng)[0], images.labels[i]


def training_coverage(images: Iterable[tuple[np.ndarray, int]], classes: list[str],
                      cancel: CancelToken | None = None) -> dict[str, Any]:
    """``training_input.reference_coverage``: the grey levels each class's training windows with evidence span.

    ``images``: (decoded pixels, class index) of the training split (:func:`iter_images`).
    """
    per_class: dict[str, list[np.ndarray]] = {c: [] for c in classes}
    for px, label in images:
        check(cancel)
        ys, xs, ev = feature_windows(px)
        per_class[classes[label]].append(window_brightness(px, ys, xs, ev))
    return reference_coverage(per_class)


def _init_network(req: TrainRequest, classes: list[str]) -> tuple[torch.nn.Module, str | None, OtherScorer | None]:
    """Fresh network, or one initialised from a base model (the head is replaced when classes differ).

    The third item is the base model's "other scanner" row, when it has one: it reads
    the same trunk features, so the lab model's extra output starts from it.
    """
    torch.manual_seed(req.config.seed)  # initial weights depend on the seed only
    net = build_model(len(classes), width=req.config.width)
    if req.base == "none":
        return net, None, None
    base_path = resolve_model_path(None if req.base == "default" else req.base)
    base = get_model(base_path)
    if base.net.width != net.width:
        raise ScanLabError(f"{base_path}: base model width {base.net.width} differs from --width {net.width}")
    state = {k: v for k, v in base.net.state_dict().items() if not k.startswith("fc.")}
    net.load_state_dict(state, strict=False)
    if base.classes == classes:
        net.fc.load_state_dict(base.net.fc.state_dict())
    other = OtherScorer.from_extras(base.extras, net.feature_channels)
    return net, f"{base.name} ({base.manifest.get('weights_sha256')})", other


def _with_misclassified(m: dict[str, Any] | None, ds: Any, split: str) -> dict[str, Any] | None:
    """Replace the per-image prediction list by the misclassified images (paths relative to the data)."""
    if m is None:
        return None
    m = dict(m)
    preds = m.pop("image_predictions", None) or []
    m["misclassified"] = [
        {"path": s.path.relative_to(ds.root).as_posix(), "true": ds.classes[s.label], "predicted": ds.classes[p]}
        for s, p in zip(ds.split[split], preds, strict=False)
        if p != s.label
    ]
    return m


def run_training(
    req: TrainRequest,
    *,
    cancel: CancelToken | None = None,
    progress: ProgressFn | None = None,
    on_epoch: EpochCallback | None = None,
    on_stage: Any = None,
    on_batch: Any = None,
) -> dict[str, Any]:
    """Train, evaluate on the test split and save; returns the stored manifest.

    ``on_stage(text)`` reports coarse stages ("reading data", "training", ...);
    ``on_batch(dict)`` reports every batch (see :func:`scanlab.core.training.loop.fit`).

    Raises
    ------
    ScanLabError
        Bad data, a checkpoint that cannot be written or resumed, a diverged loss
        (:class:`scanlab.core.training.loop.TrainingDiverged`): nothing is saved then.
    """
    out = check_writable(req.output, what="model file")
    refuse_overwrite(out, check_layout(req.data_dir), "a training image")
    if req.base not in ("default", "none"):
        refuse_overwrite(out, [req.base], "the base model")
    ratios = parse_split(req.split)
    device = select_device(req.device)
    stage = on_stage or (lambda _t: None)
    ckpt = checkpoint_path(req)
    resume = load_checkpoint(ckpt) if req.resume else None
    stage("reading data")
    ds = discover(req.data_dir, min_classes=2, units=req.units, exclude=req.exclude)
    ds = split_dataset(ds, ratios, req.config.seed, holdout_unit=req.holdout_unit)
    # the delivery check scores the lab's negatives as unseen scanners: a bad --other fails now, not after training
    negatives = negative_files(req.data_dir, req.other) if req.delivery_check else []
    with ExitStack() as stack:
        if req.cache == "":  # no shared cache asked for: a private one, removed at the end
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="scanlab-decoded-"))
        else:
            folder = req.cache if req.cache is not None else cache_dir() / "decoded"
        cache = ImageCache(folder)
        skipped: list[dict[str, str]] | None = None if req.strict_files else []
        train = _cache_split(ds, "train", cache, cancel, progress, skipped)
        val = _cache_split(ds, "val", cache, cancel, progress, skipped)
        test = _cache_split(ds, "test", cache, cancel, None, skipped)
        net, parent, base_other = _init_network(req, ds.classes)
        cfg, budget = req.config, None
        if req.budget_s is not None:
            stage("measuring throughput")
            timing = budget_mod.measure(net, train, val, cfg, device, req.open_set)
            budget = budget_mod.plan(req.budget_s, cfg, train, timing,
                                     lambda b: oe_steps_for(cfg, b) if req.open_set else 0,
                                     oe_windows=oe_window_count(len(train)) if req.open_set else 0)
            stage(budget_mod.describe(budget))
            cfg = replace(cfg, max_batches=budget["batches_per_epoch"])
        stage("training")
        fp = _fingerprint(req, ds.folder_hash)
        fit_fn = fit
        if req.distributed > 1 or req.ray is not None:
            from scanlab.services.training_ddp import distributed_fit

            fit_fn = distributed_fit(req.distributed, req.ray)
        hist = fit_fn(
            net, train, val, cfg, device=device, engine=req.engine, cancel=cancel, progress=progress,
            on_epoch=on_epoch, on_batch=on_batch, checkpoint=ckpt, resume_from=resume, fingerprint=fp,
        )
        oe = None
        if req.open_set:
            oe = train_open_set(
                net, train, data_dir=req.data_dir, other_dir=req.other, steps=oe_steps_for(cfg, hist["epochs_run"] * hist["batches_per_epoch"]),
                seed=req.config.seed, base_other=base_other, augment=cfg.delivery_chain > 0, device=device,
                cache_folder=req.outlier_cache,
                cancel=cancel, progress=progress, stage=stage,
            )
            # the last block and the class rows moved a little: measure validation again
            hist["val"] = evaluate_arrays(net, val, val.labels, len(ds.classes), engine=req.engine, device=device,
                                          cancel=cancel)
        metrics: dict[str, Any] = {"val": _with_misclassified(hist["val"], ds, "val")}
        if len(test):
            stage("testing")
            tm = evaluate_arrays(net, test, test.labels, len(ds.classes), engine=req.engine, device=device, cancel=cancel)
            metrics["test"] = _with_misclassified(tm, ds, "test")
        check(cancel)
        # Calibration, open-set scorer and thresholds, fitted on the validation split
        # (inside the cache's lifetime: iter_images(val) decodes one image at a time).
        stage("calibrating")
        # with the chain, the thresholds also see every validation scan as a lab receives it (not for
        # the k-NN scorer of a run without the open set: its held-out half would hold a copy's twin)
        chain_p = cfg.delivery_chain if req.open_set else 0.0
        extra_manifest, extras = fit_evidence_model(
            net, iter_delivered(val, chain_p, cfg.seed), ds.classes, engine=req.engine, device=device,
            cancel=cancel, total=len(val) * (2 if chain_p > 0 else 1), copies=2 if chain_p > 0 else 1,
            demonstration=(Path(req.data_dir) / "synth.json").is_file(),  # a virtual bank from `scanlab synth`
            dpi_range=dpi_range(str(x.path) for x in ds.split["train"]),
            **({} if oe is None else {"method": OPEN_SET_METHOD, "other": oe.scorer, "outliers": oe.heldout,
                                     "negatives": oe.negatives_check, "train_images": iter_images(train)}),
        )
        if chain_p > 0:
            for block in ("calibration", "open_set"):
                if block in extra_manifest:
                    extra_manifest[block]["validation_delivered"] = (
                        "every validation scan counted twice: as it is and once through one random delivery "
                        "path (scanlab.core.io.delivery.delivered: tone, resampling, JPEG re-save)")
        # formats and JPEG qualities of the training scans (headers only): the input gating compares
        # each questioned scan's JPEG facts with them
        extra_manifest.setdefault("training_input", {}).update(input_summary(str(x.path) for x in ds.split["train"]))
        # the brightness each class's training windows span: the verdict's reference-coverage rule
        extra_manifest["training_input"]["reference_coverage"] = training_coverage(iter_images(train), ds.classes, cancel)
        net.cpu()
        training = {
            "recipe": cfg.recipe(),
            "seed": req.config.seed,
            "epochs_run": hist["epochs_run"],
            "best_epoch": hist["best_epoch"],
            "stop_reason": hist["stop_reason"],
            "resumed_from_epoch": hist["resumed_from"],
            "history": hist["history"],
            "device": str(device),
            "data": {
                "root": str(Path(req.data_dir).resolve()),
                "folder_hash": ds.folder_hash,
                "split": req.split,
                "units": req.units,
                "holdout_unit": req.holdout_unit,
                "excluded": sorted(Path(p).resolve().relative_to(ds.root.resolve()).as_posix()
                                   if Path(p).resolve().is_relative_to(ds.root.resolve()) else str(p)
                                   for p in req.exclude),
                "counts": ds.counts(),
                "files": {
                    s: [x.path.relative_to(ds.root).as_posix() for x in ds.split[s]] for s in ("train", "val", "test")
                },
            },
            "cache": {"hits": cache.hits, "misses": cache.misses},
            "skipped_files": list(skipped or []),
            "strict_files": req.strict_files,
            # "interrupted" until the check below rewrites the file ("measured"); stays if it is cancelled
            "delivery_check": ("off" if not req.delivery_check else "no test split" if not len(test)
                               else "interrupted"),
        }
        if oe is not None:
            training["outlier_exposure"] = oe.record
        if budget is not None:
            training["budget"] = budget
        if "distributed" in hist:
            training["distributed"] = hist["distributed"]
    name = req.name or Path(req.output).stem
    manifest = make_manifest(net.cpu(), ds.classes, name=name, training=training, metrics=metrics, parent=parent)
    manifest.update(extra_manifest)
    stage("saving")
    stored = save_model(net, manifest, out, extras)
    ckpt.unlink(missing_ok=True)  # the run is complete: nothing left to resume
    if training["delivery_check"] == "interrupted":
        stored = _check_delivery(req, ds, out, negatives, cancel=cancel, progress=progress, stage=stage) or stored
    return stored


def _check_delivery(
    req: TrainRequest, ds: Dataset, out: Path, negatives: list[Path], *, cancel: CancelToken | None,
    progress: ProgressFn | None, stage: Any,
) -> dict[str, Any] | None:
    """Measure the saved model on its test split through the delivery chain and store the figures.

    Unseen scanners: the lab's negatives that outlier exposure did not train on (all of
    them when the run has no open set). Returns the manifest written again, or None when
    the check was cancelled: the saved model stays as it is, complete but unmeasured.
    """
    lm = load_model(out)  # the file as saved: what a lab will use
    known = [(str(s.path), ds.classes[s.label]) for s in ds.split["test"]]
    if req.open_set:
        _exposed, unseen, _use = split_negatives(negatives)
        unseen_set = (NO_NEGATIVES if not negatives
                      else f"the lab's negative scans held out from outlier exposure, {len(unseen)} of {len(negatives)}"
                      if len(negatives) > 1 else "the lab's one negative scan (also used for outlier exposure)")
    else:
        unseen = negatives
        unseen_set = (f"the lab's negative scans, {len(unseen)}" if negatives
                      else NO_NEGATIVES)
    stage(f"delivery check: {len(known)} test scans" + (f" and {len(unseen)} negatives" if unseen else "")
          + f" through {len(delivery_check.TRANSFORMS)} deliveries")
    try:
        m = delivery_check.measure(lm, known, unseen, root=ds.root, engine=req.engine, device=req.device,
                                   cancel=cancel, progress=progress)
    except Cancelled:
        stage("delivery check cancelled: the model is saved without it")
        return None
    man = {k: v for k, v in lm.manifest.items() if not k.startswith("_")}
    man["training"] = {**man["training"], "delivery_check": "measured"}
    man[delivery_check.KEY] = delivery_check.measured_block(
        m, benchmark="scanlab train (test split)", known_set=f"this model's test split, {len(known)} scans",
        unseen_set=unseen_set)
    stage("saving")
    return save_model(lm.net, man, out, dict(lm.extras))


def oe_steps_for(cfg: TrainConfig, trained_batches: int) -> int:
    """Steps of the "other scanner" training: ``cfg.oe_steps``, or by default a share of the
    batches the run trained (at least :data:`OE_MIN_STEPS`, at most :data:`OE_MAX_STEPS`)."""
    if cfg.oe_steps is not None:
        return cfg.oe_steps
    return int(min(OE_MAX_STEPS, max(OE_MIN_STEPS, round(OE_SHARE * trained_batches))))


def default_output_name(data_dir: str | os.PathLike) -> str:
    """A model file name derived from the data folder."""
    return f"{Path(data_dir).resolve().name}.safetensors"
