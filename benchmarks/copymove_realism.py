"""Are the forged document pages the limit of the copy-move layer? Real pages against virtual ones, measured.

    nice -n 5 python benchmarks/copymove_realism.py --real-dir ../shared/data/real_scans [--seeds 7 11]
        [--paper-texture 0.03]

Dev seeds only (seed 0 is the benchmark's). For every real page and every authentic twin of
the dev forgeries (the same page as a forgery, without the copy), three measurements:

1. **Clipped paper**: the share of the page's pixels at full scale in every channel, and the
   share of its bright, smooth area (grey > 200 after a 3 px blur) that is clipped. A patch of
   clipped paper pasted over text is bit-identical to every other patch of clipped paper.
2. **Paper noise**: the median high-pass residual standard deviation of 32 px windows of blank,
   unclipped paper (``copymove_limits._paper_noise``); "-" when the page has no such paper.
3. **Authentic repeats**: every candidate of the shift test (:mod:`scanlab.core.copymove.dup`:
   block matches tested at their best integer displacement, ``q`` = SSD there over SSD one pixel
   off) is an authentic repeat on these pages, since nothing was copied. Their lowest ``q`` and
   1% quantile, for same-row displacements (``dy == 0``: a digit copied after its amount is one)
   and for candidates of >= 30 matched blocks whose ends share neither a row nor a column (a
   word or a stamp moved elsewhere). A copy is reported only when its ``q`` lies far below these.

``--paper-texture A`` multiplies the virtual page's reflectance by ``1 + A x n`` (``n``: unit
Gaussian noise blurred at 0.7 px, new for every page) before it is scanned: paper fibre and toner
grain of that relative amplitude, to see whether a noisier print changes measurement 3.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))
from copymove_limits import _paper_noise  # noqa: E402

import scanlab.core.synth.docforge as docforge  # noqa: E402
from scanlab.core.copymove import api, dup  # noqa: E402
from scanlab.core.copymove.fields import grey  # noqa: E402
from scanlab.core.io.imaging import find_images, load_scan  # noqa: E402
from scanlab.core.synth.dsp import gaussian_blur  # noqa: E402


def clipped(px: np.ndarray) -> tuple[float, float]:
    """Share of pixels at full scale, and share of the bright smooth area that is."""
    full = (px >= 255).all(axis=2)
    g = grey(px)
    bright = ndimage.uniform_filter(g, 3) > 200
    return float(full.mean()), float(full[bright].mean()) if bright.any() else float("nan")


def repeats(px: np.ndarray) -> dict[str, np.ndarray]:
    """``q`` of every tested shift-test candidate, split by kind of displacement."""
    g = grey(px)
    cands, f = dup.candidates(g, api.MIN_OFFSET)
    gy, gx = np.gradient(g)
    grad2 = gy * gy + gx * gx
    blur = ndimage.uniform_filter(g, f + 1) if f > 1 else ndimage.uniform_filter(g, 2)
    dup.test_candidates(g, grad2, blur, cands, f, api.MIN_OFFSET)
    tested = [c for c in cands if np.isfinite(c.q)]
    return {"same row": np.array([c.q for c in tested if c.dy == 0]),
            "large, off rows and columns": np.array([c.q for c in tested if api._large_generic(c)])}


def _fmt(a: np.ndarray) -> str:
    return "-" if a.size == 0 else f"{a.size} / {a.min():.4f} / {np.quantile(a, 0.01):.4f}"


def row(name: str, px: np.ndarray) -> str:
    full, bright = clipped(px)
    n, sd = _paper_noise(px)
    r = repeats(px)
    return (f"| {name} | {full:.1%} | {bright:.1%} | {f'{sd:.2f} ({n})' if n else '-'} | "
            f"{_fmt(r['same row'])} | {_fmt(r['large, off rows and columns'])} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--real-dir", type=Path)
    ap.add_argument("--seeds", type=int, nargs="+", default=[7, 11])
    ap.add_argument("--paper-texture", type=float, default=0.0)
    a = ap.parse_args()
    if 0 in a.seeds:
        raise SystemExit("seed 0 is the benchmark's: measure on dev seeds only")
    if a.paper_texture > 0:
        plain = docforge._page

        def textured(size, rng):
            refl, layout, top = plain(size, rng)
            n = gaussian_blur(rng.standard_normal(refl.shape[:2]).astype(np.float32), 0.7, 0.7)
            refl = np.clip(refl * (1.0 + a.paper_texture * (n / n.std()))[:, :, None], 0.0, 1.0)
            return refl, layout, top

        docforge._page = textured
    print("| page | pixels clipped | bright smooth area clipped | paper residual sd, 8-bit (windows) "
          "| same-row repeats: n / lowest q / 1% q | large repeats off rows and columns: n / lowest q / 1% q |")
    print("|---|---|---|---|---|---|")
    if a.real_dir is not None:
        for p in sorted(find_images(a.real_dir)):
            print(row(f"real {p.name}", load_scan(p).pixels), flush=True)
    for seed in a.seeds:
        for style in docforge.DOC_STYLES:
            for k in range(3):
                f = docforge.doc_scan(k, style, forge=False, seed=seed)
                tex = f", texture {a.paper_texture:g}" if a.paper_texture else ""
                print(row(f"virtual twin seed {seed} {style} k {k} (JPEG {f.record['jpeg_quality']}{tex})", f.pixels),
                      flush=True)


if __name__ == "__main__":
    main()
