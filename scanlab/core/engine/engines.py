"""Window probabilities: the naive (reference) engine and the engine registry.

An *engine* answers one question: the class probabilities of the 64x64 windows
whose corners lie on a separable grid ``ys x xs`` of an image. Everything else
(sub-image probabilities, the vote, the reliability map) is built from that in
:mod:`scanlab.core.engine.reliability`, identically for every engine.

The naive engine crops every window and runs the network on it: slow, obviously
right, kept as the reference the dense engine is tested against.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from scanlab.core.engine.dense import DenseEngine, OtherHead, head_rows
from scanlab.core.engine.network import PATCH, ScannerNet
from scanlab.core.errors import ScanLabError
from scanlab.core.io.imaging import as_float_chw
from scanlab.core.jobs import CancelToken, ProgressFn, check, report


def available_devices() -> list[str]:
    """Devices this machine can run on, best first (always ends with "cpu")."""
    out = []
    if torch.cuda.is_available():
        out.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out.append("mps")
    out.append("cpu")
    return out


def select_device(preference: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then MPS, then CPU; a forced device must exist."""
    pref = (preference or "auto").lower()
    avail = available_devices()
    if pref == "auto":
        return torch.device(avail[0])
    if pref not in ("cpu", "cuda", "mps"):
        raise ScanLabError(f"unknown device {preference!r} (use auto, cpu, cuda or mps)")
    if pref not in avail:
        raise ScanLabError(f"device {pref} is not available here (available: {', '.join(avail)})")
    return torch.device(pref)


class Engine(Protocol):
    """Computes window probabilities on a separable grid."""

    name: str

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
        """Probabilities of shape (len(ys), len(xs), Ns), float32.

        ``image`` is (3, H, W) float32 in [0, 1]; ``ys``/``xs`` are sorted unique
        window corners with ``ys[-1] + 64 <= H`` and ``xs[-1] + 64 <= W``.
        """
        ...


class NaiveEngine:
    """Reference engine: crop each 64x64 window and run the network on it."""

    name = "naive"

    def __init__(self, batch_size: int = 256) -> None:
        self.batch_size = batch_size

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
        """See :class:`Engine`."""
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
        """Probabilities and, with ``other``, P(other) per window (see :meth:`DenseEngine.window_outputs`)."""
        ny, nx = len(ys), len(xs)
        out = np.empty((ny * nx, net.n_classes), dtype=np.float32)
        p_other = None
        if other is not None:
            ow_np, ob_np = head_rows(other)
            p_other = np.empty((ny * nx,) + ((len(ow_np),) if len(ow_np) > 1 else ()), dtype=np.float32)
        total = ny * nx
        img = torch.from_numpy(np.ascontiguousarray(as_float_chw(image)))
        net = net.to(device).eval()
        yy, xx = np.meshgrid(ys, xs, indexing="ij")
        yy, xx = yy.ravel(), xx.ravel()
        if other is not None:
            ow, ob = torch.from_numpy(ow_np).to(device), torch.from_numpy(ob_np).to(device)
        with torch.inference_mode():
            for start in range(0, total, self.batch_size):
                check(cancel)
                stop = min(total, start + self.batch_size)
                batch = torch.stack(
                    [img[:, y : y + PATCH, x : x + PATCH] for y, x in zip(yy[start:stop], xx[start:stop], strict=True)]
                ).to(device)
                f = net.trunk(batch).mean(dim=(2, 3))  # what forward() does, keeping the features
                z = net.fc(f).float()
                out[start:stop] = torch.softmax(z, dim=1).cpu().numpy()
                if p_other is not None and p_other.ndim == 2:  # k raw rows
                    p_other[start:stop] = (f.float() @ ow.T + ob).cpu().numpy()
                elif p_other is not None:
                    zo = (f.float() @ ow.T + ob)
                    zz = torch.cat([z, zo], 1).cpu().double()  # on the CPU: MPS has no float64
                    p_other[start:stop] = torch.softmax(zz, dim=1)[:, -1].float().numpy()
                report(progress, stop, total)
        return out.reshape(ny, nx, net.n_classes), None if p_other is None else p_other.reshape(ny, nx, *p_other.shape[1:])


def window_outputs(
    engine: Engine, net: ScannerNet, image: np.ndarray, ys: np.ndarray, xs: np.ndarray, *, device: torch.device,
    other: OtherHead | None = None, cancel: CancelToken | None = None, progress: ProgressFn | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """``engine.window_outputs`` where the engine has it; else its probabilities (``other`` needs it)."""
    fn = getattr(engine, "window_outputs", None)
    if fn is not None:
        return fn(net, image, ys, xs, device=device, other=other, cancel=cancel, progress=progress)
    if other is not None:
        raise ValueError(f"engine {getattr(engine, 'name', engine)!r} cannot compute the other-scanner output")
    return engine.window_probs(net, image, ys, xs, device=device, cancel=cancel, progress=progress), None


ENGINES: dict[str, type] = {"naive": NaiveEngine, "dense": DenseEngine}
DEFAULT_ENGINE = "dense"


def get_engine(name: str | None = None) -> Engine:
    """Instantiate an engine by name (``None`` gives the default)."""
    key = name or DEFAULT_ENGINE
    if key not in ENGINES:
        raise ScanLabError(f"unknown engine {key!r} (available: {', '.join(sorted(ENGINES))})")
    return ENGINES[key]()
