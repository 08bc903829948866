"""Shipped-file lookup (scanlab.services.paths) and the optional synth extra."""

from __future__ import annotations

from pathlib import Path

import pytest

import scanlab
from scanlab.cli import main
from scanlab.core.synth import content
from scanlab.services import paths

ROOT = Path(__file__).resolve().parents[1]


def test_checkout_resolves_its_own_sources() -> None:
    # Run from the checkout (editable install or PYTHONPATH): no copy, the sources.
    assert Path(scanlab.__file__).resolve().parents[1] == ROOT
    assert paths.data_root() == ROOT
    assert paths.default_model_path() == ROOT / "trained_models" / "scanlab-default.safetensors"
    assert paths.default_model_path().is_file()
    assert paths.sample_scans() == [str(ROOT / "resources" / "samples" / "forged_splice.jpg")]


def test_default_model_env_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SCANLAB_DEFAULT_MODEL", str(tmp_path / "m.safetensors"))
    assert paths.default_model_path() == tmp_path / "m.safetensors"


@pytest.mark.parametrize("command", ["synth", "forge"])
def test_synth_without_extra_says_how_to_install(
    command: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(content, "_skimage_data_dir", lambda: None)
    out = tmp_path / "bank"
    args = [command, str(out), "--seed", "0"]
    args += ["--scanners", "2", "--images", "1"] if command == "synth" else ["--n", "1"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("scanlab: error: scikit-image photographs: not installed")
    assert "pip install 'scanlab[synth]'" in err
    assert not out.exists()
