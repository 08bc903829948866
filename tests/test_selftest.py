"""``scanlab selftest``: PASS on the shipped set, FAIL when figures differ, exit 2 on bad input."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from scanlab.cli import main
from scanlab.services import selftest
from scanlab.services.paths import selftest_dir


def test_shipped_model_passes_on_shipped_set(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["selftest", "--device", "cpu", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    ref = json.loads((selftest_dir() / "selftest.json").read_text())
    assert out["passed"] and out["n_images"] == ref["reference"]["n_images"] >= 20
    by_name = {c["name"]: c for c in out["checks"]}
    got = by_name["per-patch accuracy vs reference"]["measured"]
    assert abs(got - ref["reference"]["per_patch_accuracy"]) <= ref["tolerance"]["per_patch_accuracy"]
    assert by_name["model weights"]["measured"] == ref["model"]["weights_sha256"]
    assert by_name["model file"]["ok"] and by_name["model manifest"]["ok"] and by_name["self-test files"]["ok"]
    assert by_name["self-test reference"]["ok"]
    unseen = by_name["unseen scanners' scans not attributed"]
    assert unseen["ok"] and unseen["of"] == ref["reference"]["verdicts"]["unseen"] >= 10
    # the card figure is checked, and it is the model manifest's test figure
    assert "per-image accuracy vs card (test split)" in by_name


@pytest.fixture
def set_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "selftest"
    shutil.copytree(selftest_dir(), d)
    monkeypatch.setattr(selftest, "selftest_dir", lambda: d)
    return d


def test_differing_figures_fail_with_numbers(set_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ref_file = set_copy / "selftest.json"
    ref = json.loads(ref_file.read_text())
    ref["reference"]["per_patch_accuracy"] -= 0.02  # beyond the 0.5-point tolerance
    ref_file.write_text(json.dumps(ref))
    assert main(["selftest", "--device", "cpu"]) == 1
    out = capsys.readouterr().out
    assert out.rstrip().splitlines()[-1].startswith("FAIL")
    assert "FAIL per-patch accuracy vs reference" in out and "+/- 0.50" in out
    assert "FAIL self-test reference" in out  # the reference file is not the shipped one


def test_other_weights_fail(set_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ref_file = set_copy / "selftest.json"
    ref = json.loads(ref_file.read_text())
    ref["model"]["weights_sha256"] = "0" * 64
    ref_file.write_text(json.dumps(ref))
    assert main(["selftest", "--device", "cpu"]) == 1
    assert "FAIL model weights" in capsys.readouterr().out


def test_damaged_set_is_bad_input(set_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    next(set_copy.glob("vscan-03/*")).unlink()
    assert main(["selftest", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("scanlab: error: ") and "self-test set damaged" in err and "\n" not in err


def test_missing_set_is_bad_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(selftest, "selftest_dir", lambda: tmp_path / "nowhere")
    assert main(["selftest"]) == 2
    assert "self-test set is not installed" in capsys.readouterr().err


def test_missing_model_is_bad_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SCANLAB_DEFAULT_MODEL", str(tmp_path / "gone.safetensors"))
    assert main(["selftest"]) == 2
    err = capsys.readouterr().err.strip()
    assert "shipped default model is missing" in err and "\n" not in err


def test_wilson_interval_brackets_the_fraction() -> None:
    lo, hi = selftest.wilson_interval(29 / 30, 30)
    assert 0.82 < lo < 29 / 30 < hi < 1.0
    assert selftest.wilson_interval(1.0, 10)[1] == 1.0


def _tampered_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, edit) -> None:
    """Install a copy of the shipped model whose manifest ``edit`` changed (weights untouched)."""
    from scanlab.core.modelfile.store import load_model, save_model
    from scanlab.services.paths import default_model_path

    lm = load_model(default_model_path())
    man = {k: v for k, v in lm.manifest.items() if not k.startswith("_")}
    edit(man)
    out = tmp_path / "scanlab-default.safetensors"
    save_model(lm.net, man, out, extras=lm.extras)
    monkeypatch.setenv("SCANLAB_DEFAULT_MODEL", str(out))


def test_edited_unknown_threshold_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _tampered_model(tmp_path, monkeypatch, lambda m: m["open_set"]["thresholds"].__setitem__("unknown", 0.999))
    assert main(["selftest", "--device", "cpu"]) == 1
    out = capsys.readouterr().out
    assert "ok   model weights" in out  # the weights hash alone would have passed
    assert "FAIL model manifest" in out and "FAIL model file" in out
    assert "FAIL unseen scanners' scans not attributed" in out  # and the behaviour shows it


def test_removed_open_set_method_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _tampered_model(tmp_path, monkeypatch, lambda m: m.pop("open_set"))
    assert main(["selftest", "--device", "cpu"]) == 1
    out = capsys.readouterr().out
    assert "FAIL model manifest" in out
    # without an open set nothing is "unknown": only the vote rules keep a few unseen scans from a name
    assert re.search(r"FAIL unseen scanners' scans not attributed: [0-3] of 10", out)


@pytest.mark.parametrize("how", ["changed", "added"])
def test_set_files_not_as_shipped_fail(set_copy: Path, capsys: pytest.CaptureFixture[str], how: str) -> None:
    if how == "changed":
        f = next(set_copy.glob("unseen/*.jpg"))
        f.write_bytes(f.read_bytes() + b"\0")  # still decodes: only the hash can tell
        want = f"{f.relative_to(set_copy).as_posix()} changed"
    else:
        shutil.copy(next(set_copy.glob("unseen/*.jpg")), set_copy / "unseen" / "extra.jpg")
        want = "unseen/extra.jpg not shipped"
    assert main(["selftest", "--device", "cpu"]) == 1
    out = capsys.readouterr().out
    assert "FAIL self-test files" in out and want in out
