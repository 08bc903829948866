"""Which unknown-scanner score separates a lab model's own scanners from unseen ones (offline).

The measurement that chose ``gauss-image`` (issue 17 item 2, BENCHMARKS.md). For a lab
model written by ``benchmarks/bench_lab_openset.py`` it computes the pooled features of
the 64-px grid windows with evidence of: the model's training images, development banks
drawn with *other* seeds and another unseen bank than the benchmark's (``lab`` seed 7,
3 x 5 fresh scans; ``labdev`` seed 11, 6 x 4 scans of scanners no bank of the benchmark
has), and the benchmark's own fresh and unseen banks (reported, not used to choose).
Then, per scorer, the image-level AUC (fresh known vs unseen; 0.5 = chance), with the
known side of the training images scored by cross-fitting (leave one image out).

    python benchmarks/lab_openset_scorers.py --model /tmp/labopen/lab10-open_set.safetensors \\
        --known /tmp/labopen/known10 --bench /tmp/labopen --work /tmp/labopen-dev
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from scanlab.core.evidence.gauss import fit_gauss
from scanlab.core.evidence.openset import OtherScorer, feature_windows, window_features
from scanlab.core.io.imaging import find_images, load_scan
from scanlab.core.modelfile.store import load_model
from scanlab.core.synth.bank import write_bank


def _features(net, items):
    f, ids, lab = [], [], []
    for i, (path, c) in enumerate(items):
        px = load_scan(path).pixels
        ys, xs, ev = feature_windows(px)
        iy, ix = np.nonzero(ev)
        f.append(window_features(net, px, np.stack([ys[iy], xs[ix]], axis=1)))
        ids.append(np.full(len(iy), i))
        lab.append(np.full(len(iy), c))
    return np.concatenate(f).astype(np.float64), np.concatenate(ids), np.concatenate(lab)


def _auc(known: np.ndarray, unseen: np.ndarray) -> float:
    return float(np.mean(unseen[:, None] > known[None, :]) + 0.5 * np.mean(unseen[:, None] == known[None, :]))


def _per_image(u, ids, agg=np.mean):
    return np.array([agg(u[ids == j]) for j in np.unique(ids)])


def main() -> None:
    """Extract features, score, print one JSON object of AUCs."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--known", required=True, help="the DATA_DIR the model was trained on")
    ap.add_argument("--bench", required=True, help="the benchmark's work folder (fresh/, unseen/)")
    ap.add_argument("--work", required=True, help="where the development banks go")
    a = ap.parse_args()
    torch.set_num_threads(1)
    work = Path(a.work)
    for name, (bank, n, k, seed) in {"devfresh": ("lab", 3, 5, 7), "devunseen": ("labdev", 6, 4, 11)}.items():
        if not (work / name / "synth.json").is_file():
            write_bank(work / name, n, k, seed=seed, bank_name=bank, force=True)
    lm = load_model(a.model)
    net, classes = lm.net.eval(), lm.classes
    train_rel = lm.manifest["training"]["data"]["files"]["train"]
    sets = {"train": _features(net, [(Path(a.known) / f, classes.index(f.split("/")[0])) for f in train_rel])}
    for name, root in (("devfresh", work / "devfresh"), ("devunseen", work / "devunseen"),
                       ("fresh", Path(a.bench) / "fresh"), ("unseen", Path(a.bench) / "unseen")):
        files = sorted(find_images(root))
        sets[name] = _features(net, [(f, classes.index(f.parent.name) if f.parent.name in classes else -1)
                                     for f in files])
    other = OtherScorer.from_extras(lm.extras)
    tr_f, tr_i, tr_l = sets["train"]
    gs, _, _ = fit_gauss(tr_f, tr_l, tr_i, len(classes))

    def knn(f, k):
        bank = tr_f / np.linalg.norm(tr_f, axis=1, keepdims=True)
        s = (f / np.linalg.norm(f, axis=1, keepdims=True)) @ bank.T
        return 1 - np.sort(s, axis=1)[:, -k]

    scorers = {
        "other-output P(other), image mean": lambda f, ids: _per_image(other.window_scores(f, net), ids),
        "other-output P(other), image median": lambda f, ids: _per_image(other.window_scores(f, net), ids, np.median),
        "Mahalanobis per window, image mean": lambda f, ids: _per_image(gs.window_scores(f), ids),
        "Mahalanobis per window, image median": lambda f, ids: _per_image(gs.window_scores(f), ids, np.median),
        "k-NN (k=10) per window, image mean": lambda f, ids: _per_image(knn(f, 10), ids),
        "k-NN (k=1) per window, image mean": lambda f, ids: _per_image(knn(f, 1), ids),
        "gauss-image (mean feature's Mahalanobis)": lambda f, ids: np.array(
            [gs.image_score(f[ids == j]) for j in np.unique(ids)]),
    }
    out = {"model": a.model, "n_images": {k: int(len(np.unique(v[1]))) for k, v in sets.items()}, "auc": {}}
    for name, fn in scorers.items():
        s = {k: fn(sets[k][0], sets[k][1]) for k in ("devfresh", "devunseen", "fresh", "unseen")}
        out["auc"][name] = {"dev": round(_auc(s["devfresh"], s["devunseen"]), 3),
                            "benchmark": round(_auc(s["fresh"], s["unseen"]), 3)}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
