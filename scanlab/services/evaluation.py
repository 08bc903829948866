"""Scoring a questioned or held-out folder-per-scanner tree with a model."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from scanlab.core.dataset import discover
from scanlab.core.engine import select_device
from scanlab.core.errors import ScanLabError
from scanlab.core.imaging import load_scan
from scanlab.core.jobs import CancelToken, ProgressFn
from scanlab.core.training import evaluate_arrays
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

    Class folders are matched to the model's classes by name; a folder whose name
    the model does not know is an error (the model cannot be right about it).

    Returns
    -------
    dict
        ``per_patch_accuracy``, ``per_image_accuracy``, ``classes`` (the model's),
        ``confusion_per_image``, ``confusion_per_patch`` ([true][predicted] counts
        in model class order), ``n_images``, ``n_patches``, ``loss``, ``data_dir``,
        ``model``.
    """
    lm = get_model(model)
    ds = discover(data_dir, hash_files=False)
    unknown = [c for c in ds.classes if c not in lm.classes]
    if unknown:
        raise ScanLabError(
            f"{data_dir}: class folder(s) {', '.join(unknown)} not known to the model "
            f"(model classes: {', '.join(lm.classes)})"
        )
    labels = [lm.classes.index(ds.classes[s.label]) for s in ds.samples]
    metrics = evaluate_arrays(
        lm.net, _LazyScans([s.path for s in ds.samples]), labels, len(lm.classes),
        engine=engine, device=select_device(device), cancel=cancel, progress=progress,
    )
    lm.net.to("cpu")
    return {"classes": lm.classes, **metrics, "data_dir": str(Path(data_dir).resolve()), "model": lm.summary()}
