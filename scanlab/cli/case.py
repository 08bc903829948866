"""``scanlab case ...``, ``scanlab report`` and ``scanlab verify`` (case files, headless).

Every command that changes a case takes the case lock, applies one action
through :mod:`scanlab.services.cases` (which logs it in the audit chain) and
saves atomically; nothing is written when the action fails. Imports of numpy,
h5py and torch happen inside the commands so ``scanlab --help`` stays cheap.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scanlab.core.errors import ScanLabError


def _eprint(*a: Any) -> None:
    print(*a, file=sys.stderr, flush=True)


def _open(path: str, user: str | None = None, *, quiet: bool = False):
    from scanlab.services.cases import open_case

    case = open_case(path, user=user)
    if not quiet:
        for w in case.warnings:
            _eprint(f"scanlab: warning: {w}")
    return case


def _modify(a: argparse.Namespace, action: Callable[[Any, str], Any]) -> Any:
    """Lock the case, open it, apply ``action(case, user)``, save; returns the action's result."""
    from scanlab.core.case.casefile import CaseLock, save_case

    with CaseLock(a.case):
        case = _open(a.case, getattr(a, "user", None))
        if case.read_only:
            raise ScanLabError(f"{a.case}: the case file is read-only; nothing changed")
        user = getattr(a, "user", None) or case.meta.get("analyst") or "unknown"
        out = action(case, user)
        save_case(case)
    return out


def _size(text: str, what: str) -> tuple[int, int]:
    from scanlab.core.engine.patches import parse_size

    try:
        s = parse_size(str(text))
    except ValueError as e:
        raise ScanLabError(str(e)) from None
    if what == "--sub" and min(s) < 64:
        raise ScanLabError(f"--sub {text}: sub-image size must be at least 64")
    if min(s) < 1:
        raise ScanLabError(f"{what} {text}: must be at least 1")
    return s


# ---------------------------------------------------------------- commands


def cmd_case_new(a: argparse.Namespace) -> int:
    from scanlab.core.case.casefile import CaseLock, new_case, save_case
    from scanlab.core.io.fileio import check_writable

    p = check_writable(a.case, (".scanlab",), "case file")
    if p.exists():
        raise ScanLabError(f"{p}: already exists; a new case never overwrites one")
    with CaseLock(p):
        case = new_case(a.title, a.analyst, a.agency or "")
        save_case(case, p)
    print(f"created {p} (case {case.meta['id']}: {a.title!r}, analyst {a.analyst})")
    return 0


def cmd_case_add(a: argparse.Namespace) -> int:
    from scanlab.services.cases import add_evidence
    from scanlab.terminal import progress_bar

    sub, stride = _size(a.sub, "--sub"), _size(a.stride, "--stride")
    from scanlab.core.io.containers import expand, parse_ref

    files = [parse_ref(img)[0] for img in a.images]
    for img, f in zip(a.images, files, strict=True):  # fail before any work on a file that is not there
        if not f.is_file():
            raise ScanLabError(f"{img}: file not found")
    from scanlab.core.io.fileio import refuse_overwrite

    refuse_overwrite(a.case, [str(f) for f in files], "an evidence file")  # the case is rewritten in place
    # a PDF or multi-page TIFF is one piece of evidence per embedded image; a damaged one stops here,
    # before the case is touched
    refs = []
    for img in a.images:
        for it in expand(img):
            if it.empty is not None:
                print(f"scanlab: note: {it.ref}: {it.empty}", file=sys.stderr)
            else:
                refs.append(it.ref)
    if not refs:
        raise ScanLabError(f"{', '.join(a.images)}: no scanned image to add")

    def action(case: Any, user: str) -> list[Any]:
        added = []
        for img in refs:
            with progress_bar(Path(img).name, False) as bar:
                e = add_evidence(case, img, user=user, model=a.model, sub=sub, stride=stride, engine=a.engine,
                                 device=a.device, embed=a.embed, progress=bar)
            c = e.runs[-1].info["classify"]
            _add_layers(case, img, a.layers, user)
            n_sugg = sum(1 for r in e.rois if r.suggested and not r.reviewed)
            print(f"{img}\tevidence {e.eid}\t{c.get('label')}\t{c.get('verdict', '')}\t"
                  f"{n_sugg} unreviewed suggested regions")
            added.append(e)
        return added

    _modify(a, action)
    return 0


def cmd_case_show(a: argparse.Namespace) -> int:
    from scanlab.services.cases import case_summary

    case = _open(a.case, quiet=a.json)
    s = case_summary(case)
    if a.json:
        print(json.dumps(s, indent=2))
        return 0
    m = case.meta
    print(f"case {m['id']}: {m['title']}  (analyst {m['analyst']}{', ' + m['agency'] if m.get('agency') else ''})")
    print(f"created {m['created']}, modified {m['modified']}{', READ-ONLY' if case.read_only else ''}")
    for e in s["evidence"]:
        last = e["runs"][-1]["classify"] if e["runs"] else {}
        print(f"  {e['eid']}  {e['path']}  {last.get('label')} {last.get('verdict', '')}  "
              f"{len(e['runs'])} run(s), {len(e['rois'])} ROI(s)")
        for lr in e.get("layer_runs", []):
            mp = lr.get("map") or {}
            print(f"      {lr.get('layer')} layer run {lr.get('time')}: {len(lr.get('pairs', []))} pair(s), "
                  f"record {lr.get('id')}, map digest {str(mp.get('sha256'))[:16]} (step {mp.get('quantum')}, "
                  f"{mp.get('n_ge_half')} px >= 0.5, {mp.get('n_nan')} px no evidence)")
        for r in e["rois"]:
            st = r["stats"].get("inside") or {}
            mean = st.get("mean")
            pair = r["stats"].get(r["stats"].get("layer") or "", {})  # a layer pair's end (copy-move)
            link = (f"  {r['stats']['layer']} pair {pair.get('pair')} {pair.get('end')}, partner ROI "
                    f"{pair.get('partner')}, q {pair.get('q')} (null {pair.get('q_null')})" if pair else "")
            print(f"      ROI {r['id']:>3} {r['kind']:<7} {'suggested' if r['suggested'] else 'drawn':<9} "
                  f"{r['verdict'] or 'unreviewed':<14} area {r['stats'].get('area')}, mean reliability "
                  f"{'n/a' if mean is None else f'{mean:.3f}'}{link}  {r['note']}")
    print(f"audit: {s['audit']['entries']} entries, head {s['audit']['head'][:16]}"
          f"{'  CHAIN BROKEN' if s['audit']['problems'] else ''}")
    if case.meta.get("signoff"):
        so = case.meta["signoff"]
        print(f"signed off by {so['analyst']} at {so['time']}")
    return 0


def _add_layers(case: Any, img: str, names: list[str], user: str) -> None:
    """``case add --layers``: run each model-free layer on ``img``; its pairs become suggested ROIs."""
    from scanlab.services.layer_cases import suggest_layer_pairs
    from scanlab.services.layer_runs import run_layer
    from scanlab.terminal import progress_bar

    for name in names:
        with progress_bar(f"{Path(img).name} ({name})", False) as bar:
            run = run_layer(name, img, progress=bar)
        if run.experimental:  # said on every use, as map --what says it
            print(f"scanlab: note: the {name} layer is experimental: {run.experimental}", file=sys.stderr)
        rois = suggest_layer_pairs(case, run, user=user)
        print(f"{img}\t{name}\t{len(run.pairs)} pair(s)\tROIs {', '.join(str(r.id) for r in rois) or '-'}")


def _layer_names(text: str) -> list[str]:
    from scanlab.services.layer_runs import model_free_layers

    offered = [lay.name for lay in model_free_layers()]
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in offered]
    if bad:
        raise argparse.ArgumentTypeError(f"{', '.join(bad)}: not a layer case add can run (choices: {', '.join(offered)})")
    return names


def _parse_points(items: list[str]) -> list[tuple[float, float]]:
    pts = []
    for it in items:
        try:
            r, c = (float(v) for v in it.split(","))
        except ValueError:
            raise ScanLabError(f"--polygon point {it!r}: expected ROW,COL") from None
        pts.append((r, c))
    return pts


def cmd_case_roi(a: argparse.Namespace) -> int:
    from scanlab.core.case.rois import ROI
    from scanlab.services.rois import add_roi, remove_roi, review_roi

    if a.roi_action == "add":
        try:
            if a.rect:
                roi = ROI.rect(0, *a.rect, verdict=a.verdict, note=a.note or "")
            elif a.polygon:
                roi = ROI(0, "polygon", _parse_points(a.polygon), verdict=a.verdict, note=a.note or "")
            else:
                raise ScanLabError("give --rect R0 C0 R1 C1 or --polygon R,C R,C R,C ...")
        except ValueError as e:
            raise ScanLabError(str(e)) from None
        r = _modify(a, lambda case, user: add_roi(case, a.evidence, roi, user=user))
        st = r.stats
        mean = (st.get("inside") or {}).get("mean")
        ring = (st.get("ring") or {}).get("mean")
        print(f"ROI {r.id}: area {st['area']}, mean reliability {'n/a' if mean is None else f'{mean:.3f}'}, "
              f"ring {'n/a' if ring is None else f'{ring:.3f}'}, verdict {r.verdict or 'unreviewed'}")
    elif a.roi_action == "review":
        if a.verdict is None and a.note is None:
            raise ScanLabError("give --verdict and/or --note")
        r = _modify(a, lambda case, user: review_roi(case, a.evidence, a.id, user=user, verdict=a.verdict,
                                                     note=a.note))
        print(f"ROI {r.id}: {r.verdict}  {r.note}")
    else:
        _modify(a, lambda case, user: remove_roi(case, a.evidence, a.id, user=user))
        print(f"ROI {a.id} removed")
    return 0


def cmd_case_suggest(a: argparse.Namespace) -> int:
    from scanlab.services.cases import get_evidence, refresh_stats, suggest_for

    def action(case: Any, user: str) -> None:
        evs = [get_evidence(case, a.evidence)] if a.evidence else list(case.evidence.values())
        for e in evs:
            new = suggest_for(case, e, user=user, threshold=a.threshold)
            refresh_stats(e)
            print(f"evidence {e.eid}: {len(new)} suggested regions "
                  + ", ".join(f"#{r.id} (area {r.stats['area']}, contrast {r.stats['contrast']:.2f})" for r in new))

    _modify(a, action)
    return 0


def cmd_case_locate(a: argparse.Namespace) -> int:
    from scanlab.services.cases import locate_evidence

    e = _modify(a, lambda case, user: locate_evidence(case, a.evidence, a.path, user=user))
    print(f"evidence {e.eid} -> {e.info['path']} (SHA-256 matches)")
    return 0


def cmd_case_signoff(a: argparse.Namespace) -> int:
    from scanlab.services.cases import sign_off

    so = _modify(a, lambda case, user: sign_off(case, analyst=a.analyst, statement=a.statement))
    print(f"signed off by {so['analyst']} at {so['time']} (audit {so['audit_hash'][:16]})")
    return 0


def cmd_report(a: argparse.Namespace) -> int:
    from scanlab.core.case.casefile import CaseLock, save_case
    from scanlab.core.io.fileio import check_writable
    from scanlab.services.report import export_report

    out = check_writable(a.output, (".pdf",), "report file")
    from scanlab.core.io.fileio import refuse_overwrite

    refuse_overwrite(out, [a.case], "the case file")
    with CaseLock(a.case):
        case = _open(a.case, a.user)
        user = a.user or case.meta.get("analyst") or "unknown"
        res = export_report(case, out, user=user)
        if case.read_only:
            _eprint(f"scanlab: warning: {a.case} is read-only; the export was not logged in its audit trail")
        else:
            save_case(case)
    print(f"report {res['pdf']} (SHA-256 {res['pdf_sha256']}){' DRAFT' if res['draft'] else ''}; "
          f"raw maps {res['maps']}")
    return 0


def cmd_verify(a: argparse.Namespace) -> int:
    """Re-run and compare; the case file is only read unless ``--record`` asks to log the result."""
    from contextlib import nullcontext

    from scanlab.core.case.casefile import CaseLock, save_case
    from scanlab.services.verify import verify_case
    from scanlab.terminal import progress_bar

    # Saves are atomic renames, so a plain read needs no lock; only --record writes.
    with CaseLock(a.case) if a.record else nullcontext():
        case = _open(a.case, a.user, quiet=a.json)
        if a.record and case.read_only:
            raise ScanLabError(f"{a.case}: the case file is read-only; --record cannot log the verification")
        with progress_bar("verify", a.json) as bar:
            res = verify_case(case, device=a.device, progress=bar)
        if a.record:
            user = a.user or case.meta.get("analyst") or "unknown"
            case.log(user, "verified", res, "OK" if res["ok"] else f"{len(res['differences'])} differences")
            save_case(case)
    if a.json:
        print(json.dumps(res, indent=2))
    else:
        for d in res["differences"]:
            print(f"DIFFERENT: {d}")
        for w in res["warnings"]:
            print(f"warning: {w}")
        c = res["checked"]
        print(f"{'OK' if res['ok'] else 'FAILED'}: {c['evidence']} evidence, {c['runs']} runs re-analysed, "
              f"{c.get('layer_runs', 0)} layer runs re-checked, "
              f"{c['rois']} ROIs, {c['audit_entries']} audit entries; tolerance {res['tolerance']['probabilities']:g}"
              + ("; recorded in the audit log" if a.record else ""))
    return 0 if res["ok"] else 1


# ---------------------------------------------------------------- parser


def register(sp: Any) -> None:
    """Add ``case``, ``report`` and ``verify`` to the main parser's subparsers."""
    from scanlab.core.case.rois import VERDICTS

    c = sp.add_parser("case", help="case files: new, add, show, roi, suggest, locate, signoff")
    cs = c.add_subparsers(dest="case_command", metavar="ACTION", required=True)

    def _user(p: argparse.ArgumentParser) -> None:
        p.add_argument("--user", default=None, help="who acts (audit log; default: the case's analyst)")

    n = cs.add_parser("new", help="create an empty case file")
    n.add_argument("case", metavar="CASE")
    n.add_argument("--title", required=True)
    n.add_argument("--analyst", required=True)
    n.add_argument("--agency", default="")
    n.set_defaults(func=cmd_case_new)

    ad = cs.add_parser("add", help="analyse scans and store them in the case")
    ad.add_argument("case", metavar="CASE")
    ad.add_argument("images", nargs="+", metavar="IMAGE")
    ad.add_argument("--sub", default="64", help="map sub-image size N or NxM (>= 64)")
    ad.add_argument("--stride", default="4", help="map stride N or NxM")
    ad.add_argument("-m", "--model", default=None)
    ad.add_argument("--engine", default=None, choices=["dense", "naive"])
    ad.add_argument("--device", default="auto")
    ad.add_argument("--embed", action="store_true", help="also store a copy of the evidence bytes in the case")
    ad.add_argument("--layers", default=[], type=_layer_names, metavar="NAME[,NAME]",
                    help="also run these model-free layers (copymove); their pairs become suggested ROIs")
    _user(ad)
    ad.set_defaults(func=cmd_case_add)

    sh = cs.add_parser("show", help="print the case")
    sh.add_argument("case", metavar="CASE")
    sh.add_argument("--json", action="store_true")
    sh.set_defaults(func=cmd_case_show)

    r = cs.add_parser("roi", help="add, review or remove a region of interest")
    rs = r.add_subparsers(dest="roi_action", metavar="ACTION", required=True)
    ra = rs.add_parser("add", help="add an ROI (image row/col coordinates)")
    ra.add_argument("case", metavar="CASE")
    ra.add_argument("evidence", metavar="EVIDENCE", help="evidence id (prefix) or file name")
    ra.add_argument("--rect", nargs=4, type=float, metavar=("R0", "C0", "R1", "C1"))
    ra.add_argument("--polygon", nargs="+", metavar="R,C")
    ra.add_argument("--verdict", choices=VERDICTS, default=None)
    ra.add_argument("--note", default=None)
    _user(ra)
    rv = rs.add_parser("review", help="set an ROI's verdict and note")
    rv.add_argument("case", metavar="CASE")
    rv.add_argument("evidence", metavar="EVIDENCE")
    rv.add_argument("id", type=int, metavar="ID")
    rv.add_argument("--verdict", choices=VERDICTS, default=None)
    rv.add_argument("--note", default=None)
    _user(rv)
    rr = rs.add_parser("remove", help="delete an ROI")
    rr.add_argument("case", metavar="CASE")
    rr.add_argument("evidence", metavar="EVIDENCE")
    rr.add_argument("id", type=int, metavar="ID")
    _user(rr)
    for p in (ra, rv, rr):
        p.set_defaults(func=cmd_case_roi)

    sg = cs.add_parser("suggest", help="recompute the unreviewed suggested regions")
    sg.add_argument("case", metavar="CASE")
    sg.add_argument("evidence", nargs="?", default=None, metavar="EVIDENCE")
    sg.add_argument("--threshold", type=float, default=0.5)
    _user(sg)
    sg.set_defaults(func=cmd_case_suggest)

    lo = cs.add_parser("locate", help="point moved evidence at its new path (the hash is checked)")
    lo.add_argument("case", metavar="CASE")
    lo.add_argument("evidence", metavar="EVIDENCE")
    lo.add_argument("path", metavar="NEW_PATH")
    _user(lo)
    lo.set_defaults(func=cmd_case_locate)

    so = cs.add_parser("signoff", help="the analyst's sign-off (recorded in the audit log)")
    so.add_argument("case", metavar="CASE")
    so.add_argument("--analyst", required=True)
    so.add_argument("--statement", required=True)
    so.set_defaults(func=cmd_case_signoff)

    rp = sp.add_parser("report", help="annotated PDF case report (+ raw maps as HDF5 beside it)")
    rp.add_argument("case", metavar="CASE")
    rp.add_argument("-o", "--output", required=True, metavar="REPORT.pdf")
    _user(rp)
    rp.set_defaults(func=cmd_report)

    v = sp.add_parser("verify", help="re-run every stored analysis; exit 1 on any difference")
    v.add_argument("case", metavar="CASE")
    v.add_argument("--device", default="auto")
    v.add_argument("--json", action="store_true")
    v.add_argument("--record", action="store_true",
                   help="log a 'verified' entry in the case's audit trail (otherwise the case file is not touched)")
    _user(v)
    v.set_defaults(func=cmd_verify)
