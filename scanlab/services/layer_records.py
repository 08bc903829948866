"""The stored record of one model-free layer run in a case, and its re-check by ``scanlab verify``.

A record (docs/formats.md section 6, "Layer run records") is plain JSON: the layer's
name, what determines its output (``detector``: the function, the ScanLab version, a
SHA-256 of the detector's source files and its parameters), the scan's shape, the
run's summary, every pair (the pair objects of section 5b with ``index`` and
``colour``, without the outlines, which the ROIs carry) and a digest of the score
map (:func:`map_digest`). The map itself is not stored: it is re-computed from the
evidence, whose SHA-256 the case checks, and compared through the digest.

The record is the payload of the run's ``layer_run`` audit entry, so a record edited
inside the case file no longer matches the hash logged when it was made.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import numpy as np

from scanlab.core.case.casefile import canonical, sha256_text
from scanlab.services.layer_runs import LayerRun

RECORD_VERSION = 1
MAP_QUANTUM = 1e-3  # the map is quantised to this step before it is hashed
NAN_CODE = 65535  # the quantised value of a NaN (no evidence) pixel
RECORD_MARK = "record stored"  # in the detail line of a layer_run entry whose record the case holds

# Figures of a pair and how verify compares them: "exact", or the absolute tolerance.
# Figures stored rounded coarser than verify.PROB_TOL get one unit of their rounding.
PAIR_TOL: dict[str, str | float] = {
    "index": "exact", "source_box": "exact", "target_box": "exact", "area": "exact", "found_by": "exact",
    "colour": "exact", "q": 1e-4, "q_null": 1e-4, "p_value": 1e-4, "correlation": 1e-4, "z": 0.01,
    "transform": 1e-4, "rotation_deg": 1e-4, "scale": 1e-4,
}
# Figures of the run's summary (compute_s is a timing and not compared).
SUMMARY_TOL: dict[str, str | float] = {
    "n_pairs": "exact", "n_candidates": "exact", "n_tests": "exact", "z_bar": 0.01, "noise_level": 1e-3,
    "inflation": 1e-3, "no_evidence_fraction": 1e-4,
}


def map_digest(score: np.ndarray) -> dict[str, Any]:
    """Digest of a score map: SHA-256 of the map quantised to :data:`MAP_QUANTUM`, and two counts.

    Each pixel becomes ``round(v / MAP_QUANTUM)`` as uint16 (NaN becomes :data:`NAN_CODE`),
    row-major, little-endian; the hash is taken over ``"H,W;"`` (ASCII) followed by those bytes.
    """
    s = np.asarray(score, np.float32)
    nan = np.isnan(s)
    q = np.rint(np.where(nan, 0.0, np.clip(s, 0.0, 1.0)) / MAP_QUANTUM).astype("<u2")
    q[nan] = NAN_CODE
    h = hashlib.sha256(f"{s.shape[0]},{s.shape[1]};".encode("ascii"))
    h.update(np.ascontiguousarray(q).tobytes())
    return {"sha256": h.hexdigest(), "quantum": MAP_QUANTUM, "n_ge_half": int(np.count_nonzero(s >= 0.5)),
            "n_nan": int(np.count_nonzero(nan)), "shape": [int(s.shape[0]), int(s.shape[1])]}


def pair_record(p: dict[str, Any]) -> dict[str, Any]:
    """A pair as the record stores it: every figure, not the outlines (the ROIs carry those)."""
    return {k: v for k, v in p.items() if not k.endswith("_outline")}


def layer_record(run: LayerRun, eid: str, time: str) -> dict[str, Any]:
    """The record of ``run`` on evidence ``eid`` (the ``layer_run`` payload)."""
    digest = run.map_digest or map_digest(run.score)
    return {"record_version": RECORD_VERSION, "eid": eid, "layer": run.layer, "time": time,
            "evidence_sha256": run.sha256, "detector": run.detector, "shape": list(run.shape),
            "summary": run.summary, "pairs": [pair_record(p) for p in run.pairs], "map": digest,
            "experimental": run.experimental}


def record_id(record: dict[str, Any]) -> str:
    """The id a pair ROI names its record by: the first 16 hex digits of the record's hash."""
    return record_sha256(record)[:16]


def record_sha256(record: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a record (= its ``layer_run`` entry's ``payload_sha256``)."""
    return sha256_text(canonical(record))


def short(v: Any, width: int = 80) -> str:
    """A value for a one-line reason of verify (floats to 6 digits; long lists and dicts cut at ``width``)."""
    text = f"{v:.6g}" if isinstance(v, float) else repr(v)
    return text if len(text) <= width else text[: width - 3] + "..."


def _short(v: Any) -> str:
    return short(v, 60)


def close(a: Any, b: Any, tol: float) -> bool:
    """``a`` and ``b`` equal, numbers (in nested dicts and lists) within ``tol``, NaN only equal to NaN.

    The comparison ``scanlab verify`` applies to every stored figure.
    """
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k], tol) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(close(x, y, tol) for x, y in zip(a, b, strict=True))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return abs(float(a) - float(b)) <= tol
    return a == b


def _same(a: Any, b: Any, how: str | float) -> bool:
    return a == b if how == "exact" else close(a, b, float(how))


def compare_records(where: str, old: dict[str, Any], new: dict[str, Any]) -> tuple[list[str], list[str]]:
    """A stored record against its re-computation: (differences, warnings), one line each."""
    diffs: list[str] = []
    warns: list[str] = []
    od, nd = old.get("detector") or {}, new.get("detector") or {}
    if od.get("source_sha256") != nd.get("source_sha256"):
        warns.append(f"{where}: the detector's code changed since the run was recorded (source "
                     f"{str(od.get('source_sha256'))[:12]} then, {str(nd.get('source_sha256'))[:12]} now; "
                     f"ScanLab {od.get('scanlab_version')} then, {nd.get('scanlab_version')} now); figures compared")
    if od.get("parameters") != nd.get("parameters"):
        changed = sorted(k for k in set(od.get("parameters") or {}) | set(nd.get("parameters") or {})
                         if (od.get("parameters") or {}).get(k) != (nd.get("parameters") or {}).get(k))
        warns.append(f"{where}: the detector's parameters changed since the run was recorded "
                     f"({', '.join(changed)}); figures compared")
    if old.get("evidence_sha256") != new.get("evidence_sha256"):
        diffs.append(f"{where}: computed on evidence {str(old.get('evidence_sha256'))[:16]}, "
                     f"re-run on {str(new.get('evidence_sha256'))[:16]}")
    if old.get("shape") != new.get("shape"):
        diffs.append(f"{where}: shape {old.get('shape')} stored, {new.get('shape')} on re-run")
    os_, ns = old.get("summary") or {}, new.get("summary") or {}
    for key, how in SUMMARY_TOL.items():
        if key in os_ or key in ns:
            if not _same(os_.get(key), ns.get(key), how):
                diffs.append(f"{where}: {key} {_short(os_.get(key))} stored, {_short(ns.get(key))} on re-run")
    op, np_ = old.get("pairs") or [], new.get("pairs") or []
    if len(op) != len(np_):
        diffs.append(f"{where}: {len(op)} pair(s) stored, {len(np_)} on re-run")
    for i, (a, b) in enumerate(zip(op, np_, strict=False), 1):
        for key, how in PAIR_TOL.items():
            if (key in a or key in b) and not _same(a.get(key), b.get(key), how):
                diffs.append(f"{where}: pair {i} {key} {_short(a.get(key))} stored, {_short(b.get(key))} on re-run")
    om, nm = old.get("map") or {}, new.get("map") or {}
    for key in ("n_ge_half", "n_nan", "shape"):
        if om.get(key) != nm.get(key):
            diffs.append(f"{where}: score map {key} {om.get(key)} stored, {nm.get(key)} on re-run")
    if om.get("quantum") != nm.get("quantum"):
        warns.append(f"{where}: the map digest was taken at step {om.get('quantum')}, now {nm.get('quantum')}; "
                     "digests not compared")
    elif om.get("sha256") != nm.get("sha256"):
        diffs.append(f"{where}: score map digest {str(om.get('sha256'))[:16]} stored, "
                     f"{str(nm.get('sha256'))[:16]} on re-run (quantised to {om.get('quantum')})")
    return diffs, warns


__all__ = ["MAP_QUANTUM", "PAIR_TOL", "RECORD_MARK", "RECORD_VERSION", "SUMMARY_TOL", "close", "compare_records",
           "short",
           "layer_record", "map_digest", "pair_record", "record_id", "record_sha256"]
