"""Network shape and size, patch grids, the naive engine, vote and reliability map (eq. 1)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from modeltools import randomize_bn

from scanlab.core.engine.network import build_model, count_parameters
from scanlab.core.engine.patches import subimage_grid, training_patch_corners, zigzag
from scanlab.core.engine.reliability import analyze_image, classify_from_subimages, reliability_map
from scanlab.core.errors import Cancelled
from scanlab.core.jobs import CancelToken


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    n = build_model(3).eval()
    randomize_bn(n)
    return n


def test_network_is_light_and_classifies_patches(net):
    assert count_parameters(net) < 1_000_000
    assert net(torch.rand(5, 3, 64, 64)).shape == (5, 3)


def test_dense_logits_equal_patch_by_patch(net):
    x = torch.rand(1, 3, 101, 87)
    with torch.no_grad():
        d = net.dense_logits(x)
        assert d.shape[2:] == ((101 - 64) // 4 + 1, (87 - 64) // 4 + 1)
        for i in range(d.shape[2]):
            for j in range(d.shape[3]):
                p = net(x[..., 4 * i : 4 * i + 64, 4 * j : 4 * j + 64])[0]
                assert torch.allclose(p, d[0, :, i, j], atol=1e-5)


def test_zigzag_is_boustrophedon():
    assert zigzag(2, 3).tolist() == [[0, 0], [0, 1], [0, 2], [1, 2], [1, 1], [1, 0]]


def test_training_corners_stay_inside_their_subimage():
    rng = np.random.default_rng(0)
    c = training_patch_corners((300, 260), (128, 100), rng)
    assert len(c) == 2 * 2
    order = zigzag(2, 2)
    for (r, col), (gy, gx) in zip(c, order, strict=True):
        assert gy * 128 <= r <= gy * 128 + 64 and gx * 100 <= col <= gx * 100 + 36
    again = training_patch_corners((300, 260), (128, 100), np.random.default_rng(0))
    assert np.array_equal(c, again)


def test_grid_validation():
    with pytest.raises(ValueError, match="smaller than the 64"):
        subimage_grid((100, 100), (32, 64), (4, 4))
    with pytest.raises(ValueError, match="at least 1"):
        subimage_grid((100, 100), (64, 64), (0, 4))
    with pytest.raises(ValueError, match="larger than the image"):
        subimage_grid((100, 100), (128, 64), (4, 4))


def _brute_map(img, net, sub, stride, cls):
    """Eq. (1) by definition: crop every sub-image, average its windows, paint."""
    h, w = img.shape[1:]
    s, c = np.zeros((h, w)), np.zeros((h, w))
    for y in range(0, h - sub[0] + 1, stride[0]):
        for x in range(0, w - sub[1] + 1, stride[1]):
            probs = []
            for oy in range(0, sub[0] - 63, 4):
                for ox in range(0, sub[1] - 63, 4):
                    t = torch.from_numpy(img[None, :, y + oy : y + oy + 64, x + ox : x + ox + 64])
                    with torch.no_grad():
                        probs.append(torch.softmax(net(t), 1)[0, cls].item())
            s[y : y + sub[0], x : x + sub[1]] += np.mean(probs)
            c[y : y + sub[0], x : x + sub[1]] += 1
    return np.where(c > 0, s / np.maximum(c, 1), np.nan)


@pytest.mark.parametrize("sub,stride", [((64, 64), (16, 12)), ((72, 80), (9, 11))])
def test_naive_map_matches_definition(net, sub, stride):
    img = np.random.default_rng(3).random((3, 97, 118)).astype(np.float32)
    a = analyze_image(net, img, map_sub=sub, map_stride=stride, engine="naive")
    m = a.class_reliability(1)
    ref = _brute_map(img, net, sub, stride, 1)
    assert np.array_equal(np.isnan(m), np.isnan(ref))
    assert np.nanmax(np.abs(m - ref)) < 1e-5
    assert m.dtype == np.float32 and m.shape == (97, 118)


def test_uncovered_pixels_are_nan():
    probs = np.array([[0.5]])
    m = reliability_map(probs, np.array([0]), np.array([0]), (64, 64), (70, 66))
    assert np.isnan(m[64:, :]).all() and np.isnan(m[:, 64:]).all() and (m[:64, :64] == 0.5).all()


def test_vote_majority_and_tie_break(net):
    img = np.random.default_rng(1).random((3, 128, 192)).astype(np.float32)
    a = analyze_image(net, img, engine="naive")
    c = a.classification
    assert c.n_patches == 2 * 3 and c.votes.sum() == 6
    assert c.votes[c.label_index] == c.votes.max()
    from scanlab.core.engine.reliability import SubImageProbs

    tie = SubImageProbs(np.array([0]), np.array([0, 64]), (64, 64), (64, 64),
                        np.array([[[0.6, 0.4, 0.0], [0.0, 0.45, 0.55]]], dtype=np.float32))
    # one vote each for classes 0 and 2; class 0 has the higher mean probability
    assert classify_from_subimages(tie).label_index == 0


def test_cancel_stops_engine(net):
    tok = CancelToken()
    calls = []

    def progress(done, total):
        calls.append(done)
        tok.cancel()

    img = np.random.default_rng(1).random((3, 200, 200)).astype(np.float32)
    with pytest.raises(Cancelled):
        analyze_image(net, img, map_sub=64, map_stride=1, engine="naive", cancel=tok, progress=progress)
    assert len(calls) == 1
