"""The delivery-chain verdict rule: a re-saved JPEG gets no answer the model's own measurement does not support."""

from __future__ import annotations

import numpy as np
import pytest

from scanlab.core.evidence.gating import delivery_risk
from scanlab.core.evidence.verdict import DEFAULT_THRESHOLDS, decide

TI = {"formats": {"JPEG": 30}, "jpeg_quality": [85, 95], "bit_depths": [8]}
TH = dict(DEFAULT_THRESHOLDS, unknown=0.5)
# the shipped model's own figures (trained_models/, bench_delivery.py): q75 attributes 10% right, 10% wrong
MEASURED = {"known_scans": 20, "verdicts": "before the delivery-chain rule", "rows": {
    "as scanned": {"kind": "none", "parameter": None, "known_right": 0.95, "known_wrong": 0.0,
                   "known_unknown_or_inconclusive": 0.05},
    "jpeg-q90": {"kind": "jpeg", "parameter": 90, "known_right": 0.97, "known_wrong": 0.0,
                 "known_unknown_or_inconclusive": 0.03},
    "jpeg-q75": {"kind": "jpeg", "parameter": 75, "known_right": 0.1, "known_wrong": 0.1,
                 "known_unknown_or_inconclusive": 0.8},
}}


def _jpeg(q, again=True):
    return {"quality": q, "recompressed": again, "recompression_score": 0.9 if again else 0.0}


def _vote(u):
    """A clear vote for class 0 (9 of 10 windows, p 0.9) with unknown score ``u``."""
    return dict(votes=np.array([9, 1]), mean_probs=np.array([0.9, 0.1]), label_index=0, n_evidence=10,
                n_no_evidence=0, unknown_score=u, thresholds=TH, calibrated=True)


def test_a_resaved_jpeg_the_model_misattributes_at_that_quality_is_not_attributed():
    risk = delivery_risk(_jpeg(74), TI, MEASURED, TH)
    assert "50% of this model's attributions" in risk["attributed"] and "quality 75 (n = 20)" in risk["attributed"]
    v = decide(**_vote(0.1), delivery_risk=risk)
    assert v.verdict == "inconclusive" and v.before_delivery_rule == "attributed"
    assert "not an attribution" in v.reason and v.to_json()["verdict_before_delivery_rule"] == "attributed"
    # and "unknown" does not stand either: the model rejects 80% of its own scanners' scans re-saved so
    v = decide(**_vote(0.9), delivery_risk=risk)
    assert v.verdict == "inconclusive" and v.before_delivery_rule == "unknown" and "rejects 80%" in v.reason


def test_a_quality_the_model_handles_keeps_its_attribution():
    """At quality 90 the measured attributions were all right and 3% were rejected: both verdicts stand."""
    assert delivery_risk(_jpeg(89), TI, MEASURED, TH) is None
    assert decide(**_vote(0.1), delivery_risk=delivery_risk(_jpeg(89), TI, MEASURED, TH)).verdict == "attributed"
    assert decide(**_vote(0.9), delivery_risk=None).verdict == "unknown"


def test_the_rule_applies_only_to_files_outside_what_the_model_was_trained_on():
    assert delivery_risk(_jpeg(90, again=False), TI, MEASURED, TH) is None  # a scanner's own JPEG, in range
    assert delivery_risk(None, TI, MEASURED, TH) is None  # not a JPEG
    assert delivery_risk(_jpeg(70), {"bit_depths": [8]}, MEASURED, TH) is None  # an older manifest: no formats
    assert delivery_risk(_jpeg(70), TI, None, TH) is None  # not measured: the warning says so, the verdict stands
    # a first-save JPEG below the training qualities is covered like a re-compressed one
    assert delivery_risk(_jpeg(74, again=False), TI, MEASURED, TH)["attributed"].startswith("JPEG quality ~74")


def test_a_file_harsher_than_anything_measured_gets_no_answer():
    risk = delivery_risk(_jpeg(50), TI, MEASURED, TH)
    assert risk["attributed"] == risk["unknown"] and "harsher than any re-compression" in risk["attributed"]
    # a model that attributed nothing re-saved at that quality has no attribution to stand on
    none = {"rows": {"q": {"kind": "jpeg", "parameter": 75, "known_right": 0.0, "known_wrong": 0.0,
                           "known_unknown_or_inconclusive": 1.0}}}
    assert "attributed none" in delivery_risk(_jpeg(75), TI, none, TH)["attributed"]


@pytest.mark.parametrize("q, row", [(72, 75), (78, 75), (83, 75), (88, 90), (97, 90)])
def test_the_rule_and_the_warning_read_the_row_at_least_as_harsh_as_the_file(q, row):
    from scanlab.core.evidence.gating import measured_jpeg_row

    assert measured_jpeg_row(MEASURED, q)["parameter"] == row


def test_the_shipped_model_does_not_attribute_a_scan_resaved_at_quality_75(tmp_path):
    """End to end through classify: the shipped model's own figures at q75 (10% right, 10% wrong) forbid an answer."""
    from test_jpegfacts import _content
    from test_jpegfacts import _jpeg as jpeg_bytes

    from scanlab.services.analysis import AnalysisRequest, run_analysis

    f = tmp_path / "resaved.jpg"
    f.write_bytes(jpeg_bytes(_content(11, 256), 75))
    r = run_analysis(AnalysisRequest(path=str(f), with_map=False, device="cpu"))
    assert r.verdict.verdict == "inconclusive", r.verdict.reason
    assert r.verdict.before_delivery_rule in ("attributed", "unknown") and "JPEG quality 75 (n = 20)" in r.verdict.reason


def test_the_report_does_not_call_a_score_the_rule_set_aside_another_scanner():
    """The verdict table must not say "a scanner the model does not know" beside an inconclusive the rule made."""
    from reportlab.lib.styles import getSampleStyleSheet

    from scanlab.services.report_text import verdict_rows

    c = {"verdict": "unknown", "label": "a", "confidence": 0.9, "calibrated": True, "unknown_score": 0.7,
         "thresholds": {"unknown": 0.46}, "votes": {"a": 9, "b": 1}, "n_patches": 10, "vote_fraction": 0.9,
         "vote_interval": [0.6, 0.98], "reason": "fits none", "warnings": []}
    row = lambda c: {r[0]: r[1] for r in verdict_rows(c, {}, getSampleStyleSheet())}["unknown-scanner score"]  # noqa: E731
    assert row(c).endswith("above it: a scanner the model does not know)")
    ruled = row({**c, "verdict": "inconclusive", "verdict_before_delivery_rule": "unknown"})
    assert "does not know" not in ruled and "see the reason" in ruled


def test_the_warning_names_a_training_measurement_for_what_it_is():
    """Figures measured by `scanlab train` come from held-out test scans and the lab's negatives, not fresh scans."""
    from scanlab.core.evidence.gating import measured_jpeg_note

    bench = measured_jpeg_note({**MEASURED, "rows": {"q": {**MEASURED["rows"]["jpeg-q75"], "unseen_rejected": 0.7}}}, 74)
    assert "fresh scans of its known scanners" in bench and "unseen scanners rejected 70%" in bench
    trained = {**MEASURED, "benchmark": "scanlab train (test split)", "known_scans": 9,
               "rows": {"q": {**MEASURED["rows"]["jpeg-q75"], "unseen_rejected": 0.5}}}
    note = measured_jpeg_note(trained, 74)
    assert "held-out test scans of its known scanners re-saved at JPEG quality 75, n = 9" in note
    assert "the lab's negative scans rejected 50%" in note and "fresh" not in note


def test_unknown_needs_more_than_a_passed_recompression_test():
    """A JPEG in the training range with no visible re-save may still be one (the test misses most re-saves near the
    first quality): when the model rejects its own scanners' re-saved scans at that quality, "unknown" is not shown,
    while an attribution stands."""
    weak = {**MEASURED, "any_jpeg": True,
            "rows": {**MEASURED["rows"], "jpeg-q90": {**MEASURED["rows"]["jpeg-q90"], "known_right": 0.4,
                                                      "known_unknown_or_inconclusive": 0.6}}}
    risk = delivery_risk(_jpeg(88, again=False), TI, weak, TH)
    assert risk["attributed"] is None and "misses most re-saves" in risk["unknown"] and "rejects 60%" in risk["unknown"]
    v = decide(**_vote(0.9), delivery_risk=risk)
    assert v.verdict == "inconclusive" and v.before_delivery_rule == "unknown"
    assert decide(**_vote(0.1), delivery_risk=risk).verdict == "attributed"
    assert delivery_risk(_jpeg(88, again=False), TI, {**MEASURED, "any_jpeg": True}, TH) is None  # keeps them: stands
    # a file measured before this rule keeps its verdicts (and the cases made with it still verify)
    assert delivery_risk(_jpeg(88, again=False), TI, {k: v for k, v in weak.items() if k != "any_jpeg"}, TH) is None
