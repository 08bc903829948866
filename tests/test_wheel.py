"""The wheel works outside the checkout; an editable install reads the checkout's sources.

Both tests build from a copy of the sources in a temporary folder (so the checkout gets
no build/ or egg-info litter) with the environment's own setuptools (no network), and
install into a new venv that sees the packages of the interpreter running the tests
(torch, Qt... are not reinstalled) but not the checkout: PYTHONPATH is dropped and the
commands run from another folder. Each test asserts where ``scanlab`` was imported from.

"The running interpreter's packages" is not ``system_site_packages=True``: that shows
the *base* interpreter's site-packages, which is not where the packages are when the
tests run in a venv or a conda env (``pip install -e ".[test]"`` in a fresh venv, as
the README says). The new venv gets a ``.pth`` file listing the running interpreter's
site-packages folders instead, which works for a venv, a conda env and a system
interpreter alike.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("scanlab", "trained_models", "resources", "pyproject.toml", "setup.py", "MANIFEST.in", "README.md")

pytestmark = pytest.mark.slow


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "SCANLAB_DEFAULT_MODEL")}
    env["OMP_NUM_THREADS"] = "1"
    return env


def _run(args: list[str], cwd: Path, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(args, cwd=cwd, env=_clean_env(), capture_output=True, text=True, timeout=600, **kw)
    assert r.returncode == 0, f"{args} failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}"
    return r


def _copy_sources(dest: Path) -> Path:
    dest.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "_data")
    for name in SOURCES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore)
        else:
            shutil.copy2(src, dest / name)
    return dest


def _running_site_dirs() -> list[str]:
    """The site-packages folders of the interpreter running the tests, in ``sys.path`` order.

    Only folders named site-packages / dist-packages: never the checkout, nor a
    folder that an editable install put on ``sys.path``.
    """
    dirs = [*site.getsitepackages(), *([site.getusersitepackages()] if site.ENABLE_USER_SITE else []), *sys.path]
    out: list[str] = []
    for d in dirs:
        if d and Path(d).name in ("site-packages", "dist-packages") and Path(d).is_dir() and d not in out:
            out.append(d)
    return out


def _venv(path: Path) -> Path:
    venv.EnvBuilder(system_site_packages=False, with_pip=False).create(path)
    bindir = path / ("Scripts" if os.name == "nt" else "bin")
    py = bindir / ("python.exe" if os.name == "nt" else "python")
    own = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True, env=_clean_env()).stdout.strip()
    # Plain folder lines: appended after the venv's own site-packages (so what is
    # installed into the venv wins), and their own .pth files are not run (so an
    # editable scanlab of the running environment does not leak in).
    (Path(own) / "_scanlab_tests_running_env.pth").write_text("\n".join(_running_site_dirs()) + "\n")
    return bindir


def _pip_into(bindir: Path, *args: str, cwd: Path) -> None:
    py = bindir / ("python.exe" if os.name == "nt" else "python")
    _run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-index", "--no-cache-dir",
          "--no-build-isolation", *args], cwd=cwd)


_WHERE = (
    "import json, scanlab; from scanlab.services import paths as p; "
    "print(json.dumps({'file': scanlab.__file__, 'root': str(p.data_root()), "
    "'model': str(p.default_model_path()), 'samples': p.sample_scans(), "
    "'icon': str(p.app_icon_path()), 'selftest': str(p.selftest_dir())}))"
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = _copy_sources(tmp_path_factory.mktemp("wheelsrc") / "scanlab-src")
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-cache-dir",
          "-w", str(out), "."], cwd=src)
    (whl,) = out.glob("scanlab-*.whl")
    return whl


def test_wheel_carries_model_sample_icons_and_selftest_set(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "scanlab/_data/trained_models/scanlab-default.safetensors" in names
    assert "scanlab/_data/trained_models/scanlab-default.md" in names
    assert "scanlab/_data/resources/samples/forged_splice.jpg" in names
    assert any(n.startswith("scanlab/_data/resources/icons/") and n.endswith(".png") for n in names)
    assert "scanlab/_data/resources/selftest/selftest.json" in names
    # nothing from the checkout's other folders, and no build litter
    assert not any(n.startswith(("tests/", "benchmarks/", "packaging/")) or "__pycache__" in n for n in names)


def test_wheel_works_outside_the_checkout(wheel: Path, tmp_path: Path) -> None:
    bindir = _venv(tmp_path / "venv")
    # --no-index without --no-deps: pip must find every core dependency already
    # installed, so a requirement missing from this environment fails here
    _pip_into(bindir, str(wheel), cwd=tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    py = str(bindir / "python")
    where = json.loads(_run([py, "-c", _WHERE], cwd=elsewhere).stdout)
    site = Path(where["file"]).resolve().parents[1]
    assert site.is_relative_to((tmp_path / "venv").resolve()), where["file"]
    assert not Path(where["file"]).resolve().is_relative_to(ROOT)
    assert Path(where["root"]) == site / "scanlab" / "_data"
    assert Path(where["model"]).is_file() and Path(where["icon"]).is_file()
    (sample,) = where["samples"]
    assert Path(sample).is_relative_to(site)

    r = _run([str(bindir / "scanlab"), "classify", sample, "--json", "--device", "cpu"], cwd=elsewhere)
    out = json.loads(r.stdout)
    (img,) = out["images"]
    # the sample's documented result (resources/samples/README.md)
    assert img["label"] == "vscan-02"
    assert img["votes"]["vscan-02"] == 128 and img["n_patches"] == 144
    assert Path(out["model"]["path"]).resolve() == Path(where["model"]).resolve()
    assert not list(elsewhere.iterdir()), "classify must write nothing"


def test_editable_install_reads_the_checkout_sources(tmp_path: Path) -> None:
    src = _copy_sources(tmp_path / "checkout")
    bindir = _venv(tmp_path / "venv")
    _pip_into(bindir, "--no-deps", "-e", str(src), cwd=tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = json.loads(_run([str(bindir / "python"), "-c", _WHERE], cwd=elsewhere).stdout)
    assert Path(where["file"]).resolve() == (src / "scanlab" / "__init__.py").resolve()
    assert Path(where["root"]).resolve() == src.resolve()
    assert Path(where["model"]).resolve() == (src / "trained_models" / "scanlab-default.safetensors").resolve()
    assert not (src / "scanlab" / "_data").exists(), "an editable install copies nothing"


def test_new_venv_sees_the_running_interpreters_packages(tmp_path: Path) -> None:
    """The test venv imports what the running interpreter has (torch, PIL), from where it has it."""
    bindir = _venv(tmp_path / "venv")
    code = "import json, PIL, torch; print(json.dumps([PIL.__file__, torch.__file__]))"
    got = json.loads(_run([str(bindir / "python"), "-c", code], cwd=tmp_path).stdout)
    import PIL
    import torch

    assert [str(Path(f).resolve()) for f in got] == [str(Path(PIL.__file__).resolve()),
                                                     str(Path(torch.__file__).resolve())]
