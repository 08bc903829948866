"""What can be read or measured about a JPEG file's compression history.

Three facts for the ``scan`` block (docs/formats.md, "JPEG facts"):

* **quality**: the IJG quality (1-100) whose scaled standard tables are closest to
  the file's quantisation tables (libjpeg's scaling: ``scale = 5000/q`` below 50,
  ``200 - 2q`` above; ``T = clip((base * scale + 50) // 100, 1, 255)``). ``tables``
  says whether they match exactly (``standard``) or only approximately
  (``custom``: a camera, scanner firmware or another encoder with its own tables).
* **subsampling**: the chroma sampling from the components' sampling factors
  (``4:4:4``, ``4:2:2``, ``4:2:0``, ``4:4:0``, ``4:1:1``, ``grey``).
* **recompressed**: a double-quantisation test on the luminance DCT coefficients.
  A JPEG decoded and saved again with different tables carries the first
  quantiser's comb in the histograms of its coefficients: re-quantising values
  that were multiples of Q1 with step Q2 leaves some bins empty and others
  doubly full (Lukas and Fridrich 2003; Popescu and Farid 2004). The luminance
  is cut into the JPEG's 8x8 blocks, transformed with the orthonormal DCT and
  divided by the file's luminance table, which gives back the stored integer
  coefficients (up to IDCT rounding); :func:`rise_score` reads the histograms.
  The decision threshold was chosen on 16 scans and measured on others
  (benchmarks/bench_jpegfacts.py; BENCHMARKS.md; docs/formats.md "JPEG facts").
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image, JpegImagePlugin

# IJG (libjpeg) Annex K tables, natural (row-major) order: Pillow reports ``quantization`` in that order
IJG_LUMA = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], dtype=np.int64)
IJG_CHROMA = np.array([
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99] + [99] * 32, dtype=np.int64)

# the recompression test: frequencies (row, col) in the 8x8 block, the |c| range, the threshold
FREQS = ((0, 1), (1, 0), (1, 1), (0, 2), (2, 0), (1, 2), (2, 1), (2, 2), (0, 3), (3, 0))
MAX_COEF = 12
MIN_COUNT = 300  # non-zero coefficients a frequency needs before its histogram is read
MAX_BLOCKS = 12_000  # blocks sampled (whole block rows, evenly spaced): bounded time on a 600 dpi page
THRESHOLD = 0.3  # rise score above which a file is called re-compressed (chosen on 16 scans, see the benchmark)
METHOD = "dct-histogram-rise-v1"


def ijg_table(quality: int, base: np.ndarray = IJG_LUMA) -> np.ndarray:
    """libjpeg's table for ``quality`` (1..100), as ``jpeg_set_quality`` scales it."""
    q = min(100, max(1, int(quality)))
    scale = 5000 // q if q < 50 else 200 - 2 * q
    return np.clip((base * scale + 50) // 100, 1, 255)


def estimate_quality(tables: dict[int, Any]) -> tuple[int | None, str]:
    """(quality, ``standard`` | ``custom``) from a JPEG's quantisation tables (Pillow's ``quantization``)."""
    if not tables or 0 not in tables:
        return None, "none"
    luma = np.asarray(tables[0], dtype=np.int64)
    chroma = np.asarray(tables[1], dtype=np.int64) if 1 in tables else None
    if luma.size != 64 or (chroma is not None and chroma.size != 64):
        return None, "none"
    best, best_err = None, None
    for q in range(1, 101):
        err = int(np.abs(ijg_table(q) - luma).sum())
        if chroma is not None:
            err += int(np.abs(ijg_table(q, IJG_CHROMA) - chroma).sum())
        if best_err is None or err < best_err:
            best, best_err = q, err
    return best, "standard" if best_err == 0 else "custom"


def subsampling(img: Image.Image) -> str:
    """Chroma subsampling from the frame's sampling factors (``grey`` for one component)."""
    layers = getattr(img, "layer", None) or []
    if len(layers) == 1:
        return "grey"
    if len(layers) < 3:
        return "unknown"
    (_, h0, v0, _), (_, h1, v1, _) = layers[0], layers[1]
    if any(L[1:3] != (h1, v1) for L in layers[2:3]) or h1 == 0 or v1 == 0:
        return "unknown"
    rh, rv = h0 / h1, v0 / v1
    return {(1, 1): "4:4:4", (2, 1): "4:2:2", (2, 2): "4:2:0", (1, 2): "4:4:0", (4, 1): "4:1:1"}.get((rh, rv),
                                                                                                  f"{h0}x{v0},{h1}x{v1}")


def _dct_matrix() -> np.ndarray:
    k = np.arange(8)
    m = np.cos(np.pi * (2 * k[None, :] + 1) * k[:, None] / 16) * np.sqrt(2 / 8)
    m[0] /= np.sqrt(2)
    return m


def block_coefficients(luma: np.ndarray, qtable: np.ndarray) -> np.ndarray:
    """(n, 8, 8) quantised DCT coefficients of the decoded luminance (a regular subset of blocks)."""
    h, w = (luma.shape[0] // 8) * 8, (luma.shape[1] // 8) * 8
    blocks = luma[:h, :w].reshape(h // 8, 8, w // 8, 8).swapaxes(1, 2).reshape(-1, 8, 8)
    d = _dct_matrix()
    b = blocks.astype(np.float64) - 128.0
    # D B D^T as two plain matrix products over all blocks at once (a batched 8x8 matmul is 10x slower)
    rows = (b.reshape(-1, 8) @ d.T).reshape(-1, 8, 8)
    coef = (rows.swapaxes(1, 2).reshape(-1, 8) @ d.T).reshape(-1, 8, 8).swapaxes(1, 2)
    return np.rint(coef / qtable.reshape(8, 8)).astype(np.int64)


def block_rows(a: np.ndarray) -> np.ndarray:
    """Every k-th row of 8x8 blocks (whole rows, the JPEG grid kept), so that at most ``MAX_BLOCKS`` remain."""
    nr, nc = a.shape[0] // 8, max(1, a.shape[1] // 8)
    step = max(1, -(-nr * nc // MAX_BLOCKS))
    if step == 1:
        return a
    idx = (np.arange(0, nr, step)[:, None] * 8 + np.arange(8)[None, :]).ravel()
    return a[idx]


def rise_score(coef: np.ndarray, qtable: np.ndarray) -> tuple[float | None, int]:
    """Mean rise score over the usable low frequencies (None when none is usable), and how many were used.

    For each frequency, the histogram ``h`` of ``|c|`` over ``1..MAX_COEF``: a single
    compression's falls with ``|c|`` (Laplacian-like coefficients), so the upward steps
    ``sum max(0, h[n+1] - h[n])`` over the count are noise only; the comb that a second
    quantisation leaves (empty bins between full ones) makes large upward steps.
    """
    q = qtable.reshape(8, 8)
    scores, weights = [], []
    for r, c in FREQS:
        if q[r, c] < 2:  # step 1: re-quantising leaves no comb to see
            continue
        a = np.abs(coef[:, r, c])
        h = np.bincount(a[(a >= 1) & (a <= MAX_COEF)], minlength=MAX_COEF + 1)[1:].astype(np.float64)
        if h.sum() < MIN_COUNT:
            continue
        scores.append(float(np.maximum(0.0, np.diff(h)).sum() / h.sum()))
        weights.append(h.sum())
    return (float(np.average(scores, weights=weights)) if scores else None), len(scores)


def jpeg_facts(data: bytes, pixels: np.ndarray | None = None) -> dict[str, Any]:
    """The JPEG facts of a file's bytes (docs/formats.md).

    ``pixels``: the file's decoded (H, W, 3) uint8 pixels when the caller has them
    (the luminance is then computed from them instead of decoding the file again).

    Returns
    -------
    dict
        ``quality`` (int or None), ``tables`` (``standard`` | ``custom`` | ``none``),
        ``subsampling``, ``progressive``, ``recompressed`` (True, False, or None when
        the test cannot decide), ``recompression_score``, ``recompression_method``.
    """
    img = JpegImagePlugin.JpegImageFile(io.BytesIO(data))
    tables = dict(getattr(img, "quantization", {}) or {})
    quality, kind = estimate_quality(tables)
    out: dict[str, Any] = {
        "quality": quality, "tables": kind, "subsampling": subsampling(img),
        "progressive": bool(img.info.get("progressive") or img.info.get("progression")),
        "recompressed": None, "recompression_score": None, "recompression_method": METHOD,
    }
    if 0 not in tables:
        return out
    qt = np.asarray(tables[0], dtype=np.float64)
    if pixels is not None and pixels.ndim == 3 and pixels.dtype == np.uint8:
        # the luminance from the decoded colours, unrounded (ITU-R 601, the JFIF transform): no second
        # decode; only the sampled rows of 8x8 blocks are converted
        px = block_rows(pixels)
        luma = px[..., 0] * 0.299 + px[..., 1] * 0.587 + px[..., 2] * 0.114
    else:
        try:
            img.draft("L", img.size)  # libjpeg's own luminance output, no colour conversion
            luma = block_rows(np.asarray(img.convert("L") if img.mode != "L" else img, dtype=np.uint8))
        except (OSError, ValueError):
            return out
    score, n = rise_score(block_coefficients(luma, qt), qt)
    if score is not None:
        out["recompression_score"] = round(score, 4)
        out["recompressed"] = bool(score > THRESHOLD)
    return out


def header_facts(data: bytes) -> dict[str, Any]:
    """``quality``, ``tables`` and ``subsampling`` from a JPEG's header only (nothing decoded)."""
    img = JpegImagePlugin.JpegImageFile(io.BytesIO(data))
    quality, kind = estimate_quality(dict(getattr(img, "quantization", {}) or {}))
    return {"quality": quality, "tables": kind, "subsampling": subsampling(img)}


def input_summary(paths: Any) -> dict[str, Any]:
    """What a model's training scans were, for its manifest's ``training_input``.

    ``paths``: files or container references (``DOC.pdf#page=1&image=1``). Reads headers
    only (a PDF item's stream is read, not decoded). Returns ``formats`` (format -> count),
    ``jpeg_quality`` ([lo, hi] of the estimated qualities, None without JPEGs) and
    ``jpeg_subsampling`` (the subsamplings seen).
    """
    from scanlab.core.io.containers import expand, is_ref
    from scanlab.core.io.decoders import sniff

    formats: dict[str, int] = {}
    qualities: list[int] = []
    subs: set[str] = set()
    for p in paths:
        try:
            if is_ref(p):
                item = expand(p)[0]
                data = item.jpeg_bytes() if item.container and item.container["filter"].endswith("DCTDecode") else None
                fmt = "JPEG" if data is not None else (item.container or {}).get("type", "?")
            else:
                with open(p, "rb") as f:
                    data = f.read()
                fmt = sniff(data)
                data = data if fmt == "JPEG" else None
            formats[fmt] = formats.get(fmt, 0) + 1
            if data is not None:
                h = header_facts(data)
                if h["quality"] is not None:
                    qualities.append(int(h["quality"]))
                subs.add(h["subsampling"])
        except Exception:  # noqa: BLE001 - an unreadable file was reported (or skipped) by training
            continue
    return {"formats": dict(sorted(formats.items())),
            "jpeg_quality": [min(qualities), max(qualities)] if qualities else None,
            "jpeg_subsampling": sorted(subs)}
