"""Rules the test suite itself keeps: GUI tests are marked, Qt warnings fail a test."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path", sorted((ROOT / "tests" / "gui").glob("test_*.py")), ids=lambda p: p.name)
def test_every_gui_test_module_carries_the_gui_marker(path: Path) -> None:
    """``-m "not gui"`` must leave out every test that needs Qt."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    marks = [ast.unparse(node.value) for node in tree.body if isinstance(node, ast.Assign)
             and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets)]
    assert any("pytest.mark.gui" in m for m in marks), f"{path.name}: no module-level pytestmark = pytest.mark.gui"


def test_qt_warnings_fail_tests() -> None:
    # tomllib is Python 3.11+; the project supports 3.10, so read the one line
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    section = text.split("[tool.pytest.ini_options]", 1)[1].split("\n[", 1)[0]
    assert re.search(r'^qt_log_level_fail = "WARNING"$', section, re.M)


def test_ci_runs_the_readme_test_command_in_a_fresh_venv() -> None:
    """README and .ci/run say the same command, and it makes its own virtual environment."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("Run the whole test suite", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0].strip()
    assert block.startswith("python -m venv .venv && . .venv/bin/activate && ") and block.endswith("python -m pytest")
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()]
    assert block in ci
