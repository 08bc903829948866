"""``scanlab evaluate``, ``classify``, ``map`` and ``card``: analyses of scans with a model."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from scanlab.cli.common import add_common, check_input, eprint, model_path
from scanlab.core.errors import ScanLabError
from scanlab.terminal import progress_bar


def cmd_evaluate(a: argparse.Namespace) -> int:
    from scanlab.services.evaluation import evaluate_folder

    with progress_bar("evaluating", a.json) as bar:
        out = evaluate_folder(a.data_dir, a.model, engine=a.engine, device=a.device, progress=bar)
    if a.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"{out['n_images']} images: per-patch {out['per_patch_accuracy']:.4f}, "
              f"per-image {out['per_image_accuracy']:.4f}")
    return 0


def _request(a: argparse.Namespace, path: str, with_map: bool):
    from scanlab.core.engine.patches import parse_size
    from scanlab.services.analysis import AnalysisRequest

    try:
        sub = parse_size(str(a.sub)) if with_map else (64, 64)
        stride = parse_size(str(a.stride)) if with_map else (4, 4)
    except ValueError as e:
        raise ScanLabError(str(e)) from None
    if with_map and (sub[0] < 64 or sub[1] < 64):
        raise ScanLabError(f"--sub {a.sub}: sub-image size must be at least 64")
    if with_map and (stride[0] < 1 or stride[1] < 1):
        raise ScanLabError(f"--stride {a.stride}: stride must be at least 1")
    return AnalysisRequest(
        path=path, model=a.model, sub=sub, stride=stride, engine=a.engine, device=a.device,
        label=getattr(a, "label", None), with_map=with_map,
    )


def _items(path: str) -> list:
    """The pieces of evidence ``path`` names (a PDF's embedded images, a TIFF's pages, or the file)."""
    from scanlab.core.io.containers import expand, parse_ref

    check_input(parse_ref(path)[0], "image")
    return expand(path)


def cmd_classify(a: argparse.Namespace) -> int:
    model_path(a.model)
    lm = None
    images, errors, skipped = [], [], []
    todo: list = []
    for path in a.images:
        try:
            todo += _items(path)
        except ScanLabError as e:
            eprint(f"scanlab: error: {e}")
            errors.append({"path": path, "error": str(e)})
    for item in todo:
        path = item.ref
        if item.empty is not None:  # a page without a scanned image: said in one line, not an error
            eprint(f"scanlab: note: {path}: {item.empty}")
            skipped.append({"path": path, "reason": item.empty})
            continue
        try:
            t = time.perf_counter()
            scan = item.load()  # bad images fail before torch is loaded
            decode_s = time.perf_counter() - t
        except ScanLabError as e:
            eprint(f"scanlab: error: {e}")
            errors.append({"path": path, "error": str(e)})
            continue
        if lm is None:  # a bad model stops the whole command (one error line, exit 2)
            from scanlab.services.models import get_model

            lm = get_model(a.model)
        from scanlab.services.analysis import run_analysis

        try:
            with progress_bar(Path(path).name, a.json) as bar:
                r = run_analysis(_request(a, path, with_map=False), progress=bar, model=lm, scan=scan)
            images.append({**r.to_json(), "timing": {"decode": decode_s, **r.timing}, **_layer_summaries(a, scan)})
            if not a.json:
                v = r.verdict
                for w in v.warnings:  # input gating: said before the verdict line
                    eprint(f"scanlab: warning: {path}: {w['message']}")
                p = r.probabilities()[r.label]
                print(f"{path}\t{v.verdict}\t{r.json_label}\t{'p' if v.calibrated else 'p(uncalibrated)'}={p:.3f}\t"
                      f"votes={r.votes()[r.label]}/{r.analysis.classification.n_patches}"
                      + (f"\t{v.reason}" if v.reason else ""))
        except ScanLabError as e:
            eprint(f"scanlab: error: {e}")
            errors.append({"path": path, "error": str(e)})
    if a.json:
        from scanlab.services.analysis import model_json

        out: dict[str, Any] = {"images": images, "model": model_json(lm) if lm is not None else None}
        if errors:
            out["errors"] = errors
        if skipped:
            out["skipped"] = skipped
        print(json.dumps(out, indent=2))
    return 2 if errors or not (images or skipped) else 0


def cmd_map(a: argparse.Namespace) -> int:
    from scanlab.core.colormap import DEFAULT_COLORMAP
    from scanlab.core.io.containers import parse_ref
    from scanlab.core.io.fileio import refuse_overwrite
    from scanlab.core.io.imaging import load_scan
    from scanlab.services.exports import check_map_output, write_map
    from scanlab.services.layers import get_layer

    out = check_map_output(a.output)
    image = check_input(parse_ref(a.image)[0], "image")
    refuse_overwrite(out, [image], "the evidence file")
    layer = get_layer(getattr(a, "what", None) or "reliability")
    if layer.needs_model:
        refuse_overwrite(out, [model_path(a.model)], "the model file")
    t = time.perf_counter()
    items = [it for it in _items(a.image) if it.empty is None]
    if len(items) > 1:  # a PDF or multi-page TIFF: the map is of one image, named by its reference
        raise ScanLabError(f"{a.image}: holds {len(items)} images; map one of them, e.g. {items[0].ref} "
                           "('scanlab classify' lists them all)")
    scan = items[0].load() if items else load_scan(a.image)  # decoded before torch: bad scans fail in ms
    decode_s = time.perf_counter() - t
    if layer.experimental:
        eprint(f"scanlab: warning: the {layer.name} layer is experimental: {layer.experimental}")
    if not layer.needs_model:
        return _map_without_model(a, out, scan)

    import numpy as np

    from scanlab.core.io.mapstore import StoredWindows
    from scanlab.services.analysis import model_json, run_analysis
    from scanlab.services.models import get_model

    lm = get_model(a.model)
    what = getattr(a, "what", "reliability") or "reliability"
    req = _request(a, a.image, with_map=True)
    with progress_bar("map", a.json) as bar:
        r = run_analysis(req, progress=bar, model=lm, scan=scan)
    rel = r.reliability
    no_ev = r.no_evidence_mask()
    if what == "class":
        values = r.class_index_map()
    elif what == "unknown":
        values = r.unknown_map()
        if values is None:
            raise ScanLabError(f"{lm.path}: this model has no unknown-scanner scorer (no open_set in its manifest)")
    else:
        values = rel
    shown = ~np.isnan(rel)
    covered = shown | no_ev
    v = r.verdict
    meta = {
        "path": r.scan.path,
        "sha256": r.scan.sha256,
        "label": r.json_label,
        "map_label": r.map_label,
        "what": what,
        "sub": list(req.sub),
        "stride": list(req.stride),
        "engine": r.analysis.engine,
        "device": r.device,
        "shape": list(rel.shape),
        "coverage": float(covered.mean()),
        "no_evidence_fraction": float(no_ev.mean()),
        "mean_reliability": float(rel[shown].mean()) if shown.any() else None,
        "min_reliability": float(rel[shown].min()) if shown.any() else None,
        "probabilities": r.probabilities(),
        "votes": r.votes(),
        "n_patches": int(r.analysis.classification.n_patches),
        "verdict": v.to_json() if v is not None else None,
        "output": str(out.resolve()),
        "timing": {"compute_s": r.compute_s, "decode": decode_s, **r.timing},
        "model": model_json(lm),
        "scan": r.scan.scan_json(),
        "container": r.scan.container_json(),
    }
    g = r.analysis.map_grid
    windows = StoredWindows(g.ys, g.xs, g.sub, g.stride, g.probs, lm.classes, g.evidence_mask(), None,
                            r.evidence.calibrated)
    write_map(out, values, meta, what=what, no_evidence=no_ev, windows=windows,
              unknown_windows=r.unknown_grid, class_names=lm.classes,
              colormap=getattr(a, "colormap", None) or DEFAULT_COLORMAP)  # the headless gui fallback has none
    if a.json:
        print(json.dumps(meta, indent=2))
    else:
        low = float((rel[shown] < 0.5).mean()) if shown.any() else 0.0
        mean = f"{meta['mean_reliability']:.3f}" if shown.any() else "n/a"
        print(f"{a.image}: scanner {r.label}, {v.in_words(r.label) if v else ''} ({meta['votes'][r.label]}/"
              f"{meta['n_patches']} votes); reliability of {r.map_label}: mean {mean}, {100 * low:.1f}% of evidence pixels below 0.5, "
              f"{100 * meta['no_evidence_fraction']:.1f}% no evidence; {what} map -> {out} ({r.compute_s:.2f}s)")
    return 0


def _map_without_model(a: argparse.Namespace, out: Path, scan: Any) -> int:
    """``map --what copymove``: a layer computed from the pixels alone (no model, no torch)."""
    from scanlab.services.copymove import analyse_copymove, copymove_json, write_copymove

    with progress_bar("copy-move", a.json) as bar:
        res = analyse_copymove(scan, progress=bar)
    meta = {"path": scan.info.path, "sha256": scan.info.sha256, "what": a.what, "shape": list(res.score.shape),
            "output": str(out.resolve()), "timing": {"compute_s": res.compute_s}, "scan": scan.info.scan_json(),
            "copymove": copymove_json(res)}
    write_copymove(out, res, scan.pixels, meta)
    if a.json:
        print(json.dumps(meta, indent=2))
    else:
        print(f"{a.image}: {len(res.pairs)} copy-move pair(s) "
              f"({res.n_candidates} candidates tested); {a.what} map -> {out} ({res.compute_s:.2f}s)")
    return 0


def _layer_summaries(a: argparse.Namespace, scan: Any) -> dict[str, Any]:
    """The blocks ``classify --layers`` asks for, keyed by layer name."""
    from scanlab.services.copymove import analyse_copymove

    out: dict[str, Any] = {}
    for name in getattr(a, "layers", None) or []:
        if name == "copymove":
            from scanlab.services.layers import get_layer

            # the caveat travels with the figures: 'no pair' from this layer is not yet evidence
            out["copymove"] = {**analyse_copymove(scan).summary(), "experimental": get_layer(name).experimental}
    return out


def cmd_card(a: argparse.Namespace) -> int:
    from scanlab.core.modelfile.store import model_card, read_manifest
    from scanlab.services.models import resolve_model_path

    print(model_card(read_manifest(resolve_model_path(a.model))))
    return 0


def _layers_arg(text: str) -> list[str]:
    from scanlab.services.layers import LAYERS

    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [n for n in names if LAYERS.get(n) is None or LAYERS[n].summary_in_classify != "on request"]
    if bad:
        choices = [n for n, x in LAYERS.items() if x.summary_in_classify == "on request"]
        raise argparse.ArgumentTypeError(f"{', '.join(bad)}: not a layer classify can add (choices: {', '.join(choices)})")
    return names


def register(sp: Any) -> None:
    """Add this group's commands to the top-level sub-parsers."""
    from scanlab.services.layers import LAYERS, layer_names

    e = sp.add_parser("evaluate", help="score every image under a folder-per-scanner tree")
    e.add_argument("data_dir", metavar="DATA_DIR")
    add_common(e)
    e.set_defaults(func=cmd_evaluate)

    c = sp.add_parser("classify", help="which scanner made these scans")
    c.add_argument("images", nargs="+", metavar="IMAGE")
    c.add_argument("--layers", default=[], type=_layers_arg, metavar="NAME[,NAME]",
                   help="extra per-image blocks in --json: copymove (costly: seconds per page, so only on request)")
    add_common(c)
    c.set_defaults(func=cmd_classify)

    m = sp.add_parser("map", help="reliability map of one scan")
    m.add_argument("image", metavar="IMAGE")
    m.add_argument("-o", "--output", required=True, metavar="OUT", help=".npy, .h5 or .png")
    m.add_argument("--sub", default="64", help="sub-image size N or NxM (>= 64)")
    m.add_argument("--stride", default="4", help="stride N or NxM (>= 1)")
    m.add_argument("--label", default=None, help="map this class instead of the predicted one")
    m.add_argument("--what", default="reliability", choices=layer_names(),
                   help="; ".join(f"{x.name}: {x.title.lower()}" for x in LAYERS.values()) + " (default reliability)")
    from scanlab.core.colormap import COLORMAPS, DEFAULT_COLORMAP

    m.add_argument("--colormap", default=DEFAULT_COLORMAP, choices=COLORMAPS,
                   help=f"colour map of a .png output (the app's; default {DEFAULT_COLORMAP})")
    add_common(m)
    m.set_defaults(func=cmd_map)

    k = sp.add_parser("card", help="print a model's card (markdown)")
    k.add_argument("model", nargs="?", default=None, metavar="MODEL")
    k.set_defaults(func=cmd_card)
