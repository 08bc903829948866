"""kill -9 during a write leaves the previous file intact and readable (issue 9).

The child process reports the moment it is about to replace the output (the
temporary file is complete, the rename is next) by creating the file named in
``SCANLAB_TEST_WRITE_HOOK`` (see :func:`scanlab.core.io.fileio.atomic_write`); the
test waits for that marker, not for a guessed delay, then sends SIGKILL.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import badfiles as bf
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(os.name != "posix", reason="SIGKILL is POSIX")


def _kill_at_hook(argv: list[str], tmp: Path) -> Path:
    marker = tmp / "about-to-rename"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCANLAB_")}
    env.update({"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "SCANLAB_TEST_WRITE_HOOK": str(marker),
                "SCANLAB_DATA_DIR": str(tmp / "ud"), "SCANLAB_CACHE_DIR": str(tmp / "uc")})
    p = subprocess.Popen([sys.executable, "-m", "scanlab", *argv], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300  # a hang guard only; the kill point is the marker
        while not marker.exists():
            assert p.poll() is None, p.communicate()[1].decode()[-2000:]
            assert time.monotonic() < deadline, "the child never reached the write"
            time.sleep(0.02)
        p.send_signal(signal.SIGKILL)
        p.wait(30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stdout.close()
        p.stderr.close()
    assert p.returncode == -signal.SIGKILL
    tmpfile = Path(marker.read_text())
    assert tmpfile.exists() and tmpfile.parent == Path(argv[argv.index("-o") + 1]).parent
    return tmpfile


@pytest.mark.parametrize("suffix", [".npy", ".h5", ".png"])
def test_map_killed_mid_write_keeps_previous_map(tmp_path, suffix):
    img = tmp_path / "scan.png"
    img.write_bytes(bf.png(128, 128))
    out = tmp_path / f"map{suffix}"
    # the previous result: a valid file of the same kind
    from scanlab.services.exports import write_map

    old = np.full((10, 12), 0.25, np.float32)
    write_map(out, old, {"note": "previous run"})
    before = hashlib.sha256(out.read_bytes()).hexdigest()
    evidence = hashlib.sha256(img.read_bytes()).hexdigest()
    tmpfile = _kill_at_hook(["map", str(img), "-o", str(out), "--stride", "16"], tmp_path)
    assert hashlib.sha256(out.read_bytes()).hexdigest() == before
    assert hashlib.sha256(img.read_bytes()).hexdigest() == evidence
    if suffix == ".npy":
        np.testing.assert_array_equal(np.load(out), old)
    elif suffix == ".h5":
        import h5py

        with h5py.File(out) as f:
            np.testing.assert_array_equal(f["reliability"][()], old)
    else:
        from PIL import Image

        assert Image.open(out).size == (12, 10)
    assert tmpfile.stat().st_size > 0  # the new map was complete but never replaced the old one


def test_model_killed_mid_write_keeps_previous_model(tmp_path):
    from scanlab.core.modelfile.store import load_model

    data = tmp_path / "data"
    for c in ("a", "b"):
        (data / c).mkdir(parents=True)
        for i in range(3):
            (data / c / f"{i}.png").write_bytes(bf.png(72, 72, seed=i + (10 if c == "b" else 0)))
    out = tmp_path / "model.safetensors"
    shipped = ROOT / "trained_models" / "scanlab-default.safetensors"
    out.write_bytes(shipped.read_bytes())
    before = hashlib.sha256(out.read_bytes()).hexdigest()
    _kill_at_hook(["train", str(data), "-o", str(out), "--base", "none", "--epochs", "1", "--sub", "64",
                   "--cache", "none"], tmp_path)
    assert hashlib.sha256(out.read_bytes()).hexdigest() == before
    assert len(load_model(out).classes) == 10  # still the previous, readable model
