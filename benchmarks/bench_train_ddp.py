"""``scanlab train --distributed N``: 1 process against N DDP processes, side by side, same work.

Usage::

    python benchmarks/bench_train_ddp.py [--world 2] [--images 10] [--size 256] [--epochs 2]
                                         [--batch-size 64] [--repeats 1] [--json OUT]

A simulated bank (3 scanners, ``--images`` scans each, the test-suite generator) is
decoded into a cache once; then :func:`scanlab.core.training.loop.fit` (one process) and
the function ``--distributed N`` uses instead
(:func:`scanlab.services.training_ddp.distributed_fit`) train the same fresh network
with the same recipe, seed and global batches, alternating 1, N, 1, N... ``--repeats``
times. Reported per run: wall time of the whole fit (process spawn and rendezvous
included for N), the training steps per second and patches per second of the epochs
(validation excluded, from the run's own history), and the load average around it.
Only the training stage is timed: the stages after it (open set, test, calibration)
run once in one process either way.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import torch  # noqa: E402
from scanner_tree import make_tree  # noqa: E402

from scanlab.core.engine.network import build_model  # noqa: E402
from scanlab.core.training.config import TrainConfig  # noqa: E402
from scanlab.core.training.dataset import ImageCache, discover, parse_split, split_dataset  # noqa: E402
from scanlab.core.training.loop import fit  # noqa: E402
from scanlab.core.training.patchdata import n_subimages  # noqa: E402
from scanlab.services.training import _cache_split  # noqa: E402
from scanlab.services.training_ddp import distributed_fit  # noqa: E402


def one_run(world: int, train, val, cfg: TrainConfig) -> dict:
    torch.manual_seed(cfg.seed)
    net = build_model(3, width=cfg.width)
    fn = fit if world == 1 else distributed_fit(world)
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    hist = fn(net, train, val, cfg, device=torch.device("cpu"))
    wall = time.perf_counter() - t0
    h = hist["history"]
    steps = hist["batches_per_epoch"] * len(h)
    # patches per epoch: one per training sub-image (the DDP sampler may drop a tail of < 2N patches)
    per_epoch = sum(n_subimages(shape, cfg.sub) for shape in train.shapes)
    patches = per_epoch * len(h)
    train_s = sum(per_epoch / r["patches_per_s"] for r in h)  # the epochs' training time, validation excluded
    return {"world": world, "wall_s": round(wall, 2), "steps": steps, "patches": patches,
            "train_s": round(train_s, 2), "steps_per_s": round(steps / train_s, 3),
            "patches_per_s": round(patches / train_s, 1), "val_patch_acc": round(h[-1]["val_patch_acc"], 3),
            "load_before": round(load0, 2), "load_after": round(os.getloadavg()[0], 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", type=int, default=2)
    ap.add_argument("--images", type=int, default=10)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ddp-") as tmp:
        root = make_tree(Path(tmp) / "bank", n_classes=3, n_images=a.images, size=a.size, seed=0)
        ds = split_dataset(discover(root, min_classes=2), parse_split("6:1:3"), 0)
        cache = ImageCache(Path(tmp) / "cache")
        train = _cache_split(ds, "train", cache, None, None, [])
        val = _cache_split(ds, "val", cache, None, None, [])
        cfg = TrainConfig(epochs=a.epochs, patience=50, batch_size=a.batch_size, seed=0)
        runs = []
        for _ in range(a.repeats):
            for world in (1, a.world):
                r = one_run(world, train, val, cfg)
                runs.append(r)
                print(json.dumps(r), flush=True)
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, "
          f"commit {commit}; {len(train)} training images, {runs[0]['patches']} patches per run")
    print(f"{'processes':>9} {'wall s':>8} {'train s':>8} {'steps/s':>8} {'patches/s':>10} {'val acc':>8} {'load':>10}")
    for r in runs:
        print(f"{r['world']:>9} {r['wall_s']:>8} {r['train_s']:>8} {r['steps_per_s']:>8} {r['patches_per_s']:>10} "
              f"{r['val_patch_acc']:>8} {r['load_before']:>4}-{r['load_after']:<5}")
    ones = [r for r in runs if r["world"] == 1]
    ns = [r for r in runs if r["world"] == a.world]
    ratio = sum(r["wall_s"] for r in ns) / sum(r["wall_s"] for r in ones)
    sratio = sum(r["steps_per_s"] for r in ns) / sum(r["steps_per_s"] for r in ones)
    print(f"\n{a.world} processes / 1 process: wall {ratio:.2f}x, steps/s {sratio:.2f}x")
    if a.json:
        Path(a.json).write_text(json.dumps({"runs": runs, "commit": commit, "wall_ratio": ratio,
                                            "steps_ratio": sratio}, indent=2))


if __name__ == "__main__":
    main()
