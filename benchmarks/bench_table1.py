"""The paper's Table I on the virtual bank, plus forgery localisation.

Usage (from the repository root)::

    python benchmarks/bench_table1.py --model trained_models/scanlab-default.safetensors \
        --work /tmp/scanlab-bench --seed 1001 --images 30 --size 512 --forge-n 20

What it measures, on data generated fresh by this script (the scanners of the
default bank, a content seed the model never saw):

1. Per-patch and per-image accuracy (majority vote over the non-overlapping 64x64
   grid) on ``--images`` scans per scanner.
2. A trivial baseline: global colour/intensity histograms (3 x 32 bins + means and
   standard deviations) classified by nearest centroid and by multinomial logistic
   regression, trained on a separate fresh bank of the same scanners. It shows the
   scanners cannot be told apart from global statistics; the traces are local.
3. Forgery localisation: for ``--forge-n`` splices and copy-moves, the reliability
   map (sub-image 64, stride 4) of the predicted label; the score is
   1 - reliability. Pixel-level ROC AUC (rank statistic, ties averaged) and F1 at
   the threshold 0.5, pooled over all pixels of all forgeries, plus the mean
   per-image AUC.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from scanlab.core.engine.reliability import analyze_image
from scanlab.core.io.imaging import find_images, load_scan, to_float
from scanlab.core.synth.bank import write_bank
from scanlab.core.synth.forge import write_forgeries
from scanlab.core.training.loop import evaluate_arrays
from scanlab.services.models import get_model

# ---------------------------------------------------------------- metrics


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC by the Mann-Whitney rank statistic (ties get their average rank)."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=bool).ravel()
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ss = s[order]
    ranks = np.empty(len(s), dtype=np.float64)
    # average ranks over runs of equal scores
    edges = np.flatnonzero(np.diff(ss)) + 1
    starts = np.concatenate([[0], edges])
    ends = np.concatenate([edges, [len(ss)]])
    avg = (starts + ends + 1) / 2.0  # 1-based average rank of each run
    ranks[order] = np.repeat(avg, ends - starts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def f1_score(pred: np.ndarray, labels: np.ndarray) -> float:
    """F1 of boolean predictions against boolean labels."""
    p, y = np.asarray(pred, bool).ravel(), np.asarray(labels, bool).ravel()
    tp = int((p & y).sum())
    fp = int((p & ~y).sum())
    fn = int((~p & y).sum())
    return 2 * tp / max(1, 2 * tp + fp + fn)


# ---------------------------------------------------------------- histogram baseline


def histogram_features(px: np.ndarray) -> np.ndarray:
    """Global colour/intensity histogram features of one scan."""
    feats = []
    for c in range(3):
        h, _ = np.histogram(px[:, :, c], bins=32, range=(0, 256))
        feats.append(h / h.sum())
    v = px.reshape(-1, 3).astype(np.float64) / 255.0
    feats.append(np.concatenate([v.mean(0), v.std(0)]))
    return np.concatenate(feats)


def _load_set(root: Path, classes: list[str]) -> tuple[list[np.ndarray], np.ndarray]:
    imgs, labels = [], []
    for ci, c in enumerate(classes):
        for p in find_images(root / c):
            imgs.append(load_scan(p).pixels)
            labels.append(ci)
    return imgs, np.asarray(labels)


def baseline_accuracy(train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray], n: int) -> dict:
    """Nearest-centroid and logistic-regression accuracy on histogram features."""
    xtr, ytr = train
    xte, yte = test
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    ztr, zte = (xtr - mu) / sd, (xte - mu) / sd
    cent = np.stack([ztr[ytr == k].mean(0) for k in range(n)])
    nc = np.argmin(((zte[:, None, :] - cent[None]) ** 2).sum(-1), axis=1)
    # multinomial logistic regression (L2), full-batch L-BFGS in torch
    torch.manual_seed(0)
    xt = torch.tensor(ztr, dtype=torch.float32)
    yt = torch.tensor(ytr)
    lin = torch.nn.Linear(xt.shape[1], n)
    opt = torch.optim.LBFGS(lin.parameters(), max_iter=500)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(lin(xt), yt) + 1e-3 * (lin.weight**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        lr_pred = lin(torch.tensor(zte, dtype=torch.float32)).argmax(1).numpy()
        lr_train = lin(xt).argmax(1).numpy()
    return {
        "nearest_centroid": float((nc == yte).mean()),
        "logistic_regression": float((lr_pred == yte).mean()),
        "logistic_regression_train": float((lr_train == ytr).mean()),
        "chance": 1.0 / n,
    }


# ---------------------------------------------------------------- localisation


def localisation(folder: Path, net: torch.nn.Module, classes: list[str]) -> dict:
    """Pixel AUC / F1 of 1 - reliability against the masks of one forgery folder."""
    man = json.loads((folder / "manifest.json").read_text())
    all_s, all_y, per_auc, host_ok, t_map = [], [], [], 0, 0.0
    for rec in man:
        px = load_scan(folder / rec["image"]).pixels
        mask = load_scan(folder / rec["mask"]).pixels[:, :, 0] > 127
        t0 = time.perf_counter()
        res = analyze_image(net, to_float(px), map_sub=64, map_stride=4, engine="dense")
        li = res.classification.label_index
        rel = res.class_reliability(li)
        t_map += time.perf_counter() - t0
        host_ok += int(classes[li] == rec["host_scanner"])
        ok = np.isfinite(rel)
        s = 1.0 - rel[ok]
        y = mask[ok]
        all_s.append(s.astype(np.float32))
        all_y.append(y)
        per_auc.append(roc_auc(s, y))
    s, y = np.concatenate(all_s), np.concatenate(all_y)
    return {
        "n": len(man),
        "pixel_auc": roc_auc(s, y),
        "mean_image_auc": float(np.nanmean(per_auc)),
        "f1_at_0.5": f1_score(s > 0.5, y),
        "best_f1": max(f1_score(s > t, y) for t in np.linspace(0.05, 0.95, 19)),
        "host_label_correct": host_ok / max(1, len(man)),
        "forged_fraction": float(y.mean()),
        "map_seconds_per_image": t_map / max(1, len(man)),
    }


# ---------------------------------------------------------------- main


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def _cpu() -> str:
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="trained_models/scanlab-default.safetensors")
    ap.add_argument("--work", default="/tmp/scanlab-bench", help="folder for the generated data")
    ap.add_argument("--seed", type=int, default=1001, help="content seed of the fresh test data")
    ap.add_argument("--images", type=int, default=30, help="test images per scanner")
    ap.add_argument("--size", type=int, default=512, help="test image side")
    ap.add_argument("--baseline-images", type=int, default=30, help="baseline training images per scanner")
    ap.add_argument("--forge-n", type=int, default=20, help="forgeries per kind")
    ap.add_argument("--forge-size", type=int, default=512)
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    a = ap.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    lm = get_model(a.model)
    classes, net = lm.classes, lm.net
    n_sc = len(classes)
    work = Path(a.work)
    t0 = time.time()
    test_dir = work / f"test-s{a.seed}-n{a.images}-px{a.size}"
    if not (test_dir / "synth.json").exists():
        write_bank(test_dir, n_sc, a.images, size=a.size, seed=a.seed, force=True)
    base_dir = work / f"baseline-train-s{a.seed + 1}-n{a.baseline_images}-px{a.size}"
    if not (base_dir / "synth.json").exists():
        write_bank(base_dir, n_sc, a.baseline_images, size=a.size, seed=a.seed + 1, force=True)
    forge_dirs = {}
    for kind in ("splice", "copymove"):
        d = work / f"forge-{kind}-s{a.seed}-n{a.forge_n}-px{a.forge_size}"
        if not (d / "manifest.json").exists():
            write_forgeries(d, a.forge_n, kind, seed=a.seed, size=a.forge_size, n_scanners=n_sc, force=True)
        forge_dirs[kind] = d
    t_gen = time.time() - t0

    test_imgs, test_y = _load_set(test_dir, classes)
    ev = evaluate_arrays(net, test_imgs, test_y, n_sc, engine="dense")
    base_imgs, base_y = _load_set(base_dir, classes)
    bl = baseline_accuracy(
        (np.stack([histogram_features(x) for x in base_imgs]), base_y),
        (np.stack([histogram_features(x) for x in test_imgs]), test_y),
        n_sc,
    )
    loc = {k: localisation(d, net, classes) for k, d in forge_dirs.items()}
    out = {
        "model": str(a.model),
        "classes": classes,
        "commit": _commit(),
        "cpu": _cpu(),
        "command": "python benchmarks/bench_table1.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "test": {k: ev[k] for k in ("per_patch_accuracy", "per_image_accuracy", "n_images", "n_patches", "confusion_per_image")},
        "histogram_baseline": bl,
        "localisation": loc,
        "generation_seconds": t_gen,
    }
    print(f"\nTable I on the virtual bank ({n_sc} scanners, fresh seed {a.seed}, {ev['n_images']} images, "
          f"{ev['n_patches']} patches)")
    print(f"{'method':40s} {'per image':>10s} {'per patch':>10s}")
    print(f"{'ScanLab CNN (' + Path(a.model).name + ')':40s} {ev['per_image_accuracy']:10.4f} {ev['per_patch_accuracy']:10.4f}")
    print(f"{'histogram + nearest centroid':40s} {bl['nearest_centroid']:10.4f} {'-':>10s}")
    print(f"{'histogram + logistic regression':40s} {bl['logistic_regression']:10.4f} {'-':>10s}")
    print(f"{'chance':40s} {bl['chance']:10.4f} {bl['chance']:10.4f}")
    print(f"\nForgery localisation (1 - reliability, sub 64, stride 4, {a.forge_size}px scans)")
    print(f"{'kind':10s} {'n':>4s} {'pixel AUC':>10s} {'img AUC':>9s} {'F1@0.5':>8s} {'best F1':>8s} {'host ok':>8s} {'forged%':>8s}")
    for k, r in loc.items():
        print(f"{k:10s} {r['n']:4d} {r['pixel_auc']:10.4f} {r['mean_image_auc']:9.4f} {r['f1_at_0.5']:8.4f} "
              f"{r['best_f1']:8.4f} {r['host_label_correct']:8.3f} {100 * r['forged_fraction']:8.1f}")
    print(f"\ncommit {out['commit']}  cpu {out['cpu']}")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
