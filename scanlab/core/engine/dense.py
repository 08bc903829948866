"""The dense engine: exact window probabilities from tiled, fully convolutional passes.

See DESIGN.md section 2. :class:`~scanlab.core.engine.network.ScannerNet` is fully
convolutional with valid layers and a total downsampling of 4, so one trunk pass
over an image gives the logits of every 64x64 window whose corner is a multiple
of 4. Windows at other corners ``y = 4q + r`` (residue ``r`` in 0..3 per axis) come
from the same pass over the image shifted by ``r``.

How the work is organised:

* **Residues share work.** The stem (before the first 2x2 pool) does not depend
  on the shift, the first inception module only on ``r mod 2``, so per tile the
  stem runs once, the first inception module once per needed ``r mod 2`` pair
  and only the second once per needed residue pair (:class:`FusedTrunk`). A
  stride-1 map costs about 4.4x a stride-4 map (in FLOPs) instead of 16x.
* **Tiles.** The requested corners are grouped per axis into *chunks* of at most
  ``T`` consecutive multiples of 4 (``q = y // 4``); a tile is a row chunk times a
  column chunk and covers the input pixels ``[4 * q_first, 4 * q_last + 64 + r_max)``.
  Consecutive tiles therefore overlap by 60 px (plus the residue shift): every
  requested window lies entirely inside one tile and is computed there exactly as
  in a whole-image pass, so results do not depend on the tile size (up to float
  rounding inside the convolution kernels, ~1e-7). Peak memory depends on the
  tile size only.
* **Only what is asked for.** Chunks skip gaps of more than 64 px between
  requested corners, so a sparse grid only computes the tiles that contain its
  windows. Within a tile, the head (1x1 fc, footprint average pool, softmax) is
  evaluated where needed and only the requested rows/columns are kept.
* **Input.** Either the network's float32 (3, H, W) array in [0, 1] or the
  decoded scan itself, an (H, W, 3) uint8/uint16 array; the latter is converted
  to float per tile, so a 100 MP scan never exists as a 1.2 GB float copy.

Cancellation is checked, and progress reported, once per tile.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TypeVar

import numpy as np
import torch

from scanlab.core.engine.fused import FusedTrunk
from scanlab.core.engine.network import PATCH, STRIDE, ScannerNet
from scanlab.core.io.imaging import full_scale
from scanlab.core.jobs import CancelToken, ProgressFn, check, report

# (weight (C,), bias): one more row of the last linear layer, whose output is P(other) (softmax over
# the Ns + 1 logits); or (weight (k, C), bias (k,)) with k > 1: k more rows, output raw (the
# ``gauss-image`` open set's whitening projection, core/evidence/gauss.py).
OtherHead = tuple[np.ndarray, float] | tuple[np.ndarray, np.ndarray]


def _pooled_rows(f: torch.Tensor, ny: np.ndarray, nx: np.ndarray, fp: int,
                 rows: tuple[torch.Tensor, torch.Tensor]) -> np.ndarray:
    """``rows`` applied to the features (C, h, w) pooled over the footprint of the cells ``ny x nx``.

    The same numbers as the head's 1x1 product followed by the footprint pool (both
    linear) up to float rounding, computed for the requested windows only: row bands
    first, then column bands of those.
    """
    band = torch.stack([f[:, int(r) : int(r) + fp, :].mean(dim=1) for r in ny], dim=1)  # (C, nr, w)
    box = torch.stack([band[:, :, int(c) : int(c) + fp].mean(dim=2) for c in nx], dim=2)  # (C, nr, nc)
    w, b = rows
    return (torch.einsum("kc,cij->ijk", w, box.float()) + b).cpu().numpy()


def head_rows(other: OtherHead) -> tuple[np.ndarray, np.ndarray]:
    """(weight (k, C), bias (k,)) float32 of an extra head (one row or several)."""
    w = np.atleast_2d(np.asarray(other[0], np.float32))
    return w, np.atleast_1d(np.asarray(other[1], np.float32)).reshape(len(w))

HALO = PATCH - STRIDE  # overlap of consecutive tiles: a window reaches 60 px past its corner's cell
GAP = PATCH // STRIDE  # corners further apart than this (in cells of 4 px) go to separate tiles
CPU_TILE = (
    508  # px; single-threaded conv efficiency is flat up to ~508 and drops beyond (BENCHMARKS.md)
)
MPS_TILE = 1024  # px; conservative, MPS memory is shared with the system
GPU_BYTES_PER_PX = 1024  # generous estimate of CUDA activation bytes per tile pixel

T = TypeVar("T")


class ImageSource:
    """Uniform tile access to a float (3, H, W) image or an integer (H, W, 3) scan.

    Parameters
    ----------
    image : ndarray
        float (3, H, W) in [0, 1], or uint8/uint16 (H, W, 3) as decoded by
        :func:`scanlab.core.io.imaging.load_scan` (scaled by 1/255 or 1/65535 per tile,
        like :func:`scanlab.core.io.imaging.to_float`).
    """

    def __init__(self, image: np.ndarray) -> None:
        if image.ndim != 3:
            raise ValueError(f"image must have 3 axes, got shape {image.shape}")
        if np.issubdtype(image.dtype, np.floating) and image.shape[0] == 3:
            self.channels_first = True
            self.shape = (int(image.shape[1]), int(image.shape[2]))
            self.scale = 1.0
        elif image.dtype in (np.uint8, np.uint16) and image.shape[2] == 3:
            self.channels_first = False
            self.shape = (int(image.shape[0]), int(image.shape[1]))
            self.scale = full_scale(image.dtype)
        else:
            raise ValueError(
                f"image must be float (3, H, W) or uint8/uint16 (H, W, 3), got {image.dtype} {image.shape}"
            )
        self.image = image

    def tile(self, y0: int, y1: int, x0: int, x1: int, device: torch.device) -> torch.Tensor:
        """Pixels ``[y0:y1, x0:x1]`` as a (1, 3, h, w) channels-last float32 tensor on ``device``."""
        if self.channels_first:
            t = torch.from_numpy(
                np.ascontiguousarray(self.image[:, y0:y1, x0:x1], dtype=np.float32)
            )
            return t[None].to(device).contiguous(memory_format=torch.channels_last)
        t = torch.from_numpy(np.ascontiguousarray(self.image[y0:y1, x0:x1]))
        # uint8 -> float on the device (4x less to transfer); uint16 tensors have few
        # kernels off the CPU, so they are converted first. (h, w, 3) viewed as
        # (1, 3, h, w) is already channels-last.
        if t.dtype != torch.uint8:
            t = t.to(torch.float32)
        t = t.to(device).to(torch.float32).div_(self.scale)
        return t.permute(2, 0, 1)[None]


def _chunks(corners: np.ndarray, per_tile: int) -> list[tuple[int, np.ndarray]]:
    """Group sorted corners into tile chunks along one axis.

    Returns ``(q0, index)`` pairs: the chunk's first cell ``q0`` (= corner // 4) and
    the indices into ``corners`` it holds. A chunk spans at most ``per_tile``
    cells and never bridges a gap of more than ``GAP`` cells (it would compute
    pixels no requested window needs).
    """
    q = corners // STRIDE
    out: list[tuple[int, np.ndarray]] = []
    start = 0
    for i in range(1, len(q) + 1):
        if i == len(q) or q[i] - q[start] >= per_tile or q[i] - q[i - 1] > GAP:
            out.append((int(q[start]), np.arange(start, i)))
            start = i
    return out


def _check_corners(c: np.ndarray, length: int, axis: str) -> np.ndarray:
    c = np.asarray(c)
    if c.ndim != 1 or (c.size and not np.issubdtype(c.dtype, np.integer)):
        raise ValueError(f"{axis} corners must be a 1-D integer array")
    c = c.astype(np.int64)
    if c.size and (c[0] < 0 or c[-1] + PATCH > length or np.any(np.diff(c) <= 0)):
        raise ValueError(
            f"{axis} corners must be increasing and keep 64-px windows inside 0..{length}"
        )
    return c


@contextlib.contextmanager
def _exact_fp32(device: torch.device) -> Iterator[None]:
    """Disable TF32 convolutions on CUDA for the pass (they would cost ~1e-3 of accuracy)."""
    if device.type != "cuda":
        yield
        return
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):
        old = conv.fp32_precision
        conv.fp32_precision = "ieee"
        try:
            yield
        finally:
            conv.fp32_precision = old
    else:  # pragma: no cover - older torch
        old_flag = torch.backends.cudnn.allow_tf32
        torch.backends.cudnn.allow_tf32 = False
        try:
            yield
        finally:
            torch.backends.cudnn.allow_tf32 = old_flag


def default_tile(device: torch.device) -> int:
    """Tile side in pixels for ``device``.

    CPU: the largest tile before single-threaded convolution efficiency drops
    (measured: flat from 188 to 508 px, -25 % at 636); larger tiles waste less
    on the 60-px overlap (22 % of a 508-px tile's pixels are overlap).
    CUDA: as large as a fraction of the *free* memory allows, so big scans run
    in few launches. MPS: conservative (unified memory, shared with the system).
    """
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        side = int((0.5 * free / GPU_BYTES_PER_PX) ** 0.5)
        return int(min(8192, max(512, side)))
    if device.type == "mps":
        return MPS_TILE
    return CPU_TILE


def default_workers(device: torch.device) -> int:
    """Concurrent tiles: on CPU one single-threaded tile per intra-op thread, else 1.

    Why: this model's layers are small, so with one multi-threaded tile every
    layer ends in an OpenMP barrier; on a busy machine (another job on a core)
    each barrier waits for a descheduled thread and a pass can get 10-30x
    slower. Independent single-threaded tiles have no barriers, each keeps its
    own cache, and degrade gracefully when cores are shared (see BENCHMARKS.md).
    """
    if device.type != "cpu" or "OpenMP" not in torch.__config__.parallel_info():
        # Only with OpenMP is set_num_threads per thread (see _single_thread).
        return 1
    return max(1, torch.get_num_threads())


def _single_thread() -> None:
    # Per-thread with the OpenMP backend for this thread's own kernels; but torch
    # also records the value as the default that threads created later start
    # with, which _run_parallel restores once its workers are gone.
    torch.set_num_threads(1)


def _run_parallel(
    run: Callable[[T], None],
    jobs: list[T],
    workers: int,
    cancel: CancelToken | None,
    progress: ProgressFn | None,
) -> None:
    """Run ``jobs`` on ``workers`` threads, at most ``workers`` in flight.

    Progress is reported from the calling thread; on cancellation no new tile
    starts, the ones in flight stop at their next check, and :class:`Cancelled`
    is raised once they have (nothing keeps writing after we return).
    """
    pending: set[Future[None]] = set()
    queue = iter(jobs)
    done = 0
    default_threads = torch.get_num_threads()
    try:
        _run_pool(run, jobs, workers, cancel, progress, pending, queue, done)
    finally:
        # a worker's set_num_threads(1) became the default for new threads
        # (e.g. the app's next worker thread): put the caller's value back
        torch.set_num_threads(default_threads)


def _run_pool(run, jobs, workers, cancel, progress, pending, queue, done) -> None:  # noqa: ANN001
    with ThreadPoolExecutor(
        workers, initializer=_single_thread, thread_name_prefix="dense"
    ) as pool:
        try:
            for job in itertools.islice(queue, workers):
                pending.add(pool.submit(run, job))
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in finished:
                    f.result()  # re-raises a worker's error (Cancelled included)
                    done += 1
                    report(progress, done, len(jobs))
                    check(cancel)
                for job in itertools.islice(queue, len(finished)):
                    pending.add(pool.submit(run, job))
        finally:
            for f in pending:
                f.cancel()
            wait(pending)


class DenseEngine:
    """Exact window probabilities from tiled fully convolutional passes.

    Parameters
    ----------
    tile : int, optional
        Tile side in pixels (>= 64); ``None`` picks :func:`default_tile` for the
        device. Consecutive tiles step by ``4 * ((tile - 64) // 4 + 1)`` px.
    workers : int, optional
        Tiles computed at the same time; ``None`` picks :func:`default_workers`.
    """

    name = "dense"

    def __init__(self, tile: int | None = None, workers: int | None = None) -> None:
        if tile is not None and tile < PATCH:
            raise ValueError(f"tile {tile} is smaller than the {PATCH}-px window")
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.tile = tile
        self.workers = workers

    def cells_per_tile(self, device: torch.device) -> int:
        """Window corners per tile side (in steps of 4 px)."""
        tile = self.tile or default_tile(device)
        return (tile - PATCH) // STRIDE + 1

    def window_probs(
        self,
        net: ScannerNet,
        image: np.ndarray,
        ys: np.ndarray,
        xs: np.ndarray,
        *,
        device: torch.device,
        cancel: CancelToken | None = None,
        progress: ProgressFn | None = None,
    ) -> np.ndarray:
        """Probabilities of shape (len(ys), len(xs), Ns), float32; see :class:`~scanlab.core.engine.engines.Engine`.

        ``image`` may also be an (H, W, 3) uint8/uint16 scan (see :class:`ImageSource`).
        """
        return self.window_outputs(net, image, ys, xs, device=device, cancel=cancel, progress=progress)[0]

    def window_outputs(
        self,
        net: ScannerNet,
        image: np.ndarray,
        ys: np.ndarray,
        xs: np.ndarray,
        *,
        device: torch.device,
        other: OtherHead | None = None,
        cancel: CancelToken | None = None,
        progress: ProgressFn | None = None,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Window probabilities and, with ``other``, P(other) per window, from one pass.

        ``other`` = (weight (C,), bias): one more row of the last linear layer (the
        open set's "other scanner" output). The class probabilities are the
        softmax over the Ns class logits, exactly as without it; P(other) is the
        last entry of the softmax over all Ns + 1 logits. Returns
        ``(probs (len(ys), len(xs), Ns), p_other (len(ys), len(xs)) or None)``.
        """
        src = ImageSource(image)
        h, w = src.shape
        ys = _check_corners(ys, h, "row")
        xs = _check_corners(xs, w, "column")
        device = torch.device(device)
        out = np.empty((len(ys), len(xs), net.n_classes), dtype=np.float32)
        p_other, extra = None, None
        if other is not None:
            ow, ob = head_rows(other)
            p_other = np.empty((len(ys), len(xs)) + ((len(ow),) if len(ow) > 1 else ()), dtype=np.float32)
            extra = (torch.from_numpy(ow), torch.from_numpy(ob))
        raw_rows = None
        if p_other is not None and p_other.ndim == 3:
            # k raw rows are pooled at the requested windows only (_pooled_rows), not over the
            # whole footprint field: k = 96 rows in the head cost +29% of a 4 MP vote pass
            raw_rows, extra = (extra[0].to(device), extra[1].to(device)), None
        if out.size == 0:
            return out, p_other
        per_tile = self.cells_per_tile(device)
        rows, cols = _chunks(ys, per_tile), _chunks(xs, per_tile)
        jobs = [(qy, iy, qx, ix) for qy, iy in rows for qx, ix in cols]
        trunk = FusedTrunk(net, device, extra=extra)

        def run(job: tuple[int, np.ndarray, int, np.ndarray]) -> None:
            qy, iy, qx, ix = job
            # inference_mode is thread-local: enter it in whichever thread runs the tile.
            with torch.inference_mode():
                self._tile(trunk, src, ys[iy], xs[ix], qy, qx, (out, p_other, raw_rows), iy, ix, cancel)

        workers = self.workers if self.workers is not None else default_workers(device)
        with _exact_fp32(device):
            if workers <= 1 or len(jobs) == 1:
                for done, job in enumerate(jobs, 1):
                    check(cancel)
                    run(job)
                    report(progress, done, len(jobs))
            else:
                _run_parallel(run, jobs, min(workers, len(jobs)), cancel, progress)
        return out, p_other

    @staticmethod
    def _tile(
        trunk: FusedTrunk,
        src: ImageSource,
        ty: np.ndarray,
        tx: np.ndarray,
        qy: int,
        qx: int,
        outs: tuple[np.ndarray, np.ndarray | None, tuple[torch.Tensor, torch.Tensor] | None],
        iy: np.ndarray,
        ix: np.ndarray,
        cancel: CancelToken | None,
    ) -> None:
        """Compute one tile's requested windows into ``out[iy][:, ix]`` (and P(other) likewise)."""
        out, p_other, rows = outs
        ns = trunk.n_classes
        h, w = src.shape
        ry, rx = ty % STRIDE, tx % STRIDE  # residues
        ny, nx = ty // STRIDE - qy, tx // STRIDE - qx  # cell index inside the tile's grid
        y0, x0 = qy * STRIDE, qx * STRIDE
        # Clamped to the image: a residue not requested at the last cell may not fit,
        # but every requested window does (its corner + 64 <= H).
        y1 = min(h, int(ty[-1] - ry[-1] + PATCH + ry.max()))
        x1 = min(w, int(tx[-1] - rx[-1] + PATCH + rx.max()))
        stem = trunk.stem(src.tile(y0, y1, x0, x1, trunk.device))
        for p1y in np.unique(ry % 2):
            for p1x in np.unique(rx % 2):
                check(cancel)
                a = trunk.stage1(stem, int(p1y), int(p1x))
                for p2y in np.unique(ry[ry % 2 == p1y] // 2):
                    for p2x in np.unique(rx[rx % 2 == p1x] // 2):
                        f2 = trunk.stage2(a, int(p2y), int(p2x))
                        logits = trunk.head(f2)[0]
                        sel_y = ry == p1y + 2 * p2y
                        sel_x = rx == p1x + 2 * p2x
                        li = torch.from_numpy(ny[sel_y]).to(logits.device)
                        lj = torch.from_numpy(nx[sel_x]).to(logits.device)
                        z = logits.index_select(1, li).index_select(2, lj)
                        p = torch.softmax(z[:ns].float(), dim=0).permute(1, 2, 0).cpu().numpy()
                        out[np.ix_(iy[sel_y], ix[sel_x])] = p
                        if rows is not None:  # k raw rows, at the requested windows only
                            p_other[np.ix_(iy[sel_y], ix[sel_x])] = _pooled_rows(
                                f2[0], ny[sel_y], nx[sel_x], trunk.footprint, rows)
                        elif p_other is not None:  # softmax over the Ns + 1 logits, in double like OtherScorer
                            # (on the CPU: MPS has no float64; z holds only the requested windows)
                            po = torch.softmax(z.cpu().double(), dim=0)[ns].float().numpy()
                            p_other[np.ix_(iy[sel_y], ix[sel_x])] = po
