"""Lab models' known side on the development sets: which training recipe / image decision classifies better.

Trains the 3 x 10 lab (``scanlab synth --bank lab --scanners 3 --images 10 --seed 0``, or
the first 5 scans per class with ``--size 5``) through ``services.training.run_training``
with ``TrainConfig()`` plus the overrides of ``--set`` (the CLI defaults otherwise; the
delivery check is off: it only adds figures to the manifest, the scans here are not
re-saved), then classifies the **development** sets only (``lab`` seed 7, 3 x 5 fresh scans;
``labdev`` seed 11, 6 x 4 scans of scanners the lab never saw; the sets of
``lab_openset_scorers.py``) and prints one JSON object:

* verdict counts as ``scanlab classify`` gives them (fresh: attributed right / wrong /
  rejected; unseen: rejected);
* image-level accuracy of three answers on the fresh scans: the window vote, the mean
  probability, and the nearest class mean of the image's mean feature (``gauss-image``'s
  projections, Mahalanobis), plus the per-window accuracy;
* the unknown score's AUC (fresh vs unseen);
* training wall / CPU seconds.

    python benchmarks/lab_known_dev.py --work /tmp/labknown --name base
    python benchmarks/lab_known_dev.py --work /tmp/labknown --name e16 --set epochs=16
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from scanlab.core.evidence.gauss import GaussScorer
from scanlab.core.io.imaging import find_images, load_scan
from scanlab.core.modelfile.store import load_model, save_model
from scanlab.core.training.config import TrainConfig
from scanlab.services.analysis import AnalysisRequest, run_analysis
from scanlab.services.training import TrainRequest, run_training, training_coverage

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_lab_openset import write_lab_banks  # noqa: E402

BANKS = {"known10": ("lab", 3, 10, 0), "devfresh": ("lab", 3, 5, 7), "devunseen": ("labdev", 6, 4, 11)}


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def banks(work: Path) -> None:
    """The training lab and the development sets (never the benchmark's)."""
    write_lab_banks(work, BANKS)


def _value(v: str):
    try:
        return json.loads(v)
    except json.JSONDecodeError:
        return v


def auc(known: list[float], unseen: list[float]) -> float:
    """P(unseen score > known score), ties half."""
    k, u = np.asarray(known, float), np.asarray(unseen, float)
    return float(np.mean(u[:, None] > k[None, :]) + 0.5 * np.mean(u[:, None] == k[None, :]))


def score(model: Path, files: list[Path], truth: list[str | None]) -> list[dict]:
    """One row per scan: verdict, labels of the three image answers, per-window hits, unknown score."""
    lm = load_model(model)
    rows = []
    for f, t in zip(files, truth, strict=True):
        r = run_analysis(AnalysisRequest(path=str(f), with_map=False), model=lm)
        c = r.analysis.classification
        g = r.analysis.other_grid
        row = {"file": f.name, "truth": t, "verdict": r.verdict.verdict, "vote": lm.classes[c.label_index],
               "mean_prob": lm.classes[int(np.argmax(c.mean_probs))], "u": r.verdict.unknown_score,
               "vote_fraction": r.verdict.vote_fraction, "confidence": r.verdict.confidence}
        sc = r.evidence.scorer
        if isinstance(sc, GaussScorer) and g is not None and g.other is not None and g.other.ndim == 3:
            ev = g.evidence_mask()
            m = g.other[ev].astype(np.float64).mean(0)
            d = ((m[None, :] - sc.centres.astype(np.float64)) ** 2).sum(1)
            row["gauss"] = lm.classes[int(np.argmin(d))]
            row["gauss_d"] = [round(float(x), 3) for x in d / len(m)]
        if t is not None and t in lm.classes:
            pl = c.patch_labels
            row["window_acc"] = float(np.mean(pl == lm.classes.index(t))) if len(pl) else None
        rows.append(row)
    return rows


def summary(fresh: list[dict], unseen: list[dict]) -> dict:
    """Counts and accuracies of the rows."""
    def acc(key: str) -> str:
        return f"{sum(r.get(key) == r['truth'] for r in fresh)}/{len(fresh)}"
    return {
        "fresh_right": sum(r["verdict"] == "attributed" and r["vote"] == r["truth"] for r in fresh),
        "fresh_wrong": sum(r["verdict"] == "attributed" and r["vote"] != r["truth"] for r in fresh),
        "fresh_rejected": sum(r["verdict"] != "attributed" for r in fresh),
        "unseen_rejected": sum(r["verdict"] != "attributed" for r in unseen),
        "n": [len(fresh), len(unseen)],
        "acc_vote": acc("vote"), "acc_mean_prob": acc("mean_prob"), "acc_gauss": acc("gauss"),
        "window_acc": round(float(np.mean([r["window_acc"] for r in fresh if r.get("window_acc") is not None])), 3),
        "auc_u": round(auc([r["u"] for r in fresh if r["u"] is not None], [r["u"] for r in unseen if r["u"] is not None]), 3),
    }


def with_coverage(model: Path, data: Path, out: Path) -> Path:
    """A copy of ``model`` whose manifest gains the reference coverage ``scanlab train`` now records."""
    lm = load_model(model)
    man = {k: v for k, v in lm.manifest.items() if not k.startswith("_")}
    classes = man["classes"]
    files = man["training"]["data"]["files"]["train"]
    images = ((load_scan(data / f).pixels, classes.index(f.split("/")[0])) for f in files)
    man["training_input"] = {**man.get("training_input", {}), "reference_coverage": training_coverage(images, classes)}
    out.parent.mkdir(parents=True, exist_ok=True)
    save_model(lm.net, man, out, dict(lm.extras))
    return out


def main() -> None:
    """Train one variant, score the development sets, print JSON."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="/tmp/labknown")
    ap.add_argument("--name", required=True)
    ap.add_argument("--size", type=int, default=10, choices=(10, 5))
    ap.add_argument("--set", nargs="*", default=[], help="TrainConfig overrides, key=value")
    ap.add_argument("--model", default=None, help="score this model instead of training one")
    ap.add_argument("--add-coverage", action="store_true",
                    help="with --model: score a copy of it with training_input.reference_coverage computed from "
                         "the training files its manifest lists (models trained before the coverage rule)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    banks(work)
    res: dict = {"name": a.name, "size": a.size, "set": a.set}
    if a.model is None:
        cfg = replace(TrainConfig(), **{k: _value(v) for k, v in (s.split("=", 1) for s in a.set)})
        model = work / "models" / f"{a.name}-{a.size}.safetensors"
        model.parent.mkdir(exist_ok=True)
        model.unlink(missing_ok=True)
        t0, c0 = time.perf_counter(), _cpu()
        stages: dict[str, float] = {}
        man = run_training(TrainRequest(data_dir=str(work / f"known{a.size}"), output=str(model), config=cfg,
                                        cache=str(work / "decoded"), delivery_check=False),
                           on_stage=lambda t: stages.setdefault(t.split(":")[0], round(time.perf_counter() - t0, 1)))
        res.update(wall_s=round(time.perf_counter() - t0, 1), cpu_s=round(_cpu() - c0, 1), stages=stages,
                   epochs_run=man["training"]["epochs_run"], best_epoch=man["training"]["best_epoch"],
                   threshold=man["open_set"].get("thresholds"))
    elif a.add_coverage:
        model = with_coverage(Path(a.model), work / f"known{a.size}", work / "models" / f"{a.name}-cov.safetensors")
    else:
        model = Path(a.model)
    fresh = sorted(find_images(work / "devfresh"))
    unseen = sorted(find_images(work / "devunseen"))
    fr = score(model, fresh, [f.parent.name for f in fresh])
    un = score(model, unseen, [None] * len(unseen))
    res["dev"] = summary(fr, un)
    res["rows"] = {"fresh": fr, "unseen": un}
    (work / "results").mkdir(exist_ok=True)
    (work / "results" / f"{a.name}-{a.size}.json").write_text(json.dumps(res, indent=1))
    print(json.dumps({k: v for k, v in res.items() if k != "rows"}), flush=True)
    print(json.dumps(res["dev"]), file=sys.stderr)


if __name__ == "__main__":
    main()
