"""Launching a data-parallel (DDP) training: N local processes, or N Ray Train workers.

:func:`distributed_fit` returns a drop-in replacement for
:func:`scanlab.core.training.loop.fit` that :func:`scanlab.services.training.run_training`
calls instead of ``fit`` when ``--distributed N`` is given. The launching process reads
the data and fills the decoded-image cache once; the N processes read their shards from
that cache (:mod:`scanlab.core.training.distributed`). Rank 0 validates each epoch and
writes the checkpoint; at the end it hands the best weights and the history back, and the
launching process runs the single-process stages (open-set training, test,
calibration, saving) once, exactly as after a single-process ``fit``.

- **local**: ``torch.multiprocessing`` spawn, rendezvous over TCP on a free localhost
  port; backend ``nccl`` when every process gets its own CUDA device, else ``gloo`` on
  the CPU. The launcher's torch threads are divided among the processes.
- **Ray**: Ray Train's ``TorchTrainer`` with N workers (it forms the process group:
  gloo on CPUs, nccl when the workers have GPUs). The cache folder and the checkpoint
  path must be visible at the same path on every node (one machine, or a shared file
  system: pass ``--cache DIR``). Per-batch progress is not streamed back from Ray
  workers; the history arrives with the result.

Local processes are started with ``spawn``: a script that calls
:func:`scanlab.services.training.run_training` with ``distributed > 1`` must guard its
entry point with ``if __name__ == "__main__":`` (each process imports the main module).
A cancel (Ctrl-C) terminates the processes; the last checkpoint stays for ``--resume``.
"""

from __future__ import annotations

import copy
import queue as queue_mod
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from scanlab.core.errors import ScanLabError
from scanlab.core.jobs import Cancelled, CancelToken, report
from scanlab.core.training import distributed as ddp
from scanlab.core.training.dataset import CachedImages
from scanlab.core.training.loop import CheckpointError, TrainingDiverged, fit

FitFn = Callable[..., dict[str, Any]]
_ERRORS = {"TrainingDiverged": TrainingDiverged, "CheckpointError": CheckpointError}
EXTRA_HINT = 'distributed training on Ray needs the "cluster" extra: pip install "scanlab[cluster]"'


def free_port() -> int:
    """A TCP port free on localhost now (the OS picks it; rendezvous binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def plan_backend(device: torch.device, n: int) -> str:
    """``nccl`` when each of ``n`` processes gets its own CUDA device, ``gloo`` on the CPU.

    Raises
    ------
    ScanLabError
        CUDA asked for with fewer devices than processes, or a device DDP cannot use (MPS).
    """
    if device.type == "cuda":
        have = torch.cuda.device_count()
        if have < n:
            raise ScanLabError(f"--distributed {n} on CUDA needs one GPU per process ({have} found); "
                               f"use --distributed {have} or --device cpu")
        return "nccl"
    if device.type != "cpu":
        raise ScanLabError(f"--distributed runs on cpu or cuda, not {device.type} (use --device cpu)")
    return "gloo"


def check_request(n: int, batch_size: int) -> None:
    """One-line errors for a world size the run cannot use."""
    if n < 1:
        raise ScanLabError("--distributed must be at least 1")
    if batch_size < 2 * n:
        raise ScanLabError(f"--batch-size {batch_size} is too small for --distributed {n} "
                           f"(each process needs at least 2 patches per step)")


def _job(net: torch.nn.Module, train: CachedImages, val: CachedImages, cfg: Any, **kw: Any) -> dict[str, Any]:
    """Everything a training process needs, as picklable plain data."""
    split = lambda c: ([str(f) for f in c.files], list(c.labels), list(c.shapes))  # noqa: E731
    return {"net": net.cpu(), "train": split(train), "val": split(val), "cfg": cfg, **kw}


def _train_rank(job: dict[str, Any], ctx: ddp.DistContext, device: torch.device,
                send: Callable[[tuple], None] | None) -> dict[str, Any]:
    """One process's share of the run; rank 0 returns the best weights and the history."""
    # Private copies: spawn hands tensors over in shared memory, so without copying, every
    # process would step the same parameter (and momentum) storage: N updates per step.
    net = copy.deepcopy(job["net"])
    resume_from = copy.deepcopy(job["resume_from"])
    kw: dict[str, Any] = {}
    if ctx.is_main and send is not None:
        last = [0.0]

        def progress(done: int, total: int) -> None:
            now = time.monotonic()
            if now - last[0] > 0.2 or done >= total:  # a queue message per batch would cost more than it shows
                last[0] = now
                send(("progress", done, total))

        kw = {"progress": progress, "on_epoch": lambda rec: send(("epoch", rec))}
    hist = fit(net, CachedImages(*job["train"]), CachedImages(*job["val"]), job["cfg"], device=device,
               engine=job["engine"], checkpoint=job["checkpoint"] if ctx.is_main else None,
               resume_from=resume_from, fingerprint=job["fingerprint"], dist=ctx, **kw)
    return {"state": {k: v.cpu() for k, v in net.state_dict().items()}, "hist": hist} if ctx.is_main else {}


def _local_worker(rank: int, n: int, job: dict[str, Any], q: Any) -> None:
    """Entry point of one spawned process (module level: spawn pickles it by name)."""
    torch.set_num_threads(job["threads"])
    import torch.distributed as dist

    dist.init_process_group(job["backend"], init_method=job["init"], rank=rank, world_size=n)
    try:
        device = torch.device("cuda", rank) if job["backend"] == "nccl" else torch.device("cpu")
        if device.type == "cuda":
            torch.cuda.set_device(device)
        out = _train_rank(job, ddp.DistContext.current(), device, q.put)
        if rank == 0:
            torch.save(out, job["result"])
    except ScanLabError as e:
        q.put(("error", type(e).__name__, str(e)))
        raise
    finally:
        dist.destroy_process_group()


def _raise_worker_error(messages: list[tuple], fallback: str) -> None:
    for m in messages:
        if m[0] == "error":
            raise _ERRORS.get(m[1], ScanLabError)(m[2])
    raise ScanLabError(f"distributed training failed: {fallback}")


def _local_fit(n: int, net: torch.nn.Module, train: CachedImages, val: CachedImages, cfg: Any, *,
               device: torch.device, cancel: CancelToken | None, progress: Any, on_epoch: Any,
               **kw: Any) -> dict[str, Any]:
    import torch.multiprocessing as mp

    backend = plan_backend(device, n)
    threads = ddp.threads_per_process(torch.get_num_threads(), n)
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    messages: list[tuple] = []

    def drain() -> None:
        while True:
            try:
                m = q.get_nowait()
            except queue_mod.Empty:
                return
            if m[0] == "progress":
                report(progress, m[1], m[2])
            elif m[0] == "epoch" and on_epoch is not None:
                on_epoch(m[1])
            else:
                messages.append(m)

    with tempfile.TemporaryDirectory(prefix="scanlab-ddp-") as tmp:
        result = Path(tmp) / "rank0.pt"
        job = _job(net, train, val, cfg, backend=backend, threads=threads, init=f"tcp://127.0.0.1:{free_port()}",
                   result=str(result), engine=kw["engine"], checkpoint=kw["checkpoint"] and str(kw["checkpoint"]),
                   resume_from=kw["resume_from"], fingerprint=kw["fingerprint"])
        pc = mp.start_processes(_local_worker, args=(n, job, q), nprocs=n, join=False, start_method="spawn")
        try:
            while not pc.join(timeout=0.2):
                drain()
                if cancel is not None and cancel.cancelled:
                    raise Cancelled()
        except (mp.ProcessRaisedException, mp.ProcessExitedException) as e:
            time.sleep(0.2)  # let the failing rank's last message arrive
            drain()
            _raise_worker_error(messages, str(e).strip().splitlines()[-1][:200])
        finally:
            for p in pc.processes:  # cancelled or failed: no process outlives the run
                if p.is_alive():
                    p.terminate()
            for p in pc.processes:
                p.join(5)
        drain()
        out = torch.load(result, map_location="cpu", weights_only=True)
    net.load_state_dict(out["state"])
    hist = out["hist"]
    hist["distributed"] = {"world_size": n, "backend": backend, "launcher": "local",
                           "threads_per_process": threads, "params_sha256": hist.pop("params_sha256")}
    return hist


def _ray_loop(config: dict[str, Any]) -> None:
    """Ray Train's per-worker function: the process group exists already."""
    import ray.train
    import ray.train.torch

    job = config["job"]
    ctx = ddp.DistContext.current()
    device = ray.train.torch.get_device() if ctx.backend == "nccl" else torch.device("cpu")
    torch.set_num_threads(job["threads"])
    out = _train_rank(job, ctx, device, None)
    with tempfile.TemporaryDirectory() as tmp:
        ck = None
        if ctx.is_main:
            torch.save(out, Path(tmp) / "rank0.pt")
            ck = ray.train.Checkpoint.from_directory(tmp)
        ray.train.report({"rank0": ctx.is_main}, checkpoint=ck)


def require_ray() -> Any:
    """Import Ray Train or fail with one line naming the extra."""
    try:
        import ray
        import ray.train.torch  # noqa: F401 - Ray Train's torch integration
    except ImportError:
        raise ScanLabError(f"--ray: {EXTRA_HINT}") from None
    return ray


def _ray_fit(n: int, address: str, net: torch.nn.Module, train: CachedImages, val: CachedImages, cfg: Any, *,
             device: torch.device, cancel: CancelToken | None, progress: Any, on_epoch: Any,
             **kw: Any) -> dict[str, Any]:
    ray = require_ray()
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from scanlab.services.batch_ray import _connect  # the same cluster rules as `batch --ray`

    _connect(ray, address)
    use_gpu = device.type == "cuda"
    cpus = int(ray.cluster_resources().get("CPU", n))
    threads = ddp.threads_per_process(cpus, n)
    job = _job(net, train, val, cfg, threads=threads, engine=kw["engine"],
               checkpoint=kw["checkpoint"] and str(kw["checkpoint"]), resume_from=kw["resume_from"],
               fingerprint=kw["fingerprint"])
    with tempfile.TemporaryDirectory(prefix="scanlab-ray-train-") as storage:
        trainer = TorchTrainer(
            _ray_loop, train_loop_config={"job": job},
            scaling_config=ScalingConfig(num_workers=n, use_gpu=use_gpu),
            run_config=RunConfig(storage_path=storage, name="scanlab-train"),
        )
        try:
            res = trainer.fit()
        except Exception as e:  # noqa: BLE001 - Ray wraps the worker's error; one line for the user
            text = str(e)
            for name, cls in _ERRORS.items():
                if name in text:
                    line = next((ln for ln in text.splitlines() if name in ln), text)
                    raise cls(line.split(f"{name}: ", 1)[-1].strip()) from None
            raise ScanLabError(f"distributed training on Ray failed: {text.strip().splitlines()[-1][:200]}") from None
        if res.checkpoint is None:
            raise ScanLabError("distributed training on Ray failed: rank 0 returned no result")
        with res.checkpoint.as_directory() as d:
            out = torch.load(Path(d) / "rank0.pt", map_location="cpu", weights_only=True)
    net.load_state_dict(out["state"])
    hist = out["hist"]
    for rec in hist["history"]:
        if on_epoch is not None:
            on_epoch(rec)
    report(progress, 1, 1)
    hist["distributed"] = {"world_size": n, "backend": "nccl" if use_gpu else "gloo", "launcher": "ray",
                           "threads_per_process": threads, "params_sha256": hist.pop("params_sha256")}
    return hist


def distributed_fit(n: int, ray_address: str | None = None) -> FitFn:
    """A ``fit`` that trains with ``n`` DDP processes (locally, or on Ray when ``ray_address`` is set).

    The returned function has :func:`scanlab.core.training.loop.fit`'s signature and
    contract (``net`` ends holding the best validation weights; the history dict), plus
    ``distributed`` in that dict: world size, backend, launcher, threads per process
    and every rank's parameter SHA-256 after the last epoch (equal when DDP synced).
    """

    def run(net: torch.nn.Module, train: CachedImages, val: CachedImages, cfg: Any, *,
            device: torch.device | None = None, cancel: CancelToken | None = None, progress: Any = None,
            on_epoch: Any = None, on_batch: Any = None, **kw: Any) -> dict[str, Any]:
        check_request(n, cfg.batch_size)
        device = device or torch.device("cpu")
        kw.setdefault("engine", None)
        kw.setdefault("checkpoint", None)
        kw.setdefault("resume_from", None)
        kw.setdefault("fingerprint", "")
        if ray_address is not None:
            return _ray_fit(n, ray_address, net, train, val, cfg, device=device, cancel=cancel,
                            progress=progress, on_epoch=on_epoch, **kw)
        return _local_fit(n, net, train, val, cfg, device=device, cancel=cancel, progress=progress,
                          on_epoch=on_epoch, **kw)

    return run

