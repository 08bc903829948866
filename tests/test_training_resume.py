"""Checkpoints: resume after a real kill, a full disk keeps the previous checkpoint, NaN stops the run."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from scanner_tree import make_tree

from scanlab.cli import main
from scanlab.core.io import fileio
from scanlab.core.training.loop import (
    CheckpointError,
    TrainConfig,
    TrainingDiverged,
    load_checkpoint,
)
from scanlab.services.training import TrainRequest, checkpoint_path, run_training

ARGS = ["--base", "none", "--epochs", "5", "--patience", "20", "--sub", "64", "--seed", "3",
        "--batch-size", "16", "--cache", "none", "--json"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_tree(tmp_path_factory.mktemp("rs"), n_classes=2, n_images=6, size=192, seed=11)


def test_resume_after_kill_matches_uninterrupted_run(tmp_path, data):
    out = tmp_path / "killed.safetensors"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), OMP_NUM_THREADS="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "scanlab", "train", str(data), "-o", str(out), *ARGS],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env,
    )
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if line.startswith("[checkpoint] epoch 2 saved"):
            proc.send_signal(signal.SIGKILL)  # a crash: no chance to clean up
            break
    proc.wait(timeout=120)
    assert proc.returncode == -signal.SIGKILL, "".join(seen)
    assert not out.exists()
    ck = load_checkpoint(checkpoint_path(TrainRequest(data_dir=str(data), output=str(out))))
    assert ck["epoch"] == 2

    # every run in a fresh process with the same environment (thread count changes float
    # summation order, and other tests may have changed this process's torch settings)
    def run(*extra: str) -> dict:
        p = subprocess.run([sys.executable, "-m", "scanlab", "train", str(data), *extra, *ARGS],
                           capture_output=True, text=True, env=env, timeout=300)
        assert p.returncode == 0, p.stderr[-2000:]
        return json.loads(p.stdout)

    resumed = run("-o", str(out), "--resume")
    assert resumed["resumed_from_epoch"] == 2 and resumed["epochs_run"] == 5
    assert not checkpoint_path(TrainRequest(data_dir=str(data), output=str(out))).exists()

    straight = run("-o", str(tmp_path / "straight.safetensors"))
    assert straight["resumed_from_epoch"] is None
    # deterministic patches per (seed, epoch) + restored optimizer and schedule: same weights
    assert resumed["weights_sha256"] == straight["weights_sha256"]


def test_resume_without_checkpoint_or_with_other_settings(tmp_path, data, capsys):
    out = tmp_path / "m.safetensors"
    assert main(["train", str(data), "-o", str(out), *ARGS, "--resume"]) == 2
    assert "no checkpoint to resume from" in capsys.readouterr().err
    req = TrainRequest(data_dir=str(data), output=str(out), base="none", cache="",
                       config=TrainConfig(epochs=3, sub=(64, 64), batch_size=16, seed=3))
    def boom(rec):
        raise KeyboardInterrupt  # a cancelled run after its first checkpoint

    with pytest.raises(KeyboardInterrupt):
        run_training(req, on_epoch=boom)
    other = TrainRequest(data_dir=str(data), output=str(out), base="none", cache="", resume=True,
                         config=TrainConfig(epochs=3, sub=(64, 64), batch_size=16, seed=3, lr=0.5))
    with pytest.raises(CheckpointError, match="other data or settings"):
        run_training(other)
    assert not out.exists()


def test_disk_full_during_checkpoint_keeps_previous(tmp_path, data, monkeypatch):
    out = tmp_path / "m.safetensors"
    req = TrainRequest(data_dir=str(data), output=str(out), base="none", cache="",
                       config=TrainConfig(epochs=4, sub=(64, 64), batch_size=16, seed=3))
    ck = checkpoint_path(req)
    real = fileio.atomic_write
    calls = {"n": 0}

    def flaky(path, write, **kw):
        calls["n"] += 1
        if calls["n"] == 2:  # the second checkpoint hits a full disk half-way through writing
            def partial(tmp):
                Path(tmp).write_bytes(b"half")
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(path, partial, **kw)
        return real(path, write, **kw)

    monkeypatch.setattr(fileio, "atomic_write", flaky)
    with pytest.raises(CheckpointError, match="No space left on device.*previous checkpoint is kept"):
        run_training(req)
    assert load_checkpoint(ck)["epoch"] == 1
    assert not out.exists()
    assert [p.name for p in ck.parent.iterdir() if p.name.startswith(".")] == []  # no temporary left


def test_nan_loss_stops_and_saves_nothing(tmp_path, data, random_model, capsys):
    out = tmp_path / "nan.safetensors"
    out.write_bytes(random_model.read_bytes())
    req = TrainRequest(data_dir=str(data), output=str(out), base="none", cache="",
                       config=TrainConfig(epochs=3, sub=(64, 64), batch_size=16, seed=3, lr=1e30, schedule="constant"))
    with pytest.raises(TrainingDiverged, match="loss became (nan|inf).*no model was saved"):
        run_training(req)
    assert out.read_bytes() == random_model.read_bytes()
    rc = main(["train", str(data), "-o", str(tmp_path / "n2.safetensors"), *ARGS, "--lr", "1e30"])
    err = capsys.readouterr().err
    assert rc == 2 and "scanlab: error: training diverged" in err and "Traceback" not in err
    assert not (tmp_path / "n2.safetensors").exists()
