"""Training options measured for the lab's known side (default off): patch jitter, tone curve, frozen early layers."""

from __future__ import annotations

import numpy as np
import torch

from scanlab.core.engine.network import build_model
from scanlab.core.training.config import TrainConfig
from scanlab.core.training.loop import early_layers, fit
from scanlab.core.training.patchdata import JITTER_STEP, PatchDataset, epoch_corners, toned


def test_defaults_leave_the_recipe_as_measured():
    c = TrainConfig()
    assert c.patch_jitter == 0 and c.tone_jitter == 0.0 and c.freeze_early is False


def test_patch_jitter_moves_corners_by_multiples_of_8_inside_the_image():
    shapes, labels = [(512, 512), (200, 300)], [0, 1]
    plain = epoch_corners(shapes, labels, (64, 64), 3, 1)
    assert all((a == b).all() for a, b in zip(plain, epoch_corners(shapes, labels, (64, 64), 3, 1, 0), strict=True))
    j = epoch_corners(shapes, labels, (64, 64), 3, 1, 32)
    d = np.stack([j[1] - plain[1], j[2] - plain[2]])
    assert (d % JITTER_STEP == 0).all() and np.abs(d).max() <= 32 and (d != 0).any()
    for i, (h, w) in enumerate(shapes):
        m = j[0] == i
        assert j[1][m].min() >= 0 and j[1][m].max() <= h - 64 and j[2][m].max() <= w - 64
    # with 64-px sub-images only the jitter gives another patch in another epoch
    assert (epoch_corners(shapes, labels, (64, 64), 3, 2)[1] == plain[1]).all()
    assert (epoch_corners(shapes, labels, (64, 64), 3, 2, 32)[1] != j[1]).any()


def test_tone_curve_keeps_the_range_and_changes_the_levels(tmp_path):
    x = np.linspace(0, 1, 3 * 64 * 64, dtype=np.float32).reshape(3, 64, 64)
    y = toned(x, np.random.default_rng(0), 0.7)
    assert y.dtype == np.float32 and y.min() >= 0 and y.max() <= 1 and not np.allclose(x, y)
    img = (np.random.default_rng(1).random((128, 128, 3)) * 255).astype(np.uint8)
    f = tmp_path / "a.npy"
    np.save(f, img)
    corners = (np.array([0]), np.array([8]), np.array([16]), np.array([0]))
    a = PatchDataset([f], corners)[0][0]
    b = PatchDataset([f], corners, tone_jitter=0.7, seed=0, epoch=1)[0][0]
    assert a.shape == b.shape and not torch.allclose(a, b)


class _Images:
    def __init__(self, files, labels, shapes):
        self.files, self.labels, self.shapes = files, labels, shapes

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        return np.load(self.files[i])


def test_freeze_early_keeps_stem_and_first_block_weights_and_statistics(tmp_path):
    rng = np.random.default_rng(0)
    files = []
    for k in range(4):
        f = tmp_path / f"{k}.npy"
        np.save(f, (rng.random((128, 128, 3)) * 255).astype(np.uint8))
        files.append(str(f))
    imgs = _Images(files, [0, 1, 0, 1], [(128, 128)] * 4)
    torch.manual_seed(0)
    net = build_model(2)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    fit(net, imgs, imgs, TrainConfig(epochs=1, batch_size=8, freeze_early=True, seed=1))
    early = {f"{n}.{k}" for n, m in (("stem", net.stem), ("inc1", net.inc1)) for k in m.state_dict()}
    after = net.state_dict()
    assert early and all(torch.equal(before[k], after[k]) for k in early)  # weights and running statistics
    assert not torch.equal(before["inc2.b1.0.weight"], after["inc2.b1.0.weight"])
    assert [m for m in early_layers(net)] == [net.stem, net.inc1]
