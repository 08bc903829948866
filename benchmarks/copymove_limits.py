"""Why digit and blank-paper copies are not found: what separates them from authentic content, measured.

    nice -n 5 python benchmarks/copymove_limits.py [--seeds 7 11 13 17] [--real-dir DIR]

Dev seeds only (seed 0 is the benchmark's). Three measurements:

1. **Digit copies** (copied right after the amount, on the same row), unrotated pages: ``q``
   of the copy over its own box (the 64 strongest-gradient pixels of the true target box,
   tested at the true displacement) against the lowest ``q`` of the page's authentic
   same-row repeats, each candidate tested tile by tile (16 px tiles, stride 8, 64 pixels,
   the lowest tile kept, as a glyph-sized test would).
2. **Blank-paper copies**: the correlation of the two ends' high-pass residuals (grey minus
   its Gaussian blur, sigma 1) at the true displacement, against the same box at 300 random
   displacements (their standard deviation).
3. **Paper noise**: the median high-pass residual standard deviation of 32 px windows of blank,
   unclipped paper, on the virtual document pages and on the real pages that have such paper.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_copymove import REAL  # noqa: E402

from scanlab.core.copymove import api, dup  # noqa: E402
from scanlab.core.copymove.fields import grey  # noqa: E402
from scanlab.core.io.imaging import find_images, load_scan  # noqa: E402
from scanlab.core.synth.docforge import doc_scan  # noqa: E402


def _q(g, grad2, box, dy, dx, n):
    py, px = dup.edge_samples(g, grad2, box, n)
    t = g[py, px]
    d = dup._ssd(g, py, px, t, np.array([dy]), np.array([dx]))[0]
    nb = dup._ssd(g, py, px, t, dy + dup._N8[:, 0], dx + dup._N8[:, 1])
    g2 = max(float(grad2[py, px].mean()), 1e-6)
    return d / nb.min() if np.isfinite(d) and nb.min() >= dup.MIN_STRUCTURE * g2 and g2 >= 50 else np.inf


def _tile_q(g, grad2, c):
    h, w = g.shape
    y0, x0, y1, x1 = c.box[0], c.box[1], min(c.box[2], h), min(c.box[3], w)
    return min((_q(g, grad2, (ty, tx, min(ty + 16, y1), min(tx + 16, x1)), c.dy, c.dx, 64)
                for ty in range(y0, max(y0 + 1, y1 - 15), 8) for tx in range(x0, max(x0 + 1, x1 - 15), 8)), default=np.inf)


def _residual(g):
    return g - ndimage.gaussian_filter(g, 1.0)


def _paper_noise(px):
    g = grey(px).astype(np.float64)
    r, b = _residual(g), ndimage.gaussian_filter(g, 3.0)
    out = [r[y + 2 : y + 30, x + 2 : x + 30].std() for y in range(0, g.shape[0] - 32, 32) for x in range(0, g.shape[1] - 32, 32)
           if np.ptp(b[y : y + 32, x : x + 32]) < 3 and g[y : y + 32, x : x + 32].mean() > 150 and g[y : y + 32, x : x + 32].max() < 254.5]
    return len(out), float(np.median(out)) if out else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[7, 11, 13, 17])
    ap.add_argument("--real-dir", type=Path, default=REAL)
    a = ap.parse_args()
    if 0 in a.seeds:
        ap.error("seed 0 is the benchmark set")
    print("| digit page | copy q (own box) | lowest tile q of authentic same-row repeats |\n|---|---|---|")
    for seed in a.seeds:
        for k in range(3):
            f = doc_scan(k, "digit", seed=seed)
            r = f.record
            if r["rotation_deg"] or r["scale"] != 1.0:
                continue
            g = grey(f.pixels)
            gy, gx = np.gradient(g)
            grad2 = gy * gy + gx * gx
            sb, tb = r["source_box"], r["target_box"]
            dy, dx = sb[0] - tb[0], sb[1] - tb[1]
            q_copy = _q(g, grad2, (tb[0], tb[1], tb[0] + tb[2], tb[1] + tb[3]), dy, dx, 64)
            au = doc_scan(k, "digit", seed=seed, forge=False)
            ga = grey(au.pixels)
            gy, gx = np.gradient(ga)
            g2a = gy * gy + gx * gx
            cands, fac = dup.candidates(ga, api.MIN_OFFSET)
            dup.test_candidates(ga, g2a, ndimage.uniform_filter(ga, 2), cands, fac, api.MIN_OFFSET)
            same_row = [_tile_q(ga, g2a, c) for c in cands if np.isfinite(c.q) and c.dy == 0]
            print(f"| seed {seed} k {k} (JPEG {r['jpeg_quality']}) | {q_copy:.4f} | {min(same_row, default=np.inf):.4f} (of {len(same_row)}, authentic twin) |")
    print("\n| blank page | residual correlation at the copy | sd at 300 random displacements |\n|---|---|---|")
    for seed in a.seeds:
        for k in range(3):
            f = doc_scan(k, "blank", seed=seed)
            r = f.record
            res = _residual(grey(f.pixels).astype(np.float64))
            sb, tb = r["source_box"], r["target_box"]
            t = res[tb[0] : tb[0] + tb[2], tb[1] : tb[1] + tb[3]]
            t = t - t.mean()

            def corr(y, x, t=t, h=tb[2], w=tb[3], res=res):
                s = res[y : y + h, x : x + w]
                s = s - s.mean()
                return float((t * s).sum() / np.sqrt((t * t).sum() * (s * s).sum() + 1e-12))

            rng = np.random.default_rng(0)
            null = [corr(int(rng.integers(0, res.shape[0] - tb[2])), int(rng.integers(0, res.shape[1] - tb[3]))) for _ in range(300)]
            print(f"| seed {seed} k {k} (JPEG {r['jpeg_quality']}, {tb[2]}x{tb[3]} px) | {corr(sb[0], sb[1]):.2f} | {np.std(null):.3f} |")
    print("\n| page | blank paper windows | median residual sd (8-bit levels) |\n|---|---|---|")
    for seed in a.seeds[:2]:
        for k in range(3):
            f = doc_scan(k, "blank", seed=seed, forge=False)
            n, sd = _paper_noise(f.pixels)
            print(f"| virtual document, seed {seed} k {k} (JPEG {f.record['jpeg_quality']}) | {n} | {sd:.2f} |")
    if a.real_dir.is_dir():
        for p in find_images(a.real_dir):
            n, sd = _paper_noise(load_scan(p).pixels)
            print(f"| real {p.name} | {n} | {sd:.2f} |")


if __name__ == "__main__":
    main()
