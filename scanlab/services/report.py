"""The case report: one PDF (reportlab, no Qt) plus the raw maps as HDF5 beside it.

The CLI (``scanlab report``) and the app (File > Export report) both call
:func:`export_report`. The export is logged in the audit chain first (with the
maps file's SHA-256), and every page carries "page x of y" and the hash of that
export entry: the head ``scanlab case show`` prints afterwards. Without an analyst
sign-off every page is marked DRAFT. Maps are drawn with the colour map of the case
view (the analyst's choice on screen, default inferno) and the screen's no-evidence
hatching.
"""

from __future__ import annotations

import hashlib
import io
import json
import platform
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import numpy as np

import scanlab
from scanlab.core.case.casefile import Case, Evidence, now_iso, verify_chain
from scanlab.core.io.fileio import atomic_write, atomic_write_bytes, check_writable
from scanlab.core.io.mapstore import write_windows
from scanlab.services import report_figures as figs
from scanlab.services.cases import (
    evidence_problem,
    latest_run,
    run_map,
    run_no_evidence,
)
from scanlab.services.layer_cases import is_layer_roi
from scanlab.services.report_pairs import pair_sections
from scanlab.services.report_text import (
    ATTRIBUTION,
    limitations,
    no_evidence_fraction,
    num,
    pct,
    report_colormap,
    roi_rows,
    verdict_rows,
)
from scanlab.services.report_text import para as _p


def _canvas_class(footer: str, draft: bool) -> type:
    """A canvas that knows the page count when it draws each footer (two passes over the pages)."""
    from reportlab.lib.colors import Color
    from reportlab.pdfgen.canvas import Canvas

    class _Canvas(Canvas):
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, **kw)
            self._states: list[dict[str, Any]] = []

        def showPage(self) -> None:  # noqa: N802 - reportlab's name
            self._states.append(dict(self.__dict__))
            self._startPage()

        def save(self) -> None:
            n = len(self._states)
            for st in self._states:
                self.__dict__.update(st)
                w, h = self._pagesize
                self.setFont("Helvetica", 7.5)
                self.setFillGray(0.25)
                self.drawString(36, 22, footer)
                self.drawRightString(w - 36, 22, f"page {self._pageNumber} of {n}")
                if draft:
                    self.saveState()
                    self.setFont("Helvetica-Bold", 96)
                    self.setFillColor(Color(0.85, 0.1, 0.1, alpha=0.18))
                    self.translate(w / 2, h / 2)
                    self.rotate(45)
                    self.drawCentredString(0, -30, "DRAFT")
                    self.restoreState()
                    self.setFont("Helvetica-Bold", 9)
                    self.setFillColor(Color(0.8, 0.1, 0.1))
                    self.drawString(36, h - 24, "DRAFT - not signed off by the analyst")
                super().showPage()
            super().save()

    return _Canvas


def _image(img: Any, max_w: float, max_h: float) -> Any:
    from reportlab.platypus import Image as RLImage

    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)  # photographs: a tenth of the PNG size
    buf.seek(0)
    scale = min(max_w / img.width, max_h / img.height)
    return RLImage(buf, width=img.width * scale, height=img.height * scale)


def _table(rows: list[list[Any]], widths: list[float] | None = None, header: bool = True) -> Any:
    from reportlab.lib import colors
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.platypus import Paragraph, Table, TableStyle

    cell = ParagraphStyle("cell", fontName="Helvetica", fontSize=8, leading=9.5)
    # long text wraps inside its cell instead of running over the page edge
    rows = [[Paragraph(escape(v), cell) if isinstance(v, str) and len(v) > 28 else v for v in row]
            for row in rows]
    t = Table(rows, colWidths=widths, repeatRows=1 if header else 0, hAlign="LEFT")
    style = [("FONT", (0, 0), (-1, -1), "Helvetica", 8), ("VALIGN", (0, 0), (-1, -1), "TOP"),
             ("GRID", (0, 0), (-1, -1), 0.3, colors.grey)]
    if header:
        style += [("FONT", (0, 0), (-1, 0), "Helvetica-Bold", 8), ("BACKGROUND", (0, 0), (-1, 0), colors.whitesmoke)]
    t.setStyle(TableStyle(style))
    return t


def _scan_rgb(e: Evidence) -> tuple[np.ndarray | None, str | None]:
    """The evidence pixels (checked against the recorded hash), or None and why not."""
    from scanlab.core.io.imaging import load_scan

    problem = evidence_problem(e)
    path = e.info["path"]
    if problem is not None:
        cont = e.info.get("container")  # a container item embeds its whole container
        want = cont["sha256"] if cont else e.info["sha256"]
        if e.embedded is None or hashlib.sha256(e.embedded).hexdigest() != want:
            return None, problem[1]
        import tempfile

        from scanlab.core.io.containers import make_ref

        with tempfile.NamedTemporaryFile(suffix=Path(cont["path"] if cont else path).suffix) as tmp:
            tmp.write(e.embedded)
            tmp.flush()
            name = make_ref(tmp.name, cont["page"], cont["image"] if cont["type"] == "PDF" else None) if cont else tmp.name
            return figs.to_rgb8(load_scan(name).pixels), problem[1] + " (the embedded copy is shown)"
    return figs.to_rgb8(load_scan(path).pixels), None


def _evidence_section(story: list, e: Evidence, n: int, ss: Any, cmap: str) -> None:
    from reportlab.platypus import KeepTogether, PageBreak, Spacer

    run = latest_run(e)
    c = run.info["classify"]
    story += [PageBreak(), _p(f"Evidence {n}: {Path(e.info['path']).name} ({e.eid})", ss["Heading2"])]
    cont = e.info.get("container")
    if cont:  # a PDF's embedded image or a TIFF page: name the file it came from and where
        story.append(_p(f"Image {cont['image']} of page {cont['page']} of the {cont['type']} file {cont['path']} "
                        f"(SHA-256 {cont['sha256']}); stored as {cont['filter']}, extracted without re-encoding.",
                        ss["Small"]))
    rgb, problem = _scan_rgb(e)
    if problem:
        story.append(_p(f"WARNING: {problem}", ss["Warn"]))
    rel = run_map(e, run)
    no_ev = run_no_evidence(e, run)
    over = figs.overlay(rgb, rel, cmap=cmap, no_evidence=no_ev)
    story.append(_image(figs.with_colorbar(figs.annotated(over, e.rois), cmap=cmap), 480, 330))
    not_named = ("" if c.get("verdict") in (None, "attributed") else
                 f" - the verdict is {c.get('verdict')}: this is the fit to a scanner the verdict does not name")
    ne = no_evidence_fraction(e)
    story.append(_p(f"Reliability of {run.info['map_label']} ({cmap} colour map: 0 = does not fit, 1 = fits){not_named}; "
                    f"hatched grey with coloured stripes, as on screen: no evidence (no sub-image there carries sensor signal"
                    + ("" if ne is None else f"; {pct(ne)} of the windows") + "); "
                    "ROIs outlined in magenta with their numbers.", ss["Small"]))
    card = (run.info.get("model") or {}).get("card") or {}
    story += [Spacer(1, 6), _p("Verdict", ss["Heading3"]), _table(verdict_rows(c, card, ss), [130, 340],
                                                                   header=False)]
    votes = c.get("votes") or {}
    rows = [["class", "probability", "votes"]] + [
        [k, f"{v:.4f}", str(votes.get(k, 0))]
        for k, v in sorted(c["probabilities"].items(), key=lambda kv: -kv[1])]
    story += [Spacer(1, 6), _table(rows, [130, 90, 60])]
    for roi in e.rois:
        if is_layer_roi(roi):
            continue  # one section per pair below, both ends side by side
        st = roi.stats or {}
        story += [Spacer(1, 10), KeepTogether([
            _p(f"ROI {roi.id} ({roi.kind}, {'suggested' if roi.suggested else 'drawn'}): "
               f"{roi.verdict or 'NOT REVIEWED'}", ss["Heading3"]),
            _image(figs.with_colorbar(figs.crops(rgb, over, roi), cmap=cmap), 470, 200),
            _table(roi_rows(st), [150, 150, 170]),
            _p(f"Note: {roi.note or '(none)'}", ss["Small"])])]
    story += pair_sections(rgb, tuple(run.info["shape"]), e.rois, ss, image=_image, table=_table, para=_p,
                           records=e.layer_runs)


def _versions(case: Case) -> list[list[str]]:
    import h5py
    import reportlab
    import scipy
    import torch

    devices = sorted({r.info.get("device", "?") for e in case.evidence.values() for r in e.runs})
    return [["component", "version"], ["ScanLab", scanlab.__version__], ["Python", platform.python_version()],
            ["torch", torch.__version__], ["numpy", np.__version__], ["scipy", scipy.__version__],
            ["h5py", h5py.__version__], ["reportlab", reportlab.Version],
            ["platform", platform.platform()], ["analysis devices", ", ".join(devices) or "-"]]


def build_pdf(case: Case) -> tuple[bytes, bool]:
    """The report PDF as bytes and whether it is a draft (no sign-off)."""
    from reportlab.lib.colors import Color
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
    from reportlab.platypus import KeepTogether, PageBreak, SimpleDocTemplate, Spacer

    ss = getSampleStyleSheet()
    ss.add(ParagraphStyle("Small", parent=ss["BodyText"], fontSize=8, leading=10))
    ss.add(ParagraphStyle("Warn", parent=ss["BodyText"], textColor=Color(0.75, 0, 0), fontName="Helvetica-Bold"))
    m = case.meta
    so = m.get("signoff")
    draft = so is None
    story: list[Any] = [_p(f"ScanLab case report: {m['title']}", ss["Title"]), _table([
        ["case id", m["id"]], ["analyst", m["analyst"]], ["agency", m.get("agency") or "-"],
        ["created", m["created"]], ["report date", now_iso()],
        ["ScanLab version", scanlab.__version__], ["case file", str(case.path or "-")],
        ["status", "DRAFT (not signed off)" if draft else f"signed off by {so['analyst']} at {so['time']}"],
    ], [110, 360], header=False), Spacer(1, 8), _p(ATTRIBUTION, ss["BodyText"]), Spacer(1, 8),
        _p("Evidence", ss["Heading2"])]
    rows = [["#", "file", "SHA-256", "size", "pixels", "dpi", "format", "first seen"]]
    for i, e in enumerate(case.evidence.values(), 1):
        inf = e.info
        rows.append([str(i), _p(Path(inf["path"]).name, ss["Small"]), _p(inf["sha256"], ss["Small"]),
                     str(inf.get("size")), f"{inf.get('width')}x{inf.get('height')}",
                     "x".join(f"{d:g}" for d in inf["dpi"]) if inf.get("dpi") else "-",
                     f"{inf.get('format')} {inf.get('bit_depth')}-bit", _p(inf.get("first_seen", ""), ss["Small"])])
    story.append(_table(rows, [16, 80, 150, 42, 52, 36, 50, 60]))
    warnings = [w for w in case.warnings]
    for w in warnings:
        story.append(_p(f"WARNING: {w}", ss["Warn"]))
    cmap = report_colormap(case)
    for i, e in enumerate(case.evidence.values(), 1):
        _evidence_section(story, e, i, ss, cmap)
    story += [PageBreak(), _p("Parameters", ss["Heading2"])]
    prow = [["evidence", "run", "model", "sub", "stride", "engine", "device", "threshold", "compute s"]]
    for e in case.evidence.values():
        for k, r in enumerate(e.runs):
            pr = r.info["parameters"]
            prow.append([e.eid, f"{k:03d}", r.info["model"]["name"], "x".join(map(str, pr["sub"])),
                         "x".join(map(str, pr["stride"])), r.info.get("engine"), r.info.get("device"),
                         str(pr.get("threshold")), num(r.info.get("timings", {}).get("compute_s"), ".2f")])
    story.append(_table(prow))
    story.append(_p("Model card summary", ss["Heading2"]))
    seen = set()
    for e in case.evidence.values():
        for r in e.runs:
            mi = r.info["model"]
            if mi["sha256"] in seen:
                continue
            seen.add(mi["sha256"])
            cd = mi.get("card") or {}
            cal = cd.get("calibration") or {}
            n_img = sum((cd.get("training_images") or {}).values())
            story.append(_table([
                ["model", f"{cd.get('name')} (file SHA-256 {mi['sha256']}; a copy is stored in the case)"],
                ["classes", ", ".join(cd.get("classes") or [])],
                ["trained on", f"{n_img} images in {len(cd.get('training_images') or {})} classes"
                 f" (data hash {cd.get('training_folder_hash')})"],
                ["data", "VIRTUAL scanners only (simulated scanner traces on real content): the bundled model "
                 "knows only virtual scanners and does not identify real scanner models" if cd.get("demonstration")
                 else "the lab's own reference scans (see the model card)"],
                ["test accuracy", f"per image {pct(cd.get('test_per_image_accuracy'))}, per patch "
                 f"{pct(cd.get('test_per_patch_accuracy'))}"],
                ["calibration", "calibrated (" + str(cal.get("method")) + ")" if cal.get("calibrated")
                 else f"uncalibrated ({cal.get('reason') or 'no calibration'})"],
            ], [90, 380], header=False))
    story += [_p("Software, libraries and devices", ss["Heading2"]), _table(_versions(case), [110, 360])]
    story += [_p("Limitations", ss["Heading2"])] + [_p("- " + t, ss["BodyText"]) for t in limitations(case)]
    story += [_p("Attribution", ss["Heading2"]), _p(ATTRIBUTION, ss["BodyText"])]
    signoff: list[Any] = [_p("Analyst sign-off", ss["Heading2"])]
    if draft:
        signoff.append(_p("NOT SIGNED OFF: this report is a draft.", ss["Warn"]))
    else:
        signoff.append(_table([["analyst", so["analyst"]], ["time", so["time"]], ["statement", so["statement"]],
                               ["audit hash at sign-off", so.get("audit_hash", "-")]], [110, 360], header=False))
    story.append(KeepTogether(signoff))
    chain = verify_chain(case.audit)
    story += [PageBreak(), _p("Audit log", ss["Heading2"]),
              _p(f"{len(case.audit)} entries; chain {'INTACT' if not chain else 'BROKEN: ' + '; '.join(chain)}; "
                 f"head {case.head_hash}", ss["Small"])]
    # the time wraps between date and time (an ISO time has no space to break at and
    # ran over the user column); the columns add up to the 523 pt between the margins
    arows = [["#", "time", "user", "action", "detail", "hash"]] + [
        [str(x["seq"]), _p(str(x["time"]).replace("T", " "), ss["Small"]), _p(x["user"], ss["Small"]),
         _p(x["action"], ss["Small"]), _p(x.get("detail", ""), ss["Small"]), x["hash"][:16]] for x in case.audit]
    story.append(_table(arows, [20, 70, 62, 88, 203, 80]))
    buf = io.BytesIO()
    footer = f"ScanLab {scanlab.__version__} | case {m['id']} | audit head {case.head_hash}" + (" | DRAFT" if draft else "")
    doc = SimpleDocTemplate(buf, pagesize=A4, leftMargin=36, rightMargin=36, topMargin=40, bottomMargin=40,
                            title=f"ScanLab case report: {m['title']}", author=m["analyst"])
    doc.build(story, canvasmaker=_canvas_class(footer, draft))
    return buf.getvalue(), draft


def write_maps(case: Case, path: Path) -> None:
    """Every evidence's latest window grid and full reliability map, section 5 layout per group."""
    import h5py

    def _w(tmp: str) -> None:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = "scanlab-case-maps"
            f.attrs["format_version"] = 1
            f.attrs["case"] = json.dumps(case.meta)
            for e in case.evidence.values():
                run = latest_run(e)
                g = f.create_group(e.eid)
                g.attrs["format"], g.attrs["format_version"] = "scanlab-map", 1
                for k, v in (("path", e.info["path"]), ("sha256", e.info["sha256"]),
                             ("model", run.info["model"]["name"]), ("model_sha256", run.info["model"]["sha256"]),
                             ("classes", json.dumps(run.windows.classes)), ("label", run.info["classify"].get("label")),
                             ("map_label", run.info["map_label"]), ("engine", run.info.get("engine")),
                             ("device", run.info.get("device")), ("scanlab_version", scanlab.__version__)):
                    g.attrs[k] = v if v is not None else ""
                g.attrs["sub"], g.attrs["stride"] = run.info["parameters"]["sub"], run.info["parameters"]["stride"]
                g.create_dataset("reliability", data=run_map(e, run), compression="gzip", shuffle=True)
                write_windows(g.create_group("windows"), run.windows)

    atomic_write(path, _w)


def export_report(case: Case, output: str | Path, *, user: str) -> dict[str, Any]:
    """Write ``<name>.maps.h5`` and the PDF beside it; the export is logged in the audit chain.

    The ``report_exported`` entry is appended *before* the PDF is drawn, so the
    head every page prints is that entry's own hash, the head ``scanlab case show``
    prints after the export (the PDF cannot hold a hash of itself; its SHA-256 is
    returned). The entry records the files' paths, the maps file's SHA-256 and the
    head it extends. When writing fails the entry is taken back and ``ScanLabError``
    raised; the maps file may then be left beside the missing PDF.
    """
    out = check_writable(output, (".pdf",), "report file")
    maps = out.with_name(out.stem + ".maps.h5")
    check_writable(maps, (".h5",), "maps file")
    head_before, modified = case.head_hash, case.meta.get("modified")
    draft = case.meta.get("signoff") is None
    write_maps(case, maps)
    maps_sha = hashlib.sha256(maps.read_bytes()).hexdigest()
    payload = {"pdf": str(out.resolve()), "maps": str(maps.resolve()), "maps_sha256": maps_sha,
               "audit_head_before": head_before, "draft": draft, "colormap": report_colormap(case)}
    entry = case.log(user, "report_exported", payload, f"{out.name}{' (DRAFT)' if draft else ''}")
    try:
        pdf, _ = build_pdf(case)
        atomic_write_bytes(out, pdf)
    except BaseException:
        # nothing was exported: the chain must not say it was
        if case.audit and case.audit[-1] is entry:
            case.audit.pop()
            case.meta["modified"] = modified
        raise
    return {**payload, "pdf_sha256": hashlib.sha256(pdf).hexdigest(), "audit_head_in_report": entry["hash"]}
