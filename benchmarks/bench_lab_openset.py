"""Lab models say "unknown": train as a lab would, then classify known and never-seen scanners.

Issue 17's done-when: ``scanlab train`` (CLI defaults) on three scanner folders of 10
scans each gives a model with an open set that rejects scans of scanners it never saw
while attributing fresh scans of its own; the same with 5 scans per class.

* lab scanners: ``scanlab synth --bank lab --scanners 3 --images 10 --seed 0``
  (the 5-scan lab is the first 5 scans of each folder);
* fresh scans of the same scanners: the same bank, ``--seed 5``, 10 per scanner;
* never-seen scanners: ``--bank labunseen --scanners 6 --images 5 --seed 9``;
* the real pages in ``../shared/data/real_scans`` (no lab scanner made them).

Neither bank name is the outlier generator's (``oe-lab``) or the shipped model's
(``default``). Training goes through ``services.training.run_training`` with the CLI's
defaults (``TrainConfig()``, base ``default``, split 6:1:3), so 10 scans give one
validation image per class. With ``--baseline`` the 10-scan lab is also trained with
the open set switched off, side by side, for the cost ratio (wall and CPU seconds).

    python benchmarks/bench_lab_openset.py --work /tmp/labopen --baseline
    python benchmarks/bench_lab_openset.py --work /tmp/labopen --sizes 10 --delivery-chain 0.5
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

from scanlab.core.io.imaging import find_images
from scanlab.core.modelfile.store import load_model
from scanlab.core.synth.bank import write_bank
from scanlab.core.training.config import TrainConfig
from scanlab.services.analysis import AnalysisRequest, run_analysis
from scanlab.services.other_output import OUTLIER_DESIGNS, WINDOWS_PER_DESIGN
from scanlab.services.outlier_cache import cached_outlier_windows
from scanlab.services.training import TrainRequest, run_training

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real_scans"


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _banks(work: Path) -> None:
    write_lab_banks(work, {"known10": ("lab", 3, 10, 0), "fresh": ("lab", 3, 10, 5), "unseen": ("labunseen", 6, 5, 9)})


def write_lab_banks(work: Path, specs: dict[str, tuple[str, int, int, int]]) -> None:
    """Write each bank ``name: (bank, scanners, images, seed)`` under ``work`` once, and ``known5``: the
    first 5 scans of each ``known10`` folder."""
    for name, (bank, n, k, seed) in specs.items():
        if not (work / name / "synth.json").is_file():
            write_bank(work / name, n, k, seed=seed, bank_name=bank, force=True)
    k5 = work / "known5"
    if not k5.is_dir():
        for d in sorted(p for p in (work / "known10").iterdir() if p.is_dir()):
            (k5 / d.name).mkdir(parents=True)
            for f in sorted(find_images(d))[:5]:
                shutil.copy2(f, k5 / d.name / f.name)


def _train(data: Path, out: Path, cache: Path, open_set: bool, epochs: int | None, chain: float = 0.0) -> dict:
    cfg = TrainConfig(delivery_chain=chain) if epochs is None else TrainConfig(epochs=epochs, delivery_chain=chain)
    t0, c0 = time.perf_counter(), _cpu()
    man = run_training(TrainRequest(data_dir=str(data), output=str(out), config=cfg, cache=str(cache),
                                    open_set=open_set),
                       on_stage=lambda t: print(f"[{out.name}: {t} at {time.perf_counter() - t0:.0f}s]",
                                                file=sys.stderr, flush=True))
    return {"wall_s": round(time.perf_counter() - t0, 1), "cpu_s": round(_cpu() - c0, 1),
            "open_set": {k: man["open_set"].get(k) for k in ("method", "thresholds", "threshold_rule",
                                                              "threshold_samples", "params")},
            "outlier_exposure": {k: (man["training"].get("outlier_exposure") or {}).get(k)
                                 for k in ("steps", "seconds", "seconds_precompute", "last_steps")},
            "counts": man["training"]["data"]["counts"]}


def _verdicts(model: Path, files: list[Path], truth: list[str | None]) -> dict:
    lm = load_model(model)
    rows = []
    for f, t in zip(files, truth, strict=True):
        r = run_analysis(AnalysisRequest(path=str(f), with_map=False), model=lm)
        rows.append((t, r.verdict.verdict, r.json_label, r.verdict.unknown_score))
    known = [r for r in rows if r[0] is not None]
    unk = [r for r in rows if r[0] is None]
    out = {"counts": {v: sum(r[1] == v for r in rows) for v in ("attributed", "inconclusive", "unknown")},
           "n": len(rows), "unknown_scores": [round(r[3], 3) if r[3] is not None else None for r in rows]}
    if known:
        out["attributed_right"] = sum(r[1] == "attributed" and r[2] == r[0] for r in known)
        out["attributed_wrong"] = sum(r[1] == "attributed" and r[2] != r[0] for r in known)
    if unk:
        out["rejected"] = sum(r[1] != "attributed" for r in unk)
    return out


def main() -> None:
    """Make the banks, train, classify; print one JSON object."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="/tmp/scanlab-lab-openset")
    ap.add_argument("--epochs", type=int, default=None, help="default: the CLI's")
    ap.add_argument("--baseline", action="store_true", help="also train the 10-scan lab without the open set")
    ap.add_argument("--sizes", default="10,5")
    ap.add_argument("--real", default=str(REAL), help="folder of real pages (default: ../shared/data/real_scans "
                    "beside the repository; give it from a git worktree)")
    ap.add_argument("--delivery-chain", type=float, default=0.0,
                    help="train with scanlab train --delivery-chain P (model files get a -chainP suffix)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    _banks(work)
    res: dict = {"torch_threads": 1}
    t0 = time.perf_counter()
    cached_outlier_windows(n_designs=OUTLIER_DESIGNS, windows_per_design=WINDOWS_PER_DESIGN)
    res["outlier_windows_s"] = round(time.perf_counter() - t0, 1)  # ~0 when the per-user cache has them
    fresh = sorted(find_images(work / "fresh"))
    unseen = sorted(find_images(work / "unseen"))
    real = sorted(find_images(Path(a.real))) if Path(a.real).is_dir() else []
    if not real:
        print(f"no real pages at {a.real}: not scored", file=sys.stderr)
    for n in (int(x) for x in a.sizes.split(",")):
        runs = [("open_set", True)] + ([("no_open_set", False)] if a.baseline and n == 10 else [])
        for tag, on in runs:
            suffix = f"-chain{a.delivery_chain:g}" if a.delivery_chain > 0 else ""
            model = work / f"lab{n}-{tag}{suffix}.safetensors"
            model.unlink(missing_ok=True)
            r = _train(work / f"known{n}", model, work / "decoded", on, a.epochs, a.delivery_chain)
            r["fresh_known"] = _verdicts(model, fresh, [f.parent.name for f in fresh])
            r["unseen"] = _verdicts(model, unseen, [None] * len(unseen))
            if real:
                r["real_pages"] = _verdicts(model, real, [None] * len(real))
            res[f"{n}_per_class/{tag}"] = r
            print(json.dumps({f"{n}/{tag}": {k: r[k] for k in ("wall_s", "cpu_s")},
                              "fresh": {k: v for k, v in r["fresh_known"].items() if k != "unknown_scores"},
                              "unseen": {k: v for k, v in r["unseen"].items() if k != "unknown_scores"}}),
                  file=sys.stderr, flush=True)
    if "10_per_class/no_open_set" in res:
        on, off = res["10_per_class/open_set"], res["10_per_class/no_open_set"]
        res["cost_ratio"] = {"wall": round(on["wall_s"] / off["wall_s"], 3), "cpu": round(on["cpu_s"] / off["cpu_s"], 3)}
    res["scores_summary"] = {k: {s: [float(np.nanmin([x for x in v[s]["unknown_scores"] if x is not None])),
                                     float(np.nanmax([x for x in v[s]["unknown_scores"] if x is not None]))]
                                 for s in ("fresh_known", "unseen")}
                             for k, v in res.items() if isinstance(v, dict) and "fresh_known" in v}
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
