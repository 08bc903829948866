"""The Ray engine of ``scanlab batch``: the same pages, the same rows, on a Ray cluster.

Ray Data carries the work: a dataset of page tasks (paths, so every node must see
the inputs and ``RESULTS_DIR`` at the same paths: a shared file system), mapped by
``map_batches`` through an actor pool whose actors each load the model once (one
GPU per actor when the cluster has GPUs). Rows come back to the driver as JSON
strings, the exact values the local engine produces, and go through the same part
files and merge, so the table is identical (timing aside).

``ray`` is an optional extra (``pip install "scanlab[cluster]"``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from scanlab.core.errors import ScanLabError
from scanlab.core.jobs import CancelToken, check
from scanlab.services.batch_page import BatchParams, Task, analyse_page

EXTRA_HINT = 'the Ray engine needs the "cluster" extra: pip install "scanlab[cluster]"'


def require_ray() -> Any:
    """Import ray (with Ray Data) or fail with one line naming the extra."""
    try:
        import ray
        import ray.data  # noqa: F401 - Ray Data is a separate extra of ray
    except ImportError:
        raise ScanLabError(f"--ray: {EXTRA_HINT}") from None
    return ray


class BatchAnalyser:
    """A Ray Data actor: holds the model, turns batches of tasks into batches of rows."""

    def __init__(self, model_path: str, params: BatchParams, results_dir: str, threads: int) -> None:
        import torch

        from scanlab.services.models import get_model

        torch.set_num_threads(threads)
        self.model = get_model(model_path)
        self.params = params
        self.results_dir = Path(results_dir)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        rows = [json.dumps(analyse_page(json.loads(str(t)), self.model, self.params, self.results_dir))
                for t in batch["task"]]
        return {"row": np.asarray(rows, dtype=object)}


def _connect(ray: Any, address: str) -> None:
    """Join the cluster at ``address`` ("auto": the running one; "local": start one here)."""
    if ray.is_initialized():
        return  # the caller (a test, a notebook) already chose the cluster
    try:
        if address == "local":
            ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
        else:
            ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise ScanLabError(f"--ray {address}: cannot connect to a Ray cluster ({str(e).splitlines()[0][:160]})") from None


def run_ray(tasks: list[Task], model_path: str, params: BatchParams, results_dir: Path, address: str,
            workers: int | None, *, cancel: CancelToken | None, on_row: Any) -> None:
    """Run ``tasks`` on Ray; ``on_row(row)`` is called in the driver for each finished page.

    ``workers``: actors in the pool. None: one per GPU on a cluster with GPUs, else one
    per 4 CPUs. A GPU actor reserves one GPU and one CPU; a CPU actor reserves (and
    uses as torch threads) its share of the cluster's CPUs, so actors never oversubscribe.
    """
    if not tasks:
        return
    ray = require_ray()
    _connect(ray, address)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # progress is ours, on stderr
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # per-dataset INFO lines would bury it
    res = ray.cluster_resources()
    gpus, cpus = int(res.get("GPU", 0)), max(1, int(res.get("CPU", 1)))
    n = workers or (gpus if gpus else max(1, cpus // 4))
    n = min(n, gpus) if gpus else min(n, cpus)
    threads = max(1, cpus // n)
    ds = ray.data.from_items([{"task": json.dumps(t)} for t in tasks], override_num_blocks=min(len(tasks), 4 * n))
    p = params if not gpus else BatchParams(**{**params.__dict__, "device": "cuda"})
    ds = ds.map_batches(
        BatchAnalyser,
        fn_constructor_kwargs={"model_path": model_path, "params": p, "results_dir": str(results_dir),
                               "threads": threads},
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=n),
        num_gpus=1 if gpus else 0,
        num_cpus=1 if gpus else threads,
    )
    try:
        for batch in ds.iter_batches(batch_size=1, batch_format="numpy", prefetch_batches=0):
            for s in batch["row"]:
                on_row(json.loads(str(s)))
            check(cancel)
    except ScanLabError:
        raise  # Cancelled included
    except Exception as e:  # noqa: BLE001 - Ray raises its own types (actor died, task failed, node lost)
        # every finished page is already in a part file; say so in one line instead of a traceback
        msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise ScanLabError(f"--ray {address}: the Ray job failed ({type(e).__name__}: {msg}); finished pages "
                           "are saved, run again with --resume (or without --ray to find the page that fails)") from None
