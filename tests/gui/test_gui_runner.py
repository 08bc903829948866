"""TaskRunner: progress, success, cancel, stale results, shutdown."""

from __future__ import annotations

import functools

import pytest

from scanlab.services.analysis import AnalysisRequest

pytestmark = pytest.mark.gui


class Recorder:
    """Collects signal arguments (a bound method, as the app itself uses)."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def record(self, *args: object) -> None:
        self.calls.append(args)


@pytest.fixture
def runner(qtbot, qapp):
    from scanlab.gui.task_runner import TaskRunner

    r = TaskRunner()
    yield r
    assert r.shutdown(10_000)


def _request(path: str, model: str, stride: int = 16) -> AnalysisRequest:
    return AnalysisRequest(
        path=path, model=model, sub=(64, 64), stride=(stride, stride), device="cpu"
    )


def test_success_reports_progress_then_result(qtbot, runner, scan, tiny_model):
    progress, results = Recorder(), Recorder()
    runner.progressed.connect(progress.record)
    runner.succeeded.connect(results.record)
    req = _request(scan, tiny_model)
    with qtbot.waitSignals([runner.succeeded, runner.idle], order="strict", timeout=30_000):
        runner.submit(req)
    result, pyramid = results.calls[0]
    assert pyramid[0] is result.pixels
    assert result.request.request_id == req.request_id
    assert result.reliability.shape == (192, 224)
    assert result.label in result.classes
    assert progress.calls, "no progress reported"
    done, total = progress.calls[-1]
    assert done == total > 0
    assert not runner.is_busy()


def _worker_outcomes(runner) -> tuple[Recorder, Recorder]:
    """What the worker itself reported: it emits ``cancelled`` only when the job
    really stopped on its token (the runner also reports finished-but-stale jobs
    as cancelled, which is why the runner's own signal proves nothing here)."""
    stopped, finished = Recorder(), Recorder()
    runner._worker.cancelled.connect(stopped.record)
    runner._worker.succeeded.connect(finished.record)
    return stopped, finished


def test_cancel_stops_and_delivers_no_result(qtbot, runner, slow_scan, tiny_model):
    stopped, finished = _worker_outcomes(runner)
    progress = Recorder()
    runner.progressed.connect(progress.record)
    req = _request(slow_scan, tiny_model, stride=4)
    with qtbot.waitSignal(runner.progressed, timeout=30_000):
        runner.submit(req)
    assert runner.is_busy()
    with qtbot.assertNotEmitted(runner.succeeded, wait=300):
        with qtbot.waitSignals([runner.cancelled, runner.idle], order="strict", timeout=30_000):
            runner.cancel()
    assert not runner.is_busy()
    assert [c[0].request_id for c in stopped.calls] == [req.request_id]  # the job itself stopped
    assert finished.calls == []  # ... before it could finish
    done, total = progress.calls[-1]
    assert done < total  # interrupted part-way, not after the last window


def test_new_request_supersedes_running_one(qtbot, runner, scan, slow_scan, tiny_model):
    stopped, finished = _worker_outcomes(runner)
    results, cancelled = Recorder(), Recorder()
    runner.succeeded.connect(results.record)
    runner.cancelled.connect(cancelled.record)
    old = _request(slow_scan, tiny_model, stride=4)
    new = _request(scan, tiny_model)
    with qtbot.waitSignal(runner.progressed, timeout=30_000):
        runner.submit(old)
    with qtbot.waitSignal(runner.idle, timeout=30_000):
        runner.submit(new)
    assert [c[0].request.request_id for c in results.calls] == [new.request_id]
    assert [c[0].request_id for c in cancelled.calls] == [old.request_id]
    assert [c[0].request_id for c in stopped.calls] == [old.request_id]  # really interrupted
    assert [c[0].request.request_id for c in finished.calls] == [new.request_id]


def test_stale_result_is_dropped(qtbot, runner, scan, tiny_model):
    with qtbot.waitSignal(runner.succeeded, timeout=30_000) as blocker:
        runner.submit(_request(scan, tiny_model))
    result, pyramid = blocker.args
    # The same result arriving again is no longer the latest request's: it must not land.
    with qtbot.assertNotEmitted(runner.succeeded), qtbot.waitSignal(runner.cancelled):
        runner._on_worker_succeeded(result, pyramid)


def test_failure_is_a_message(qtbot, runner, tmp_path, tiny_model):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    failures = Recorder()
    runner.failed.connect(failures.record)
    with qtbot.waitSignals([runner.failed, runner.idle], order="strict", timeout=30_000):
        runner.submit(_request(str(bad), tiny_model))
    request, message = failures.calls[0]
    assert "broken.png" in message
    assert "\n" not in message


def test_shutdown_cancels_and_waits(qtbot, runner, slow_scan, tiny_model):
    stopped, finished = _worker_outcomes(runner)
    req = _request(slow_scan, tiny_model, stride=4)
    with qtbot.waitSignal(runner.progressed, timeout=30_000):
        runner.submit(req)
    assert runner.shutdown(10_000)
    assert not runner._thread.isRunning()
    qtbot.wait(50)  # deliver the worker's queued signals
    assert finished.calls == []
    assert [c[0].request_id for c in stopped.calls] == [req.request_id]


def test_scan_is_delivered_before_its_result(qtbot, runner, scan, tiny_model):
    order = Recorder()
    runner.loaded.connect(order.record)
    runner.succeeded.connect(order.record)
    with qtbot.waitSignals([runner.loaded, runner.succeeded], order="strict", timeout=30_000):
        runner.submit(_request(scan, tiny_model))
    (req, pixels, pyramid), (result, pyramid2) = order.calls
    assert req.request_id == result.request.request_id
    assert pixels is result.pixels and pyramid2 is pyramid  # built once, in the worker


def test_a_thread_that_outlives_shutdown_is_kept_until_it_ends(qtbot):
    """A runner torn down while a job still runs must not destroy its running thread.

    Before, the QThread was freed with its runner (by the garbage collector, in CI)
    while the job ran: "QThread: Destroyed while thread is still running", an abort.
    """
    import gc
    import time as _time

    from scanlab.gui.task_runner import TaskRunner, parked_threads

    n0 = parked_threads()
    r = TaskRunner()
    r.submit_job(functools.partial(_time.sleep, 1.5))  # a job that never looks at cancel
    qtbot.wait(100)
    assert not r.shutdown(50)  # it did not stop in time...
    assert parked_threads() == n0 + 1  # ...so the thread is kept
    del r
    gc.collect()  # the runner is gone; its thread runs on without it
    qtbot.waitUntil(lambda: parked_threads() == n0, timeout=10_000)
    never_shut = TaskRunner()  # a runner collected without shutdown: its idle thread is kept too
    del never_shut
    gc.collect()
    assert parked_threads() == n0 + 1
