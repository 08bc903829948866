"""What the desktop bundle relies on: the smoke test, and a broken shipped model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.gui


def _messages(win) -> str:
    return "\n".join(win.messages.item(i).text() for i in range(win.messages.count()))


def test_corrupt_shipped_model_is_named_and_a_user_model_still_works(
    qtbot, gui_settings, tiny_model, scan, tmp_path, monkeypatch
):
    from scanlab.gui.main_window import MainWindow

    corrupt = tmp_path / "scanlab-default.safetensors"
    corrupt.write_bytes(b"\x00" * 64)  # truncated download, disk error...
    monkeypatch.setenv("SCANLAB_DEFAULT_MODEL", str(corrupt))
    win = MainWindow(settings=gui_settings, model=tiny_model)
    qtbot.addWidget(win)
    win.show()
    assert win.controls.model_combo.itemText(0) == "default (unreadable)"
    msgs = _messages(win)
    assert "The shipped model cannot be used" in msgs and str(corrupt) in msgs
    assert msgs.count("shipped model cannot be used") == 1
    with qtbot.waitSignal(win.analysis_settled, timeout=30_000) as blocker:
        win.open_paths([scan])
    assert blocker.args[1] is True  # analysed with the user's model
    assert win.current_document().result is not None
    win.close()


def test_smoke_test_analyses_the_bundled_sample(tmp_path, monkeypatch):
    from scanlab.gui.smoke import run_smoke_test

    monkeypatch.delenv("SCANLAB_DEFAULT_MODEL")  # the real shipped model, as in the bundle
    assert run_smoke_test(tmp_path / "out") == 0
    result = json.loads((tmp_path / "out" / "smoke.json").read_text())
    assert result["passed"] and all(result["checks"].values())
    assert result["classify"]["label"] == result["expected_label"] == "vscan-02"
    assert Path(result["model_path"]).name == "scanlab-default.safetensors"
    png = (tmp_path / "out" / "smoke.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000


def test_smoke_test_fails_without_a_usable_model(tmp_path, monkeypatch):
    from scanlab.gui.smoke import run_smoke_test

    monkeypatch.setenv("SCANLAB_DEFAULT_MODEL", str(tmp_path / "gone.safetensors"))
    assert run_smoke_test(tmp_path / "out") == 1
    result = json.loads((tmp_path / "out" / "smoke.json").read_text())
    assert not result["passed"] and "missing" in result["error"]


def _selftest_window(qtbot, gui_settings, tiny_model):
    from scanlab.gui.main_window import MainWindow
    from scanlab.gui.selftest_action import SelftestController

    win = MainWindow(settings=gui_settings, model=tiny_model)
    qtbot.addWidget(win)
    ctl = SelftestController(win)
    win.show()
    menus = [a.text() for a in win.menuBar().actions()]
    assert menus.count("&Help") == 1 and ctl.action in win.menuBar().actions()[-1].menu().actions()
    return win, ctl


def test_help_menu_runs_the_selftest(qtbot, gui_settings, tiny_model, monkeypatch):
    monkeypatch.delenv("SCANLAB_DEFAULT_MODEL")
    win, ctl = _selftest_window(qtbot, gui_settings, tiny_model)
    ctl.action.trigger()
    assert not ctl.action.isEnabled()  # one run at a time
    # the self-test scores ~40 scans: minutes on a busy 2-core machine
    qtbot.waitUntil(lambda: ctl.last_result is not None, timeout=600_000)
    assert ctl.last_result["passed"] and ctl.action.isEnabled()
    assert ctl.box.text() == "Self-test: PASS" and "per-patch accuracy" in ctl.box.informativeText()
    win.close()


def test_help_menu_selftest_reports_a_missing_model(qtbot, gui_settings, tiny_model):
    win, ctl = _selftest_window(qtbot, gui_settings, tiny_model)  # conftest: no shipped model
    ctl.action.trigger()
    qtbot.waitUntil(lambda: ctl.last_error is not None, timeout=60_000)
    assert "shipped default model is missing" in ctl.last_error
    assert ctl.box.text() == "Self-test could not run"
    win.close()
