"""The main window: open scans, analyse them off the GUI thread, show the overlay.

The window delegates: :class:`ScanDocument` holds per-scan state, :class:`TaskRunner`
computes, :class:`ScanView` draws, the panels mirror state. It only decides *what*
to analyse next: the selected scan first, then any other open scan that has no
result for the current parameters (one compute lane; the latest request wins).
"""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal, Slot
from PySide6.QtGui import QBrush, QCloseEvent, QColor, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QFrame,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QProgressBar,
    QScrollArea,
    QToolButton,
    QWidget,
)

from scanlab.gui.case_controller import CaseController
from scanlab.gui.class_maps import ClassMapLoader
from scanlab.gui.controls_panel import ControlsPanel
from scanlab.gui.documents import ParamsKey, ScanDocument, collect_paths
from scanlab.gui.menus import build_menus
from scanlab.gui.results_panel import ResultsPanel, map_quantity, pixel_readout
from scanlab.gui.scan_view import ScanView
from scanlab.gui.settings import GuiSettings, restore_window_settings, save_window_settings
from scanlab.gui.task_runner import TaskRunner
from scanlab.gui.wizard.menu import ModelsMenu
from scanlab.services.analysis import ATTRIBUTION, UNKNOWN, AnalysisRequest, AnalysisResult
from scanlab.services.models import list_models, shipped_model_problem
from scanlab.services.paths import default_model_path, sample_scans, samples_dir

RECOMPUTE_DELAY_MS = 400
IMAGE_FILTER = "Scans (*.tif *.tiff *.png *.jpg *.jpeg *.bmp *.pdf);;All files (*)"
MODEL_FILTER = "ScanLab models (*.safetensors);;All files (*)"
BATCH_FILTER = "Batch results (*.parquet);;All files (*)"


def _map_name(label: str | None) -> str:
    """Words for a "Map of" choice in the status bar."""
    return {ATTRIBUTION: "attribution (best-fitting scanner per region)",
            UNKNOWN: "the unknown-scanner score"}.get(label or "", str(label))


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
        self.documents: list[ScanDocument] = []
        self._pending: dict[int, tuple[ScanDocument, ParamsKey]] = {}
        self._paused = False
        self._extra_models: list[str] = []
        self._shipped_problem: str | None = None  # last shipped-model problem shown
        self._docks: dict[str, QDockWidget] = {}
        self.triage_views: list = []  # open batch-results windows (scanlab.gui.triage.TriageView)

        self.view = ScanView()
        self.setCentralWidget(self.view)
        self.controls = ControlsPanel()
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
        self.splitDockWidget(self._docks["results"], msg_dock, Qt.Orientation.Vertical)

        self.status_label = QLabel("Drop scans or folders here, or File > Open (Ctrl+O)")
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(220)
        self.progress.setVisible(False)
        self.cancel_button = QToolButton()
        self.cancel_button.setText("Cancel")
        self.cancel_button.setToolTip("Cancel the running analysis (Esc)")
        self.cancel_button.setVisible(False)
        self.statusBar().addWidget(self.status_label, 1)
        self.statusBar().addPermanentWidget(self.progress)
        self.statusBar().addPermanentWidget(self.cancel_button)

        self.runner = TaskRunner(self)
        self.class_maps = ClassMapLoader(self)
        self._view_map_of: str | None = None  # the "Map of" choice whose map the view draws
        self._recompute = QTimer(self)
        self._recompute.setSingleShot(True)
        self._recompute.setInterval(RECOMPUTE_DELAY_MS)
        self._started_at = 0.0

        self.actions_ = build_menus(self)
        self.models_menu = ModelsMenu(self)  # Models > Train a model..., Model library...
        restore_window_settings(self, model)
        self._connect()
        self.cases = CaseController(self)  # case files, ROI tools and the review dock

    # -- construction ---------------------------------------------------------------------

    def _add_dock(self, title: str, name: str, widget: QWidget, *, left: bool) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)  # saveState needs object names
        dock.setWidget(widget)
        area = (
            Qt.DockWidgetArea.LeftDockWidgetArea if left else Qt.DockWidgetArea.RightDockWidgetArea
        )
        self.addDockWidget(area, dock)
        self._docks[name] = dock
        return dock

    def default_layout(self) -> None:
        """Dock sizes for a first start: the scan view gets most of the width."""
        d = self._docks
        self.resizeDocks([d["scans"], d["results"]], [260, 360], Qt.Orientation.Horizontal)
        self.resizeDocks([d["scans"], d["controls"]], [160, 440], Qt.Orientation.Vertical)
        self.resizeDocks([d["results"], d["messages"]], [620, 120], Qt.Orientation.Vertical)

    def _connect(self) -> None:
        self.runner.progressed.connect(self._on_runner_progressed)
        self.runner.loaded.connect(self._on_runner_loaded)
        self.runner.succeeded.connect(self._on_runner_succeeded)
        self.runner.failed.connect(self._on_runner_failed)
        self.runner.cancelled.connect(self._on_runner_cancelled)
        self.runner.idle.connect(self._on_runner_idle)
        self._recompute.timeout.connect(self._on_recompute_timeout)
        self.cancel_button.clicked.connect(self.cancel_analysis)
        self.scan_list.currentRowChanged.connect(self._on_scan_list_current_row_changed)
        self.view.cursor_moved.connect(self._on_view_cursor_moved)
        self.class_maps.ready.connect(self._on_class_maps_ready)
        c = self.controls
        c.analysis_params_changed.connect(self._on_controls_params_changed)
        c.open_model_requested.connect(self.open_model_dialog)
        c.map_class_changed.connect(self._on_controls_map_class_changed)
        c.opacity_changed.connect(self.view.set_opacity)
        c.colormap_changed.connect(self.view.set_colormap)
        c.threshold_changed.connect(self.view.set_threshold)
        c.overlay_toggled.connect(self.view.set_overlay_visible)
        c.blink_toggled.connect(self.view.set_blinking)

    def refresh_models(self, current: str | None = None) -> None:
        """Rebuild the model list: shipped default, shipped + user models, opened files."""
        default = default_model_path()
        problem = shipped_model_problem()
        state = "shipped" if problem is None else "missing" if not default.exists() else "unreadable"
        entries: list[tuple] = [(f"default ({state})", None)]
        if problem is not None and problem != self._shipped_problem:
            self.post_message(f"The shipped model cannot be used: {problem}. Scans still open; "
                              "choose another model in Controls > Model to analyse them.", error=True)
        self._shipped_problem = problem
        for m in list_models():
            if not m.get("usable", True):  # listed, greyed out, with the reason as tooltip
                entries.append((f"{Path(m['path']).name} (unusable)", m["path"], m["reason"]))
            elif Path(m["path"]).resolve() != default.resolve():
                entries.append((f"{m['name']} ({m['origin']})", m["path"]))
        known = {e[1] for e in entries}
        entries += [(Path(p).stem + " (file)", p) for p in self._extra_models if p not in known]
        self.controls.set_models(entries, current)

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
            self._paused = False
            self.scan_list.setCurrentRow(self.documents.index(first))
        self._schedule()
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

    @Slot()
    def open_batch_dialog(self) -> None:
        """File > Open batch results: a ``scanlab batch`` results.parquet in the triage view."""
        start = self.settings.get_str("paths/last_open_dir", str(Path.home()))
        path, _ = QFileDialog.getOpenFileName(self, "Open batch results", start, BATCH_FILTER)
        if path:
            self.open_batch(path)

    def open_batch(self, path: str):
        """Show a results table in a triage window; double-clicking a row opens that page here."""
        from scanlab.core.errors import ScanLabError
        from scanlab.gui.triage import TriageView

        try:
            view = TriageView(path, self)
        except ScanLabError as e:
            self.post_message(str(e), error=True)
            return None
        # a child of the window (deleted with it) shown as a window of its own
        view.setWindowFlag(Qt.WindowType.Window, True)
        view.page_requested.connect(self._on_triage_page_requested)
        view.add_to_case_requested.connect(self._on_triage_add_to_case)
        self.triage_views.append(view)
        view.resize(1000, 700)
        view.show()
        return view

    @Slot(str)
    def _on_triage_page_requested(self, path: str) -> None:
        self.open_paths([path])

    @Slot(list)
    def _on_triage_add_to_case(self, paths: list) -> None:
        self.cases.add_paths([str(p) for p in paths])

    def use_model(self, path: str) -> None:
        """Add a model file to the list, select it and re-analyse."""
        if path not in self._extra_models:
            self._extra_models.append(path)
        self.settings.set("paths/last_model_dir", str(Path(path).parent))
        self.refresh_models(current=path)
        self._on_controls_params_changed()

    @Slot()
    def close_current(self) -> None:
        """Close the selected scan."""
        row = self.scan_list.currentRow()
        if row < 0:
            return
        doc = self.documents.pop(row)
        if doc.pending_id is not None and self.runner.latest is not None:
            if self.runner.latest.request_id == doc.pending_id:
                self.runner.cancel()
        self.scan_list.takeItem(row)
        if not self.documents:
            self._show_document(None)

    # -- analysis ------------------------------------------------------------------------------

    def params_key(self) -> ParamsKey:
        """What results depend on, from the controls."""
        c = self.controls
        return (c.model_spec(), c.sub_spin.value(), c.stride_spin.value(), c.device())

    def current_document(self) -> ScanDocument | None:
        """The selected scan."""
        row = self.scan_list.currentRow()
        return self.documents[row] if 0 <= row < len(self.documents) else None

    def _schedule(self) -> None:
        """Submit the next analysis: the selected scan first, then the others in order."""
        if self._paused:
            return
        key = self.params_key()
        cur = self.current_document()
        target = cur if cur is not None and cur.needs_analysis(key) else None
        if target is None:
            target = next((d for d in self.documents if d.needs_analysis(key)), None)
        if target is None:
            return
        latest = self.runner.latest
        if latest is not None:
            running = self._pending.get(latest.request_id)
            if running is not None and running[0] is target and running[1] == key:
                return
            if target is not cur:
                return  # background scans wait until the lane is idle
        model, sub, stride, device = key
        req = AnalysisRequest(
            path=target.path, model=model, sub=(sub, sub), stride=(stride, stride), device=device
        )
        self._pending[req.request_id] = (target, key)
        target.pending_id = req.request_id
        self._started_at = time.monotonic()
        self.status_label.setText(f"Analysing {target.name}...")
        self.progress.setRange(0, 0)
        self.progress.setVisible(True)
        self.cancel_button.setVisible(True)
        self.runner.submit(req)
        self._update_items()

    @Slot()
    def reanalyse(self) -> None:
        """Analyse the selected scan again (clears a stored failure)."""
        doc = self.current_document()
        if doc is not None:
            doc.error = doc.error_key = None
            doc.result_key = None
            self._paused = False
            self._schedule()

    @Slot()
    def cancel_analysis(self) -> None:
        """Stop the running analysis; nothing more starts until the next action."""
        if self.runner.is_busy():
            self._paused = True
            self.runner.cancel()
            self.post_message("analysis cancelled")

    def _take_pending(self, request: AnalysisRequest) -> tuple[ScanDocument, ParamsKey] | None:
        entry = self._pending.pop(request.request_id, None)
        if entry is not None and entry[0].pending_id == request.request_id:
            entry[0].pending_id = None
        return entry if entry is not None and entry[0] in self.documents else None

    @Slot(int, int)
    def _on_runner_progressed(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(done)

    @Slot(object, object, object)
    def _on_runner_loaded(self, request: AnalysisRequest, pixels: object, pyramid: list) -> None:
        entry = self._pending.get(request.request_id)
        if entry is None or entry[0].result is not None:
            return  # a result (other parameters) is on screen already
        doc = entry[0]
        doc.set_preview(pixels, pyramid)
        if doc is self.current_document():
            self.view.set_scan(pixels, pyramid=pyramid)

    @Slot(object, object)
    def _on_runner_succeeded(self, result: AnalysisResult, pyramid: list) -> None:
        entry = self._take_pending(result.request)
        if entry is None:
            return
        doc, key = entry
        doc.set_result(result, key, pyramid)
        self.status_label.setText(
            f"{doc.name}: {result.answer} ({result.compute_s:.1f} s on {result.device})"
        )
        if doc is self.current_document():
            self._show_document(doc)
        self._update_items()
        self.analysis_settled.emit(doc.path, True)

    @Slot(object, str)
    def _on_runner_failed(self, request: AnalysisRequest, message: str) -> None:
        entry = self._take_pending(request)
        if entry is None:
            return
        doc, key = entry
        doc.set_error(message, key)
        self.post_message(message, error=True)
        if doc is self.current_document():
            self._show_document(doc)
        self._update_items()
        self.analysis_settled.emit(doc.path, False)

    @Slot(object)
    def _on_runner_cancelled(self, request: AnalysisRequest) -> None:
        self._take_pending(request)
        self._update_items()

    @Slot()
    def _on_runner_idle(self) -> None:
        self.progress.setVisible(False)
        self.cancel_button.setVisible(False)
        self._schedule()

    @Slot()
    def _on_controls_params_changed(self) -> None:
        self._paused = False
        self._recompute.start()  # debounced: spin boxes fire on every step

    @Slot()
    def _on_recompute_timeout(self) -> None:
        self._schedule()
        self._update_items()

    # -- display -------------------------------------------------------------------------------

    def _show_document(self, doc: ScanDocument | None) -> None:
        result = doc.result if doc is not None else None
        if result is None:
            preview = doc.preview if doc is not None else None
            self.view.set_scan(preview, pyramid=doc.pyramid if preview is not None else None)
            if doc is None:
                msg = None
            elif doc.error is not None and doc.result is None:
                msg = "analysis failed"
            else:
                msg = "analysing..."
            self.results.show_result(None, msg)
            self.controls.set_classes([], None, None)
            self.setWindowTitle(f"ScanLab - {doc.name}" if doc else "ScanLab")
            return
        self.view.set_scan(result.pixels, pyramid=doc.pyramid)
        self.view.set_no_evidence(result.no_evidence_mask() if result.reliability is not None else None)
        shown = doc.shown_map()
        self._set_view_map(doc, shown)
        if shown is None and doc.shown_label() is not None:
            self.class_maps.request(doc, doc.shown_label())
        self.results.show_result(result)
        self.controls.set_classes(result.classes, result.label, doc.map_label,
                                  unknown_map=result.unknown_grid is not None)
        self.setWindowTitle(f"ScanLab - {doc.name}")

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
        if doc is not None:
            self._paused = False
            self._schedule()

    @Slot(object)
    def _on_controls_map_class_changed(self, label: str | None) -> None:
        doc = self.current_document()
        if doc is None or doc.result is None:
            return
        doc.map_label = label
        shown = doc.shown_map()
        if shown is not None:
            self._set_view_map(doc, shown)
        else:  # computed off the GUI thread; the old map stays until it arrives
            self.status_label.setText(f"computing the map of {_map_name(label)}...")
            self.class_maps.request(doc, doc.shown_label())

    @Slot(object, str, object)
    def _on_class_maps_ready(self, doc: ScanDocument, label: str, rel: object) -> None:
        if doc is self.current_document() and doc.shown_label() == label:
            self._set_view_map(doc, rel)
            self.status_label.setText(f"{doc.name}: map of {_map_name(label)}")

    def _set_view_map(self, doc: ScanDocument, arr: object) -> None:
        """Draw ``arr`` as the map of ``doc.shown_label()``: class colours for the attribution map."""
        result = doc.result
        attribution = result is not None and doc.shown_label() == ATTRIBUTION
        # remembered with the map: while another class's map is computed the old one stays drawn
        self._view_map_of = doc.shown_label() if arr is not None else None
        label = map_quantity(self._view_map_of)
        v = getattr(result, "verdict", None)
        if v is not None and v.verdict != "attributed" and self._view_map_of not in (None, ATTRIBUTION, UNKNOWN):
            # the fit to a scanner the verdict does not name: say so on the colour bar itself
            label += f" (verdict: {v.short(None)})"
        self.view.set_map(arr, categorical=len(result.classes) if attribution else None, label=label)
        self.controls.set_legend(result.classes if attribution else None)

    @Slot(object)
    def _on_view_cursor_moved(self, pos: tuple[int, int] | None) -> None:
        doc = self.current_document()
        classes = doc.result.classes if doc is not None and doc.result is not None else None
        self.results.show_cursor(pixel_readout(
            self.view.pixels, self.view.reliability, pos, what=self._view_map_of,
            classes=classes, no_evidence=self.view.no_evidence))

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
        save_window_settings(self)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt override
        """Save settings, cancel the analysis and wait for the worker thread."""
        self._recompute.stop()
        self.view.set_blinking(False)
        self.save_settings()
        self.cases.close_case()  # saves a modified case, releases its lock
        self.runner.shutdown()
        self.class_maps.shutdown()
        event.accept()
