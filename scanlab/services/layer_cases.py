"""A model-free layer's pairs in a case: each pair becomes two linked suggested ROIs.

Each end of a pair (``source`` and ``target``, see :mod:`scanlab.services.layer_runs`)
becomes one suggested polygon ROI whose ``stats`` carry ``layer`` (the registry name)
and, under that name, the pair's statistics: ``pair`` (its 1-based number in the run),
``end``, ``partner`` (the other end's ROI id), ``q``, ``q_null``, ``correlation``, ``z``, ``p_value``,
``transform``, ``rotation_deg``, ``scale``, ``area``, ``found_by``, ``source_box``,
``target_box`` and ``colour``. The reliability statistics of the region (as for any ROI)
sit beside them when the evidence has a stored run. Ids come from the evidence's one
allocator (:meth:`Evidence.next_roi_id`); a new run of the layer replaces that layer's
unreviewed suggestions only (reviewed ones stay). Every step is logged: ``layer_run``
(the summary and the caveat) and ``regions_suggested``. Call on the thread that owns
the case.
"""

from __future__ import annotations

from typing import Any

from scanlab.core.case.casefile import Case, CaseError, Evidence
from scanlab.core.case.rois import ROI
from scanlab.core.errors import ScanLabError
from scanlab.services.cases import compute_stats, evidence_id
from scanlab.services.layer_runs import LayerRun

PAIR_KEYS = ("q", "q_null", "correlation", "z", "p_value", "transform", "rotation_deg", "scale", "area", "found_by",
             "source_box", "target_box", "colour")


def is_layer_roi(roi: ROI) -> bool:
    """True for an ROI made from a layer's pair (it has a partner and pair statistics)."""
    layer = roi.stats.get("layer") if roi.stats else None
    return bool(layer) and isinstance(roi.stats.get(layer), dict)


def pair_of(roi: ROI) -> dict[str, Any]:
    """The pair statistics of a layer ROI (``{}`` for any other ROI)."""
    return dict(roi.stats[roi.stats["layer"]]) if is_layer_roi(roi) else {}


def suggest_layer_pairs(case: Case, run: LayerRun, *, user: str) -> list[ROI]:
    """Store ``run``'s pairs as suggested ROIs of the evidence it was computed on.

    Raises
    ------
    ScanLabError
        The case is read-only, or the scan is not evidence in this case.
    """
    if case.read_only:
        raise CaseError(f"{case.path}: the case is open read-only")
    e = case.evidence.get(evidence_id(run.sha256))
    if e is None:
        raise ScanLabError(f"{run.path}: not evidence in this case (add it first: scanlab case add)")
    e.rois = [r for r in e.rois if not (r.suggested and not r.reviewed and r.stats.get("layer") == run.layer)]
    new: list[ROI] = []
    for p in run.pairs:
        ends = []
        for end in ("source", "target"):
            stats = {"layer": run.layer,
                     run.layer: {"pair": p["index"], "end": end, **{k: p[k] for k in PAIR_KEYS if k in p}}}
            roi = ROI(e.next_roi_id(), "polygon", p[f"{end}_outline"], suggested=True, stats=stats)
            e.rois.append(roi)  # appended at once: the allocator sees it for the partner's id
            ends.append(roi)
        ends[0].stats[run.layer]["partner"], ends[1].stats[run.layer]["partner"] = ends[1].id, ends[0].id
        new += ends
    _with_reliability(e, new)
    e.rois.sort(key=lambda r: r.id)
    case.log(user, "layer_run", {"eid": e.eid, "layer": run.layer, "summary": _short(run.summary),
                                 "experimental": run.experimental},
             f"{e.eid}: {run.layer} layer, {len(run.pairs)} pair(s)")
    case.log(user, "regions_suggested", [r.to_dict() for r in new],
             f"{e.eid}: {len(new)} suggested regions from {len(run.pairs)} {run.layer} pair(s)")
    return new


def _with_reliability(e: Evidence, rois: list[ROI]) -> None:
    """Add the regions' reliability statistics from the stored run, as for any ROI (none without a run)."""
    if not e.runs or e.runs[-1].windows is None:
        return
    for r in rois:
        r.stats = compute_stats(e, r)


def _short(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: summary[k] for k in ("n_pairs", "n_candidates", "n_tests", "compute_s", "no_evidence_fraction")
            if k in summary}


__all__ = ["is_layer_roi", "pair_of", "suggest_layer_pairs"]
