"""The training job: data folder in, model file out (used by the CLI and the GUI wizard).

The model file is written once, atomically, at the very end: a cancelled,
failed or killed run leaves any previous file at the output path untouched.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from scanlab.core.dataset import (
    Dataset,
    DatasetError,
    ImageCache,
    check_layout,
    discover,
    parse_split,
    split_dataset,
)
from scanlab.core.engine import select_device
from scanlab.core.errors import ScanLabError
from scanlab.core.evidence_fit import dpi_range, fit_evidence_model
from scanlab.core.fileio import check_writable, refuse_overwrite
from scanlab.core.imaging import ImageLoadError
from scanlab.core.jobs import CancelToken, ProgressFn, check, report
from scanlab.core.modelfile import make_manifest, save_model
from scanlab.core.network import build_model
from scanlab.core.training import EpochCallback, TrainConfig, evaluate_arrays, fit
from scanlab.services.models import get_model, resolve_model_path
from scanlab.services.paths import cache_dir


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
    cache: str | None = None  # HDF5 decoded-image cache; None: the per-user cache
    strict_files: bool = False  # True: an unreadable image stops the run instead of being skipped


def _load_split(
    ds: Dataset,
    split: str,
    cache: ImageCache,
    cancel: CancelToken | None,
    progress: ProgressFn | None,
    skipped: list[dict[str, str]] | None = None,
):
    """Decode one split. Unreadable images are dropped from the split and listed in
    ``skipped`` (path relative to the data folder, reason); with ``skipped`` None
    the first one stops the run (``--strict-files``)."""
    items = ds.split[split]
    imgs, labs, kept = [], [], []
    for k, s in enumerate(items):
        check(cancel)
        try:
            imgs.append(cache.get(s))
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
        labs.append(s.label)
        kept.append(s)
        report(progress, k + 1, len(items))
    ds.split[split] = kept
    if split in ("train", "val"):
        for ci, cname in enumerate(ds.classes):
            if ci not in labs:
                raise DatasetError(
                    f"{ds.root / cname}: no readable {split} image left after skipping unreadable files"
                )
    return imgs, labs


def _init_network(req: TrainRequest, classes: list[str]) -> tuple[torch.nn.Module, str | None]:
    """Fresh network, or one initialised from a base model (the head is replaced when classes differ)."""
    torch.manual_seed(req.config.seed)  # initial weights depend on the seed only
    net = build_model(len(classes), width=req.config.width)
    if req.base == "none":
        return net, None
    base_path = resolve_model_path(None if req.base == "default" else req.base)
    base = get_model(base_path)
    if base.net.width != net.width:
        raise ScanLabError(f"{base_path}: base model width {base.net.width} differs from --width {net.width}")
    state = {k: v for k, v in base.net.state_dict().items() if not k.startswith("fc.")}
    net.load_state_dict(state, strict=False)
    if base.classes == classes:
        net.fc.load_state_dict(base.net.fc.state_dict())
    return net, f"{base.name} ({base.manifest.get('weights_sha256')})"


def run_training(
    req: TrainRequest,
    *,
    cancel: CancelToken | None = None,
    progress: ProgressFn | None = None,
    on_epoch: EpochCallback | None = None,
    on_stage: Any = None,
) -> dict[str, Any]:
    """Train, evaluate on the test split and save; returns the stored manifest.

    ``on_stage(text)`` reports coarse stages ("reading data", "training", ...).
    """
    out = check_writable(req.output, what="model file")
    refuse_overwrite(out, check_layout(req.data_dir), "a training image")
    if req.base not in ("default", "none"):
        refuse_overwrite(out, [req.base], "the base model")
    ratios = parse_split(req.split)
    device = select_device(req.device)
    stage = on_stage or (lambda _t: None)
    stage("reading data")
    ds = split_dataset(discover(req.data_dir, min_classes=2), ratios, req.config.seed)
    cache = ImageCache(req.cache if req.cache is not None else cache_dir() / "decoded.h5")
    skipped: list[dict[str, str]] | None = None if req.strict_files else []
    train = _load_split(ds, "train", cache, cancel, progress, skipped)
    val = _load_split(ds, "val", cache, cancel, progress, skipped)
    net, parent = _init_network(req, ds.classes)
    stage("training")
    hist = fit(net, train, val, req.config, device=device, engine=req.engine, cancel=cancel, progress=progress, on_epoch=on_epoch)
    metrics: dict[str, Any] = {"val": hist["val"]}
    if ds.split["test"]:
        stage("testing")
        test = _load_split(ds, "test", cache, cancel, None, skipped)
        if test[0]:  # every test image may have been skipped
            metrics["test"] = evaluate_arrays(
                net, test[0], test[1], len(ds.classes), engine=req.engine, device=device, cancel=cancel
            )
    check(cancel)
    training = {
        "recipe": req.config.recipe(),
        "seed": req.config.seed,
        "epochs_run": hist["epochs_run"],
        "best_epoch": hist["best_epoch"],
        "stop_reason": hist["stop_reason"],
        "history": hist["history"],
        "device": str(device),
        "data": {
            "root": str(Path(req.data_dir).resolve()),
            "folder_hash": ds.folder_hash,
            "split": req.split,
            "counts": ds.counts(),
            "files": {
                s: [x.path.relative_to(ds.root).as_posix() for x in ds.split[s]] for s in ("train", "val", "test")
            },
        },
        "cache": {"hits": cache.hits, "misses": cache.misses},
        "skipped_files": list(skipped or []),
        "strict_files": req.strict_files,
    }
    name = req.name or Path(req.output).stem
    manifest = make_manifest(net.cpu(), ds.classes, name=name, training=training, metrics=metrics, parent=parent)
    stage("calibrating")  # calibration, open-set scorer and thresholds on the validation split
    updates, extras = fit_evidence_model(
        net, zip(*val, strict=True), ds.classes, engine=req.engine, cancel=cancel, total=len(val[0]),
        demonstration=(Path(req.data_dir) / "synth.json").is_file(),  # a virtual bank written by `scanlab synth`
        dpi_range=dpi_range(str(s.path) for s in ds.split["train"]),
    )
    manifest.update(updates)
    stage("saving")
    stored = save_model(net, manifest, out, extras)
    return stored


def default_output_name(data_dir: str | os.PathLike) -> str:
    """A model file name derived from the data folder."""
    return f"{Path(data_dir).resolve().name}.safetensors"
