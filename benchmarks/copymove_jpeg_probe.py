"""Copy-move at JPEG 75: can the page's own JPEG save tell a copy from a repeated glyph? (dev seeds only)

    nice -n 5 python benchmarks/copymove_jpeg_probe.py [--seeds 7 11 13 17] [--k 0] [--iters 30]

A probe, not a detector (BENCHMARKS.md, copy-move, "JPEG-aware identity test: tried, not
kept"). For every shifted (not rotated or scaled) digit / word / stamp forgery ``k`` of the
dev seeds (k = 0: JPEG 75) it runs the layer's candidate search and shift test
(:mod:`scanlab.core.copymove.dup`) and, for the candidates at the copy's displacement
("copy") and all others ("null": repeated printed glyphs), two statistics that use the
file's quantiser (the page's own quality, as the service would read it from the file):

* **prediction** ``qj``: the decoded source region, cut on the target's 8x8 grid, saved
  as JPEG with the file's quality (4:4:4) and decoded, against the decoded target, over
  content blocks (8x8 std > 8) fully inside the candidate: mean squared difference at the
  candidate's shift over the smallest of the 8 shifts one pixel off; ``rr`` the same at
  the shift over the raw (unpredicted) source's. A copy would give small ``qj`` and ``rr``
  if re-quantisation absorbed the source's own error.
* **consistency** (POCS): is there one pre-save region ``x`` whose DCT coefficients on
  the target's grid fall in the target's quantisation cells *and* on the source's grid
  (the same pixels shifted by ``d``) in the source's cells? 30 alternating projections
  from the target's pixels (luminance from the decoded RGB, cells not widened); per 8x8
  content block of the target grid the remaining squared violation; a block is
  consistent below 0.5. A copy is consistent everywhere (it *is* one region saved
  twice); the question is whether repeated glyphs are not. Only candidates with
  ``q <= 0.3`` and >= 8 votes, off the (8k, 8k) displacements, are examined.

Per page it prints the copy's best candidate and the null's extremes under each statistic.
"""

from __future__ import annotations

import argparse
import io
import time

import numpy as np
from PIL import Image
from scipy import ndimage

from scanlab.core.copymove import api, dup
from scanlab.core.copymove.fields import grey
from scanlab.core.copymove.jpegid import _coefs, _grid, _project
from scanlab.core.io.jpegfacts import ijg_table
from scanlab.core.synth.docforge import doc_scan

N9 = [(0, 0), *[(int(a), int(b)) for a, b in dup._N8]]
CONTENT_STD = 8.0  # 8-bit levels: an 8x8 block with less is paper
BLOCK_OK = 0.5  # squared coefficient units: a block whose violation stays below this is consistent


def _jpeg(a: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(a), "RGB").save(buf, "JPEG", quality=quality, subsampling=0)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")).astype(np.float32)


def prediction(img: np.ndarray, c: dup.DupCandidate, quality: int) -> tuple[float, float] | None:
    """(qj, rr) of a candidate (module docstring), None without a full content block."""
    h, w = img.shape[:2]
    y0, x0, y1, x1 = c.box
    by0, bx0 = -(-max(y0, 1 - c.dy) // 8) * 8, -(-max(x0, 1 - c.dx) // 8) * 8
    by1, bx1 = min(y1, h, h - c.dy - 1) // 8 * 8, min(x1, w, w - c.dx - 1) // 8 * 8
    if by1 - by0 < 8 or bx1 - bx0 < 8:
        return None
    t = img[by0:by1, bx0:bx1].astype(np.float32)
    nby, nbx = (by1 - by0) // 8, (bx1 - bx0) // 8
    cont = t.mean(2).reshape(nby, 8, nbx, 8).std(axis=(1, 3)) > CONTENT_STD
    if not cont.any():
        return None
    m = np.repeat(np.repeat(cont, 8, 0), 8, 1)
    ssd = []
    for ny, nx in N9:
        s = img[by0 + c.dy + ny : by1 + c.dy + ny, bx0 + c.dx + nx : bx1 + c.dx + nx]
        ssd.append(float(((_jpeg(s, quality) - t) ** 2).mean(2)[m].mean()))
        if (ny, nx) == (0, 0):
            raw = float(((s.astype(np.float32) - t) ** 2).mean(2)[m].mean())
    return ssd[0] / max(min(ssd[1:]), 1e-9), ssd[0] / max(raw, 1e-9)


def consistency(y: np.ndarray, c: dup.DupCandidate, qt: np.ndarray, iters: int) -> tuple[int, int] | None:
    """(content blocks, consistent content blocks) of a candidate (module docstring)."""
    h, w = y.shape
    y0, x0, y1, x1 = c.box
    y0, x0 = max(y0, 0, -c.dy), max(x0, 0, -c.dx)
    y1, x1 = min(y1, h, h - c.dy), min(x1, w, w - c.dx)
    if y1 - y0 < 16 or x1 - x0 < 16:
        return None
    t = y[y0:y1, x0:x1]
    s = y[y0 + c.dy : y1 + c.dy, x0 + c.dx : x1 + c.dx]
    ga = _grid(t.shape, -y0 % 8, -x0 % 8)
    gb = _grid(t.shape, -(y0 + c.dy) % 8, -(x0 + c.dx) % 8)
    if min(ga[2], ga[3], gb[2], gb[3]) < 1:
        return None
    oy, ox, ny, nx = ga
    cont = t[oy : oy + ny * 8, ox : ox + nx * 8].reshape(ny, 8, nx, 8).std(axis=(1, 3)) > CONTENT_STD
    if not cont.any():
        return None
    q = qt.reshape(1, 8, 1, 8)
    ka, kb = np.round(_coefs(t, ga) / q), np.round(_coefs(s, gb) / q)
    x = t.astype(np.float64)
    for _ in range(iters):
        _project(x, ga, (ka - 0.5) * q, (ka + 0.5) * q)
        _project(x, gb, (kb - 0.5) * q, (kb + 0.5) * q)
    v = _project(x, ga, (ka - 0.5) * q, (ka + 0.5) * q)
    return int(cont.sum()), int((v[cont] <= BLOCK_OK).sum())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[7, 11, 13, 17])
    ap.add_argument("--k", type=int, nargs="+", default=[0])
    ap.add_argument("--iters", type=int, default=30)
    a = ap.parse_args()
    if 0 in a.seeds:
        ap.error("seed 0 is the benchmark set: never probed")
    for seed in a.seeds:
        for style in ("digit", "word", "stamp"):
            for k in a.k:
                f = doc_scan(k, style, seed=seed)
                rec = f.record
                if rec["rotation_deg"] or rec["scale"] != 1.0:
                    print(f"seed {seed:2d} {style:5s} k={k}: rotated/scaled copy, skipped")
                    continue
                quality = int(rec["jpeg_quality"])  # what the file's tables say (jpegfacts), known here
                qt = ijg_table(quality).reshape(8, 8).astype(np.float64)
                img = f.pixels
                g = grey(img)
                lum = img.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
                cands, fct = dup.candidates(g, api.MIN_OFFSET)
                gy, gx = np.gradient(g)
                grad2 = gy * gy + gx * gx
                blur = ndimage.uniform_filter(g, fct + 1) if fct > 1 else ndimage.uniform_filter(g, 2)
                dup.test_candidates(g, grad2, blur, cands, fct, api.MIN_OFFSET)
                sb, tb = rec["source_box"], rec["target_box"]
                td = (sb[0] - tb[0], sb[1] - tb[1])
                t0 = time.perf_counter()
                rows = []
                for c in cands:
                    if not np.isfinite(c.q) or c.q > 0.5:
                        continue
                    is_copy = max(abs(c.dy - td[0]), abs(c.dx - td[1])) <= 1 or max(abs(c.dy + td[0]), abs(c.dx + td[1])) <= 1
                    pr = prediction(img, c, quality)
                    cs = None
                    if c.q <= 0.3 and c.votes >= 8 and (c.dy % 8 or c.dx % 8):
                        cs = consistency(lum, c, qt, a.iters)
                    rows.append((is_copy, c, pr, cs))
                dt = time.perf_counter() - t0
                cp = [r for r in rows if r[0]]
                nl = [r for r in rows if not r[0]]
                print(f"seed {seed:2d} {style:5s} k={k} q{quality} d={td} candidates {len(rows)} (q <= 0.5) {dt:.1f}s")
                best = max(cp, key=lambda r: r[1].votes, default=None)
                if best is None:
                    print("   copy: no candidate at the copy's displacement")
                else:
                    c = best[1]
                    pr = "qj {:.3f} rr {:.3f}".format(*best[2]) if best[2] else "qj -"
                    cs = f"consistent {best[3][1]}/{best[3][0]} blocks" if best[3] else "consistency -"
                    print(f"   copy (most votes, {c.votes}): q {c.q:.4f}  {pr}  {cs}")
                nq = sorted(r[1].q for r in nl)[:3]
                nj = sorted(r[2][0] for r in nl if r[2])[:3]
                full = sorted((r[3][1] for r in nl if r[3] and r[3][1] == r[3][0]), reverse=True)[:3]
                print(f"   null: lowest q {', '.join(f'{v:.4f}' for v in nq)};  lowest qj {', '.join(f'{v:.3f}' for v in nj)};"
                      f"  fully consistent candidates {sum(1 for r in nl if r[3] and r[3][1] == r[3][0])}"
                      f" of {sum(1 for r in nl if r[3])} examined, largest {full} blocks", flush=True)


if __name__ == "__main__":
    main()
