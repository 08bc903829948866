"""Temperature scaling, expected calibration error and the reliability diagram.

The network's window probabilities are rescaled as softmax(log p / T) (see
:func:`scanlab.core.engine.reliability.apply_temperature`); T is fitted on the
validation split by minimising the negative log-likelihood of the windows with
evidence. ECE uses equal-width confidence bins over those windows. The fit
needs no Qt and no plotting library: the diagram is drawn with Pillow.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from scanlab.core.io.fileio import atomic_write_bytes

N_BINS = 15
T_RANGE = (0.05, 20.0)


def _log_softmax_t(logp: np.ndarray, t: float) -> np.ndarray:
    z = logp / t
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def nll(probs: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``labels`` under softmax(log p / T)."""
    logp = np.log(np.maximum(probs.astype(np.float64), 1e-30))
    ls = _log_softmax_t(logp, temperature)
    return float(-ls[np.arange(len(labels)), labels].mean())


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The temperature minimising the NLL (golden-section search on log T; the NLL is convex in 1/T)."""
    lo, hi = np.log(T_RANGE[0]), np.log(T_RANGE[1])
    g = (np.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = nll(probs, labels, np.exp(a)), nll(probs, labels, np.exp(b))
    for _ in range(60):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = nll(probs, labels, np.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = nll(probs, labels, np.exp(b))
    return float(np.exp((lo + hi) / 2))


def reliability_bins(probs: np.ndarray, labels: np.ndarray, n_bins: int = N_BINS) -> list[dict]:
    """Per confidence bin: count, mean confidence and accuracy of the top class."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    out = []
    for b in range(n_bins):
        m = idx == b
        out.append({
            "lo": float(edges[b]), "hi": float(edges[b + 1]), "n": int(m.sum()),
            "confidence": float(conf[m].mean()) if m.any() else None,
            "accuracy": float(correct[m].mean()) if m.any() else None,
        })
    return out


def bins_block(before: list[dict], after: list[dict]) -> dict:
    """The manifest's ``calibration.bins``: per-bin data of the reliability diagram (docs/formats.md section 2).

    ``before``/``after`` are :func:`reliability_bins` outputs over the same edges.
    Empty bins have ``confidence`` and ``accuracy`` null and ``count`` 0.
    """

    def r4(v: float | None) -> float | None:
        return None if v is None else round(float(v), 4)

    def side(bins: list[dict]) -> dict:
        return {"confidence": [r4(b["confidence"]) for b in bins], "accuracy": [r4(b["accuracy"]) for b in bins],
                "count": [int(b["n"]) for b in bins]}

    edges = [round(float(b["lo"]), 6) for b in before] + [round(float(before[-1]["hi"]), 6)] if before else []
    return {"edges": edges, "before": side(before), "after": side(after)}


def bins_from_block(cal: dict | None) -> tuple[list[dict], list[dict]] | None:
    """``(before, after)`` bins (as :func:`reliability_bins` gives) from a manifest's calibration block.

    ``None`` when the block has no usable ``bins`` (models saved before the bins
    were recorded, or a malformed block): the caller says the diagram is not available.
    """
    blk = (cal or {}).get("bins")
    if not isinstance(blk, dict):
        return None
    edges = blk.get("edges")
    if not isinstance(edges, list) or len(edges) < 2:
        return None
    n = len(edges) - 1
    out = []
    for key in ("before", "after"):
        side = blk.get(key)
        if not isinstance(side, dict) or any(not isinstance(side.get(k), list) or len(side[k]) != n
                                             for k in ("confidence", "accuracy", "count")):
            return None
        try:
            out.append([{"lo": float(edges[i]), "hi": float(edges[i + 1]), "n": int(side["count"][i]),
                         "confidence": None if side["confidence"][i] is None else float(side["confidence"][i]),
                         "accuracy": None if side["accuracy"][i] is None else float(side["accuracy"][i])}
                        for i in range(n)])
        except (TypeError, ValueError):
            return None
    return out[0], out[1]


def ece_of_bins(bins: list[dict]) -> float:
    """ECE from per-bin data (the same sum as :func:`ece`)."""
    n = sum(b["n"] for b in bins)
    if not n:
        return float("nan")
    return float(sum(b["n"] / n * abs(b["accuracy"] - b["confidence"]) for b in bins if b["n"]))


def ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = N_BINS) -> float:
    """Expected calibration error: sum over bins of (n_b / n) |accuracy_b - confidence_b|."""
    n = len(labels)
    if n == 0:
        return float("nan")
    return float(sum(b["n"] / n * abs(b["accuracy"] - b["confidence"]) for b in reliability_bins(probs, labels, n_bins) if b["n"]))


def draw_reliability_diagram(
    before: list[dict], after: list[dict], path: str | os.PathLike, *, title: str = "", size: int = 480
) -> Path:
    """Write a reliability diagram PNG (accuracy against confidence, before and after scaling).

    Bars: accuracy per bin after scaling (blue) and before (grey outline); the
    diagonal is perfect calibration.
    """
    m = 48
    w = h = size
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    x0, y0, x1, y1 = m, 24, w - 16, h - m

    def px(c: float, a: float) -> tuple[float, float]:
        return x0 + c * (x1 - x0), y1 - a * (y1 - y0)

    d.rectangle([x0, y0, x1, y1], outline="black")
    for t in range(0, 11, 2):
        v = t / 10
        d.line([px(v, 0), (px(v, 0)[0], y1 + 4)], fill="black")
        d.text((px(v, 0)[0] - 8, y1 + 8), f"{v:.1f}", fill="black")
        d.line([(x0 - 4, px(0, v)[1]), px(0, v)], fill="black")
        d.text((4, px(0, v)[1] - 6), f"{v:.1f}", fill="black")
    d.line([px(0, 0), px(1, 1)], fill=(160, 160, 160), width=1)
    for bins, fill, outline in ((after, (70, 120, 200), None), (before, None, (90, 90, 90))):
        for b in bins:
            if not b["n"]:
                continue
            a = b["accuracy"]
            lo, hi = px(b["lo"], 0), px(b["hi"], a)
            box = [lo[0] + 2, hi[1], hi[0] - 2, lo[1]]
            if fill is not None:
                d.rectangle(box, fill=fill)
            else:
                d.rectangle(box, outline=outline)
    d.text((x0 + 6, y0 + 4), title, fill="black")
    d.rectangle([x0 + 6, y0 + 20, x0 + 18, y0 + 30], fill=(70, 120, 200))
    d.text((x0 + 22, y0 + 19), "after temperature scaling", fill="black")
    d.rectangle([x0 + 6, y0 + 36, x0 + 18, y0 + 46], outline=(90, 90, 90))
    d.text((x0 + 22, y0 + 35), "before (raw softmax)", fill="black")
    d.text(((x0 + x1) // 2 - 40, h - 20), "confidence (top class)", fill="black")
    d.text((4, 4), "accuracy", fill="black")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    p = Path(path)
    atomic_write_bytes(p, buf.getvalue())
    return p
