"""Writing maps: .npy (the array), .h5 (docs/formats.md section 5) or colour .png.

Three kinds of map (``what``): ``reliability`` (eq. 1 of one class), ``class``
(per-pixel attribution: the best-fitting class) and ``unknown`` (per-window
unknown-scanner score). "No evidence" pixels are NaN (-1 for class maps) in
arrays, a separate ``/no_evidence`` mask in HDF5, and neutral grey hatching in
PNGs, never a colour of the reliability scale.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from scanlab.core.colormap import DEFAULT_COLORMAP
from scanlab.core.io.fileio import atomic_write, atomic_write_bytes, check_writable
from scanlab.core.io.mapstore import StoredWindows, write_windows

MAP_SUFFIXES = (".npy", ".h5", ".png")
WHATS = ("reliability", "class", "unknown")
_DATASET = {"reliability": "reliability", "class": "class_index", "unknown": "unknown_score"}


def check_map_output(path: str | os.PathLike) -> Path:
    """Validate a map output path before any work starts."""
    return check_writable(path, MAP_SUFFIXES)


def _attr(v: Any) -> Any:
    return json.dumps(v) if isinstance(v, (dict, list, tuple)) else v


def _legend(entries: list[tuple[str, tuple[int, int, int] | None]], height: int,
            stripe: tuple[int, int, int]) -> Any:
    """A legend column (PIL image): colour swatch + name per entry; None = the no-evidence hatch."""
    from PIL import Image, ImageDraw

    from scanlab.core.colormap import hatch_no_evidence

    row = 18
    width = 12 + 22 + 7 * max(len(n) for n, _ in entries) + 8
    img = Image.new("RGBA", (width, max(height, row * len(entries) + 12)), (255, 255, 255, 255))
    d = ImageDraw.Draw(img)
    swatch = hatch_no_evidence(np.zeros((13, 15, 4), np.uint8), np.ones((13, 15), bool), period=5,
                               stripe_colour=stripe)
    for i, (name, col) in enumerate(entries):
        y = 6 + i * row
        if col is None:
            img.paste(Image.fromarray(swatch, "RGBA"), (8, y))
        else:
            d.rectangle([8, y, 22, y + 12], fill=tuple(int(c) for c in col))
        d.text((28, y), name, fill=(0, 0, 0))
    return img


def render_png(values: np.ndarray, what: str, no_evidence: np.ndarray | None, class_names: list[str] | None,
               colormap: str = DEFAULT_COLORMAP) -> bytes:
    """PNG bytes of a map: ``colormap`` (reliability, unknown; the app's maps) or class colours with a legend."""
    from PIL import Image

    from scanlab.core.colormap import (
        class_colors,
        colorize,
        colorize_classes,
        hatch_no_evidence,
        stripe_for,
    )

    if what == "class":
        names = class_names or []
        rgba = colorize_classes(values.astype(np.int64), len(names))
    else:
        rgba = colorize(values.astype(np.float32), name=colormap)
    stripe = stripe_for(None if what == "class" else colormap)  # as on screen and in the report
    if no_evidence is not None:
        hatch_no_evidence(rgba, no_evidence, stripe_colour=stripe)
    img = Image.fromarray(rgba, "RGBA")
    if what == "class":
        cols = class_colors(len(names))
        present = sorted(set(np.unique(values[values >= 0]).tolist()))
        entries = [(names[k], tuple(cols[k])) for k in present] + [("no evidence", None)]
        leg = _legend(entries, img.height, stripe)
        canvas = Image.new("RGBA", (img.width + leg.width, max(img.height, leg.height)), (0, 0, 0, 0))
        canvas.paste(img, (0, 0))
        canvas.paste(leg, (img.width, 0))
        img = canvas
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def write_map(
    path: str | os.PathLike,
    values: np.ndarray,
    meta: dict[str, Any],
    *,
    what: str = "reliability",
    no_evidence: np.ndarray | None = None,
    windows: StoredWindows | None = None,
    unknown_windows: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    class_names: list[str] | None = None,
    colormap: str = DEFAULT_COLORMAP,
) -> Path:
    """Write an (H, W) map atomically; the format follows the suffix.

    ``.npy``: the array as is (float32 with NaN, or int16 with -1 for ``class``).
    ``.h5``: docs/formats.md section 5 (the map, ``/no_evidence``, ``/windows``,
    provenance attributes at the root). ``.png``: colour rendering, no-evidence
    hatched grey, uncovered transparent, a legend for class maps.
    """
    if what not in WHATS:
        raise ValueError(f"unknown map kind {what!r}")
    out = check_map_output(path)
    arr = values.astype(np.int16 if what == "class" else np.float32, copy=False)
    suffix = out.suffix.lower()
    if suffix == ".npy":
        atomic_write(out, lambda t: np.save(t, arr))
    elif suffix == ".h5":
        import h5py

        def _h5(t: str) -> None:
            with h5py.File(t, "w") as f:
                f.attrs["format"] = "scanlab-map"
                f.attrs["format_version"] = 1
                for k, v in meta.items():
                    if v is not None:
                        f.attrs[k] = _attr(v)
                d = f.create_dataset(_DATASET[what], data=arr, compression="gzip", chunks=True)
                for k, v in meta.items():  # also on the dataset, where older readers looked
                    if v is not None:
                        d.attrs[k] = _attr(v)
                if what == "class":
                    d.attrs["class_names"] = json.dumps(class_names or [])
                if no_evidence is not None:
                    f.create_dataset("no_evidence", data=no_evidence.astype(np.uint8), compression="gzip", chunks=True)
                if windows is not None:
                    write_windows(f.create_group("windows"), windows)
                if unknown_windows is not None:
                    g = f.create_group("unknown_windows")
                    scores, ys, xs = unknown_windows
                    g.create_dataset("ys", data=np.asarray(ys, np.int32))
                    g.create_dataset("xs", data=np.asarray(xs, np.int32))
                    g.create_dataset("score", data=np.asarray(scores, np.float32))
                    g.attrs["sub"] = np.asarray([64, 64], np.int32)

        atomic_write(out, _h5)
    else:
        atomic_write_bytes(out, render_png(arr, what, no_evidence, class_names, colormap))
    return out
