"""Training and evaluation of the scanner network.

The loop follows torchvision's reference style: ``train_one_epoch`` /
``evaluate_arrays`` / ``fit``. Defaults are the paper's recipe (SGD, lr 0.01,
momentum 0.5, weight decay 1e-4). Each epoch draws one 64x64 patch from a random
position inside every non-overlapping training sub-image (a fresh position each
epoch), validates, keeps the best weights (by validation per-patch accuracy, then
loss) and stops early when validation stops improving.

Per-patch accuracy is measured on the non-overlapping 64x64 grid of each image
(deterministic); per-image accuracy on the majority vote of those patches.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from scanlab.core.engine import Engine
from scanlab.core.imaging import full_scale
from scanlab.core.jobs import CancelToken, ProgressFn, check, report
from scanlab.core.network import PATCH, ScannerNet
from scanlab.core.patches import Size, grid_positions, training_patch_corners
from scanlab.core.reliability import analyze_image


@dataclass
class TrainConfig:
    """Everything that defines a training run (JSON-serialisable)."""

    epochs: int = 30
    batch_size: int = 64
    lr: float = 0.01
    momentum: float = 0.5
    weight_decay: float = 1e-4
    sub: Size = (128, 128)
    patience: int = 6
    seed: int = 0
    width: int = 1
    schedule: str = "constant"  # or "cosine": lr annealed to 0 over ``epochs``

    def recipe(self) -> dict[str, Any]:
        """The recipe part of the manifest."""
        d = asdict(self)
        d["optimizer"] = "SGD"
        d["sub"] = list(self.sub)
        return d


EpochCallback = Callable[[dict[str, Any]], None]


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA) and make CPU kernels deterministic."""
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def sample_patches(images: Sequence[np.ndarray], labels: Sequence[int], sub: Size, rng: np.random.Generator):
    """One random 64x64 patch per non-overlapping sub-image of every image.

    Returns (patches uint8/uint16 (N, 64, 64, 3), labels (N,)).
    """
    out, lab = [], []
    for img, y in zip(images, labels, strict=True):
        s = (min(sub[0], img.shape[0]), min(sub[1], img.shape[1]))
        for r, c in training_patch_corners(img.shape[:2], s, rng):
            out.append(img[r : r + PATCH, c : c + PATCH])
            lab.append(y)
    return np.stack(out), np.asarray(lab, dtype=np.int64)


def _n_subimages(shape: tuple[int, int], sub: Size) -> int:
    """Patches :func:`sample_patches` draws from one image (one per sub-image)."""
    n, m = min(sub[0], shape[0]), min(sub[1], shape[1])
    return len(grid_positions(shape[0], n, n)) * len(grid_positions(shape[1], m, m))


def _to_tensor(batch: np.ndarray) -> torch.Tensor:
    scale = full_scale(batch.dtype)
    return torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2))).float() / scale


def train_one_epoch(
    net: ScannerNet,
    opt: torch.optim.Optimizer,
    patches: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    rng: np.random.Generator,
    device: torch.device,
    *,
    cancel: CancelToken | None = None,
    on_batch: Callable[[], None] | None = None,
) -> tuple[float, float]:
    """One pass over shuffled patches; returns (mean loss, patch accuracy)."""
    net.train()
    loss_fn = nn.CrossEntropyLoss()
    order = rng.permutation(len(labels))
    tot_loss, correct = 0.0, 0
    for start in range(0, len(order), batch_size):
        check(cancel)
        idx = order[start : start + batch_size]
        if len(idx) < 2:  # batch norm needs two samples
            continue
        x = _to_tensor(patches[idx]).to(device)
        y = torch.from_numpy(labels[idx]).to(device)
        opt.zero_grad(set_to_none=True)
        logits = net(x)
        loss = loss_fn(logits, y)
        loss.backward()
        opt.step()
        tot_loss += float(loss.detach()) * len(idx)
        correct += int((logits.argmax(1) == y).sum())
        if on_batch is not None:
            on_batch()
    n = max(1, len(order))
    return tot_loss / n, correct / n


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

    Confusion matrices are indexed [true, predicted] and hold counts.
    """
    cm_patch = np.zeros((n_classes, n_classes), dtype=np.int64)
    cm_image = np.zeros((n_classes, n_classes), dtype=np.int64)
    nll, n_p = 0.0, 0
    net.eval()
    for k, (img, y) in enumerate(zip(images, labels, strict=True)):
        check(cancel)
        res = analyze_image(net, img, vote_sub=PATCH, engine=engine, device=device, cancel=cancel)
        c = res.classification
        np.add.at(cm_patch, (np.full(len(c.patch_labels), y), c.patch_labels), 1)
        cm_image[y, c.label_index] += 1
        p = res.vote.probs.reshape(-1, n_classes)[:, y]
        nll += float(-np.log(np.clip(p, 1e-12, 1)).sum())
        n_p += len(p)
        report(progress, k + 1, len(images))
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


def fit(
    net: ScannerNet,
    train: tuple[Sequence[np.ndarray], Sequence[int]],
    val: tuple[Sequence[np.ndarray], Sequence[int]],
    cfg: TrainConfig,
    *,
    device: torch.device | None = None,
    engine: Engine | str | None = None,
    cancel: CancelToken | None = None,
    progress: ProgressFn | None = None,
    on_epoch: EpochCallback | None = None,
) -> dict[str, Any]:
    """Train ``net`` in place and leave it holding the best validation weights.

    Parameters
    ----------
    train, val : (images, labels)
        Images are (H, W, 3) uint8/uint16 arrays; labels are class indices.
    cfg : TrainConfig
    progress : callable, optional
        ``progress(done_batches, total_batches)`` over all epochs.
    on_epoch : callable, optional
        Called after each epoch with a dict (epoch, train_loss, train_acc,
        val_loss, val_patch_acc, val_image_acc, seconds, best) for live curves.

    Returns
    -------
    dict
        ``history`` (list of epoch dicts), ``best_epoch``, ``epochs_run``,
        ``stop_reason``, ``val`` metrics of the best weights.
    """
    device = device or torch.device("cpu")
    seed_everything(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    net.to(device)
    opt = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.schedule not in ("constant", "cosine"):
        raise ValueError(f"unknown learning-rate schedule {cfg.schedule!r} (constant or cosine)")
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs) if cfg.schedule == "cosine" else None
    n_classes = net.n_classes
    # batches per epoch are the same every epoch (one patch per sub-image)
    n_per_epoch = sum(_n_subimages(img.shape[:2], cfg.sub) for img in train[0])
    batches = math.ceil(n_per_epoch / cfg.batch_size)
    total = batches * cfg.epochs
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        report(progress, done, total)

    best_key: tuple[float, float] | None = None
    best_state = copy.deepcopy(net.state_dict())
    best_epoch, best_val = 0, None
    history: list[dict[str, Any]] = []
    stop_reason = "max epochs"
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        patches, labels = sample_patches(train[0], train[1], cfg.sub, rng)
        lr = opt.param_groups[0]["lr"]
        tl, ta = train_one_epoch(net, opt, patches, labels, cfg.batch_size, rng, device, cancel=cancel, on_batch=tick)
        if sched is not None:
            sched.step()
        vm = evaluate_arrays(net, val[0], val[1], n_classes, engine=engine, device=device, cancel=cancel)
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
            "best": improved,
        }
        history.append(rec)
        if on_epoch is not None:
            on_epoch(rec)
        if epoch - best_epoch >= cfg.patience:
            stop_reason = f"early stop (no validation gain for {cfg.patience} epochs)"
            report(progress, total, total)
            break
    net.load_state_dict(best_state)
    net.eval()
    return {
        "history": history,
        "best_epoch": best_epoch,
        "epochs_run": len(history),
        "stop_reason": stop_reason,
        "val": best_val,
    }
