"""Regions of interest as plain data, their masks, statistics and automatic suggestions.

An ROI is a list of (row, col) image coordinates (y down, the project's display
convention) plus a kind, a verdict and a note; nothing here knows about Qt, so
the case file, the report and the GUI adapter share one definition.

Pixel rule: a pixel (r, c) belongs to a region when its centre (r + 0.5, c + 0.5)
lies inside the outline (even-odd rule). A rectangle from (r0, c0) to (r1, c1)
therefore covers exactly rows r0..r1-1 and columns c0..c1-1.

Statistics (:func:`roi_stats`) compare the region with a *ring of equal area*
around it: the ``area`` outside pixels closest to the region (Euclidean
distance, ties in raster order). NaN in a reliability map means "no evidence"
(or not covered) and is left out of every mean, median and minimum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scanlab.core.io.mapstore import StoredWindows

KINDS = ("rect", "polygon", "lasso")
VERDICTS = ("Consistent", "Needs review", "Suspicious", "Not assessable")
MIN_TEST_WINDOWS = 3  # per side; fewer and the Mann-Whitney p-value is not reported


@dataclass
class ROI:
    """One region: outline in image (row, col) coordinates, verdict and note."""

    id: int
    kind: str
    points: list[tuple[float, float]]
    verdict: str | None = None
    note: str = ""
    suggested: bool = False
    reviewed: bool = False
    stats: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"ROI kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if self.verdict is not None and self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {', '.join(VERDICTS)}, not {self.verdict!r}")
        self.points = [(float(r), float(c)) for r, c in self.points]
        need = 2 if self.kind == "rect" else 3
        if len(self.points) < need:
            raise ValueError(f"a {self.kind} ROI needs at least {need} points")

    @classmethod
    def rect(cls, id: int, r0: float, c0: float, r1: float, c1: float, **kw: Any) -> ROI:
        """A rectangle from corner (r0, c0) to the opposite corner (r1, c1)."""
        return cls(id, "rect", [(min(r0, r1), min(c0, c1)), (max(r0, r1), max(c0, c1))], **kw)

    def outline(self) -> list[tuple[float, float]]:
        """The closed outline as a vertex list (a rectangle gives its 4 corners)."""
        if self.kind == "rect":
            (r0, c0), (r1, c1) = self.points[0], self.points[1]
            return [(r0, c0), (r0, c1), (r1, c1), (r1, c0)]
        return list(self.points)

    def bbox(self) -> tuple[float, float, float, float]:
        """(r0, c0, r1, c1) of the outline."""
        p = np.asarray(self.outline())
        return float(p[:, 0].min()), float(p[:, 1].min()), float(p[:, 0].max()), float(p[:, 1].max())

    def translated(self, dr: float, dc: float) -> ROI:
        """A copy moved by (dr, dc); statistics are dropped (they no longer apply)."""
        return ROI(self.id, self.kind, [(r + dr, c + dc) for r, c in self.points], self.verdict,
                   self.note, self.suggested, self.reviewed, {})

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored in case files (docs/formats.md section 6)."""
        return {"id": self.id, "kind": self.kind, "points": [[r, c] for r, c in self.points],
                "verdict": self.verdict, "note": self.note, "suggested": self.suggested,
                "reviewed": self.reviewed, "stats": self.stats}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ROI:
        """Inverse of :meth:`to_dict`; raises ``ValueError``/``KeyError`` on a bad entry."""
        return cls(int(d["id"]), str(d["kind"]), [tuple(p) for p in d["points"]], d.get("verdict"),
                   str(d.get("note", "")), bool(d.get("suggested", False)), bool(d.get("reviewed", False)),
                   dict(d.get("stats") or {}))


def contains(roi: ROI, r: float, c: float) -> bool:
    """Whether the image point (r, c) lies inside the outline (even-odd rule)."""
    if roi.kind == "rect":
        r0, c0, r1, c1 = roi.bbox()
        return r0 <= r < r1 and c0 <= c < c1
    pts = roi.outline()
    inside = False
    for (ya, xa), (yb, xb) in zip(pts, pts[1:] + pts[:1], strict=True):
        if (ya <= r) != (yb <= r) and c < xa + (r - ya) * (xb - xa) / (yb - ya):
            inside = not inside
    return inside


def simplify(points: list[tuple[float, float]], min_step: float) -> list[tuple[float, float]]:
    """Drop freehand points closer than ``min_step`` to the last kept one (lasso strokes)."""
    out: list[tuple[float, float]] = []
    for p in points:
        if not out or math.hypot(p[0] - out[-1][0], p[1] - out[-1][1]) >= min_step:
            out.append((float(p[0]), float(p[1])))
    return out


def rasterize(roi: ROI, shape: tuple[int, int]) -> np.ndarray:
    """Boolean (H, W) mask of the pixels whose centres lie inside the ROI."""
    h, w = shape
    mask = np.zeros((h, w), dtype=bool)
    if roi.kind == "rect":
        r0, c0, r1, c1 = roi.bbox()
        # centre rule on a rectangle: rows ceil(r0 - 0.5) .. ceil(r1 - 0.5) - 1
        a, b = max(0, math.ceil(r0 - 0.5)), min(h, math.ceil(r1 - 0.5))
        c, d = max(0, math.ceil(c0 - 0.5)), min(w, math.ceil(c1 - 0.5))
        if a < b and c < d:
            mask[a:b, c:d] = True
        return mask
    pts = np.asarray(roi.outline(), dtype=np.float64)
    ya, yb = pts[:, 0], np.roll(pts[:, 0], -1)
    xa, xb = pts[:, 1], np.roll(pts[:, 1], -1)
    r_lo, r_hi = max(0, math.floor(pts[:, 0].min())), min(h, math.ceil(pts[:, 0].max()) + 1)
    cols = np.arange(w) + 0.5
    for r in range(r_lo, r_hi):
        y = r + 0.5
        # edges crossing the scanline (half-open in y so a vertex is counted once)
        hit = (ya <= y) != (yb <= y)
        if not hit.any():
            continue
        x = xa[hit] + (y - ya[hit]) * (xb[hit] - xa[hit]) / (yb[hit] - ya[hit])
        x.sort()
        for x0, x1 in zip(x[0::2], x[1::2], strict=False):
            mask[r] |= (cols >= x0) & (cols < x1)
    return mask


def equal_area_ring(mask: np.ndarray) -> np.ndarray:
    """The ``mask.sum()`` outside pixels nearest the region (fewer when the image has fewer)."""
    from scipy.ndimage import distance_transform_edt

    area = int(mask.sum())
    ring = np.zeros_like(mask)
    if area == 0:
        return ring
    h, w = mask.shape
    rows, cols = np.nonzero(mask)
    pad = max(rows.max() - rows.min(), cols.max() - cols.min()) + 2
    r0, r1 = max(0, rows.min() - pad), min(h, rows.max() + pad + 1)
    c0, c1 = max(0, cols.min() - pad), min(w, cols.max() + pad + 1)
    if (r1 - r0) * (c1 - c0) - area < area:  # the crop is too small (image border): use it all
        r0, r1, c0, c1 = 0, h, 0, w
    crop = mask[r0:r1, c0:c1]
    dist = distance_transform_edt(~crop)
    out_idx = np.flatnonzero(~crop.ravel())
    order = np.argsort(dist.ravel()[out_idx], kind="stable")[:area]
    sub = np.zeros(crop.size, dtype=bool)
    sub[out_idx[order]] = True
    ring[r0:r1, c0:c1] = sub.reshape(crop.shape)
    return ring


def _summary(values: np.ndarray) -> dict[str, float | None]:
    v = values[np.isfinite(values)]
    if v.size == 0:
        return {"mean": None, "median": None, "min": None}
    return {"mean": float(v.mean()), "median": float(np.median(v)), "min": float(v.min())}


def non_overlapping(corners: np.ndarray, size: int) -> np.ndarray:
    """Indices of a greedy subset of window corners whose windows do not overlap."""
    keep, last = [], None
    for i, y in enumerate(np.asarray(corners)):
        if last is None or y >= last + size:
            keep.append(i)
            last = int(y)
    return np.asarray(keep, dtype=np.int64)


def _box_fraction(mask: np.ndarray, ys: np.ndarray, xs: np.ndarray, sub: tuple[int, int]) -> np.ndarray:
    """Fraction of each window (ys[i], xs[j], size ``sub``) covered by ``mask``."""
    ii = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), dtype=np.int64)
    ii[1:, 1:] = np.cumsum(np.cumsum(mask, axis=0), axis=1)
    y0, x0 = ys[:, None], xs[None, :]
    y1, x1 = np.minimum(y0 + sub[0], mask.shape[0]), np.minimum(x0 + sub[1], mask.shape[1])
    s = ii[y1, x1] - ii[y0, x1] - ii[y1, x0] + ii[y0, x0]
    return s / float(sub[0] * sub[1])


def window_test(mask: np.ndarray, windows: StoredWindows, class_index: int) -> dict[str, Any]:
    """Mann-Whitney U of P_label on non-overlapping windows inside vs outside the ROI.

    Inside: windows with at least half their area in the ROI. Outside: windows that
    do not touch the ROI at all (the rest of the scan; a ring of equal area rarely
    holds enough non-overlapping windows). Windows without evidence are left out.
    Two-sided test; ``p_value`` is None when either side has fewer than
    ``MIN_TEST_WINDOWS`` windows.
    """
    iy = non_overlapping(windows.ys, windows.sub[0])
    ix = non_overlapping(windows.xs, windows.sub[1])
    ys, xs = windows.ys[iy], windows.xs[ix]
    frac = _box_fraction(mask, ys, xs, windows.sub)
    vals = windows.probs[np.ix_(iy, ix)][:, :, class_index]
    ok = np.ones_like(frac, dtype=bool)
    if windows.evidence is not None:
        ok = windows.evidence[np.ix_(iy, ix)].astype(bool)
    inside, outside = vals[(frac >= 0.5) & ok], vals[(frac == 0) & ok]
    out: dict[str, Any] = {"test": "Mann-Whitney U (two-sided)", "n_inside": int(inside.size),
                           "n_outside": int(outside.size), "u": None, "p_value": None}
    if inside.size >= MIN_TEST_WINDOWS and outside.size >= MIN_TEST_WINDOWS:
        from scipy.stats import mannwhitneyu

        res = mannwhitneyu(inside, outside, alternative="two-sided")
        out["u"], out["p_value"] = float(res.statistic), float(res.pvalue)
    return out


def best_scanner(mask: np.ndarray, windows: StoredWindows | None = None,
                 class_maps: dict[str, np.ndarray] | None = None) -> dict[str, Any] | None:
    """Which class the region fits best.

    ``class_maps`` (per-region attribution maps, class -> (H, W)) win when given:
    the class with the highest mean inside. Otherwise the mean class probabilities
    of the windows whose centre lies inside the ROI (evidence windows only).
    """
    if class_maps:
        means = {k: float(np.nanmean(np.where(mask, v, np.nan))) if mask.any() else float("nan")
                 for k, v in class_maps.items()}
        means = {k: v for k, v in means.items() if np.isfinite(v)}
        if not means:
            return None
        best = max(means, key=means.get)  # type: ignore[arg-type]
        return {"label": best, "source": "class maps", "probabilities": means, "n_windows": None}
    if windows is None:
        return None
    cy = np.clip(windows.ys + windows.sub[0] // 2, 0, mask.shape[0] - 1)
    cx = np.clip(windows.xs + windows.sub[1] // 2, 0, mask.shape[1] - 1)
    sel = mask[np.ix_(cy, cx)]
    if windows.evidence is not None:
        sel &= windows.evidence.astype(bool)
    if not sel.any():
        return None
    mean = windows.probs[sel].astype(np.float64).mean(axis=0)
    k = int(mean.argmax())
    return {"label": windows.classes[k], "source": "windows inside",
            "probabilities": {c: float(p) for c, p in zip(windows.classes, mean, strict=True)},
            "n_windows": int(sel.sum())}


def roi_stats(mask: np.ndarray, reliability: np.ndarray, *, threshold: float = 0.5,
              windows: StoredWindows | None = None, label: str | None = None,
              class_maps: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """Statistics of one region against a ring of equal area outside it.

    Parameters
    ----------
    mask : ndarray of bool, (H, W)
        The region (:func:`rasterize`).
    reliability : ndarray of float, (H, W)
        Reliability of the image label; NaN = no evidence / not covered.
    threshold : float
        Reliability below this counts as low.
    windows : StoredWindows, optional
        The map's window grid, for the best-fitting scanner and the window test.
    label : str, optional
        The class the reliability map is of (the test uses its window probabilities).
    class_maps : dict, optional
        Per-class maps of a per-region attribution, preferred for ``best_scanner``.

    Returns
    -------
    dict
        ``area``, ``inside`` and ``ring`` (mean/median/min), ``ring_area``,
        ``below_threshold_fraction`` (of the evidence pixels inside),
        ``no_evidence_fraction`` (of all pixels inside), ``threshold``,
        ``best_scanner`` and ``window_test``.
    """
    if mask.shape != reliability.shape:
        raise ValueError(f"mask {mask.shape} and map {reliability.shape} differ in shape")
    area = int(mask.sum())
    ring = equal_area_ring(mask)
    inside = reliability[mask]
    finite = inside[np.isfinite(inside)]
    out: dict[str, Any] = {
        "area": area,
        "threshold": float(threshold),
        "inside": _summary(inside),
        "ring": _summary(reliability[ring]),
        "ring_area": int(ring.sum()),
        "below_threshold_fraction": float((finite < threshold).mean()) if finite.size else None,
        "no_evidence_fraction": float(1.0 - finite.size / area) if area else None,
        "best_scanner": best_scanner(mask, windows, class_maps) if area else None,
        "window_test": None,
    }
    if windows is not None and area and label in windows.classes:
        out["window_test"] = window_test(mask, windows, windows.classes.index(label))
    return out


def _drop_collinear(pts: np.ndarray) -> np.ndarray:
    """Remove vertices that lie on the straight line through their neighbours (exactly)."""
    if len(pts) < 4:
        return pts
    prev = np.roll(pts, 1, axis=0)
    nxt = np.roll(pts, -1, axis=0)
    cross = (pts[:, 0] - prev[:, 0]) * (nxt[:, 1] - pts[:, 1]) - (pts[:, 1] - prev[:, 1]) * (nxt[:, 0] - pts[:, 0])
    keep = np.abs(cross) > 1e-9
    return pts[keep] if keep.sum() >= 3 else pts


def outline_of(component: np.ndarray) -> list[tuple[float, float]]:
    """The outer outline of one connected component, in pixel-edge coordinates.

    Marching squares (contourpy, matplotlib's contouring library) at level 0.5 on a
    2x nearest-neighbour upsampling: the contour then cuts corners by a quarter pixel
    only, so every pixel centre stays on its side. Collinear vertices are dropped.
    """
    from contourpy import contour_generator

    up = np.repeat(np.repeat(component, 2, axis=0), 2, axis=1)
    padded = np.pad(up, 1).astype(np.float64)
    # contourpy works in (x, y) = (col, row); take the longest closed line (the outer one)
    lines = contour_generator(z=padded, line_type="Separate").lines(0.5)
    c = max(lines, key=len)[:, ::-1]
    if len(c) > 1 and np.allclose(c[0], c[-1]):
        c = c[:-1]
    c = _drop_collinear(c)
    # padded index p -> upsampled index p - 1 -> image coordinate (p - 1 + 0.5) / 2
    return [((float(r) - 0.5) / 2, (float(col) - 0.5) / 2) for r, col in c]


def map_marks_regions(classify: dict[str, Any]) -> bool:
    """Whether low reliability on a scan with this classify entry can mark a region from another source.

    Not when its ``verdict`` is ``unknown``, nor when a verdict rule turned ``unknown`` into
    ``inconclusive`` (``verdict_before_delivery_rule``, ``verdict_before_coverage_rule``): the
    scan's unknown score is above the threshold, the map is the fit to a scanner that does not
    fit it, low nearly everywhere, so no region is suggested (cases and batch alike).
    """
    return "unknown" not in (classify.get("verdict"), classify.get("verdict_before_delivery_rule"),
                             classify.get("verdict_before_coverage_rule"))


def suggest_regions(reliability: np.ndarray, *, threshold: float = 0.5, min_area: int = 1024,
                    max_regions: int = 8, start_id: int = 1) -> list[ROI]:
    """Connected regions of low reliability, ranked by area x contrast.

    Low = evidence pixels (finite) below ``threshold``; no-evidence (NaN) pixels are
    never part of a suggestion. Components (8-connected) smaller than ``min_area``
    pixels are dropped. Contrast = ring mean - inside mean; the score
    ``area * contrast`` is the reliability "missing" from the region, so a large
    faint region and a small deep one compete fairly. Each suggestion is a polygon
    ROI (``suggested=True``) whose ``stats`` hold ``score``, ``contrast`` and the
    component's exact ``area``.
    """
    from scipy.ndimage import find_objects, label

    low = np.isfinite(reliability) & (reliability < threshold)
    lab, n = label(low, structure=np.ones((3, 3), dtype=bool))
    found = []
    for k, sl in enumerate(find_objects(lab), start=1):
        if sl is None:
            continue
        comp_crop = lab[sl] == k
        area = int(comp_crop.sum())
        if area < min_area:
            continue
        comp = np.zeros(low.shape, dtype=bool)
        comp[sl] = comp_crop
        inside = float(np.mean(reliability[comp]))
        ring_vals = reliability[equal_area_ring(comp)]
        ring_vals = ring_vals[np.isfinite(ring_vals)]
        ring = float(ring_vals.mean()) if ring_vals.size else inside
        contrast = ring - inside
        outline = [(r + sl[0].start, c + sl[1].start) for r, c in outline_of(comp_crop)]
        found.append((area * contrast, area, contrast, inside, ring, outline))
    found.sort(key=lambda t: -t[0])
    rois = []
    for i, (score, area, contrast, inside, ring, outline) in enumerate(found[:max_regions]):
        rois.append(ROI(start_id + i, "polygon", outline, suggested=True, stats={
            "score": float(score), "area": area, "contrast": float(contrast),
            "inside_mean": inside, "ring_mean": ring, "threshold": float(threshold)}))
    return rois
