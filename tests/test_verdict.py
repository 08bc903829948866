"""Verdict rules, the Wilson interval, calibration arithmetic and the model-file round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scanlab.core.engine.reliability import apply_temperature
from scanlab.core.evidence import calibration as cal
from scanlab.core.evidence.openset import KnnScorer, fit_knn
from scanlab.core.evidence.verdict import (
    DEFAULT_THRESHOLDS,
    EvidenceConfig,
    decide,
    wilson_interval,
)

TH = dict(DEFAULT_THRESHOLDS, unknown=0.7)


def test_wilson_interval_matches_the_textbook_values():
    lo, hi = wilson_interval(3, 10)
    assert lo == pytest.approx(0.1078, abs=1e-3) and hi == pytest.approx(0.6032, abs=1e-3)
    lo, hi = wilson_interval(64, 64)
    assert hi == 1.0 and lo == pytest.approx(0.9434, abs=1e-3)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def _decide(votes, probs, n_ev, u, calibrated=True, n_no=0):
    v = np.asarray(votes)
    return decide(v, np.asarray(probs), int(np.argmax(v)), n_ev, n_no, unknown_score=u, thresholds=TH,
                  calibrated=calibrated)


def test_verdict_rules_in_order():
    assert _decide([0, 0], [0.5, 0.5], 0, None, n_no=16).verdict == "inconclusive"
    few = _decide([2, 0], [0.9, 0.1], 2, 0.1)
    assert few.verdict == "inconclusive" and "2 window" in few.reason
    unk = _decide([60, 4], [0.9, 0.1], 64, 0.93)
    assert unk.verdict == "unknown" and "0.93" in unk.in_words("a") and "0.70" in unk.in_words("a")
    weak = _decide([3, 7, 0], [0.3, 0.4, 0.3], 10, 0.2)  # 70% of the votes, but a mean probability of 0.40
    assert weak.verdict == "inconclusive" and weak.reason == "confidence 0.40 is below 0.50"
    split = _decide([4, 3, 3], [0.4, 0.3, 0.3], 10, 0.2)
    assert split.verdict == "inconclusive" and "split" in split.reason
    ok = _decide([60, 4], [0.9, 0.1], 64, 0.2)
    assert ok.verdict == "attributed" and ok.reason is None and ok.vote_fraction == pytest.approx(60 / 64)
    j = ok.to_json()
    assert set(j) >= {"verdict", "confidence", "calibrated", "vote_fraction", "vote_interval", "unknown_score",
                      "thresholds", "reason", "n_no_evidence", "warnings"}
    assert j["vote_interval"][0] < j["vote_fraction"] < j["vote_interval"][1]


def test_min_confidence_rule_decides_at_its_threshold():
    """The last rule: enough windows, a known scanner, a clear vote, but the label's probability too low."""
    assert TH["min_confidence"] == 0.5
    at = _decide([8, 2], [0.5, 0.5], 10, 0.2)
    assert at.verdict == "attributed" and at.confidence == pytest.approx(0.5)  # not below: attributed
    below = _decide([8, 2], [0.45, 0.55], 10, 0.2)
    assert below.verdict == "inconclusive" and below.reason == "confidence 0.45 is below 0.50"
    assert _decide([8, 2], [0.3, 0.7], 10, 0.2, calibrated=False).verdict == "inconclusive"  # raw probs too
    # earlier rules win: split votes are reported as split even when the confidence is low as well
    split = _decide([4, 3, 3], [0.3, 0.35, 0.35], 10, 0.2)
    assert split.verdict == "inconclusive" and "split" in split.reason
    # a custom threshold from the manifest is the one applied
    th = dict(TH, min_confidence=0.9)
    v = decide(np.asarray([9, 1]), np.asarray([0.85, 0.15]), 0, 10, 0, unknown_score=None, thresholds=th,
               calibrated=True)
    assert v.verdict == "inconclusive" and v.reason == "confidence 0.85 is below 0.90"


def test_temperature_scaling_fixes_overconfidence():
    rng = np.random.default_rng(0)
    n, k = 4000, 5
    labels = rng.integers(0, k, n)
    logits = rng.normal(0, 1, (n, k))
    logits[np.arange(n), labels] += 1.5  # the true posterior is softmax(1.5 * logits)
    over = np.exp(4 * logits)
    over /= over.sum(1, keepdims=True)  # too confident: the right temperature is 4 / 1.5
    t = cal.fit_temperature(over, labels)
    assert 2.3 < t < 3.0
    after = apply_temperature(over, t)
    assert cal.ece(after, labels) < 0.5 * cal.ece(over, labels)
    assert cal.nll(over, labels, t) < cal.nll(over, labels)


def test_knn_scorer_flags_windows_unlike_the_bank():
    rng = np.random.default_rng(1)
    n, k = 600, 4
    ids = np.arange(n) // 20  # 30 images of 20 windows
    labels = np.repeat(rng.integers(0, k, n // 20), 20)
    z = rng.normal(0, 0.5, (n, k))
    z[np.arange(n), labels] += 4
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    scorer, held = fit_knn(p, ids, labels)
    assert 0.3 < held.mean() < 0.7  # held-out known images: window scores ~uniform
    flat = np.full((50, k), 1.0 / k) + rng.normal(0, 0.01, (50, k)).clip(-0.05, 0.05)
    two = np.zeros((50, k)) + 1e-3
    two[:, 0] = two[:, 1] = 0.5
    for odd in (flat / flat.sum(1, keepdims=True), two):
        assert scorer.window_scores(odd).mean() > 0.95
    back = KnnScorer.from_extras({n: torch.from_numpy(v) for n, v in scorer.extras().items()}, {"k": scorer.k})
    np.testing.assert_array_equal(back.window_scores(p[:30]), scorer.window_scores(p[:30]))


def test_manifest_without_calibration_gives_an_uncalibrated_config():
    cfg = EvidenceConfig.from_model({"classes": ["a", "b"]}, {})
    assert not cfg.calibrated and cfg.temperature == 1.0 and cfg.scorer is None and "unknown" not in cfg.thresholds
    assert "no calibration" in cfg.calibration_reason
    cfg = EvidenceConfig.from_model({"calibration": {"calibrated": False, "reason": "too few"}}, {})
    assert not cfg.calibrated and cfg.calibration_reason == "too few"


def test_reliability_diagram_is_a_png(tmp_path):
    rng = np.random.default_rng(2)
    p = rng.dirichlet(np.ones(3), 500)
    y = rng.integers(0, 3, 500)
    out = cal.draw_reliability_diagram(cal.reliability_bins(p, y), cal.reliability_bins(p, y), tmp_path / "r.png")
    from PIL import Image

    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] > 100


def test_short_answer_names_a_scanner_only_when_attributed():
    # the scan list and the status bar show this: a name there reads as an attribution
    assert _decide([60, 4], [0.9, 0.1], 64, 0.2).short("vscan-02") == "vscan-02"
    assert _decide([60, 4], [0.9, 0.1], 64, 0.93).short("vscan-02") == "unknown scanner"
    assert _decide([0, 0], [0.5, 0.5], 0, None, n_no=16).short("vscan-02") == "inconclusive"


def test_other_output_scorer_is_the_softmax_of_the_extra_logit():
    from scanlab.core.engine.network import build_model
    from scanlab.core.evidence.openset import OTHER_METHOD, OtherScorer

    torch.manual_seed(0)
    net = build_model(3).eval()
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.3, net.feature_channels).astype(np.float32)
    sc = OtherScorer(w, -0.5)
    f = rng.normal(0, 1, (7, net.feature_channels)).astype(np.float32)
    z = net.fc(torch.from_numpy(f)).detach().numpy().astype(np.float64)
    zo = f.astype(np.float64) @ w - 0.5
    expect = np.exp(zo) / (np.exp(zo) + np.exp(z).sum(1))
    np.testing.assert_allclose(sc.window_scores(f, net), expect, rtol=1e-5)
    # a file's extra tensors give the same scorer; a manifest naming the method without them gives none
    extras = {k: torch.from_numpy(v) for k, v in sc.extras().items()}
    cfg = EvidenceConfig.from_model({"open_set": {"method": OTHER_METHOD, "thresholds": {"unknown": 0.6}}}, extras)
    assert isinstance(cfg.scorer, OtherScorer) and cfg.open_set_method == OTHER_METHOD and cfg.thresholds["unknown"] == 0.6
    np.testing.assert_allclose(cfg.scorer.window_scores(f, net), expect, rtol=1e-5)
    bare = EvidenceConfig.from_model({"open_set": {"method": OTHER_METHOD, "thresholds": {"unknown": 0.6}}}, {})
    assert bare.scorer is None and bare.open_set_method is None and "unknown" not in bare.thresholds
    wrong = {"open_set.other_weight": torch.zeros(5), "open_set.other_bias": torch.zeros(1)}
    assert OtherScorer.from_extras(wrong, net.feature_channels) is None


def test_other_output_fit_keeps_98_percent_of_the_validation_images():
    from scanlab.core.engine.network import build_model
    from scanlab.core.evidence.fit import OTHER_KEEP, fit_evidence_model
    from scanlab.core.evidence.openset import (
        OTHER_METHOD,
        OtherScorer,
        feature_windows,
        window_features,
    )

    torch.manual_seed(1)
    net = build_model(2).eval()
    rng = np.random.default_rng(3)
    imgs = [((rng.random((128, 128, 3)) * 255).astype(np.uint8), i % 2) for i in range(6)]
    sc = OtherScorer(rng.normal(0, 0.2, net.feature_channels).astype(np.float32), 0.0)
    upd, extras = fit_evidence_model(net, iter(imgs), ["a", "b"], method=OTHER_METHOD, other=sc)
    os_ = upd["open_set"]
    assert os_["method"] == OTHER_METHOD and set(extras) == {"open_set.other_weight", "open_set.other_bias"}
    scores = []
    for px, _ in imgs:
        ys, xs, ev = feature_windows(px)
        iy, ix = np.nonzero(ev)
        scores.append(sc.window_scores(window_features(net, px, np.stack([ys[iy], xs[ix]], 1)), net).mean())
    assert os_["thresholds"]["unknown"] == pytest.approx(np.quantile(scores, OTHER_KEEP), abs=1e-4)
    assert sum(s <= os_["thresholds"]["unknown"] + 1e-4 for s in scores) >= OTHER_KEEP * len(scores) - 1
    with pytest.raises(ValueError, match="needs the network's extra output"):
        fit_evidence_model(net, iter(imgs), ["a", "b"], method=OTHER_METHOD)


def test_rotation_warning_only_when_the_turned_scan_fits():
    from scanlab.core.evidence.gating import rotation_warning

    def turned_back_fits(k):  # "fits" only turned anticlockwise (one quarter turn)
        return 0.2 if k == 1 else 0.9

    w = rotation_warning(turned_back_fits, 0.9, 0.7)
    assert w["code"] == "rotated_90" and "anticlockwise" in w["message"] and "0.20 turned" in w["message"]
    assert "clockwise" in rotation_warning(lambda k: 0.2 if k == 3 else 0.9, 0.9, 0.7)["message"]
    calls = []
    assert rotation_warning(lambda k: calls.append(k) or 0.1, 0.5, 0.7) is None and not calls  # fits as it is
    assert rotation_warning(lambda k: 0.95, 0.9, 0.7) is None  # fits no turn either: a genuinely unknown scanner
    assert rotation_warning(lambda k: 0.1, None, 0.7) is None and rotation_warning(lambda k: 0.1, 0.9, None) is None


def test_other_output_tensors_that_do_not_fit_the_network_are_refused_at_load(tmp_path):
    from scanlab.core.engine.network import build_model
    from scanlab.core.errors import ScanLabError
    from scanlab.core.modelfile.store import load_model, make_manifest, save_model

    net = build_model(2).eval()
    man = make_manifest(net, ["a", "b"], name="t")
    man["open_set"] = {"method": "other-output", "thresholds": {"unknown": 0.5}}
    good = save_model(net, man, tmp_path / "good.safetensors",
                      {"open_set.other_weight": torch.zeros(net.feature_channels), "open_set.other_bias": torch.zeros(1)})
    assert good and load_model(tmp_path / "good.safetensors").extras["open_set.other_bias"].numel() == 1
    save_model(net, man, tmp_path / "bad.safetensors",
               {"open_set.other_weight": torch.zeros(5), "open_set.other_bias": torch.zeros(1)})
    with pytest.raises(ScanLabError, match="do not fit the network"):
        load_model(tmp_path / "bad.safetensors")


# Each rule of the verdict on a case that only that rule turns inconclusive (the values
# are DEFAULT_THRESHOLDS, chosen by benchmarks/bench_verdict_rules.py): removing the rule
# from decide() makes its test fail, and relaxing the threshold alone gives "attributed".


def test_rule_min_evidence_windows_alone_makes_few_windows_inconclusive():
    n = int(DEFAULT_THRESHOLDS["min_evidence_windows"]) - 1
    assert n >= 1, "the rule needs at least 2 windows for this case"
    votes, probs = [n, 0, 0], [0.97, 0.02, 0.01]  # unanimous, confident, well inside the known scanners
    v = _decide(votes, probs, n, 0.05)
    assert v.verdict == "inconclusive" and f"only {n} window" in v.reason
    relaxed = decide(np.asarray(votes), np.asarray(probs), 0, n, 0, unknown_score=0.05,
                     thresholds=dict(TH, min_evidence_windows=n), calibrated=True)
    assert relaxed.verdict == "attributed"


def test_rule_min_vote_fraction_alone_makes_split_votes_inconclusive():
    f = DEFAULT_THRESHOLDS["min_vote_fraction"]
    n = 40
    k = int(np.ceil(f * n)) - 1  # just below the fraction
    assert k >= n // 3 + 1, "the top class must still lead the vote"
    rest = n - k
    votes = [k, rest // 2, rest - rest // 2]
    probs = [0.9, 0.05, 0.05]  # the confidence rule would attribute it
    v = _decide(votes, probs, n, 0.05)
    assert v.verdict == "inconclusive" and "split" in v.reason
    relaxed = decide(np.asarray(votes), np.asarray(probs), 0, n, 0, unknown_score=0.05,
                     thresholds=dict(TH, min_vote_fraction=k / n), calibrated=True)
    assert relaxed.verdict == "attributed"


def test_rule_min_confidence_alone_makes_a_weak_unanimous_vote_inconclusive():
    c = DEFAULT_THRESHOLDS["min_confidence"]
    conf = c - 0.02
    assert conf > 1 / 3, "the top class must still have the highest mean probability"
    votes = [40, 0, 0]  # every window votes for class 0, each by a small margin
    probs = [conf, (1 - conf) / 2, (1 - conf) / 2]
    v = _decide(votes, probs, 40, 0.05)
    assert v.verdict == "inconclusive" and "confidence" in v.reason
    relaxed = decide(np.asarray(votes), np.asarray(probs), 0, 40, 0, unknown_score=0.05,
                     thresholds=dict(TH, min_confidence=conf), calibrated=True)
    assert relaxed.verdict == "attributed"


def test_mean_feature_check_makes_a_disagreeing_vote_inconclusive():
    """Rule 4: on only where the model records it; the vote's class must be the mean feature's nearest class."""
    from scanlab.core.evidence.verdict import MEAN_FEATURE_CHECK

    v, p = np.array([50, 14]), np.array([0.8, 0.2])
    on = dict(TH, **{MEAN_FEATURE_CHECK: 1.0})
    agree = decide(v, p, 0, 64, 0, unknown_score=0.2, thresholds=on, calibrated=True, feature_label=0)
    assert agree.verdict == "attributed"
    differ = decide(v, p, 0, 64, 0, unknown_score=0.2, thresholds=on, calibrated=True, feature_label=1)
    assert differ.verdict == "inconclusive" and "mean feature" in differ.reason
    # a model without the check (older files, the shipped model) attributes as before
    off = decide(v, p, 0, 64, 0, unknown_score=0.2, thresholds=TH, calibrated=True, feature_label=1)
    assert off.verdict == "attributed"
    # "unknown" still comes first
    assert decide(v, p, 0, 64, 0, unknown_score=0.9, thresholds=on, calibrated=True, feature_label=1).verdict == "unknown"


def test_gauss_image_class_is_the_nearest_class_mean_of_the_mean_feature():
    from scanlab.core.evidence.gauss import fit_gauss

    rng = np.random.default_rng(0)
    mu = np.array([[0.0] * 4, [3.0] * 4])
    f = np.concatenate([mu[c] + rng.standard_normal((40, 4)) for c in (0, 1) for _ in range(3)])
    labels = np.repeat([0, 0, 0, 1, 1, 1], 40)
    ids = np.repeat(np.arange(6), 40)
    s, _, _ = fit_gauss(f, labels, ids, 2)
    # windows scattered between the classes: the mean decides, not the windows one by one
    w = mu[1] + 2.0 * rng.standard_normal((64, 4))
    assert s.image_class_of(s.project(w)) == 1
    assert s.image_class_of(s.project(mu[0] + 2.0 * rng.standard_normal((64, 4)))) == 0
    assert s.image_class_of(np.zeros((0, 4))) is None
