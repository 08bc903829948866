"""A model-free layer's pairs in a case: each pair becomes two linked suggested ROIs.

Each end of a pair (``source`` and ``target``, see :mod:`scanlab.services.layer_runs`)
becomes one suggested polygon ROI whose ``stats`` carry ``layer`` (the registry name)
and, under that name, the pair's statistics: ``pair`` (its 1-based number in the run),
``end``, ``partner`` (the other end's ROI id), ``q``, ``q_null``, ``correlation``, ``z``, ``p_value``,
``transform``, ``rotation_deg``, ``scale``, ``area``, ``found_by``, ``source_box``,
``target_box``, ``colour`` and ``run`` (the id of the run's stored record,
:func:`scanlab.services.layer_records.record_id`). The reliability statistics of the region (as for any ROI)
sit beside them when the evidence has a stored run. Ids come from the evidence's one
allocator (:meth:`Evidence.next_roi_id`); a new run of the layer replaces that layer's
unreviewed suggestions only (reviewed ones stay). The run's record (layer, detector,
every pair, the score map's digest; :mod:`scanlab.services.layer_records`) is kept in
``Evidence.layer_runs`` so ``scanlab verify`` can re-run it. Every step is logged:
``layer_run`` (payload: the record) and ``regions_suggested``. Call on the thread that
owns the case.
"""

from __future__ import annotations

from typing import Any

from scanlab.core.case.casefile import Case, CaseError, Evidence, now_iso
from scanlab.core.case.rois import ROI
from scanlab.core.errors import ScanLabError
from scanlab.services.cases import compute_stats, evidence_id
from scanlab.services.layer_records import RECORD_MARK, layer_record, record_id
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
    if run.sha256 != e.info.get("sha256"):  # (the eid is a prefix: make sure the whole hash agrees)
        raise ScanLabError(f"{run.path}: not the bytes of evidence {e.eid} (SHA-256 differs)")
    record = layer_record(run, e.eid, now_iso())
    rid = record_id(record)
    e.rois = [r for r in e.rois if not (r.suggested and not r.reviewed and r.stats.get("layer") == run.layer)]
    new: list[ROI] = []
    for p in run.pairs:
        ends = []
        for end in ("source", "target"):
            stats = {"layer": run.layer,
                     run.layer: {"pair": p["index"], "end": end, **{k: p[k] for k in PAIR_KEYS if k in p},
                                 "run": rid}}
            roi = ROI(e.next_roi_id(), "polygon", p[f"{end}_outline"], suggested=True, stats=stats)
            e.rois.append(roi)  # appended at once: the allocator sees it for the partner's id
            ends.append(roi)
        ends[0].stats[run.layer]["partner"], ends[1].stats[run.layer]["partner"] = ends[1].id, ends[0].id
        new += ends
    _with_reliability(e, new)
    e.rois.sort(key=lambda r: r.id)
    e.layer_runs.append(record)
    case.log(user, "layer_run", record,
             f"{e.eid}: {run.layer} layer, {len(run.pairs)} pair(s), {RECORD_MARK} {rid} "
             f"(map digest {record['map']['sha256'][:16]})")
    case.log(user, "regions_suggested", [r.to_dict() for r in new],
             f"{e.eid}: {len(new)} suggested regions from {len(run.pairs)} {run.layer} pair(s)")
    return new


def _with_reliability(e: Evidence, rois: list[ROI]) -> None:
    """Add the regions' reliability statistics from the stored run, as for any ROI (none without a run)."""
    if not e.runs or e.runs[-1].windows is None:
        return
    for r in rois:
        r.stats = compute_stats(e, r)


def record_of(records: list[dict[str, Any]], roi: ROI) -> dict[str, Any] | None:
    """The record among ``records`` (an evidence's ``layer_runs``) of the run a layer ROI came from
    (None: an ROI made before records were kept, or a record no longer in the case)."""
    rid = pair_of(roi).get("run")
    return next((rec for rec in records if rid and record_id(rec) == rid), None)


__all__ = ["is_layer_roi", "pair_of", "record_of", "suggest_layer_pairs"]
