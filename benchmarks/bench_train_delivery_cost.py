"""What the delivery check adds to a default ``scanlab train``: seconds by stage, in one run.

``scanlab train`` ends by measuring the saved model's verdicts on its test split through
the delivery chain (``services.delivery_check``: as scanned, JPEG q90 / q75, resampled
x0.8 / x1.25). This trains a small lab with the CLI's defaults through
``services.training.run_training`` and times every stage it reports; the delivery check
is the time from its stage to the end, the rest is the training as it was. The outlier
windows are rendered (or found in the cache) before the timed run, as for any later run.

    python benchmarks/bench_train_delivery_cost.py --work /tmp/trainchain/cost --scanners 3 --images 10

The lab is ``scanlab synth --bank lab --scanners N --images K --seed 0`` (512 px scans);
``--negatives M`` adds M scans of unseen scanners (bank ``labunseen``, seed 9) as the lab's
``_other/`` folder, so the check also scores the held-out half of them.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch

from scanlab.core.synth.bank import write_bank
from scanlab.core.training.config import TrainConfig
from scanlab.services.delivery_check import source_commit
from scanlab.services.other_output import OUTLIER_DESIGNS, WINDOWS_PER_DESIGN
from scanlab.services.outlier_cache import cached_outlier_windows
from scanlab.services.training import TrainRequest, run_training


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    """Train once with the check on; print the stage times and the check's share as JSON."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="/tmp/scanlab-train-delivery-cost")
    ap.add_argument("--scanners", type=int, default=3)
    ap.add_argument("--images", type=int, default=10)
    ap.add_argument("--negatives", type=int, default=0, help="scans of unseen scanners in DATA_DIR/_other/")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    work = Path(a.work)
    lab = work / f"lab-{a.scanners}x{a.images}" / (f"with-{a.negatives}-negatives" if a.negatives else "plain")
    if not (lab / "synth.json").is_file():
        write_bank(lab, a.scanners, a.images, seed=0, bank_name="lab", force=True)
    if a.negatives and not (lab / "_other").is_dir():
        write_bank(work / "negatives", a.negatives, 1, seed=9, bank_name="labunseen", force=True)
        (lab / "_other").mkdir()
        for f in sorted((work / "negatives").rglob("*")):
            if f.is_file() and f.suffix.lower() in (".png", ".tif", ".tiff", ".jpg", ".jpeg"):
                f.replace(lab / "_other" / f"{f.parent.name}-{f.name}")
    cached_outlier_windows(n_designs=OUTLIER_DESIGNS, windows_per_design=WINDOWS_PER_DESIGN)
    out = work / "lab.safetensors"
    out.unlink(missing_ok=True)
    marks: list[tuple[str, float, float]] = []
    t0, c0 = time.perf_counter(), _cpu()

    def on_stage(text: str) -> None:
        marks.append((text, time.perf_counter() - t0, _cpu() - c0))
        print(f"[{text} at {marks[-1][1]:.1f}s]", file=sys.stderr, flush=True)

    man = run_training(TrainRequest(data_dir=str(lab), output=str(out), config=TrainConfig(),
                                    cache=str(work / "decoded")), on_stage=on_stage)
    wall, cpu = time.perf_counter() - t0, _cpu() - c0
    start = next(m for m in marks if m[0].startswith("delivery check"))
    check_wall, check_cpu = wall - start[1], cpu - start[2]
    res = {
        "commit": source_commit(), "torch_threads": a.threads, "lab": f"{a.scanners} x {a.images}",
        "test_scans": man["delivery_chain_measured"]["known_scans"],
        "unseen_scans": man["delivery_chain_measured"]["unseen_scans"],
        "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
        "training_wall_s": round(start[1], 1), "training_cpu_s": round(start[2], 1),
        "check_wall_s": round(check_wall, 1), "check_cpu_s": round(check_cpu, 1),
        "check_share_of_training_wall": round(check_wall / start[1], 3),
        "check_share_of_training_cpu": round(check_cpu / start[2], 3),
        "stages": [{"stage": s, "at_s": round(w, 1)} for s, w, _ in marks],
        "rows": man["delivery_chain_measured"]["rows"],
    }
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
