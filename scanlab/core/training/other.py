"""The "other scanner" output: outlier exposure after the normal training.

After :func:`scanlab.core.training.loop.fit` has trained the Ns class outputs, this
adds one more row to the last linear layer, the "other scanner" logit, and trains it
by outlier exposure: cross-entropy over Ns + 1 outputs, where windows of the lab's
training images carry their class and outlier windows (virtual scanner designs of
:mod:`scanlab.core.synth.outliers`, plus the lab's own negatives when it has some)
carry the extra label.

Only the head and the last inception block are trained; the stem and the first block
are frozen, so their output is computed once per window and each step runs the last
block only (about a tenth of the network's arithmetic). Every batch-norm layer keeps
its running statistics (the whole network stays in eval mode), so the class outputs of
an analysis are computed exactly as during training. The known windows are as scanned:
the outliers' resampling and re-compression (``core/synth/outliers.py``) are not
applied to them, because labelling a resampled known window with its scanner asks for
traces resampling destroys (measured: the known accuracy of the extra training fell to
chance). A questioned scan that was resampled or re-compressed therefore leans towards
"unknown" (issue 17 item 3 is the work on the delivery chain).
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from scanlab.core.engine.network import PATCH, ScannerNet
from scanlab.core.evidence.openset import OtherScorer
from scanlab.core.io.delivery import delivery_chain
from scanlab.core.io.imaging import as_uint8, full_scale
from scanlab.core.jobs import CancelToken, ProgressFn, check, report

KNOWN_PER_IMAGE = 48  # random known windows per training image
MAX_KNOWN = 3072  # known windows in all (float16 maps: ~65 MB)
CLASS_LR_FACTOR = 1.0  # class rows and the last block learn at the new row's rate (measured: 0.1 left them unable to adapt)


def _to_tensor(windows: np.ndarray) -> torch.Tensor:
    """(n, 64, 64, 3) uint8/uint16 -> (n, 3, 64, 64) float in [0, 1]."""
    scale = full_scale(windows.dtype)
    return torch.from_numpy(np.ascontiguousarray(windows.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(scale))


def known_windows(
    train: Any, n: int, rng: np.random.Generator, *, augment: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random 64x64 windows of the training images (8-bit) and their labels.

    Windows are cut a little larger and brought back to 64 px when the delivery chain
    resamples them, so a resampled window is as sharp as one cut from a resampled scan.
    """
    out = np.empty((n, PATCH, PATCH, 3), np.uint8)
    labs = np.empty(n, np.int64)
    idx = rng.integers(0, len(train.labels), n)
    for j, i in enumerate(idx):
        img = np.load(train.files[i], mmap_mode="r")
        h, w = img.shape[:2]
        side = min(h, w, int(PATCH * 1.5))
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = np.array(img[y : y + side, x : x + side])
        del img  # unmap now (see patchdata.PatchDataset)
        crop = as_uint8(crop)
        if augment:
            crop = delivery_chain(crop, rng)
        ch, cw = crop.shape[:2]
        yy, xx = int(rng.integers(0, ch - PATCH + 1)), int(rng.integers(0, cw - PATCH + 1))
        out[j] = crop[yy : yy + PATCH, xx : xx + PATCH]
        labs[j] = train.labels[i]
    return out, labs


class _Centre(torch.nn.Module):
    """``x - 0.5``: the first thing :meth:`ScannerNet.trunk` does, so the frozen maps are the trunk's own."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - 0.5


def frozen_layers(net: ScannerNet) -> torch.nn.Module:
    """The network's frozen lower part (centring, stem, first block, pools): ``net.inc2`` of its output is the trunk.

    Without the centring the last block would be trained on maps it never sees in an
    analysis (measured on the shipped model: 43% of known windows right instead of 97%).
    """
    return torch.nn.Sequential(_Centre(), net.stem, net.pool1, net.inc1, net.pool2)


def _frozen_maps(frozen: torch.nn.Module, windows: np.ndarray, dev: torch.device, batch: int = 256) -> torch.Tensor:
    """Output of the frozen stem and first block for uint8 windows, kept as float16 on the CPU."""
    out = []
    with torch.inference_mode():
        for s in range(0, len(windows), batch):
            out.append(frozen(_to_tensor(windows[s : s + batch]).to(dev)).to("cpu", torch.float16))
    return torch.cat(out)


def train_other_output(
    net: ScannerNet,
    train: Any,
    outliers: np.ndarray,
    *,
    steps: int,
    batch: int = 64,
    lr: float = 0.01,
    seed: int = 0,
    known_per_image: int | None = None,
    max_known: int | None = None,
    init: OtherScorer | None = None,
    augment: bool = False,
    device: torch.device | None = None,
    cancel: CancelToken | None = None,
    progress: ProgressFn | None = None,
) -> tuple[OtherScorer, dict[str, Any]]:
    """Train the extra output (and fine-tune the last block and the class rows) in place.

    The stem and the first block are frozen, so their output for every window is computed
    once (float16, about 21 kB a window) and the steps run the last block and the head
    only: a step costs about a tenth of a full training step, which is what makes a few
    hundred steps affordable on a CPU.

    Parameters
    ----------
    net : ScannerNet
        The trained network; its head and last block are updated.
    train : CachedImages
        The training split (``files``, ``labels``): ``known_per_image`` random windows of
        each image (at most ``max_known`` in all) are the known windows.
    outliers : ndarray
        uint8 (n, 64, 64, 3) outlier windows (virtual designs and the lab's negatives).
    steps : int
        Optimiser steps of ``batch`` known and ``batch`` outlier windows.
    init : OtherScorer, optional
        Start from this row instead of zeros.
    augment : bool
        Known windows go through the delivery chain too (a model trained with
        ``TrainConfig.delivery_chain``): re-saved scans of known scanners stay known.

    Returns
    -------
    (scorer, record)
        The extra row and a record for the manifest (steps, windows, losses, seconds).
    """
    dev = device or torch.device("cpu")
    net.to(dev).eval()  # batch norm keeps its running statistics (see module docstring)
    torch.manual_seed(seed)
    rng = np.random.default_rng([seed, 17])
    ns = net.n_classes
    t0 = time.perf_counter()
    frozen = frozen_layers(net)
    n_known = int(min(MAX_KNOWN if max_known is None else max_known,
                      (KNOWN_PER_IMAGE if known_per_image is None else known_per_image) * len(train.labels)))
    kw, ky = known_windows(train, n_known, rng, augment=augment)
    k_maps = _frozen_maps(frozen, kw, dev)
    check(cancel)
    o_maps = _frozen_maps(frozen, outliers, dev)
    ky_t = torch.from_numpy(ky)
    t_pre = time.perf_counter() - t0
    for name, p in net.named_parameters():
        p.requires_grad = name.startswith(("fc.", "inc2."))
    w0 = torch.zeros(1, net.fc.in_features) if init is None else torch.from_numpy(init.weight.copy())[None]
    b0 = torch.zeros(1) if init is None else torch.tensor([init.bias], dtype=torch.float32)
    w_other = torch.nn.Parameter(w0.to(dev))
    b_other = torch.nn.Parameter(b0.to(dev))
    slow = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.SGD([{"params": slow, "lr": lr * CLASS_LR_FACTOR}, {"params": [w_other, b_other], "lr": lr}],
                          lr=lr, momentum=0.9, weight_decay=1e-4)
    base_lrs = [g["lr"] for g in opt.param_groups]
    losses = {"known": 0.0, "other": 0.0, "other_acc": 0.0, "known_acc": 0.0}
    tail = max(1, steps // 5)  # the record averages the last fifth of the steps
    try:
        for step in range(steps):
            check(cancel)
            f = 0.5 * (1 + math.cos(math.pi * step / max(1, steps)))
            for g, b in zip(opt.param_groups, base_lrs, strict=True):
                g["lr"] = b * f
            ik = torch.from_numpy(rng.integers(0, len(k_maps), batch))
            io = torch.from_numpy(rng.integers(0, len(o_maps), batch))
            h = torch.cat([k_maps[ik], o_maps[io]]).to(dev, torch.float32)
            y = torch.cat([ky_t[ik], torch.full((batch,), ns, dtype=torch.int64)]).to(dev)
            feats = net.inc2(h).mean(dim=(2, 3))
            z = torch.cat([net.fc(feats), F.linear(feats, w_other, b_other)], dim=1)
            each = F.cross_entropy(z, y, reduction="none")
            loss = each.mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step >= steps - tail:
                with torch.no_grad():
                    pred = z.argmax(1)
                    losses["known"] += float(each[:batch].mean()) / tail
                    losses["other"] += float(each[batch:].mean()) / tail
                    losses["known_acc"] += float((pred[:batch] == y[:batch]).float().mean()) / tail
                    losses["other_acc"] += float((pred[batch:] == ns).float().mean()) / tail
            report(progress, step + 1, steps)
    finally:
        for p in net.parameters():
            p.requires_grad = True
        net.eval()
    scorer = OtherScorer(w_other.detach().cpu().numpy()[0].astype(np.float32), float(b_other.detach().cpu()[0]))
    record = {
        "steps": steps, "batch": batch, "lr": lr, "class_lr_factor": CLASS_LR_FACTOR,
        "trained": "last inception block and the last linear layer (batch-norm statistics fixed)",
        "known_windows": int(n_known), "outlier_windows": int(len(outliers)),
        "seconds": round(time.perf_counter() - t0, 2), "seconds_precompute": round(t_pre, 2),
        "last_steps": {k: round(v, 4) for k, v in losses.items()},
        "initialised_from_base": init is not None,
    }
    return scorer, record
