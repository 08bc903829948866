"""Training defaults by measurement: scratch vs fine-tuning, 5/10/20 images per scanner, on an unseen bank.

A virtual bank whose scanners the shipped model never saw (``--bank NAME``) is written
twice with ``scanlab synth``: a training pool (content seed 1) and an independent test
set (content seed 2). For every images-per-scanner count, every recipe and every
start (scratch / the shipped model), ``scanlab train`` runs on the first N images of
each scanner (split 4:1:0, i.e. 20% validation, no test) and ``scanlab evaluate``
scores the test set. Prints one markdown table (accuracy and wall time per run).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_train_defaults.py [--bank labnew] [--scanners 3]
        [--size 256] [--counts 5 10 20] [--test 10] [--epochs 8] [--recipes new paper] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RECIPES = {
    # name: extra ``scanlab train`` arguments
    "new": ["--lr", "0.01", "--momentum", "0.9", "--schedule", "cosine", "--sub", "64", "--batch-size", "64"],
    "paper": ["--lr", "0.01", "--momentum", "0.5", "--schedule", "constant", "--sub", "128", "--batch-size", "64"],
    "new-freeze": ["--lr", "0.01", "--momentum", "0.9", "--schedule", "cosine", "--sub", "64", "--batch-size", "64",
                   "--freeze-trunk"],
}


def sh(args: list[str]) -> dict:
    p = subprocess.run([sys.executable, "-m", "scanlab", *args], capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"scanlab {' '.join(args)} failed:\n{p.stderr[-2000:]}")
    return json.loads(p.stdout) if p.stdout.strip().startswith("{") else {}


def subset(pool: Path, dest: Path, n: int) -> None:
    for d in sorted(x for x in pool.iterdir() if x.is_dir()):
        files = sorted(f for f in d.rglob("*") if f.is_file() and f.suffix.lower() in (".png", ".jpg", ".tif", ".tiff"))
        (dest / d.name).mkdir(parents=True, exist_ok=True)
        for f in files[:n]:
            shutil.copy(f, dest / d.name / f.name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bank", default="labnew")
    ap.add_argument("--scanners", type=int, default=3)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--counts", type=int, nargs="+", default=[5, 10, 20])
    ap.add_argument("--test", type=int, default=10, help="test images per scanner")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--recipes", nargs="+", default=["new", "paper"], choices=sorted(RECIPES))
    ap.add_argument("--bases", nargs="+", default=["none", "default"])
    ap.add_argument("--work", default=None)
    a = ap.parse_args()
    work = Path(a.work) if a.work else Path(tempfile.mkdtemp(prefix="bench-defaults-"))
    common = ["--scanners", str(a.scanners), "--size", str(a.size), "--bank", a.bank, "--units", "1", "--force"]
    sh(["synth", str(work / "pool"), "--images", str(max(a.counts)), "--seed", "1", *common])
    sh(["synth", str(work / "test"), "--images", str(a.test), "--seed", "2", *common])
    rows = []
    for n in a.counts:
        data = work / f"n{n}"
        subset(work / "pool", data, n)
        for recipe in a.recipes:
            for base in a.bases:
                out = work / f"m-{n}-{recipe}-{base}.safetensors"
                t0 = time.perf_counter()
                tr = sh(["train", str(data), "-o", str(out), "--base", base, "--epochs", str(a.epochs),
                         "--patience", str(a.epochs), "--split", "4:1:0", "--seed", "0", "--cache", "none",
                         "--json", *RECIPES[recipe]])
                dt = time.perf_counter() - t0
                ev = sh(["evaluate", str(work / "test"), "-m", str(out), "--json"])
                rows.append((n, recipe, base, ev["per_image_accuracy"], ev["per_patch_accuracy"],
                             tr["val"]["per_image_accuracy"], dt))
                print(f"n={n} {recipe} base={base}: test image {ev['per_image_accuracy']:.3f} "
                      f"patch {ev['per_patch_accuracy']:.3f} ({dt:.0f}s)", flush=True)
    print(f"\nbank {a.bank!r}, {a.scanners} scanners, {a.size}x{a.size} px, {a.epochs} epochs, test "
          f"{a.test} images/scanner (independent content)\n")
    print("| images/scanner | recipe | start | test per-image | test per-patch | val per-image | train wall (s) |")
    print("|---:|---|---|---:|---:|---:|---:|")
    for n, recipe, base, ia, pa, va, dt in rows:
        start = "scratch" if base == "none" else "fine-tune shipped"
        print(f"| {n} | {recipe} | {start} | {100 * ia:.1f}% | {100 * pa:.1f}% | {100 * va:.1f}% | {dt:.0f} |")
    if not a.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
