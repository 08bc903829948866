"""Model-free analysis layers run on one scan, as plain data the app, the case and the report share.

A layer registered in :mod:`scanlab.services.layers` with a ``service`` ("module:function")
is computed from the decoded pixels alone; :func:`run_layer` finds that function through
the registry and returns a :class:`LayerRun`. Nothing here names a layer except the one
adapter per layer (:func:`copymove_run`) that the registry points to, so the app's
"Map of", the case and the report enumerate the registry instead of branching on names.

Pairs are the copy-move pair dicts of docs/formats.md section 5b (``source_box``,
``target_box``, ``transform``, ``correlation``, ``z``, ``p_value``, ...) plus ``index``
(1-based, the number drawn on the PNG), ``colour`` (RGB, the PNG's colour of that pair)
and ``source_outline`` / ``target_outline``: each end's outline as (row, col) image
coordinates (the outer outline of its mask; its box when the mask is empty).
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scanlab.core.errors import ScanLabError
from scanlab.core.io.imaging import Scan, load_scan
from scanlab.core.jobs import CancelToken, ProgressFn, check
from scanlab.services.layers import LAYERS, Layer, get_layer


@dataclass
class LayerRun:
    """One model-free layer computed on one scan (plain data; any thread)."""

    layer: str  # the registry name
    path: str
    sha256: str  # of the decoded evidence (the case's evidence id comes from it)
    score: np.ndarray = field(repr=False)  # (H, W) float32 in [0, 1], NaN = no evidence
    no_evidence: np.ndarray = field(repr=False)  # (H, W) bool
    pairs: list[dict[str, Any]]  # module docstring
    summary: dict[str, Any]  # the layer's JSON block without its pairs
    experimental: str = ""  # the registry's caveat, carried with the figures
    # what determines the output (function, version, source digest, parameters): the case records it
    detector: dict[str, Any] = field(default_factory=dict)
    # scanlab.services.layer_records.map_digest of ``score`` (run_layer fills it, on the worker)
    map_digest: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) of the scan."""
        return int(self.score.shape[0]), int(self.score.shape[1])


LAYER_KEY = "__layer__:"  # prefix of a "Map of" value that names a model-free layer (beside class names)


def layer_key(name: str) -> str:
    """The "Map of" value of layer ``name`` (never a class name: classes are folder names)."""
    return LAYER_KEY + name


def layer_of(key: str | None) -> str | None:
    """The layer a "Map of" value names, or ``None`` for class, attribution and unknown maps."""
    return key[len(LAYER_KEY):] if isinstance(key, str) and key.startswith(LAYER_KEY) else None


def model_free_layers() -> list[Layer]:
    """Registered layers the app can compute without the scanner model, in registration order."""
    return [lay for lay in LAYERS.values() if not lay.needs_model and lay.service]


def run_layer(name: str, scan: Scan | str | os.PathLike, *, cancel: CancelToken | None = None,
              progress: ProgressFn | None = None) -> LayerRun:
    """Compute the model-free layer ``name`` on ``scan`` (a decoded :class:`Scan`, or a path to load).

    Raises
    ------
    ScanLabError
        Unknown layer, a layer that needs the model, or a scan that cannot be read.
    Cancelled
        When ``cancel`` was set.
    """
    try:
        layer = get_layer(name)
    except ValueError as e:
        raise ScanLabError(str(e)) from None
    if layer.needs_model or not layer.service:
        raise ScanLabError(f"the {layer.title.lower()} layer is computed with the scanner model, "
                           "not on its own (scanlab case add / map)")
    if not isinstance(scan, Scan):
        scan = load_scan(scan)
    check(cancel)
    module, fn = layer.service.split(":")
    run: LayerRun = getattr(importlib.import_module(module), fn)(scan, cancel=cancel, progress=progress)
    from scanlab.services.layer_records import map_digest  # (imports this module)

    run.map_digest = map_digest(run.score)
    return run


def mask_outline(mask: np.ndarray, box: tuple[int, int, int, int] | list[int]) -> list[tuple[float, float]]:
    """Outline of a box-sized mask in image (row, col) coordinates (the box's rectangle when empty)."""
    from scanlab.core.case.rois import outline_of  # the outline the case's suggested regions use

    y, x, h, w = (int(v) for v in box)
    m = np.asarray(mask, bool)
    if m.sum() >= 4:
        try:
            return [(r + y, c + x) for r, c in outline_of(m)]
        except ValueError:  # no closed contour (a one-pixel line): fall back to the box
            pass
    return [(float(y), float(x)), (float(y), float(x + w)), (float(y + h), float(x + w)), (float(y + h), float(x))]


def copymove_run(scan: Scan, *, cancel: CancelToken | None = None, progress: ProgressFn | None = None) -> LayerRun:
    """The copy-move layer (:func:`scanlab.services.copymove.analyse_copymove`) as a :class:`LayerRun`."""
    from scanlab.services.copymove import (
        PAIR_COLOURS,
        analyse_copymove,
        copymove_json,
        detector_description,
    )

    res = analyse_copymove(scan, cancel=cancel, progress=progress)
    pairs = []
    for i, p in enumerate(res.pairs):
        pairs.append({**p.to_json(), "index": i + 1, "colour": list(PAIR_COLOURS[i % len(PAIR_COLOURS)]),
                      "source_outline": mask_outline(p.source_mask, p.source_box),
                      "target_outline": mask_outline(p.target_mask, p.target_box)})
    summary = {k: v for k, v in copymove_json(res).items() if k != "pairs"}
    return LayerRun("copymove", str(scan.info.path), str(scan.info.sha256), res.score.astype(np.float32),
                    res.no_evidence, pairs, summary, get_layer("copymove").experimental, detector_description())


__all__ = ["LAYER_KEY", "LayerRun", "copymove_run", "layer_key", "layer_of", "mask_outline", "model_free_layers",
           "run_layer"]
