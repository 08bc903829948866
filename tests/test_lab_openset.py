"""Every ``scanlab train`` run trains the "other scanner" output, scores with ``gauss-image`` and sets its threshold
without needing 3 validation images per class; ``_other`` holds negatives, not a class;
the rendered outlier windows are cached and reused."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scanner_tree import content, make_tree

from scanlab.cli import main
from scanlab.core.modelfile.store import load_model
from scanlab.services import outlier_cache


def _unseen(folder, n: int, seed: int) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    gain = 1.0 + 0.15 * np.cos(2 * np.pi * np.arange(144) / 4)
    for i in range(n):
        img = content(rng, 128, 144) * gain[None, :, None] + rng.normal(0, 0.004, (128, 144, 3))
        Image.fromarray((np.clip(img, 0, 1) * 255).round().astype(np.uint8)).save(folder / f"n_{i}.png")


def _train(data, out, cache, *extra: str) -> int:
    return main([
        "train", str(data), "-o", str(out), "--base", "none", "--epochs", "1", "--max-batches", "2",
        "--sub", "64", "--split", "2:1:1", "--seed", "0", "--cache", str(cache), "--oe-steps", "3", *extra,
    ])


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    root = make_tree(tmp_path_factory.mktemp("lab"), n_classes=3, n_images=4, size=128, seed=5)
    _unseen(root / "_other", 2, seed=1)
    return root


def test_one_validation_image_per_class_still_gets_an_open_set(lab, tmp_path):
    out = tmp_path / "m.safetensors"
    assert _train(lab, out, tmp_path / "c") == 0
    lm = load_model(out)
    m = lm.manifest
    assert lm.classes == ["scanner_0", "scanner_1", "scanner_2"]  # _other is not a class
    assert all(c["val"] == 1 for c in m["training"]["data"]["counts"].values())
    os_ = m["open_set"]
    assert os_["method"] == "gauss-image"
    assert 0 < os_["thresholds"]["unknown"] < 1
    assert "cross-fitted" in os_["threshold_rule"]  # the training images, left out one at a time
    s = os_["threshold_samples"]
    assert s["n_val_images"] == 3 and s["n_crossfit_images"] == 6 and s["n_outlier_designs"] > 0
    assert {"open_set.gauss_proj", "open_set.gauss_centres", "open_set.other_weight", "open_set.other_bias"} <= set(
        lm.extras)
    # the lab's negatives: every second one exposed, the other checks the threshold
    oe = m["training"]["outlier_exposure"]
    assert oe["steps"] == 3 and oe["negatives"]["n_images"] == 2 and oe["negatives"]["exposure_windows"] > 0
    assert os_["negatives"]["n_images"] == 1


def test_outlier_windows_are_rendered_once(lab, tmp_path):
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    assert _train(lab, a, tmp_path / "c", "--seed", "1") == 0
    before = outlier_cache.renders
    files = sorted((tmp_path.parent).glob("**/outliers/*.npy"))
    assert files  # the cache file the first run wrote
    stamps = {f: f.stat().st_mtime_ns for f in files}
    assert _train(lab, b, tmp_path / "c", "--seed", "2") == 0
    assert outlier_cache.renders == before  # the second run read the cache
    assert all(f.stat().st_mtime_ns == t for f, t in stamps.items())
    assert load_model(b).manifest["open_set"]["method"] == "gauss-image"


def test_other_folder_option_and_bad_other(lab, tmp_path, capsys):
    neg = tmp_path / "neg"
    _unseen(neg, 1, seed=2)
    out = tmp_path / "m.safetensors"
    assert _train(lab, out, tmp_path / "c", "--other", str(neg)) == 0
    assert load_model(out).manifest["training"]["outlier_exposure"]["negatives"]["n_images"] == 3
    capsys.readouterr()
    assert _train(lab, tmp_path / "x.safetensors", tmp_path / "c", "--other", str(tmp_path / "missing")) == 2
    assert "--other is not a folder" in capsys.readouterr().err
    assert not (tmp_path / "x.safetensors").exists()


def test_parse_budget():
    from scanlab.core.errors import ScanLabError
    from scanlab.services.budget import parse_budget

    assert parse_budget("15m") == 900 and parse_budget("1h30m") == 5400 and parse_budget("90") == 90
    for bad in ("soon", "15x", "5s", "m15"):
        with pytest.raises(ScanLabError):
            parse_budget(bad)


def test_budget_sets_patches_per_epoch_and_prints_the_estimate_first(lab, tmp_path, capsys):
    out = tmp_path / "m.safetensors"
    capsys.readouterr()
    rc = main(["train", str(lab), "-o", str(out), "--base", "none", "--epochs", "1", "--sub", "64",
               "--split", "2:1:1", "--cache", str(tmp_path / "c"), "--oe-steps", "2", "--budget", "10s"])
    err = capsys.readouterr().err
    assert rc == 0
    b = load_model(out).manifest["training"]["budget"]
    assert b["budget_s"] == 10 and 1 <= b["batches_per_epoch"] <= b["full_batches_per_epoch"]
    assert b["measured"]["t_step"] > 0 and b["measured"]["t_oe"] > 0
    assert load_model(out).manifest["training"]["recipe"]["max_batches"] == b["batches_per_epoch"]
    assert "estimate" in err and err.index("estimate") < err.index("[training]")


def test_frozen_maps_are_the_trunks_own():
    """The last block on the frozen part's maps gives the network's own logits (the trunk centres its input first)."""
    import torch

    from scanlab.core.engine.network import build_model
    from scanlab.core.training.other import _frozen_maps, frozen_layers

    torch.manual_seed(0)
    net = build_model(4).eval()
    for m in net.modules():  # batch norm with non-trivial statistics, as in a trained network
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 2.0)
    windows = np.random.default_rng(0).integers(0, 256, (6, 64, 64, 3), dtype=np.uint8)
    x = torch.from_numpy(windows.transpose(0, 3, 1, 2).astype(np.float32) / 255.0)
    with torch.no_grad():
        exact = net.inc2(frozen_layers(net)(x))
        assert torch.allclose(exact, net.trunk(x), atol=1e-5), float((exact - net.trunk(x)).abs().max())
        maps = _frozen_maps(frozen_layers(net), windows, torch.device("cpu")).float()  # stored as float16
        via_maps, direct = net.fc(net.inc2(maps).mean(dim=(2, 3))), net(x)
    assert (via_maps.argmax(1) == direct.argmax(1)).all()
