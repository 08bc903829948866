"""The registration point of analysis layers: one entry per per-pixel map a scan can get.

The CLI's ``map --what`` choices, ``classify --layers`` and (as they adopt it) the
app's "Map of", the case and the report enumerate :data:`LAYERS` instead of naming
layers themselves. A layer says what it computes, how each map format stores it,
and whether it needs the scanner CNN (``needs_model``): layers that do are computed
from an :class:`~scanlab.services.analysis.AnalysisResult`; layers that do not
(copy-move) run on the decoded pixels alone and never load torch.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Layer:
    """One analysis layer."""

    name: str  # the --what value
    title: str  # human title (menus, report headings)
    computes: str  # one line: what the map's values mean
    npy: str  # what OUT.npy holds
    h5: str  # what OUT.h5 holds
    png: str  # what OUT.png shows
    needs_model: bool = True
    summary_in_classify: str = "always"  # "always", "on request" (classify --layers NAME) or "never"
    experimental: str = ""  # non-empty: why its answers are not yet to be relied on (said on every use)
    # model-free layers: "module:function" turning a decoded Scan into a LayerRun
    # (scanlab.services.layer_runs); the app, the case and the report run the layer through it
    service: str = ""


LAYERS: dict[str, Layer] = {}


def register_layer(layer: Layer) -> Layer:
    """Add ``layer`` to :data:`LAYERS` (a second layer of the same name is an error)."""
    if layer.name in LAYERS:
        raise ValueError(f"analysis layer {layer.name!r} is already registered")
    LAYERS[layer.name] = layer
    return layer


def layer_names() -> list[str]:
    """Registered layer names, in registration order."""
    return list(LAYERS)


def get_layer(name: str) -> Layer:
    """The layer called ``name``; ValueError naming the choices otherwise."""
    try:
        return LAYERS[name]
    except KeyError:
        raise ValueError(f"unknown analysis layer {name!r}; expected one of {', '.join(LAYERS)}") from None


register_layer(Layer(
    "reliability", "Reliability",
    "P_s(x): probability that pixel x was made by the image's scanner s (eq. 1), NaN where uncovered",
    "H x W float32, NaN = no evidence", "/reliability, /no_evidence, /windows, provenance attributes",
    "colour ramp 0..1, no evidence hatched grey",
))
register_layer(Layer(
    "class", "Attribution",
    "per-pixel best-fitting scanner class (index into the model's classes), -1 = no evidence",
    "H x W int16, -1 = no evidence", "/class_index (attribute class_names), /no_evidence, /windows",
    "one colour per class with a legend",
))
register_layer(Layer(
    "unknown", "Unknown scanner",
    "per-window unknown-scanner score of the model's open-set scorer",
    "H x W float32, NaN = no evidence", "/unknown_score, /unknown_windows, /no_evidence",
    "colour ramp 0..1",
))
register_layer(Layer(
    "copymove", "Copy-move",
    "regions copied inside the scan, identical up to the last save: >= 0.5 on both ends of every reported pair",
    "H x W float32 in [0, 1], NaN = no evidence", "/copymove, /no_evidence, /pairs/NNN (boxes, masks, transform, statistics)",
    "the scan, each pair's two ends outlined in one colour per pair and linked",
    needs_model=False, summary_in_classify="on request", service="scanlab.services.layer_runs:copymove_run",
    experimental=("on the benchmark's re-compressed document forgeries it found 4 copies in 12 (pixel AUC 0.84, "
                  "F1 0.66: 2 of 3 stamps or signatures, 1 of 3 words, 1 of 3 single digits, no blank-paper "
                  "patch; at JPEG 75 2 of 4; rotated or scaled copies 1 of 3); a copy on its source's row is "
                  "found only when near-identical, and a patch of clipped (pure white) paper cannot be told from "
                  "other paper (BENCHMARKS.md), so 'no pair' is not evidence that nothing was copied"),
))

__all__ = ["LAYERS", "Layer", "get_layer", "layer_names", "register_layer"]
