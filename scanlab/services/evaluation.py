"""Scoring a questioned or held-out folder-per-scanner tree with a model."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from scanlab.core.evidence.verdict import VERDICTS
from scanlab.core.io.imaging import load_scan
from scanlab.core.jobs import CancelToken, ProgressFn, check, report
from scanlab.core.training.dataset import discover
from scanlab.core.training.loop import accuracy_summary
from scanlab.services.models import get_model


class _LazyScans(Sequence):
    """Decodes one scan at a time, so a large folder never sits in memory at once."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> np.ndarray:  # type: ignore[override]
        return load_scan(self.paths[i]).pixels


def evaluate_folder(
    data_dir: str | os.PathLike,
    model: str | None = None,
    *,
    engine: str | None = None,
    device: str = "auto",
    cancel: CancelToken | None = None,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Score **every** image under ``data_dir`` (one sub-folder per scanner).

    Folders named like a model class are scored for accuracy (top label against
    folder, as always) and for verdicts; folders the model does not know are
    scanners it never saw: for them the *rejection rate* is reported (the share
    of images answered ``unknown`` or ``inconclusive``), never an accuracy.

    Returns
    -------
    dict
        ``per_patch_accuracy``, ``per_image_accuracy``, ``classes`` (the model's),
        ``confusion_per_image``, ``confusion_per_patch`` ([true][predicted] counts
        in model class order, known folders only), ``n_images`` (known folders),
        ``n_patches``, ``loss``, ``verdicts`` (class -> counts), ``attributed_and_right``,
        ``unknown_classes`` (folder -> rejection counts and rate), ``data_dir``, ``model``.
    """
    from scanlab.services.analysis import AnalysisRequest, model_json, run_analysis

    lm = get_model(model)
    ds = discover(data_dir, hash_files=False)
    n = len(lm.classes)
    cm_patch = np.zeros((n, n), dtype=np.int64)
    cm_image = np.zeros((n, n), dtype=np.int64)
    verdicts = {c: dict.fromkeys(VERDICTS, 0) for c in lm.classes}
    unknown: dict[str, dict[str, Any]] = {}
    nll, n_p, right = 0.0, 0, 0
    for k, s in enumerate(ds.samples):
        check(cancel)
        folder = ds.classes[s.label]
        r = run_analysis(AnalysisRequest(path=str(s.path), model=model, engine=engine, device=device, with_map=False),
                         model=lm, cancel=cancel)
        v = r.verdict.verdict
        c = r.analysis.classification
        if folder in lm.classes:
            y = lm.classes.index(folder)
            verdicts[folder][v] += 1
            np.add.at(cm_patch, (np.full(len(c.patch_labels), y), c.patch_labels), 1)
            cm_image[y, c.label_index] += 1
            right += int(v == "attributed" and c.label_index == y)
            sp = r.analysis.vote
            p = sp.probs[sp.evidence_mask()][:, y]
            nll += float(-np.log(np.clip(p, 1e-12, 1)).sum())
            n_p += len(p)
        else:
            u = unknown.setdefault(folder, {"n_images": 0, **dict.fromkeys(VERDICTS, 0)})
            u["n_images"] += 1
            u[v] += 1
        report(progress, k + 1, len(ds.samples))
    for u in unknown.values():
        u["rejected"] = u["unknown"] + u["inconclusive"]
        u["rejection_rate"] = u["rejected"] / max(1, u["n_images"])
    n_img = int(cm_image.sum())
    lm.net.to("cpu")
    return {
        "classes": lm.classes,
        **accuracy_summary(cm_patch, cm_image, nll, n_p),
        "verdicts": verdicts,
        "attributed_and_right": right / max(1, n_img),
        "unknown_classes": unknown,
        "data_dir": str(Path(data_dir).resolve()),
        "model": model_json(lm),
    }
