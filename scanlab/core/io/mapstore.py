"""The window-probability grid in HDF5: one layout for ``map -o X.h5`` and case files.

A full-resolution map of every class would be gigabytes; the grid of P(sub-image)
on the map's (sub, stride) grid is small and every map (reliability of any class,
per-region attribution, unknown score) is derived from it in O(pixels). The layout
is documented in ``docs/formats.md`` section 5::

    <group>/ys, <group>/xs          int32 sub-image corners
    <group>/probs                   (len(ys), len(xs), Ns) float32
    <group>/evidence                (len(ys), len(xs)) uint8, 1 = the window has sensor signal
    <group>/unknown_score           (len(ys), len(xs)) float32 (optional)
    <group>/unknown_windows/{ys,xs,score}   the per-window unknown scores on their own
                                    64-px grid (optional; NaN = no evidence)
    attrs: sub, stride (int pairs), classes (JSON list), calibrated (bool)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from scanlab.core.errors import ScanLabError

_COMPRESS: dict[str, Any] = {"compression": "gzip", "compression_opts": 4, "shuffle": True}


@dataclass
class StoredWindows:
    """A window grid as read back from HDF5 (plain arrays, no h5py objects)."""

    ys: np.ndarray
    xs: np.ndarray
    sub: tuple[int, int]
    stride: tuple[int, int]
    probs: np.ndarray
    classes: list[str]
    evidence: np.ndarray | None = None
    unknown_score: np.ndarray | None = None
    calibrated: bool = False
    #: (scores, ys, xs) of the open-set scorer on its own 64-px window grid (the
    #: ``unknown_windows`` group of ``map -o X.h5``); None when the model has no scorer.
    unknown_grid: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None


def write_windows(group: Any, w: StoredWindows) -> None:
    """Write ``w`` into an open h5py group (compressed, chunked)."""
    n_y, n_x = len(w.ys), len(w.xs)
    if w.probs.shape[:2] != (n_y, n_x) or w.probs.shape[2] != len(w.classes):
        raise ValueError(f"probs shape {w.probs.shape} does not fit grid {n_y}x{n_x} and {len(w.classes)} classes")
    group.create_dataset("ys", data=np.asarray(w.ys, dtype=np.int32))
    group.create_dataset("xs", data=np.asarray(w.xs, dtype=np.int32))
    group.create_dataset("probs", data=np.asarray(w.probs, dtype=np.float32), **_COMPRESS)
    if w.evidence is not None:
        group.create_dataset("evidence", data=np.asarray(w.evidence, dtype=np.uint8), **_COMPRESS)
    if w.unknown_score is not None:
        group.create_dataset("unknown_score", data=np.asarray(w.unknown_score, dtype=np.float32), **_COMPRESS)
    if w.unknown_grid is not None:
        scores, uys, uxs = w.unknown_grid
        ug = group.create_group("unknown_windows")
        ug.create_dataset("ys", data=np.asarray(uys, dtype=np.int32))
        ug.create_dataset("xs", data=np.asarray(uxs, dtype=np.int32))
        ug.create_dataset("score", data=np.asarray(scores, dtype=np.float32), **_COMPRESS)
        ug.attrs["sub"] = np.asarray([64, 64], np.int32)
    group.attrs["sub"] = np.asarray(w.sub, dtype=np.int32)
    group.attrs["stride"] = np.asarray(w.stride, dtype=np.int32)
    group.attrs["classes"] = json.dumps(list(w.classes))
    group.attrs["calibrated"] = bool(w.calibrated)


def read_windows(group: Any) -> StoredWindows:
    """Read a window grid back; a damaged or foreign group raises :class:`ScanLabError`."""
    try:
        ys = np.asarray(group["ys"][()], dtype=np.int64)
        xs = np.asarray(group["xs"][()], dtype=np.int64)
        probs = np.asarray(group["probs"][()], dtype=np.float32)
        classes = json.loads(group.attrs["classes"])
        sub = tuple(int(v) for v in group.attrs["sub"])
        stride = tuple(int(v) for v in group.attrs["stride"])
        evidence = np.asarray(group["evidence"][()], dtype=bool) if "evidence" in group else None
        unknown = np.asarray(group["unknown_score"][()], dtype=np.float32) if "unknown_score" in group else None
        calibrated = bool(group.attrs.get("calibrated", False))
        ugrid = None
        if "unknown_windows" in group:
            ug = group["unknown_windows"]
            ugrid = (np.asarray(ug["score"][()], dtype=np.float32), np.asarray(ug["ys"][()], dtype=np.int64),
                     np.asarray(ug["xs"][()], dtype=np.int64))
    except (KeyError, ValueError, TypeError, OSError) as e:
        raise ScanLabError(f"stored window grid is damaged or incomplete ({e})") from None
    if probs.ndim != 3 or probs.shape[:2] != (len(ys), len(xs)) or probs.shape[2] != len(classes):
        raise ScanLabError(f"stored window grid has inconsistent shapes {probs.shape}")
    if len(sub) != 2 or len(stride) != 2:
        raise ScanLabError("stored window grid has a bad sub/stride attribute")
    if ugrid is not None and ugrid[0].shape != (len(ugrid[1]), len(ugrid[2])):
        raise ScanLabError(f"stored unknown-score grid has inconsistent shapes {ugrid[0].shape}")
    return StoredWindows(ys, xs, (sub[0], sub[1]), (stride[0], stride[1]), probs, list(classes),
                         evidence, unknown, calibrated, ugrid)
