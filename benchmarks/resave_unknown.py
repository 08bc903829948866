"""A re-save the JPEG test does not see: verdicts before and after the delivery-chain rule reads every JPEG.

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python benchmarks/resave_unknown.py KNOWN_DIR UNSEEN_DIR [--real DIR]

Development sets only. Side by side in one run, with the shipped model:

* "before": the delivery-chain rule (``core.evidence.gating.delivery_risk``) as it was, applied only to a
  JPEG that looks re-compressed or lies outside the training qualities;
* "after": as it is, its ``unknown`` half reading the model's measured row for every JPEG (the shipped
  file's ``delivery_chain_measured`` says ``any_jpeg``).

Sets: KNOWN_DIR / UNSEEN_DIR (folder per scanner) through every transformation of
``services.delivery_check.TRANSFORMS``; the authentic twins of the copy-move document forgeries (dev seeds 7
and 11: pages of the default bank's own scanners, re-saved at JPEG 75 / 85 / 95), with the re-compression
test's answer on each; the real pages (scanners the model never saw). Counts: attributed right / wrong /
inconclusive / unknown.
"""

from __future__ import annotations

import argparse
import collections
import os
import tempfile

import torch

import scanlab.services.analysis as analysis
from scanlab.core.evidence import gating
from scanlab.core.io.imaging import find_images, load_scan
from scanlab.core.synth.docforge import DOC_STYLES, doc_scan
from scanlab.core.synth.scanner import bank
from scanlab.services.analysis import AnalysisRequest, run_analysis
from scanlab.services.delivery_check import TRANSFORMS, transformed
from scanlab.services.models import get_model

AFTER = gating.delivery_risk


def before(facts, ti, measured, thresholds):
    """The rule before: nothing for a JPEG that is neither visibly re-compressed nor outside the training range."""
    if not facts or "formats" not in (ti or {}):
        return None
    shown = facts.get("recompressed") or gating.outside_training_jpegs(facts, ti)
    return AFTER(facts, ti, measured, thresholds) if shown else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("known")
    ap.add_argument("unseen")
    ap.add_argument("--real", default=None)
    a = ap.parse_args()
    torch.set_num_threads(1)
    lm = get_model(None)
    res: dict[tuple[str, str], collections.Counter] = collections.defaultdict(collections.Counter)

    def run(tag, path, scan, truth):
        for name, fn in (("before", before), ("after", AFTER)):
            analysis.delivery_risk = fn
            r = run_analysis(AnalysisRequest(path=path, with_map=False, device="cpu"), model=lm, scan=scan)
            v = r.verdict.verdict
            res[(tag, name)][("right" if r.label == truth else "wrong") if v == "attributed" else v] += 1

    for folder, kind in ((a.known, "known"), (a.unseen, "unseen")):
        for f in sorted(find_images(folder)):
            s = load_scan(f)
            for t in TRANSFORMS:
                run(f"{kind}, {t}", str(f), transformed(s, t), f.parent.name if kind == "known" else None)
    native = {d.name: d for d in bank("default", 10)}
    seen = collections.Counter()
    with tempfile.TemporaryDirectory() as tmp:
        for seed in (7, 11):
            for style in DOC_STYLES:
                for k in range(3):
                    fz = doc_scan(k, style, forge=False, seed=seed)
                    p = os.path.join(tmp, f"{seed}_{style}_{k}.jpg")
                    with open(p, "wb") as fh:
                        fh.write(fz.data)
                    s = load_scan(p)
                    if native[fz.record["host_scanner"]].format == "jpeg":  # a re-save: did the test see it?
                        seen["re-saved"] += 1
                        seen["detected"] += bool((s.info.jpeg or {}).get("recompressed"))
                    run(f"document pages of known scanners, JPEG {fz.record['jpeg_quality']}", p, s,
                        fz.record["host_scanner"])
    if a.real:
        for f in sorted(find_images(a.real)):
            run("real pages (unseen scanners)", str(f), load_scan(f), None)
    print("| scans | rule | right | wrong | inconclusive | unknown |\n|---|---|---:|---:|---:|---:|")
    for (tag, name), c in sorted(res.items(), key=lambda kv: (kv[0][0], kv[0][1] != "before")):
        print(f"| {tag} | {name} | {c['right']} | {c['wrong']} | {c['inconclusive']} | {c['unknown']} |")
    print(f"\nre-compression test on the document pages of JPEG-native scanners (each re-saved once): "
          f"{seen['detected']} of {seen['re-saved']} detected")


if __name__ == "__main__":
    main()
