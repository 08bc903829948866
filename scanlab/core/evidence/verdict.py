"""The verdict for one image (attributed / inconclusive / unknown) and input gating.

Order of the rules (the first that applies decides):

1. fewer than ``min_evidence_windows`` windows with evidence -> ``inconclusive``
   ("too little sensor evidence");
2. the model has an open-set scorer and the image's unknown score exceeds
   ``unknown`` -> ``unknown``, unless the delivery-chain rule says the model
   rejects too many of its own scanners' scans re-saved like this one
   (``max_resaved_known_rejected``) -> ``inconclusive``; for any JPEG, since the
   re-compression test misses most re-saves at nearby qualities;
3. the top class holds less than ``min_vote_fraction`` of the votes, or its
   (calibrated) probability is below ``min_confidence`` -> ``inconclusive``;
4. the mean-feature check (models whose ``open_set.thresholds.mean_feature_check`` is 1:
   ``scanlab train`` writes it with ``gauss-image``): the class mean nearest to the
   image's mean feature (:meth:`scanlab.core.evidence.gauss.GaussScorer.image_class_of`)
   is not the vote's top class -> ``inconclusive``;
5. the reference-coverage rule (models whose manifest records
   ``training_input.reference_coverage``: ``scanlab train`` writes it): more than
   ``max_uncovered_share`` of the scan's windows with evidence lie outside the
   brightness range of some class's training windows -> ``inconclusive``, naming
   the class and its range (:mod:`scanlab.core.evidence.coverage`); it also turns
   rule 2's ``unknown`` into ``inconclusive`` (the uncovered scanner was never
   seen on such a page, so "none of them" is not shown either);
6. the delivery-chain rule: the scan is a re-compressed JPEG (or one outside the
   training qualities) and the model's own measurement at that quality named a
   wrong scanner in more than ``max_resaved_wrong_share`` of its attributions ->
   ``inconclusive`` (:func:`scanlab.core.evidence.gating.delivery_risk`);
7. otherwise ``attributed`` to the top class.

When rule 2 or 6 changed the answer, ``verdict_before_delivery_rule`` says what it
would have been, so the analyst (and the measurement, which records verdicts
before the rule) can see it; when rule 5 did, ``verdict_before_coverage_rule``.

A model without calibration still gets verdicts, flagged ``calibrated: false``;
one without an open-set scorer cannot answer ``unknown`` (the reason says so
when it matters). Input gating (:func:`input_warnings`) never changes the
verdict; it is shown before it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scanlab.core.evidence.coverage import MAX_UNCOVERED_SHARE

# Chosen by measurement (benchmarks/bench_verdict_rules.py, BENCHMARKS.md "Verdict rules
# measured"): on fresh scans of the shipped model's scanners and crops of them, the
# smallest values whose attributed answers are >= 99 % right (lower end of the 95 %
# interval); 3 windows reach it, 2 do not; the vote rules never go below 0.5.
DEFAULT_THRESHOLDS: dict[str, float] = {
    "min_vote_fraction": 0.5,
    "min_confidence": 0.5,
    "min_evidence_windows": 3,
    # the delivery-chain rule (rules 2 and 5): the verdict rules' own aim (attributed answers
    # >= 99% right), and the as-scanned rejection of the shipped model's own scanners (5%)
    "max_resaved_wrong_share": 0.01,
    "max_resaved_known_rejected": 0.05,
}
VERDICTS = ("attributed", "inconclusive", "unknown")
# Rule 4, on in the models ``scanlab train`` writes with ``gauss-image`` (``open_set.thresholds``; absent or 0:
# off, as in older files). Measured on the development banks of a 3 x 10 lab (BENCHMARKS.md, "Lab models
# say unknown", known side): fewer wrong attributions and more never-seen scanners rejected.
MEAN_FEATURE_CHECK = "mean_feature_check"
MEAN_FEATURE_CHECK_RULE = ("inconclusive when the class mean nearest (Mahalanobis, gauss-image) to the image's "
                           "mean feature over its windows with evidence is not the vote's top class")


def wilson_interval(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of the proportion k / n ((0, 1) when n = 0)."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    den = 1 + z * z / n
    c = (p + z * z / (2 * n)) / den
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, c - h), min(1.0, c + h)


@dataclass
class Verdict:
    """Everything the classify JSON adds to an image (docs/formats.md section 3)."""

    verdict: str
    confidence: float | None
    calibrated: bool
    vote_fraction: float
    vote_interval: tuple[float, float]
    unknown_score: float | None
    thresholds: dict[str, float]
    reason: str | None
    n_no_evidence: int
    warnings: list[dict[str, str]] = field(default_factory=list)
    before_delivery_rule: str | None = None  # the verdict rule 2 or 6 replaced by "inconclusive"
    before_coverage_rule: str | None = None  # the verdict rule 5 replaced by "inconclusive"

    def to_json(self) -> dict[str, Any]:
        """JSON keys of the classify entry."""
        return {
            "verdict": self.verdict,
            "confidence": None if self.confidence is None else round(float(self.confidence), 6),
            "calibrated": self.calibrated,
            "vote_fraction": round(float(self.vote_fraction), 6),
            "vote_interval": [round(float(v), 6) for v in self.vote_interval],
            "unknown_score": None if self.unknown_score is None else round(float(self.unknown_score), 6),
            "thresholds": dict(self.thresholds),
            "reason": self.reason,
            "n_no_evidence": int(self.n_no_evidence),
            "warnings": list(self.warnings),
            "verdict_before_delivery_rule": self.before_delivery_rule,
            "verdict_before_coverage_rule": self.before_coverage_rule,
        }

    def short(self, label: str | None) -> str:
        """A few words for lists and status bars: the scanner name only when attributed."""
        if self.verdict == "attributed":
            return str(label)
        return "unknown scanner" if self.verdict == "unknown" else "inconclusive"

    def in_words(self, label: str | None) -> str:
        """One sentence for the app, e.g. "Not any known scanner (unknown score 0.93 above threshold 0.70)"."""
        if self.verdict == "attributed":
            return f"Attributed to {label}"
        if self.verdict == "unknown":
            return (
                f"Not any known scanner (unknown score {self.unknown_score:.2f} above threshold "
                f"{self.thresholds.get('unknown', float('nan')):.2f})"
            )
        return f"Inconclusive: {self.reason}"


def warnings_beside_reason(warnings: list[dict[str, Any]] | None, reason: str | None) -> list[dict[str, Any]]:
    """The warnings a reader has not already read in the verdict's reason.

    Rule 5 (reference coverage) builds its reason from its warning's message; a screen
    or a report that lists the warnings and then the reason would say it twice.
    """
    text = reason or ""
    return [w for w in warnings or [] if not (w.get("message") and str(w["message"]) in text)]


def thresholds_of(manifest: dict[str, Any]) -> dict[str, float]:
    """Thresholds stored in the manifest's ``open_set`` merged over the defaults."""
    th = dict(DEFAULT_THRESHOLDS)
    os_ = manifest.get("open_set") or {}
    th.update({k: float(v) for k, v in (os_.get("thresholds") or {}).items() if isinstance(v, (int, float))})
    return th


def decide(
    votes: np.ndarray,
    mean_probs: np.ndarray,
    label_index: int,
    n_evidence: int,
    n_no_evidence: int,
    *,
    unknown_score: float | None,
    thresholds: dict[str, float],
    calibrated: bool,
    warnings: list[dict[str, str]] | None = None,
    delivery_risk: dict[str, str | None] | None = None,
    feature_label: int | None = None,
    coverage_gap: dict[str, Any] | None = None,
) -> Verdict:
    """Apply the rules of the module docstring to one image's vote.

    ``delivery_risk``: :func:`scanlab.core.evidence.gating.delivery_risk` for this scan
    (None: the delivery-chain rule does not apply). ``feature_label``: the class whose
    mean is nearest to the image's mean feature (rule 4; None: not checked).
    ``coverage_gap``: :func:`scanlab.core.evidence.coverage.coverage_gap` for this scan
    (rule 5; None: every class's training windows cover the scan, or not recorded).
    """
    risk = delivery_risk or {}
    k = int(votes[label_index]) if n_evidence else 0
    frac = k / n_evidence if n_evidence else 0.0
    # no window with evidence: no label (null in the JSON), so no probability of one either
    conf = float(mean_probs[label_index]) if len(mean_probs) and n_evidence else None
    common = dict(
        confidence=conf, calibrated=calibrated, vote_fraction=frac, vote_interval=wilson_interval(k, n_evidence),
        unknown_score=unknown_score, thresholds=dict(thresholds), n_no_evidence=n_no_evidence,
        warnings=list(warnings or []),
    )
    if n_evidence < thresholds["min_evidence_windows"]:
        why = (
            "no window carries sensor evidence (blank, flat or clipped content)"
            if n_evidence == 0
            else f"only {n_evidence} window(s) carry sensor evidence (minimum {int(thresholds['min_evidence_windows'])})"
        )
        return Verdict("inconclusive", reason=why, **common)
    thr_u = thresholds.get("unknown")
    gap = coverage_gap["message"] if coverage_gap else None
    if unknown_score is not None and thr_u is not None and unknown_score > thr_u:
        if gap:
            return Verdict(
                "inconclusive",
                reason=f"{gap}, so its unknown score {unknown_score:.2f} above {thr_u:.2f} does not show another "
                "scanner",
                before_coverage_rule="unknown",
                **common,
            )
        if risk.get("unknown"):
            return Verdict(
                "inconclusive",
                reason=f"{risk['unknown']}, so its unknown score {unknown_score:.2f} above {thr_u:.2f} does not show "
                "another scanner",
                before_delivery_rule="unknown",
                **common,
            )
        return Verdict(
            "unknown",
            reason=f"the scan fits none of the known scanners (unknown score {unknown_score:.2f} above {thr_u:.2f})",
            **common,
        )
    if frac < thresholds["min_vote_fraction"]:
        return Verdict(
            "inconclusive",
            reason=f"votes are split: the top class has {k} of {n_evidence} votes "
            f"(below {thresholds['min_vote_fraction']:.0%})",
            **common,
        )
    if conf is not None and conf < thresholds["min_confidence"]:
        return Verdict(
            "inconclusive",
            reason=f"confidence {conf:.2f} is below {thresholds['min_confidence']:.2f}",
            **common,
        )
    if thresholds.get(MEAN_FEATURE_CHECK) and feature_label is not None and feature_label != label_index:
        return Verdict(
            "inconclusive",
            reason="the vote and the image's mean feature disagree (the mean feature lies nearest to another "
            "scanner's class mean than the vote's)",
            **common,
        )
    if gap:
        return Verdict("inconclusive", reason=f"{gap}, so the top class is not an attribution",
                       before_coverage_rule="attributed", **common)
    if risk.get("attributed"):
        return Verdict("inconclusive", reason=f"{risk['attributed']}, so the top class is not an attribution",
                       before_delivery_rule="attributed", **common)
    return Verdict("attributed", reason=None, **common)


@dataclass
class EvidenceConfig:
    """What a model file says about calibration, open set and its training input."""

    temperature: float = 1.0
    calibrated: bool = False
    calibration_reason: str | None = "the model file has no calibration (older file or another tool)"
    scorer: Any = None  # scanlab.core.evidence.openset.KnnScorer / OtherScorer, or None
    thresholds: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_THRESHOLDS))
    demonstration: bool = False
    training_input: dict[str, Any] | None = None
    open_set_method: str | None = None
    delivery_measured: dict[str, Any] | None = None  # manifest's delivery_chain_measured, quoted by gating

    @classmethod
    def from_model(cls, manifest: dict[str, Any], extras: dict | None = None) -> EvidenceConfig:
        """Read a manifest (and its extra tensors); files without these keys give an uncalibrated config."""
        from scanlab.core.evidence.openset import scorer_from_model

        cal = manifest.get("calibration") or {}
        ok = bool(cal.get("calibrated")) and isinstance(cal.get("temperature"), (int, float)) and cal["temperature"] > 0
        os_ = manifest.get("open_set") or {}
        scorer = scorer_from_model(os_.get("method"), extras or {}, os_.get("params") or {})
        th = thresholds_of(manifest)
        if scorer is None:
            th.pop("unknown", None)
        if (manifest.get("training_input") or {}).get("reference_coverage"):
            # rule 5's bound, only where it applies (older models' verdict JSON keeps its thresholds)
            th.setdefault("max_uncovered_share", MAX_UNCOVERED_SHARE)
        return cls(
            temperature=float(cal["temperature"]) if ok else 1.0,
            calibrated=ok,
            calibration_reason=None if ok else (cal.get("reason") or cls.calibration_reason),
            scorer=scorer,
            thresholds=th,
            demonstration=bool(manifest.get("demonstration", False)),
            training_input=manifest.get("training_input"),
            open_set_method=os_.get("method") if scorer is not None else None,
            delivery_measured=manifest.get("delivery_chain_measured"),
        )
