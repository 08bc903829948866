"""The no-signal rule: flat and clipped windows are left out of the vote and of eq. (1)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from modeltools import randomize_bn

from scanlab.core.engine.network import build_model
from scanlab.core.engine.nosignal import (
    MAX_CLIPPED,
    MIN_RESIDUAL,
    window_evidence,
    window_statistics,
)
from scanlab.core.engine.reliability import analyze_image, reliability_map


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    n = build_model(3).eval()
    randomize_bn(n)
    return n


def _textured(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    return rng.integers(40, 216, (h, w, 3)).astype(np.uint8)


def test_flat_and_clipped_windows_have_no_evidence():
    rng = np.random.default_rng(0)
    img = _textured(rng, 128, 192)
    img[:, 60:129] = 200  # flat tint: no residual (the box filter reaches 1 px across a border)
    img[:, 129:] = 255  # clipped paper white
    ys, xs = np.array([0, 64]), np.array([0, 64, 128])
    energy, clipped = window_statistics(img, ys, xs)
    assert (energy[:, 0] > 10 * MIN_RESIDUAL).all() and (energy[:, 1] < 1e-6).all()
    assert (clipped[:, 2] > 0.98).all() and (clipped[:, 2] > MAX_CLIPPED).all() and (clipped[:, 1] == 0).all()
    ev = window_evidence(img, ys, xs)
    assert ev.tolist() == [[True, False, False], [True, False, False]]


def test_rule_is_the_same_for_8_bit_16_bit_and_float_input():
    rng = np.random.default_rng(1)
    img = _textured(rng, 128, 128)
    img[64:, :] = 255
    ys = xs = np.array([0, 16, 64])
    a = window_statistics(img, ys, xs)
    b = window_statistics(img.astype(np.uint16) * 257, ys, xs)
    c = window_statistics(np.moveaxis(img, -1, 0).astype(np.float32) / 255, ys, xs)
    for x, y in ((a, b), (a, c)):
        np.testing.assert_allclose(x[0], y[0], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(x[1], y[1])


def test_blank_page_votes_nothing_but_keeps_a_label(net):
    img = np.full((128, 128, 3), 255, dtype=np.uint8)
    a = analyze_image(net, img, map_sub=64, map_stride=32)
    c = a.classification
    assert c.n_patches == 0 and c.n_no_evidence == 4 and not c.has_evidence
    assert int(c.votes.sum()) == 0 and 0 <= c.label_index < 3
    assert np.isnan(a.class_reliability(c.label_index)).all()
    assert a.no_evidence_mask().all()
    assert (a.class_index_map() == -1).all()


@pytest.mark.parametrize("sub", [64, 96])
def test_no_evidence_windows_are_left_out_of_vote_and_map_in_both_engines(net, sub):
    rng = np.random.default_rng(2)
    img = _textured(rng, 192, 256)
    img[:, 128:] = 255  # right half: paper white
    dense = analyze_image(net, img, vote_sub=64, map_sub=sub, map_stride=32, engine="dense")
    naive = analyze_image(net, img, vote_sub=64, map_sub=sub, map_stride=32, engine="naive")
    for a in (dense, naive):
        c = a.classification
        assert c.n_patches == 6 and c.n_no_evidence == 6  # 3 rows x 2 cols each side
        m = a.class_reliability(c.label_index)
        ne = a.no_evidence_mask()
        # right of the last window reaching into the textured half: no evidence, never a low value
        assert ne[:, 128 + sub:].all() and np.isnan(m[:, 128 + sub:]).all()
        assert not ne[:, :128].any() and np.isfinite(m[:, :128]).all()
    np.testing.assert_allclose(dense.class_reliability(1), naive.class_reliability(1), atol=1e-4, equal_nan=True)
    np.testing.assert_array_equal(dense.no_evidence_mask(), naive.no_evidence_mask())


def test_eq1_averages_only_the_sub_images_with_evidence():
    probs = np.array([[0.2, 0.9]])
    ys, xs = np.array([0]), np.array([0, 32])
    ev = np.array([[True, False]])
    m = reliability_map(probs, ys, xs, (64, 64), (64, 96), evidence=ev)
    assert np.allclose(m[:, :32], 0.2) and np.allclose(m[:, 32:64], 0.2)  # the 0.9 window is ignored
    assert np.isnan(m[:, 64:]).all()  # covered only by the no-evidence window
    full = reliability_map(probs, ys, xs, (64, 64), (64, 96))
    assert np.allclose(full[:, 32:64], 0.55)
