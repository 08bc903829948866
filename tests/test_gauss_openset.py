"""The ``gauss-image`` unknown-scanner scorer: fit, cross-fitting, file round trip, one pass,
and the temperature fitted on validation windows when a lab has few validation images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scanlab.core.engine.engines import get_engine
from scanlab.core.engine.network import build_model
from scanlab.core.engine.reliability import analyze_image
from scanlab.core.evidence.fit import fit_evidence_model
from scanlab.core.evidence.gauss import GaussScorer, fit_gauss
from scanlab.core.evidence.openset import (
    GAUSS_METHOD,
    feature_windows,
    scorer_from_model,
    window_features,
)
from scanlab.core.evidence.threshold import gauss_threshold


def _clusters(rng: np.random.Generator, centres: np.ndarray, per_image: int, images: int):
    f, lab, ids = [], [], []
    for c, mu in enumerate(centres):
        for i in range(images):
            shift = rng.normal(0, 0.3, mu.shape)  # what one image's content adds to all its windows
            f.append(mu + shift + rng.normal(0, 1.0, (per_image, len(mu))))
            lab.append(np.full(per_image, c))
            ids.append(np.full(per_image, c * images + i))
    return np.concatenate(f), np.concatenate(lab), np.concatenate(ids)


def test_known_images_score_low_and_a_new_class_high():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 3, (3, 16))
    f, lab, ids = _clusters(rng, centres, 40, 6)
    sc, cf, cls = fit_gauss(f, lab, ids, 3)
    assert len(cf) == 18 and sorted(set(cls.tolist())) == [0, 1, 2] and np.all((cf >= 0) & (cf < 1))
    fresh, _, fid = _clusters(rng, centres, 40, 3)
    new, _, nid = _clusters(rng, rng.normal(0, 3, (2, 16)), 40, 3)
    known = [sc.image_score(fresh[fid == i]) for i in np.unique(fid)]
    unseen = [sc.image_score(new[nid == i]) for i in np.unique(nid)]
    thr, rec = gauss_threshold(cf, np.array(known[:3]), None)
    assert max(known) < min(unseen) and min(unseen) > thr
    assert rec["n_crossfit_images"] == 18 and "cross-fitted" in rec["threshold_rule"]
    assert sc.image_score(f[:0]) is None
    # the file's tensors and params give the same scorer back
    params = {"ref": sc.ref, "ref_window": sc.ref_window}
    back = scorer_from_model(GAUSS_METHOD, sc.extras(), params)
    assert isinstance(back, GaussScorer) and back.image_score(new[:40]) == pytest.approx(sc.image_score(new[:40]))
    assert scorer_from_model(GAUSS_METHOD, sc.extras(), {}) is None  # params missing: no scorer


@pytest.mark.parametrize("engine", ["dense", "naive"])
def test_projection_comes_from_the_vote_pass(engine):
    torch.manual_seed(0)
    net = build_model(3).eval()
    rng = np.random.default_rng(1)
    img = (rng.random((200, 264, 3)) * 255).astype(np.uint8)
    ys, xs, ev = feature_windows(img)
    iy, ix = np.nonzero(ev)
    f = window_features(net, img, np.stack([ys[iy], xs[ix]], axis=1))
    sc, _, _ = fit_gauss(np.concatenate([f, f + 0.01]), np.repeat([0, 1], len(f)) % 3, np.repeat([0, 1], len(f)), 3)
    res = analyze_image(net, img, vote_sub=64, engine=get_engine(engine), other=sc.head())
    g = res.other_grid
    assert g.other.shape == (len(ys), len(xs), net.feature_channels)
    got = g.other[g.evidence_mask()]
    np.testing.assert_allclose(got, sc.project(f), rtol=1e-4, atol=1e-4 * np.abs(sc.project(f)).max())
    assert sc.image_score_of(got.astype(np.float64)) == pytest.approx(sc.image_score(f), rel=1e-4)


def test_one_validation_image_per_class_is_enough_for_the_temperature():
    torch.manual_seed(0)
    net = build_model(3).eval()
    rng = np.random.default_rng(2)
    val = [((rng.random((512, 512, 3)) * 255).astype(np.uint8), c) for c in range(3)]  # 64 windows each
    upd, _ = fit_evidence_model(net, val, ["a", "b", "c"])
    c = upd["calibration"]
    assert c["calibrated"] is True and c["temperature"] > 0 and c["min_windows_per_class"] == 64
    assert "fewer than 3 validation images" in c["rule"] and str(c["n_windows"]) in c["rule"]
    assert upd["open_set"]["method"] is None  # the k-NN scorer still needs held-out images
    small = [((rng.random((128, 128, 3)) * 255).astype(np.uint8), c) for c in range(3)]  # 4 windows each
    assert fit_evidence_model(net, small, ["a", "b", "c"])[0]["calibration"]["calibrated"] is False
