"""``scanlab verify``: re-run every analysis stored in a case and check every figure.

What is compared, and how strictly:

* the audit chain: every entry's hash and link (exact);
* evidence files: present, SHA-256 as recorded (exact);
* every stored run against the audit entry that recorded it (exact: a figure
  edited inside the case file no longer matches the hash logged when it was made);
* every run re-computed with the model copy stored in the case:
  every figure the report prints: label, verdict, votes, reason, warnings,
  no-evidence count, scan block exact; class probabilities, confidence, unknown
  score, vote fraction and interval, thresholds within ``PROB_TOL`` absolute;
  the window probabilities (from which every map is derived) and the
  unknown-score grid within ``PROB_TOL``, the no-evidence mask exact. A verdict
  that tips while the probabilities are within tolerance is a difference too:
  the analyst reads the verdict;
* every ROI's statistics, recomputed from the stored window grid, within ``PROB_TOL``;
* every stored model-free layer run (copy-move; :mod:`scanlab.services.layer_records`):
  the record against its ``layer_run`` audit entry (exact), then the layer re-run
  through the registry's service on the evidence and compared: shape, number of pairs,
  each pair's boxes, area, index and colour, the summary's counts and the score map's
  digest and counts exact; the pair statistics within ``layer_records.PAIR_TOL``
  (``PROB_TOL``, or one unit of the stored rounding where that is coarser: ``z`` 0.01)
  and the summary's figures within ``layer_records.SUMMARY_TOL``. A changed detector
  (source or parameters) is a warning; its figures are compared all the same. Each
  pair ROI's figures must equal its run's stored pair. A ``layer_run`` entry of a
  case written before records were kept is a warning (nothing to re-check), one
  whose record is gone is a difference.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from scanlab.core.case.casefile import Case, Evidence, canonical, sha256_text, verify_chain
from scanlab.core.errors import ScanLabError
from scanlab.core.jobs import CancelToken, ProgressFn
from scanlab.services.analysis import AnalysisRequest, run_analysis
from scanlab.services.cases import compute_stats, evidence_problem, run_to_case
from scanlab.services.layer_cases import PAIR_KEYS, is_layer_roi, pair_of, record_of
from scanlab.services.layer_records import (
    MAP_QUANTUM,
    PAIR_TOL,
    RECORD_MARK,
    SUMMARY_TOL,
    close,
    compare_records,
    layer_record,
    record_sha256,
    short,
)
from scanlab.services.layer_runs import run_layer

PROB_TOL = 1e-4


def verify_case(case: Case, *, device: str = "auto", cancel: CancelToken | None = None,
                progress: ProgressFn | None = None) -> dict[str, Any]:
    """Check a case; returns ``{"ok", "differences", "warnings", "checked"}``.

    ``differences`` name what differs (evidence, run, figure), one line each;
    ``ok`` is True when there are none. Warnings do not make a case fail.
    Nothing in ``case`` is changed: logging a verification is the caller's choice.
    """
    diffs: list[str] = []
    warns: list[str] = []
    checked = {"audit_entries": len(case.audit), "evidence": 0, "runs": 0, "rois": 0, "layer_runs": 0}
    diffs += verify_chain(case.audit)
    logged = {e["payload_sha256"] for e in case.audit if e.get("action") == "analysis_run"}
    with tempfile.TemporaryDirectory(prefix="scanlab-verify-") as tmp:
        for e in case.evidence.values():
            checked["evidence"] += 1
            problem = evidence_problem(e)
            if problem is not None:
                diffs.append(problem[1])
                continue
            for i, run in enumerate(e.runs):
                where = f"evidence {e.eid} run {i:03d}"
                if sha256_text(canonical(run.info)) not in logged:
                    diffs.append(f"{where}: stored run does not match the audit log (edited after it was recorded)")
                msha = run.info["model"]["sha256"]
                data = case.models.get(msha)
                if data is None:
                    diffs.append(f"{where}: the case holds no copy of model {msha[:16]}")
                    continue
                if hashlib.sha256(data).hexdigest() != msha:
                    diffs.append(f"{where}: the stored model copy {msha[:16]} is damaged")
                    continue
                mpath = Path(tmp) / f"{msha}.safetensors"
                if not mpath.exists():
                    mpath.write_bytes(data)
                prm = run.info["parameters"]
                req = AnalysisRequest(path=e.info["path"], model=str(mpath), sub=tuple(prm["sub"]),
                                      stride=tuple(prm["stride"]), vote_sub=tuple(prm.get("vote_sub", (64, 64))),
                                      engine=run.info.get("engine"), device=device, label=prm.get("label"))
                new_info, new_w = run_to_case(run_analysis(req, cancel=cancel, progress=progress))
                checked["runs"] += 1
                diffs += _compare_run(where, run.info, new_info, run.windows, new_w, warns)
            for roi in e.rois:
                checked["rois"] += 1
                fresh = compute_stats(e, roi, threshold=roi.stats.get("threshold", 0.5))
                stored = {k: roi.stats.get(k) for k in fresh}
                if not close(stored, fresh, PROB_TOL):
                    bad = [k for k in fresh if not close(stored[k], fresh[k], PROB_TOL)]
                    diffs.append(f"evidence {e.eid} ROI {roi.id}: stored statistics differ ({', '.join(bad)})")
            d, w = _verify_layer_runs(case, e, checked, cancel=cancel, progress=progress)
            diffs += d
            warns += w
    return {"ok": not diffs, "differences": diffs, "warnings": warns, "checked": checked,
            "tolerance": {"probabilities": PROB_TOL, "maps": PROB_TOL, "layer_pairs": dict(PAIR_TOL),
                          "layer_summary": dict(SUMMARY_TOL), "layer_map_quantum": MAP_QUANTUM}}


def _verify_layer_runs(case: Case, e: Evidence, checked: dict[str, int], *, cancel: CancelToken | None,
                       progress: ProgressFn | None) -> tuple[list[str], list[str]]:
    """Re-check every stored layer run of ``e``, its pair ROIs and its ``layer_run`` audit entries."""
    diffs: list[str] = []
    warns: list[str] = []
    logged = {a["payload_sha256"] for a in case.audit if a.get("action") == "layer_run"}
    fresh_of: dict[str, Any] = {}  # one re-run per layer: every record of it is compared with that
    for i, rec in enumerate(e.layer_runs):
        where = f"evidence {e.eid} {rec.get('layer')} layer run {i:03d}"
        if record_sha256(rec) not in logged:
            diffs.append(f"{where}: stored record does not match the audit log (edited after it was recorded)")
        name = str(rec.get("layer"))
        if name not in fresh_of:
            try:
                fresh_of[name] = run_layer(name, e.info["path"], cancel=cancel, progress=progress)
            except ScanLabError as err:
                fresh_of[name] = err
        fresh = fresh_of[name]
        if isinstance(fresh, ScanLabError):
            diffs.append(f"{where}: could not be re-run ({fresh})")
            continue
        checked["layer_runs"] += 1
        d, w = compare_records(where, rec, layer_record(fresh, e.eid, str(rec.get("time"))))
        diffs += d
        warns += w
    for roi in e.rois:
        if not is_layer_roi(roi) or not pair_of(roi).get("run"):
            continue  # an ROI made before records were kept: nothing to compare it with
        p, layer = pair_of(roi), roi.stats["layer"]
        rec = record_of(e.layer_runs, roi)
        if rec is None:
            diffs.append(f"evidence {e.eid} ROI {roi.id}: its {layer} run {p['run']} is not stored in the case")
            continue
        stored = next((q for q in rec.get("pairs", []) if q.get("index") == p.get("pair")), None)
        if stored is None:
            diffs.append(f"evidence {e.eid} ROI {roi.id}: {layer} run {p['run']} has no pair {p.get('pair')}")
            continue
        bad = [k for k in PAIR_KEYS if p.get(k) != stored.get(k)]
        if bad:
            diffs.append(f"evidence {e.eid} ROI {roi.id}: {layer} pair {p.get('pair')} figures differ from the "
                         f"stored run ({', '.join(bad)})")
    stored_hashes = {record_sha256(r) for r in e.layer_runs}
    for a in case.audit:
        if a.get("action") != "layer_run" or not str(a.get("detail", "")).startswith(f"{e.eid}:"):
            continue
        if a["payload_sha256"] in stored_hashes:
            continue
        if RECORD_MARK in a.get("detail", ""):  # the detail is covered by the chain: this run had a record
            diffs.append(f"evidence {e.eid}: audit entry {a.get('seq')} ({a['detail']}): no stored record "
                         "matches it (removed or edited)")
        else:
            warns.append(f"evidence {e.eid}: the layer run of audit entry {a.get('seq')} ({a['detail']}) predates "
                         "re-checking: the case holds no record of it; not re-run")
    return diffs, warns


# Figures of the classify entry (the verdict table of the report) and how each is compared:
# "tol" within PROB_TOL (recursively for dicts and lists), "exact" equal.
_CLASSIFY_FIELDS: dict[str, str] = {
    "label": "exact", "verdict": "exact", "votes": "exact", "n_patches": "exact",
    "probabilities": "tol", "confidence": "tol", "calibrated": "exact", "unknown_score": "tol",
    "vote_fraction": "tol", "vote_interval": "tol", "thresholds": "tol", "reason": "exact",
    "n_no_evidence": "exact", "warnings": "exact", "scan": "exact",
    "verdict_before_delivery_rule": "exact", "verdict_before_coverage_rule": "exact",
}




def _grid_diff(where: str, what: str, old: np.ndarray | None, new: np.ndarray | None, tol: float | None
               ) -> str | None:
    """One reason when two stored grids differ (``tol`` None: exact), else None."""
    if old is None and new is None:
        return None
    if old is None or new is None:
        return f"{where}: {what} {'missing from the case' if old is None else 'stored but not re-computed'}"
    a, b = np.asarray(old), np.asarray(new)
    if a.shape != b.shape:
        return f"{where}: {what} shape {a.shape} != {b.shape}"
    if tol is None:
        n = int(np.count_nonzero(a.astype(bool) != b.astype(bool)))
        return f"{where}: {what} differs in {n} of {a.size} windows" if n else None
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    nan_diff = int(np.count_nonzero(np.isnan(a64) != np.isnan(b64)))
    both = ~(np.isnan(a64) | np.isnan(b64))
    m = float(np.max(np.abs(a64[both] - b64[both]))) if both.any() else 0.0
    if nan_diff or m > tol:
        return f"{where}: {what} differs (max {m:.2e} > {tol:g}" + (f", {nan_diff} NaN windows differ)" if nan_diff
                                                                   else ")")
    return None


def _ugrid(old_w: Any, new_w: Any) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The unknown-score grids of two runs; a window-position change counts as a difference."""
    def one(w: Any) -> np.ndarray | None:
        g = getattr(w, "unknown_grid", None)
        if g is None:
            return None
        scores, ys, xs = g
        # positions folded in so a moved grid of equal shape still differs
        return np.concatenate([np.asarray(scores, np.float64).ravel(), np.asarray(ys, np.float64),
                               np.asarray(xs, np.float64)])
    return one(old_w), one(new_w)


def _compare_run(where: str, old: dict[str, Any], new: dict[str, Any], old_w: Any, new_w: Any,
                 warnings: list[str] | None = None) -> list[str]:
    """Every figure of a stored run against its re-computation; one reason per difference.

    Compared: every classify figure the report prints (``_CLASSIFY_FIELDS``), the
    map label and shape, the window probabilities, the no-evidence mask and the
    unknown-score grid. A verdict or vote change is a difference even when the
    probabilities are within tolerance: the analyst reads the verdict, not the
    probabilities.
    """
    diffs: list[str] = []
    a, b = old["classify"], new["classify"]
    for key, how in _CLASSIFY_FIELDS.items():
        va, vb = a.get(key), b.get(key)
        if key == "probabilities" and isinstance(va, dict) and isinstance(vb, dict) and va.keys() == vb.keys():
            worst = max((abs(va[k] - vb[k]) for k in va), default=0.0)
            if worst > PROB_TOL:
                diffs.append(f"{where}: class probabilities differ (max {worst:.2e} > {PROB_TOL:g})")
            continue
        same = close(va, vb, PROB_TOL) if how == "tol" else va == vb
        if not same:
            diffs.append(f"{where}: {key} {short(va)} stored, {short(vb)} on re-analysis")
    for key in ("map_label", "shape"):
        if old.get(key) != new.get(key):
            diffs.append(f"{where}: {key} {short(old.get(key))} stored, {short(new.get(key))} on re-analysis")
    if old_w is not None and new_w is not None:
        for what, ga, gb, tol in (
            ("map window probabilities", old_w.probs, new_w.probs, PROB_TOL),
            ("no-evidence mask", old_w.evidence, new_w.evidence, None),
            ("unknown-score map grid", old_w.unknown_score, new_w.unknown_score, PROB_TOL),
            ("unknown-score grid", *_ugrid(old_w, new_w), PROB_TOL),
        ):
            if what == "unknown-score grid" and ga is None and gb is not None and warnings is not None:
                # cases written before the grid was stored: nothing to compare it with
                warnings.append(f"{where}: the unknown-score grid is not stored (older case file); not compared")
                continue
            d = _grid_diff(where, what, ga, gb, tol)
            if d is not None:
                diffs.append(d)
    elif old_w is None:
        diffs.append(f"{where}: the case holds no window grid for this run")
    return diffs
