"""Copy-move dev set: per-page results on the tuning seeds (never the benchmark's seed 0).

    nice -n 5 python benchmarks/copymove_dev.py [--seeds 7 11 13 17] [--n 3] [--no-geometric]
                                                [--only-geo] [--no-jpeg] [--quality Q]
                                                [--real-dir DIR]

For every seed, style and k < ``--n``: the forged page (pairs, found by which stage,
whether a reported pixel lies on the copy, pixel AUC, F1, the fitted rotation / scale of
a geometric pair against the truth) and its authentic twin (pairs), then the table of
pages with a hit / pixel AUC / F1 per style, shifted vs rotated-or-scaled, all, and the
false alarms (twins with a pair, real pages with a pair). ``--no-geometric`` switches
the geometric stage off (the "before" column); ``--only-geo`` runs only the rotated or
scaled pages and their twins (quick look). The file's JPEG quality is passed to the
detector as the service passes it (``jpeg_quality``: the JPEG-consistency test, .jpegid);
``--no-jpeg`` withholds it (the "before" column); ``--quality Q`` runs only the pages saved
at Q.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_copymove import REAL, auc, f1  # noqa: E402

from scanlab.core.copymove import detect_copymove  # noqa: E402
from scanlab.core.io.imaging import find_images, load_scan  # noqa: E402
from scanlab.core.synth.docforge import DOC_STYLES, doc_scan  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[7, 11, 13, 17])
    ap.add_argument("--n", type=int, default=3)
    ap.add_argument("--no-geometric", action="store_true")
    ap.add_argument("--only-geo", action="store_true")
    ap.add_argument("--no-jpeg", action="store_true")
    ap.add_argument("--quality", type=int, default=None)
    ap.add_argument("--real-dir", type=Path, default=REAL)
    a = ap.parse_args()
    if 0 in a.seeds:
        ap.error("seed 0 is the benchmark set: score it with bench_copymove.py, once")
    geometric = not a.no_geometric
    groups: dict[str, list] = {}
    twins, times = [], []
    for seed in a.seeds:
        for style in DOC_STYLES:
            for k in range(a.n):
                f = doc_scan(k, style, seed=seed)
                rec = f.record
                is_geo = bool(rec["rotation_deg"] or rec["scale"] != 1.0)
                if (a.only_geo and not is_geo) or (a.quality and rec["jpeg_quality"] != a.quality):
                    continue
                jq = None if a.no_jpeg else rec["jpeg_quality"]
                t0 = time.perf_counter()
                r = detect_copymove(f.pixels, geometric=geometric, jpeg_quality=jq)
                times.append(time.perf_counter() - t0)
                truth = f.target | f.source
                hit = bool(((np.nan_to_num(r.score) >= 0.5) & truth).any())
                for key in (style, "geo" if is_geo else "shift", "all"):
                    groups.setdefault(key, []).append((r.score, truth, hit))
                ra = detect_copymove(doc_scan(k, style, seed=seed, forge=False).pixels, geometric=geometric,
                                     jpeg_quality=jq)
                twins.append(len(ra.pairs))
                fit = ""
                for p in r.pairs:
                    j = p.to_json()
                    fit += f" [{j['found_by']} rot {j['rotation_deg']:+.2f} scale {j['scale']:.3f} q {j['q']:.5f}/{j['q_null']:.5f}]"
                truth_geo = f" truth rot {rec['rotation_deg']:+.2f} scale {rec['scale']:.3f}" if is_geo else ""
                print(f"seed {seed:2d} {style:6s} k={k} q{rec['jpeg_quality']} {'geo  ' if is_geo else 'shift'} "
                      f"pairs={len(r.pairs)} hit={int(hit)} auc={auc(r.score, truth):.3f} f1={f1(r.score, truth):.3f} "
                      f"| twin pairs={len(ra.pairs)} t={times[-1]:.2f}s{truth_geo}{fit}", flush=True)
    print("\n| dev set | pages | pages with a hit | pixel AUC | F1 |\n|---|---|---|---|---|")
    for key in (*DOC_STYLES, "shift", "geo", "all"):
        if key not in groups:
            continue
        s = np.concatenate([x.ravel() for x, _, _ in groups[key]])
        t = np.concatenate([y.ravel() for _, y, _ in groups[key]])
        print(f"| {key} | {len(groups[key])} | {sum(h for _, _, h in groups[key])} | {auc(s, t):.3f} | {f1(s, t):.3f} |")
    print(f"\nauthentic twins with a pair: {sum(1 for n in twins if n)} of {len(twins)}; "
          f"mean time per forged page {np.mean(times):.2f}s")
    for p in find_images(a.real_dir) if a.real_dir.is_dir() else []:
        s = load_scan(p)
        t0 = time.perf_counter()
        jq = None if a.no_jpeg or not s.info.jpeg or s.info.jpeg.get("tables") != "standard" else s.info.jpeg.get("quality")
        r = detect_copymove(s.pixels, geometric=geometric, jpeg_quality=jq)
        print(f"real {p.name} (jpeg_quality {jq}): pairs={len(r.pairs)} t={time.perf_counter() - t0:.1f}s", flush=True)


if __name__ == "__main__":
    main()
