"""``scanlab verify``: re-run every analysis stored in a case and check every figure.

What is compared, and how strictly:

* the audit chain: every entry's hash and link (exact);
* evidence files: present, SHA-256 as recorded (exact);
* every stored run against the audit entry that recorded it (exact: a figure
  edited inside the case file no longer matches the hash logged when it was made);
* every run re-computed with the model copy stored in the case:
  label exact; class probabilities and window probabilities (from which every
  map is derived) within ``PROB_TOL`` absolute; votes and verdict exact, except
  that a vote or verdict change while every probability is within tolerance is a
  warning (a value sitting on a threshold can tip either way across devices);
* every ROI's statistics, recomputed from the stored window grid, within ``PROB_TOL``.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from scanlab.core.case.casefile import Case, canonical, sha256_text, verify_chain
from scanlab.core.jobs import CancelToken, ProgressFn
from scanlab.services.analysis import AnalysisRequest, run_analysis
from scanlab.services.cases import compute_stats, evidence_problem, run_to_case

PROB_TOL = 1e-4


def _close(a: Any, b: Any, tol: float) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k], tol) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_close(x, y, tol) for x, y in zip(a, b, strict=True))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return abs(float(a) - float(b)) <= tol
    return a == b


def verify_case(case: Case, *, device: str = "auto", cancel: CancelToken | None = None,
                progress: ProgressFn | None = None) -> dict[str, Any]:
    """Check a case; returns ``{"ok", "differences", "warnings", "checked"}``.

    ``differences`` name what differs (evidence, run, figure); ``ok`` is True
    when there are none. Warnings do not make a case fail.
    """
    diffs: list[str] = []
    warns: list[str] = []
    checked = {"audit_entries": len(case.audit), "evidence": 0, "runs": 0, "rois": 0}
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
                import hashlib

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
                d, w = _compare_run(where, run.info, new_info, run.windows, new_w)
                diffs += d
                warns += w
            for roi in e.rois:
                checked["rois"] += 1
                fresh = compute_stats(e, roi, threshold=roi.stats.get("threshold", 0.5))
                stored = {k: roi.stats.get(k) for k in fresh}
                if not _close(stored, fresh, PROB_TOL):
                    bad = [k for k in fresh if not _close(stored[k], fresh[k], PROB_TOL)]
                    diffs.append(f"evidence {e.eid} ROI {roi.id}: stored statistics differ ({', '.join(bad)})")
    return {"ok": not diffs, "differences": diffs, "warnings": warns, "checked": checked,
            "tolerance": {"probabilities": PROB_TOL, "maps": PROB_TOL}}


def _compare_run(where: str, old: dict[str, Any], new: dict[str, Any], old_w: Any, new_w: Any
                 ) -> tuple[list[str], list[str]]:
    diffs, warns = [], []
    a, b = old["classify"], new["classify"]
    probs_ok = _close(a.get("probabilities"), b.get("probabilities"), PROB_TOL)
    if not probs_ok:
        worst = max(abs(a["probabilities"].get(k, 0) - v) for k, v in b["probabilities"].items())
        diffs.append(f"{where}: class probabilities differ (max {worst:.2e} > {PROB_TOL:g})")
    if old_w is not None:
        if old_w.probs.shape != new_w.probs.shape:
            diffs.append(f"{where}: window grid shape {old_w.probs.shape} != {new_w.probs.shape}")
        else:
            m = float(np.max(np.abs(old_w.probs - new_w.probs))) if old_w.probs.size else 0.0
            if m > PROB_TOL:
                diffs.append(f"{where}: map window probabilities differ (max {m:.2e} > {PROB_TOL:g})")
    if a.get("label") != b.get("label"):
        diffs.append(f"{where}: label {a.get('label')} != {b.get('label')} on re-analysis")
    for key in ("verdict", "votes", "n_patches"):
        if a.get(key) != b.get(key):
            msg = f"{where}: {key} {a.get(key)} -> {b.get(key)}"
            if probs_ok and key != "n_patches":
                warns.append(msg + " (probabilities within tolerance: a value on a threshold tipped)")
            else:
                diffs.append(msg)
    return diffs, warns
