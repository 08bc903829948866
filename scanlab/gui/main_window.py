"""The main window: open scans, analyse them off the GUI thread, show the overlay.

The window composes and delegates: a :class:`ViewState` holds what the analyst chose
to see (the controls panel is its view), :class:`ScanDocument` holds per-scan state,
the :class:`AnalysisScheduler` decides what to analyse next on the
:class:`TaskRunner`, :class:`ScanView` draws, the panels mirror state, the
:class:`CaseController` keeps the open case. Helpers get narrow parts of the window
(import-linter forbids them to import this module), never the window itself.
"""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QBrush, QCloseEvent, QColor, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QFrame,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMenu,
    QScrollArea,
    QWidget,
)

from scanlab.gui.case_controller import FILE_ACTIONS, ROI_TOOL_ACTIONS, CaseController
from scanlab.gui.class_maps import ClassMapLoader
from scanlab.gui.controls_panel import ControlsPanel
from scanlab.gui.display import DocumentDisplay, StatusArea
from scanlab.gui.documents import ParamsKey, ScanDocument, collect_paths
from scanlab.gui.menus import build_menus
from scanlab.gui.pyramid import build_pyramid
from scanlab.gui.results_panel import ResultsPanel
from scanlab.gui.scan_view import ScanView
from scanlab.gui.scheduler import AnalysisScheduler
from scanlab.gui.selftest_action import SelftestController
from scanlab.gui.settings import GuiSettings, remembered_model, restore_view_state, save_view_state
from scanlab.gui.task_runner import TaskRunner
from scanlab.gui.triage_windows import TriageWindows
from scanlab.gui.wizard.menu import ModelsMenu
from scanlab.services.analysis import AnalysisResult
from scanlab.services.models import model_entries
from scanlab.services.paths import sample_scans, samples_dir
from scanlab.services.viewstate import ANALYSIS_FIELDS, ViewState

IMAGE_FILTER = "Scans (*.tif *.tiff *.png *.jpg *.jpeg *.bmp *.pdf);;All files (*)"
MODEL_FILTER = "ScanLab models (*.safetensors);;All files (*)"


class MainWindow(QMainWindow):
    """ScanLab's desktop window.

    Signals
    -------
    analysis_settled(str, bool)
        An analysis of the given scan path ended: ``True`` with a result, ``False``
        with an error (the message is in the messages panel).
    """

    analysis_settled = Signal(str, bool)

    def __init__(self, settings: GuiSettings | None = None, model: str | None = None) -> None:
        super().__init__()
        self.setWindowTitle("ScanLab")
        self.setAcceptDrops(True)
        self.settings = settings if settings is not None else GuiSettings()
        self.state = ViewState()
        self.documents: list[ScanDocument] = []
        self.extra_models: list[str] = []
        self._shipped_problem: str | None = None  # last shipped-model problem shown
        self.docks: dict[str, QDockWidget] = {}

        self.view = ScanView()
        self.setCentralWidget(self.view)
        self.controls = ControlsPanel(self.state)
        self.results = ResultsPanel()
        self.scan_list = QListWidget()
        self.messages = QListWidget()
        self.messages.setWordWrap(True)
        self._add_dock("Scans", "scans", self.scan_list, left=True)
        self._add_dock("Controls", "controls", self.controls, left=True)
        # in a scroll area: on a small screen the panel scrolls instead of squeezing
        # the provenance rows until their text overlaps
        results_scroll = QScrollArea()
        results_scroll.setWidgetResizable(True)
        results_scroll.setFrameShape(QFrame.Shape.NoFrame)
        results_scroll.setWidget(self.results)
        self._add_dock("Results", "results", results_scroll, left=False)
        msg_dock = self._add_dock("Messages", "messages", self.messages, left=False)
        self.splitDockWidget(self.docks["results"], msg_dock, Qt.Orientation.Vertical)

        self.status = StatusArea(self.statusBar())
        self.status_label, self.progress = self.status.label, self.status.progress

        self.runner = TaskRunner(self)
        self.class_maps = ClassMapLoader(self)
        self.scheduler = AnalysisScheduler(self.runner, self.state, self.documents, self.current_document, self)
        self.display = DocumentDisplay(view=self.view, results=self.results, controls=self.controls,
                                       status=self.status_label, state=self.state, class_maps=self.class_maps,
                                       current=self.current_document, parent=self, runner=self.runner,
                                       busy=self.status.busy, post=self.post_message)
        self.cases = self.display.layers.cases = CaseController(self, self.view, self.runner, self.state, self)
        review = self._add_dock("Review", "review", self.cases.panel, left=False)
        self.tabifyDockWidget(self.docks["results"], review)  # full height, one click away
        self.docks["results"].raise_()
        self.actions_, self.menus = build_menus(
            self, self, view=self.view, scans=self.scan_list, state=self.state, blink=self.controls.blink_check,
            recent=self.settings, docks=list(self.docks.values()))
        self._place_case_actions()
        self.models_menu = ModelsMenu(self.menus["models"], self, self)  # Train a model..., Model library...
        self.selftest = SelftestController(self)  # Help > Run self-test
        self.triage = TriageWindows(self, start_dir=lambda: self.settings.get_str("paths/last_open_dir", str(Path.home())),
                                    state=self.state, open_paths=self.open_paths,
                                    show_result=self.show_result, add_to_case=self.cases.add_paths,
                                    post=self.post_message)  # File > Open batch results
        self._restore_settings(model)
        self._connect()

    # -- construction ---------------------------------------------------------------------

    def _add_dock(self, title: str, name: str, widget: QWidget, *, left: bool) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)  # saveState needs object names
        dock.setWidget(widget)
        area = (
            Qt.DockWidgetArea.LeftDockWidgetArea if left else Qt.DockWidgetArea.RightDockWidgetArea
        )
        self.addDockWidget(area, dock)
        self.docks[name] = dock
        return dock

    def _place_case_actions(self) -> None:
        """The case controller's actions in File (above Quit) and in an ROI menu."""
        a, quit_action = self.cases.actions, self.actions_["quit"]
        for name in FILE_ACTIONS:
            self.menus["file"].insertAction(quit_action, a[name])
        self.menus["file"].insertSeparator(quit_action)
        roi = self.menuBar().insertMenu(self.menus["models"].menuAction(), QMenu("&ROI", self)).menu()
        roi.addActions([a[n] for n in ROI_TOOL_ACTIONS])
        roi.addSeparator()
        roi.addActions([a["undo"], a["redo"], a["delete_roi"]])
        self.menus["roi"] = roi
        self.addActions(list(a.values()))

    def default_layout(self) -> None:
        """Dock sizes for a first start: the scan view gets most of the width."""
        d = self.docks
        self.resizeDocks([d["scans"], d["results"]], [260, 360], Qt.Orientation.Horizontal)
        self.resizeDocks([d["scans"], d["controls"]], [160, 440], Qt.Orientation.Vertical)
        self.resizeDocks([d["results"], d["messages"]], [620, 120], Qt.Orientation.Vertical)

    def _restore_settings(self, model: str | None) -> None:
        """Remembered layout and parameters; the view state then drives the view."""
        geom = self.settings.get_bytes("window/geometry")
        if geom is None or not self.restoreGeometry(geom):
            self.resize(1280, 800)
        state = self.settings.get_bytes("window/state")
        if state is None or not self.restoreState(state):
            self.default_layout()
        restore_view_state(self.settings, self.state)
        spec = remembered_model(self.settings, model)
        if spec is not None:
            self.extra_models.append(spec)
        self.refresh_models(current=spec)

    def _connect(self) -> None:
        self.runner.progressed.connect(self.status.on_progress)
        self.runner.idle.connect(self._on_runner_idle)
        self.scheduler.submitted.connect(self._on_scheduler_submitted)
        self.scheduler.loaded.connect(self._on_scheduler_loaded)
        self.scheduler.settled.connect(self._on_scheduler_settled)
        self.scheduler.items_changed.connect(self._update_items)
        self.status.cancel_button.clicked.connect(self.cancel_analysis)
        self.scan_list.currentRowChanged.connect(self._on_scan_list_current_row_changed)
        self.cases.panel_shown.connect(self.docks["review"].raise_)
        c = self.controls
        c.open_model_requested.connect(self.open_model_dialog)
        c.input_refused.connect(self._on_controls_input_refused)
        c.blink_toggled.connect(self.view.set_blinking)
        self.state.subscribe(self._on_state_changed)

    def _on_state_changed(self, changed: frozenset[str]) -> None:
        if changed & ANALYSIS_FIELDS:
            self._update_items()  # "(other parameters)" in the list

    def refresh_models(self, current: str | None = None) -> None:
        """Rebuild the model list (services.models.model_entries); say once why the shipped one is unusable."""
        entries, problem = model_entries(self.extra_models)
        if problem is not None and problem != self._shipped_problem:
            self.post_message(f"The shipped model cannot be used: {problem}. Scans still open; "
                              "choose another model in Controls > Model to analyse them.", error=True)
        self._shipped_problem = problem
        self.controls.set_models(entries, current)

    # -- what helpers may ask (CaseHost, MenuHost, ModelsHost) ------------------------------------

    def document_paths(self) -> list[str]:
        """Paths of the open scans, in list order."""
        return [d.path for d in self.documents]

    def select_path(self, path: str) -> None:
        """Show the open scan ``path`` (nothing when it is not open)."""
        paths = self.document_paths()
        if path in paths:
            self.scan_list.setCurrentRow(paths.index(path))

    def show_status(self, text: str, ms: int = 0) -> None:
        """A transient status-bar message."""
        self.statusBar().showMessage(text, ms)

    # -- opening ----------------------------------------------------------------------------

    def open_paths(self, paths: list[str]) -> list[ScanDocument]:
        """Open files and folders; unreadable items give a message, the rest load."""
        files, problems = collect_paths(paths)
        for msg in problems:
            self.post_message(msg, error=True)
        known = {d.path: d for d in self.documents}
        added: list[ScanDocument] = []
        for f in files:
            if f in known:
                continue
            doc = ScanDocument(path=f)
            self.documents.append(doc)
            added.append(doc)
            item = QListWidgetItem(doc.name)
            item.setToolTip(f)
            self.scan_list.addItem(item)
        if files:
            self.settings.add_recent(files)
            self.settings.set("paths/last_open_dir", str(Path(files[0]).parent))
            first = known.get(files[0]) or added[0]
            self.scheduler.paused = False
            self.scan_list.setCurrentRow(self.documents.index(first))
        self.scheduler.schedule()
        return added

    @Slot()
    def open_files_dialog(self) -> None:
        """File > Open."""
        start = self.settings.get_str("paths/last_open_dir", str(Path.home()))
        files, _ = QFileDialog.getOpenFileNames(self, "Open scans", start, IMAGE_FILTER)
        if files:
            self.open_paths(files)

    @Slot()
    def open_sample(self) -> None:
        """File > Open sample scan: the bundled forged sample (also opened on first start)."""
        samples = sample_scans()
        if samples:
            self.open_paths(samples[:1])
        else:
            self.post_message(f"{samples_dir()}: no bundled sample scan found", error=True)

    @Slot()
    def open_folder_dialog(self) -> None:
        """File > Open Folder."""
        start = self.settings.get_str("paths/last_open_dir", str(Path.home()))
        folder = QFileDialog.getExistingDirectory(self, "Open a folder of scans", start)
        if folder:
            self.open_paths([folder])

    @Slot()
    def open_model_dialog(self) -> None:
        """Pick a model file and use it."""
        start = self.settings.get_str("paths/last_model_dir", str(Path.home()))
        path, _ = QFileDialog.getOpenFileName(self, "Open model", start, MODEL_FILTER)
        if path:
            self.use_model(path)

    def open_batch_dialog(self) -> None:
        """File > Open batch results (:class:`TriageWindows`)."""
        self.triage.open_dialog()

    def open_batch(self, path: str):
        """Show a ``scanlab batch`` results table in a triage window (None, with a message, if unreadable)."""
        return self.triage.open(path)

    def show_result(self, result: AnalysisResult) -> ScanDocument:
        """Open ``result.request.path`` showing ``result`` (computed elsewhere); no analysis starts.

        The view's sub-image and stride become the result's, so the scheduler sees
        nothing to recompute; changing them later re-analyses as usual.
        """
        self.state.update(sub=result.request.sub[0], stride=result.request.stride[0])
        doc = next((d for d in self.documents if d.path == result.request.path), None)
        if doc is None:
            doc = ScanDocument(path=result.request.path)
            self.documents.append(doc)
            item = QListWidgetItem(doc.name)
            item.setToolTip(doc.path)
            self.scan_list.addItem(item)
        self.scheduler.forget(doc)
        doc.set_result(result, self.scheduler.key(), build_pyramid(result.pixels))
        if self.current_document() is doc:
            self._show_document(doc)
        else:
            self.scan_list.setCurrentRow(self.documents.index(doc))
        return doc

    def use_model(self, path: str) -> None:
        """Add a model file to the list, select it and re-analyse."""
        if path not in self.extra_models:
            self.extra_models.append(path)
        self.settings.set("paths/last_model_dir", str(Path(path).parent))
        self.refresh_models(current=path)  # the view state's model changes: the scheduler re-analyses

    @Slot()
    def close_current(self) -> None:
        """Close the selected scan."""
        row = self.scan_list.currentRow()
        if row < 0:
            return
        doc = self.documents.pop(row)
        self.scheduler.forget(doc)
        self.scan_list.takeItem(row)
        if not self.documents:
            self._show_document(None)

    # -- analysis ------------------------------------------------------------------------------

    def params_key(self) -> ParamsKey:
        """What results depend on, from the view state."""
        return self.state.analysis_key()

    def current_document(self) -> ScanDocument | None:
        """The selected scan."""
        row = self.scan_list.currentRow()
        return self.documents[row] if 0 <= row < len(self.documents) else None

    @Slot()
    def reanalyse(self) -> None:
        """Analyse the selected scan again (clears a stored failure)."""
        doc = self.current_document()
        if doc is not None:
            self.scheduler.reanalyse(doc)

    @Slot()
    def cancel_analysis(self) -> None:
        """Stop the running analysis; nothing more starts until the next action."""
        if self.scheduler.cancel():
            self.post_message("analysis cancelled")

    @Slot(object)
    def _on_scheduler_submitted(self, doc: ScanDocument) -> None:
        if doc is self.current_document():
            self.status_label.setText(self.display.status_text(doc))
        self.status.busy()

    @Slot(object)
    def _on_scheduler_loaded(self, doc: ScanDocument) -> None:
        if doc is self.current_document():
            self.view.set_scan(doc.preview, pyramid=doc.pyramid)

    @Slot(object, bool)
    def _on_scheduler_settled(self, doc: ScanDocument, ok: bool) -> None:
        if not ok:
            self.post_message(doc.error or "analysis failed", error=True)
        if doc is self.current_document():
            self._show_document(doc)
        self.cases.refresh()
        self.analysis_settled.emit(doc.path, ok)

    @Slot()
    def _on_runner_idle(self) -> None:
        if not self.runner.is_busy():  # the scheduler may have started the next one already
            self.status.idle()

    @Slot(str)
    def _on_controls_input_refused(self, message: str) -> None:
        self.post_message(message, error=True)

    # -- display -------------------------------------------------------------------------------

    def _show_document(self, doc: ScanDocument | None) -> None:
        self.display.show(doc)
        self.setWindowTitle(f"ScanLab - {doc.name}" if doc else "ScanLab")

    def _update_items(self) -> None:
        key = self.params_key()
        for i, doc in enumerate(self.documents):
            item = self.scan_list.item(i)
            status = doc.status_text(key)
            item.setText(f"{doc.name}  [{status.split(':')[0]}]")
            item.setToolTip(f"{doc.path}\n{status}")
            failed = doc.error is not None and doc.error_key == key
            item.setForeground(QBrush(QColor("#d62728")) if failed else QBrush())

    @Slot(int)
    def _on_scan_list_current_row_changed(self, row: int) -> None:
        doc = self.current_document()
        self._show_document(doc)
        self.cases.refresh()
        if doc is not None:
            self.scheduler.resume()

    def post_message(self, text: str, *, error: bool = False) -> None:
        """Non-modal message: the messages panel and the status bar."""
        item = QListWidgetItem(f"{time.strftime('%H:%M:%S')}  {text}")
        if error:
            item.setForeground(QBrush(QColor("#d62728")))
        self.messages.addItem(item)
        self.messages.scrollToBottom()
        self.statusBar().showMessage(text, 8000)

    # -- drag and drop, settings, close ---------------------------------------------------------

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt override
        """Accept drags that carry file URLs."""
        if event.mimeData().hasUrls():
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 - Qt override
        """Open dropped files and folders."""
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if not paths:
            self.post_message(
                "nothing to open in the drop (only local files and folders)", error=True
            )
            event.ignore()
            return
        event.acceptProposedAction()
        self.open_paths(paths)

    def save_settings(self) -> None:
        """Remember window layout, analysis parameters and overlay settings."""
        self.settings.set("window/geometry", self.saveGeometry())
        self.settings.set("window/state", self.saveState())
        save_view_state(self.settings, self.state)
        self.settings.sync()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt override
        """Save settings, cancel the analysis and wait for the worker thread."""
        self.scheduler.recompute.stop()
        self.state.clear_observers()  # a closed window: the state drives none of its widgets any more
        self.view.set_blinking(False)
        self.save_settings()
        self.cases.close_case()  # saves a modified case, releases its lock
        self.runner.shutdown()
        self.class_maps.shutdown()
        event.accept()
