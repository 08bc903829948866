"""Shared fixtures: isolated user folders, tiny random models, a trained 3-scanner model."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).parent))

from modeltools import write_random_model  # noqa: E402
from scanner_tree import make_tree  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated_user_dirs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never touch the real per-user data/cache folders from tests."""
    base = tmp_path_factory.getbasetemp() / "userdirs"
    monkeypatch.setenv("SCANLAB_DATA_DIR", str(base / "data"))
    monkeypatch.setenv("SCANLAB_CACHE_DIR", str(base / "cache"))


@pytest.fixture(autouse=True, scope="session")
def _small_outlier_exposure():
    """Every training run trains the "other scanner" output; tests use a small outlier bank
    (20 designs, rendered once per session into the isolated cache) and few steps."""
    from scanlab.services import other_output, training

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(other_output, "OUTLIER_DESIGNS", 20)
        mp.setattr(other_output, "WINDOWS_PER_DESIGN", 4)
        mp.setattr(training, "OE_MIN_STEPS", 10)
        yield


@pytest.fixture(scope="session")
def random_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_random_model(tmp_path_factory.mktemp("model") / "random.safetensors", ["a", "b", "c"])


@pytest.fixture(scope="session")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three scanners differing only by a faint per-column gain pattern."""
    return make_tree(tmp_path_factory.mktemp("tree"), n_classes=3, n_images=12, size=256, seed=0)


@pytest.fixture(scope="session")
def fresh_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Same scanners, new content (an independent test set)."""
    return make_tree(tmp_path_factory.mktemp("fresh"), n_classes=3, n_images=4, size=256, seed=99)


@pytest.fixture(scope="session")
def trained_model(tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Train once per session through the CLI entry point."""
    from scanlab.cli import main

    out = tmp_path_factory.mktemp("trained") / "three.safetensors"
    rc = main([
        "train", str(tree), "-o", str(out), "--base", "none", "--epochs", "15", "--patience", "20",
        "--sub", "64", "--seed", "0", "--cache", str(out.parent / "cache"),
    ])
    assert rc == 0
    return out
