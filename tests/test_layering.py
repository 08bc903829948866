"""Layering (core and services never import Qt) and lint, checked by the test suite."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
QT = ("PySide6", "pyqtgraph", "shiboken6", "PyQt5", "PyQt6", "scanlab.gui")


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("layer", ["core", "services"])
def test_no_qt_below_gui(layer):
    bad = []
    for f in (ROOT / "scanlab" / layer).rglob("*.py"):
        bad += [f"{f.relative_to(ROOT)}: {n}" for n in _imports(f) if n.split(".")[0] in QT or n.startswith(QT)]
    assert not bad, bad


def test_import_linter_contracts():
    exe = shutil.which("lint-imports")
    if exe is None:
        pytest.skip("import-linter not installed")
    r = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]


def test_core_imports_without_qt():
    code = (
        "import sys, scanlab.core.engine.reliability, scanlab.services.analysis, scanlab.services.training, scanlab.cli;"
        "bad=[m for m in sys.modules if m.split('.')[0] in ('PySide6','pyqtgraph','shiboken6')];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_ruff_clean():
    exe = shutil.which("ruff")
    if exe is None:
        pytest.skip("ruff not installed")
    r = subprocess.run([exe, "check", "scanlab", "tests", "benchmarks"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:]
