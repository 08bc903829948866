"""JPEG facts (scanlab.core.io.jpegfacts): quality estimate, subsampling and the re-compression test.

Content: scans of the virtual scanner bank before encoding (never JPEG-compressed), image
indices 100.. (the threshold was chosen on indices 0..15, purpose "jpegfacts"; these are
held out). Each is saved by Pillow as a single JPEG (q90, q75) and re-compressed
(decoded, saved again: q75 -> q90, q60 -> q90, q90 -> q75, q95 -> q90 with 4:4:4 then 4:2:0).
Prints, per case: how often ``recompressed`` is True (the detection rate for double
cases, the false-alarm rate for single ones), how often it could not decide (None), the
quality estimate's exact-hit rate and the subsampling read. Then the time of
``jpeg_facts`` against ``load_scan`` of the same file, side by side.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/bench_jpegfacts.py [--n 40] [--size 512]
"""

from __future__ import annotations

import argparse
import io
import time

import numpy as np
from PIL import Image

from scanlab.core.io.imaging import decode_bytes
from scanlab.core.io.jpegfacts import THRESHOLD, jpeg_facts
from scanlab.core.synth.bank import synth_scan
from scanlab.core.synth.scanner import design

SUB = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}
# name -> (chain of (quality, subsampling)), the last one is the file's
CASES = {
    "single q90": [(90, "4:2:0")],
    "single q75": [(75, "4:2:0")],
    "single q95 4:4:4": [(95, "4:4:4")],
    "double q75->q90": [(75, "4:2:0"), (90, "4:2:0")],
    "double q60->q90": [(60, "4:2:0"), (90, "4:2:0")],
    "double q95->q90 (4:4:4->4:2:0)": [(95, "4:4:4"), (90, "4:2:0")],
    "double q90->q75": [(90, "4:2:0"), (75, "4:2:0")],
}


def encode(px: np.ndarray, chain: list[tuple[int, str]]) -> bytes:
    data = b""
    for q, sub in chain:
        b = io.BytesIO()
        Image.fromarray(px).save(b, "JPEG", quality=q, subsampling=SUB[sub])
        data = b.getvalue()
        px = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    return data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=40, help="scans per case")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--check-decoder", action="store_true",
                    help="also run the test on libjpeg's luminance (second decode) and print its rate")
    a = ap.parse_args()
    stats = {k: {"yes": 0, "none": 0, "q_ok": 0, "sub_ok": 0, "scores": []} for k in CASES}
    for i in range(a.n):
        px = synth_scan(design("default", i % 10), 100 + i, size=a.size, purpose="jpegfacts").pixels
        for name, chain in CASES.items():
            data = encode(px, chain)
            f = decode_bytes(data, "x.jpg").info.jpeg  # the path every analysis takes
            if a.check_decoder:  # the same test on libjpeg's own luminance (a second decode)
                f2 = jpeg_facts(data)
                s_alt = stats[name].setdefault("alt_yes", 0)
                stats[name]["alt_yes"] = s_alt + (f2["recompressed"] is True)
            s = stats[name]
            s["yes"] += f["recompressed"] is True
            s["none"] += f["recompressed"] is None
            s["q_ok"] += f["quality"] == chain[-1][0]
            s["sub_ok"] += f["subsampling"] == chain[-1][1]
            if f["recompression_score"] is not None:
                s["scores"].append(f["recompression_score"])
    print(f"{a.n} scans of {a.size}x{a.size} per case; threshold {THRESHOLD}")
    print(f"{'case':34s} {'recompressed':>12s} {'undecided':>9s} {'quality exact':>13s} {'subsampling':>11s} "
          f"{'score median [min, max]':>24s}")
    for name, s in stats.items():
        sc = np.array(s["scores"]) if s["scores"] else np.array([np.nan])
        print(f"{name:34s} {s['yes']:>5d}/{a.n:<6d} {s['none']:>9d} {s['q_ok']:>7d}/{a.n:<5d} {s['sub_ok']:>5d}/{a.n:<5d} "
              f"{np.median(sc):>10.3f} [{sc.min():.3f}, {sc.max():.3f}]"
              + (f"   (libjpeg luminance: {s['alt_yes']}/{a.n})" if a.check_decoder else ""))
    # cost, side by side: decoding a 3000x2000 JPEG with and without the facts
    px = synth_scan(design("default", 0), 999, size=(2000, 3000), purpose="jpegfacts").pixels
    data = encode(px, [(90, "4:2:0")])
    pixels = decode_bytes(data, "x.jpg").pixels
    t_facts, t_load = [], []
    for _ in range(3):
        t0 = time.perf_counter()
        jpeg_facts(data, pixels)
        t_facts.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        decode_bytes(data, "x.jpg")
        t_load.append(time.perf_counter() - t0)
    print(f"3000x2000 q90: jpeg_facts {min(t_facts):.3f} s; decode_bytes (pixels + facts) {min(t_load):.3f} s; "
          f"facts = {100 * min(t_facts) / min(t_load):.0f}% of the load")


if __name__ == "__main__":
    main()
