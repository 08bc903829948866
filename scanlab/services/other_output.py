"""The open-set part of a training run: the "other scanner" output and what its threshold needs.

:func:`train_open_set` runs after the normal training (``services.training``): it takes
the cached outlier windows (``services.outlier_cache``), adds the lab's own negatives
(``DATA_DIR/_other/`` and ``--other DIR``: scans known not to come from any reference
scanner), trains the extra output by outlier exposure
(:func:`scanlab.core.training.other.train_other_output`) and returns what
:func:`scanlab.core.evidence.fit.fit_evidence_model` needs to set the threshold: the
held-out outlier designs and the held-out negatives.

Outlier designs with ``index % HOLDOUT_EVERY == HOLDOUT_EVERY - 1`` are never trained
on: their scores are the outlier end of the threshold. With two or more negative
scans, every second one (sorted by path) is held out to check the threshold; a single
negative is used for both, and the manifest says so.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from scanlab.core.engine.network import PATCH, ScannerNet
from scanlab.core.errors import ScanLabError
from scanlab.core.evidence.openset import OtherScorer
from scanlab.core.io.imaging import ImageLoadError, as_uint8, find_images, load_scan
from scanlab.core.jobs import CancelToken, ProgressFn, check
from scanlab.core.training.dataset import OTHER_DIR
from scanlab.core.training.other import train_other_output
from scanlab.services.outlier_cache import cached_outlier_windows

OUTLIER_DESIGNS = 400
WINDOWS_PER_DESIGN = 8
HOLDOUT_EVERY = 5  # one design in five is held out for the threshold
NEGATIVE_WINDOWS = 128  # random windows per negative scan used for exposure
NEGATIVE_WEIGHT = 0.25  # share of the outlier half of a batch drawn from the lab's negatives (when it has some)
T = TypeVar("T")


@dataclass
class OpenSetResult:
    """What the open-set stage hands to the threshold fit and the manifest."""

    scorer: OtherScorer
    heldout: tuple[np.ndarray, np.ndarray]  # outlier windows never trained on, and their design ids
    negatives_check: list[np.ndarray] = field(default_factory=list)  # decoded negative scans held out
    record: dict[str, Any] = field(default_factory=dict)


def oe_window_count(n_train_images: int) -> int:
    """Windows the outlier exposure passes once through the frozen layers (known + outlier)."""
    from scanlab.core.training.other import KNOWN_PER_IMAGE, MAX_KNOWN

    trained = OUTLIER_DESIGNS * WINDOWS_PER_DESIGN * (HOLDOUT_EVERY - 1) // HOLDOUT_EVERY
    return min(MAX_KNOWN, KNOWN_PER_IMAGE * n_train_images) + trained


def negative_files(data_dir: str | os.PathLike, other: str | os.PathLike | None) -> list[Path]:
    """The lab's negative scans: ``DATA_DIR/_other/`` and ``other`` (each searched recursively).

    Raises
    ------
    ScanLabError
        ``other`` is given but is not a folder, or holds no image.
    """
    files: list[Path] = []
    own = Path(data_dir) / OTHER_DIR
    if own.is_dir():
        files += find_images(own)
    if other is not None:
        o = Path(other)
        if not o.is_dir():
            raise ScanLabError(f"{o}: --other is not a folder")
        found = find_images(o)
        if not found:
            raise ScanLabError(f"{o}: --other folder has no images")
        files += found
    return sorted(set(files))


def split_negatives(negs: list[T]) -> tuple[list[T], list[T], str | None]:
    """The lab's negatives (sorted by path) split into those for outlier exposure and those held out.

    Returns (exposure, held out, how they were used); with one negative it is both.
    The held-out ones check the threshold, and the delivery-chain measurement of a
    trained model (:mod:`scanlab.services.delivery_check`) scores them as unseen scanners.
    """
    if len(negs) >= 2:
        return (negs[0::2], negs[1::2],
                "every second negative scan (sorted by path) for exposure, the others to check the threshold")
    return negs, negs, "the one negative scan both for exposure and to check the threshold" if negs else None


def _windows_of(images: list[np.ndarray], per_image: int, rng: np.random.Generator) -> np.ndarray:
    out = []
    for px in images:
        h, w = px.shape[:2]
        ys = rng.integers(0, h - PATCH + 1, per_image)
        xs = rng.integers(0, w - PATCH + 1, per_image)
        out += [as_uint8(px[y : y + PATCH, x : x + PATCH]) for y, x in zip(ys, xs, strict=True)]
    return np.stack(out) if out else np.zeros((0, PATCH, PATCH, 3), np.uint8)


def train_open_set(
    net: ScannerNet,
    train: Any,
    *,
    data_dir: str | os.PathLike,
    other_dir: str | os.PathLike | None,
    steps: int,
    seed: int,
    base_other: OtherScorer | None = None,
    augment: bool = False,
    device: torch.device | None = None,
    cache_folder: str | os.PathLike | None = None,
    cancel: CancelToken | None = None,
    progress: ProgressFn | None = None,
    stage: Any = None,
) -> OpenSetResult:
    """Train the extra output of ``net`` (in place) and collect the threshold's held-out data.

    Raises
    ------
    ScanLabError
        A negative scan cannot be read (one line naming it), or ``--other`` is not usable.
    """
    say = stage or (lambda _t: None)
    neg_paths = negative_files(data_dir, other_dir)
    negs = []
    for p in neg_paths:
        check(cancel)
        try:
            negs.append(load_scan(p).pixels)
        except ImageLoadError as e:
            raise ScanLabError(f"negative scan {e}") from None
    say("outlier windows")
    windows, ids, path = cached_outlier_windows(n_designs=OUTLIER_DESIGNS, windows_per_design=WINDOWS_PER_DESIGN,
                                                folder=cache_folder, cancel=cancel, progress=progress)
    held = ids % HOLDOUT_EVERY == HOLDOUT_EVERY - 1
    pool = windows[~held]
    rng = np.random.default_rng([seed, 23])
    expose, check_imgs, neg_use = split_negatives(negs)
    neg_w = _windows_of(expose, NEGATIVE_WINDOWS, rng)
    if len(neg_w):  # repeat the lab's windows so they make NEGATIVE_WEIGHT of the outlier draws
        reps = max(1, round(NEGATIVE_WEIGHT / (1 - NEGATIVE_WEIGHT) * len(pool) / len(neg_w)))
        pool = np.concatenate([pool, np.repeat(neg_w, reps, axis=0)])
    say("other-scanner output")
    scorer, rec = train_other_output(net, train, pool, steps=steps, seed=seed, init=base_other, augment=augment,
                                     device=device, cancel=cancel, progress=progress)
    rec.update({
        "outliers": {"generator": "scanlab.core.synth.outliers", "cache_file": path.name,
                     "designs": OUTLIER_DESIGNS, "windows_per_design": WINDOWS_PER_DESIGN,
                     "held_out_designs": int(len(np.unique(ids[held]))), "trained_windows": int((~held).sum())},
        "negatives": {"n_images": len(negs), "exposure_windows": int(len(neg_w)), "use": neg_use,
                      "files": [str(p) for p in neg_paths]},
    })
    return OpenSetResult(scorer, (windows[held], ids[held]), check_imgs, rec)
