"""Verdicts through the delivery chain: how a model's answers hold when a scan was re-saved.

Questioned scans reach a lab re-compressed and resampled. This module measures, for one
model, the verdicts on scans as scanned and after one whole-scan transformation a
questioned file really goes through (:data:`TRANSFORMS`), and builds the manifest's
``delivery_chain_measured`` block (docs/formats.md section 2) that the input gating
quotes and the model card shows. Two callers share it: ``scanlab train`` measures every
model it trains on its own test split (:mod:`scanlab.services.training`), and
``benchmarks/bench_delivery.py`` measures any model on generated or given sets.

Each transformed scan is encoded in memory exactly as a user's file would be (JPEG:
Pillow at the quality given, 4:2:0; resampling: bicubic, saved as PNG), decoded again
from those bytes (so the JPEG facts and the gating are those of a real file) and
analysed through :func:`scanlab.services.analysis.run_analysis`, the path of
``scanlab classify``. Nothing is ever written next to the evidence.

The verdicts are those of :func:`scanlab.core.evidence.verdict.decide` without any rule
that reads an earlier delivery-chain measurement: the model is measured as if it carried
none (:func:`unmeasured`), so a measurement never depends on a previous one of itself.
"""

from __future__ import annotations

import io
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from PIL import Image

import scanlab
from scanlab.core.errors import ScanLabError
from scanlab.core.io.imaging import Scan, as_uint8, decode_bytes, load_scan
from scanlab.core.jobs import CancelToken, ProgressFn, check, report
from scanlab.core.modelfile.store import LoadedModel

TRANSFORMS: dict[str, tuple[str, float | None]] = {  # name -> (kind, parameter)
    "as scanned": ("none", None),
    "jpeg-q90": ("jpeg", 90),
    "jpeg-q75": ("jpeg", 75),
    "resample-0.8": ("resample", 0.8),
    "resample-1.25": ("resample", 1.25),
}
JPEG_NOTE = "decoded and saved again with Pillow at the quality given, 4:2:0"
RESAMPLE_NOTE = "bicubic, saved as PNG"
VERDICTS_NOTE = "before the delivery-chain rule"
KEY = "delivery_chain_measured"
MAX_NOT_ANALYSED = 20  # listed in the manifest; the count is always complete


def transformed(scan: Scan, name: str) -> Scan:
    """``scan`` after transformation ``name``, re-encoded in memory and decoded again from the bytes.

    Raises
    ------
    ImageLoadError
        The result is not a scan ScanLab can analyse (e.g. resampled below one 64-px window).
    """
    kind, arg = TRANSFORMS[name]
    if kind == "none":
        return scan
    im = Image.fromarray(as_uint8(scan.pixels), "RGB")
    buf = io.BytesIO()
    if kind == "jpeg":
        im.save(buf, "JPEG", quality=int(arg))  # Pillow's default for RGB: 4:2:0
        suffix = ".jpg"
    else:
        im.resize((round(im.width * arg), round(im.height * arg)), Image.Resampling.BICUBIC).save(buf, "PNG")
        suffix = ".png"
    return decode_bytes(buf.getvalue(), f"{Path(scan.info.path).stem} ({name}){suffix}")


def unmeasured(lm: LoadedModel) -> LoadedModel:
    """``lm`` without its ``delivery_chain_measured`` (same network and extras, manifest copied)."""
    return replace(lm, manifest={k: v for k, v in lm.manifest.items() if k != KEY})


@dataclass
class Tally:
    """Verdict counts of one set of scans through one transformation."""

    known: bool
    counts: dict[str, int] = field(default_factory=dict)
    warnings: dict[str, int] = field(default_factory=dict)
    not_analysed: int = 0

    def __post_init__(self) -> None:
        keys = ("right", "wrong", "unknown", "inconclusive") if self.known else ("attributed", "unknown", "inconclusive")
        self.counts = {k: self.counts.get(k, 0) for k in keys}

    @property
    def n(self) -> int:
        """Scans analysed (those that could not be are left out of the shares)."""
        return sum(self.counts.values())

    def share(self, *keys: str) -> float | None:
        """The share of the analysed scans with one of these outcomes, rounded (None: none analysed)."""
        return round(sum(self.counts[k] for k in keys) / self.n, 4) if self.n else None

    def to_json(self) -> dict[str, Any]:
        """Raw counts (``bench_delivery.py --json``)."""
        return {"n": self.n, **self.counts, "not_analysed": self.not_analysed, "warnings": dict(self.warnings)}


@dataclass
class Measurement:
    """The tallies of one model: transformation -> known / unseen, and the scans that could not be analysed."""

    tallies: dict[str, dict[str, Tally]]
    n_known: int
    n_unseen: int
    not_analysed: list[dict[str, str]] = field(default_factory=list)


def measure(
    lm: LoadedModel,
    known: Sequence[tuple[str | os.PathLike, str]],
    unseen: Sequence[str | os.PathLike],
    names: Sequence[str] = tuple(TRANSFORMS),
    *,
    root: str | os.PathLike | None = None,
    engine: str | None = None,
    device: str = "auto",
    cancel: CancelToken | None = None,
    progress: ProgressFn | None = None,
    with_rule: bool = False,
) -> Measurement:
    """Analyse every scan through every transformation in ``names`` and count the verdicts.

    ``known``: (path, true class name) of scans of the model's own scanners; ``unseen``:
    paths of scans of scanners it never saw. Each file is read (read-only) and decoded
    once. A scan that cannot be read, or whose transformed version cannot be analysed
    (too small for one window after resampling, say), is left out of that row's shares
    and listed in :attr:`Measurement.not_analysed` (paths relative to ``root`` when given).
    Progress counts analyses; cancel is checked before each. The verdicts are those
    before the delivery-chain rule (the model is analysed without its stored
    measurement, which the rule reads); ``with_rule`` analyses the model as it is, to
    see the rule's effect (never to store).

    Raises
    ------
    Cancelled
        When ``cancel`` was set.
    """
    from scanlab.services.analysis import AnalysisRequest, run_analysis

    model = lm if with_rule else unmeasured(lm)
    tallies = {t: {"known": Tally(True), "unseen": Tally(False)} for t in names}
    missed: list[dict[str, str]] = []
    jobs = [(Path(p), c) for p, c in known] + [(Path(p), None) for p in unseen]
    total, done = len(jobs) * len(names), 0

    def left_out(path: Path, t: str | None, why: str) -> None:
        shown = path.relative_to(root).as_posix() if root and path.is_relative_to(root) else str(path)
        missed.append({"path": shown, "transformation": t or "all", "reason": why})

    for path, true in jobs:
        check(cancel)
        side = "known" if true is not None else "unseen"
        try:
            scan = load_scan(path)
        except ScanLabError as e:
            left_out(path, None, str(e))
            for t in names:
                tallies[t][side].not_analysed += 1
            done += len(names)
            report(progress, done, total)
            continue
        for t in names:
            check(cancel)
            tally = tallies[t][side]
            try:
                s = transformed(scan, t)
                r = run_analysis(AnalysisRequest(path=s.info.path, engine=engine, device=device, with_map=False),
                                 model=model, scan=s, cancel=cancel)
            except ScanLabError as e:
                left_out(path, t, str(e))
                tally.not_analysed += 1
            else:
                v = r.verdict.verdict
                if v == "attributed" and true is not None:
                    v = "right" if r.label == true else "wrong"
                tally.counts[v] += 1
                for w in r.verdict.warnings:
                    tally.warnings[w["code"]] = tally.warnings.get(w["code"], 0) + 1
            done += 1
            report(progress, done, total)
    return Measurement(tallies, len(known), len(unseen), missed)


def rows_of(m: Measurement) -> dict[str, dict[str, Any]]:
    """The manifest rows: per transformation, the shares of the scans analysed (None where none was)."""
    rows = {}
    for name, t in m.tallies.items():
        kind, arg = TRANSFORMS[name]
        k, u = t["known"], t["unseen"]
        rows[name] = {"kind": kind, "parameter": arg,
                      "known_right": k.share("right"), "known_wrong": k.share("wrong"),
                      "known_unknown_or_inconclusive": k.share("unknown", "inconclusive"),
                      "unseen_rejected": u.share("unknown", "inconclusive"),
                      "known_analysed": k.n, "unseen_analysed": u.n}
    return rows


def source_commit() -> str:
    """The short git commit of the ScanLab source in use, or ``scanlab <version>`` outside a checkout."""
    src = Path(scanlab.__file__).resolve().parents[1]
    if (src / ".git").exists():
        try:
            return subprocess.run(["git", "-C", str(src), "rev-parse", "--short", "HEAD"], capture_output=True,
                                  text=True, check=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return f"scanlab {scanlab.__version__}"


def measured_block(m: Measurement, *, benchmark: str, known_set: str, unseen_set: str | None) -> dict[str, Any]:
    """The manifest's ``delivery_chain_measured`` (docs/formats.md section 2) from a measurement."""
    block: dict[str, Any] = {
        "benchmark": benchmark, "commit": source_commit(),
        "measured": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "verdicts": VERDICTS_NOTE,
        "known_scans": m.n_known, "unseen_scans": m.n_unseen,
        "known_set": known_set, "unseen_set": unseen_set,
        "jpeg": JPEG_NOTE, "resample": RESAMPLE_NOTE, "rows": rows_of(m),
        # the verdict rule's "unknown" half reads these rows for every JPEG, not only visibly re-saved ones
        "any_jpeg": True,
    }
    if m.not_analysed:
        block["not_analysed"] = {"count": len(m.not_analysed), "examples": m.not_analysed[:MAX_NOT_ANALYSED]}
    return block
