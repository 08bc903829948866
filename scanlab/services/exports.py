"""Writing reliability maps: .npy (float32, NaN uncovered), .h5 (with provenance) or colour .png."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from scanlab.core.fileio import atomic_write, check_writable

MAP_SUFFIXES = (".npy", ".h5", ".png")


def check_map_output(path: str | os.PathLike) -> Path:
    """Validate a map output path before any work starts."""
    return check_writable(path, MAP_SUFFIXES)


def write_map(path: str | os.PathLike, reliability: np.ndarray, meta: dict[str, Any]) -> Path:
    """Write an (H, W) reliability map atomically; the format follows the suffix.

    ``.npy``: the float32 array as is. ``.h5``: dataset ``/reliability`` (float32,
    gzip) with every ``meta`` entry as an attribute (dicts and lists as JSON).
    ``.png``: RGBA colour rendering (:func:`scanlab.core.colormap.colorize`), NaN
    transparent.
    """
    out = check_map_output(path)
    rel = reliability.astype(np.float32, copy=False)
    suffix = out.suffix.lower()
    if suffix == ".npy":
        atomic_write(out, lambda t: np.save(t, rel))
    elif suffix == ".h5":
        import h5py

        def _h5(t: str) -> None:
            with h5py.File(t, "w") as f:
                d = f.create_dataset("reliability", data=rel, compression="gzip", chunks=True)
                for k, v in meta.items():
                    if v is not None:
                        d.attrs[k] = json.dumps(v) if isinstance(v, (dict, list)) else v

        atomic_write(out, _h5)
    else:
        from PIL import Image

        from scanlab.core.colormap import colorize

        atomic_write(out, lambda t: Image.fromarray(colorize(rel), "RGBA").save(t, format="PNG"))
    return out
