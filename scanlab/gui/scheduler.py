"""Which scan to analyse next, with which parameters: the window's one compute lane.

The scheduler reads the parameters from the :class:`ViewState` and the open scans
from a plain list of :class:`ScanDocument`; it submits requests to the
:class:`TaskRunner` and turns the runner's answers into per-document signals. It
never draws: the window shows what these signals say.

Rule: the scan on screen first; then, when the lane is idle, open scans that have
no result yet. Changing sub-image, stride, model or device re-analyses only the
scan on screen; another scan is re-analysed when it is shown (its older result
stays on screen meanwhile, marked as computed with other settings).
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, QTimer, Signal, Slot

from scanlab.gui.documents import ParamsKey, ScanDocument
from scanlab.gui.task_runner import TaskRunner
from scanlab.services.analysis import AnalysisRequest, AnalysisResult
from scanlab.services.viewstate import ANALYSIS_FIELDS, ViewState

RECOMPUTE_DELAY_MS = 400


class AnalysisScheduler(QObject):
    """Decides what to analyse and routes results to their documents.

    Signals
    -------
    submitted(object)
        A :class:`ScanDocument` whose analysis was just started.
    loaded(object)
        Its decoded pixels arrived (``doc.preview`` is set).
    settled(object, bool)
        Its analysis ended: ``True`` with a result, ``False`` with ``doc.error``.
    items_changed()
        Some document's status changed (the list's texts).
    """

    submitted = Signal(object)
    loaded = Signal(object)
    settled = Signal(object, bool)
    items_changed = Signal()

    def __init__(self, runner: TaskRunner, state: ViewState, documents: list[ScanDocument],
                 current: Callable[[], ScanDocument | None], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.runner, self.state, self.documents, self.current = runner, state, documents, current
        self.paused = False
        self._pending: dict[int, tuple[ScanDocument, ParamsKey]] = {}
        self.recompute = QTimer(self)
        self.recompute.setSingleShot(True)
        self.recompute.setInterval(RECOMPUTE_DELAY_MS)
        self.recompute.timeout.connect(self._on_recompute_timeout)
        runner.loaded.connect(self._on_runner_loaded)
        runner.succeeded.connect(self._on_runner_succeeded)
        runner.failed.connect(self._on_runner_failed)
        runner.cancelled.connect(self._on_runner_cancelled)
        runner.idle.connect(self._on_runner_idle)
        state.subscribe(self._on_state_changed)

    def key(self) -> ParamsKey:
        """What results depend on, from the view state."""
        return self.state.analysis_key()

    def pending_document(self, request: AnalysisRequest) -> ScanDocument | None:
        """The document a running request is for (None when it is stale)."""
        entry = self._pending.get(request.request_id)
        return entry[0] if entry is not None else None

    def schedule(self) -> None:
        """Submit the next analysis: the scan on screen, else an open scan with no result yet."""
        if self.paused:
            return
        key = self.key()
        cur = self.current()
        target = cur if cur is not None and cur.needs_analysis(key) else None
        if target is None:  # background: never-analysed scans only (new parameters wait until shown)
            target = next((d for d in self.documents if d.result is None and d.needs_analysis(key)), None)
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
        req = AnalysisRequest(path=target.path, model=model, sub=(sub, sub), stride=(stride, stride),
                              device=device, engine=self.state.engine)
        self._pending[req.request_id] = (target, key)
        target.pending_id = req.request_id
        self.runner.submit(req)
        self.submitted.emit(target)
        self.items_changed.emit()

    def reanalyse(self, doc: ScanDocument) -> None:
        """Analyse ``doc`` again (clears a stored failure)."""
        doc.error = doc.error_key = None
        doc.result_key = None
        self.paused = False
        self.schedule()

    def cancel(self) -> bool:
        """Stop the running analysis; nothing more starts until the next action."""
        if not self.runner.is_busy():
            return False
        self.paused = True
        self.runner.cancel()
        return True

    def forget(self, doc: ScanDocument) -> None:
        """A closed document: cancel its analysis if it runs."""
        latest = self.runner.latest
        if doc.pending_id is not None and latest is not None and latest.request_id == doc.pending_id:
            self.runner.cancel()

    def resume(self) -> None:
        """An analyst action (open, switch scans): analyse again after a cancel."""
        self.paused = False
        self.schedule()

    def _take(self, request: AnalysisRequest) -> tuple[ScanDocument, ParamsKey] | None:
        entry = self._pending.pop(request.request_id, None)
        if entry is not None and entry[0].pending_id == request.request_id:
            entry[0].pending_id = None
        return entry if entry is not None and entry[0] in self.documents else None

    def _on_state_changed(self, changed: frozenset[str]) -> None:
        if changed & ANALYSIS_FIELDS:
            self.paused = False
            self.recompute.start()  # debounced: spin boxes fire on every step

    @Slot()
    def _on_recompute_timeout(self) -> None:
        self.schedule()
        self.items_changed.emit()

    @Slot(object, object, object)
    def _on_runner_loaded(self, request: AnalysisRequest, pixels: object, pyramid: list) -> None:
        entry = self._pending.get(request.request_id)
        if entry is None or entry[0].result is not None:
            return  # a result (other parameters) is on screen already
        entry[0].set_preview(pixels, pyramid)
        self.loaded.emit(entry[0])

    @Slot(object, object)
    def _on_runner_succeeded(self, result: AnalysisResult, pyramid: list) -> None:
        entry = self._take(result.request)
        if entry is not None:
            entry[0].set_result(result, entry[1], pyramid)
            self.items_changed.emit()
            self.settled.emit(entry[0], True)

    @Slot(object, str)
    def _on_runner_failed(self, request: AnalysisRequest, message: str) -> None:
        entry = self._take(request)
        if entry is not None:
            entry[0].set_error(message, entry[1])
            self.items_changed.emit()
            self.settled.emit(entry[0], False)

    @Slot(object)
    def _on_runner_cancelled(self, request: AnalysisRequest) -> None:
        self._take(request)
        self.items_changed.emit()

    @Slot()
    def _on_runner_idle(self) -> None:
        self.schedule()
