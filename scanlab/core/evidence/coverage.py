"""Reference coverage: does every known scanner's training set show pages like this one?

A lab model learns each scanner from the few reference scans the lab gave it. When
one scanner's references are all dark pages and another's include bright ones, the
network has never seen the first scanner on a bright page, and a bright page of it
is voted to the other (measured on a 3 x 10 virtual lab: every wrong attribution of
the development sets was a bright ``lab-02`` page voted ``lab-01``, and ``lab-02``'s
references were all dark; BENCHMARKS.md, "Lab models say unknown", known side).
Nothing in the image's own evidence tells that case apart from a right answer.

What the model file can record, and the verdict can check, is **coverage**: the
brightness (mean grey level, 0-255, of the 64x64 windows with sensor evidence) that
each class's training scans span. When more than ``max_uncovered_share`` of a
questioned scan's windows with evidence lie outside the range of some class's
training windows, the model cannot tell that class apart on such a page: it can
neither name a scanner (another one may look like it there) nor say "none of them"
(the uncovered scanner was never seen there). The verdict rule
(:mod:`scanlab.core.evidence.verdict`) answers ``inconclusive`` and names the class
and its range, which is what the lab needs to add references for.

Brightness, not content type, because the sensor's noise and the network's features
depend on the signal level (photo-response non-uniformity is multiplicative, shot
noise grows with the level) and because it is measurable on any scan and explained
in one line. The range is the ``PERCENTILES`` of the class's training windows (a
stray window does not stretch it).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from scanlab.core.io.imaging import full_scale
from scanlab.core.modelfile.coverage_card import DEFAULT_SHARE

MEASURE = "mean grey level (0-255) of the 64x64 windows with sensor evidence"
PERCENTILES = (0.5, 99.5)
# the verdict rule's bound (``thresholds.max_uncovered_share`` of the models that record coverage), chosen on
# the development sets of three 3 x 10 labs and a 3 x 5 lab (BENCHMARKS.md, "Reference coverage"); defined
# beside the model card's lines, which quote it and cannot import this module (core layers)
MAX_UNCOVERED_SHARE = DEFAULT_SHARE


def window_brightness(image: np.ndarray, ys: np.ndarray, xs: np.ndarray, evidence: np.ndarray,
                      size: int = 64) -> np.ndarray:
    """Mean grey level (8-bit scale, channel mean) of each window with evidence, in row-major order.

    ``image``: (H, W, C) or (H, W), uint8/uint16/float in that format's range; windows
    ``size`` x ``size`` at corners (ys[i], xs[j]) where ``evidence[i, j]``. One strip of
    ``size`` rows at a time: no float copy of the whole scan.
    """
    scale = 255.0 / full_scale(image.dtype)
    out: list[np.ndarray] = []
    for i, y in enumerate(ys):
        cols = np.nonzero(evidence[i])[0]
        if not len(cols):
            continue
        strip = np.asarray(image[int(y):int(y) + size], dtype=np.float64)
        col = strip.reshape(strip.shape[0], strip.shape[1], -1).mean(axis=2).sum(axis=0)  # (W,) row sums
        c = np.concatenate([[0.0], np.cumsum(col)])
        x0 = xs[cols].astype(np.int64)
        out.append((c[x0 + size] - c[x0]) / (strip.shape[0] * size) * scale)
    return np.concatenate(out) if out else np.zeros(0)


def reference_coverage(per_class: dict[str, Iterable[np.ndarray]]) -> dict[str, Any]:
    """The manifest block (``training_input.reference_coverage``) from each class's training windows.

    ``per_class``: class name -> the :func:`window_brightness` arrays of its training scans.
    """
    ranges: dict[str, list[float]] = {}
    counts: dict[str, int] = {}
    for name, arrays in per_class.items():
        v = np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in arrays] or [np.zeros(0)])
        counts[name] = int(v.size)
        if v.size:
            lo, hi = np.percentile(v, PERCENTILES)
            ranges[name] = [round(float(lo), 1), round(float(hi), 1)]
    return {"measure": MEASURE, "percentiles": list(PERCENTILES), "ranges": ranges, "n_windows": counts}


def uncovered_shares(values: np.ndarray, coverage: dict[str, Any] | None) -> dict[str, float]:
    """Per class: the share of the scan's windows (``values``) outside that class's training range."""
    if coverage is None or not len(values):
        return {}
    out = {}
    for name, (lo, hi) in (coverage.get("ranges") or {}).items():
        out[name] = float(np.mean((values < lo) | (values > hi)))
    return out


def coverage_gap(values: np.ndarray, coverage: dict[str, Any] | None,
                 max_share: float = MAX_UNCOVERED_SHARE) -> dict[str, Any] | None:
    """The worst-covered class when more than ``max_share`` of the windows lie outside its range, else None.

    Returns {"class", "share", "range", "side" ("brighter" / "darker" / "outside"), "message"}.
    A class with no training window at all is not judged (nothing to compare with).
    """
    shares = uncovered_shares(values, coverage)
    if not shares:
        return None
    name = max(shares, key=lambda k: shares[k])
    share = shares[name]
    if share <= max_share:
        return None
    lo, hi = coverage["ranges"][name]
    above, below = float(np.mean(values > hi)), float(np.mean(values < lo))
    side = "brighter" if above >= 2 * below else "darker" if below >= 2 * above else "brighter or darker"
    return {
        "class": name,
        "share": round(share, 4),
        "range": [lo, hi],
        "side": side,
        "message": (f"{share:.0%} of this scan's windows with evidence are {side} than the training scans of "
                    f"{name} (their windows' grey levels: {lo:.0f}-{hi:.0f}): the model never saw {name} on such "
                    "a page"),
    }
