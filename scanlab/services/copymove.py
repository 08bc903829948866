"""The copy-move layer as a service: analyse one scan, write its map (.npy, .h5, .png).

No model and no torch: the layer works on the decoded pixels alone
(:func:`scanlab.core.copymove.detect_copymove`). Formats (docs/formats.md,
"Copy-move maps"): ``.npy`` the H x W float32 score map (NaN = no evidence);
``.h5`` the map, ``/no_evidence`` and one group per pair under ``/pairs``;
``.png`` the scan (greyed) with both ends of each pair outlined in the pair's colour
and a line between their centres.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from scanlab.core.copymove import CopyMoveResult, detect_copymove
from scanlab.core.io.fileio import atomic_write, atomic_write_bytes
from scanlab.core.io.imaging import Scan
from scanlab.core.jobs import CancelToken, ProgressFn
from scanlab.services.exports import check_map_output

PAIR_COLOURS = ((230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240), (240, 50, 230))


def analyse_copymove(scan: Scan, *, cancel: CancelToken | None = None, progress: ProgressFn | None = None) -> CopyMoveResult:
    """Run the copy-move layer on a decoded scan (see :func:`scanlab.core.copymove.detect_copymove`).

    A JPEG file with standard (IJG) tables passes its estimated quality (the scan's JPEG
    facts), which switches on the JPEG-consistency test at low quality.
    """
    return detect_copymove(scan.pixels, jpeg_quality=jpeg_quality_of(scan), cancel=cancel, progress=progress)


def jpeg_quality_of(scan: Scan) -> int | None:
    """The IJG quality of a JPEG scan with standard tables (:mod:`scanlab.core.io.jpegfacts`), else None."""
    facts = scan.info.jpeg or {}
    q = facts.get("quality")
    return int(q) if q is not None and facts.get("tables") == "standard" else None


def detector_description() -> dict[str, Any]:
    """What determines the layer's output, as a case records it beside each run.

    ``function``; ``scanlab_version``; ``source_sha256``: SHA-256 over the source files of
    the detector's modules (``files``, in that order; "unavailable" where the sources are
    not on disk); ``parameters``: every numeric upper-case constant of those modules, the
    default ``alpha`` and the no-signal rule.
    """
    import hashlib
    import inspect
    import math
    from importlib import import_module

    import scanlab
    from scanlab.core.copymove import api
    from scanlab.core.engine.nosignal import DEFAULT_RULE

    names = ("scanlab.core.copymove.api", "scanlab.core.copymove.dup", "scanlab.core.copymove.fields",
             "scanlab.core.engine.nosignal")
    h = hashlib.sha256()
    params: dict[str, Any] = {}
    available = True
    for name in names:
        mod = import_module(name)
        try:
            h.update(name.encode() + b"\0" + Path(inspect.getfile(mod)).read_bytes() + b"\0")
        except (OSError, TypeError):
            available = False
        short = name.rsplit(".", 1)[1]
        for k, v in sorted(vars(mod).items()):
            if k.isupper() and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                params[f"{short}.{k}"] = v
    # the detector itself (this module's name for it may be wrapped)
    alpha = inspect.signature(api.detect_copymove).parameters.get("alpha")
    params["alpha"] = None if alpha is None else alpha.default
    params["rule"] = DEFAULT_RULE.to_dict()
    return {"function": "scanlab.core.copymove.detect_copymove", "scanlab_version": scanlab.__version__,
            "files": list(names), "source_sha256": h.hexdigest() if available else "unavailable",
            "parameters": params}


def copymove_json(result: CopyMoveResult) -> dict[str, Any]:
    """Everything about a result except the map: summary, every pair, the test's parameters."""
    return {
        **result.summary(),
        "pairs": [p.to_json() for p in result.pairs],
        "n_tests": result.n_tests,
        "inflation": round(result.inflation, 3),
        "z_bar": round(result.z_bar, 2),
        "noise_level": round(result.noise_level, 3),
        "no_evidence_fraction": float(result.no_evidence.mean()),
    }


def render_pairs_png(pixels: np.ndarray, result: CopyMoveResult) -> bytes:
    """The scan, greyed, with each pair's ends outlined in one colour and linked."""
    from PIL import Image, ImageDraw

    g = pixels.astype(np.float32)
    if g.ndim == 3:
        g = g.mean(axis=2)
    g = g * (255.0 / max(1.0, float(g.max())))
    base = (96 + 0.6 * g).clip(0, 255).astype(np.uint8)
    img = Image.fromarray(np.repeat(base[:, :, None], 3, axis=2), "RGB")
    d = ImageDraw.Draw(img)
    width = max(2, min(img.size) // 300)
    for i, p in enumerate(result.pairs):
        col = PAIR_COLOURS[i % len(PAIR_COLOURS)]
        centres = []
        for (y, x, h, w), m in ((p.source_box, p.source_mask), (p.target_box, p.target_mask)):
            edge = m & ~_erode(m)
            ey, ex = np.nonzero(edge)
            for k in range(width):  # a few px thick: visible on a 16 MP page shrunk to a screen
                d.point(list(zip((ex + x + k).tolist(), (ey + y).tolist(), strict=True)), fill=col)
            d.rectangle([x - width, y - width, x + w + width, y + h + width], outline=col, width=1)
            centres.append((x + w / 2, y + h / 2))
        d.line(centres, fill=col, width=max(1, width // 2))
        d.text((centres[1][0] + 4, centres[1][1] + 4), f"{i + 1}", fill=col)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _erode(m: np.ndarray) -> np.ndarray:
    p = np.pad(m, 1)
    return p[1:-1, 1:-1] & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]


def write_copymove(path: str | os.PathLike, result: CopyMoveResult, pixels: np.ndarray, meta: dict[str, Any]) -> Path:
    """Write the copy-move map atomically; the format follows the suffix (module docstring)."""
    out = check_map_output(path)
    suffix = out.suffix.lower()
    if suffix == ".npy":
        atomic_write(out, lambda t: np.save(t, result.score.astype(np.float32)))
    elif suffix == ".h5":
        import h5py

        def _h5(t: str) -> None:
            with h5py.File(t, "w") as f:
                f.attrs["format"] = "scanlab-map"
                f.attrs["format_version"] = 1
                for k, v in meta.items():
                    if v is not None:
                        f.attrs[k] = json.dumps(v) if isinstance(v, (dict, list, tuple)) else v
                f.create_dataset("copymove", data=result.score.astype(np.float32), compression="gzip", chunks=True)
                f.create_dataset("no_evidence", data=result.no_evidence.astype(np.uint8), compression="gzip", chunks=True)
                grp = f.create_group("pairs")
                for i, p in enumerate(result.pairs):
                    g = grp.create_group(f"{i:03d}")
                    g.create_dataset("source_mask", data=p.source_mask.astype(np.uint8), compression="gzip")
                    g.create_dataset("target_mask", data=p.target_mask.astype(np.uint8), compression="gzip")
                    g.create_dataset("transform", data=np.asarray(p.transform, np.float64))
                    for k, v in p.to_json().items():
                        if k != "transform":
                            g.attrs[k] = json.dumps(v) if isinstance(v, list) else v

        atomic_write(out, _h5)
    else:
        atomic_write_bytes(out, render_pairs_png(pixels, result))
    return out


__all__ = ["PAIR_COLOURS", "analyse_copymove", "copymove_json", "detector_description", "jpeg_quality_of",
           "render_pairs_png", "write_copymove"]
