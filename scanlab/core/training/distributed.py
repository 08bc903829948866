"""Data-parallel training (PyTorch DDP): the process-group facts and the patch sharding.

This module holds only what every training process needs once a process group exists
(it never starts processes; :mod:`scanlab.services.training_ddp` launches them, locally
or through Ray Train). :func:`scanlab.core.training.loop.fit` takes a
:class:`DistContext` and then

- wraps the network in :class:`torch.nn.parallel.DistributedDataParallel`, so every
  step averages the gradients of all processes and the parameters stay identical;
- reads only this process's share of each *global* batch (:class:`ShardedBatchSampler`):
  the global batches are exactly those a single process draws with the same seed, so N
  processes do the same optimiser steps on the same patches (batch norm statistics are
  per process, as in any DDP run without SyncBatchNorm);
- validates, keeps the best weights and writes checkpoints on rank 0 only, and
  broadcasts rank 0's early-stop decision so every process runs the same epochs.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Sampler


@dataclass(frozen=True)
class DistContext:
    """This process's place in an initialised process group."""

    rank: int
    world_size: int
    backend: str

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that validates and writes files."""
        return self.rank == 0

    @classmethod
    def current(cls) -> DistContext:
        """The context of the default process group (which must be initialised)."""
        return cls(dist.get_rank(), dist.get_world_size(), str(dist.get_backend()))


class ShardedBatchSampler(Sampler[list[int]]):
    """This rank's share of every global batch of one epoch.

    The epoch order is ``torch.randperm(n, generator)``, the order a single process's
    ``DataLoader(shuffle=True, generator=...)`` uses; global batch ``b`` is
    ``order[b*B:(b+1)*B]`` and rank ``r`` takes its elements ``r, r+N, r+2N, ...``.
    Shards differ between ranks and together make the global batch (deterministic; no
    patch is read twice). A last global batch too small to give every rank two samples
    (batch norm needs two) is dropped on every rank alike, so all ranks run the same
    number of steps (a rank that stopped early would leave the others waiting forever).

    Parameters
    ----------
    n : int
        Patches in the epoch.
    batch_size : int
        Global batch size ``B`` (the recipe's), at least ``2 * world_size``.
    world_size, rank : int
    generator : torch.Generator
        Seeded identically on every rank.
    """

    def __init__(self, n: int, batch_size: int, world_size: int, rank: int, generator: torch.Generator) -> None:
        if batch_size < 2 * world_size:
            raise ValueError(f"batch size {batch_size} is too small for {world_size} processes "
                             f"(each needs at least 2 patches per step)")
        self.n, self.batch_size, self.world_size, self.rank = n, batch_size, world_size, rank
        self.generator = generator

    def __len__(self) -> int:
        return sharded_batches(self.n, self.batch_size, self.world_size)

    def __iter__(self) -> Iterator[list[int]]:
        order = torch.randperm(self.n, generator=self.generator).tolist()
        for b in range(len(self)):
            glob = order[b * self.batch_size:(b + 1) * self.batch_size]
            yield glob[self.rank::self.world_size]


def wrap(net: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The network in DistributedDataParallel (one device per process on CUDA)."""
    from torch.nn.parallel import DistributedDataParallel

    if device.type == "cuda":
        return DistributedDataParallel(net, device_ids=[device.index], output_device=device.index)
    return DistributedDataParallel(net)


def reduce_epoch(loss: float, acc: float, seen: int, ctx: DistContext) -> tuple[float, float, int]:
    """Mean training loss and accuracy over all processes' shards (each reports its own)."""
    t = torch.tensor([loss * seen, acc * seen, float(seen)], dtype=torch.float64)
    if ctx.backend == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    tot = float(t[2])
    return float(t[0]) / max(tot, 1.0), float(t[1]) / max(tot, 1.0), int(round(tot))


def broadcast_object(obj: Any, ctx: DistContext) -> Any:
    """Rank 0's ``obj`` on every rank (a small picklable value: a flag, a dict)."""
    box = [obj if ctx.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def params_sha256(net: torch.nn.Module) -> str:
    """SHA-256 of the parameters (not the buffers) in state-dict order.

    DDP keeps parameters bit-identical across processes; batch-norm running statistics
    are buffers, updated by each process from its own shard, so they are left out.
    """
    h = hashlib.sha256()
    for name, p in net.named_parameters():
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def gather_objects(obj: Any, ctx: DistContext) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank."""
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def threads_per_process(total_threads: int, world_size: int) -> int:
    """Torch threads for each of ``world_size`` processes sharing ``total_threads``
    (at least one: the machine is used, never oversubscribed beyond one thread each)."""
    return max(1, math.floor(total_threads / max(1, world_size)))


def sharded_batches(n: int, batch_size: int, world_size: int) -> int:
    """Steps per epoch of :class:`ShardedBatchSampler` (the same on every rank)."""
    full, rest = divmod(n, batch_size)
    return full + (1 if rest >= 2 * world_size else 0)


def sharded_loader(dataset: Any, cfg: Any, ctx: DistContext, generator: torch.Generator,
                   device: torch.device) -> DataLoader:
    """A loader of this rank's shard of every global batch (``cfg.batch_size`` patches per step in all)."""
    sampler = ShardedBatchSampler(len(dataset), cfg.batch_size, ctx.world_size, ctx.rank, generator)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=cfg.workers, pin_memory=device.type == "cuda")
