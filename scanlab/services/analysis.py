"""One analysis of one scan: the request/result pair the CLI and the GUI share.

A request is an immutable snapshot (file, model, grid, engine, device) built on
the caller's thread; :func:`run_analysis` does the work anywhere (a worker
thread in the GUI) and returns a result tagged with the request.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from scanlab.core.engine.engines import select_device
from scanlab.core.engine.patches import Size, as_pair, validate_grid
from scanlab.core.engine.reliability import (
    ImageAnalysis,
    analyze_image,
    reliability_map,
    subimage_probs_multi,
)
from scanlab.core.errors import ScanLabError
from scanlab.core.evidence.coverage import MAX_UNCOVERED_SHARE, coverage_gap, window_brightness
from scanlab.core.evidence.gating import (
    delivery_risk,
    input_warnings,
    resampled_warning,
    rotation_warning,
)
from scanlab.core.evidence.gauss import GaussScorer
from scanlab.core.evidence.openset import (
    LOGIT_METHOD,
    OtherScorer,
    feature_windows,
    image_score,
    sample_windows,
    score_image,
    turned_window_score,
    window_features,
)
from scanlab.core.evidence.verdict import MEAN_FEATURE_CHECK, EvidenceConfig, Verdict, decide
from scanlab.core.io.imaging import Scan, ScanInfo, load_scan, verify_hash
from scanlab.core.io.resampling import detect_upsampling
from scanlab.core.jobs import CancelToken, ProgressFn, check
from scanlab.core.modelfile.store import LoadedModel
from scanlab.services.models import get_model

_ids = itertools.count(1)
ATTRIBUTION = "__attribution__"  # map_for name of the per-region attribution map
UNKNOWN = "__unknown__"  # map_for name of the unknown-score map


@dataclass(frozen=True)
class AnalysisRequest:
    """Everything one analysis needs; immutable so a worker can never see it change."""

    path: str
    model: str | None = None  # path, or None for the shipped default
    sub: Size = (64, 64)  # reliability-map sub-image size
    stride: Size = (4, 4)
    vote_sub: Size = (64, 64)
    engine: str | None = None  # None: the default (dense) engine
    device: str = "auto"
    label: str | None = None  # map this class instead of the predicted one
    with_map: bool = True
    request_id: int = field(default_factory=lambda: next(_ids))


@dataclass
class AnalysisResult:
    """What an analysis produced; ``reliability`` is (H, W) float32 with NaN uncovered."""

    request: AnalysisRequest
    scan: ScanInfo
    pixels: np.ndarray = field(repr=False)
    model: LoadedModel = field(repr=False)
    analysis: ImageAnalysis = field(repr=False)
    label: str = ""
    map_label: str = ""
    reliability: np.ndarray | None = field(default=None, repr=False)
    compute_s: float = 0.0
    device: str = "cpu"
    verdict: Verdict | None = None
    evidence: EvidenceConfig = field(default_factory=EvidenceConfig, repr=False)
    # per-window unknown scores on the non-overlapping 64-px grid (NaN: no evidence), ys, xs
    unknown_grid: tuple[np.ndarray, np.ndarray, np.ndarray] | None = field(default=None, repr=False)
    no_evidence: np.ndarray | None = field(default=None, repr=False)  # (H, W) bool, computed with the map
    # seconds per phase: decode (when decoded here), resampling, vote, evidence, gating, map (docs/formats.md)
    timing: dict[str, float] = field(default_factory=dict)
    # the scan on its restored original grid, when the file is an exact enlargement
    # (scan.resampling): the vote, ``analysis.classification`` and the verdict are computed on it;
    # with a map, ``analysis``'s map grid and ``unknown_grid`` are the file's (its pixel coordinates)
    native_pixels: np.ndarray | None = field(default=None, repr=False)

    @property
    def classes(self) -> list[str]:
        """Class names in model order."""
        return self.model.classes

    def probabilities(self) -> dict[str, float]:
        """Mean class probabilities over the vote grid."""
        c = self.analysis.classification
        return {k: float(v) for k, v in zip(self.classes, c.mean_probs, strict=True)}

    def votes(self) -> dict[str, int]:
        """Vote counts per class."""
        c = self.analysis.classification
        return {k: int(v) for k, v in zip(self.classes, c.votes, strict=True)}

    def map_for(self, label: str) -> np.ndarray:
        """Reliability map for any class name (recomputed from the stored grid, O(pixels)).

        Two further names: :data:`ATTRIBUTION` (per-pixel best class, as float with NaN
        for no evidence) and :data:`UNKNOWN` (the unknown-score map; all NaN when the
        model has no open-set scorer).
        """
        if label == ATTRIBUTION:
            idx = self.class_index_map()
            return np.where(idx >= 0, idx, np.nan).astype(np.float32)
        if label == UNKNOWN:
            u = self.unknown_map()
            return np.full(self.analysis.shape, np.nan, np.float32) if u is None else u
        if label not in self.classes:
            raise ScanLabError(f"unknown class {label!r} (model classes: {', '.join(self.classes)})")
        return self.analysis.class_reliability(self.classes.index(label))

    @property
    def json_label(self) -> str | None:
        """``label`` as written to JSON: None when no window had evidence."""
        return self.label if self.analysis.classification.has_evidence else None

    @property
    def answer(self) -> str:
        """A few words for lists and status bars: the scanner name only when attributed."""
        return self.label if self.verdict is None else self.verdict.short(self.label)

    def no_evidence_mask(self) -> np.ndarray:
        """(H, W) bool: pixels whose every covering sub-image lacks sensor evidence."""
        if self.no_evidence is None:
            self.no_evidence = self.analysis.no_evidence_mask()
        return self.no_evidence

    def class_index_map(self) -> np.ndarray:
        """(H, W) int16 per-pixel attribution (index of the best-fitting class), -1 = no evidence/uncovered."""
        return self.analysis.class_index_map()

    def unknown_map(self) -> np.ndarray | None:
        """(H, W) float32 map of the per-window unknown scores (64-px windows); NaN = no evidence/uncovered.

        None when the model has no open-set scorer.
        """
        if self.unknown_grid is None:
            return None
        scores, ys, xs = self.unknown_grid
        ev = ~np.isnan(scores)
        return reliability_map(np.nan_to_num(scores), ys, xs, (64, 64), self.analysis.shape, evidence=ev)

    def to_json(self) -> dict[str, Any]:
        """The ``classify --json`` entry for this image (docs/formats.md section 3)."""
        out = {
            "path": self.scan.path,
            "sha256": self.scan.sha256,
            "label": self.json_label,
            "probabilities": self.probabilities(),
            "votes": self.votes(),
            "n_patches": int(self.analysis.classification.n_patches),
            "scan": self.scan.scan_json(),
            "container": self.scan.container_json(),
        }
        if self.verdict is not None:
            out.update(self.verdict.to_json())
        return out


def run_analysis(
    request: AnalysisRequest,
    *,
    cancel: CancelToken | None = None,
    progress: ProgressFn | None = None,
    model: LoadedModel | None = None,
    on_loaded: Callable[[Scan], None] | None = None,
    scan: Scan | None = None,
) -> AnalysisResult:
    """Load the scan, classify it and (optionally) compute its reliability map.

    ``on_loaded(scan)`` is called once the scan is decoded and its grid checked,
    before the network runs (the GUI shows the scan while the map is computed).
    ``scan``: the already decoded ``request.path`` (the CLI decodes before it
    imports torch, so bad files fail fast); decoded here when None.

    Raises
    ------
    ScanLabError
        Bad file, bad grid, missing model, unknown label or device.
    Cancelled
        When ``cancel`` was set; nothing is returned or written.
    """
    device = select_device(request.device)
    lm = model or get_model(request.model, device="cpu")
    if request.label is not None and request.label not in lm.classes:
        raise ScanLabError(f"--label {request.label!r} is not a class of the model ({', '.join(lm.classes)})")
    timing: dict[str, float] = {}
    if scan is None:
        t = time.perf_counter()
        scan = load_scan(request.path)
        timing["decode"] = time.perf_counter() - t
    check(cancel)
    shape = scan.shape
    try:
        validate_grid(shape, as_pair(request.vote_sub), as_pair(request.vote_sub))
        if request.with_map:
            validate_grid(shape, as_pair(request.sub), as_pair(request.stride))
    except ValueError as e:
        raise ScanLabError(f"{request.path}: {e}") from None
    if on_loaded is not None:
        on_loaded(scan)
    check(cancel)
    t = time.perf_counter()
    # an exact enlargement is analysed on its original grid (a JPEG cannot be one: not searched)
    up, _ = detect_upsampling(scan.pixels, lossy=scan.info.format == "JPEG" or scan.info.jpeg is not None)
    timing["resampling"] = time.perf_counter() - t
    info = scan.info if up is None else replace(scan.info, resampling=up.to_json())
    native = None if up is None else up.native_pixels(scan.pixels.dtype)
    check(cancel)
    image = scan.pixels if native is None else native  # engines take the decoded scan; dense converts per tile
    cfg = EvidenceConfig.from_model(lm.manifest, lm.extras)
    other = cfg.scorer.head() if isinstance(cfg.scorer, (OtherScorer, GaussScorer)) else None
    t0 = time.perf_counter()
    res = analyze_image(
        lm.net,
        image,
        vote_sub=request.vote_sub,
        map_sub=request.sub if request.with_map and native is None else None,
        map_stride=request.stride,
        engine=request.engine,
        device=device,
        cancel=cancel,
        progress=progress,
        temperature=cfg.temperature,
        # the "other scanner" logit is one more row of the last layer: same pass as the vote
        # (and the gauss-image open set's whitening projection is k more rows of it)
        other=other,
    )
    t1 = time.perf_counter()
    cls = res.classification
    label = lm.classes[cls.label_index]
    u, u_grid = None, None
    if cfg.scorer is not None:
        u, scores, uy, ux = unknown_scores(lm, cfg, image, device, analysis=res)
        u_grid = (scores, uy, ux)
        check(cancel)
    t2 = time.perf_counter()
    warnings = input_warnings(info, cfg.training_input, cfg.delivery_measured)
    if up is not None:
        warnings.append(resampled_warning(info.resampling, with_map=request.with_map))
    if u_grid is not None:
        turned = rotation_warning(turned_scorer(lm, cfg, image, device, u_grid), u, cfg.thresholds.get("unknown"))
        warnings += [turned] if turned else []
    gap = scan_coverage_gap(cfg, image, res)
    warnings += [{"code": "reference_coverage", "message": gap["message"]}] if gap else []
    t3 = time.perf_counter()
    verdict = decide(
        cls.votes, cls.mean_probs, cls.label_index, cls.n_patches, cls.n_no_evidence,
        unknown_score=u, thresholds=cfg.thresholds, calibrated=cfg.calibrated, warnings=warnings,
        delivery_risk=delivery_risk(scan.info.jpeg, cfg.training_input, cfg.delivery_measured, cfg.thresholds),
        feature_label=mean_feature_class(lm, cfg, image, device, res) if cfg.thresholds.get(MEAN_FEATURE_CHECK)
        else None,
        coverage_gap=gap,
    )
    t4 = time.perf_counter()
    map_label = request.label or label
    if native is not None and request.with_map:
        # the maps stay in the file's pixel coordinates: drawn on the file as it is; the
        # classification (and so the verdict) stays the restored grid's
        on_file = analyze_image(lm.net, scan.pixels, vote_sub=request.vote_sub, map_sub=request.sub,
                                map_stride=request.stride, engine=request.engine, device=device, cancel=cancel,
                                temperature=cfg.temperature, other=other)
        if cfg.scorer is not None:
            _, scores, uy, ux = unknown_scores(lm, cfg, scan.pixels, device, analysis=on_file)
            u_grid = (scores, uy, ux)
        res = replace(on_file, classification=res.classification, vote=res.vote)
    rel = res.class_reliability(lm.classes.index(map_label), cancel=cancel) if request.with_map else None
    compute_s = time.perf_counter() - t0
    timing.update(vote=t1 - t0, evidence=(t2 - t1) + (t4 - t3), gating=t3 - t2, map=time.perf_counter() - t4)
    lm.net.to("cpu")
    return AnalysisResult(
        request=request,
        scan=info,
        pixels=scan.pixels,
        model=lm,
        analysis=res,
        label=label,
        map_label=map_label,
        reliability=rel,
        compute_s=compute_s,
        device=str(device),
        verdict=verdict,
        evidence=cfg,
        unknown_grid=u_grid,
        no_evidence=res.no_evidence_mask() if request.with_map else None,
        timing=timing,
        native_pixels=native,
    )


def scan_coverage_gap(cfg: EvidenceConfig, image: np.ndarray, analysis: ImageAnalysis) -> dict[str, Any] | None:
    """The verdict's reference-coverage gap (:func:`scanlab.core.evidence.coverage.coverage_gap`) for this scan.

    None when the model records no ``training_input.reference_coverage``. The windows are
    the 64-px grid with evidence (the vote's own grid when the vote ran on 64-px windows).
    """
    cov = (cfg.training_input or {}).get("reference_coverage")
    if not cov:
        return None
    g = analysis.vote
    if g.sub == (64, 64):
        ys, xs, ev = g.ys, g.xs, g.evidence_mask()
    else:
        ys, xs, ev = feature_windows(image)
    values = window_brightness(image, ys, xs, ev)
    return coverage_gap(values, cov, cfg.thresholds.get("max_uncovered_share", MAX_UNCOVERED_SHARE))


def turned_scorer(
    lm: LoadedModel, cfg: EvidenceConfig, image: np.ndarray, device: Any,
    u_grid: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> Callable[[int], float | None]:
    """The rotation check's ``score(k)``: a bounded, deterministic sample of windows with evidence, turned."""
    scores, ys, xs = u_grid
    iy, ix = sample_windows(~np.isnan(scores))
    corners = np.stack([ys[iy], xs[ix]], axis=1)

    def score(k: int) -> float | None:
        return turned_window_score(cfg.scorer, lm.net, image, corners, k, method=cfg.open_set_method or "",
                                   temperature=cfg.temperature, device=device)

    return score


def unknown_scores(
    lm: LoadedModel, cfg: EvidenceConfig, image: np.ndarray, device: Any, *, window_probs: np.ndarray | None = None,
    analysis: ImageAnalysis | None = None,
) -> tuple[float | None, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`score_image` with the model's scorer (``cfg.scorer`` must be set).

    ``analysis``: the image's analysis. When it ran with the "other scanner" row
    (``other_grid``), the window scores are read from it and the trunk does not
    run again; its 64-px vote grid also gives the logit method its probabilities.
    The logit method needs the calibrated probabilities of the 64-px window grid:
    ``window_probs`` when the caller has them, else computed here.
    """
    g = analysis.other_grid if analysis is not None else None
    if g is not None and g.other is not None and isinstance(cfg.scorer, OtherScorer):
        ev = g.evidence_mask()
        grid = np.where(ev, g.other, np.nan).astype(np.float32)
        return image_score(np.nan_to_num(grid), ev), grid, g.ys, g.xs
    if g is not None and g.other is not None and isinstance(cfg.scorer, GaussScorer) and g.other.ndim == 3:
        ev = g.evidence_mask()
        grid = np.full(ev.shape, np.nan, dtype=np.float32)
        grid[ev] = cfg.scorer.window_scores_of(g.other[ev].astype(np.float64))
        return cfg.scorer.image_score_of(g.other[ev].astype(np.float64)), grid, g.ys, g.xs
    if window_probs is None and analysis is not None and analysis.vote.sub == (64, 64):
        window_probs = analysis.vote.probs
    if cfg.open_set_method == LOGIT_METHOD and window_probs is None:
        window_probs = subimage_probs_multi(lm.net, image, [((64, 64), (64, 64))], device=device,
                                            temperature=cfg.temperature)[0].probs
    return score_image(cfg.scorer, lm.net, image, device=device, method=cfg.open_set_method,
                       window_probs=window_probs)


def mean_feature_class(lm: LoadedModel, cfg: EvidenceConfig, image: np.ndarray, device: Any,
                       analysis: ImageAnalysis | None = None) -> int | None:
    """The class mean nearest to the image's mean feature (``gauss-image`` models; None otherwise or
    without windows with evidence): the verdict's mean-feature check. Read from the vote's own pass
    when it ran with the whitening rows, else from the windows' features."""
    if not isinstance(cfg.scorer, GaussScorer):
        return None
    g = analysis.other_grid if analysis is not None else None
    if g is not None and g.other is not None and g.other.ndim == 3:
        return cfg.scorer.image_class_of(g.other[g.evidence_mask()].astype(np.float64))
    ys, xs, ev = feature_windows(image)
    iy, ix = np.nonzero(ev)
    if not len(iy):
        return None
    f = window_features(lm.net, image, np.stack([ys[iy], xs[ix]], axis=1), device=device)
    return cfg.scorer.image_class_of(cfg.scorer.project(f))


def model_json(lm: LoadedModel) -> dict[str, Any]:
    """The ``model`` object of classify/map JSON: provenance plus what the model can vouch for."""
    cfg = EvidenceConfig.from_model(lm.manifest, lm.extras)
    out = lm.summary()
    out.update({
        "calibrated": cfg.calibrated,
        "calibration_reason": cfg.calibration_reason,
        "temperature": cfg.temperature,
        "open_set": cfg.open_set_method,
        "demonstration": cfg.demonstration,
    })
    return out


def evidence_unchanged(result: AnalysisResult) -> bool:
    """Re-hash the evidence file and compare with the hash taken when it was analysed."""
    return verify_hash(result.scan.path, result.scan.sha256)
