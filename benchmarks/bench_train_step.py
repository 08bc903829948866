"""Where CPU training time goes: reading one patch from the cache vs one SGD step.

Prints (1) the cost of :class:`scanlab.core.training.patchdata.PatchDataset` reading a random
64x64 patch from a memory-mapped ``.npy`` cache file and (2) patches per second of a
bare forward/backward/SGD step on a batch of 64 random patches (no data loading).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_train_step.py [--items 2000] [--steps 10]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from scanlab.core.engine.network import build_model
from scanlab.core.training.patchdata import PatchDataset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=2000)
    ap.add_argument("--steps", type=int, default=10)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "img.npy"
        np.save(f, rng.integers(0, 255, (2000, 2000, 3), dtype=np.uint8))
        n = a.items
        ds = PatchDataset([f], (np.zeros(n, int), rng.integers(0, 1936, n), rng.integers(0, 1936, n), np.zeros(n, int)))
        t = time.perf_counter()
        for i in range(n):
            ds[i]
        per_item = (time.perf_counter() - t) / n
    net = build_model(3)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x = torch.rand(64, 3, 64, 64)
    y = torch.randint(0, 3, (64,))
    for _ in range(2):  # warm-up
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    t = time.perf_counter()
    for _ in range(a.steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    pps = a.steps * 64 / (time.perf_counter() - t)
    print(f"torch threads {torch.get_num_threads()}")
    print(f"patch read from cache: {1000 * per_item:.3f} ms/patch ({1 / per_item:.0f} patches/s)")
    print(f"SGD step, batch 64: {pps:.0f} patches/s")


if __name__ == "__main__":
    main()
