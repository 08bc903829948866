"""A page's stored batch map (``scanlab batch --maps``) as an analysis result, without analysing.

``batch --maps`` writes each page's map as ``RESULTS_DIR/maps/<name>.h5`` (docs/formats.md
section 5: the reliability map, ``/no_evidence``, the window grid ``/windows``, the
unknown-score windows, and the page's provenance, verdict and vote as root attributes).
:func:`load_stored_result` turns such a file back into the
:class:`~scanlab.services.analysis.AnalysisResult` the app shows, so double-clicking a row
of the triage table opens the page with the map the batch computed. It decodes the page
(the scan must still be the one analysed: same SHA-256) but never runs the network.

A file that cannot be used this way (an older map without the vote, another model than
the one given, a page that changed since the batch) raises :class:`StoredMapUnusable`
with the reason; the caller then analyses the page as usual.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from scanlab.core.engine.reliability import Classification, ImageAnalysis, SubImageProbs
from scanlab.core.errors import ScanLabError
from scanlab.core.evidence.verdict import EvidenceConfig, Verdict
from scanlab.core.io.imaging import load_scan
from scanlab.core.io.mapstore import read_windows
from scanlab.core.modelfile.store import LoadedModel
from scanlab.services.analysis import AnalysisRequest, AnalysisResult


class StoredMapUnusable(ScanLabError):
    """The stored map cannot stand for an analysis here (the reason says why)."""


def _json_attr(attrs: Any, key: str) -> Any:
    v = attrs.get(key)
    if v is None:
        return None
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, str) and v[:1] in "[{":
        return json.loads(v)
    return v


def _verdict(d: dict[str, Any] | None) -> Verdict | None:
    if not d:
        return None
    return Verdict(verdict=d["verdict"], confidence=d.get("confidence"), calibrated=bool(d.get("calibrated")),
                   vote_fraction=float(d["vote_fraction"]), vote_interval=tuple(d["vote_interval"]),
                   unknown_score=d.get("unknown_score"), thresholds=dict(d.get("thresholds") or {}),
                   reason=d.get("reason"), n_no_evidence=int(d.get("n_no_evidence", 0)),
                   warnings=list(d.get("warnings") or []))


def load_stored_result(map_path: str | Path, ref: str, model: LoadedModel, *, model_spec: str | None = None,
                       device: str = "auto") -> AnalysisResult:
    """The analysis result a stored batch map records, for the page ``ref`` and ``model``.

    Parameters
    ----------
    map_path : path
        A ``maps/*.h5`` file written by ``scanlab batch --maps``.
    ref : str
        The page (a file, or ``DOC.pdf#page=P&image=I``), decoded for display.
    model : LoadedModel
        The model the app uses; it must be the one the batch used (same weights SHA-256).
    model_spec, device : str
        What the result's request names (the app's current settings).

    Raises
    ------
    StoredMapUnusable
        The file lacks what the app shows, or it was made with another model or from
        other bytes than ``ref`` has now.
    ScanLabError
        The page cannot be read.
    """
    import h5py

    p = Path(map_path)
    try:
        with h5py.File(p, "r") as f:
            a = f.attrs
            if a.get("format") != "scanlab-map" or "windows" not in f or "reliability" not in f:
                raise StoredMapUnusable(f"{p}: not a batch map with a window grid")
            meta = {k: _json_attr(a, k) for k in ("sha256", "label", "map_label", "verdict", "model", "engine", "device",
                                                  "probabilities", "votes", "n_patches", "compute_s")}
            windows = read_windows(f["windows"])
            reliability = np.asarray(f["reliability"][()], dtype=np.float32)
            no_evidence = np.asarray(f["no_evidence"][()], dtype=bool) if "no_evidence" in f else None
            ug = f.get("unknown_windows")
            unknown_grid = None if ug is None else (np.asarray(ug["score"][()], np.float32),
                                                   np.asarray(ug["ys"][()], np.int64),
                                                   np.asarray(ug["xs"][()], np.int64))
    except OSError as e:
        raise StoredMapUnusable(f"{p}: cannot read the stored map ({e})") from None
    if meta["votes"] is None or meta["probabilities"] is None:
        raise StoredMapUnusable(f"{p}: the map was written without the vote (an older batch)")
    want = (meta["model"] or {}).get("weights_sha256")
    have = model.manifest.get("weights_sha256")
    if want != have or windows.classes != model.classes:
        raise StoredMapUnusable(f"{p}: made with model {str(want)[:12]}, the app uses {str(have)[:12]}")
    scan = load_scan(ref)
    if scan.info.sha256 != meta["sha256"]:
        raise StoredMapUnusable(f"{ref}: the file changed since the batch analysed it (SHA-256 differs)")
    if reliability.shape != scan.shape:
        raise StoredMapUnusable(f"{p}: map {reliability.shape} does not fit the page {scan.shape}")
    classes = model.classes
    grid = SubImageProbs(windows.ys, windows.xs, windows.sub, windows.stride, windows.probs, windows.evidence)
    verdict = _verdict(meta["verdict"])
    top = max(classes, key=lambda c: meta["probabilities"][c]) if meta["label"] is None else meta["label"]
    cls = Classification(
        label_index=classes.index(top), votes=np.asarray([meta["votes"][c] for c in classes], dtype=np.int64),
        mean_probs=np.asarray([meta["probabilities"][c] for c in classes], dtype=np.float64),
        n_patches=int(meta["n_patches"]), n_no_evidence=verdict.n_no_evidence if verdict else 0,
    )
    # the vote grid itself is not stored; the map grid stands in for it (nothing the app shows reads it)
    analysis = ImageAnalysis(classification=cls, vote=grid, map_grid=grid, shape=scan.shape,
                             engine=str(meta["engine"] or "dense"), compute_s=float(meta["compute_s"] or 0.0))
    request = AnalysisRequest(path=ref, model=model_spec, sub=windows.sub, stride=windows.stride, device=device,
                              engine=meta["engine"])
    return AnalysisResult(
        request=request, scan=scan.info, pixels=scan.pixels, model=model, analysis=analysis, label=top,
        map_label=str(meta["map_label"] or top), reliability=reliability, compute_s=analysis.compute_s,
        device=f"{meta['device'] or '?'}, stored by the batch", verdict=verdict,
        evidence=EvidenceConfig.from_model(model.manifest, model.extras),
        unknown_grid=unknown_grid, no_evidence=no_evidence,
    )
