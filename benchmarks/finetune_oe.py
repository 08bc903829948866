"""Outlier exposure: fine-tune a model so that scanners it does not know give flat softmax outputs.

Hendrycks et al. (2019): besides the usual cross-entropy on the known scanners,
patches from *other* scanners are pushed towards the uniform distribution
(cross-entropy to uniform). The virtual bank can make any number of scanner
designs: the outliers come from a separate bank name (``--oe-bank``), never the
bank the benchmark uses as unknown scanners. No architecture change: the network
keeps its Ns outputs, so files of the current version keep loading everywhere.

The known-scanner data is the model's own training split, re-simulated from the
manifest's file list (default bank, content seed of the bank), so the fine-tune
sees no data the model was not already trained on.

    python benchmarks/finetune_oe.py --model trained_models/scanlab-default.safetensors \\
        -o /tmp/oe.safetensors --work /tmp/scanlab-evidence --epochs 3
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from evidence_data import resimulate, write_val_split  # noqa: E402

from scanlab.core.engine.patches import training_patch_corners  # noqa: E402
from scanlab.core.io.imaging import find_images, load_scan  # noqa: E402
from scanlab.core.modelfile.store import load_model, save_model  # noqa: E402
from scanlab.core.synth.bank import synth_scan  # noqa: E402
from scanlab.core.synth.scanner import bank, decode  # noqa: E402
from scanlab.core.training.loop import evaluate_arrays  # noqa: E402


def sample_patches(images: list[np.ndarray], labels: list[int], sub: tuple[int, int], rng: np.random.Generator):
    """One random 64x64 patch per non-overlapping sub-image of every image: (patches, labels).

    The in-memory sampler ``scanlab.core.training.loop`` had when this experiment ran (the
    training code now reads patches per batch from a cache).
    """
    out, lab = [], []
    for img, y in zip(images, labels, strict=True):
        s = (min(sub[0], img.shape[0]), min(sub[1], img.shape[1]))
        for r, c in training_patch_corners(img.shape[:2], s, rng):
            out.append(img[r : r + 64, c : c + 64])
            lab.append(y)
    return np.stack(out), np.asarray(lab, dtype=np.int64)


def _to_x(batch: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2))).float() / 255.0


def main() -> None:
    """Fine-tune with outlier exposure and write the model (manifest updated, parent recorded)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="trained_models/scanlab-default.safetensors")
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--work", default="/tmp/scanlab-evidence")
    ap.add_argument("--per-class", type=int, default=40, help="training images per known scanner")
    ap.add_argument("--oe-bank", default="oe-train")
    ap.add_argument("--oe-scanners", type=int, default=160)
    ap.add_argument("--oe-images", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=0.002)
    ap.add_argument("--oe-weight", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    lm = load_model(a.model)
    man = lm.manifest
    t0 = time.time()
    per: dict[str, int] = {}
    known, klab = [], []
    for rel in man["training"]["data"]["files"]["train"]:
        cls = rel.split("/")[0]
        if per.get(cls, 0) >= a.per_class:
            continue
        per[cls] = per.get(cls, 0) + 1
        known.append(decode(resimulate(rel)))
        klab.append(lm.classes.index(cls))
    oe = []
    for d in bank(a.oe_bank, a.oe_scanners):
        for k in range(a.oe_images):
            oe.append(decode(synth_scan(d, k, seed=a.seed, size=384).data))
    print(f"data: {len(known)} known, {len(oe)} outlier scans ({time.time() - t0:.0f}s)", file=sys.stderr, flush=True)
    net = lm.net
    opt = torch.optim.SGD(net.parameters(), lr=a.lr, momentum=0.9, weight_decay=1e-4)
    hist = []
    for ep in range(a.epochs):
        t1 = time.time()
        net.train()
        xk, yk = sample_patches(known, klab, (128, 128), rng)
        xo, _ = sample_patches(oe, [0] * len(oe), (96, 96), rng)
        ok, oo = rng.permutation(len(yk)), rng.permutation(len(xo))
        nb = len(ok) // 64
        per_o = max(1, len(oo) // nb)
        tl = to = 0.0
        for b in range(nb):
            ik, io = ok[b * 64 : (b + 1) * 64], oo[(b * per_o) % len(oo) : (b * per_o) % len(oo) + per_o]
            x = torch.cat([_to_x(xk[ik]), _to_x(xo[io])])
            z = net(x)
            lk = F.cross_entropy(z[: len(ik)], torch.from_numpy(yk[ik]))
            lo = -F.log_softmax(z[len(ik):], dim=1).mean()
            loss = lk + a.oe_weight * lo
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tl += float(lk)
            to += float(lo)
        hist.append({"epoch": ep + 1, "ce_known": tl / nb, "ce_uniform_outliers": to / nb, "seconds": time.time() - t1})
        print(json.dumps(hist[-1]), file=sys.stderr, flush=True)
    net.eval()
    val_dir = Path(a.work) / "val"
    write_val_split(a.model, val_dir)
    files = sorted(find_images(val_dir))
    val = evaluate_arrays(net, [load_scan(f).pixels for f in files], [lm.classes.index(f.parent.name) for f in files],
                          len(lm.classes))
    new = {k: v for k, v in man.items() if not k.startswith("_") and k not in ("calibration", "open_set")}
    new["parent"] = f"{man.get('name')} ({man.get('weights_sha256')})"
    new["metrics"] = {"val": val, "test_before_outlier_exposure": man["metrics"].get("test")}
    new["training"] = dict(man["training"])
    new["training"]["outlier_exposure"] = {
        "method": "cross-entropy to uniform on outlier patches (Hendrycks et al. 2019)", "oe_bank": a.oe_bank,
        "oe_scanners": a.oe_scanners, "oe_images_per_scanner": a.oe_images, "oe_size": 384,
        "known_images_per_class": a.per_class, "epochs": a.epochs, "lr": a.lr, "momentum": 0.9,
        "oe_weight": a.oe_weight, "seed": a.seed, "history": hist,
    }
    save_model(net, new, a.output)
    print(json.dumps({"val": {k: val[k] for k in ("per_patch_accuracy", "per_image_accuracy")}}))


if __name__ == "__main__":
    main()
