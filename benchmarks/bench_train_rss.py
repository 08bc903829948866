"""Peak resident memory of a training run on large scans, and training patches per second.

Generates N scans of H x W (default 5000 x 7000, i.e. 105 MB decoded each) with
numpy (smooth random content times a faint per-column gain pattern per class,
uncompressed TIFF: no simulator), then runs ``scanlab train`` in a fresh
subprocess per collection size (cold decoded-image cache of its own) and reads
that process's peak RSS (``ru_maxrss``). The run is one epoch capped at a few
batches (``--max-batches``) with a 1-image-per-class validation split, so it
exercises everything that scales with the collection (hashing, decoding into the
cache, the patch sampler over every sub-image of every scan, validation on a
full-size scan) in a few minutes.

A second table: training patches per second on this machine's CPU (a smaller
collection, several hundred batches, the same DataLoader path).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_train_rss.py [--sizes 20 40] [--hw 5000 7000]
        [--batches 20] [--work DIR] [--speed-batches 200]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

# VmHWM (peak RSS of this process's own address space) rather than ru_maxrss: on Linux,
# ru_maxrss survives fork+exec and would report the parent's peak from generating the scans.
CHILD = r"""
import json, sys, time
from scanlab.cli import main
t0 = time.perf_counter()
rc = main(sys.argv[1:])
dt = time.perf_counter() - t0
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0].split()[1]
print(json.dumps({"rc": rc, "seconds": dt, "peak_rss_mib": int(hwm) / 1024}), file=sys.stderr)
"""


def make_scans(root: Path, n: int, h: int, w: int, seed: int = 0) -> None:
    """``n`` scans split over two classes (``a``/``b``), written as uncompressed TIFF."""
    rng = np.random.default_rng(seed)
    x = np.arange(w)
    for i in range(n):
        cls = "ab"[i % 2]
        d = root / cls
        d.mkdir(parents=True, exist_ok=True)
        small = rng.integers(40, 215, (h // 64 + 1, w // 64 + 1, 3), dtype=np.uint8)
        img = np.asarray(Image.fromarray(small).resize((w, h), Image.BILINEAR), dtype=np.float32)
        gain = 1.0 + 0.04 * np.cos(2 * np.pi * x / (3 if cls == "a" else 5))
        img *= gain[None, :, None].astype(np.float32)
        img += rng.normal(0, 1.0, (1, w, 3)).astype(np.float32)  # a fixed per-column offset
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(d / f"scan_{i:03d}.tif")
        del img


def run_child(data: Path, out: Path, cache: Path, batches: int, split: str | None = None) -> dict:
    """``scanlab train`` in a fresh process; returns its peak RSS, wall time and JSON summary."""
    if split is None:
        per_class = sum(1 for _ in data.rglob("*.tif")) // 2
        split = f"{per_class - 1}:1:0"  # exactly one validation scan per class
    args = ["train", str(data), "-o", str(out), "--base", "none", "--epochs", "1", "--split", split,
            "--max-batches", str(batches), "--cache", str(cache), "--json"]
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    p = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True, env=env)
    last = p.stderr.strip().splitlines()[-1]
    res = json.loads(last)
    if res["rc"] != 0:
        raise SystemExit(f"training failed: {p.stderr[-2000:]}")
    res["summary"] = json.loads(p.stdout)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[20, 40])
    ap.add_argument("--hw", type=int, nargs=2, default=[5000, 7000])
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--speed-batches", type=int, default=200)
    ap.add_argument("--work", default=None, help="work folder (default: a temporary one, removed)")
    a = ap.parse_args()
    work = Path(a.work) if a.work else Path(tempfile.mkdtemp(prefix="bench-train-rss-"))
    h, w = a.hw
    try:
        big = work / "scans"
        t0 = time.perf_counter()
        make_scans(big, max(a.sizes), h, w)
        print(f"generated {max(a.sizes)} scans of {h}x{w} in {time.perf_counter() - t0:.0f}s", flush=True)
        rows = []
        for n in sorted(a.sizes):
            data = work / f"data{n}"
            for f in sorted(big.rglob("*.tif"), key=lambda p: p.name)[:n]:
                (data / f.parent.name).mkdir(parents=True, exist_ok=True)
                os.link(f, data / f.parent.name / f.name)
            r = run_child(data, work / f"m{n}.safetensors", work / f"cache{n}", a.batches)
            rows.append((n, r))
            shutil.rmtree(work / f"cache{n}", ignore_errors=True)
        print(f"\n| scans ({h}x{w}) | decoded GiB | peak RSS (MiB) | wall (s) |")
        print("|---:|---:|---:|---:|")
        for n, r in rows:
            gib = n * h * w * 3 / 2**30
            print(f"| {n} | {gib:.2f} | {r['peak_rss_mib']:.0f} | {r['seconds']:.0f} |")

        # patches per second: 10 scans of 1024 x 1024 (256 sub-images each), many batches
        small = work / "speed"
        make_scans(small, 10, 1024, 1024, seed=1)
        r = run_child(small, work / "speed.safetensors", work / "cache_speed", a.speed_batches, "4:1:0")
        hist = r["summary"]
        man_pps = None
        try:
            from scanlab.core.modelfile.store import read_manifest

            man_pps = read_manifest(work / "speed.safetensors")["training"]["history"][0]["patches_per_s"]
        except Exception:  # noqa: BLE001 - the table still prints
            pass
        print(f"\ntraining patches/s (batch 64, CPU, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '?')}): "
              f"{man_pps:.0f}" if man_pps else f"\ntraining run: {hist}")
    finally:
        if not a.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
