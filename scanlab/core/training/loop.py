"""Training and evaluation of the scanner network.

The loop follows torchvision's reference style: ``train_one_epoch`` /
``evaluate_arrays`` / ``fit``. Each epoch draws one 64x64 patch from a random
position inside every non-overlapping training sub-image (a fresh position each
epoch, DESIGN.md section 2). Patches are read per batch by a
``torch.utils.data`` :class:`~scanlab.core.training.patchdata.PatchDataset` from memory-mapped cache files, so a
collection far larger than RAM trains in bounded memory. After each epoch the run
validates, keeps the best weights (by validation per-patch accuracy, then loss),
writes a checkpoint (atomic) from which a crashed or cancelled run resumes, and
stops early when validation stops improving. A NaN or Inf loss stops the run.

Per-patch accuracy is measured on the non-overlapping 64x64 grid of each image
(deterministic); per-image accuracy on the majority vote of those patches.
"""

from __future__ import annotations

import copy
import io
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from scanlab.core.engine.engines import Engine
from scanlab.core.engine.network import PATCH, ScannerNet
from scanlab.core.engine.reliability import analyze_image
from scanlab.core.errors import ScanLabError
from scanlab.core.io.fileio import atomic_write_bytes
from scanlab.core.jobs import CancelToken, ProgressFn, check, report
from scanlab.core.training import distributed as ddp
from scanlab.core.training.config import TrainConfig
from scanlab.core.training.distributed import DistContext
from scanlab.core.training.patchdata import PatchDataset, epoch_corners, n_subimages

CHECKPOINT_VERSION = 1


class TrainingDiverged(ScanLabError):
    """The loss became NaN or Inf; no model is saved."""


class CheckpointError(ScanLabError):
    """A checkpoint cannot be written or does not fit the run being resumed."""


EpochCallback = Callable[[dict[str, Any]], None]


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA) and make CPU kernels deterministic."""
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def release_freed_heap() -> None:
    """Give memory freed by the C heap back to the system (glibc ``malloc_trim``; no-op elsewhere).

    After a training epoch, several hundred MiB of freed batch buffers stay in glibc's
    heap (counted as resident); the validation pass on a full-size scan then peaked on top
    of them. Measured on 5000x7000 scans: RSS before validation 629-688 -> 339-345 MiB,
    run peak 857-940 -> 757-787 MiB.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # musl or another libc: nothing to trim
        pass


def train_one_epoch(
    net: ScannerNet,
    opt: torch.optim.Optimizer,
    loader: DataLoader,
    device: torch.device,
    *,
    epoch: int = 0,
    amp: bool = False,
    scaler: torch.amp.GradScaler | None = None,
    max_batches: int | None = None,
    cancel: CancelToken | None = None,
    on_batch: Callable[[int], None] | None = None,
    frozen: Sequence[nn.Module] = (),
) -> tuple[float, float, int]:
    """One pass over a loader of patches; returns (mean loss, patch accuracy, patches seen).

    ``frozen``: modules kept in eval mode (their batch-norm statistics do not move).

    Raises
    ------
    TrainingDiverged
        The loss of a batch is NaN or Inf.
    """
    net.train()
    for m in frozen:
        m.eval()
    loss_fn = nn.CrossEntropyLoss()
    tot_loss, correct, seen = 0.0, 0, 0
    use_amp = amp and device.type == "cuda"
    for b, (x, y) in enumerate(loader):
        if max_batches is not None and b >= max_batches:
            break
        check(cancel)
        if len(y) < 2:  # batch norm needs two samples
            continue
        x = x.to(device, non_blocking=True)
        y = y.to(device, non_blocking=True)
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.type, enabled=use_amp):
            logits = net(x)
            loss = loss_fn(logits.float(), y)
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"training diverged: the loss became {float(loss.detach())} at epoch {epoch}, batch {b + 1}; "
                "no model was saved (lower the learning rate, e.g. --lr 0.001)"
            )
        if scaler is not None and use_amp:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        tot_loss += float(loss.detach()) * len(y)
        correct += int((logits.argmax(1) == y).sum())
        seen += len(y)
        if on_batch is not None:
            on_batch(len(y))
    n = max(1, seen)
    return tot_loss / n, correct / n, seen


def evaluate_arrays(
    net: ScannerNet,
    images: Sequence[np.ndarray],
    labels: Sequence[int],
    n_classes: int,
    *,
    engine: Engine | str | None = None,
    device: torch.device | None = None,
    cancel: CancelToken | None = None,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Per-patch and per-image accuracy, confusion matrices and mean patch loss.

    Confusion matrices are indexed [true, predicted] and hold counts;
    ``image_predictions`` is the predicted class of each image, in input order.
    """
    cm_patch = np.zeros((n_classes, n_classes), dtype=np.int64)
    cm_image = np.zeros((n_classes, n_classes), dtype=np.int64)
    nll, n_p = 0.0, 0
    preds: list[int] = []
    net.eval()
    for k, (img, y) in enumerate(zip(images, labels, strict=True)):
        check(cancel)
        res = analyze_image(net, img, vote_sub=PATCH, engine=engine, device=device, cancel=cancel)
        c = res.classification
        np.add.at(cm_patch, (np.full(len(c.patch_labels), y), c.patch_labels), 1)
        cm_image[y, c.label_index] += 1
        preds.append(int(c.label_index))
        p = res.vote.probs.reshape(-1, n_classes)[:, y]
        nll += float(-np.log(np.clip(p, 1e-12, 1)).sum())
        n_p += len(p)
        report(progress, k + 1, len(images))
    return {**accuracy_summary(cm_patch, cm_image, nll, n_p), "image_predictions": preds}


def accuracy_summary(cm_patch: np.ndarray, cm_image: np.ndarray, nll: float, n_p: int) -> dict[str, Any]:
    """The accuracy keys of ``evaluate --json`` and of the manifest's metrics, from the two confusions."""
    n_img = int(cm_image.sum())
    return {
        "per_patch_accuracy": float(np.trace(cm_patch) / max(1, cm_patch.sum())),
        "per_image_accuracy": float(np.trace(cm_image) / max(1, n_img)),
        "confusion_per_patch": cm_patch.tolist(),
        "confusion_per_image": cm_image.tolist(),
        "n_images": n_img,
        "n_patches": int(cm_patch.sum()),
        "loss": nll / max(1, n_p),
    }


def _state_bytes(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write a checkpoint atomically: on any failure (a full disk) the previous one stays intact.

    Raises
    ------
    CheckpointError
        The checkpoint could not be written; the message names the file and the reason.
    """
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(p, _state_bytes(state), hook=False)
    except OSError as e:
        raise CheckpointError(
            f"{p}: checkpoint could not be written ({e.strerror or e}); the previous checkpoint is kept, "
            "free some space and resume with --resume"
        ) from None


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint (tensors and plain data only: ``weights_only=True``)."""
    p = Path(path)
    try:
        ck = torch.load(p, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{p}: no checkpoint to resume from") from None
    except Exception as e:  # noqa: BLE001 - any unreadable checkpoint is one clear error
        raise CheckpointError(f"{p}: checkpoint is damaged ({str(e).splitlines()[0][:120]})") from None
    if not isinstance(ck, dict) or ck.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{p}: not a checkpoint this ScanLab can resume")
    return ck


def early_layers(net: ScannerNet) -> list[nn.Module]:
    """The layers ``TrainConfig.freeze_early`` keeps as the base model made them: the stem and the first block."""
    return [net.stem, net.inc1]


def fit(
    net: ScannerNet,
    train: Any,
    val: Any,
    cfg: TrainConfig,
    *,
    device: torch.device | None = None,
    engine: Engine | str | None = None,
    cancel: CancelToken | None = None,
    progress: ProgressFn | None = None,
    on_epoch: EpochCallback | None = None,
    on_batch: Callable[[dict[str, Any]], None] | None = None,
    checkpoint: str | os.PathLike | None = None,
    resume_from: dict[str, Any] | None = None,
    fingerprint: str = "",
    dist: DistContext | None = None,
) -> dict[str, Any]:
    """Train ``net`` in place and leave it holding the best validation weights.

    Parameters
    ----------
    train, val : CachedImages
        Cached images (``files``, ``labels``, ``shapes``; indexing memory-maps one).
    cfg : TrainConfig
    progress : callable, optional
        ``progress(done_batches, total_batches)`` over all epochs.
    on_epoch : callable, optional
        Called after each epoch with a dict (epoch, lr, train_loss, train_acc,
        val_loss, val_patch_acc, val_image_acc, seconds, patches_per_s, best).
    on_batch : callable, optional
        Called after each batch with ``{epoch, batch, batches, loss, patches_per_s}``.
    checkpoint : path, optional
        Written (atomically) after every epoch.
    resume_from : dict, optional
        A checkpoint from :func:`load_checkpoint`; training continues after its epoch.
    fingerprint : str
        Identifies data + recipe; a checkpoint with another fingerprint is refused.
    dist : DistContext, optional
        Set in each process of a DDP run (:mod:`scanlab.core.training.distributed`):
        every process trains its shard of each global batch; only rank 0 validates,
        writes the checkpoint and calls ``on_epoch``; only rank 0 ends with the best weights.

    Returns
    -------
    dict
        ``history`` (list of epoch dicts), ``best_epoch``, ``epochs_run``,
        ``stop_reason``, ``val`` metrics of the best weights, ``resumed_from``, ``batches_per_epoch``;
        with ``dist`` also ``params_sha256`` (every rank's last-epoch parameters, rank order).
    """
    device = device or torch.device("cpu")
    seed_everything(cfg.seed)
    net.to(device)
    if cfg.freeze_trunk:
        for name, prm in net.named_parameters():
            prm.requires_grad = name.startswith("fc.")
    frozen = early_layers(net) if cfg.freeze_early else []
    for m in frozen:
        for prm in m.parameters():
            prm.requires_grad = False
    params = [p for p in net.parameters() if p.requires_grad]
    main = dist is None or dist.is_main
    opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.schedule not in ("constant", "cosine"):
        raise ValueError(f"unknown learning-rate schedule {cfg.schedule!r} (constant or cosine)")
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs) if cfg.schedule == "cosine" else None
    scaler = torch.amp.GradScaler("cuda") if (cfg.amp and device.type == "cuda") else None
    n_classes = net.n_classes
    n_per_epoch = sum(n_subimages(s, cfg.sub) for s in train.shapes)
    batches = math.ceil(n_per_epoch / cfg.batch_size)
    if dist is not None:  # the sharded sampler's global batches (a too-small last one is dropped)
        batches = ddp.sharded_batches(n_per_epoch, cfg.batch_size, dist.world_size)
    if cfg.max_batches is not None:
        batches = min(batches, cfg.max_batches)
    total = batches * cfg.epochs

    best_key: tuple[float, float] | None = None
    best_state = copy.deepcopy(net.state_dict())
    best_epoch, best_val = 0, None
    history: list[dict[str, Any]] = []
    first = 1
    if resume_from is not None:
        if resume_from.get("fingerprint") != fingerprint:
            raise CheckpointError(
                "the checkpoint was made with other data or settings; start afresh without --resume"
            )
        net.load_state_dict(resume_from["model"])
        opt.load_state_dict(resume_from["optimizer"])
        if sched is not None and resume_from.get("scheduler"):
            sched.load_state_dict(resume_from["scheduler"])
        best_state = resume_from["best_state"]
        best_epoch = int(resume_from["best_epoch"])
        best_key = tuple(resume_from["best_key"]) if resume_from.get("best_key") else None
        best_val = resume_from.get("best_val")
        history = list(resume_from["history"])
        first = int(resume_from["epoch"]) + 1
    done = (first - 1) * batches
    stop_reason = "max epochs"
    if history and best_epoch and history[-1]["epoch"] - best_epoch >= cfg.patience:
        stop_reason = f"early stop (no validation gain for {cfg.patience} epochs)"
        first = cfg.epochs + 1
    ddp_net = ddp.wrap(net, device) if dist is not None else None  # after resuming: same start everywhere
    for epoch in range(first, cfg.epochs + 1):
        t0 = time.perf_counter()
        corners = epoch_corners(train.shapes, train.labels, cfg.sub, cfg.seed, epoch, cfg.patch_jitter)
        gen = torch.Generator().manual_seed(cfg.seed * 100003 + epoch)
        chain = {"delivery_chain": cfg.delivery_chain, "seed": cfg.seed, "epoch": epoch, "tone_jitter": cfg.tone_jitter}
        if dist is None:
            loader = DataLoader(
                PatchDataset(train.files, corners, **chain), batch_size=cfg.batch_size, shuffle=True, generator=gen,
                num_workers=cfg.workers, pin_memory=device.type == "cuda",
            )
        else:
            loader = ddp.sharded_loader(PatchDataset(train.files, corners, **chain), cfg, dist, gen, device)
        lr = opt.param_groups[0]["lr"]
        b_in_epoch = 0

        def tick(n: int, _epoch: int = epoch, _t0: float = t0) -> None:
            nonlocal done, b_in_epoch
            done += 1
            b_in_epoch += 1
            report(progress, done, total)
            if on_batch is not None:
                dt = time.perf_counter() - _t0
                on_batch({"epoch": _epoch, "batch": b_in_epoch, "batches": batches,
                          "patches_per_s": b_in_epoch * cfg.batch_size / max(dt, 1e-9)})

        tl, ta, seen = train_one_epoch(
            ddp_net or net, opt, loader, device, epoch=epoch, amp=cfg.amp, scaler=scaler,
            max_batches=cfg.max_batches, cancel=cancel, on_batch=tick if main else None, frozen=frozen,
        )
        t_train = time.perf_counter() - t0
        if sched is not None:
            sched.step()
        release_freed_heap()  # the epoch's freed batch buffers, before validation allocates its own
        if dist is not None:
            tl, ta, seen = ddp.reduce_epoch(tl, ta, seen, dist)
            if not dist.is_main:  # rank 0 validates and decides; the others wait for its decision
                if ddp.broadcast_object(None, dist):
                    break
                continue
        vm = evaluate_arrays(net, val, val.labels, n_classes, engine=engine, device=device, cancel=cancel)
        key = (vm["per_patch_accuracy"], -vm["loss"])
        improved = best_key is None or key > best_key
        if improved:
            best_key, best_epoch, best_val = key, epoch, vm
            best_state = copy.deepcopy(net.state_dict())
        rec = {
            "epoch": epoch,
            "lr": lr,
            "train_loss": tl,
            "train_acc": ta,
            "val_loss": vm["loss"],
            "val_patch_acc": vm["per_patch_accuracy"],
            "val_image_acc": vm["per_image_accuracy"],
            "seconds": time.perf_counter() - t0,
            "patches_per_s": seen / max(t_train, 1e-9),
            "best": improved,
        }
        history.append(rec)
        if checkpoint is not None and main:
            save_checkpoint(checkpoint, {
                "version": CHECKPOINT_VERSION, "fingerprint": fingerprint, "epoch": epoch,
                "model": net.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict() if sched is not None else None,
                "best_state": best_state, "best_epoch": best_epoch,
                "best_key": list(best_key) if best_key else None, "best_val": best_val, "history": history,
            })
        if on_epoch is not None:
            on_epoch(rec)
        stop = epoch - best_epoch >= cfg.patience
        if dist is not None:
            ddp.broadcast_object(stop, dist)
        if stop:
            stop_reason = f"early stop (no validation gain for {cfg.patience} epochs)"
            report(progress, total, total)
            break
    extra: dict[str, Any] = {}
    if dist is not None:  # before the best weights: DDP's guarantee is about the trained ones
        extra["params_sha256"] = ddp.gather_objects(ddp.params_sha256(net), dist)
    net.load_state_dict(best_state)
    net.eval()
    return {
        "history": history,
        "best_epoch": best_epoch,
        "epochs_run": len(history),
        "stop_reason": stop_reason,
        "val": best_val,
        "resumed_from": (first - 1) if resume_from is not None else None,
        "batches_per_epoch": batches,
        **extra,
    }
