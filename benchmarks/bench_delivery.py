"""Verdicts through the delivery chain: fresh scans of known scanners and unseen scanners, re-saved.

Issue 17 item 3. Each scan is analysed as scanned and after one whole-scan
transformation a questioned file really goes through, encoded as a user would receive
it, decoded from those bytes and analysed through ``services.analysis.run_analysis``
(decoding, JPEG facts, gating, vote, verdict: the path of ``scanlab classify``). The
transformations, the counting and the stored block are ``services.delivery_check``'s,
the same that ``scanlab train`` uses on every model's test split:

* ``jpeg-q90``, ``jpeg-q75``: decoded and saved again as JPEG (Pillow, 4:2:0);
* ``resample-0.8``, ``resample-1.25``: resized (bicubic) and saved as PNG.

Per model and transformation: known scans attributed to the right scanner, to a wrong
one, ``unknown``, ``inconclusive``; unseen-scanner scans rejected (``unknown`` or
``inconclusive``). Any number of models run side by side on the same files:

    python benchmarks/bench_delivery.py --models shipped=trained_models/scanlab-default.safetensors \\
        new=/tmp/new.safetensors --seed 2024 --unseen-bank elsewhere --per-scanner 2

By default the known scans are fresh scans of the default bank's 10 scanners (the
shipped model's; content seed ``--seed``, never a training seed) and the unseen scans
come from bank ``--unseen-bank``; ``--known DIR`` / ``--unseen DIR`` take folders
instead (one sub-folder per scanner, named as the model's classes; a lab model).
``--store-in NAME`` writes the measured figures into that model file's manifest
(``delivery_chain_measured``, docs/formats.md), the figures the gating warning quotes;
weights and every other key stay as they are. The verdicts counted are those before the
delivery-chain verdict rule (the rule reads the stored figures); ``--with-rule`` counts
them as the analyst reads them, with the model's stored figures applied (not storable).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from scanlab.core.io.imaging import find_images
from scanlab.core.modelfile.store import load_model, save_model
from scanlab.core.synth.bank import write_bank
from scanlab.services.delivery_check import (
    KEY,
    TRANSFORMS,
    Measurement,
    measure,
    measured_block,
    source_commit,
)


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


def _store(path: str, m: Measurement, a: argparse.Namespace) -> None:
    """Write the figures into the model file's manifest (``delivery_chain_measured``); weights unchanged."""
    if set(m.tallies) != set(TRANSFORMS):
        sys.exit("--store-in needs every transformation (leave --transforms at its default)")
    lm = load_model(path)
    man = {k: v for k, v in lm.manifest.items() if not k.startswith("_")}
    man[KEY] = measured_block(
        m, benchmark="benchmarks/bench_delivery.py",
        known_set=a.known or f"default bank, content seed {a.seed}, {a.per_scanner} per scanner",
        unseen_set=a.unseen or f"bank {a.unseen_bank!r}, seed {a.seed}, {a.per_scanner} per scanner")
    save_model(lm.net, man, path, dict(lm.extras))
    print(f"stored {KEY} in {path}", file=sys.stderr)


def _progress(done: int, total: int) -> None:
    if done == total or done % 20 == 0:
        print(f"  {done}/{total} analyses", file=sys.stderr, flush=True)


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
    ap.add_argument("--with-rule", action="store_true",
                    help="verdicts after the delivery-chain rule (the model's stored figures apply); not storable")
    a = ap.parse_args()
    if a.with_rule and a.store_in:
        sys.exit("--store-in stores verdicts before the rule (the rule reads them): drop --with-rule")
    torch.set_num_threads(a.threads)
    models = dict(m.split("=", 1) for m in a.models)
    names = [t for t in a.transforms.split(",") if t]
    work = Path(a.work)
    t0 = time.time()
    known, unseen = _sets(a, work)
    measured: dict[str, Measurement] = {}
    results: dict[str, dict] = {}
    for mname, path in models.items():
        print(f"{mname}: {path}", file=sys.stderr, flush=True)
        measured[mname] = measure(load_model(path), [(f, f.parent.name) for f in known], unseen, names,
                                  progress=_progress, with_rule=a.with_rule)
        results[mname] = {t: {side: tally.to_json() for side, tally in sides.items()}
                          for t, sides in measured[mname].tallies.items()}
        for t in names:
            k, u = results[mname][t]["known"], results[mname][t]["unseen"]
            print(f"{mname:>14} {t:>14}: known right {k['right']}/{k['n']} wrong {k['wrong']} unknown "
                  f"{k['unknown']} inconclusive {k['inconclusive']} | unseen rejected "
                  f"{u['unknown'] + u['inconclusive']}/{u['n']}", file=sys.stderr, flush=True)
        for miss in measured[mname].not_analysed:
            print(f"  not analysed: {miss['path']} ({miss['transformation']}): {miss['reason']}", file=sys.stderr)
    print(f"\n{len(known)} known scans, {len(unseen)} unseen-scanner scans; {time.time() - t0:.0f} s\n")
    print("| transformation | " + " | ".join(f"{m}: known right / wrong / unknown+inconcl. | {m}: unseen rejected"
                                             for m in models) + " |")
    print("|---|" + "---:|---:|" * len(models))
    for t in names:
        cells = []
        for m in models:
            k, u = results[m][t]["known"], results[m][t]["unseen"]
            kn, un = max(1, k["n"]), max(1, u["n"])
            cells.append(f"{100 * k['right'] / kn:.0f}% / {100 * k['wrong'] / kn:.0f}% / "
                         f"{100 * (k['unknown'] + k['inconclusive']) / kn:.0f}%")
            cells.append(f"{100 * (u['unknown'] + u['inconclusive']) / un:.0f}%")
        print(f"| {t} | " + " | ".join(cells) + " |")
    if a.json:
        Path(a.json).write_text(json.dumps({"models": models, "commit": source_commit(), "known": len(known),
                                            "unseen": len(unseen), "results": results}, indent=1))
    if a.store_in:
        _store(models[a.store_in], measured[a.store_in], a)


if __name__ == "__main__":
    main()
