"""ROI masks, statistics against hand-computed values, and suggested regions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scanlab.core.case.rois import (
    ROI,
    contains,
    equal_area_ring,
    non_overlapping,
    rasterize,
    roi_stats,
    simplify,
    suggest_regions,
    window_test,
)
from scanlab.core.io.mapstore import StoredWindows

SAMPLES = Path(__file__).resolve().parents[1] / "resources" / "samples"


def test_rect_and_polygon_masks_follow_the_pixel_centre_rule():
    m = rasterize(ROI.rect(1, 2, 3, 5, 7), (10, 10))
    assert m.sum() == 12 and m[2:5, 3:7].all()
    # triangle: centres with (r + .5) + (c + .5) < 4, i.e. r + c <= 2: 6 pixels
    t = rasterize(ROI(2, "polygon", [(0, 0), (0, 4), (4, 0)]), (10, 10))
    assert t.sum() == 6
    assert sorted(zip(*np.nonzero(t), strict=True)) == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (2, 0)]
    # a lasso is a polygon with many points; the same square either way
    sq = [(1, 1), (1, 5), (5, 5), (5, 1)]
    assert (rasterize(ROI(3, "lasso", sq), (8, 8)) == rasterize(ROI.rect(4, 1, 1, 5, 5), (8, 8))).all()
    # clipped at the border
    assert rasterize(ROI.rect(5, -3, -3, 2, 2), (4, 4)).sum() == 4


def test_roi_round_trip_and_validation():
    r = ROI(7, "polygon", [(0, 0), (0, 9), (9, 0)], verdict="Suspicious", note="edge", suggested=True,
            reviewed=True, stats={"area": 3})
    assert ROI.from_dict(r.to_dict()) == r
    with pytest.raises(ValueError, match="verdict"):
        ROI(1, "rect", [(0, 0), (1, 1)], verdict="Guilty")
    with pytest.raises(ValueError, match="kind"):
        ROI(1, "circle", [(0, 0), (1, 1)])
    moved = r.translated(2, -1)
    assert moved.points[0] == (2.0, -1.0) and moved.stats == {}


def _synthetic():
    rel = np.full((20, 20), 0.9, dtype=np.float32)
    inside = np.array([0.1] * 8 + [0.3] * 4 + [0.7] * 3 + [np.nan], dtype=np.float32)
    rel[5:9, 5:9] = inside.reshape(4, 4)
    return rel, rasterize(ROI.rect(1, 5, 5, 9, 9), rel.shape)


def test_stats_match_hand_computed_values():
    rel, mask = _synthetic()
    s = roi_stats(mask, rel, threshold=0.5)
    assert s["area"] == 16
    assert s["inside"]["mean"] == pytest.approx((8 * 0.1 + 4 * 0.3 + 3 * 0.7) / 15, abs=1e-6)
    assert s["inside"]["median"] == pytest.approx(0.1)
    assert s["inside"]["min"] == pytest.approx(0.1)
    assert s["below_threshold_fraction"] == pytest.approx(12 / 15)
    assert s["no_evidence_fraction"] == pytest.approx(1 / 16)
    assert s["ring_area"] == 16
    assert s["ring"] == {"mean": pytest.approx(0.9), "median": pytest.approx(0.9), "min": pytest.approx(0.9)}


def test_equal_area_ring_is_the_nearest_outside_pixels():
    _, mask = _synthetic()
    ring = equal_area_ring(mask)
    # the 16 pixels at distance 1: the four sides of the 4x4 square, no corners
    expect = np.zeros_like(mask)
    expect[4, 5:9] = expect[9, 5:9] = expect[5:9, 4] = expect[5:9, 9] = True
    assert (ring == expect).all()
    # a region in a corner still gets a ring of equal area
    corner = rasterize(ROI.rect(1, 0, 0, 3, 3), (6, 6))
    r2 = equal_area_ring(corner)
    assert r2.sum() == 9 and not (r2 & corner).any()


def _grid(evidence_off: tuple[int, int] | None = None):
    ys = xs = np.arange(0, 40, 4)
    probs = np.zeros((10, 10, 2), dtype=np.float32)
    probs[..., 0], probs[..., 1] = 0.9, 0.1
    probs[2:6, 2:6, 0], probs[2:6, 2:6, 1] = 0.2, 0.8  # the 16 windows inside rows/cols 8..24
    ev = np.ones((10, 10), dtype=np.uint8)
    if evidence_off:
        ev[evidence_off] = 0
    return StoredWindows(ys, xs, (4, 4), (4, 4), probs, ["a", "b"], ev)


def test_window_test_and_best_scanner_use_the_windows_inside():
    mask = rasterize(ROI.rect(1, 8, 8, 24, 24), (40, 40))
    rel = np.full((40, 40), 0.9, dtype=np.float32)
    rel[mask] = 0.2
    w = _grid(evidence_off=(3, 3))
    t = window_test(mask, w, 0)
    assert t["n_inside"] == 15 and t["n_outside"] == 100 - 16
    assert t["u"] == 0.0 and t["p_value"] < 1e-6
    s = roi_stats(mask, rel, windows=w, label="a")
    assert s["best_scanner"]["label"] == "b"
    assert s["best_scanner"]["n_windows"] == 15  # centres inside, minus the no-evidence one
    assert s["window_test"]["p_value"] == pytest.approx(t["p_value"])
    # per-class maps take precedence over window probabilities
    maps = {"a": np.where(mask, 0.1, 0.9), "b": np.where(mask, 0.6, 0.1)}
    assert roi_stats(mask, rel, windows=w, label="a", class_maps=maps)["best_scanner"]["source"] == "class maps"
    # too few windows inside: no p-value rather than a meaningless one
    small = rasterize(ROI.rect(2, 8, 8, 12, 16), (40, 40))
    assert window_test(small, w, 0)["p_value"] is None


def test_non_overlapping_windows():
    assert non_overlapping(np.arange(0, 17, 2), 4).tolist() == [0, 2, 4, 6, 8]
    assert non_overlapping(np.array([0, 3, 5, 6, 64]), 64).tolist() == [0, 4]


def test_suggestions_exclude_no_evidence_and_rank_by_area_times_contrast():
    rel = np.full((100, 100), 0.9, dtype=np.float32)
    rel[20:60, 20:60] = 0.3
    rel[20:40, 20:60] = np.nan  # no evidence: never suggested
    rel[70:80, 70:90] = 0.05  # smaller, deeper
    s = suggest_regions(rel, min_area=50)
    assert [r.suggested for r in s] == [True, True]
    m0 = rasterize(s[0], rel.shape)
    assert m0.sum() == 800 and not np.isnan(rel[m0]).any()
    assert s[0].stats["score"] == pytest.approx(800 * 0.6, rel=1e-3)
    assert rasterize(s[1], rel.shape).sum() == 200
    assert [r.id for r in s] == [1, 2]
    assert suggest_regions(rel, min_area=1000) == []


def test_suggestion_on_the_forged_sample_overlaps_its_mask():
    from scanlab.services.analysis import AnalysisRequest, run_analysis

    r = run_analysis(AnalysisRequest(str(SAMPLES / "forged_splice.jpg")))
    truth = np.asarray(Image.open(SAMPLES / "forged_splice_mask.png")) > 0
    s = suggest_regions(r.reliability)
    assert s, "no region suggested on a forged sample"
    top = rasterize(s[0], truth.shape)
    precision = (top & truth).sum() / top.sum()
    iou = (top & truth).sum() / (top | truth).sum()
    assert precision > 0.6 and iou > 0.4, (precision, iou)


def test_contains_agrees_with_the_mask_and_simplify_thins_strokes():
    tri = ROI(1, "polygon", [(0, 0), (0, 8), (8, 0)])
    m = rasterize(tri, (10, 10))
    assert all(contains(tri, r + 0.5, c + 0.5) == m[r, c] for r in range(10) for c in range(10))
    assert contains(ROI.rect(2, 1, 1, 3, 3), 2, 2) and not contains(ROI.rect(2, 1, 1, 3, 3), 3.5, 2)
    assert simplify([(0, 0), (0, 0.5), (0, 1), (0, 3), (0, 3.2)], 1.0) == [(0, 0), (0, 1), (0, 3)]
