"""One pass: the open set's "other scanner" output comes from the vote's own network pass.

The reference is the separate pass the analysis made before (window features
of every 64-px window with evidence, then :meth:`OtherScorer.window_scores`):
the one-pass unknown score must equal it (1e-5), and the class probabilities
must not change at all (float rounding).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from scanlab.core.engine.dense import DenseEngine
from scanlab.core.engine.engines import NaiveEngine
from scanlab.core.engine.network import ScannerNet, build_model
from scanlab.core.evidence.openset import (
    OTHER_METHOD,
    ROTATION_SAMPLE,
    OtherScorer,
    sample_windows,
    score_image,
    turned_window_score,
    window_features,
)
from tests.modeltools import randomize_bn

CPU = torch.device("cpu")
ROOT = Path(__file__).resolve().parents[1]


def _net(seed: int, n: int = 3) -> ScannerNet:
    torch.manual_seed(seed)
    net = build_model(n).eval()
    randomize_bn(net)
    return net


def _scorer(net: ScannerNet, seed: int) -> OtherScorer:
    """A random "other" row, centred on a random scan's features so P(other) spreads over (0, 1)."""
    rng = np.random.default_rng(seed)
    img = _scan(128, 128, seed + 100)
    f = window_features(net, img, np.array([[0, 0], [0, 64], [64, 0], [64, 64]])).astype(np.float64)
    w = rng.normal(0, 1, f.shape[1]) / (f - f.mean(0)).std() / np.sqrt(f.shape[1])
    with torch.inference_mode():
        z = net.fc(torch.from_numpy(f.mean(0, keepdims=True)).float()).double().numpy()
    lse = float(np.log(np.exp(z - z.max()).sum()) + z.max())
    return OtherScorer(w.astype(np.float32), lse - float(f.mean(0) @ w))


def _scan(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.normal(128, 30, (h, w, 3)).clip(0, 255).astype(np.uint8)
    img[: h // 3, : w // 3] = 255  # a flat, clipped corner: windows without evidence
    return img


@pytest.mark.parametrize("seed", [0, 1])
def test_engines_give_p_other_from_the_same_pass(seed):
    net, rng = _net(seed), np.random.default_rng(seed)
    sc = _scorer(net, seed)
    img = _scan(200, 236, seed)
    ys, xs = np.array([0, 4, 37, 100, 136]), np.array([0, 8, 64, 131, 172])
    ref_p = NaiveEngine().window_probs(net, img, ys, xs, device=CPU)
    corners = np.stack(np.meshgrid(ys, xs, indexing="ij"), -1).reshape(-1, 2)
    ref_o = sc.window_scores(window_features(net, img, corners), net).reshape(len(ys), len(xs))
    assert ref_o.std() > 0.01  # the head does not saturate: the comparison can fail
    for eng in (DenseEngine(100), DenseEngine(), NaiveEngine()):
        p, po = eng.window_outputs(net, img, ys, xs, device=CPU, other=sc.head())
        np.testing.assert_allclose(p, ref_p, atol=2e-6)
        np.testing.assert_allclose(po, ref_o, atol=1e-5)
        bare, none = eng.window_outputs(net, img, ys, xs, device=CPU)
        assert none is None
        np.testing.assert_allclose(bare, p, atol=1e-6)
    del rng


def _model_file(tmp_path: Path, net: ScannerNet, sc: OtherScorer | None, threshold: float = 0.5) -> Path:
    from scanlab.core.modelfile.store import make_manifest, save_model

    man = make_manifest(net, [f"s{i}" for i in range(net.n_classes)], name="onepass-test")
    extras = None
    name = "plain"
    if sc is not None:
        man["open_set"] = {"method": OTHER_METHOD, "thresholds": {"unknown": threshold}}
        extras = {k: torch.from_numpy(v) for k, v in sc.extras().items()}
        name = f"other{threshold}"
    return Path(save_model(net, man, tmp_path / f"{name}.safetensors", extras) and tmp_path / f"{name}.safetensors")


def _save_png(tmp_path: Path, img: np.ndarray, name: str = "scan.png") -> str:
    from PIL import Image

    p = tmp_path / name
    Image.fromarray(img).save(p)
    return str(p)


@pytest.mark.parametrize("seed,vote_sub", [(2, (64, 64)), (3, (128, 128))])
def test_analysis_unknown_score_is_the_separate_pass_score_without_rerunning_the_trunk(tmp_path, monkeypatch, seed,
                                                                                        vote_sub):
    from scanlab.core.modelfile.store import load_model
    from scanlab.services.analysis import AnalysisRequest, run_analysis

    net, img = _net(seed), _scan(330, 400, seed)
    sc = _scorer(net, seed)
    path = _save_png(tmp_path, img)
    lm = load_model(_model_file(tmp_path, net, sc, threshold=1.0))  # above every score: no rotation check
    plain = load_model(_model_file(tmp_path, net, None))
    ref_u, ref_grid, _, _ = score_image(sc, lm.net, img, method=OTHER_METHOD)  # the old separate pass

    calls = []
    real_trunk = ScannerNet.trunk
    monkeypatch.setattr(ScannerNet, "trunk", lambda self, x: calls.append(x.shape) or real_trunk(self, x))
    req = AnalysisRequest(path=path, vote_sub=vote_sub, sub=(64, 64), stride=(16, 16))
    r = run_analysis(req, model=lm)
    assert calls == []  # the dense pass gave the other logit: the trunk never ran again
    assert r.verdict.unknown_score == pytest.approx(ref_u, abs=1e-5)
    np.testing.assert_allclose(r.unknown_grid[0], ref_grid, atol=1e-5)  # NaN where no evidence, in both
    base = run_analysis(req, model=plain)  # same weights, no open set
    for k, v in base.probabilities().items():
        assert r.probabilities()[k] == pytest.approx(v, abs=1e-6)
    assert r.votes() == base.votes()
    np.testing.assert_allclose(r.reliability, base.reliability, atol=1e-6)
    assert set(r.timing) == {"decode", "resampling", "vote", "evidence", "gating", "map"} and min(r.timing.values()) >= 0


def test_rotation_check_scores_a_bounded_sample(tmp_path, monkeypatch):
    from scanlab.core.modelfile.store import load_model
    from scanlab.services.analysis import AnalysisRequest, run_analysis

    net, img = _net(4), _scan(1100, 1300, 4)  # 17 x 20 windows, ~300 with evidence
    sc = _scorer(net, 4)
    lm = load_model(_model_file(tmp_path, net, sc, threshold=0.0))  # every scan above: the check runs
    import scanlab.core.evidence.openset as openset

    seen, trunk_calls = [], []
    real = openset.fused_window_features
    monkeypatch.setattr(openset, "fused_window_features", lambda net, w, **kw: seen.append(len(w)) or real(net, w, **kw))
    monkeypatch.setattr(ScannerNet, "trunk", lambda self, x: trunk_calls.append(x.shape))
    r = run_analysis(AnalysisRequest(path=_save_png(tmp_path, img), with_map=False), model=lm)
    n_ev = int((~np.isnan(r.unknown_grid[0])).sum())
    assert n_ev > ROTATION_SAMPLE
    assert seen == [ROTATION_SAMPLE, ROTATION_SAMPLE] and not trunk_calls  # two turns, each on the sample only


def test_sample_windows_is_bounded_deterministic_and_only_evidence():
    rng = np.random.default_rng(0)
    ev = rng.random((40, 30)) < 0.5
    iy, ix = sample_windows(ev, 100)
    assert len(iy) == 100 and ev[iy, ix].all() and len(set(zip(iy, ix, strict=True))) == 100
    again = sample_windows(ev, 100)
    assert np.array_equal(again[0], iy) and np.array_equal(again[1], ix)
    small = np.zeros((5, 5), bool)
    small[1, 2] = small[3, 4] = True
    assert [list(a) for a in sample_windows(small, 100)] == [[1, 3], [2, 4]]


@pytest.mark.parametrize("k", [1, 3])
def test_turned_window_score_is_the_score_of_the_turned_scan(k):
    net, img = _net(5), _scan(200, 260, 5)
    sc = _scorer(net, 5)
    corners = np.array([[0, 0], [64, 128], [136, 196], [10, 30]])
    got = turned_window_score(sc, net, img, corners, k)
    turned = np.rot90(img, k, axes=(0, 1))
    h, w = img.shape[:2]
    # where each window lands in the turned scan
    moved = [(w - x - 64, y) if k == 1 else (x, h - y - 64) for y, x in corners]
    ref = sc.window_scores(window_features(net, np.ascontiguousarray(turned), np.array(moved)), net).mean()
    assert got == pytest.approx(float(ref), abs=1e-5)
    flat = turned_window_score(sc, net, np.moveaxis(img, -1, 0).astype(np.float32) / 255, corners, k)
    assert flat == pytest.approx(got, abs=1e-5)  # the float (3, H, W) layout gives the same windows
    assert turned_window_score(sc, net, img, np.zeros((0, 2), np.int64), k) is None


def test_shipped_model_one_pass_equals_separate_pass_on_the_sample_scan():
    from scanlab.core.evidence.verdict import EvidenceConfig
    from scanlab.services.analysis import AnalysisRequest, run_analysis
    from scanlab.services.models import get_model

    lm = get_model(None)
    cfg = EvidenceConfig.from_model(lm.manifest, lm.extras)
    if not isinstance(cfg.scorer, OtherScorer):
        pytest.skip("the shipped model has no other-output scorer")
    sample = ROOT / "resources" / "samples" / "forged_splice.jpg"
    r = run_analysis(AnalysisRequest(path=str(sample), with_map=False), model=lm)
    from scanlab.core.io.imaging import load_scan

    ref_u, ref_grid, _, _ = score_image(cfg.scorer, lm.net, load_scan(str(sample)).pixels, method=OTHER_METHOD)
    assert r.verdict.unknown_score == pytest.approx(ref_u, abs=1e-5)
    np.testing.assert_allclose(r.unknown_grid[0], ref_grid, atol=1e-5)


def test_classify_and_map_json_report_timing_by_phase(tmp_path, capsys):
    import json

    from scanlab.cli import main

    net = _net(6)
    model = _model_file(tmp_path, net, _scorer(net, 6), threshold=0.0)  # the rotation check runs too
    img = _save_png(tmp_path, _scan(200, 260, 6))
    phases = {"decode", "resampling", "vote", "evidence", "gating", "map"}
    assert main(["classify", img, "-m", str(model), "--json"]) == 0
    e = json.loads(capsys.readouterr().out)["images"][0]
    assert set(e["timing"]) == phases and all(v >= 0 for v in e["timing"].values())
    assert e["unknown_score"] is not None
    out = tmp_path / "m.npy"
    assert main(["map", img, "-m", str(model), "-o", str(out), "--stride", "16", "--json"]) == 0
    t = json.loads(capsys.readouterr().out)["timing"]
    assert set(t) == phases | {"compute_s"} and t["compute_s"] >= t["vote"] + t["map"] > 0
