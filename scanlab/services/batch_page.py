"""One page of a batch: analyse it and turn the result into a results-table row.

This is what every engine runs (the in-process loop, a pool worker, a Ray actor):
:func:`analyse_page` never raises for a bad input; the problem becomes the row's
``error``. Only :class:`~scanlab.core.errors.Cancelled` escapes.

The ``suspicion`` score (docs/formats.md, "Batch results") ranks pages for review
by how strongly they carry a region that does not fit the page's own scanner::

    suspicion = contrast * confidence
    contrast   = clip(ring mean - inside mean, 0, 1) of the largest suggested region
    confidence = 1 - p   (two-sided Mann-Whitney p of the window test), 0.5 when the
                          region holds too few windows to test

It is 0 when no suggested region exists (no connected low-reliability area of at
least ``min_region_area`` evidence pixels, or a page whose unknown score is above the
threshold: :func:`scanlab.core.case.rois.map_marks_regions`) and null for a page that failed.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import scanlab
from scanlab.core.errors import Cancelled, ScanLabError
from scanlab.core.io import containers
from scanlab.core.io.imaging import sha256_file
from scanlab.core.jobs import CancelToken
from scanlab.services.batch_table import MAPS_DIR, TIMING_FIELDS, empty_row

Task = dict[str, Any]
"""One unit of work (plain JSON, so it travels to pool workers and Ray actors):
``input`` (the resolved file), ``ref`` (what is loaded: the file, or a reference such
as ``DOC.pdf#page=2&image=1``), ``container`` (``"pdf"``/``"tiff"``),
``container_sha256``, ``page``, ``image_index`` (1-based, null for a plain file),
``skip`` (a reason not to analyse it) and ``fail`` (the one-line error of a container
that could not be opened), each null when not set."""


@dataclass(frozen=True)
class BatchParams:
    """The analysis parameters of a batch; with the model's hash they form the resume identity."""

    sub: tuple[int, int] = (64, 64)
    stride: tuple[int, int] = (4, 4)
    engine: str | None = None
    device: str = "auto"  # not part of the identity: where it runs, not what it computes
    threshold: float = 0.5
    min_region_area: int = 1024
    maps: bool = False

    def to_json(self) -> dict[str, Any]:
        """The ``parameters`` column (canonical: sorted keys)."""
        return {"sub": list(self.sub), "stride": list(self.stride), "vote_sub": [64, 64],
                "engine": self.engine or "dense", "threshold": self.threshold,
                "min_region_area": self.min_region_area, "maps": self.maps}

    def canonical(self) -> str:
        """``to_json`` as the exact string stored in the table."""
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))

    def key(self, model_sha256: str) -> str:
        """The resume identity of a row: model hash plus parameters."""
        return hashlib.sha256(f"{model_sha256}|{self.canonical()}".encode()).hexdigest()[:16]


def _plain(path: Path) -> Task:
    return {"input": str(path), "ref": str(path), "container": None, "container_sha256": None, "page": None,
            "image_index": None, "skip": None, "fail": None}


def _line(text: str, fallback: str) -> str:
    lines = text.strip().splitlines()
    return lines[0][:300] if lines else fallback


def expand_tasks(path: Path) -> list[Task]:
    """The tasks of one input file: one per embedded image of a PDF or page of a multi-page TIFF.

    A container page without a scanned image is a task with ``skip`` (its one-line
    reason); a container that cannot be opened (corrupt, encrypted, hostile) is one
    task with ``fail`` (its one-line error). Never raises for a bad file.
    """
    if path.suffix.lower() not in containers.CONTAINER_SUFFIXES:
        return [_plain(path)]
    try:
        items = containers.expand(path)
    except ScanLabError as e:
        return [{**_plain(path), "fail": _line(str(e), f"{path}: cannot read")}]
    except Exception as e:  # noqa: BLE001 - one hostile file must never abort an archive run
        return [{**_plain(path), "fail": _line(f"{path}: cannot read ({type(e).__name__}: {e})", str(path))}]
    out = []
    file_sha = next((it.container["sha256"] for it in items if it.container), None)
    for it in items:
        c = it.container
        if c is not None:
            out.append({"input": str(path), "ref": it.ref, "container": str(c["type"]).lower(),
                        "container_sha256": c["sha256"], "page": int(c["page"]), "image_index": int(c["image"]),
                        "skip": None, "fail": None})
            continue
        _, page, _ = containers.parse_ref(it.ref)
        if page is None:  # a plain image (a one-page TIFF)
            out.append(_plain(path))
            continue
        if file_sha is None:  # a container whose pages are all empty: hash it here, once
            try:
                file_sha = sha256_file(path)
            except OSError:
                file_sha = None
        kind = "pdf" if path.suffix.lower() == ".pdf" else "tiff"
        out.append({"input": str(path), "ref": it.ref, "container": kind, "container_sha256": file_sha,
                    "page": page, "image_index": None, "skip": f"{it.ref}: {it.empty}", "fail": None})
    if not out:  # a PDF without a page
        out.append({**_plain(path), "fail": f"{path}: the PDF has no pages"})
    return out


def peak_rss_mb() -> float | None:
    """This process's peak resident memory in MiB (None where ``resource`` is missing)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:300] if text else type(e).__name__


def _base_row(task: Task, model: Any, params: BatchParams) -> dict[str, Any]:
    row = empty_row()
    row.update({k: task.get(k) for k in ("input", "container", "container_sha256", "page", "image_index")})
    row["model_name"] = model.name
    row["model_sha256"] = model.manifest.get("_file_sha256")
    row["parameters"] = params.canonical()
    row["params_key"] = params.key(str(row["model_sha256"]))
    row["scanlab_version"] = scanlab.__version__
    return row


def _fill_scan(row: dict[str, Any], info: Any) -> None:
    row.update({"sha256": info.sha256, "n_bytes": info.n_bytes, "format": info.format, "mode": info.mode,
                "width": info.width, "height": info.height, "bit_depth": info.bit_depth})
    if info.dpi:
        row["dpi_x"], row["dpi_y"] = float(info.dpi[0]), float(info.dpi[1])
    jpeg = info.scan_json().get("jpeg")  # JPEG facts, where the decoder reports them
    if isinstance(jpeg, dict):
        row["jpeg"] = json.dumps(jpeg, sort_keys=True)
        q = jpeg.get("quality", jpeg.get("quality_estimate"))
        row["jpeg_quality"] = float(q) if isinstance(q, (int, float)) else None
        ss = jpeg.get("subsampling", jpeg.get("chroma_subsampling"))
        row["jpeg_subsampling"] = None if ss is None else str(ss)
        rc = jpeg.get("recompressed", jpeg.get("double_compressed"))
        row["jpeg_recompressed"] = None if rc is None else bool(rc)


def _finite(v: Any) -> float | None:
    return None if v is None or not math.isfinite(float(v)) else float(v)


def _fill_regions(row: dict[str, Any], result: Any, params: BatchParams) -> None:
    """Evidence-pixel fractions, the largest suggested region's statistics, the suspicion score."""
    from scanlab.core.case.rois import map_marks_regions, rasterize, roi_stats, suggest_regions
    from scanlab.core.io.mapstore import StoredWindows

    rel = result.reliability
    finite = rel[np.isfinite(rel)]
    row["threshold"] = params.threshold
    row["low_fraction"] = float((finite < params.threshold).mean()) if finite.size else None
    row["no_evidence_fraction"] = float(result.no_evidence_mask().mean())
    v = getattr(result, "verdict", None)
    marks = map_marks_regions(v.to_json() if v is not None else {"verdict": row.get("verdict")})
    rois = suggest_regions(rel, threshold=params.threshold, min_area=params.min_region_area) if marks else []
    row["n_regions"] = len(rois)
    row["suspicion"] = 0.0
    if not rois:
        return
    # the largest of the (at most 8) regions the app would suggest; ties: the better-ranked one
    roi = max(rois, key=lambda r: (r.stats["area"], -r.id))
    g = result.analysis.map_grid
    windows = StoredWindows(g.ys, g.xs, g.sub, g.stride, g.probs, result.classes, g.evidence_mask(), None,
                            result.evidence.calibrated)
    st = roi_stats(rasterize(roi, rel.shape), rel, threshold=params.threshold, windows=windows,
                   label=result.map_label)
    r0, c0, r1, c1 = roi.bbox()
    row["region_area"] = int(st["area"])
    row["region_bbox"] = [math.floor(r0), math.floor(c0), math.ceil(r1), math.ceil(c1)]
    inside, ring = _finite(st["inside"]["mean"]), _finite(st["ring"]["mean"])
    row["region_inside_mean"], row["region_ring_mean"] = inside, ring
    p = (st.get("window_test") or {}).get("p_value")
    row["region_p_value"] = _finite(p)
    contrast = min(1.0, max(0.0, ring - inside)) if inside is not None and ring is not None else 0.0
    row["region_contrast"] = contrast
    row["suspicion"] = contrast * (0.5 if row["region_p_value"] is None else 1.0 - row["region_p_value"])


def map_name(task: Task) -> str:
    """A page's map file name: deterministic, unique per page, readable."""
    key = f"{task['input']}|{task.get('page')}|{task.get('image_index')}"
    stem = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in Path(task["input"]).stem)[:60]
    page = f"_p{task['page']}" if task.get("page") is not None else ""
    if task.get("image_index") is not None and task.get("container") == "pdf":
        page += f"_i{task['image_index']}"
    return f"{stem}{page}_{hashlib.sha256(key.encode()).hexdigest()[:12]}.h5"


def _write_map(row: dict[str, Any], result: Any, task: Task, results_dir: Path) -> None:
    from scanlab.core.io.mapstore import StoredWindows
    from scanlab.services.analysis import model_json
    from scanlab.services.exports import write_map

    g = result.analysis.map_grid
    windows = StoredWindows(g.ys, g.xs, g.sub, g.stride, g.probs, result.classes, g.evidence_mask(), None,
                            result.evidence.calibrated)
    rel_path = f"{MAPS_DIR}/{map_name(task)}"
    meta = {"path": result.scan.path, "sha256": result.scan.sha256, "label": result.json_label,
            "map_label": result.map_label, "what": "reliability", "sub": list(g.sub), "stride": list(g.stride),
            "engine": result.analysis.engine, "device": result.device, "shape": list(result.reliability.shape),
            "container": task.get("container"), "container_sha256": task.get("container_sha256"),
            "page": task.get("page"), "image_index": task.get("image_index"), "ref": task.get("ref"),
            "verdict": result.verdict.to_json() if result.verdict else None, "model": model_json(result.model),
            "scan": result.scan.scan_json(),
            # the vote, so the app can show this page from its map without analysing it again
            "probabilities": result.probabilities(), "votes": result.votes(),
            "n_patches": int(result.analysis.classification.n_patches), "compute_s": result.compute_s}
    (results_dir / MAPS_DIR).mkdir(parents=True, exist_ok=True)
    write_map(results_dir / rel_path, result.reliability, meta, no_evidence=result.no_evidence_mask(),
              windows=windows, unknown_windows=result.unknown_grid, class_names=result.classes)
    row["map_path"] = rel_path


def _slow_hook() -> None:
    """``SCANLAB_TEST_BATCH_SLOW`` (tests only): seconds to wait per page, so a test can kill a run half-way."""
    v = os.environ.get("SCANLAB_TEST_BATCH_SLOW")
    if v:
        time.sleep(float(v))


def failed_row(task: Task, model: Any, params: BatchParams, error: str) -> dict[str, Any]:
    """The row of a page that could not be analysed for a reason found outside :func:`analyse_page`."""
    row = _base_row(task, model, params)
    row["status"], row["error"] = "failed", error
    if not task.get("container"):
        try:
            row["sha256"] = sha256_file(task["input"])
        except OSError:
            pass
    row["timing"] = dict.fromkeys(TIMING_FIELDS)
    return row


_opened: dict[tuple[str, int, int], dict[str, Any]] = {}  # the last container this process opened


def load_task(task: Task) -> Any:
    """Decode a task's image (:func:`scanlab.core.io.containers.load_item` on its reference).

    The pages of one container arrive one after another (tasks are sorted), so the
    last container's expansion is kept: a PDF of N images is then read and parsed once,
    not N times (each :func:`~scanlab.core.io.containers.expand` reads the whole file
    and hashes every stream). The key is the file's path, size and modification time;
    a container whose SHA-256 differs from the one discovery saw is an error (the file
    changed during the run).
    """
    ref = task.get("ref") or task["input"]
    if not task.get("container") or task.get("page") is None:
        return containers.load_item(ref)
    path = Path(task["input"])
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _opened:
        _opened.clear()  # one container at a time: its bytes stay in memory while its pages run
        _opened[key] = {it.ref: it for it in containers.expand(path)}
    item = _opened[key].get(ref)
    if item is None:
        return containers.load_item(ref)  # not in the file as it is now: the reader says why
    if item.container and item.container.get("sha256") != task.get("container_sha256"):
        raise ScanLabError(f"{ref}: the file changed since the run listed its pages; run again with --resume")
    return item.load()


def analyse_page(task: Task, model: Any, params: BatchParams, results_dir: Path, *,
                 cancel: CancelToken | None = None) -> dict[str, Any]:
    """Analyse one page and return its row; a bad input gives a ``failed`` row, never an exception.

    Parameters
    ----------
    task : dict
        See :data:`Task`.
    model : LoadedModel
        Loaded once per worker.
    params : BatchParams
    results_dir : Path
        Where ``--maps`` writes ``maps/<name>.h5``.
    cancel : CancelToken, optional
        Checked between the analysis's batches (the in-process engine).

    Raises
    ------
    Cancelled
        Only this: every other problem is recorded in the row.
    """
    from scanlab.services.analysis import AnalysisRequest, run_analysis

    t0 = time.perf_counter()
    row = _base_row(task, model, params)
    timing = dict.fromkeys(TIMING_FIELDS)
    if task.get("skip"):
        row["status"], row["error"] = "skipped", str(task["skip"])
    elif task.get("fail"):  # a container that could not be opened: one row for the whole file
        row["status"], row["error"] = "failed", str(task["fail"])
    else:
        try:
            _slow_hook()
            ref = task.get("ref") or task["input"]
            scan = load_task(task)  # a PDF image / TIFF page through the same reader as classify
            _fill_scan(row, scan.info)
            timing["load_s"] = time.perf_counter() - t0
            req = AnalysisRequest(path=ref, model=model.path, sub=params.sub, stride=params.stride,
                                  engine=params.engine, device=params.device, with_map=True)
            r = run_analysis(req, model=model, scan=scan, cancel=cancel)
            timing["compute_s"] = r.compute_s
            v = r.verdict
            c = r.analysis.classification
            row.update({"verdict": v.verdict, "label": r.json_label, "confidence": _finite(v.confidence),
                        "calibrated": bool(v.calibrated), "vote_fraction": float(v.vote_fraction),
                        "vote_interval_lo": float(v.vote_interval[0]), "vote_interval_hi": float(v.vote_interval[1]),
                        "unknown_score": _finite(v.unknown_score), "reason": v.reason or None,
                        "windows_evidence": int(c.n_patches), "windows_no_evidence": int(c.n_no_evidence),
                        "warnings": [str(w.get("message", w)) for w in v.warnings] + list(scan.info.notes),
                        "device": r.device})
            t1 = time.perf_counter()
            _fill_regions(row, r, params)
            if params.maps:
                _write_map(row, r, task, results_dir)
            timing["regions_s"] = time.perf_counter() - t1
            row["status"] = "analysed"
        except Cancelled:
            raise
        except MemoryError:
            row["status"], row["error"] = "failed", f"{task.get('ref') or task['input']}: out of memory"
        except ScanLabError as e:
            row["status"], row["error"] = "failed", _one_line(e)
        except Exception as e:  # noqa: BLE001 - one bad page must never abort an archive run
            row["status"], row["error"] = "failed", f"{task.get('ref') or task['input']}: internal error ({type(e).__name__}: {_one_line(e)})"
    if row["status"] != "analysed":
        # keep what was measured before the failure out of the verdict columns, but hash the file
        if row["sha256"] is None and not task.get("container"):
            try:
                row["sha256"] = sha256_file(task["input"])
            except OSError:
                pass
    timing["total_s"] = time.perf_counter() - t0
    timing["worker_peak_rss_mb"] = peak_rss_mb()
    row["timing"] = timing
    return row
