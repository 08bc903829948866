"""Case files and ROI review in the app: tools, undo/redo, stats off-thread, save, report."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from scanlab.core.case.casefile import load_case, verify_chain
from scanlab.core.case.rois import ROI

pytestmark = pytest.mark.gui


def _wait_stats(qtbot, layer, roi_id: int) -> None:
    qtbot.waitUntil(lambda: bool((layer.roi(roi_id) or ROI(0, "rect", [(0, 0), (1, 1)])).stats), timeout=15_000)


def test_open_case_shows_title_scan_and_locks(opened, case_path):
    assert "Contract 7" in opened.windowTitle()
    assert [Path(d.path).name for d in opened.documents] == ["q.png"]
    assert Path(str(case_path) + ".lock").exists()
    assert opened.cases.panel.tool_buttons["rect"].isEnabled()


def test_draw_rect_polygon_lasso_with_undo_redo_and_stats(qtbot, opened):
    layer = opened.cases.layer
    n0 = len(layer.rois())
    opened.cases.set_tool("rect")
    layer.begin_stroke((10, 10))
    layer.extend_stroke((40, 50))
    layer.extend_stroke((80, 120))
    r = layer.finish_stroke()
    assert r.kind == "rect" and r.bbox() == (10, 10, 80, 120)
    _wait_stats(qtbot, layer, r.id)  # computed on the runner's thread
    assert layer.roi(r.id).stats["area"] == 70 * 110
    opened.cases.set_tool("polygon")
    for pt in ((100, 100), (100, 200), (200, 150), (200, 150)):  # a double-click repeats the last point
        layer.add_polygon_vertex(pt)
    p = layer.finish_polygon()
    assert p.kind == "polygon" and len(p.points) == 3
    opened.cases.set_tool("lasso")
    layer.begin_stroke((150, 20))
    for i in range(60):
        layer.extend_stroke((150 + 40 * (i % 2), 20 + i))
    lasso = layer.finish_stroke()
    assert lasso.kind == "lasso" and len(lasso.points) >= 3
    assert len(layer.rois()) == n0 + 3
    layer.undo_stack.undo()
    layer.undo_stack.undo()
    assert len(layer.rois()) == n0 + 1
    layer.undo_stack.redo()
    assert len(layer.rois()) == n0 + 2
    # tiny gestures are clicks, not regions
    opened.cases.set_tool("rect")
    layer.begin_stroke((5, 5))
    layer.extend_stroke((5.5, 6))
    assert layer.finish_stroke() is None
    # the case mirrors the layer, and every action is in the audit chain
    e = opened.cases.current_evidence()
    assert len(e.rois) == n0 + 2
    actions = [x["action"] for x in opened.cases.case.audit]
    assert actions.count("roi_added") == 4 and actions.count("roi_removed") == 2
    assert verify_chain(opened.cases.case.audit) == []


def test_select_move_resize_delete(qtbot, opened):
    layer = opened.cases.layer
    r = layer.add(ROI.rect(0, 20, 20, 60, 60))
    layer.select(r.id)
    assert layer._editor is not None  # handles on the selected drawn ROI
    layer.move_points(r.id, [(30, 25), (70, 65)])  # what dragging the body does
    assert layer.roi(r.id).bbox() == (30, 25, 70, 65)
    _wait_stats(qtbot, layer, r.id)
    layer.move_points(r.id, [(30, 25), (90, 65)])  # resize
    assert layer.roi(r.id).stats == {}  # stale statistics are dropped, then recomputed
    _wait_stats(qtbot, layer, r.id)
    assert layer.roi(r.id).stats["area"] == 60 * 40
    layer.undo_stack.undo()
    assert layer.roi(r.id).bbox() == (30, 25, 70, 65)
    opened.cases.actions["delete_roi"].trigger()
    assert layer.roi(r.id) is None
    layer.undo_stack.undo()
    assert layer.roi(r.id) is not None


def test_review_save_reopen_and_export(qtbot, opened, case_path, tmp_path):
    ctl = opened.cases
    layer = ctl.layer
    r = layer.add(ROI.rect(0, 10, 10, 100, 100))
    _wait_stats(qtbot, layer, r.id)
    ctl.panel.show_selected(r.id)
    layer.select(r.id)
    ctl.panel.verdict_combo.setCurrentText("Suspicious")
    ctl.panel.note_edit.setPlainText("texture differs")
    ctl.panel.apply_button.click()
    assert "*" in opened.windowTitle()  # modified
    assert ctl.save()
    assert "*" not in opened.windowTitle()
    c = load_case(case_path)
    e = next(iter(c.evidence.values()))
    saved = next(x for x in e.rois if x.id == r.id)
    assert saved.verdict == "Suspicious" and saved.note == "texture differs" and saved.reviewed
    assert saved.stats["area"] == 90 * 90
    assert c.view["current"].endswith("q.png")
    job = ctl.export_to(str(tmp_path / "r.pdf"))
    qtbot.waitUntil(lambda: job not in ctl._jobs, timeout=60_000)
    assert (tmp_path / "r.pdf").stat().st_size > 10_000 and (tmp_path / "r.maps.h5").exists()
    assert load_case(case_path).audit[-1]["action"] == "report_exported"


def test_second_window_is_refused_and_read_only_is_said(qtbot, opened, case_path, gui_settings, tiny_model,
                                                       tmp_path):
    from scanlab.gui.main_window import MainWindow

    other = MainWindow(settings=gui_settings, model=tiny_model)
    qtbot.addWidget(other)
    assert not other.cases.open_case_at(str(case_path))
    assert "already open in this ScanLab" in other.messages.item(other.messages.count() - 1).text()
    other.close()
    ro = tmp_path / "ro.scanlab"
    shutil.copy(case_path, ro)
    ro.chmod(0o444)
    third = MainWindow(settings=gui_settings, model=tiny_model)
    qtbot.addWidget(third)
    assert third.cases.open_case_at(str(ro))
    assert third.cases.case.read_only and "read-only" in third.windowTitle()
    assert not third.cases.panel.tool_buttons["rect"].isEnabled()
    third.close()


def test_modified_evidence_is_a_loud_message(qtbot, window, case_path):
    c = load_case(case_path)
    img = Path(next(iter(c.evidence.values())).info["path"])
    img.write_bytes(img.read_bytes() + b"\0")
    assert window.cases.open_case_at(str(case_path))
    texts = [window.messages.item(i).text() for i in range(window.messages.count())]
    assert any("EVIDENCE MODIFIED" in t for t in texts)


class _Drag:
    """The parts of a pyqtgraph mouse event the draw surface reads (x = column, y = row)."""

    def __init__(self, down, pos, start=False, finish=False, double=False):
        from PySide6.QtCore import QPointF

        self._down, self._pos = QPointF(*down), QPointF(*pos)
        self._start, self._finish, self._double = start, finish, double
        self.accepted = None

    def button(self):
        from PySide6.QtCore import Qt

        return Qt.MouseButton.LeftButton

    def pos(self):
        return self._pos

    def buttonDownPos(self):  # noqa: N802 - pyqtgraph's name
        return self._down

    def isStart(self):  # noqa: N802
        return self._start

    def isFinish(self):  # noqa: N802
        return self._finish

    def double(self):
        return self._double

    def accept(self):
        self.accepted = True

    def ignore(self):
        self.accepted = False


def test_draw_surface_turns_view_gestures_into_row_col_rois(opened):
    ctl, layer = opened.cases, opened.cases.layer
    n0 = len(layer.rois())
    ctl.actions["tool_rect"].trigger()  # the R shortcut's action
    assert layer.surface.isVisible()
    surf = layer.surface
    surf.mouseDragEvent(_Drag((30, 10), (40, 20), start=True))  # view (x, y) = (col, row)
    surf.mouseDragEvent(_Drag((30, 10), (90, 50), finish=True))
    (r,) = layer.rois()[n0:]
    assert r.kind == "rect" and r.bbox() == (10, 30, 50, 90)
    ctl.actions["tool_polygon"].trigger()
    for x, y in ((100, 100), (150, 100), (120, 160)):
        surf.mouseClickEvent(_Drag((x, y), (x, y)))
    surf.mouseClickEvent(_Drag((120, 160), (120, 160), double=True))
    assert layer.rois()[-1].kind == "polygon" and layer.rois()[-1].points[2] == (160, 120)
    ctl.actions["tool_select"].trigger()
    assert not layer.surface.isVisible()  # the view pans again
    ev = _Drag((0, 0), (5, 5), start=True)
    surf.mouseDragEvent(ev)
    assert ev.accepted is False


def test_autosave_saves_a_modified_case(opened, case_path):
    opened.cases.layer.add(ROI.rect(0, 10, 10, 30, 30))
    assert opened.cases.case.dirty
    opened.cases._on_autosave_timeout()  # what the one-minute timer does
    assert not opened.cases.case.dirty
    assert any(r.kind == "rect" for e in load_case(case_path).evidence.values() for r in e.rois)


def test_review_dock_says_when_no_region_was_suggested(qtbot):
    """'every suggested region is reviewed' must not be said of a scan that got no suggestion at all."""
    from scanlab.gui.review_panel import ReviewPanel

    panel = ReviewPanel()
    qtbot.addWidget(panel)
    drawn = ROI.rect(1, 0, 0, 10, 10)
    panel.show_rois([drawn], None)
    assert panel.unreviewed_label.text().startswith("no region suggested")
    sug = ROI.rect(2, 0, 0, 10, 10)
    sug.suggested = True
    panel.show_rois([drawn, sug], None)
    assert panel.unreviewed_label.text() == "1 suggested region(s) not reviewed yet"
