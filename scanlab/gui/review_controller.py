"""ROI review of the scan on screen: tools, the ROI layer, the review panel, statistics jobs.

A view over the open case's ROIs of one evidence file: the :class:`RoiLayer` draws
them and turns gestures into ``services.rois`` commands (logged, one id allocator);
the :class:`ReviewPanel` lists them and takes verdicts. ROI statistics are computed
on the task runner's thread from the (never changed) run and a copy of the ROI, and
applied here, on the GUI thread that owns the case.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QWidget

from scanlab.core.case.casefile import Case
from scanlab.core.errors import ScanLabError
from scanlab.gui.review_panel import ReviewPanel
from scanlab.gui.roi_layer import RoiLayer
from scanlab.gui.scan_view import ScanView
from scanlab.gui.task_runner import TaskRunner
from scanlab.services.cases import compute_stats
from scanlab.services.rois import RoiCommands, review_roi, set_roi_stats

TOOL_ACTIONS = {"tool_select": ("Select / move (V)", "V", "select"), "tool_rect": ("Rectangle ROI (R)", "R", "rect"),
                "tool_polygon": ("Polygon ROI (P)", "P", "polygon"),
                "tool_lasso": ("Freehand lasso ROI (L)", "L", "lasso")}


class ReviewController(QObject):
    """ROI tools and review for the evidence on screen.

    Signals
    -------
    changed()
        The case changed (an ROI edit or review): the window title shows it modified.
    """

    changed = Signal()

    def __init__(self, view: ScanView, runner: TaskRunner, post_message: Callable[..., None],
                 parent: QWidget) -> None:
        super().__init__(parent)
        self.runner, self.post_message = runner, post_message
        self.case: Case | None = None
        self.eid: str | None = None
        self.user = ""
        self.note = ""
        self.layer = RoiLayer(view)
        self.panel = ReviewPanel()
        undo = self.layer.undo_stack.createUndoAction(self, "Undo")
        undo.setShortcut(QKeySequence.StandardKey.Undo)
        redo = self.layer.undo_stack.createRedoAction(self, "Redo")
        redo.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
        self.panel.set_undo_actions(undo, redo)
        self._jobs: dict[int, tuple[str, int, list]] = {}
        self.actions: dict[str, QAction] = {}
        for name, (text, key, tool) in TOOL_ACTIONS.items():
            a = self.actions[name] = QAction(text, parent)
            a.setShortcut(QKeySequence(key))
            a.setData(tool)
            a.triggered.connect(self._on_tool_action_triggered)
        self.actions["finish_polygon"] = QAction("Close polygon (Enter)", parent)
        self.actions["finish_polygon"].setShortcut(QKeySequence("Return"))
        self.actions["delete_roi"] = QAction("Delete ROI", parent)
        self.actions["delete_roi"].setShortcut(QKeySequence(QKeySequence.StandardKey.Delete))
        self.actions["undo"] = self.panel.undo_button.defaultAction()
        self.actions["redo"] = self.panel.redo_button.defaultAction()
        self.actions["finish_polygon"].triggered.connect(self._on_finish_polygon)
        self.actions["delete_roi"].triggered.connect(self._on_delete)
        self.panel.tool_requested.connect(self.set_tool)
        self.panel.roi_selected.connect(self.layer.select)
        self.panel.review_submitted.connect(self._on_review_submitted)
        self.panel.delete_requested.connect(self._on_delete)
        self.layer.edited.connect(self._on_layer_edited)
        self.layer.selection_changed.connect(self._on_layer_selection_changed)
        runner.job_succeeded.connect(self._on_job_succeeded)
        runner.job_failed.connect(self._on_job_failed)

    def busy(self) -> bool:
        """Statistics jobs still running."""
        return bool(self._jobs)

    # -- tools -------------------------------------------------------------------------------

    @Slot(str)
    def set_tool(self, tool: str) -> None:
        """Switch the ROI tool (buttons, menu and shortcuts all land here)."""
        self.layer.set_tool(tool)
        self.panel.set_tool(tool)

    @Slot()
    def _on_tool_action_triggered(self) -> None:
        action = self.sender()
        if isinstance(action, QAction):
            self.set_tool(str(action.data()))

    @Slot()
    def _on_delete(self) -> None:
        self.layer.remove()  # the selected ROI (QAction.triggered would pass a bool as the id)

    @Slot()
    def _on_finish_polygon(self) -> None:
        self.layer.finish_polygon()

    # -- the evidence on screen ------------------------------------------------------------------

    def show(self, case: Case | None, eid: str | None, user: str, note: str = "") -> None:
        """Review the ROIs of evidence ``eid`` of ``case`` (None: nothing to review); ``note``: a warning line."""
        self.case, self.eid, self.user, self.note = case, eid, user, note
        e = case.evidence.get(eid) if case is not None and eid is not None else None
        if e is not None:
            self.layer.set_store(RoiCommands(case, e.eid, user), (e.info["height"], e.info["width"]),
                                 enabled=not case.read_only)
        else:
            self.layer.set_store(None, None, enabled=False)
        self.panel.set_enabled(e is not None and not case.read_only)
        self.refresh_panel()

    def refresh_panel(self) -> None:
        """The case line and the ROI list."""
        if self.case is None:
            self.panel.case_label.setText("No case open: File > New case or Open case")
        else:
            m = self.case.meta
            where = ("this scan is in the case" if self.eid
                     else "this scan is not in the case (File > Add current scan to case)")
            ro = " READ-ONLY" if self.case.read_only else ""
            note = f"\n\u26a0 {self.note}" if self.note else ""
            self.panel.case_label.setText(f"Case: {m['title']} ({m['analyst']}){ro}\n{where}{note}")
        self.panel.show_rois(self.layer.rois(), self.layer.selected)

    @Slot(str, object)
    def _on_layer_edited(self, action: str, roi: Any) -> None:
        e = self.case.evidence.get(self.eid) if self.case and self.eid else None
        if e is None:
            return
        live = next((r for r in e.rois if r.id == roi.id), None)  # the store logged the edit already
        if live is not None and not live.stats and e.runs:
            # the worker gets the (never changed) run and a copy of the ROI, not the case
            job = self.runner.submit_job(functools.partial(compute_stats, None, copy.deepcopy(live), run=e.runs[-1]))
            self._jobs[job] = (e.eid, live.id, list(live.points))
        self.refresh_panel()
        self.changed.emit()

    @Slot(object)
    def _on_layer_selection_changed(self, roi_id: object) -> None:
        self.panel.show_selected(roi_id)

    @Slot(int, object, str)
    def _on_review_submitted(self, roi_id: int, verdict: object, note: str) -> None:
        if self.case is None or self.eid is None:
            return
        try:
            review_roi(self.case, self.eid, roi_id, user=self.user, verdict=verdict, note=note)
        except ScanLabError as e:
            self.post_message(str(e), error=True)
            return
        self.layer.reload()
        self.refresh_panel()
        self.changed.emit()

    @Slot(int, object)
    def _on_job_succeeded(self, job: int, value: object) -> None:
        entry = self._jobs.pop(job, None)
        if entry is None:
            return
        eid, roi_id, points = entry
        # dropped when the ROI changed or went away meanwhile: a newer job is coming
        if self.case is not None and set_roi_stats(self.case, eid, roi_id, points, value) and eid == self.eid:
            self.layer.reload()
            self.refresh_panel()

    @Slot(int, str)
    def _on_job_failed(self, job: int, message: str) -> None:
        if self._jobs.pop(job, None) is not None:
            self.post_message(message, error=True)
