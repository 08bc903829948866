"""Evidence-grade answers (issue 8): verdicts on known, unknown and real scans, false alarms, AUC, ECE.

All in one run, on data no model saw:

* known scanners: a fresh content seed of the default bank (``--seed``), share of
  images ``attributed`` to the right scanner;
* unknown scanners: a different bank name (``--unknown-bank``) and every page in
  ``../shared/data/real_scans``: share answered ``unknown`` or ``inconclusive``;
* false alarms on authentic fresh scans: share of pixels with reliability < 0.5,
  before the no-signal rule (all pixels) and after it (pixels with evidence);
  the same on the real pages;
* splice localisation: pixel ROC AUC of 1 - reliability before/after the rule;
* calibration: ECE of the fresh windows with evidence, raw and temperature-scaled;
* input gating: share of scans with a ``rotated_90`` warning, as scanned and turned
  by 90 degrees (fresh known scans, unknown-bank scans, real pages).

Each ``--models NAME=PATH`` is one open-set variant (same data); the first is
the one whose maps are measured. Data comes from benchmarks/evidence_data.py.

    python benchmarks/bench_evidence.py --work /tmp/scanlab-evidence \\
        --models shipped=trained_models/scanlab-default.safetensors
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_table1 import roc_auc  # noqa: E402

from scanlab.core.engine.reliability import analyze_image, apply_temperature  # noqa: E402
from scanlab.core.evidence import calibration as cal  # noqa: E402
from scanlab.core.evidence.gating import rotation_warning  # noqa: E402
from scanlab.core.evidence.verdict import EvidenceConfig  # noqa: E402
from scanlab.core.io.imaging import find_images, load_scan  # noqa: E402
from scanlab.core.modelfile.store import load_model  # noqa: E402
from scanlab.core.synth.bank import write_bank  # noqa: E402
from scanlab.core.synth.forge import write_forgeries  # noqa: E402
from scanlab.services.analysis import AnalysisRequest, run_analysis, turned_scorer, unknown_scores  # noqa: E402

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real_scans"


def verdicts(lm, files: list[Path], truth: list[str | None]) -> dict:
    """Verdict per image; ``truth`` None = unknown scanner."""
    out = []
    for f, t in zip(files, truth, strict=True):
        r = run_analysis(AnalysisRequest(path=str(f), with_map=False), model=lm)
        v = r.verdict
        out.append({"file": f.name, "truth": t, "verdict": v.verdict, "label": r.json_label,
                    "unknown_score": v.unknown_score, "vote_fraction": v.vote_fraction})
    known = [o for o in out if o["truth"] is not None]
    unk = [o for o in out if o["truth"] is None]
    return {
        "attributed_and_right": float(np.mean([o["verdict"] == "attributed" and o["label"] == o["truth"] for o in known]))
        if known else None,
        "rejected": float(np.mean([o["verdict"] != "attributed" for o in unk])) if unk else None,
        "counts": {v: sum(o["verdict"] == v for o in out) for v in ("attributed", "inconclusive", "unknown")},
        "images": out,
    }


def false_alarms(net, cfg: EvidenceConfig, files: list[Path], stride: int) -> dict:
    """Share of pixels with reliability < 0.5 of the predicted label, before/after the rule."""
    before, after, ne = [], [], []
    for f in files:
        px = load_scan(f).pixels
        for rule, acc in ((False, before), (True, after)):
            a = analyze_image(net, px, map_sub=64, map_stride=stride, temperature=cfg.temperature, evidence=rule)
            rel = a.class_reliability(a.classification.label_index)
            ok = np.isfinite(rel)
            acc.append(((rel[ok] < 0.5).sum(), ok.sum()))
            if rule:
                ne.append(float(a.no_evidence_mask().mean()))
    fr = lambda xs: float(sum(x for x, _ in xs) / max(1, sum(n for _, n in xs)))  # noqa: E731
    return {"before": fr(before), "after": fr(after), "no_evidence_fraction": float(np.mean(ne)), "n": len(files)}


def splice_auc(net, cfg: EvidenceConfig, folder: Path) -> dict:
    """Pixel AUC of 1 - reliability (host label) against the masks, before and after the rule."""
    man = json.loads((folder / "manifest.json").read_text())
    res = {}
    for rule in (False, True):
        ss, yy = [], []
        for rec in man:
            px = load_scan(folder / rec["image"]).pixels
            mask = load_scan(folder / rec["mask"]).pixels[:, :, 0] > 127
            a = analyze_image(net, px, map_sub=64, map_stride=4, temperature=cfg.temperature, evidence=rule)
            rel = a.class_reliability(a.classification.label_index)
            ok = np.isfinite(rel)
            ss.append(1.0 - rel[ok])
            yy.append(mask[ok])
        res["after" if rule else "before"] = roc_auc(np.concatenate(ss), np.concatenate(yy))
    res["n"] = len(man)
    return res


def ece_fresh(net, cfg: EvidenceConfig, files: list[Path], classes: list[str]) -> dict:
    """ECE of the fresh known windows with evidence, raw and calibrated."""
    P, Y = [], []
    for f in files:
        a = analyze_image(net, load_scan(f).pixels)
        ev = a.vote.evidence_mask()
        P.append(a.vote.probs[ev])
        Y.append(np.full(int(ev.sum()), classes.index(f.parent.name)))
    p, y = np.concatenate(P), np.concatenate(Y)
    return {"raw": cal.ece(p, y), "calibrated": cal.ece(apply_temperature(p, cfg.temperature), y),
            "temperature": cfg.temperature, "n_windows": int(len(y))}


def rotation_gate(lm, cfg: EvidenceConfig, files: list[Path]) -> dict:
    """Share of scans warned ``rotated_90``: as scanned (false warnings) and turned 90 degrees (detections)."""
    if cfg.scorer is None:
        return {"n": 0}
    thr = cfg.thresholds.get("unknown")
    cpu = torch.device("cpu")

    def warns(img) -> bool:  # the analysis's own check: a bounded sample of windows, turned
        u, scores, ys, xs = unknown_scores(lm, cfg, img, cpu)
        return rotation_warning(turned_scorer(lm, cfg, img, cpu, (scores, ys, xs)), u, thr) is not None

    warned = {"as_scanned": 0, "turned_clockwise": 0, "turned_anticlockwise": 0}
    for f in files:
        px = load_scan(f).pixels
        for key, img in (("as_scanned", px), ("turned_anticlockwise", np.rot90(px, 1)),
                         ("turned_clockwise", np.rot90(px, 3))):
            warned[key] += warns(np.ascontiguousarray(img))
    return {k: v / max(1, len(files)) for k, v in warned.items()} | {"n": len(files)}


def main() -> None:
    """Run everything and print one JSON object (the tables go in BENCHMARKS.md)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="/tmp/scanlab-evidence")
    ap.add_argument("--models", nargs="+", required=True, metavar="NAME=PATH")
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--unknown-bank", default="elsewhere")
    ap.add_argument("--forge-n", type=int, default=12)
    ap.add_argument("--fa-images", type=int, default=20, help="fresh scans used for the false-alarm maps")
    a = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.time()
    work = Path(a.work)
    known_dir, unk_dir = work / f"known-s{a.seed}", work / f"unknown-{a.unknown_bank}"
    if not known_dir.exists():
        write_bank(known_dir, 10, 10, size=512, seed=a.seed)
    if not unk_dir.exists():
        write_bank(unk_dir, 10, 10, size=512, seed=a.seed, bank_name=a.unknown_bank)
    forge = work / f"splice-s{a.seed}"
    if not forge.exists():
        write_forgeries(forge, a.forge_n, "splice", seed=a.seed, size=512)
    known = sorted(find_images(known_dir))
    unk = sorted(find_images(unk_dir))
    real = sorted(find_images(REAL)) if REAL.is_dir() else []
    out: dict = {"machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} thread",
                 "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                          text=True).stdout.strip(), "models": {}}
    for i, spec in enumerate(a.models):
        name, path = spec.split("=", 1)
        lm = load_model(path)
        cfg = EvidenceConfig.from_model(lm.manifest, lm.extras)
        m = {"open_set": lm.manifest.get("open_set"), "calibration": lm.manifest.get("calibration"),
             "known": verdicts(lm, known, [f.parent.name for f in known]),
             "unknown_bank": verdicts(lm, unk, [None] * len(unk)),
             "real": verdicts(lm, real, [None] * len(real))}
        if i == 0:
            step = max(1, len(known) // a.fa_images)
            m["false_alarms_fresh"] = false_alarms(lm.net, cfg, known[::step], 8)
            m["false_alarms_real"] = false_alarms(lm.net, cfg, real, 16)
            m["splice_auc"] = splice_auc(lm.net, cfg, forge)
            m["ece_fresh"] = ece_fresh(lm.net, cfg, known, lm.classes)
            m["rotation_gate"] = {"known": rotation_gate(lm, cfg, known[::step]),
                                  "unknown_bank": rotation_gate(lm, cfg, unk[::step]),
                                  "real": rotation_gate(lm, cfg, real)}
        out["models"][name] = m
        print(f"{name}: known {m['known']['attributed_and_right']:.3f}, unknown bank rejected "
              f"{m['unknown_bank']['rejected']:.3f}, real rejected {m['real']['rejected']}", file=sys.stderr, flush=True)
    out["seconds"] = time.time() - t0
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
