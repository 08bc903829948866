"""Detection counts of the exact upsampling test (scanlab.core.io.resampling) on a set of scans.

Every scan is run through the delivery chain's transformations (services.delivery_check:
as scanned, JPEG q90/q75, bicubic x0.8 and x1.25 saved as PNG) and a few more that the
delivery check does not make: x1.25 with Pillow's BILINEAR and LANCZOS, x1.6 bicubic,
and x1.25 bicubic saved as JPEG q90 afterwards. Per transformation: how often the test
fired, with which size and kernel, the residual against the rounding floor, the restore
error (RMS against the scan before enlargement, where it fired with the right size) and
the seconds it took. Nothing is analysed by a model here.

    python benchmarks/bench_upsampling.py DIR_OR_FILE... [--json OUT]
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from scanlab.core.io.imaging import as_uint8, decode_bytes, find_images, load_scan
from scanlab.core.io.resampling import detect_upsampling
from scanlab.services.delivery_check import TRANSFORMS, transformed

_FILTERS = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR,
            "lanczos": Image.Resampling.LANCZOS}
EXTRA = {  # name -> (factor, filter, then JPEG quality or None)
    "x1.25 bilinear": (1.25, "bilinear", None),
    "x1.25 lanczos": (1.25, "lanczos", None),
    "x1.6 bicubic": (1.6, "bicubic", None),
    "x1.25 bicubic then JPEG q90": (1.25, "bicubic", 90),
}


def _extra(px: np.ndarray, name: str):
    f, flt, q = EXTRA[name]
    im = Image.fromarray(as_uint8(px), "RGB")
    im = im.resize((round(im.width * f), round(im.height * f)), _FILTERS[flt])
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=q) if q else im.save(buf, "PNG")
    return decode_bytes(buf.getvalue(), f"x.{'jpg' if q else 'png'}")


def main() -> None:
    """Print per-transformation counts; optionally write every record as JSON."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="+")
    ap.add_argument("--json", default=None)
    ap.add_argument("--as-analysed", action="store_true",
                    help="JPEG files are not searched, as in the analysis (default: search every file)")
    ap.add_argument("--transforms", default=",".join(list(TRANSFORMS) + list(EXTRA)))
    a = ap.parse_args()
    files: list[Path] = []
    for p in map(Path, a.inputs):
        files += find_images(p) if p.is_dir() else [p]
    names = [t for t in a.transforms.split(",") if t]
    records = []
    for f in files:
        scan = load_scan(f)
        for t in names:
            s_t = transformed(scan, t) if t in TRANSFORMS else _extra(scan.pixels, t)
            px = s_t.pixels
            t0 = time.perf_counter()
            up, s = detect_upsampling(px, lossy=s_t.info.format == "JPEG" if a.as_analysed else False)
            sec = time.perf_counter() - t0
            rec = {"file": str(f), "transformation": t, "shape": list(px.shape[:2]), "seconds": round(sec, 3),
                   **{k: v for k, v in s.to_json().items() if k != "seconds"}}
            if up is not None and up.size_before == scan.shape:
                ref = as_uint8(scan.pixels).astype(np.float64)
                rec["restore_rms"] = round(float(np.sqrt(np.mean((np.clip(np.rint(up.restored), 0, 255) - ref) ** 2))), 3)
            records.append(rec)
            print(f"{f.name:28s} {t:24s} {'FIRED' if s.fired else '-':5s} {s.candidate} {s.kernel} "
                  f"margin {s.margin} rsd {s.residual_sd} floor {s.floor_sd} {sec:.2f}s {rec.get('restore_rms', '')} "
                  f"| {s.reason}", file=sys.stderr, flush=True)
    print(f"\n{len(files)} scans\n\n| transformation | fired | of | right size | restore RMS (median) | "
          "residual / floor (median, fired) | seconds (median / max) |\n|---|---:|---:|---:|---:|---:|---:|")
    for t in names:
        rs = [r for r in records if r["transformation"] == t]
        fired = [r for r in rs if r["fired"]]
        right = [r for r in fired if "restore_rms" in r]
        med = lambda v: f"{np.median(v):.2f}" if v else "-"  # noqa: E731
        print(f"| {t} | {len(fired)} | {len(rs)} | {len(right)} | {med([r['restore_rms'] for r in right])} | "
              f"{med([r['residual_sd'] / r['floor_sd'] for r in fired])} | "
              f"{med([r['seconds'] for r in rs])} / {max(r['seconds'] for r in rs):.2f} |")
    if a.json:
        Path(a.json).write_text(json.dumps(records, indent=1))


if __name__ == "__main__":
    main()
