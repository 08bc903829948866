"""The words of the case report: verdict and ROI tables, limitations (plain data, no drawing).

Kept apart from :mod:`scanlab.services.report` (layout and files) so the wording rules
are in one place: a number is called a confidence only for an attributed label, a
region without windows has no best-fitting scanner, the limitations say what this
model does (not what some model might do).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from scanlab.core.case.casefile import Case, Evidence
from scanlab.core.colormap import COLORMAPS, DEFAULT_COLORMAP
from scanlab.core.evidence.verdict import warnings_beside_reason
from scanlab.services.cases import evidence_problem, latest_run, unreviewed_suggestions

WEAKNESSES = [
    "Recompression (e.g. saving again as JPEG) and resampling (resizing, rotation other than by 90 degrees) "
    "weaken or erase the sensor traces; low reliability everywhere is then expected and not a sign of forgery.",
    "Copy-move within one scan, or a splice from another scan made by the same scanner model, carries the "
    "same traces and is not detected by this method.",
    "Regions smaller than the sub-image size, and borders (where fewer sub-images overlap), are measured less "
    "reliably; flat, saturated or empty areas carry little sensor signal.",
]
UNKNOWN_DETECTED = ("A scan from a scanner model the model was not trained on is answered 'unknown' when its "
                    "unknown score is above the model's threshold; a score just below it is still attributed to "
                    "a known class (the model card gives the measured rate on scanners it never saw).")
UNKNOWN_NOT_DETECTED = ("A scan from a scanner model the model was not trained on is still assigned to one of "
                        "its classes: this model has no unknown-scanner detector.")
NOT_AN_ATTRIBUTION = "fit of the top known class, not an attribution"
DEMO_NOTICE = ("DEMONSTRATION MODEL: trained on virtual (simulated) scanners only; it does not identify real "
               "scanner models. Do not attribute real evidence with it.")
ATTRIBUTION = ("Attribution names a scanner MODEL (a class the model was trained on), not one physical unit: "
               "two scanners of the same model cannot be told apart by this method.")


def para(text: Any, style: Any) -> Any:
    from reportlab.platypus import Paragraph

    return Paragraph(escape(str(text)).replace("\n", "<br/>"), style)


def pct(v: Any) -> str:
    return f"{100 * v:.1f}%" if isinstance(v, (int, float)) else "n/a"


def num(v: Any, fmt: str = ".3f") -> str:
    return format(v, fmt) if isinstance(v, (int, float)) else "n/a"


def no_evidence_fraction(e: Evidence) -> float | None:
    w = latest_run(e).windows
    return None if w is None or w.evidence is None else float(1.0 - w.evidence.mean())


def roi_rows(st: dict[str, Any]) -> list[list[str]]:
    ins, ring = st.get("inside") or {}, st.get("ring") or {}
    bs = st.get("best_scanner") or {}
    wt = st.get("window_test") or {}
    p = wt.get("p_value")
    # a "best" scanner needs windows inside the region to be measured on
    no_windows = not bs or bs.get("n_windows") == 0 or wt.get("n_inside") == 0
    best = ("none: no window inside the region" if no_windows else
            f"{bs.get('label', 'n/a')} ({bs.get('source', '-')}"
            + (f", {bs['n_windows']} windows" if bs.get("n_windows") else "") + ")")
    return [
        ["", "inside", "ring of equal area"],
        ["area (pixels)", str(st.get("area")), str(st.get("ring_area"))],
        ["mean reliability", num(ins.get("mean")), num(ring.get("mean"))],
        ["median reliability", num(ins.get("median")), num(ring.get("median"))],
        ["minimum reliability", num(ins.get("min")), num(ring.get("min"))],
        [f"below threshold {st.get('threshold')}", pct(st.get("below_threshold_fraction")), ""],
        ["no-evidence pixels", pct(st.get("no_evidence_fraction")), ""],
        ["best-fitting scanner", best, ""],
        ["Mann-Whitney U, windows", f"p = {p:.3g} (U = {wt.get('u'):.0f})" if p is not None else
         "not enough windows", f"{wt.get('n_inside', 0)} inside / {wt.get('n_outside', 0)} outside"],
    ]


def verdict_rows(c: dict[str, Any], card: dict[str, Any], ss: Any) -> list[list[Any]]:
    """The verdict table: a number is called a confidence only for an attributed label."""
    verdict = c.get("verdict")
    attributed = verdict in (None, "attributed")  # None: an old model without verdicts
    label = c.get("label")
    p_top = c.get("confidence") if c.get("confidence") is not None else (c.get("probabilities") or {}).get(label)
    kind = "calibrated probability" if c.get("calibrated") else "raw mean probability, uncalibrated"
    if label is None:
        conf_row = ["confidence", "none: no window carries sensor evidence"]
    elif attributed:
        conf_row = ["confidence", f"{num(p_top)} ({kind})"]
    else:
        conf_row = [NOT_AN_ATTRIBUTION, f"{num(p_top)} ({kind} of {label}; the verdict is {verdict})"]
    th = c.get("thresholds") or {}
    u = c.get("unknown_score")
    if u is None:
        unk = ("not computed: this model has no unknown-scanner detector" if th.get("unknown") is None
               else "not computed: no window carries sensor evidence")
    else:
        thr = th.get("unknown")
        above = thr is not None and u > thr
        unk = f"{num(u)} (threshold {num(thr)}; " + (
            "above it, but not evidence of another scanner for this file: see the reason)"
            if above and "unknown" in (c.get("verdict_before_delivery_rule"), c.get("verdict_before_coverage_rule"))
            else "above it: a scanner the model does not know)" if above else "below it)")
    vi = c.get("vote_interval")
    votes = c.get("votes") or {}
    n_votes = c.get("n_patches") or sum(votes.values())
    vf = c.get("vote_fraction", (votes.get(label, 0) / n_votes) if n_votes else None)
    shown = warnings_beside_reason(c.get("warnings"), c.get("reason"))
    input_notes = "; ".join(str(w.get("message", w.get("code"))) for w in shown) or "none"
    rows: list[list[Any]] = []
    if card.get("demonstration"):
        rows.append(["model", para(DEMO_NOTICE, ss["Warn"])])
    rows += [
        ["input checks (read first)", para(input_notes, ss["BodyText"]) if input_notes != "none" else "none"],
        ["verdict", str(verdict or "not given by this model (no open-set thresholds)")],
        ["label (scanner model)" if attributed else "top class among known scanners",
         "none: no window carries sensor evidence" if label is None
         else str(label) + ("" if attributed else " (not an attribution)")],
        conf_row,
        ["unknown-scanner score", unk],
        ["vote fraction", f"{pct(vf)} ({votes.get(label, 0)} of {n_votes} windows)"
         + (f", 95% interval {pct(vi[0])} - {pct(vi[1])}" if vi else ", interval not computed")],
        ["reason", str(c.get("reason") or "-")],
    ]
    return rows


def limitations(case: Case) -> list[str]:
    out = []
    detects_unknown = []
    for e in case.evidence.values():
        c = latest_run(e).info["classify"]
        votes = c.get("votes") or {}
        n = c.get("n_patches") or sum(votes.values())
        ne = no_evidence_fraction(e)
        # the model's detector, whether or not this scan had windows to score
        detects_unknown.append((c.get("thresholds") or {}).get("unknown") is not None)
        what = ("label" if c.get("verdict") in (None, "attributed") else
                f"verdict {c.get('verdict')}; top known class (not an attribution)")
        if c.get("label") is None:
            votes_txt = f"verdict {c.get('verdict')}; no label: no window carries sensor evidence"
        else:
            votes_txt = f"{what} {c.get('label')} from {votes.get(c.get('label'), 0)} of {n} window votes"
        ne_txt = ("no-evidence fraction not measured by this model version" if ne is None
                  else f"{pct(ne)} of the windows carry no sensor evidence")
        out.append(f"{Path(e.info['path']).name}: {votes_txt}; {ne_txt}.")
        if not c.get("calibrated"):
            out.append(f"{Path(e.info['path']).name}: the model is uncalibrated; probabilities are raw softmax "
                       "means, not calibrated confidences.")
        problem = evidence_problem(e)
        if problem:
            out.append(problem[1])
    un = unreviewed_suggestions(case)
    out.append(f"{len(un)} suggested region(s) not reviewed by the analyst"
               + (": " + ", ".join(f"{eid} ROI {r.id}" for eid, r in un) if un else "") + ".")
    if detects_unknown and all(detects_unknown):
        unknown = [UNKNOWN_DETECTED]
    elif any(detects_unknown):
        unknown = [UNKNOWN_DETECTED + " Not every analysis here had that detector: " + UNKNOWN_NOT_DETECTED]
    else:
        unknown = [UNKNOWN_NOT_DETECTED]
    return out + WEAKNESSES + unknown


def report_colormap(case: Case) -> str:
    """The colour map of the case view (the analyst's choice in the app); inferno when none is stored."""
    name = (case.view or {}).get("colormap")
    return name if name in COLORMAPS else DEFAULT_COLORMAP
