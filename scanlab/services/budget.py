"""``scanlab train --budget 15m``: patches per epoch from a measured throughput.

Training time grows with every window of every reference (one patch per 64x64
sub-image per epoch). With a budget, the run first measures on this machine, with
copies of the network (the run itself is not disturbed):

* ``t_step``: seconds per training batch (3 timed batches after one warm-up);
* ``t_val``: seconds per validation pass (one validation image, scaled by pixels);
* ``t_oe``, ``t_window``: seconds per step of the "other scanner" training and per
  window of its one-off forward pass through the frozen layers (two short runs).

and models the run as ``epochs * (batches * t_step + t_val) + oe_steps(batches) * t_oe
+ oe_windows * t_window + 3 * t_val`` (the last term: testing and calibrating, each about one validation pass
over a split that is up to three times larger). The largest number of batches per epoch
that fits is used (``max_batches``); the estimate is reported before training starts
and recorded in the manifest (``training.budget``).
"""

from __future__ import annotations

import copy
import math
import re
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from scanlab.core.errors import ScanLabError
from scanlab.core.training.config import TrainConfig
from scanlab.core.training.loop import evaluate_arrays, train_one_epoch
from scanlab.core.training.other import known_windows, train_other_output
from scanlab.core.training.patchdata import PatchDataset, epoch_corners, n_subimages

_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0}


def parse_budget(text: str) -> float:
    """``"15m"``, ``"90s"``, ``"1h30m"`` or plain seconds -> seconds.

    Raises
    ------
    ScanLabError
        Not a duration, or shorter than 10 seconds.
    """
    t = text.strip().lower().replace(" ", "")
    if re.fullmatch(r"\d+(\.\d+)?", t):
        secs = float(t)
    else:
        parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", t)
        if not parts or "".join(a + u for a, u in parts) != t:
            raise ScanLabError(f"--budget {text!r}: expected a duration like 15m, 90s or 1h30m")
        secs = sum(float(a) * _UNITS[u] for a, u in parts)
    if secs < 10:
        raise ScanLabError(f"--budget {text!r}: at least 10 seconds")
    return secs


def measure(net: torch.nn.Module, train: Any, val: Any, cfg: TrainConfig, device: torch.device,
            open_set: bool) -> dict[str, float]:
    """Seconds per training batch, per validation pass and per outlier-exposure step (on copies)."""
    probe = copy.deepcopy(net).to(device)
    opt = torch.optim.SGD([p for p in probe.parameters() if p.requires_grad], lr=1e-6)
    corners = epoch_corners(train.shapes, train.labels, cfg.sub, cfg.seed, 0)
    loader = DataLoader(PatchDataset(train.files, corners, delivery_chain=cfg.delivery_chain, seed=cfg.seed),
                        batch_size=cfg.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(0))
    train_one_epoch(probe, opt, loader, device, max_batches=1)  # warm-up
    t0 = time.perf_counter()
    _, _, seen = train_one_epoch(probe, opt, loader, device, max_batches=3)
    t_step = (time.perf_counter() - t0) / max(1, math.ceil(seen / cfg.batch_size))
    t0 = time.perf_counter()
    evaluate_arrays(probe, [val[0]], [val.labels[0]], probe.n_classes, device=device)
    px = [s[0] * s[1] for s in val.shapes]
    t_val = (time.perf_counter() - t0) * sum(px) / max(1, px[0])
    t_oe = t_pre = 0.0
    if open_set:  # two short runs: the difference is the steps, the rest the per-window precompute
        stand_in, _ = known_windows(train, 64, np.random.default_rng(0), augment=False)  # costs as outliers do
        times = []
        for steps in (2, 6):
            t0 = time.perf_counter()
            train_other_output(copy.deepcopy(net), train, stand_in, steps=steps, max_known=64, device=device)
            times.append(time.perf_counter() - t0)
        t_oe = max(0.0, (times[1] - times[0]) / 4)
        t_pre = max(0.0, times[0] - 2 * t_oe) / 128
    return {"t_step": t_step, "t_val": t_val, "t_oe": t_oe, "t_window": t_pre}


def plan(
    budget_s: float,
    cfg: TrainConfig,
    train: Any,
    timing: dict[str, float],
    oe_steps_for: Callable[[int], int],
    oe_windows: int = 0,
) -> dict[str, Any]:
    """The batches per epoch that fit ``budget_s`` and the estimate for them."""
    full = math.ceil(sum(n_subimages(s, cfg.sub) for s in train.shapes) / cfg.batch_size)
    if cfg.max_batches is not None:
        full = min(full, cfg.max_batches)

    def total(nb: int) -> float:
        return (cfg.epochs * (nb * timing["t_step"] + timing["t_val"]) + oe_steps_for(cfg.epochs * nb) * timing["t_oe"]
                + oe_windows * timing.get("t_window", 0.0) + 3 * timing["t_val"])

    nb = full
    while nb > 1 and total(nb) > budget_s:
        nb = max(1, min(nb - 1, int(nb * budget_s / total(nb))))
    return {
        "budget_s": round(budget_s, 1), "batches_per_epoch": nb, "full_batches_per_epoch": full,
        "patches_per_epoch": nb * cfg.batch_size, "estimate_s": round(total(nb), 1),
        "fits": total(nb) <= budget_s,
        "measured": {k: round(v, 4) for k, v in timing.items()},
        "patches_per_s": round(cfg.batch_size / max(timing["t_step"], 1e-9), 1),
    }


def describe(p: dict[str, Any]) -> str:
    """One line for the terminal and the wizard."""
    share = p["batches_per_epoch"] / max(1, p["full_batches_per_epoch"])
    line = (f"budget {p['budget_s'] / 60:.1f} min: measured {p['patches_per_s']:.0f} patches/s; "
            f"{p['patches_per_epoch']} patches per epoch ({share:.0%} of one per sub-image), "
            f"estimate {p['estimate_s'] / 60:.1f} min")
    if not p["fits"]:
        line += " (does not fit even at one batch per epoch: fewer --epochs would)"
    return line
