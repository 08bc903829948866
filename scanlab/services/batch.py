"""Archive triage: analyse every page under some inputs and write one results table.

:func:`run_batch` is the whole job as a plain function (keyword-only ``cancel`` and
``progress``). It lists the pages (:func:`discover`), drops those a previous run
already finished (``resume``), runs the rest on an engine (in this process, a pool
of worker processes, or a Ray cluster: :mod:`scanlab.services.batch_ray`), appends
finished rows as part files and merges them into ``results.parquet`` at the end
(:mod:`scanlab.services.batch_table`). Inputs are only ever read.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from scanlab.core.errors import ScanLabError
from scanlab.core.io import containers
from scanlab.core.io.imaging import sha256_file
from scanlab.core.jobs import CancelToken, ProgressFn, check, report
from scanlab.services.batch_page import BatchParams, Task, analyse_page, expand_tasks, failed_row
from scanlab.services.batch_table import (
    TABLE_NAME,
    PartWriter,
    ResultsLock,
    file_sha256,
    list_parts,
    merge_table,
    remove_stale_temporaries,
    row_key,
    stored_rows,
)

WORKER_DIED = "the worker process died analysing this page (killed by the system, e.g. out of memory, or a crash)"
RowFn = Callable[[dict[str, Any]], None]


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def discover(inputs: Sequence[str | os.PathLike], results_dir: str | os.PathLike) -> tuple[list[Task], list[str]]:
    """The pages to analyse, sorted, each once; and notes about what was left out.

    Folders are searched recursively with the finder classify and train use
    (:func:`scanlab.core.io.containers.evidence_files`: image suffixes and PDFs,
    hidden files skipped); a file named explicitly is always analysed, whatever its
    suffix (a non-image becomes a ``failed`` row). PDFs and multi-page TIFFs give one
    task per embedded image or page
    (:func:`scanlab.services.batch_page.expand_tasks`). Anything under
    ``results_dir`` is skipped.

    Raises
    ------
    ScanLabError
        An input that does not exist (a bad argument, not a bad page).
    """
    out_dir = Path(results_dir).resolve()
    notes: list[str] = []
    found: dict[tuple[str, int, int], Task] = {}
    for spec in inputs:
        p = Path(spec)
        if not p.exists():
            raise ScanLabError(f"{p}: no such file or folder")
        rp = p.resolve()
        if rp.is_dir():
            if _inside(rp, out_dir):
                raise ScanLabError(f"{p}: input folder is the results folder (or inside it)")
            if _inside(out_dir, rp):
                notes.append(f"results folder {out_dir} lies inside input {p}: skipped, not analysed")
            # the finder classify, train and the app use, so batch accepts the same files
            paths = [q.resolve() for q in containers.evidence_files(rp)]
            paths = [q for q in paths if not _inside(q, out_dir)]
        else:
            if _inside(rp, out_dir):
                notes.append(f"{p}: inside the results folder; skipped")
                continue
            paths = [rp]
        for q in paths:
            for t in expand_tasks(q):
                found[row_key(t)] = t
    tasks = sorted(found.values(), key=row_key)
    return tasks, notes


def _pending(tasks: list[Task], done: dict[tuple[str, int, int], dict[str, Any]], key: str) -> list[Task]:
    """Tasks whose stored row is missing, not ``analysed``, from another model/parameters or another file.

    The file identity is the input file's SHA-256: the container's for a page inside a
    PDF or TIFF (hashed once by :func:`discover`), so a row is kept only for the same
    container, page, image, model and parameters.
    """
    hashes: dict[str, str | None] = {}
    todo = []
    for t in tasks:
        r = done.get(row_key(t))
        if r is None or r.get("status") != "analysed" or r.get("params_key") != key:
            todo.append(t)
            continue
        if t.get("container"):
            now = t.get("container_sha256")
        else:
            if t["input"] not in hashes:
                try:
                    hashes[t["input"]] = sha256_file(t["input"])
                except OSError:
                    hashes[t["input"]] = None
            now = hashes[t["input"]]
        if now is None or now != file_sha256(r) or (r.get("container") or None) != t.get("container"):
            todo.append(t)  # the file changed since (or cannot be read now): analyse again
    return todo


# ---------------------------------------------------------------- local engine: process pool

_worker: dict[str, Any] = {}


def _init_worker(model_path: str, threads: int, params: BatchParams, results_dir: str) -> None:
    """Pool initialiser: load the model once, take this worker's share of the cores."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    import torch

    from scanlab.services.models import get_model

    torch.set_num_threads(threads)
    _worker.update(model=get_model(model_path), params=params, results_dir=Path(results_dir))


def _work(task: Task) -> dict[str, Any]:
    crash = os.environ.get("SCANLAB_TEST_BATCH_CRASH")  # tests only: this page kills its worker
    if crash and crash in Path(task["input"]).name:
        os.kill(os.getpid(), signal.SIGKILL)
    return analyse_page(task, _worker["model"], _worker["params"], _worker["results_dir"])


def _run_local(tasks: list[Task], model: Any, params: BatchParams, results_dir: Path, workers: int, *,
               cancel: CancelToken | None, on_row: RowFn) -> None:
    if workers <= 1:  # in this process: no start-up cost, and the model is already loaded
        for t in tasks:
            check(cancel)
            on_row(analyse_page(t, model, params, results_dir, cancel=cancel))
        return
    _run_pool(tasks, model, params, results_dir, workers, cancel=cancel, on_row=on_row)


def _new_pool(workers: int, model: Any, params: BatchParams, results_dir: Path) -> ProcessPoolExecutor:
    threads = max(1, (os.cpu_count() or 1) // workers)
    return ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"),  # fork would copy torch's locks
                               initializer=_init_worker, initargs=(model.path, threads, params, str(results_dir)))


def _stop(pool: ProcessPoolExecutor) -> None:
    """Stop now: pending pages are dropped and running workers killed (--resume redoes them)."""
    procs = list((getattr(pool, "_processes", None) or {}).values())  # no public terminate before 3.14
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        proc.terminate()


def _run_pool(tasks: list[Task], model: Any, params: BatchParams, results_dir: Path, workers: int, *,
              cancel: CancelToken | None, on_row: RowFn) -> None:
    """A spawn pool of ``workers`` processes; a page that kills its worker becomes a failed row.

    When a worker dies (the system's out-of-memory killer, a crash in a decoder), every
    page in flight is suspect: each is then run again *alone* in a fresh pool, so the
    one that kills a worker again is recorded as failed and the others are analysed.
    """
    queue = list(reversed(tasks))
    suspects: list[Task] = []
    running: dict[Future, Task] = {}
    alone = False
    pool = _new_pool(workers, model, params, results_dir)
    try:
        while queue or suspects or running:
            check(cancel)
            if not running:
                alone = bool(suspects)
                if alone:
                    t = suspects.pop()
                    running[pool.submit(_work, t)] = t
            if not alone:
                while queue and len(running) < 2 * workers:  # a short queue: a kill loses little
                    t = queue.pop()
                    running[pool.submit(_work, t)] = t
            done, _ = wait(running, timeout=0.2, return_when=FIRST_COMPLETED)
            broken = False
            for f in done:
                t = running.pop(f)
                exc = f.exception()
                if exc is None:
                    on_row(f.result())
                elif isinstance(exc, BrokenProcessPool):
                    broken = True
                    if alone:
                        on_row(failed_row(t, model, params, f"{t.get('ref') or t['input']}: {WORKER_DIED}"))
                    else:
                        suspects.append(t)
                else:
                    raise exc
            if broken:
                suspects.extend(running.values())
                running.clear()
                _stop(pool)
                pool = _new_pool(workers, model, params, results_dir)
        pool.shutdown(wait=True)
    except BaseException:
        _stop(pool)
        raise


# ---------------------------------------------------------------- the job


def run_batch(
    inputs: Sequence[str | os.PathLike],
    results_dir: str | os.PathLike,
    *,
    model: str | os.PathLike | None = None,
    params: BatchParams | None = None,
    workers: int | None = None,
    ray_address: str | None = None,
    resume: bool = False,
    cancel: CancelToken | None = None,
    progress: ProgressFn | None = None,
    on_row: RowFn | None = None,
    part_rows: int = 256,
    part_seconds: float = 2.0,
) -> dict[str, Any]:
    """Analyse every page under ``inputs`` into ``results_dir/results.parquet``.

    Parameters
    ----------
    inputs : paths
        Files and folders (searched recursively).
    results_dir : path
        Created if missing. Must not hold an earlier run's results unless ``resume``.
    model : path, optional
        The model file (default: the shipped model).
    params : BatchParams, optional
    workers : int, optional
        Local engine: 1 (the default) runs in this process, more start a pool of
        processes. Ray engine: the number of actors (default: one per GPU, else one per
        4 CPUs of the cluster).
    ray_address : str, optional
        ``"auto"``, ``"local"`` or a cluster address: run on Ray instead.
    resume : bool
        Keep the rows of an interrupted run that match (file hash, model, parameters).
    cancel, progress
        ``progress(done, total)`` counts pages of this run (resumed ones included).
    on_row : callable, optional
        Called with each finished row, in completion order.
    part_rows, part_seconds
        When finished rows are flushed to a part file.

    Returns
    -------
    dict
        The summary (``--json``): counts, failures, timing, paths.

    Raises
    ------
    ScanLabError
        Bad arguments (missing input, a results folder with results and no ``resume``,
        a bad model). Never for a bad page.
    Cancelled
        When ``cancel`` was set; every finished row is already in a part file.
    """
    from scanlab.services.models import get_model

    params = params or BatchParams()
    out = Path(results_dir)
    if out.exists() and not out.is_dir():
        raise ScanLabError(f"{out}: results folder is a file")
    has_results = (out / TABLE_NAME).exists() or bool(list_parts(out))
    if has_results and not resume:
        raise ScanLabError(f"{out}: holds results of an earlier run; pass --resume to continue it "
                           "or choose another folder")
    tasks, notes = discover(inputs, out)
    if ray_address is not None:
        from scanlab.services.batch_ray import require_ray

        require_ray()  # before any model load: a missing extra is a one-line error
    lm = get_model(model)
    key = params.key(str(lm.manifest.get("_file_sha256")))
    out.mkdir(parents=True, exist_ok=True)
    with ResultsLock(out):
        remove_stale_temporaries(out)  # only a dead run's: the lock says none is running
        return _run_locked(tasks, notes, out, lm, params, key, workers, ray_address, resume,
                           cancel=cancel, progress=progress, on_row=on_row, part_rows=part_rows,
                           part_seconds=part_seconds)


def _run_locked(tasks: list[Task], notes: list[str], out: Path, lm: Any, params: BatchParams, key: str,
                workers: int | None, ray_address: str | None, resume: bool, *, cancel: CancelToken | None,
                progress: ProgressFn | None, on_row: RowFn | None, part_rows: int,
                part_seconds: float) -> dict[str, Any]:
    done = stored_rows(out) if resume else {}
    todo = _pending(tasks, done, key)
    n_resumed = len(tasks) - len(todo)
    writer = PartWriter(out, max_rows=part_rows, max_seconds=part_seconds)
    counts = {"analysed": 0, "failed": 0, "skipped": 0}
    t0 = time.perf_counter()
    report(progress, n_resumed, len(tasks))

    def _row(row: dict[str, Any]) -> None:
        writer.add(row)
        counts[row["status"]] = counts.get(row["status"], 0) + 1
        if on_row is not None:
            on_row(row)
        report(progress, n_resumed + sum(counts.values()), len(tasks))

    try:
        if ray_address is not None:
            from scanlab.services.batch_ray import run_ray

            run_ray(todo, lm.path, params, out, ray_address, workers, cancel=cancel, on_row=_row)
        else:
            _run_local(todo, lm, params, out, workers or 1, cancel=cancel, on_row=_row)
    finally:
        writer.flush()  # finished rows are kept whatever stopped the run
    elapsed = time.perf_counter() - t0
    table = merge_table(out, [row_key(t) for t in tasks])
    return _summary(table, out, notes, n_resumed, len(todo), elapsed, lm, params, workers, ray_address)


def _summary(table: Any, out: Path, notes: list[str], n_resumed: int, n_run: int,
             elapsed: float, lm: Any, params: BatchParams, workers: int | None, ray: str | None) -> dict[str, Any]:
    import pyarrow.compute as pc

    by_status = {str(d["values"]): int(d["counts"]) for d in pc.value_counts(table["status"]).to_pylist()}
    bad = table.filter(pc.not_equal(table["status"], "analysed")).select(["input", "page", "status", "error"])
    return {
        "results": str((out / TABLE_NAME).resolve()),
        "n_pages": table.num_rows,
        "analysed": by_status.get("analysed", 0),
        "failed": by_status.get("failed", 0),
        "skipped": by_status.get("skipped", 0),
        "resumed": n_resumed,
        "run": n_run,
        "problems": bad.to_pylist(),
        "notes": notes,
        "engine": "ray" if ray is not None else "local",
        "workers": workers,
        "elapsed_s": elapsed,
        "pages_per_s": n_run / elapsed if elapsed > 0 and n_run else None,
        "model": {"name": lm.name, "sha256": lm.manifest.get("_file_sha256")},
        "parameters": params.to_json(),
    }
