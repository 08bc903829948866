"""The reference-coverage rule: a scan unlike every reference page of some scanner gets no answer that
would exclude that scanner (verdict rule 5), and the lab is told which references to add."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image

from scanlab.core.evidence.coverage import (
    coverage_gap,
    reference_coverage,
    uncovered_shares,
    window_brightness,
)
from scanlab.core.evidence.verdict import DEFAULT_THRESHOLDS, decide
from scanlab.core.modelfile.coverage_card import coverage_advice, coverage_card_lines

TH = dict(DEFAULT_THRESHOLDS, unknown=0.5)
# lab-02's references are all dark to mid pages, lab-01's reach bright ones (the 3 x 10 lab's picture)
COV = {"measure": "m", "percentiles": [0.5, 99.5], "ranges": {"lab-01": [67.0, 236.0], "lab-02": [60.0, 201.0]},
       "n_windows": {"lab-01": 384, "lab-02": 384}}


@pytest.mark.parametrize("dtype,scale", [(np.uint8, 1.0), (np.uint16, 257.0)])
def test_window_brightness_is_the_mean_grey_level_of_each_window_with_evidence(dtype, scale):
    rng = np.random.default_rng(0)
    img = (rng.integers(0, 256, (200, 260, 3)) * scale).astype(dtype)
    ys, xs = np.array([0, 64, 130]), np.array([0, 64, 128, 190])
    ev = np.array([[1, 0, 1, 1], [0, 0, 0, 0], [1, 1, 0, 1]], dtype=bool)
    got = window_brightness(img, ys, xs, ev)
    want = [img[y:y + 64, x:x + 64].astype(np.float64).mean() / scale for i, y in enumerate(ys)
            for j, x in enumerate(xs) if ev[i, j]]
    np.testing.assert_allclose(got, want, rtol=1e-9)


def test_coverage_is_the_range_of_each_class_and_a_gap_names_the_worst_covered_class():
    rng = np.random.default_rng(1)
    cov = reference_coverage({"a": [rng.uniform(50, 200, 500)], "b": [rng.uniform(50, 120, 300), np.array([])]})
    assert cov["n_windows"] == {"a": 500, "b": 300}
    assert cov["ranges"]["b"][0] == pytest.approx(50, abs=2) and cov["ranges"]["b"][1] == pytest.approx(120, abs=2)
    bright = np.full(40, 180.0)
    assert uncovered_shares(bright, cov) == {"a": 0.0, "b": 1.0}
    gap = coverage_gap(bright, cov)
    assert gap["class"] == "b" and gap["side"] == "brighter" and gap["share"] == 1.0
    assert "100% of this scan's windows" in gap["message"] and "b" in gap["message"]
    # covered by both, or half outside (not more than the threshold): no gap
    assert coverage_gap(np.full(40, 100.0), cov) is None
    assert coverage_gap(np.r_[np.full(20, 100.0), np.full(20, 180.0)], cov, 0.5) is None
    assert coverage_gap(np.r_[np.full(19, 100.0), np.full(21, 180.0)], cov, 0.5)["class"] == "b"
    # a model without the record, or a scan without a window with evidence: nothing to judge
    assert coverage_gap(bright, None) is None and coverage_gap(np.zeros(0), cov) is None


def _vote(u, gap):
    return decide(np.array([60, 4]), np.array([0.9, 0.1]), 0, 64, 0, unknown_score=u, thresholds=TH,
                  calibrated=True, coverage_gap=gap)


def test_rule_5_an_uncovered_scan_is_neither_attributed_nor_unknown():
    gap = coverage_gap(np.full(64, 225.0), COV)
    assert gap["class"] == "lab-02"
    a = _vote(0.2, gap)
    assert a.verdict == "inconclusive" and a.before_coverage_rule == "attributed"
    assert "lab-02" in a.reason and "60-201" in a.reason and "not an attribution" in a.reason
    u = _vote(0.9, gap)
    assert u.verdict == "inconclusive" and u.before_coverage_rule == "unknown" and "0.90" in u.reason
    assert u.to_json()["verdict_before_coverage_rule"] == "unknown"
    # covered: the verdicts of the other rules stand
    covered = coverage_gap(np.full(64, 120.0), COV)
    assert covered is None
    assert _vote(0.2, covered).verdict == "attributed" and _vote(0.9, covered).verdict == "unknown"
    assert _vote(0.2, covered).to_json()["verdict_before_coverage_rule"] is None


def test_the_card_and_the_advice_name_the_class_whose_references_stop_short():
    advice = coverage_advice(COV)
    assert len(advice) == 1 and advice[0].startswith("lab-02: no reference windows brighter than grey 201")
    lines = coverage_card_lines({"training_input": {"reference_coverage": COV}, "open_set": {"thresholds": {}}})
    assert "lab-01 67-236, lab-02 60-201" in lines[0] and "more than 50%" in lines[0]
    assert lines[1].startswith("- lab-02: no reference windows")
    assert coverage_card_lines({"training_input": {}}) == [] and coverage_advice(None) == []


def test_classify_path_applies_the_rule_of_the_models_recorded_coverage(tmp_path):
    """End to end through run_analysis: the same scan, the same network; only the recorded ranges differ."""
    from test_jpegfacts import _content

    from scanlab.services.analysis import AnalysisRequest, run_analysis
    from scanlab.services.models import get_model

    f = tmp_path / "scan.png"
    Image.fromarray(_content(5, 256)).save(f)
    lm = get_model(None)

    def with_ranges(ranges):
        ti = dict(lm.manifest.get("training_input") or {}, reference_coverage=dict(COV, ranges=ranges))
        return dataclasses.replace(lm, manifest=dict(lm.manifest, training_input=ti))

    plain = run_analysis(AnalysisRequest(path=str(f), with_map=False, device="cpu"), model=lm).verdict
    assert plain.verdict in ("attributed", "unknown")  # an answer the rule can take back
    names = lm.classes
    wide = run_analysis(AnalysisRequest(path=str(f), with_map=False, device="cpu"),
                        model=with_ranges({c: [0.0, 255.0] for c in names})).verdict
    assert wide.verdict == plain.verdict and wide.before_coverage_rule is None
    assert not any(w["code"] == "reference_coverage" for w in wide.warnings)
    dark = {c: ([0.0, 255.0] if c != names[1] else [0.0, 20.0]) for c in names}
    narrow = run_analysis(AnalysisRequest(path=str(f), with_map=False, device="cpu"), model=with_ranges(dark)).verdict
    assert narrow.verdict == "inconclusive" and names[1] in narrow.reason
    assert narrow.before_coverage_rule == plain.verdict
    assert [w["code"] for w in narrow.warnings].count("reference_coverage") == 1
    # the screen and the report say it once: in the reason, not again among the input warnings
    from scanlab.core.evidence.verdict import warnings_beside_reason
    from scanlab.services.report_text import verdict_rows

    assert not any(w["code"] == "reference_coverage" for w in warnings_beside_reason(narrow.warnings, narrow.reason))
    from reportlab.lib.styles import getSampleStyleSheet

    rows = {r[0]: r[1] for r in verdict_rows(dict(narrow.to_json(), label=names[0]), {}, getSampleStyleSheet())}
    notes = rows["input checks (read first)"]
    assert "never saw" not in str(getattr(notes, "text", notes))
    assert "never saw" in rows["reason"]


def test_the_bound_is_in_the_thresholds_only_of_models_that_record_coverage():
    """Older models' verdict JSON keeps its thresholds, so their cases still verify."""
    from scanlab.core.evidence.verdict import EvidenceConfig

    assert "max_uncovered_share" not in EvidenceConfig.from_model({}).thresholds
    cfg = EvidenceConfig.from_model({"training_input": {"reference_coverage": COV}})
    assert cfg.thresholds["max_uncovered_share"] == 0.5
    stored = EvidenceConfig.from_model({"training_input": {"reference_coverage": COV},
                                        "open_set": {"thresholds": {"max_uncovered_share": 0.7}}})
    assert stored.thresholds["max_uncovered_share"] == 0.7
