"""The app's words follow the scan on screen (issue 16 item 2), through the view state."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtWidgets import QFileDialog, QInputDialog

from scanlab.services.analysis import ATTRIBUTION

pytestmark = pytest.mark.gui


def _messages(win) -> str:
    return "\n".join(win.messages.item(i).text() for i in range(win.messages.count()))


@pytest.fixture
def two(qtbot, window, wait_settled, tmp_path, make_scan):
    a = make_scan(tmp_path / "alpha.png", seed=1)
    b = make_scan(tmp_path / "beta.png", seed=2)
    window.open_paths([str(a), str(b)])
    wait_settled(window)
    assert all(d.result is not None for d in window.documents)
    return window


def test_status_line_and_cursor_readout_follow_the_scan_on_screen(two):
    win = two
    win.scan_list.setCurrentRow(1)
    win.display._on_view_cursor_moved((5, 5))
    assert win.results.cursor_value.text() != "-"
    win.scan_list.setCurrentRow(0)
    assert win.status_label.text().startswith("alpha.png:")  # not the scan that finished last
    assert win.results.cursor_value.text() == "-"  # beta's pixel is not alpha's
    win.scan_list.setCurrentRow(1)
    assert win.status_label.text().startswith("beta.png:")


def test_status_line_names_the_map_shown_and_controls_follow_it(qtbot, two):
    win = two
    combo, c = win.controls.class_combo, win.controls
    assert c.threshold_check.text() == "Show only reliability below" and c.colormap_combo.isEnabled()
    with qtbot.waitSignal(win.class_maps.ready, timeout=10_000):
        combo.setCurrentIndex(combo.findData(ATTRIBUTION))
    assert "attribution" in win.status_label.text()
    assert win.state.map_label == ATTRIBUTION
    assert not c.colormap_combo.isEnabled()  # class colours: no colour map to choose
    assert "reliability" not in c.threshold_check.text()
    combo.setCurrentIndex(0)  # back to the predicted class (cached: no signal)
    assert "attribution" not in win.status_label.text()
    assert c.colormap_combo.isEnabled() and c.threshold_check.text() == "Show only reliability below"


def test_sub_image_below_64_is_refused_visibly(qtbot, two, wait_settled):
    win = two
    before = win.state.sub
    win.controls.sub_spin.setValue(32)  # what typing 32 and Enter does
    assert win.state.sub == before and win.controls.sub_spin.value() == before
    assert win.controls.problem_label.isVisible()
    assert "at least 64" in win.controls.problem_label.text()
    assert "sub-image 32 px refused" in _messages(win)
    assert not win.scheduler.recompute.isActive()  # nothing re-analyses


def test_new_parameters_re_analyse_only_the_scan_on_screen(qtbot, two, wait_settled):
    win = two
    win.scan_list.setCurrentRow(0)
    win.controls.stride_spin.setValue(32)
    key = win.params_key()
    qtbot.waitUntil(lambda: win.documents[0].result_key == key and not win.runner.is_busy(), timeout=30_000)
    qtbot.wait(600)  # longer than the debounce: a background re-analysis would have started
    assert not win.runner.is_busy()
    assert win.documents[1].result_key != key  # beta keeps its result until it is shown
    win.scan_list.setCurrentRow(1)
    qtbot.waitUntil(lambda: win.documents[1].result_key == key, timeout=30_000)


def test_progress_is_never_full_while_running(window):
    window.progress.setVisible(True)
    window.status.on_progress(3, 10)
    assert (window.progress.maximum(), window.progress.value()) == (10, 3)
    window.status.on_progress(10, 10)
    assert window.progress.maximum() == 0  # busy, not "100%"


def test_failed_analysis_is_not_in_the_verdict_colours(qtbot, two, tmp_path):
    win = two
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png at all")
    with qtbot.waitSignal(win.analysis_settled, timeout=30_000) as blocker:
        win.open_paths([str(bad)])
    assert blocker.args[1] is False
    assert win.results.verdict_value.text() == "analysis failed"
    assert "#d62728" in win.results.verdict_value.styleSheet()
    assert "analysis failed" in win.status_label.text()


def test_close_case_releases_the_lock(qtbot, window, tmp_path):
    ctl = window.cases
    ctl.new_case_at(str(tmp_path / "k.scanlab"), "K", "A. Analyst")
    assert ctl.case is not None and Path(str(tmp_path / "k.scanlab") + ".lock").exists()
    ctl.actions["close_case"].trigger()
    assert ctl.case is None and not Path(str(tmp_path / "k.scanlab") + ".lock").exists()
    assert "closed case 'K'" in _messages(window)
    assert "close_case" in [n for n, a in ctl.actions.items() if a in window.menus["file"].actions()]


def test_new_case_asks_title_and_analyst_then_where_and_refuses_an_existing_file_once(
        qtbot, window, tmp_path, monkeypatch):
    existing = tmp_path / "old.scanlab"
    existing.write_bytes(b"x")
    asked: list[str] = []

    def get_text(parent, title, label, *a, **kw):
        asked.append(label)
        return ("T" if "title" in label else "A. Analyst"), True

    def get_save(parent, caption, folder, filt, *a, **kw):
        asked.append(caption)
        assert kw.get("options") == QFileDialog.Option.DontConfirmOverwrite  # no second "Replace?"
        return str(existing), filt

    monkeypatch.setattr(QInputDialog, "getText", get_text)
    monkeypatch.setattr(QFileDialog, "getSaveFileName", get_save)
    window.cases.new_case_dialog()
    assert asked == ["Case title:", "Analyst:", "New case"]
    assert "already exists" in _messages(window) and window.cases.case is None
    assert existing.read_bytes() == b"x"


def test_no_evidence_hatching_uses_a_colour_the_map_never_draws(qtbot, window):
    import numpy as np
    import pyqtgraph as pg

    from scanlab.gui.scan_view import COLORMAPS

    view = window.view
    px = np.full((64, 96, 3), 40, np.uint8)  # dark text-like scan
    rel = np.zeros((64, 96), np.float32)  # reliability 0 everywhere...
    mask = np.zeros((64, 96), bool)
    mask[:, 48:] = True  # ...and no evidence on the right half
    view.set_scan(px)
    view.set_map(rel)
    view.set_no_evidence(mask)
    for name in COLORMAPS:
        window.state.update(colormap=name)
        lut = pg.colormap.get(name).getLookupTable(nPts=256, alpha=False).astype(float)
        hatch = view.noev.image
        stripes = hatch[mask & (hatch[..., :3].astype(int).sum(-1) != 3 * 150)][:, :3].astype(float)
        assert len(stripes), name
        nearest = min(float(np.min(np.linalg.norm(lut - s, axis=1))) for s in np.unique(stripes, axis=0))
        assert nearest > 150, f"{name}: no-evidence stripes look like a value of the map"
        assert "hatched grey with coloured stripes: no evidence" in window.controls.legend.text()


def test_a_verdict_other_than_attributed_does_not_highlight_the_top_class(qtbot, window, tmp_path, make_scan):
    """Issue 16 item 2: on a verdict other than attributed the top class is a fit, not a finding."""
    import dataclasses

    from PySide6.QtGui import QColor

    from scanlab.gui.results_panel import _BAR_PREDICTED

    win = window
    path = make_scan(tmp_path / "u.png", seed=4)
    with qtbot.waitSignal(win.analysis_settled, timeout=30_000):
        win.open_paths([str(path)])
    res = win.current_document().result
    panel = win.results
    unknown = dataclasses.replace(res, verdict=dataclasses.replace(res.verdict, verdict="inconclusive"))
    panel.show_result(unknown)
    assert not panel.label_value.font().bold() and "not an attribution" in panel.top_label.text()
    assert "not an attribution" in panel.confidence_value.text() and "(calibrated)" not in panel.confidence_value.text()
    brushes = panel.bars.opts["brushes"]
    assert all(b.color() != QColor(_BAR_PREDICTED.color()) for b in brushes)
    attributed = dataclasses.replace(res, verdict=dataclasses.replace(res.verdict, verdict="attributed"))
    panel.show_result(attributed)
    assert panel.label_value.font().bold() and panel.top_label.text() == "Top class:"


def test_a_scan_without_evidence_shows_no_class_probabilities(qtbot, window, tmp_path):
    """With no window of sensor evidence the windows' probabilities measure nothing: no bars, no figures, no bold row."""
    import numpy as np
    from PIL import Image

    path = tmp_path / "flat.png"
    Image.fromarray(np.full((192, 224, 3), 255, np.uint8)).save(path)  # clipped paper: no evidence anywhere
    with qtbot.waitSignal(window.analysis_settled, timeout=30_000):
        window.open_paths([str(path)])
    res = window.current_document().result
    assert res.json_label is None and res.verdict.verdict == "inconclusive"
    panel = window.results
    assert all(h == 0 for h in panel.bars.opts["height"])
    rows = range(panel.table.rowCount())
    assert rows and all(panel.table.item(i, 1).text() == "-" for i in rows)
    assert not any(panel.table.item(i, 0).font().bold() for i in rows)
    assert panel.label_value.text().startswith("none (no window with evidence)")
    assert "No class fit" in panel.confidence_value.text() and res.label not in panel.confidence_value.text()
