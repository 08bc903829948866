"""The dense engine against the naive reference (issue 4).

Random weights (batch-norm statistics randomised too, so folding BN is really
exercised, and a scaled fc so the probabilities are far from uniform), random
images of odd sizes. The naive reference is computed once per image for *every*
window corner (stride 1) and sliced, which keeps the file fast.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from scanlab.core.engine.dense import DenseEngine, _chunks
from scanlab.core.engine.engines import DEFAULT_ENGINE, NaiveEngine, get_engine
from scanlab.core.engine.fused import FusedTrunk
from scanlab.core.engine.network import PATCH, ScannerNet, build_model
from scanlab.core.engine.reliability import analyze_image
from scanlab.core.errors import Cancelled
from scanlab.core.jobs import CancelToken

CPU = torch.device("cpu")
TOL = 1e-5
SHAPE = (117, 103)  # odd on purpose; every sub-image size below fits


def _random_net(seed: int, n_classes: int = 5) -> ScannerNet:
    torch.manual_seed(seed)
    net = build_model(n_classes)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5, generator=g)
                m.running_var.uniform_(0.3, 2.0, generator=g)
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.uniform_(-0.3, 0.3, generator=g)
        net.fc.weight.mul_(30.0)  # spread the probabilities so differences would show
    return net.eval()


@pytest.fixture(scope="module")
def net() -> ScannerNet:
    return _random_net(0)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.random((3, *SHAPE), dtype=np.float32)


@pytest.fixture(scope="module")
def reference(net: ScannerNet, image: np.ndarray) -> np.ndarray:
    """Naive probabilities of every window corner of ``image``."""
    ys = np.arange(SHAPE[0] - PATCH + 1)
    xs = np.arange(SHAPE[1] - PATCH + 1)
    return NaiveEngine(batch_size=512).window_probs(net, image, ys, xs, device=CPU)


class TableEngine:
    """The naive reference, precomputed for all corners, served by lookup."""

    name = "naive-table"

    def __init__(self, table: np.ndarray) -> None:
        self.table = table
        self.calls = 0

    def window_probs(self, net, image, ys, xs, *, device, cancel=None, progress=None):  # noqa: ANN001
        self.calls += 1
        return self.table[np.ix_(ys, xs)]


def test_registry_defaults_to_dense() -> None:
    assert DEFAULT_ENGINE == "dense"
    assert isinstance(get_engine(), DenseEngine)
    assert isinstance(get_engine("naive"), NaiveEngine)


def test_reference_is_informative(reference: np.ndarray) -> None:
    # Guard against a vacuous comparison: the reference must not be near-uniform.
    assert reference.max() > 0.9 and reference.std() > 0.1


def test_fused_trunk_matches_shifted_trunk(net: ScannerNet, image: np.ndarray) -> None:
    x = torch.from_numpy(image)[None]
    trunk = FusedTrunk(net, CPU)
    with torch.inference_mode():
        stem = trunk.stem(x.contiguous(memory_format=torch.channels_last))
        for r in range(4):
            ref = net.trunk(x[..., r:, r:])
            got = trunk.stage2(trunk.stage1(stem, r % 2, r % 2), r // 2, r // 2)
            assert got.shape == ref.shape
            assert (got - ref).abs().max().item() < 1e-5


@pytest.mark.parametrize("stride", [1, 3, 4, 6, 8, (5, 2)])
def test_window_probs_match_naive(
    net: ScannerNet, image: np.ndarray, reference: np.ndarray, stride
) -> None:
    sy, sx = stride if isinstance(stride, tuple) else (stride, stride)
    ys = np.arange(0, SHAPE[0] - PATCH + 1, sy)
    xs = np.arange(0, SHAPE[1] - PATCH + 1, sx)
    got = DenseEngine().window_probs(net, image, ys, xs, device=CPU)
    assert got.shape == (len(ys), len(xs), net.n_classes) and got.dtype == np.float32
    assert np.abs(got - reference[np.ix_(ys, xs)]).max() <= TOL


@pytest.mark.parametrize("tile", [64, 67, 100, 131, 4096])
def test_results_do_not_depend_on_tile_size(
    net: ScannerNet, image: np.ndarray, reference: np.ndarray, tile: int
) -> None:
    rng = np.random.default_rng(tile)
    # Irregular corners: every residue mod 4, gaps above and below the chunk threshold
    # (few of them: a 64-px tile holds one cell, so this is one tile per corner pair).
    ys = np.unique(rng.integers(0, SHAPE[0] - PATCH + 1, 9))
    xs = np.unique(np.r_[0, rng.integers(0, SHAPE[1] - PATCH + 1, 6), SHAPE[1] - PATCH])
    got = DenseEngine(tile).window_probs(net, image, ys, xs, device=CPU)
    assert np.abs(got - reference[np.ix_(ys, xs)]).max() <= TOL
    whole = DenseEngine(4096).window_probs(net, image, ys, xs, device=CPU)
    assert np.abs(got - whole).max() <= 1e-6


@pytest.mark.parametrize(
    ("sub", "stride", "tile"),
    [
        (64, 4, None),
        (64, 3, 90),
        (80, 4, 120),
        (80, 6, None),
        ((100, 72), 1, 100),
        ((100, 72), (8, 5), 64),
    ],
)
def test_analysis_matches_naive(
    net: ScannerNet, image: np.ndarray, reference: np.ndarray, sub, stride, tile
) -> None:
    kwargs = dict(vote_sub=64, map_sub=sub, map_stride=stride, device=CPU)
    dense = analyze_image(net, image, engine=DenseEngine(tile), **kwargs)
    naive = analyze_image(net, image, engine=TableEngine(reference), **kwargs)
    assert dense.engine == "dense"
    assert np.abs(dense.vote.probs - naive.vote.probs).max() <= TOL
    assert np.abs(dense.map_grid.probs - naive.map_grid.probs).max() <= TOL
    assert dense.classification.label_index == naive.classification.label_index
    np.testing.assert_array_equal(dense.classification.votes, naive.classification.votes)
    for k in range(net.n_classes):
        a, b = dense.class_reliability(k), naive.class_reliability(k)
        assert a.shape == SHAPE and a.dtype == np.float32
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
        assert np.nanmax(np.abs(a - b)) <= TOL


def test_naive_engine_by_name_agrees(net: ScannerNet, image: np.ndarray) -> None:
    small = np.ascontiguousarray(image[:, :81, :77])
    kwargs = dict(vote_sub=64, map_sub=72, map_stride=8, device=CPU)
    a = analyze_image(net, small, engine="naive", **kwargs)
    b = analyze_image(net, small, **kwargs)  # the default engine
    assert a.engine == "naive" and b.engine == "dense"
    assert np.abs(a.map_grid.probs - b.map_grid.probs).max() <= TOL
    assert np.nanmax(np.abs(a.class_reliability(1) - b.class_reliability(1))) <= TOL


def test_integer_scan_input(net: ScannerNet) -> None:
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (97, 111, 3), dtype=np.uint8)
    as_float = np.ascontiguousarray(np.moveaxis(pixels, -1, 0), dtype=np.float32) / np.float32(255)
    ys, xs = np.arange(0, 34, 3), np.arange(0, 48, 5)
    a = DenseEngine(80).window_probs(net, pixels, ys, xs, device=CPU)
    b = DenseEngine().window_probs(net, as_float, ys, xs, device=CPU)
    assert np.abs(a - b).max() <= 1e-6
    pix16 = pixels.astype(np.uint16) * 257  # same values on the 16-bit scale
    c = DenseEngine().window_probs(net, pix16, ys, xs, device=CPU)
    assert np.abs(c - b).max() <= 1e-6


def test_sparse_grid_only_computes_needed_tiles(net: ScannerNet) -> None:
    rng = np.random.default_rng(5)
    img = rng.random((3, 700, 300), dtype=np.float32)
    ys = np.array([0, 300, 636])  # far apart: one tile each
    xs = np.array([8, 12, 200])
    calls: list[tuple[int, int]] = []
    got = DenseEngine().window_probs(
        net, img, ys, xs, device=CPU, progress=lambda d, t: calls.append((d, t))
    )
    assert calls[-1] == (6, 6)  # 3 row chunks x 2 column chunks, not the whole 700x300 image
    ref = NaiveEngine().window_probs(net, img, ys, xs, device=CPU)
    assert np.abs(got - ref).max() <= TOL


def test_chunks_respect_tile_and_gap() -> None:
    corners = np.array([0, 4, 8, 60, 64, 200, 201, 203, 400])
    chunks = _chunks(corners, per_tile=10)
    assert [list(i) for _, i in chunks] == [[0, 1, 2], [3, 4], [5, 6, 7], [8]]
    assert [q for q, _ in chunks] == [0, 15, 50, 100]
    assert all(len(i) == 1 for _, i in _chunks(np.arange(0, 40, 4), per_tile=1))


def test_cancel_stops_within_one_tile(net: ScannerNet) -> None:
    rng = np.random.default_rng(11)
    img = rng.random((3, 300, 300), dtype=np.float32)
    token = CancelToken()
    seen: list[int] = []

    def progress(done: int, total: int) -> None:
        seen.append(done)
        if done == 1:
            token.cancel()

    with pytest.raises(Cancelled):
        analyze_image(
            net,
            img,
            map_sub=64,
            map_stride=4,
            engine=DenseEngine(64),
            cancel=token,
            progress=progress,
        )
    assert seen == [1]  # stopped at the next tile boundary, of many
    with pytest.raises(Cancelled):  # an already-cancelled token does no work at all
        DenseEngine().window_probs(net, img, np.array([0]), np.array([0]), device=CPU, cancel=token)


class _Exploding(TableEngine):
    def window_probs(self, *args, **kwargs):  # noqa: ANN002, ANN003
        raise AssertionError("work started before the arguments were checked")


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(map_sub=64, map_stride=0),
        dict(map_sub=64, map_stride=(4, 0)),
        dict(map_sub=63, map_stride=4),
        dict(map_sub=(64, 50), map_stride=4),
        dict(map_sub=(118, 64), map_stride=4),
        dict(map_sub=(64, 104), map_stride=4),
        dict(vote_sub=200),
        dict(vote_sub=32),
    ],
)
def test_bad_arguments_fail_before_work(net: ScannerNet, image: np.ndarray, kwargs) -> None:
    with pytest.raises(ValueError):
        analyze_image(net, image, engine=_Exploding(np.zeros(0)), device=CPU, **kwargs)


def test_engine_rejects_bad_input(net: ScannerNet, image: np.ndarray) -> None:
    eng = DenseEngine()
    ok = np.array([0, 4])
    with pytest.raises(ValueError):
        DenseEngine(tile=32)
    with pytest.raises(ValueError):
        eng.window_probs(net, image, np.array([4, 0]), ok, device=CPU)  # not increasing
    with pytest.raises(ValueError):
        eng.window_probs(net, image, np.array([SHAPE[0] - 63]), ok, device=CPU)  # window overhangs
    with pytest.raises(ValueError):
        eng.window_probs(net, image, np.array([-1, 0]), ok, device=CPU)
    with pytest.raises(ValueError):
        eng.window_probs(net, image[0], ok, ok, device=CPU)  # not 3 axes
    with pytest.raises(ValueError):
        eng.window_probs(net, image.astype(np.uint8), ok, ok, device=CPU)  # (3, H, W) integers
    empty = eng.window_probs(net, image, np.zeros(0, np.int64), ok, device=CPU)
    assert empty.shape == (0, 2, net.n_classes)


def test_portable_path_matches(
    net: ScannerNet, image: np.ndarray, reference: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The plain conv2d + relu path that CUDA, MPS and CPU builds without oneDNN take.
    monkeypatch.setattr("scanlab.core.engine.fused._pointwise_available", lambda device: False)
    ys = np.arange(0, SHAPE[0] - PATCH + 1, 3)
    xs = np.arange(0, SHAPE[1] - PATCH + 1, 2)
    got = DenseEngine(90).window_probs(net, image, ys, xs, device=CPU)
    assert np.abs(got - reference[np.ix_(ys, xs)]).max() <= TOL


def test_workers_leave_thread_default_untouched(net: ScannerNet) -> None:
    """Issue 9 item 6: set_num_threads(1) in the tile workers must not leak into threads made later."""
    import threading

    torch.set_num_threads(2)  # a value a worker's 1 would visibly change
    img = np.random.default_rng(0).random((3, 200, 200), dtype=np.float32)
    ys = xs = np.arange(0, 200 - 64 + 1, 4)
    DenseEngine(80, workers=2).window_probs(net, img, ys, xs, device=CPU)
    seen: list[int] = []
    t = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    t.start()
    t.join()
    assert seen == [2]
    assert torch.get_num_threads() == 2
