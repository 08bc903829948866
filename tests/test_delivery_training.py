"""``scanlab train --delivery-chain P``: training patches (and the thresholds' validation scans) go through
the transformations questioned scans really go through (JPEG re-save, resampling, tone)."""

from __future__ import annotations

import numpy as np
import pytest
from scanner_tree import make_tree

from scanlab.cli import main
from scanlab.core.io.delivery import PATCH, delivered_patch
from scanlab.core.modelfile.store import load_model
from scanlab.core.training.patchdata import PatchDataset


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("shape", [(64, 64), (70, 200), (300, 300)])
def test_delivered_patch_is_one_8bit_window_anywhere(dtype, shape):
    rng = np.random.default_rng(0)
    top = np.iinfo(dtype).max
    img = rng.integers(0, top, (*shape, 3), dtype=dtype)
    for r, c in ((0, 0), (shape[0] - PATCH, shape[1] - PATCH), (shape[0] // 2 - 32, shape[1] // 2 - 32)):
        for k in range(8):
            p = delivered_patch(img, r, c, np.random.default_rng([k, r, c]))
            assert p.shape == (PATCH, PATCH, 3) and p.dtype == np.uint8


def _files(tmp_path, n=2):
    rng = np.random.default_rng(1)
    files = []
    for i in range(n):
        f = tmp_path / f"i{i}.npy"
        # smooth content plus sensor-like noise: a JPEG re-save changes it, identity would not
        y, x = np.mgrid[0:256, 0:256]
        base = 128 + 60 * np.sin(x / 9.0 + i)[..., None] + rng.normal(0, 6, (256, 256, 3))
        np.save(f, np.clip(base + 0 * y[..., None], 0, 255).astype(np.uint8))
        files.append(f)
    return files


def test_patch_dataset_chain_is_seeded_and_off_by_default(tmp_path):
    files = _files(tmp_path)
    corners = (np.array([0, 1, 1]), np.array([0, 64, 192]), np.array([10, 100, 192]), np.array([0, 1, 1]))
    plain = PatchDataset(files, corners)
    off = PatchDataset(files, corners, delivery_chain=0.0, seed=3, epoch=2)
    on = PatchDataset(files, corners, delivery_chain=1.0, seed=3, epoch=2)
    again = PatchDataset(files, corners, delivery_chain=1.0, seed=3, epoch=2)
    other_epoch = PatchDataset(files, corners, delivery_chain=1.0, seed=3, epoch=3)
    for k in range(3):
        x, y = plain[k]
        assert torch_equal(off[k][0], x) and off[k][1] == y
        xo, yo = on[k]
        assert xo.shape == x.shape and yo == y
        assert not torch_equal(xo, x)  # every patch went through a delivery path
        assert torch_equal(again[k][0], xo)  # a resumed run or another worker draws the same patch
    assert any(not torch_equal(other_epoch[k][0], on[k][0]) for k in range(3))


def torch_equal(a, b) -> bool:
    return bool((a == b).all())


def test_train_with_delivery_chain_records_it(tmp_path):
    root = make_tree(tmp_path / "lab", n_classes=2, n_images=4, size=128, seed=5)
    out = tmp_path / "m.safetensors"
    assert main(["train", str(root), "-o", str(out), "--base", "none", "--epochs", "1", "--max-batches", "2",
                 "--sub", "64", "--split", "2:1:1", "--seed", "0", "--cache", str(tmp_path / "c"),
                 "--oe-steps", "2", "--delivery-chain", "0.5"]) == 0
    m = load_model(out).manifest
    assert m["training"]["recipe"]["delivery_chain"] == 0.5
    assert "delivery path" in m["open_set"]["validation_delivered"]
    assert m["open_set"]["method"] == "gauss-image"
    assert m["open_set"]["threshold_samples"]["n_val_images"] == 4  # 2 validation scans, each also re-saved


def test_bad_delivery_chain_is_one_line(tmp_path, capsys):
    root = make_tree(tmp_path / "lab", n_classes=2, n_images=2, size=96, seed=5)
    assert main(["train", str(root), "-o", str(tmp_path / "m.safetensors"), "--delivery-chain", "1.5"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err and "--delivery-chain" in err[-1]
