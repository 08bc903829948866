"""The GUI's single compute lane: one worker QThread running analysis requests.

Design (see ``shared/research/style-anchors.md`` §3 and §4.3):

* :class:`TaskRunner` lives in the GUI thread for the whole session. It owns one
  ``QThread`` and one :class:`_AnalysisWorker` moved onto it; requests travel to the
  worker through a queued signal and results come back through queued signals
  connected to *bound slots* of the runner (never lambdas: with PySide6 6.12 a lambda
  on a thread signal was seen to be skipped).
* Everything is wired before the thread starts; custom signals are never called
  ``finished`` or ``started`` (those belong to ``QThread``).
* A new request cancels the previous one (its :class:`CancelToken`); results and
  progress of any request that is not the latest are dropped, so two analyses can
  never write the same view.
* Progress is throttled in the worker to about 10 Hz so a fast engine cannot flood
  the GUI event queue.
* Besides analyses, a runner runs generic :class:`Job` requests (the training
  wizard's collection scan and training run on a runner of their own, so the main
  window's analyses and a training run never cancel each other).
"""

from __future__ import annotations

import atexit
import itertools
import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal, Slot

from scanlab.core.errors import Cancelled, ScanLabError
from scanlab.core.io.imaging import Scan
from scanlab.core.jobs import CancelToken
from scanlab.gui.pyramid import build_pyramid
from scanlab.services.analysis import AnalysisRequest, AnalysisResult, run_analysis

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 0.1
"""Minimum time between two progress signals of one job (about 10 Hz)."""

_job_ids = itertools.count(1_000_000_000)  # apart from AnalysisRequest ids


@dataclass
class Job:
    """Any long function run on a :class:`TaskRunner`.

    ``fn(cancel=token, progress=callback)`` runs in the worker thread and must check
    the token once per batch; its return value arrives as :class:`JobResult`.
    ``path`` names what the job works on (used in error messages).
    """

    fn: Callable[..., Any]
    path: str = ""
    request_id: int = field(default_factory=lambda: next(_job_ids))


@dataclass
class JobResult:
    """What :attr:`TaskRunner.succeeded` carries for a :class:`Job`."""

    request: Job
    value: Any


class _AnalysisWorker(QObject):
    """Runs requests in the worker thread; knows nothing about widgets."""

    progressed = Signal(int, int, int)  # request_id, done, total
    loaded = Signal(object, object, object)  # AnalysisRequest, pixels, display pyramid
    succeeded = Signal(object, object)  # AnalysisResult, display pyramid
    failed = Signal(object, str)  # AnalysisRequest, one-line message
    cancelled = Signal(object)  # AnalysisRequest
    done = Signal(int)  # request_id, after exactly one of the three above

    def __init__(self) -> None:
        super().__init__()
        self._last_emit = 0.0
        self._request_id = 0
        self._request: AnalysisRequest | None = None
        self._pyramid: list | None = None

    @Slot(object, object)
    def run(self, request: AnalysisRequest | Job, token: CancelToken) -> None:
        """Run one request (called through a queued signal, in the worker thread)."""
        self._request_id = request.request_id
        self._request, self._pyramid = request, None
        self._last_emit = 0.0
        try:
            if token.cancelled:  # superseded while it waited in the queue
                raise Cancelled()
            result: Any
            pyramid: list | None = None
            if isinstance(request, Job):
                result = JobResult(request, request.fn(cancel=token, progress=self._progress))
                token.check()
            else:
                result = run_analysis(request, cancel=token, progress=self._progress, on_loaded=self._loaded)
                token.check()
                pyramid = self._pyramid if self._pyramid is not None else build_pyramid(result.pixels)
        except Cancelled:
            self.cancelled.emit(request)
        except ScanLabError as e:
            self.failed.emit(request, str(e))
        except MemoryError:
            self.failed.emit(request, f"{request.path}: not enough memory for this job")
        except Exception as e:  # noqa: BLE001 - a bug must not kill the compute lane
            log.error("analysis of %s crashed:\n%s", request.path, traceback.format_exc())
            self.failed.emit(request, f"{request.path}: internal error: {type(e).__name__}: {e}")
        else:
            self.succeeded.emit(result, pyramid)
        self.done.emit(request.request_id)

    def _loaded(self, scan: Scan) -> None:
        # Built here, not in the view: averaging a 16 MP scan takes ~0.7 s.
        self._pyramid = build_pyramid(scan.pixels)
        self.loaded.emit(self._request, scan.pixels, self._pyramid)

    def _progress(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done >= total or now - self._last_emit >= PROGRESS_INTERVAL_S:
            self._last_emit = now
            self.progressed.emit(self._request_id, int(done), int(total))
        # Hand the GIL to the GUI thread between batches so its event loop keeps up.
        time.sleep(0)


class _JobWorker(QObject):
    """Runs short plain-Python jobs (ROI statistics, case actions) on the runner's thread."""

    job_succeeded = Signal(int, object)  # job id, return value
    job_failed = Signal(int, str)  # job id, one-line message

    @Slot(int, object)
    def run(self, job_id: int, fn: object) -> None:
        """Call ``fn()`` (worker thread) and report its value or a one-line error."""
        try:
            value = fn()  # type: ignore[operator]
        except ScanLabError as e:
            self.job_failed.emit(job_id, str(e))
        except Exception as e:  # noqa: BLE001 - a bug must not kill the compute lane
            log.error("job %d crashed:\n%s", job_id, traceback.format_exc())
            self.job_failed.emit(job_id, f"internal error: {type(e).__name__}: {e}")
        else:
            self.job_succeeded.emit(job_id, value)


class _Reaper(QObject):
    """Keeps a worker thread that outlived its runner until the thread has finished.

    A QThread destroyed while it runs aborts the process ("QThread: Destroyed while
    thread is still running"). Every runner parks its thread and workers here when it
    starts them; they are let go from the thread's own ``finished``, in the GUI thread,
    whether the runner was shut down, timed out shutting down, or was collected.
    """

    def __init__(self) -> None:
        super().__init__()
        self._parked: dict[int, tuple[QThread, QObject, QObject]] = {}

    def park(self, thread: QThread, *workers: QObject) -> None:
        self._parked[id(thread)] = (thread, *workers)
        thread.finished.connect(self._on_finished)
        if thread.isFinished():  # finished between the wait and the connect
            self._parked.pop(id(thread), None)

    @Slot()
    def _on_finished(self) -> None:
        for key, (thread, *_) in list(self._parked.items()):
            if thread.isFinished():
                del self._parked[key]


_reaper: _Reaper | None = None


def _keep_until_finished(thread: QThread, *workers: QObject) -> None:
    """Every runner's thread is held here until it has finished, whatever happens to the
    runner (collected without shutdown, or a shutdown that timed out); at exit the
    threads still running are stopped and waited for, so none is destroyed running."""
    global _reaper
    if _reaper is None:
        _reaper = _Reaper()
        atexit.register(_stop_all_at_exit)
    _reaper.park(thread, *workers)


def _stop_all_at_exit() -> None:
    if _reaper is None:
        return
    for thread, *_ in list(_reaper._parked.values()):
        thread.quit()
        thread.wait(5_000)


def parked_threads() -> int:
    """How many runner threads are still running (tests)."""
    return 0 if _reaper is None else sum(1 for th, *_ in _reaper._parked.values() if not th.isFinished())


class TaskRunner(QObject):
    """Runs one analysis at a time off the GUI thread; the latest request wins.

    Signals
    -------
    progressed(int, int)
        ``(done, total)`` of the latest request, at most about 10 times a second.
    loaded(object, object, object)
        ``(request, pixels, pyramid)`` of the latest request as soon as its scan is
        decoded, before the network runs, so the view can show the scan meanwhile.
    succeeded(object, object)
        The :class:`AnalysisResult` of the latest request and its display pyramid
        (list of arrays, see :func:`scanlab.gui.pyramid.build_pyramid`).
    failed(object, str)
        The request that failed and a one-line message.
    cancelled(object)
        A request stopped by :meth:`cancel` or superseded by a newer one.
    idle()
        No request is running or queued any more.
    job_succeeded(int, object), job_failed(int, str)
        The value (or one-line error) of a job from :meth:`submit_job`. Jobs share
        the worker thread with analyses (one compute lane) but neither cancels the
        other; the caller drops results of job ids it no longer wants.
    """

    progressed = Signal(int, int)
    loaded = Signal(object, object, object)
    succeeded = Signal(object, object)
    failed = Signal(object, str)
    cancelled = Signal(object)
    idle = Signal()
    job_succeeded = Signal(int, object)
    job_failed = Signal(int, str)
    _submit = Signal(object, object)
    _submit_job = Signal(int, object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._latest: AnalysisRequest | None = None
        self._token: CancelToken | None = None
        self._outstanding = 0
        self._thread = QThread()
        self._thread.setObjectName("scanlab-analysis")
        self._worker = _AnalysisWorker()
        self._worker.moveToThread(self._thread)
        # Wire everything first, start last (race 1 in style-anchors §3).
        self._submit.connect(self._worker.run)
        self._worker.progressed.connect(self._on_worker_progressed)
        self._worker.loaded.connect(self._on_worker_loaded)
        self._worker.succeeded.connect(self._on_worker_succeeded)
        self._worker.failed.connect(self._on_worker_failed)
        self._worker.cancelled.connect(self._on_worker_cancelled)
        self._worker.done.connect(self._on_worker_done)
        self._jobs = _JobWorker()
        self._jobs.moveToThread(self._thread)
        self._next_job = 0
        self._submit_job.connect(self._jobs.run)
        self._jobs.job_succeeded.connect(self._on_job_succeeded)
        self._jobs.job_failed.connect(self._on_job_failed)
        self._thread.start()
        _keep_until_finished(self._thread, self._worker, self._jobs)

    # -- public API -----------------------------------------------------------------

    @property
    def latest(self) -> AnalysisRequest | None:
        """The request whose results will be delivered (``None`` after a cancel)."""
        return self._latest

    def is_busy(self) -> bool:
        """True while a request runs or waits in the worker's queue."""
        return self._outstanding > 0

    def submit(self, request: AnalysisRequest) -> None:
        """Start ``request``, cancelling whatever runs now."""
        if self._token is not None:
            self._token.cancel()
        self._token = CancelToken()
        self._latest = request
        self._outstanding += 1
        self._submit.emit(request, self._token)

    def submit_job(self, fn: object) -> int:
        """Run ``fn()`` (no arguments, plain Python, no widgets) off the GUI thread; returns the job id."""
        self._next_job += 1
        self._submit_job.emit(self._next_job, fn)
        return self._next_job

    @Slot(int, object)
    def _on_job_succeeded(self, job_id: int, value: object) -> None:
        self.job_succeeded.emit(job_id, value)

    @Slot(int, str)
    def _on_job_failed(self, job_id: int, message: str) -> None:
        self.job_failed.emit(job_id, message)

    def cancel(self) -> None:
        """Cancel the running request; nothing of it will be delivered but ``cancelled``."""
        if self._token is not None:
            self._token.cancel()
        self._token = None
        self._latest = None

    def shutdown(self, timeout_ms: int = 10_000) -> bool:
        """Cancel, stop the thread and wait for it (window close, app quit).

        Returns
        -------
        bool
            False when the thread did not stop within ``timeout_ms``.
        """
        self.cancel()
        if not self._thread.isRunning():
            return True
        self._thread.quit()
        ok = bool(self._thread.wait(timeout_ms))
        if not ok:
            log.warning("analysis thread did not stop within %d ms; it is kept until it ends", timeout_ms)
        return ok

    # -- worker slots (GUI thread) ----------------------------------------------------

    def _is_latest(self, request_id: int) -> bool:
        return self._latest is not None and self._latest.request_id == request_id

    @Slot(int, int, int)
    def _on_worker_progressed(self, request_id: int, done: int, total: int) -> None:
        if self._is_latest(request_id):
            self.progressed.emit(done, total)

    @Slot(object, object, object)
    def _on_worker_loaded(self, request: AnalysisRequest, pixels: object, pyramid: list) -> None:
        if self._is_latest(request.request_id):
            self.loaded.emit(request, pixels, pyramid)

    @Slot(object, object)
    def _on_worker_succeeded(self, result: AnalysisResult, pyramid: list) -> None:
        if self._is_latest(result.request.request_id):
            self._latest = None
            self._token = None
            self.succeeded.emit(result, pyramid)
        else:
            # Finished before it saw its cancel: it never lands, so report it as cancelled.
            log.debug("dropped stale result of request %d", result.request.request_id)
            self.cancelled.emit(result.request)

    @Slot(object, str)
    def _on_worker_failed(self, request: AnalysisRequest, message: str) -> None:
        if self._is_latest(request.request_id):
            self._latest = None
            self._token = None
            self.failed.emit(request, message)
        else:
            self.cancelled.emit(request)

    @Slot(object)
    def _on_worker_cancelled(self, request: AnalysisRequest) -> None:
        if self._is_latest(request.request_id):
            self._latest = None
            self._token = None
        self.cancelled.emit(request)

    @Slot(int)
    def _on_worker_done(self, request_id: int) -> None:
        self._outstanding = max(0, self._outstanding - 1)
        if self._outstanding == 0:
            self.idle.emit()
