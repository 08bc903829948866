"""Case workflow shared by the CLI and the app: open, add evidence, review ROIs, sign off.

Every analyst action goes through a function here and is appended to the case's
audit chain; the caller saves (:func:`scanlab.core.case.casefile.save_case`). Opening a
case re-hashes every evidence file: a missing or modified file gives a loud
warning in ``case.warnings`` and an audit entry.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scanlab.core.case.casefile import Case, CaseError, Evidence, Run, load_case, now_iso
from scanlab.core.case.rois import ROI, map_marks_regions, rasterize, roi_stats, suggest_regions
from scanlab.core.engine.reliability import coverage_map, reliability_map
from scanlab.core.errors import ScanLabError
from scanlab.core.io.containers import item_sha256, make_ref, parse_ref
from scanlab.core.io.imaging import sha256_file
from scanlab.core.io.mapstore import StoredWindows
from scanlab.core.jobs import CancelToken, ProgressFn
from scanlab.services.analysis import AnalysisRequest, AnalysisResult, run_analysis

DEFAULT_THRESHOLD = 0.5


def current_user() -> str:
    """The OS user name (the audit log's ``user`` when no analyst name is given)."""
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user database (containers): still log something
        return "unknown"


def evidence_id(sha256: str) -> str:
    """``<eid>``: the first 16 hex digits of the evidence SHA-256."""
    return sha256[:16]


def open_case(path: str | os.PathLike, *, user: str | None = None, check_evidence: bool = True) -> Case:
    """Load a case and re-verify its evidence.

    Each missing or modified evidence file adds a warning to ``case.warnings``
    and an audit entry (``evidence_missing`` / ``evidence_modified``); a
    read-only file adds a warning too. Nothing is written here.
    """
    case = load_case(path)
    who = user or case.meta.get("analyst") or current_user()
    if case.read_only:
        case.warnings.append(f"{case.path}: file is read-only; the case is open read-only (Save as to keep changes)")
    if check_evidence:
        for e in case.evidence.values():
            problem = evidence_problem(e)
            if problem is None:
                continue
            kind, msg = problem
            case.warnings.append(msg)
            case.log(who, kind, {"eid": e.eid, "path": e.info.get("path")}, msg)
    return case


def evidence_problem(e: Evidence) -> tuple[str, str] | None:
    """``(action, message)`` when the evidence file is missing or its bytes changed, else None."""
    ref = e.info.get("path", "")
    p = parse_ref(ref)[0]  # a PDF item or TIFF page: its container file
    if not p.is_file():
        return "evidence_missing", (f"EVIDENCE MISSING: {p} (evidence {e.eid}) is not there; "
                                    "locate it with 'scanlab case locate' (its hash is checked)")
    try:
        actual = item_sha256(ref)  # a container item: the hash of its own embedded bytes
    except ScanLabError as err:
        actual = f"unreadable: {err}"
    p = Path(ref)
    if actual != e.info.get("sha256"):
        return "evidence_modified", (f"EVIDENCE MODIFIED: {p} (evidence {e.eid}) no longer matches its "
                                     f"recorded SHA-256 {e.info.get('sha256')} (now {actual})")
    return None


def locate_evidence(case: Case, eid: str, new_path: str | os.PathLike, *, user: str) -> Evidence:
    """Point evidence ``eid`` at a moved file after checking that its hash matches."""
    e = get_evidence(case, eid)
    _, page, image = parse_ref(e.info.get("path", ""))
    p = Path(new_path)
    if not p.is_file():  # DOC.pdf#page=2&image=1, as `case show` prints it: that item of the moved container
        container, given_page, given_image = parse_ref(str(new_path))
        if given_page is None or not Path(container).is_file():
            raise ScanLabError(f"{p}: file not found")
        p, page, image = Path(container), given_page, given_image
    new = str(p.resolve()) if page is None else make_ref(p.resolve(), page, image)  # the moved container
    if item_sha256(new) != e.info["sha256"]:
        raise ScanLabError(f"{new_path}: not the same file (its SHA-256 differs from evidence {e.eid})")
    old = e.info.get("path")
    e.info["path"] = new
    case.log(user, "evidence_located", {"eid": e.eid, "old": old, "new": e.info["path"]}, f"{old} -> {p}")
    return e


def get_evidence(case: Case, key: str) -> Evidence:
    """Evidence by id, id prefix, file name or path."""
    if key in case.evidence:
        return case.evidence[key]
    hits = [e for e in case.evidence.values()
            if e.eid.startswith(key) or key in (Path(e.info.get("path", "")).name, Path(e.info.get("path", "")).stem)
            or e.info.get("path") == str(Path(key).resolve())]
    if len(hits) == 1:
        return hits[0]
    raise ScanLabError(f"{key}: {'ambiguous' if hits else 'no such'} evidence in the case")


def _dpi(path: str) -> list[float] | None:
    from PIL import Image

    try:
        with Image.open(path) as im:
            d = im.info.get("dpi")
    except OSError:
        return None
    return [float(d[0]), float(d[1])] if d else None


def card_summary(manifest: dict[str, Any]) -> dict[str, Any]:
    """What the report needs from a model card: data, accuracy, calibration, demo flag."""
    tr = manifest.get("training") or {}
    data = tr.get("data") or {}
    counts = data.get("counts") or {}
    met = manifest.get("metrics") or {}
    test = met.get("test") or met.get("val") or {}
    demo = manifest.get("demonstration")
    if demo is None:  # v1 manifests: the shipped model's classes are virtual scanners
        demo = all(str(c).startswith("vscan-") for c in manifest.get("classes", []))
    return {
        "name": manifest.get("name"), "created": manifest.get("created"),
        "classes": list(manifest.get("classes", [])),
        "architecture": manifest.get("architecture"),
        "training_images": {c: sum(v.values()) for c, v in counts.items()},
        "training_folder_hash": data.get("folder_hash"),
        "parent": manifest.get("parent"),
        "test_per_image_accuracy": test.get("per_image_accuracy"),
        "test_per_patch_accuracy": test.get("per_patch_accuracy"),
        "calibration": manifest.get("calibration") or {"calibrated": False, "reason": "model has no calibration"},
        "demonstration": bool(demo),
        "versions": manifest.get("versions"),
    }


def run_to_case(res: AnalysisResult) -> tuple[dict[str, Any], StoredWindows]:
    """The run JSON and window grid of one analysis (docs/formats.md section 6)."""
    g = res.analysis.map_grid
    if g is None:
        raise ScanLabError("a case run needs a map (with_map=True)")
    req = res.request
    entry = res.to_json()
    evidence = getattr(g, "evidence", None)
    info = {
        "time": now_iso(),
        "model": {"name": res.model.name, "sha256": sha256_file(res.model.path), "path": res.model.path,
                  "card": card_summary(res.model.manifest)},
        "parameters": {"sub": list(req.sub), "stride": list(req.stride), "vote_sub": list(req.vote_sub),
                       "label": req.label, "threshold": DEFAULT_THRESHOLD},
        "engine": res.analysis.engine, "device": res.device,
        "timings": {"compute_s": res.compute_s},
        "shape": list(res.analysis.shape),
        "map_label": res.map_label,
        "classify": entry,
    }
    calibrated = bool(entry.get("calibrated", False))
    w = StoredWindows(g.ys, g.xs, tuple(g.sub), tuple(g.stride), g.probs, list(res.classes),
                      None if evidence is None else np.asarray(evidence), getattr(g, "unknown_score", None),
                      calibrated, res.unknown_grid)
    return info, w


def reliability_from_windows(w: StoredWindows, label: str, shape: tuple[int, int]) -> np.ndarray:
    """Eq. (1) from a stored grid; windows without evidence are left out (NaN where none remain)."""
    k = w.classes.index(label)
    return reliability_map(w.probs[:, :, k], w.ys, w.xs, w.sub, shape, evidence=w.evidence)


def run_no_evidence(e: Evidence, run: Run | None = None) -> np.ndarray:
    """(H, W) bool of ``run`` (default: the latest): covered pixels whose covering windows all lack evidence.

    The same definition as the app's hatching (``ImageAnalysis.no_evidence_mask``).
    """
    run = run or latest_run(e)
    h, wd = run.info["shape"]
    w = run.windows
    if w.evidence is None or w.evidence.all():
        return np.zeros((h, wd), dtype=bool)
    rel = reliability_map(np.zeros(w.evidence.shape), w.ys, w.xs, w.sub, (h, wd), evidence=w.evidence)
    return coverage_map(w.ys, w.xs, w.sub, (h, wd)) & np.isnan(rel)


def run_map(e: Evidence, run: Run | None = None) -> np.ndarray:
    """The reliability map (of the run's map label) of ``run`` (default: the latest)."""
    run = run or latest_run(e)
    h, w = run.info["shape"]
    return reliability_from_windows(run.windows, run.info["map_label"], (h, w))


def stored_run_note(e: Evidence, sub: tuple[int, int], stride: tuple[int, int]) -> str:
    """Words when a map of ``sub``/``stride`` is shown over ``e``'s stored run ("" when they agree)."""
    if not e.runs:
        return ""
    p = e.runs[-1].info["parameters"]
    if list(sub) == list(p["sub"]) and list(stride) == list(p["stride"]):
        return ""
    return (f"The map on screen (sub-image {sub[0]}, stride {stride[0]}) is not the stored run's "
            f"(sub-image {p['sub'][0]}, stride {p['stride'][0]}): ROI statistics are the stored run's; "
            "Add current scan to case stores this one.")


def latest_run(e: Evidence) -> Run:
    """The most recent analysis run of an evidence file."""
    if not e.runs or e.runs[-1].windows is None:
        raise ScanLabError(f"evidence {e.eid} has no stored analysis")
    return e.runs[-1]


@dataclass
class PreparedRun:
    """One analysis made ready for a case, computed without touching the case.

    A worker thread builds it (:func:`prepare_run`); the thread that owns the case
    stores it (:func:`record_run`). Everything here is plain data.
    """

    scan: dict[str, Any]  # the evidence info of the scanned file (path, sha256, size, ...)
    info: dict[str, Any]  # the run JSON (docs/formats.md section 6)
    windows: StoredWindows
    model_bytes: bytes  # the model file, copied into the case once per SHA-256
    reliability: np.ndarray  # eq. (1) map of the run's map label (for suggestions and ROI statistics)
    embedded: bytes | None = None


def prepare_run(res: AnalysisResult, *, embed: bool = False) -> PreparedRun:
    """Turn an analysis the analyst already has into a case run (no re-analysis)."""
    info, windows = run_to_case(res)
    s = res.scan
    scan = {"path": s.path, "sha256": s.sha256, "size": s.n_bytes, "width": s.width, "height": s.height,
            "dpi": list(s.dpi) if getattr(s, "dpi", None) else _dpi(s.path), "format": s.format,
            "mode": s.mode, "bit_depth": s.bit_depth}
    if s.container is not None:  # a PDF item or TIFF page: the case names the container and the page
        scan["container"] = s.container_json()
    rel = reliability_from_windows(windows, info["map_label"], tuple(info["shape"]))
    # a container item embeds the whole container (its item alone may not be a readable file)
    embedded = Path(s.container["path"] if s.container else s.path).read_bytes() if embed else None
    return PreparedRun(scan, info, windows, Path(res.model.path).read_bytes(), rel, embedded)


def analyse_for_case(image: str | os.PathLike, *, model: str | None = None, sub: tuple[int, int] = (64, 64),
                     stride: tuple[int, int] = (4, 4), engine: str | None = None, device: str = "auto",
                     embed: bool = False, cancel: CancelToken | None = None,
                     progress: ProgressFn | None = None) -> PreparedRun:
    """Analyse ``image`` for a case (any thread: the case is not touched)."""
    req = AnalysisRequest(path=str(Path(image).resolve()), model=model, sub=sub, stride=stride, engine=engine,
                          device=device, with_map=True)
    return prepare_run(run_analysis(req, cancel=cancel, progress=progress), embed=embed)


def run_matches(res: AnalysisResult, *, model: str | None, sub: tuple[int, int], stride: tuple[int, int],
                device: str = "auto") -> bool:
    """Whether ``res`` is what :func:`analyse_for_case` would compute with these settings."""
    r = res.request
    same_model = (r.model is None and model is None) or (
        r.model is not None and model is not None and Path(r.model).resolve() == Path(model).resolve())
    return (same_model and tuple(r.sub) == tuple(sub) and tuple(r.stride) == tuple(stride)
            and r.device == device and r.label is None and res.analysis.map_grid is not None)


def record_run(case: Case, prep: PreparedRun, *, user: str, suggest: bool = True) -> Evidence:
    """Store a prepared run (new evidence, or a new run of known evidence): the only mutation step.

    Unreviewed suggested regions are (re)computed from the new run and every ROI's
    statistics refreshed. Call it on the thread that owns the case.
    """
    if case.read_only:
        raise CaseError(f"{case.path}: the case is open read-only")
    info, sha = prep.info, prep.scan["sha256"]
    eid = evidence_id(sha)
    e = case.evidence.get(eid)
    if e is None:
        e = Evidence(eid, {**prep.scan, "first_seen": now_iso()})
        if prep.embedded is not None:
            e.embedded = prep.embedded
        case.evidence[eid] = e
        case.log(user, "evidence_added", e.info, f"{e.info['path']} ({sha[:16]})")
    msha = info["model"]["sha256"]
    if msha not in case.models:
        case.models[msha] = prep.model_bytes
    run = Run(info, prep.windows)
    e.runs.append(run)
    c, p = info["classify"], info["parameters"]
    case.log(user, "analysis_run", info, f"{eid}: {c.get('label')} ({c.get('verdict', 'no verdict')}), "
             f"model {info['model']['name']}, sub {p['sub'][0]}x{p['sub'][1]}, "
             f"stride {p['stride'][0]}x{p['stride'][1]}")
    if suggest:
        suggest_for(case, e, user=user, rel=prep.reliability)
    for r in e.rois:
        r.stats = compute_stats(e, r, run=run, rel=prep.reliability)
    return e


def add_evidence(case: Case, image: str | os.PathLike, *, user: str, model: str | None = None,
                 sub: tuple[int, int] = (64, 64), stride: tuple[int, int] = (4, 4), engine: str | None = None,
                 device: str = "auto", embed: bool = False, suggest: bool = True,
                 cancel: CancelToken | None = None, progress: ProgressFn | None = None) -> Evidence:
    """Analyse ``image`` and store it: :func:`analyse_for_case` then :func:`record_run` (one thread)."""
    if case.read_only:
        raise CaseError(f"{case.path}: the case is open read-only")
    prep = analyse_for_case(image, model=model, sub=sub, stride=stride, engine=engine, device=device,
                            embed=embed, cancel=cancel, progress=progress)
    return record_run(case, prep, user=user, suggest=suggest)


def suggest_for(case: Case, e: Evidence, *, user: str, threshold: float = DEFAULT_THRESHOLD,
                rel: np.ndarray | None = None) -> list[ROI]:
    """Replace the unreviewed suggestions of ``e`` with fresh ones from its latest run (``rel``: its map).

    None when that run's unknown score is above the threshold (:func:`map_marks_regions`: its map
    is the fit to a scanner that does not fit the scan); the audit log says so instead.
    """
    # a layer's suggestions (copy-move pairs, scanlab.services.layer_cases) are replaced by that layer only
    keep = [r for r in e.rois if not r.suggested or r.reviewed or r.stats.get("layer")]
    c = latest_run(e).info.get("classify") or {}
    if not map_marks_regions(c):
        new: list[ROI] = []
        detail = (f"{e.eid}: no regions suggested: the scan's unknown score is above the threshold (verdict "
                  f"{c.get('verdict')}), so low reliability for {c.get('label')} does not mark a region from "
                  "another source")
    else:
        rel = run_map(e) if rel is None else rel
        new = suggest_regions(rel, threshold=threshold, start_id=max((r.id for r in keep), default=0) + 1)
        detail = f"{e.eid}: {len(new)} suggested regions"
    e.rois = keep + new
    case.log(user, "regions_suggested", [r.to_dict() for r in new], detail)
    return new


def compute_stats(e: Evidence | None, roi: ROI, threshold: float = DEFAULT_THRESHOLD, *, run: Run | None = None,
                  rel: np.ndarray | None = None) -> dict[str, Any]:
    """Statistics of one ROI against a run (default: the latest of ``e``); ``rel``: that run's map.

    Given ``run`` and a copy of ``roi`` it reads nothing else, so a worker can call it
    while the case changes on the thread that owns it.
    """
    run = run or latest_run(e)
    if rel is None:
        h, w = run.info["shape"]
        rel = reliability_from_windows(run.windows, run.info["map_label"], (h, w))
    mask = rasterize(roi, rel.shape)
    s = roi_stats(mask, rel, threshold=threshold, windows=run.windows, label=run.info["map_label"])
    layer = roi.stats.get("layer")  # a layer ROI keeps its pair statistics (services/layer_cases.py)
    keep = {k: roi.stats[k] for k in ("score", "contrast", "layer", layer) if k and k in roi.stats}
    return {**s, **keep}


def refresh_stats(e: Evidence) -> None:
    """Recompute every ROI's statistics (after a new run)."""
    for r in e.rois:
        r.stats = compute_stats(e, r)


def unreviewed_suggestions(case: Case) -> list[tuple[str, ROI]]:
    """(eid, ROI) of every suggestion nobody has given a verdict yet."""
    return [(e.eid, r) for e in case.evidence.values() for r in e.rois if r.suggested and not r.reviewed]


def sign_off(case: Case, *, analyst: str, statement: str) -> dict[str, Any]:
    """Record the analyst's sign-off (who, when, statement) in the case and the audit log."""
    if not analyst.strip() or not statement.strip():
        raise ScanLabError("a sign-off needs the analyst's name and a statement")
    so = {"analyst": analyst, "time": now_iso(), "statement": statement}
    case.log(analyst, "signed_off", so, statement[:120])
    so["audit_hash"] = case.head_hash
    case.meta["signoff"] = so
    return so


def case_summary(case: Case) -> dict[str, Any]:
    """The ``case show --json`` object."""
    from scanlab.core.case.casefile import FORMAT_VERSION, verify_chain
    from scanlab.services.layer_records import record_id

    ev = []
    for e in case.evidence.values():
        ev.append({"eid": e.eid, **e.info, "embedded": e.embedded is not None,
                   "runs": [{k: r.info.get(k) for k in ("time", "parameters", "engine", "device", "timings",
                                                        "map_label", "classify")}
                            | {"model": {k: r.info["model"].get(k) for k in ("name", "sha256")}}
                            for r in e.runs],
                   "layer_runs": [{"id": record_id(lr), **lr} for lr in e.layer_runs],
                   "rois": [r.to_dict() for r in e.rois]})
    return {"case": case.meta, "format_version": FORMAT_VERSION, "path": str(case.path) if case.path else None,
            "read_only": case.read_only, "evidence": ev, "models": sorted(case.models),
            "unreviewed_suggestions": [{"eid": eid, "id": r.id} for eid, r in unreviewed_suggestions(case)],
            "audit": {"entries": len(case.audit), "head": case.head_hash, "problems": verify_chain(case.audit)},
            "warnings": case.warnings}


def adopt_entry(case: Case, entry: dict[str, Any], payload: Any) -> dict[str, Any]:
    """Append an audit entry written on a :meth:`Case.snapshot` of ``case`` (a report export).

    Verbatim when it still chains to ``case``'s head (so a hash printed from it stays
    true); otherwise the case changed meanwhile and the action is logged afresh.
    """
    if entry.get("prev_hash") == case.head_hash and entry.get("seq") == len(case.audit):
        case.audit.append(dict(entry))
        case.meta["modified"] = entry["time"]
        case.dirty = True
        return entry
    return case.log(entry["user"], entry["action"], payload, entry.get("detail", ""))
