"""Verdicts through the delivery chain: fresh scans of known scanners and unseen scanners, re-saved.

Issue 17 item 3. Each scan is analysed as scanned and after one whole-scan
transformation a questioned file really goes through, written to disk as a user
would receive it and analysed through ``services.analysis.run_analysis`` (decoding,
JPEG facts, gating, vote, verdict: the path of ``scanlab classify``):

* ``jpeg-q90``, ``jpeg-q75``: decoded and saved again as JPEG (Pillow, 4:2:0);
* ``resample-0.8``, ``resample-1.25``: resized (bicubic) and saved as PNG.

Per model and transformation: known scans attributed to the right scanner, to a wrong
one, ``unknown``, ``inconclusive``; unseen-scanner scans rejected (``unknown`` or
``inconclusive``), as the analyst reads them (after the delivery-chain verdict rule);
the JSON keeps the verdicts before the rule too (``before_rule``), and ``--store-in``
stores those (the rule reads the stored figures, so they must never be its own
output). Any number of models run side by side on the same files:

    python benchmarks/bench_delivery.py --models shipped=trained_models/scanlab-default.safetensors \\
        new=/tmp/new.safetensors --seed 2024 --unseen-bank elsewhere --per-scanner 2

By default the known scans are fresh scans of the default bank's 10 scanners (the
shipped model's; content seed ``--seed``, never a training seed) and the unseen scans
come from bank ``--unseen-bank``; ``--known DIR`` / ``--unseen DIR`` take folders
instead (one sub-folder per scanner, named as the model's classes; a lab model).
``--store-in NAME`` writes the measured figures into that model file's manifest
(``delivery_chain_measured``, docs/formats.md), the figures the gating warning quotes;
weights and every other key stay as they are.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from scanlab.core.io.imaging import find_images, load_scan
from scanlab.core.modelfile.store import load_model, save_model
from scanlab.core.synth.bank import write_bank
from scanlab.services.analysis import AnalysisRequest, run_analysis

TRANSFORMS = {  # name -> (kind, parameter)
    "as scanned": ("none", None),
    "jpeg-q90": ("jpeg", 90),
    "jpeg-q75": ("jpeg", 75),
    "resample-0.8": ("resample", 0.8),
    "resample-1.25": ("resample", 1.25),
}


def _transform(src: Path, out_dir: Path, name: str) -> Path:
    """``src`` through transformation ``name``, written once under ``out_dir`` (as a user receives it)."""
    kind, arg = TRANSFORMS[name]
    if kind == "none":
        return src
    target = out_dir / name / src.parent.name / (src.stem + (".jpg" if kind == "jpeg" else ".png"))
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    px = load_scan(src).pixels
    if px.dtype != np.uint8:
        px = np.rint(px.astype(np.float32) / 257.0).astype(np.uint8)
    im = Image.fromarray(px, "RGB")
    tmp = target.with_suffix(target.suffix + ".part")
    if kind == "jpeg":
        im.save(tmp, "JPEG", quality=int(arg))
    else:
        im.resize((round(im.width * arg), round(im.height * arg)), Image.Resampling.BICUBIC).save(tmp, "PNG")
    tmp.replace(target)
    return target


def _pick(folder: Path, per_scanner: int) -> list[Path]:
    """The first ``per_scanner`` images of every sub-folder, sorted."""
    out: list[Path] = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        out += sorted(find_images(sub))[:per_scanner]
    return out


def _sets(a: argparse.Namespace, work: Path) -> tuple[list[Path], list[Path]]:
    known_dir = Path(a.known) if a.known else work / f"known-default-s{a.seed}-n{a.per_scanner}"
    if not a.known and not known_dir.exists():
        write_bank(known_dir, n_scanners=10, n_images=a.per_scanner, seed=a.seed)
    unseen_dir = Path(a.unseen) if a.unseen else work / f"unseen-{a.unseen_bank}-s{a.seed}-n{a.per_scanner}"
    if not a.unseen and not unseen_dir.exists():
        write_bank(unseen_dir, n_scanners=10, n_images=a.per_scanner, seed=a.seed, bank_name=a.unseen_bank)
    return _pick(known_dir, a.per_scanner), _pick(unseen_dir, a.per_scanner)


def _row(lm, files: list[Path], work: Path, name: str, known: bool) -> dict:
    counts = {"right": 0, "wrong": 0, "unknown": 0, "inconclusive": 0} if known else \
        {"attributed": 0, "unknown": 0, "inconclusive": 0}
    before = dict.fromkeys(counts, 0)  # the verdicts before the delivery-chain rule: what the model file stores
    warned: dict[str, int] = {}
    for f in files:
        path = _transform(f, work / "transformed" / ("known" if known else "unseen"), name)
        r = run_analysis(AnalysisRequest(path=str(path), with_map=False), model=lm)
        for v, into in ((r.verdict.verdict, counts), (r.verdict.before_delivery_rule or r.verdict.verdict, before)):
            if v == "attributed" and known:
                v = "right" if r.label == f.parent.name else "wrong"
            into[v] += 1
        for w in r.verdict.warnings:
            warned[w["code"]] = warned.get(w["code"], 0) + 1
    return {"n": len(files), **counts, "warnings": warned, "before_rule": before}


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _store(path: str, res: dict, a: argparse.Namespace, n_known: int, n_unseen: int) -> None:
    """Write the figures into the model file's manifest (``delivery_chain_measured``); weights unchanged."""
    lm = load_model(path)
    rows = {}
    for name, (kind, arg) in TRANSFORMS.items():
        # the rule reads these figures, so they are the verdicts without it (never its own output)
        k, u = res[name]["known"]["before_rule"], res[name]["unseen"]["before_rule"]
        k["n"], u["n"] = res[name]["known"]["n"], res[name]["unseen"]["n"]
        rows[name] = {"kind": kind, "parameter": arg,
                      "known_right": round(k["right"] / k["n"], 4), "known_wrong": round(k["wrong"] / k["n"], 4),
                      "known_unknown_or_inconclusive": round((k["unknown"] + k["inconclusive"]) / k["n"], 4),
                      "unseen_rejected": round((u["unknown"] + u["inconclusive"]) / u["n"], 4)}
    man = {k: v for k, v in lm.manifest.items() if not k.startswith("_")}
    man["delivery_chain_measured"] = {
        "benchmark": "benchmarks/bench_delivery.py", "commit": _commit(),
        "measured": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "known_scans": n_known, "unseen_scans": n_unseen,
        "known_set": a.known or f"default bank, content seed {a.seed}, {a.per_scanner} per scanner",
        "unseen_set": a.unseen or f"bank {a.unseen_bank!r}, seed {a.seed}, {a.per_scanner} per scanner",
        "jpeg": "decoded and saved again with Pillow at the quality given, 4:2:0",
        "resample": "bicubic, saved as PNG", "verdicts": "before the delivery-chain rule", "rows": rows,
    }
    save_model(lm.net, man, path, dict(lm.extras))
    print(f"stored delivery_chain_measured in {path}", file=sys.stderr)


def main() -> None:
    """Print the per-transformation table for every model; optionally write JSON and store figures."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", required=True, help="NAME=PATH ...")
    ap.add_argument("--work", default="/tmp/scanlab-delivery")
    ap.add_argument("--seed", type=int, default=2024, help="content seed of the generated scans")
    ap.add_argument("--per-scanner", type=int, default=2, help="scans per scanner (10 scanners per set)")
    ap.add_argument("--unseen-bank", default="elsewhere")
    ap.add_argument("--known", default=None, help="folder of known-scanner scans instead of the default bank")
    ap.add_argument("--unseen", default=None, help="folder of unseen-scanner scans instead of --unseen-bank")
    ap.add_argument("--transforms", default=",".join(TRANSFORMS))
    ap.add_argument("--json", default=None, help="write the raw counts here")
    ap.add_argument("--store-in", default=None, help="NAME of the model whose manifest gets the figures")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    models = dict(m.split("=", 1) for m in a.models)
    names = [t for t in a.transforms.split(",") if t]
    work = Path(a.work)
    t0 = time.time()
    known, unseen = _sets(a, work)
    results: dict[str, dict] = {}
    for mname, path in models.items():
        lm = load_model(path)
        results[mname] = {}
        for t in names:
            results[mname][t] = {"known": _row(lm, known, work, t, True), "unseen": _row(lm, unseen, work, t, False)}
            k, u = results[mname][t]["known"], results[mname][t]["unseen"]
            print(f"{mname:>14} {t:>14}: known right {k['right']}/{k['n']} wrong {k['wrong']} unknown "
                  f"{k['unknown']} inconclusive {k['inconclusive']} | unseen rejected "
                  f"{u['unknown'] + u['inconclusive']}/{u['n']}", file=sys.stderr, flush=True)
    print(f"\n{len(known)} known scans, {len(unseen)} unseen-scanner scans; {time.time() - t0:.0f} s\n")
    print("| transformation | " + " | ".join(f"{m}: known right / wrong / unknown+inconcl. | {m}: unseen rejected"
                                             for m in models) + " |")
    print("|---|" + "---:|---:|" * len(models))
    for t in names:
        cells = []
        for m in models:
            k, u = results[m][t]["known"], results[m][t]["unseen"]
            cells.append(f"{100 * k['right'] / k['n']:.0f}% / {100 * k['wrong'] / k['n']:.0f}% / "
                         f"{100 * (k['unknown'] + k['inconclusive']) / k['n']:.0f}%")
            cells.append(f"{100 * (u['unknown'] + u['inconclusive']) / u['n']:.0f}%")
        print(f"| {t} | " + " | ".join(cells) + " |")
    if a.json:
        Path(a.json).write_text(json.dumps({"models": models, "commit": _commit(), "known": len(known),
                                            "unseen": len(unseen), "results": results}, indent=1))
    if a.store_in:
        _store(models[a.store_in], results[a.store_in], a, len(known), len(unseen))


if __name__ == "__main__":
    main()
