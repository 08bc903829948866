"""The command line end to end on a 3-scanner tree, and its handling of bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image
from scanner_tree import make_tree

from scanlab.cli import main


def run(capsys, *args):
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def one_line_error(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("scanlab: error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_evaluate_json_separates_scanners(capsys, trained_model, fresh_tree):
    rc, out, _ = run(capsys, "evaluate", fresh_tree, "-m", trained_model, "--json")
    assert rc == 0
    r = json.loads(out)
    for key in ("per_patch_accuracy", "per_image_accuracy", "classes", "confusion_per_image",
                "confusion_per_patch", "n_images"):
        assert key in r
    assert r["n_images"] == 12 and r["classes"] == ["scanner_0", "scanner_1", "scanner_2"]
    assert r["per_image_accuracy"] >= 0.9 and r["per_patch_accuracy"] >= 0.8  # chance is 1/3
    assert np.array(r["confusion_per_image"]).sum() == 12


def test_train_manifest_records_data_and_metrics(trained_model):
    from scanlab.core.modelfile.store import read_manifest

    m = read_manifest(trained_model)
    d = m["training"]["data"]
    assert d["counts"]["scanner_1"] == {"train": 7, "val": 1, "test": 4}
    assert len(d["folder_hash"]) == 64 and m["training"]["recipe"]["lr"] == 0.01
    assert m["metrics"]["test"]["n_images"] == 12
    assert set(d["files"]["test"]).isdisjoint(d["files"]["train"])


def test_classify_json(capsys, trained_model, fresh_tree):
    imgs = sorted(fresh_tree.glob("scanner_2/*.png"))[:2]
    rc, out, _ = run(capsys, "classify", *imgs, "-m", trained_model, "--json")
    assert rc == 0
    r = json.loads(out)
    assert set(r) >= {"images", "model"} and len(r["images"]) == 2
    e = r["images"][0]
    assert set(e) >= {"path", "sha256", "label", "probabilities", "votes", "n_patches"}
    assert e["label"] == "scanner_2" and abs(sum(e["probabilities"].values()) - 1) < 1e-4
    assert sum(e["votes"].values()) == e["n_patches"] == 4 * 4


@pytest.mark.parametrize("suffix", [".npy", ".h5", ".png"])
def test_map_outputs(capsys, tmp_path, trained_model, fresh_tree, suffix):
    img = sorted(fresh_tree.glob("scanner_0/*.png"))[1]  # 256 x 272
    out = tmp_path / f"m{suffix}"
    rc, js, _ = run(capsys, "map", img, "-m", trained_model, "--sub", "64", "--stride", "8", "-o", out, "--json")
    assert rc == 0
    meta = json.loads(js)
    assert meta["label"] == "scanner_0" and meta["timing"]["compute_s"] > 0
    if suffix == ".npy":
        a = np.load(out)
        assert a.dtype == np.float32 and a.shape == (256, 272)
        assert np.isnan(a).sum() == 0  # 64 + 8k covers 256 and 272 exactly
        assert np.nanmean(a) > 0.5
    elif suffix == ".h5":
        import hashlib

        with h5py.File(out) as f:
            d = f["reliability"]
            assert d.shape == (256, 272) and d.dtype == np.float32
            np.testing.assert_array_equal(np.isnan(d[()]), np.zeros((256, 272), bool))
            # the provenance the README promises: which file (by hash), which model, which grid
            assert d.attrs["path"] == str(img.resolve())
            assert d.attrs["sha256"] == hashlib.sha256(img.read_bytes()).hexdigest()
            assert d.attrs["label"] == "scanner_0" and d.attrs["map_label"] == "scanner_0"
            assert json.loads(d.attrs["sub"]) == [64, 64] and json.loads(d.attrs["stride"]) == [8, 8]
            assert d.attrs["engine"] == meta["engine"] and d.attrs["device"] == "cpu"
            model = json.loads(d.attrs["model"])
            assert model["file_sha256"] == hashlib.sha256(Path(trained_model).read_bytes()).hexdigest()
            assert model["weights_sha256"] and model["classes"] == ["scanner_0", "scanner_1", "scanner_2"]
            assert json.loads(d.attrs["scan"])["bit_depth"] == 8
    else:
        assert Image.open(out).size == (272, 256)


def test_map_label_and_nan_border(capsys, tmp_path, trained_model, fresh_tree):
    img = sorted(fresh_tree.glob("scanner_0/*.png"))[1]
    out = tmp_path / "m.npy"
    rc, _, _ = run(capsys, "map", img, "-m", trained_model, "--stride", "24", "--label", "scanner_1", "-o", out)
    assert rc == 0
    a = np.load(out)
    assert np.isnan(a[:, -1]).all() and np.nanmean(a) < 0.5  # 64+24k stops short of 272


@pytest.mark.parametrize(
    "args,needle",
    [
        (["map", "{img}", "--sub", "32", "-o", "{out}"], "at least 64"),
        (["map", "{img}", "--stride", "0", "-o", "{out}"], "at least 1"),
        (["map", "{img}", "--sub", "512", "-o", "{out}"], "larger than the image"),
        (["map", "{img}", "-o", "{tmp}/missing/dir/out.npy"], "does not exist"),
        (["map", "{img}", "-o", "{tmp}/out.txt"], "must end in"),
        (["map", "{img}", "--label", "nope", "-o", "{out}"], "not a class"),
        (["map", "{tmp}/corrupt.png", "-o", "{out}"], "corrupt"),
        (["classify", "{tmp}/empty.png"], "empty file"),
        (["classify", "{tmp}/text.png"], "not a readable image"),
        (["classify", "{tmp}/tiny.png"], "smaller than 64"),
        (["evaluate", "{tmp}/nodata"], "does not exist"),
    ],
)
def test_bad_input_one_line_no_output(capsys, tmp_path, trained_model, fresh_tree, args, needle):
    img = sorted(fresh_tree.glob("scanner_0/*.png"))[0]
    good = tmp_path / "good.png"
    Image.open(img).save(good)
    (tmp_path / "corrupt.png").write_bytes(good.read_bytes()[:300])
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("hello")
    Image.new("RGB", (50, 300)).save(tmp_path / "tiny.png")
    out = tmp_path / "out.npy"
    subst = [a.format(img=img, out=out, tmp=tmp_path) for a in args]
    before = sorted(p.name for p in tmp_path.iterdir())
    rc, _, err = run(capsys, *subst, "-m", trained_model)
    assert rc == 2
    assert needle in one_line_error(err)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


def test_model_errors(capsys, tmp_path, random_model, trained_model, fresh_tree):
    img = sorted(fresh_tree.glob("scanner_0/*.png"))[0]
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"garbage" * 10)
    rc, _, err = run(capsys, "classify", img, "-m", bad)
    assert rc == 2 and "not a ScanLab model file or corrupt" in one_line_error(err)
    rc, out, _ = run(capsys, "evaluate", fresh_tree, "-m", random_model, "--json")  # classes a, b, c
    r = json.loads(out)  # folders the model does not know are unknown scanners, not an error
    assert rc == 0 and r["n_images"] == 0 and sorted(r["unknown_classes"]) == ["scanner_0", "scanner_1", "scanner_2"]


def test_train_bad_input_leaves_nothing(capsys, tmp_path):
    small = make_tree(tmp_path / "small", n_classes=2, n_images=2, size=96)
    out = tmp_path / "m.safetensors"
    rc, _, err = run(capsys, "train", small, "-o", out, "--base", "none", "--cache", "none")
    assert rc == 2 and "too few to split" in one_line_error(err)
    rc, _, err = run(capsys, "train", tmp_path / "nothing", "-o", out, "--base", "none")
    assert rc == 2 and "does not exist" in one_line_error(err)
    rc, _, err = run(capsys, "train", small, "-o", tmp_path / "no" / "m.safetensors", "--base", "none")
    assert rc == 2 and "does not exist" in one_line_error(err)
    assert not out.exists()


def test_killed_training_keeps_previous_model(tmp_path, tree, random_model):
    out = tmp_path / "model.safetensors"
    out.write_bytes(random_model.read_bytes())
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    p = subprocess.Popen(
        [sys.executable, "-m", "scanlab", "train", str(tree), "-o", str(out), "--base", "none",
         "--epochs", "50", "--cache", "none"],
        stderr=subprocess.PIPE, env=env, text=True,
    )
    for line in p.stderr:  # wait until training really runs
        if line.startswith("epoch"):
            break
    time.sleep(0.5)
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    assert out.read_bytes() == random_model.read_bytes()
    assert [x.name for x in tmp_path.iterdir()] == ["model.safetensors"]


def test_train_interrupted_exits_cleanly(tmp_path, tree, random_model):
    out = tmp_path / "model.safetensors"
    out.write_bytes(random_model.read_bytes())
    p = subprocess.Popen(
        [sys.executable, "-m", "scanlab", "train", str(tree), "-o", str(out), "--base", "none",
         "--epochs", "50", "--cache", "none"],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    for line in p.stderr:
        if line.startswith("epoch"):
            break
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130 and "no output written" in err
    assert out.read_bytes() == random_model.read_bytes()


def test_card_command(capsys, trained_model):
    rc, out, _ = run(capsys, "card", trained_model)
    assert rc == 0 and "scanner_0" in out and "per patch" in out


def test_default_model_used_when_m_omitted(capsys, fresh_tree, trained_model, monkeypatch):
    monkeypatch.setenv("SCANLAB_DEFAULT_MODEL", str(trained_model))
    img = sorted(fresh_tree.glob("scanner_1/*.png"))[0]
    rc, out, _ = run(capsys, "classify", img, "--json")
    assert rc == 0 and json.loads(out)["images"][0]["label"] == "scanner_1"
    monkeypatch.setenv("SCANLAB_DEFAULT_MODEL", str(Path("/nonexistent/model.safetensors")))
    rc, _, err = run(capsys, "classify", img)
    assert rc == 2 and "default model is missing" in one_line_error(err)


def test_gui_without_display_runs_headless(capsys, tmp_path, trained_model, fresh_tree, monkeypatch):
    for var in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    img = sorted(fresh_tree.glob("scanner_2/*.png"))[0]
    rc, out, err = run(capsys, "gui", img, "-m", trained_model)
    assert rc == 0
    assert "no display available" in err and "scanner scanner_2" in out
    png = tmp_path / "scanlab-out" / f"{img.stem}_reliability.png"
    assert Image.open(png).size == (256, 256)
