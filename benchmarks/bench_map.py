"""Benchmark the dense reliability map (issue 4) and print a table.

Usage::

    python benchmarks/bench_map.py                  # every case, CPU (+ GPU when present)
    python benchmarks/bench_map.py --cases a,d      # a subset
    python benchmarks/bench_map.py --naive-windows 2000   # time naive on a subset, extrapolate

Cases (each runs in a fresh subprocess so its peak RSS is its own):

a) naive vs dense on one 512x512 image, vote grid + map grid (sub 64, stride 4),
   through :func:`analyze_image`; speed ratio.
b) 4000x4000 scan, sub 64, stride 4, full map: vote + window grid + the
   reliability map of the predicted class; wall time and peak RSS.
c) 10000x10000 scan: the same; peak RSS.
d) the dense pass of (b) as a FLOP rate: convolution FLOPs actually executed
   (overlapping tiles included; counted with FlopCounterMode on the reference
   network for every distinct tile shape) per second, as a fraction of a
   4096^3 float32 matmul measured in the same process; the "useful" rate counts
   only one whole-image pass.
e) (a) and (b) on CUDA when available.

Scans are random uint8 pixels; (a) converts them with ``to_float``, (b)-(d) pass
the uint8 (H, W, 3) array as the CLI does (the dense engine converts per tile); the
network has random weights (timing does not depend on them) and 10 classes.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from scanlab.core.engine.dense import DenseEngine, _chunks
from scanlab.core.engine.engines import NaiveEngine
from scanlab.core.engine.network import PATCH, STRIDE, ScannerNet, build_model
from scanlab.core.engine.patches import subimage_grid
from scanlab.core.engine.reliability import analyze_image
from scanlab.core.io.imaging import image_hw, to_float

N_CLASSES = 10


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _scan(side: int, seed: int = 0, as_float: bool = True) -> np.ndarray:
    """A random scan: float (3, H, W), or the decoded uint8 (H, W, 3) as the CLI passes it."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
    if not as_float:
        return pixels
    image = to_float(pixels)
    del pixels
    return image


def _net() -> ScannerNet:
    torch.manual_seed(0)
    return build_model(N_CLASSES).eval()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def case_naive_vs_dense(device: torch.device, naive_windows: int | None) -> dict:
    """(a): analyze_image with both engines on the same 512x512 image."""
    net, image = _net(), _scan(512)
    kw = dict(vote_sub=64, map_sub=64, map_stride=4, device=device)
    analyze_image(net, image[:, :128, :128], engine="dense", **kw)  # warm-up (oneDNN primitives)
    times = []
    for _ in range(3):
        _sync(device)
        t0 = time.perf_counter()
        dense = analyze_image(net, image, engine="dense", **kw)
        _sync(device)
        times.append(time.perf_counter() - t0)
    t_dense = min(times)
    n_total = dense.map_grid.probs.shape[0] * dense.map_grid.probs.shape[1]
    if naive_windows is None:
        t0 = time.perf_counter()
        naive = analyze_image(net, image, engine="naive", **kw)
        t_naive = time.perf_counter() - t0
        diff = float(np.abs(naive.map_grid.probs - dense.map_grid.probs).max())
        note = f"naive full run ({n_total} windows)"
    else:  # a subset of map rows, extrapolated linearly in windows
        ys, xs = subimage_grid(image.shape[1:], (64, 64), (4, 4))
        rows = max(1, naive_windows // len(xs))
        t0 = time.perf_counter()
        part = NaiveEngine().window_probs(net, image, ys[:rows], xs, device=device)
        t_naive = (time.perf_counter() - t0) * len(ys) / rows
        diff = float(np.abs(part - dense.map_grid.probs[:rows]).max())
        note = f"naive timed on {rows * len(xs)} of {n_total} windows, extrapolated"
    return {
        "t_dense_s": t_dense,
        "t_naive_s": t_naive,
        "ratio": t_naive / t_dense,
        "max_abs_diff": diff,
        "note": note,
    }


def _executed_flops(
    net: ScannerNet, shape: tuple[int, int], ys: np.ndarray, xs: np.ndarray, tile: int
) -> tuple[float, float]:
    """Conv FLOPs of the tiles the dense engine runs for a stride-4 grid, and of one whole-image pass."""
    meta = copy.deepcopy(net).to("meta")
    cache: dict[tuple[int, int], float] = {}

    def flops(h: int, w: int) -> float:
        if (h, w) not in cache:
            with FlopCounterMode(display=False) as fc:
                meta.trunk(torch.empty(1, 3, h, w, device="meta"))
            cache[(h, w)] = float(fc.get_total_flops())
        return cache[(h, w)]

    per_tile = (tile - PATCH) // STRIDE + 1
    sides_y = [min(shape[0], int(ys[i[-1]]) + PATCH) - STRIDE * q for q, i in _chunks(ys, per_tile)]
    sides_x = [min(shape[1], int(xs[i[-1]]) + PATCH) - STRIDE * q for q, i in _chunks(xs, per_tile)]
    executed = sum(flops(a, b) for a in sides_y for b in sides_x)
    return executed, flops(*shape)


def _matmul_rate(device: torch.device, n: int = 4096) -> float:
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    a @ b
    best = float("inf")
    for _ in range(3):
        _sync(device)
        t0 = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best


def case_full_map(side: int, device: torch.device, with_flops: bool) -> dict:
    """(b)/(c)/(d): vote + map grid + reliability map of a side x side scan."""
    net = _net()
    analyze_image(net, _scan(200, 1), map_sub=64, map_stride=4, device=device)  # warm-up, small
    image = _scan(side, as_float=False)  # as run_analysis passes it: converted per tile
    _sync(device)
    t0 = time.perf_counter()
    res = analyze_image(net, image, vote_sub=64, map_sub=64, map_stride=4, device=device)
    _sync(device)
    t_grid = time.perf_counter() - t0
    rel = res.class_reliability(res.classification.label_index)
    t_total = time.perf_counter() - t0
    out = {
        "side": side,
        "t_grid_s": t_grid,
        "t_total_s": t_total,
        "windows": int(res.map_grid.probs.shape[0] * res.map_grid.probs.shape[1]),
        "map_nan_frac": float(np.isnan(rel).mean()),
        "peak_rss_mib": _peak_rss_mib(),
    }
    if device.type == "cuda":
        out["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
    if with_flops:
        # Time the engine pass alone (the grid), then count what it executed.
        g = res.map_grid
        tile = DenseEngine().cells_per_tile(device) * STRIDE + PATCH - STRIDE
        engine = DenseEngine()
        _sync(device)
        t0 = time.perf_counter()
        engine.window_probs(net, image, g.ys, g.xs, device=device)
        _sync(device)
        t_pass = time.perf_counter() - t0
        executed, useful = _executed_flops(net, image_hw(image), g.ys, g.xs, tile)
        mm = _matmul_rate(device)
        out.update(
            t_pass_s=t_pass,
            tile=tile,
            executed_gflop=executed / 1e9,
            useful_gflop=useful / 1e9,
            executed_rate_gfs=executed / t_pass / 1e9,
            useful_rate_gfs=useful / t_pass / 1e9,
            matmul_gfs=mm / 1e9,
            frac_executed=executed / t_pass / mm,
            frac_useful=useful / t_pass / mm,
        )
    return out


def _child(case: str, device: str, naive_windows: int | None) -> dict:
    dev = torch.device(device)
    load0 = os.getloadavg()[0]
    if case == "a":
        res = case_naive_vs_dense(dev, naive_windows)
    elif case == "b":
        res = case_full_map(4000, dev, with_flops=True)
    elif case == "c":
        res = case_full_map(10000, dev, with_flops=False)
    else:
        raise SystemExit(f"unknown case {case}")
    res["load_avg_1min"] = [load0, os.getloadavg()[0]]
    res["threads"] = torch.get_num_threads()
    res["peak_rss_mib"] = _peak_rss_mib()
    return res


def _run_child(case: str, device: str, naive_windows: int | None) -> dict:
    cmd = [sys.executable, __file__, "--child", case, "--device", device]
    if naive_windows is not None:
        cmd += ["--naive-windows", str(naive_windows)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _fmt(case: str, device: str, r: dict) -> list[str]:
    if "error" in r:
        return [f"| {case} | {device} | error: {r['error']} | | |"]
    load = "load {:.1f}->{:.1f}".format(*r["load_avg_1min"])
    rss = f"{r['peak_rss_mib'] / 1024:.2f} GiB"
    if case == "a":
        return [
            f"| a) naive vs dense 512x512, sub 64, stride 4 | {device} | dense {r['t_dense_s']:.3f} s, "
            f"naive {r['t_naive_s']:.1f} s: **{r['ratio']:.0f}x** (max diff {r['max_abs_diff']:.1e}; {r['note']}) "
            f"| {rss} | {load} |"
        ]
    rows = [
        f"| {case}) {r['side']}x{r['side']} full map, sub 64, stride 4 | {device} | "
        f"**{r['t_total_s']:.1f} s** (grid {r['t_grid_s']:.1f} s, {r['windows']} windows) | **{rss}**"
        + (f" (GPU {r['peak_gpu_mib'] / 1024:.2f} GiB)" if "peak_gpu_mib" in r else "")
        + f" | {load} |"
    ]
    if "frac_executed" in r:
        rows.append(
            f"| d) dense pass FLOP rate ({r['side']}x{r['side']}, {r['tile']}-px tiles) | {device} | "
            f"executed {r['executed_gflop']:.0f} GFLOP in {r['t_pass_s']:.1f} s = {r['executed_rate_gfs']:.0f} GFLOP/s "
            f"= **{100 * r['frac_executed']:.0f}%** of matmul ({r['matmul_gfs']:.0f} GFLOP/s); "
            f"useful {r['useful_gflop']:.0f} GFLOP = {100 * r['frac_useful']:.0f}% | | {load} |"
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--cases", default="a,b,c", help="comma-separated subset of a,b,c (d comes with b)"
    )
    ap.add_argument(
        "--naive-windows", type=int, default=None, help="time naive on about this many windows"
    )
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, args.device, args.naive_windows)))
        return
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs")
    print("| case | device | time | peak RSS | machine load |")
    print("|---|---|---|---|---|")
    for device in devices:
        for case in cases:
            if device == "cuda" and case == "c":
                continue
            for line in _fmt(case, device, _run_child(case, device, args.naive_windows)):
                print(line, flush=True)
    if "cuda" not in devices:
        print("| e) GPU | - | skipped: no CUDA device on this machine | | |")


if __name__ == "__main__":
    main()
