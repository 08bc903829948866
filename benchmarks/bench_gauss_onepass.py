"""Cost of the ``gauss-image`` open set in the vote's pass: k = C extra head rows against one.

The dense engine's vote pass on one synthetic scan, with no extra row, with the
"other scanner" row (1 row) and with the whitening projection (C = 96 rows),
interleaved (``--repeats`` rounds) so the three are measured side by side; the
minimum of each is reported, with ratios to the pass without extra rows.

    python benchmarks/bench_gauss_onepass.py --model lab10.safetensors --size 2048
    python benchmarks/bench_gauss_onepass.py --model lab10.safetensors --size 1024 --map-stride 4
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from scanlab.core.engine.reliability import analyze_image
from scanlab.core.modelfile.store import load_model


def main() -> None:
    """Time the three variants; print one JSON object."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="a model file with open_set.gauss_proj (scanlab train)")
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--map-stride", type=int, default=None, help="also compute a 64-px map at this stride (as `map`)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    lm = load_model(a.model)
    c = lm.net.feature_channels
    proj = np.asarray(lm.extras["open_set.gauss_proj"], np.float32)
    heads = {"none": None, "other (1 row)": (np.ones(c, np.float32) / c, 0.0),
             f"gauss ({len(proj)} rows)": (proj, np.zeros(len(proj), np.float32))}
    rng = np.random.default_rng(0)
    img = (rng.random((a.size, a.size, 3)) * 255).astype(np.uint8)
    times: dict[str, list[float]] = {k: [] for k in heads}
    for _ in range(a.repeats):
        for k, h in heads.items():
            t = time.perf_counter()
            analyze_image(lm.net, img, vote_sub=64, other=h, map_sub=64 if a.map_stride else None,
                          map_stride=a.map_stride or 64)
            times[k].append(time.perf_counter() - t)
    best = {k: min(v) for k, v in times.items()}
    print(json.dumps({"size": a.size, "map_stride": a.map_stride, "torch_threads": 1, "min_s": {k: round(v, 3) for k, v in best.items()},
                      "ratio_to_none": {k: round(v / best["none"], 3) for k, v in best.items()}}))


if __name__ == "__main__":
    main()
