"""Model-free layers (copy-move...) computed on the window's task runner, and their pairs stored in the case.

A layer chosen in "Map of" runs as a :class:`~scanlab.gui.task_runner.Job` on the same
compute lane as the reliability analysis: the status bar shows its progress, the
Cancel button (Esc) stops it, and a new analysis request supersedes it (the runner's
rule: the latest request wins). It works on the pixels already decoded for the scan
on screen. The finished :class:`~scanlab.services.layer_runs.LayerRun` is kept on the
document (``doc.layers``); when a case is open and the scan is evidence in it, the
run's pairs become suggested ROIs there (once per run, on the GUI thread, which owns
the case).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal, Slot

from scanlab.core.errors import ScanLabError
from scanlab.core.io.imaging import Scan
from scanlab.gui.documents import ScanDocument
from scanlab.gui.task_runner import Job, JobResult, TaskRunner
from scanlab.services.cases import evidence_id
from scanlab.services.layer_cases import suggest_layer_pairs
from scanlab.services.layer_runs import run_layer
from scanlab.services.layers import get_layer


class LayerMaps(QObject):
    """Runs a document's model-free layer on the runner; results land on the document.

    Signals
    -------
    ready(object, str)
        ``(document, layer name)``: ``doc.layers[name]`` is there now.
    note(str)
        A line for the messages panel (the experimental caveat, the pairs found, the case).
    problem(str)
        The layer failed (one line).
    """

    ready = Signal(object, str)
    note = Signal(str)
    problem = Signal(str)

    def __init__(self, runner: TaskRunner, busy: Callable[[], None], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.runner, self.busy = runner, busy
        self.cases: Any = None  # the window's CaseController (set once it exists): .case, .user, .refresh()
        self._pending: dict[int, tuple[ScanDocument, str]] = {}
        self._stored: set[tuple[int, str, str, int]] = set()
        runner.succeeded.connect(self._on_runner_succeeded)
        runner.failed.connect(self._on_runner_failed)
        runner.cancelled.connect(self._on_runner_cancelled)
        # "Add current scan to case" ends as a job: a run made before the scan was evidence is stored then
        self._waiting: list[tuple[ScanDocument, str]] = []
        runner.job_succeeded.connect(self._on_runner_job_succeeded)

    def running(self, doc: ScanDocument, name: str) -> bool:
        """Whether ``name`` runs for ``doc`` now (as the runner's latest request)."""
        latest = self.runner.latest
        return latest is not None and self._pending.get(latest.request_id) == (doc, name)

    def request(self, doc: ScanDocument, name: str) -> None:
        """Compute layer ``name`` for ``doc`` (which has a result: its decoded pixels are reused)."""
        if doc.result is None or self.running(doc, name):
            return
        scan = Scan(doc.result.pixels, doc.result.scan)
        job = Job(functools.partial(run_layer, name, scan), path=doc.path)
        self._pending[job.request_id] = (doc, name)
        self.runner.submit(job)
        self.busy()
        layer = get_layer(name)
        if layer.experimental:  # said on every use, as the CLI says it
            self.note.emit(f"{doc.name}: the {layer.title.lower()} layer is experimental: {layer.experimental}")

    def store(self, doc: ScanDocument, name: str) -> None:
        """The run's pairs become suggested ROIs when the scan is evidence in the open case (once per run)."""
        run, cases = doc.layers.get(name), self.cases
        case = getattr(cases, "case", None)
        if run is None:
            return
        e = case.evidence.get(evidence_id(run.sha256)) if case is not None else None
        if e is None or case.read_only:
            if (doc, name) not in self._waiting:
                self._waiting.append((doc, name))  # tried again when a case job (an add) has ended
            return
        key = (id(case), e.eid, name, id(run))
        if key in self._stored:
            return
        self._stored.add(key)
        try:
            rois = suggest_layer_pairs(case, run, user=cases.user)
        except ScanLabError as err:
            self.problem.emit(str(err))
            return
        self.note.emit(f"{doc.name}: {len(run.pairs)} {get_layer(name).title.lower()} pair(s) stored in the case "
                       f"as suggested regions ({', '.join(str(r.id) for r in rois) or 'none'})")
        cases.refresh()

    @Slot(int, object)
    def _on_runner_job_succeeded(self, _job: int, _value: object) -> None:
        if self._waiting:  # after the case controller's own slot has stored the run
            QTimer.singleShot(0, self._store_waiting)

    @Slot()
    def _store_waiting(self) -> None:
        waiting, self._waiting = self._waiting, []
        for doc, name in waiting:
            self.store(doc, name)

    @Slot(object, object)
    def _on_runner_succeeded(self, result: object, _pyramid: object) -> None:
        if not isinstance(result, JobResult):
            return
        entry = self._pending.pop(result.request.request_id, None)
        if entry is None:
            return
        doc, name = entry
        run = result.value
        doc.layers[name] = run
        self.note.emit(f"{doc.name}: {get_layer(name).title.lower()} layer: {len(run.pairs)} pair(s) "
                       f"({run.summary.get('compute_s', 0):.1f} s)")
        self.ready.emit(doc, name)

    @Slot(object, str)
    def _on_runner_failed(self, request: object, message: str) -> None:
        if self._pending.pop(getattr(request, "request_id", -1), None) is not None:
            self.problem.emit(message)

    @Slot(object)
    def _on_runner_cancelled(self, request: object) -> None:
        entry = self._pending.pop(getattr(request, "request_id", -1), None)
        if entry is not None:
            self.note.emit(f"{entry[0].name}: {get_layer(entry[1]).title.lower()} layer cancelled")
