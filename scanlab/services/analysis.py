"""One analysis of one scan: the request/result pair the CLI and the GUI share.

A request is an immutable snapshot (file, model, grid, engine, device) built on
the caller's thread; :func:`run_analysis` does the work anywhere (a worker
thread in the GUI) and returns a result tagged with the request.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scanlab.core.engine import select_device
from scanlab.core.errors import ScanLabError
from scanlab.core.imaging import Scan, ScanInfo, load_scan, verify_hash
from scanlab.core.jobs import CancelToken, ProgressFn, check
from scanlab.core.modelfile import LoadedModel
from scanlab.core.patches import Size, as_pair, validate_grid
from scanlab.core.reliability import ImageAnalysis, analyze_image
from scanlab.services.models import get_model

_ids = itertools.count(1)


@dataclass(frozen=True)
class AnalysisRequest:
    """Everything one analysis needs; immutable so a worker can never see it change."""

    path: str
    model: str | None = None  # path, or None for the shipped default
    sub: Size = (64, 64)  # reliability-map sub-image size
    stride: Size = (4, 4)
    vote_sub: Size = (64, 64)
    engine: str | None = None  # None: the default (dense) engine
    device: str = "auto"
    label: str | None = None  # map this class instead of the predicted one
    with_map: bool = True
    request_id: int = field(default_factory=lambda: next(_ids))


@dataclass
class AnalysisResult:
    """What an analysis produced; ``reliability`` is (H, W) float32 with NaN uncovered."""

    request: AnalysisRequest
    scan: ScanInfo
    pixels: np.ndarray = field(repr=False)
    model: LoadedModel = field(repr=False)
    analysis: ImageAnalysis = field(repr=False)
    label: str = ""
    map_label: str = ""
    reliability: np.ndarray | None = field(default=None, repr=False)
    compute_s: float = 0.0
    device: str = "cpu"

    @property
    def classes(self) -> list[str]:
        """Class names in model order."""
        return self.model.classes

    def probabilities(self) -> dict[str, float]:
        """Mean class probabilities over the vote grid."""
        c = self.analysis.classification
        return {k: float(v) for k, v in zip(self.classes, c.mean_probs, strict=True)}

    def votes(self) -> dict[str, int]:
        """Vote counts per class."""
        c = self.analysis.classification
        return {k: int(v) for k, v in zip(self.classes, c.votes, strict=True)}

    def map_for(self, label: str) -> np.ndarray:
        """Reliability map for any class name (recomputed from the stored grid, O(pixels))."""
        if label not in self.classes:
            raise ScanLabError(f"unknown class {label!r} (model classes: {', '.join(self.classes)})")
        return self.analysis.class_reliability(self.classes.index(label))

    def to_json(self) -> dict[str, Any]:
        """The ``classify --json`` entry for this image."""
        return {
            "path": self.scan.path,
            "sha256": self.scan.sha256,
            "label": self.label,
            "probabilities": self.probabilities(),
            "votes": self.votes(),
            "n_patches": int(self.analysis.classification.n_patches),
        }


def run_analysis(
    request: AnalysisRequest,
    *,
    cancel: CancelToken | None = None,
    progress: ProgressFn | None = None,
    model: LoadedModel | None = None,
    on_loaded: Callable[[Scan], None] | None = None,
) -> AnalysisResult:
    """Load the scan, classify it and (optionally) compute its reliability map.

    ``on_loaded(scan)`` is called once the scan is decoded and its grid checked,
    before the network runs (the GUI shows the scan while the map is computed).

    Raises
    ------
    ScanLabError
        Bad file, bad grid, missing model, unknown label or device.
    Cancelled
        When ``cancel`` was set; nothing is returned or written.
    """
    device = select_device(request.device)
    lm = model or get_model(request.model, device="cpu")
    if request.label is not None and request.label not in lm.classes:
        raise ScanLabError(f"--label {request.label!r} is not a class of the model ({', '.join(lm.classes)})")
    scan = load_scan(request.path)
    check(cancel)
    shape = scan.shape
    try:
        validate_grid(shape, as_pair(request.vote_sub), as_pair(request.vote_sub))
        if request.with_map:
            validate_grid(shape, as_pair(request.sub), as_pair(request.stride))
    except ValueError as e:
        raise ScanLabError(f"{request.path}: {e}") from None
    if on_loaded is not None:
        on_loaded(scan)
    check(cancel)
    image = scan.pixels  # engines take the decoded scan; dense converts per tile
    t0 = time.perf_counter()
    res = analyze_image(
        lm.net,
        image,
        vote_sub=request.vote_sub,
        map_sub=request.sub if request.with_map else None,
        map_stride=request.stride,
        engine=request.engine,
        device=device,
        cancel=cancel,
        progress=progress,
    )
    label = lm.classes[res.classification.label_index]
    map_label = request.label or label
    rel = res.class_reliability(lm.classes.index(map_label), cancel=cancel) if request.with_map else None
    compute_s = time.perf_counter() - t0
    lm.net.to("cpu")
    return AnalysisResult(
        request=request,
        scan=scan.info,
        pixels=scan.pixels,
        model=lm,
        analysis=res,
        label=label,
        map_label=map_label,
        reliability=rel,
        compute_s=compute_s,
        device=str(device),
    )


def evidence_unchanged(result: AnalysisResult) -> bool:
    """Re-hash the evidence file and compare with the hash taken when it was analysed."""
    return verify_hash(result.scan.path, result.scan.sha256)
