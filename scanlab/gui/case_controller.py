"""Case files in the app: File > New case / Open case / Save / Save as / Close case / Export report.

The controller owns the open :class:`~scanlab.core.case.casefile.Case` (plain data) and its
lock, and is the one place that changes it, on the GUI thread: slow work (adding a
scan, the report) runs on the task runner's thread on plain data or a snapshot and
returns results that are applied here. The ROIs of the scan on screen are reviewed by
a :class:`ReviewController`. Saving is atomic (services); an autosave timer saves a
modified case every minute.
"""

from __future__ import annotations

import functools
import getpass
from pathlib import Path
from typing import Any, Protocol

from PySide6.QtCore import QObject, QTimer, Signal, Slot
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QFileDialog, QInputDialog, QWidget

from scanlab.core.case.casefile import Case, CaseLock, new_case, save_case
from scanlab.core.errors import ScanLabError
from scanlab.gui.documents import ScanDocument
from scanlab.gui.review_controller import ReviewController
from scanlab.gui.scan_view import ScanView
from scanlab.gui.task_runner import TaskRunner
from scanlab.services.cases import (
    adopt_entry,
    analyse_for_case,
    evidence_id,
    evidence_problem,
    locate_evidence,
    open_case,
    prepare_run,
    record_run,
    run_matches,
    stored_run_note,
)
from scanlab.services.report import export_report
from scanlab.services.viewstate import ViewState

AUTOSAVE_MS = 60_000
CASE_FILTER = "ScanLab cases (*.scanlab)"
FILE_ACTIONS = ("new_case", "open_case", "save_case", "save_case_as", "close_case", "add_to_case", "locate",
                "export_report")
ROI_TOOL_ACTIONS = ("tool_select", "tool_rect", "tool_polygon", "tool_lasso", "finish_polygon")


class CaseHost(Protocol):
    """What the case controller asks of the window: the scans on screen and a voice, nothing more."""

    def post_message(self, text: str, *, error: bool = False) -> None: ...
    def show_status(self, text: str, ms: int = 0) -> None: ...
    def open_paths(self, paths: list[str]) -> object: ...
    def current_document(self) -> ScanDocument | None: ...
    def document_paths(self) -> list[str]: ...
    def select_path(self, path: str) -> None: ...
    def setWindowTitle(self, title: str) -> None: ...  # noqa: N802 - Qt's name


class CaseController(QObject):
    """The open case of one main window (at most one).

    Signals
    -------
    panel_shown()
        A case was opened: the window brings the review panel to the front.

    It is given narrow parts: the host (messages, the scans on screen), the scan view
    (for the ROI layer), the task runner and the view state. The window places its
    ``panel`` in a dock and its ``actions`` in menus (:data:`FILE_ACTIONS`, the ROI menu).
    """

    panel_shown = Signal()

    def __init__(self, host: CaseHost, view: ScanView, runner: TaskRunner, state: ViewState,
                 parent: QWidget) -> None:
        super().__init__(parent)
        self.host, self.runner, self.state, self.parent_widget = host, runner, state, parent
        self.case: Case | None = None
        self.lock: CaseLock | None = None
        self.user = self._os_user()
        self._user_confirmed = False  # asked once per session who is working (New case asks it too)
        self.review = ReviewController(view, runner, host.post_message, parent)
        self.layer, self.panel = self.review.layer, self.review.panel
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

    def _build_actions(self) -> dict[str, QAction]:
        spec = {
            "new_case": ("New &case...", None), "open_case": ("Open c&ase...", None),
            "save_case": ("&Save case", QKeySequence.StandardKey.Save),
            "save_case_as": ("Save case &as...", QKeySequence.StandardKey.SaveAs),
            "close_case": ("C&lose case", None),
            "add_to_case": ("Add current scan to case", "Ctrl+Shift+A"),
            "locate": ("&Locate missing evidence...", None),
            "export_report": ("&Export report...", "Ctrl+E"),
        }
        acts = {}
        for name, (text, key) in spec.items():
            a = QAction(text, self.parent_widget)
            if key is not None:
                a.setShortcut(QKeySequence(key))
            acts[name] = a
        return acts | self.review.actions

    def _connect(self) -> None:
        a = self.actions
        a["new_case"].triggered.connect(self.new_case_dialog)
        a["open_case"].triggered.connect(self.open_case_dialog)
        a["save_case"].triggered.connect(self.save)
        a["save_case_as"].triggered.connect(self.save_as_dialog)
        a["close_case"].triggered.connect(self._on_close_case_triggered)
        a["add_to_case"].triggered.connect(self.add_current_scan)
        a["locate"].triggered.connect(self.locate_dialog)
        a["export_report"].triggered.connect(self.export_dialog)
        self.review.changed.connect(self.refresh_title)
        self.runner.job_succeeded.connect(self._on_job_succeeded)
        self.runner.job_failed.connect(self._on_job_failed)
        self.autosave.timeout.connect(self._on_autosave_timeout)

    def set_tool(self, tool: str) -> None:
        """Switch the ROI tool."""
        self.review.set_tool(tool)

    # -- case files ---------------------------------------------------------------------------------

    def _adopt(self, case: Case, lock: CaseLock | None) -> None:
        self.close_case()
        self.case, self.lock = case, lock
        self.panel_shown.emit()
        for msg in case.warnings:  # loud but not modal: red in the messages panel
            self.host.post_message(msg, error=True)
        view = case.view or {}
        paths = [e.info["path"] for e in case.evidence.values() if Path(e.info["path"]).is_file()]
        if paths:
            self.host.open_paths(paths)
            if view.get("current"):
                self.host.select_path(view["current"])
        self.state.apply_case_view(view)
        self.refresh()

    def new_case_at(self, path: str, title: str, analyst: str, agency: str = "") -> None:
        """Create, lock and save a new case file at ``path``."""
        p = Path(path).with_suffix(".scanlab")
        try:
            if p.exists():
                raise ScanLabError(f"{p}: already exists; open it instead")
            lock = CaseLock(p).acquire()
            case = new_case(title, analyst, agency)
            self.user, self._user_confirmed = analyst, True
            save_case(case, p)
        except ScanLabError as e:
            self.host.post_message(str(e), error=True)
            return
        self._adopt(case, lock)
        self.host.post_message(f"new case {title!r} in {p}")

    def open_case_at(self, path: str) -> bool:
        """Open (lock, verify evidence, restore the view); a refusal is a message, never a crash."""
        lock = CaseLock(path)
        try:
            lock.acquire()
            case = open_case(path, user=self.user)
        except ScanLabError as e:
            lock.release()
            self.host.post_message(str(e), error=True)
            return False
        if case.read_only:
            lock.release()
            lock = None
        self._adopt(case, lock)
        self.host.post_message(f"opened case {case.meta['title']!r}" + (" (read-only)" if case.read_only else ""))
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
        cur = self.host.current_document()
        self.case.view = {"open": self.host.document_paths(), "current": cur.path if cur else None,
                          **self.state.case_view()}

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
            self.host.post_message(str(e), error=True)
            return False
        if moving:
            if self.lock is not None:
                self.lock.release()
            self.lock = lock
        self.refresh_title()
        self.host.show_status(f"saved {new}", 4000)
        return True

    @Slot()
    def _on_autosave_timeout(self) -> None:
        if self.case is not None and self.case.dirty and self.case.path and not self.case.read_only:
            self.save()

    @Slot()
    def new_case_dialog(self) -> None:
        """File > New case: title and analyst first, then where; an existing file is refused once, in words."""
        title, ok = QInputDialog.getText(self.parent_widget, "New case", "Case title:")
        if not ok or not title.strip():
            return
        analyst, ok = QInputDialog.getText(self.parent_widget, "New case", "Analyst:", text=self.user)
        if not ok or not analyst.strip():
            return
        # no "Replace?" question: a case file is evidence of work done and is never replaced here
        path, _ = QFileDialog.getSaveFileName(self.parent_widget, "New case", "", CASE_FILTER,
                                              options=QFileDialog.Option.DontConfirmOverwrite)
        if path:
            self.new_case_at(path, title.strip(), analyst.strip())

    @Slot()
    def _on_close_case_triggered(self) -> None:
        """File > Close case: save if modified, release the lock (``scanlab verify`` may then open it)."""
        if self.case is None:
            return
        title = self.case.meta.get("title")
        self.close_case()
        self.host.post_message(f"closed case {title!r}")

    @Slot()
    def open_case_dialog(self) -> None:
        """File > Open case; the first time in a session, ask who is working (the audit log's user)."""
        path, _ = QFileDialog.getOpenFileName(self.parent_widget, "Open case", "", CASE_FILTER)
        if not path:
            return
        if not self._user_confirmed:
            who, ok = QInputDialog.getText(self.parent_widget, "Open case", "Who is working on the case (audit log)?",
                                           text=self.user)
            if not ok or not who.strip():
                return
            self.user, self._user_confirmed = who.strip(), True
        self.open_case_at(path)

    @Slot()
    def save_as_dialog(self) -> bool:
        if self.case is None:
            return False
        path, _ = QFileDialog.getSaveFileName(self.parent_widget, "Save case as", "", CASE_FILTER)
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
            path, _ = QFileDialog.getOpenFileName(self.parent_widget, f"Locate {Path(e.info['path']).name}", "")
            if path:
                self.locate(e.eid, path)

    def locate(self, eid: str, path: str) -> bool:
        """Point evidence ``eid`` at ``path`` if its SHA-256 matches, then open it."""
        try:
            locate_evidence(self.case, eid, path, user=self.user)
        except ScanLabError as e:
            self.host.post_message(str(e), error=True)
            return False
        self.host.open_paths([path])
        self.refresh()
        return True

    # -- slow work on the runner's thread ---------------------------------------------------------

    def _job(self, kind: str, fn: Any, data: Any = None) -> int:
        job = self.runner.submit_job(fn)
        self._jobs[job] = (kind, data)
        return job

    @Slot()
    def add_current_scan(self) -> None:
        """Store the scan on screen in the case: the run the analyst is looking at when its
        settings are the current ones, else a fresh analysis with the current settings.

        The worker only computes (:func:`prepare_run` / :func:`analyse_for_case`); the
        case is changed here, on the GUI thread, when the result arrives.
        """
        doc = self.host.current_document()
        if self.case is None or doc is None:
            self.host.post_message("open a case and a scan first", error=True)
            return
        if self.case.read_only:
            self.host.post_message(f"{self.case.path}: the case is open read-only", error=True)
            return
        model, sub, stride, device = self.state.analysis_key()
        if doc.result is not None and run_matches(doc.result, model=model, sub=(sub, sub), stride=(stride, stride),
                                                  device=device):
            self._job("add", functools.partial(prepare_run, doc.result))
        else:
            self._job("add", functools.partial(analyse_for_case, doc.path, model=model, sub=(sub, sub),
                                               stride=(stride, stride), device=device))
        self.host.show_status(f"adding {doc.name} to the case...")

    def add_paths(self, paths: list[str]) -> int:
        """Analyse these scans with the current settings and store each in the case (batch triage).

        The worker only computes (:func:`analyse_for_case`); each run is stored on the GUI
        thread when it arrives, as for :meth:`add_current_scan`. Returns the number of jobs
        queued (0 with a message when no case is open).
        """
        if self.case is None:
            self.host.post_message("open or create a case first (Case menu), then add pages to it", error=True)
            return 0
        if self.case.read_only:
            self.host.post_message(f"{self.case.path}: the case is open read-only", error=True)
            return 0
        model, sub, stride, device = self.state.analysis_key()
        for path in paths:
            self._job("add", functools.partial(analyse_for_case, path, model=model, sub=(sub, sub),
                                               stride=(stride, stride), device=device))
        self.host.show_status(f"adding {len(paths)} page(s) to the case...")
        return len(paths)

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
        path, _ = QFileDialog.getSaveFileName(self.parent_widget, "Export report", "", "PDF (*.pdf)")
        if path:
            self.export_to(str(Path(path).with_suffix(".pdf")))

    @Slot(int, object)
    def _on_job_succeeded(self, job: int, value: object) -> None:
        kind, _data = self._jobs.pop(job, (None, None))
        if kind == "add":
            if self.case is None:
                return  # the case was closed meanwhile
            try:
                e = record_run(self.case, value, user=self.user)
            except ScanLabError as err:
                self.host.post_message(str(err), error=True)
                return
            self.host.post_message(f"added {Path(e.info['path']).name} to the case (evidence {e.eid})")
            self.refresh()
        elif kind == "report":
            info, entry = value
            if self.case is None:
                return
            adopt_entry(self.case, entry, info)
            self.host.post_message(f"report {info['pdf']} (SHA-256 {info['pdf_sha256'][:16]}...)"
                                     + (" DRAFT: not signed off" if info["draft"] else ""))
            self.save()

    @Slot(int, str)
    def _on_job_failed(self, job: int, message: str) -> None:
        if self._jobs.pop(job, None) is not None:
            self.host.post_message(message, error=True)

    # -- ROIs -------------------------------------------------------------------------------------

    def current_evidence(self) -> Any:
        """The case evidence shown now (matched by SHA-256, else by path), or None."""
        doc = self.host.current_document()
        if self.case is None or doc is None:
            return None
        if doc.result is not None:
            e = self.case.evidence.get(evidence_id(doc.result.scan.sha256))
            if e is not None:
                return e
        return next((e for e in self.case.evidence.values()
                     if Path(e.info["path"]).resolve() == Path(doc.path).resolve()), None)

    def refresh(self) -> None:
        """Mirror the case into the review (layer and panel) and the window title."""
        e = self.current_evidence()
        self._eid = e.eid if e is not None else None
        self.review.show(self.case, self._eid, self.user, note=self._run_mismatch(e))
        self.refresh_title()

    def _run_mismatch(self, e: Any) -> str:
        """Words when the map on screen is not the stored run's (the ROI statistics are the stored run's)."""
        doc = self.host.current_document()
        if e is None or doc is None or doc.result is None:
            return ""
        return stored_run_note(e, doc.result.request.sub, doc.result.request.stride)

    def refresh_title(self) -> None:
        """``ScanLab - <case title>[*] - <scan>``."""
        doc = self.host.current_document()
        parts = ["ScanLab"]
        if self.case is not None:
            parts.append(self.case.meta["title"] + (" *" if self.case.dirty else "")
                         + (" [read-only]" if self.case.read_only else ""))
        if doc is not None:
            parts.append(doc.name)
        self.host.setWindowTitle(" - ".join(parts))


def _export_snapshot(snap: Case, path: str, *, user: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Worker side of an export: the report of a snapshot, and the audit entry it logged there."""
    info = export_report(snap, path, user=user)
    return info, snap.audit[-1]
