"""One pass (issue 17 item 1): what the open set costs on top of the vote, on a 16 MP scan.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_onepass.py            # 4000 x 4000, shipped model
    OMP_NUM_THREADS=1 python benchmarks/bench_onepass.py --side 2000 --repeats 1

The scan: a fresh 1000 x 1000 scan of the shipped model's scanner ``vscan-01`` from
the virtual bank (``scanlab.core.synth``, a content seed the model never saw), tiled
to ``--side`` (the sensor's column pattern repeats every 1000 px; what is timed is
the network's work, which depends on the size only), written as PNG and analysed
the way ``classify`` and ``map`` do (:func:`run_analysis`, default dense engine).

Printed, all measured in this one process (the machine is shared: read the ratios):

1. ``classify``: the phases (``vote``, ``evidence``, ``gating``) as the scan is, and
   with the unknown threshold forced to 0 so the rotation check always runs (its
   bounded sample of 256 windows per turn), plus the old separate unknown-score
   pass (:func:`score_image`: the trunk again over every window with evidence) for
   comparison. Target: evidence + gating <= 25 % of the vote pass.
2. ``map`` (sub 64, stride 4) with the open set on and switched off (the same
   weights, the manifest's ``open_set`` removed), alternating, ``--repeats`` each.
   Target: on / off <= 1.2.
3. The dense engine's speed-up over the naive one on a 512 x 512 scan (vote grid + map
   grid, sub 64, stride 4), both giving P(other) from their pass: dense timed whole,
   naive on ``--naive-windows`` windows and extrapolated linearly (as bench_map.py a).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from scanlab.core.evidence.openset import OTHER_METHOD, score_image
from scanlab.core.evidence.verdict import EvidenceConfig
from scanlab.core.io.imaging import load_scan
from scanlab.core.modelfile.store import LoadedModel
from scanlab.core.synth.bank import synth_scan
from scanlab.core.synth.scanner import design
from scanlab.services import analysis
from scanlab.services.analysis import AnalysisRequest, run_analysis
from scanlab.services.models import get_model


def make_scan(side: int, folder: Path) -> Path:
    """A fresh bank scan of vscan-01, tiled to side x side, as a PNG."""
    tile = np.asarray(Image.open(__import__("io").BytesIO(
        synth_scan(design("default", 0), 7, seed=977, size=1000).data)).convert("RGB"))
    reps = -(-side // tile.shape[0])
    big = np.tile(tile, (reps, reps, 1))[:side, :side]
    path = folder / f"scan{side}.png"
    Image.fromarray(np.ascontiguousarray(big)).save(path, compress_level=1)
    return path


def variant(lm: LoadedModel, *, open_set: bool, threshold: float | None = None) -> LoadedModel:
    """The same network with the open set removed, or with its unknown threshold replaced."""
    man = copy.deepcopy(lm.manifest)
    if not open_set:
        man.pop("open_set", None)
    elif threshold is not None:
        man["open_set"]["thresholds"]["unknown"] = threshold
    return LoadedModel(lm.net, man, lm.path, lm.extras if open_set else {})


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def main() -> None:
    """Run the measurements and print the tables."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--side", type=int, default=4000)
    ap.add_argument("--repeats", type=int, default=2, help="map runs per setting (alternating)")
    ap.add_argument("--no-old", action="store_true", help="skip the old separate unknown-score pass")
    ap.add_argument("--parts", default="classify,map,naive", help="comma-separated subset of classify,map,naive")
    ap.add_argument("--naive-windows", type=int, default=1000)
    ap.add_argument("--clock", choices=["cpu", "wall"], default="cpu",
                    help="cpu: this process's CPU seconds (stable on a shared machine; with one thread "
                    "it is the work done), wall: elapsed seconds")
    a = ap.parse_args()
    if a.clock == "cpu":
        # the analysis times its phases with time.perf_counter: give it (and us) the CPU clock
        analysis.time = types.SimpleNamespace(perf_counter=time.process_time)
    clock = time.process_time if a.clock == "cpu" else time.perf_counter
    lm = get_model(None)
    cfg = EvidenceConfig.from_model(lm.manifest, lm.extras)
    if cfg.open_set_method != OTHER_METHOD:
        sys.exit("the shipped model has no other-output scorer")
    print(f"# commit {commit()}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"side {a.side} ({a.side * a.side / 1e6:.0f} MP), {a.clock} clock")
    with tempfile.TemporaryDirectory() as tmp:
        path = make_scan(a.side, Path(tmp))
        small = make_scan(256, Path(tmp))
        run_analysis(AnalysisRequest(str(small)), model=lm)  # warm-up (oneDNN primitives)
        scan = load_scan(str(path))
        parts = a.parts.split(",")
        if "naive" in parts:
            naive_vs_dense(lm, cfg, scan_512=load_scan(str(make_scan(512, Path(tmp)))).pixels, clock=clock,
                           n_naive=a.naive_windows)
        if "classify" in parts:
            classify_phases(lm, cfg, path, scan, clock, a.no_old)
        if "map" in parts:
            map_on_off(lm, path, scan, clock, a.repeats)


def classify_phases(lm: LoadedModel, cfg: EvidenceConfig, path: Path, scan, clock, no_old: bool) -> None:  # noqa: ANN001
    """Table 1: the classify phases, as scanned and with the rotation check forced, and the old pass."""
    print("\n## classify phases (s)\n")
    print("| run | vote | evidence | gating | (evidence + gating) / vote | unknown score | warnings |")
    print("|---|---|---|---|---|---|---|")
    for name, model in (("as scanned", lm), ("rotation check forced (threshold 0)", variant(lm, open_set=True,
                                                                                          threshold=0.0))):
        r = run_analysis(AnalysisRequest(str(path), with_map=False), model=model, scan=scan)
        t = r.timing
        print(f"| {name} | {t['vote']:.2f} | {t['evidence']:.3f} | {t['gating']:.3f} | "
              f"{(t['evidence'] + t['gating']) / t['vote']:.1%} | {r.verdict.unknown_score:.4f} | "
              f"{[w['code'] for w in r.verdict.warnings]} |")
        vote_s = t["vote"]
    if not no_old:
        t0 = clock()
        u_old = score_image(cfg.scorer, lm.net, scan.pixels, method=OTHER_METHOD)[0]
        old = clock() - t0
        print(f"| before (separate unknown-score pass, rotation check not included) | {vote_s:.2f} | {old:.2f} "
              f"| - | {old / vote_s:.1%} | {u_old:.4f} | - |")


def map_on_off(lm: LoadedModel, path: Path, scan, clock, repeats: int) -> None:  # noqa: ANN001
    """Table 2: the same map with the open set on and off, alternating."""
    print("\n## map sub 64 stride 4 (s)\n")
    times: dict[str, list[float]] = {"on": [], "off": []}
    models = {"on": lm, "off": variant(lm, open_set=False)}
    for _ in range(repeats):
        for key in ("off", "on"):
            t0 = clock()
            run_analysis(AnalysisRequest(str(path), sub=(64, 64), stride=(4, 4)), model=models[key], scan=scan)
            times[key].append(clock() - t0)
    on, off = statistics.median(times["on"]), statistics.median(times["off"])
    print("| open set | runs (s) | median (s) |")
    print("|---|---|---|")
    for key in ("off", "on"):
        print(f"| {key} | {', '.join(f'{x:.1f}' for x in times[key])} | {statistics.median(times[key]):.1f} |")
    print(f"\nmap on / off: {on / off:.3f}")


def naive_vs_dense(lm: LoadedModel, cfg: EvidenceConfig, *, scan_512: np.ndarray, clock, n_naive: int) -> None:  # noqa: ANN001
    """Table 3: dense vs naive engine on 512 x 512, the other-scanner output on in both."""
    from scanlab.core.engine.engines import NaiveEngine
    from scanlab.core.engine.patches import subimage_grid
    from scanlab.core.engine.reliability import analyze_image

    other = cfg.scorer.head()
    kw = dict(vote_sub=64, map_sub=64, map_stride=4, temperature=cfg.temperature, other=other)
    analyze_image(lm.net, scan_512[:128, :128], engine="dense", **kw)  # warm-up
    t0 = clock()
    dense = analyze_image(lm.net, scan_512, engine="dense", **kw)
    t_dense = clock() - t0
    ys, xs = subimage_grid(scan_512.shape[:2], (64, 64), (4, 4))
    rows = max(1, n_naive // len(xs))
    t0 = clock()
    part, po = NaiveEngine().window_outputs(lm.net, scan_512, ys[:rows], xs, device=torch.device("cpu"), other=other)
    t_naive = (clock() - t0) * len(ys) / rows
    print(f"\n## dense vs naive, 512 x 512, sub 64 stride 4, other output on\n\n"
          f"dense {t_dense:.2f} s, naive {t_naive:.1f} s (timed on {rows * len(xs)} of {len(ys) * len(xs)} windows, "
          f"extrapolated): speed-up {t_naive / t_dense:.0f}x")
    del part, po, dense


if __name__ == "__main__":
    main()
