"""Case files in the app: File > New case / Open case / Save / Save as / Export report.

The controller owns the open :class:`~scanlab.core.case.casefile.Case` (plain data) and its
lock, mirrors the ROIs of the scan on screen into a :class:`RoiLayer` and the review
panel, logs every analyst action in the case's audit chain, and runs anything slow
(ROI statistics, adding a scan, the report) on the task runner's thread. Saving is
atomic (services); an autosave timer saves a modified case every minute.
"""

from __future__ import annotations

import copy
import functools
import getpass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Qt, QTimer, Slot
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QDockWidget, QFileDialog, QInputDialog

from scanlab.core.case.casefile import Case, CaseLock, new_case, save_case
from scanlab.core.errors import ScanLabError
from scanlab.gui.review_panel import ReviewPanel
from scanlab.gui.roi_layer import RoiLayer
from scanlab.services.cases import (
    adopt_entry,
    analyse_for_case,
    compute_stats,
    evidence_id,
    evidence_problem,
    locate_evidence,
    open_case,
    prepare_run,
    record_run,
    run_matches,
)
from scanlab.services.report import export_report
from scanlab.services.rois import RoiCommands, review_roi, set_roi_stats

if TYPE_CHECKING:
    from scanlab.gui.main_window import MainWindow

AUTOSAVE_MS = 60_000
CASE_FILTER = "ScanLab cases (*.scanlab)"


class CaseController(QObject):
    """The open case of one main window (at most one)."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.case: Case | None = None
        self.lock: CaseLock | None = None
        self.user = self._os_user()
        self.layer = RoiLayer(window.view)
        self.panel = ReviewPanel()
        self.panel.set_undo_actions(self._undo_action(), self._redo_action())
        dock = QDockWidget("Review", window)
        dock.setObjectName("review")
        dock.setWidget(self.panel)
        window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
        window.tabifyDockWidget(window._docks["results"], dock)  # full height, one click away
        window._docks["results"].raise_()
        window._docks["review"] = self.dock = dock
        self._jobs: dict[int, tuple[str, Any]] = {}
        self._eid: str | None = None
        self.autosave = QTimer(self)
        self.autosave.setInterval(AUTOSAVE_MS)
        self.actions = self._build_actions()
        self._connect()
        self.autosave.start()

    @staticmethod
    def _os_user() -> str:
        try:
            return getpass.getuser()
        except Exception:  # noqa: BLE001 - no user database: still log someone
            return "unknown"

    # -- construction ------------------------------------------------------------------------

    def _undo_action(self) -> QAction:
        a = self.layer.undo_stack.createUndoAction(self, "Undo")
        a.setShortcut(QKeySequence.StandardKey.Undo)
        return a

    def _redo_action(self) -> QAction:
        a = self.layer.undo_stack.createRedoAction(self, "Redo")
        a.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
        return a

    def _build_actions(self) -> dict[str, QAction]:
        w = self.window
        spec = {
            "new_case": ("New &case...", None), "open_case": ("Open c&ase...", None),
            "save_case": ("&Save case", QKeySequence.StandardKey.Save),
            "save_case_as": ("Save case &as...", QKeySequence.StandardKey.SaveAs),
            "add_to_case": ("Add current scan to case", "Ctrl+Shift+A"),
            "locate": ("&Locate missing evidence...", None),
            "export_report": ("&Export report...", "Ctrl+E"),
            "tool_select": ("Select / move (V)", "V"), "tool_rect": ("Rectangle ROI (R)", "R"),
            "tool_polygon": ("Polygon ROI (P)", "P"), "tool_lasso": ("Freehand lasso ROI (L)", "L"),
            "finish_polygon": ("Close polygon (Enter)", "Return"),
            "delete_roi": ("Delete ROI", QKeySequence.StandardKey.Delete),
        }
        acts = {}
        for name, (text, key) in spec.items():
            a = QAction(text, w)
            if key is not None:
                a.setShortcut(QKeySequence(key))
            acts[name] = a
        file_menu = w.menuBar().actions()[0].menu()
        quit_action = w.actions_["quit"]
        for name in ("new_case", "open_case", "save_case", "save_case_as", "add_to_case", "locate",
                     "export_report"):
            file_menu.insertAction(quit_action, acts[name])
        file_menu.insertSeparator(quit_action)
        roi_menu = w.menuBar().addMenu("&ROI")
        roi_menu.addActions([acts["tool_select"], acts["tool_rect"], acts["tool_polygon"], acts["tool_lasso"],
                             acts["finish_polygon"]])
        roi_menu.addSeparator()
        roi_menu.addActions([self.panel.undo_button.defaultAction(), self.panel.redo_button.defaultAction(),
                             acts["delete_roi"]])
        w.addActions(list(acts.values()))
        return acts

    def _connect(self) -> None:
        a = self.actions
        a["new_case"].triggered.connect(self.new_case_dialog)
        a["open_case"].triggered.connect(self.open_case_dialog)
        a["save_case"].triggered.connect(self.save)
        a["save_case_as"].triggered.connect(self.save_as_dialog)
        a["add_to_case"].triggered.connect(self.add_current_scan)
        a["locate"].triggered.connect(self.locate_dialog)
        a["export_report"].triggered.connect(self.export_dialog)
        a["tool_select"].triggered.connect(self._on_tool_select)
        a["tool_rect"].triggered.connect(self._on_tool_rect)
        a["tool_polygon"].triggered.connect(self._on_tool_polygon)
        a["tool_lasso"].triggered.connect(self._on_tool_lasso)
        a["finish_polygon"].triggered.connect(self._on_finish_polygon)
        a["delete_roi"].triggered.connect(self._on_delete)
        self.panel.tool_requested.connect(self.set_tool)
        self.panel.roi_selected.connect(self.layer.select)
        self.panel.review_submitted.connect(self._on_review_submitted)
        self.panel.delete_requested.connect(self._on_delete)
        self.layer.edited.connect(self._on_layer_edited)
        self.layer.selection_changed.connect(self._on_layer_selection_changed)
        self.window.runner.job_succeeded.connect(self._on_job_succeeded)
        self.window.runner.job_failed.connect(self._on_job_failed)
        self.window.scan_list.currentRowChanged.connect(self._on_current_row_changed)
        self.window.analysis_settled.connect(self._on_analysis_settled)
        self.autosave.timeout.connect(self._on_autosave_timeout)

    # -- tools -----------------------------------------------------------------------------------

    @Slot(str)
    def set_tool(self, tool: str) -> None:
        """Switch the ROI tool (buttons, menu and shortcuts all land here)."""
        self.layer.set_tool(tool)
        self.panel.set_tool(tool)

    @Slot()
    def _on_delete(self) -> None:
        self.layer.remove()  # the selected ROI (QAction.triggered would pass a bool as the id)

    @Slot()
    def _on_finish_polygon(self) -> None:
        self.layer.finish_polygon()

    @Slot()
    def _on_tool_select(self) -> None:
        self.set_tool("select")

    @Slot()
    def _on_tool_rect(self) -> None:
        self.set_tool("rect")

    @Slot()
    def _on_tool_polygon(self) -> None:
        self.set_tool("polygon")

    @Slot()
    def _on_tool_lasso(self) -> None:
        self.set_tool("lasso")

    # -- case files ---------------------------------------------------------------------------------

    def _adopt(self, case: Case, lock: CaseLock | None) -> None:
        self.close_case()
        self.case, self.lock = case, lock
        self.dock.raise_()
        for msg in case.warnings:  # loud but not modal: red in the messages panel
            self.window.post_message(msg, error=True)
        view = case.view or {}
        paths = [e.info["path"] for e in case.evidence.values() if Path(e.info["path"]).is_file()]
        if paths:
            self.window.open_paths(paths)
            cur = view.get("current")
            docs = [d.path for d in self.window.documents]
            if cur in docs:
                self.window.scan_list.setCurrentRow(docs.index(cur))
        c = self.window.controls
        if "opacity" in view:
            c.opacity_slider.setValue(int(view["opacity"]))
        if view.get("colormap"):
            c.colormap_combo.setCurrentText(view["colormap"])
        if "threshold_on" in view:
            c.threshold_slider.setValue(int(view.get("threshold", c.threshold_slider.value())))
            c.threshold_check.setChecked(bool(view["threshold_on"]))
        self.refresh()

    def new_case_at(self, path: str, title: str, analyst: str, agency: str = "") -> None:
        """Create, lock and save a new case file at ``path``."""
        p = Path(path).with_suffix(".scanlab")
        try:
            if p.exists():
                raise ScanLabError(f"{p}: already exists; open it instead")
            lock = CaseLock(p).acquire()
            case = new_case(title, analyst, agency)
            self.user = analyst
            save_case(case, p)
        except ScanLabError as e:
            self.window.post_message(str(e), error=True)
            return
        self._adopt(case, lock)
        self.window.post_message(f"new case {title!r} in {p}")

    def open_case_at(self, path: str) -> bool:
        """Open (lock, verify evidence, restore the view); a refusal is a message, never a crash."""
        lock = CaseLock(path)
        try:
            lock.acquire()
            case = open_case(path, user=self.user)
        except ScanLabError as e:
            lock.release()
            self.window.post_message(str(e), error=True)
            return False
        if case.read_only:
            lock.release()
            lock = None
        self._adopt(case, lock)
        self.window.post_message(f"opened case {case.meta['title']!r}" + (" (read-only)" if case.read_only else ""))
        return True

    def close_case(self) -> None:
        """Save a modified case and release its lock."""
        if self.case is not None and self.case.dirty and self.case.path and not self.case.read_only:
            self.save()
        if self.lock is not None:
            self.lock.release()
        self.case, self.lock = None, None
        self.refresh()

    def _store_view(self) -> None:
        w, c = self.window, self.window.controls
        cur = w.current_document()
        self.case.view = {"open": [d.path for d in w.documents], "current": cur.path if cur else None,
                          "opacity": c.opacity_slider.value(), "colormap": c.colormap_combo.currentText(),
                          "threshold_on": c.threshold_check.isChecked(), "threshold": c.threshold_slider.value()}

    @Slot()
    def save(self) -> bool:
        """File > Save case (atomic); errors go to the messages panel."""
        if self.case is None:
            return False
        if self.case.path is None or self.case.read_only:
            return self.save_as_dialog()
        return self.save_to(str(self.case.path))

    def save_to(self, path: str) -> bool:
        """Save under ``path`` (Save as moves the lock to the new file)."""
        try:
            self._store_view()
            new = Path(path)
            moving = self.case.path is None or new.resolve() != Path(self.case.path).resolve()
            lock = CaseLock(new).acquire() if moving else self.lock
            save_case(self.case, new)
        except ScanLabError as e:
            self.window.post_message(str(e), error=True)
            return False
        if moving:
            if self.lock is not None:
                self.lock.release()
            self.lock = lock
        self.refresh_title()
        self.window.statusBar().showMessage(f"saved {new}", 4000)
        return True

    @Slot()
    def _on_autosave_timeout(self) -> None:
        if self.case is not None and self.case.dirty and self.case.path and not self.case.read_only:
            self.save()

    @Slot()
    def new_case_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self.window, "New case", "", CASE_FILTER)
        if not path:
            return
        title, ok = QInputDialog.getText(self.window, "New case", "Case title:")
        if not ok or not title.strip():
            return
        analyst, ok = QInputDialog.getText(self.window, "New case", "Analyst:", text=self.user)
        if ok and analyst.strip():
            self.new_case_at(path, title, analyst)

    @Slot()
    def open_case_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.window, "Open case", "", CASE_FILTER)
        if path:
            self.open_case_at(path)

    @Slot()
    def save_as_dialog(self) -> bool:
        if self.case is None:
            return False
        path, _ = QFileDialog.getSaveFileName(self.window, "Save case as", "", CASE_FILTER)
        return bool(path) and self.save_to(str(Path(path).with_suffix(".scanlab")))

    @Slot()
    def locate_dialog(self) -> None:
        """Offer to locate each missing evidence file; the hash decides whether it is the one."""
        if self.case is None:
            return
        for e in self.case.evidence.values():
            problem = evidence_problem(e)
            if problem is None or problem[0] != "evidence_missing":
                continue
            path, _ = QFileDialog.getOpenFileName(self.window, f"Locate {Path(e.info['path']).name}", "")
            if path:
                self.locate(e.eid, path)

    def locate(self, eid: str, path: str) -> bool:
        """Point evidence ``eid`` at ``path`` if its SHA-256 matches, then open it."""
        try:
            locate_evidence(self.case, eid, path, user=self.user)
        except ScanLabError as e:
            self.window.post_message(str(e), error=True)
            return False
        self.window.open_paths([path])
        self.refresh()
        return True

    # -- slow work on the runner's thread ---------------------------------------------------------

    def _job(self, kind: str, fn: Any, data: Any = None) -> int:
        job = self.window.runner.submit_job(fn)
        self._jobs[job] = (kind, data)
        return job

    @Slot()
    def add_current_scan(self) -> None:
        """Store the scan on screen in the case: the run the analyst is looking at when its
        settings are the current ones, else a fresh analysis with the current settings.

        The worker only computes (:func:`prepare_run` / :func:`analyse_for_case`); the
        case is changed here, on the GUI thread, when the result arrives.
        """
        doc = self.window.current_document()
        if self.case is None or doc is None:
            self.window.post_message("open a case and a scan first", error=True)
            return
        if self.case.read_only:
            self.window.post_message(f"{self.case.path}: the case is open read-only", error=True)
            return
        model, sub, stride, device = self.window.params_key()
        if doc.result is not None and run_matches(doc.result, model=model, sub=(sub, sub), stride=(stride, stride),
                                                  device=device):
            self._job("add", functools.partial(prepare_run, doc.result))
        else:
            self._job("add", functools.partial(analyse_for_case, doc.path, model=model, sub=(sub, sub),
                                               stride=(stride, stride), device=device))
        self.window.statusBar().showMessage(f"adding {doc.name} to the case...")

    def export_to(self, path: str) -> int:
        """Write the report (and raw maps) from a snapshot of the case on the runner's thread.

        The snapshot's export entry is adopted by the case when the job ends (GUI thread).
        """
        self._store_view()
        snap = self.case.snapshot()
        return self._job("report", functools.partial(_export_snapshot, snap, path, user=self.user))

    @Slot()
    def export_dialog(self) -> None:
        if self.case is None:
            return
        path, _ = QFileDialog.getSaveFileName(self.window, "Export report", "", "PDF (*.pdf)")
        if path:
            self.export_to(str(Path(path).with_suffix(".pdf")))

    @Slot(int, object)
    def _on_job_succeeded(self, job: int, value: object) -> None:
        kind, data = self._jobs.pop(job, (None, None))
        if kind == "stats":
            eid, roi_id, points = data
            # dropped when the ROI changed or went away meanwhile: a newer job is coming
            if self.case is not None and set_roi_stats(self.case, eid, roi_id, points, value) and eid == self._eid:
                self.layer.reload()
                self._refresh_panel()
        elif kind == "add":
            if self.case is None:
                return  # the case was closed meanwhile
            try:
                e = record_run(self.case, value, user=self.user)
            except ScanLabError as err:
                self.window.post_message(str(err), error=True)
                return
            self.window.post_message(f"added {Path(e.info['path']).name} to the case (evidence {e.eid})")
            self.refresh()
        elif kind == "report":
            info, entry = value
            if self.case is None:
                return
            adopt_entry(self.case, entry, info)
            self.window.post_message(f"report {info['pdf']} (SHA-256 {info['pdf_sha256'][:16]}...)"
                                     + (" DRAFT: not signed off" if info["draft"] else ""))
            self.save()

    @Slot(int, str)
    def _on_job_failed(self, job: int, message: str) -> None:
        if self._jobs.pop(job, None) is not None:
            self.window.post_message(message, error=True)

    # -- ROIs -------------------------------------------------------------------------------------

    def current_evidence(self) -> Any:
        """The case evidence shown now (matched by SHA-256, else by path), or None."""
        doc = self.window.current_document()
        if self.case is None or doc is None:
            return None
        if doc.result is not None:
            e = self.case.evidence.get(evidence_id(doc.result.scan.sha256))
            if e is not None:
                return e
        return next((e for e in self.case.evidence.values()
                     if Path(e.info["path"]).resolve() == Path(doc.path).resolve()), None)

    def refresh(self) -> None:
        """Mirror the case into the layer, the panel and the window title."""
        e = self.current_evidence()
        self._eid = e.eid if e is not None else None
        if e is not None:
            self.layer.set_store(RoiCommands(self.case, e.eid, self.user), (e.info["height"], e.info["width"]),
                                 enabled=not self.case.read_only)
        else:
            self.layer.set_store(None, None, enabled=False)
        self.panel.set_enabled(e is not None and not self.case.read_only)
        self._refresh_panel()
        self.refresh_title()

    def _refresh_panel(self) -> None:
        if self.case is None:
            self.panel.case_label.setText("No case open: File > New case or Open case")
        else:
            m = self.case.meta
            where = "this scan is in the case" if self._eid else "this scan is not in the case (File > Add current scan to case)"
            self.panel.case_label.setText(f"Case: {m['title']} ({m['analyst']}){' READ-ONLY' if self.case.read_only else ''}"
                                          f"\n{where}")
        self.panel.show_rois(self.layer.rois(), self.layer.selected)

    def refresh_title(self) -> None:
        """``ScanLab - <case title>[*] - <scan>``."""
        doc = self.window.current_document()
        parts = ["ScanLab"]
        if self.case is not None:
            parts.append(self.case.meta["title"] + (" *" if self.case.dirty else "")
                         + (" [read-only]" if self.case.read_only else ""))
        if doc is not None:
            parts.append(doc.name)
        self.window.setWindowTitle(" - ".join(parts))

    @Slot(int)
    def _on_current_row_changed(self, _row: int) -> None:
        self.refresh()

    @Slot(str, bool)
    def _on_analysis_settled(self, _path: str, _ok: bool) -> None:
        self.refresh()

    @Slot(str, object)
    def _on_layer_edited(self, action: str, roi: Any) -> None:
        e = self.case.evidence.get(self._eid) if self.case and self._eid else None
        if e is None:
            return
        live = next((r for r in e.rois if r.id == roi.id), None)  # the store logged the edit already
        if live is not None and not live.stats and e.runs:
            # the worker gets the (never changed) run and a copy of the ROI, not the case
            self._job("stats", functools.partial(compute_stats, None, copy.deepcopy(live), run=e.runs[-1]),
                      (e.eid, live.id, list(live.points)))
        self._refresh_panel()
        self.refresh_title()

    @Slot(object)
    def _on_layer_selection_changed(self, roi_id: object) -> None:
        self.panel.show_selected(roi_id)

    @Slot(int, object, str)
    def _on_review_submitted(self, roi_id: int, verdict: object, note: str) -> None:
        if self.case is None or self._eid is None:
            return
        try:
            review_roi(self.case, self._eid, roi_id, user=self.user, verdict=verdict, note=note)
        except ScanLabError as e:
            self.window.post_message(str(e), error=True)
            return
        self.layer.reload()
        self._refresh_panel()
        self.refresh_title()


def _export_snapshot(snap: Case, path: str, *, user: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Worker side of an export: the report of a snapshot, and the audit entry it logged there."""
    info = export_report(snap, path, user=user)
    return info, snap.audit[-1]
