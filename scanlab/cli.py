"""The ``scanlab`` command line (headless, scriptable; contract in DESIGN.md section 3).

Results go to stdout, progress to stderr (a bar on a terminal), errors to stderr
as one line ``scanlab: error: ...`` with exit code 2. Every output file is
written under a temporary name and renamed, so a failure leaves nothing partial.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import stat
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import scanlab
from scanlab.core.errors import Cancelled, ScanLabError
from scanlab.terminal import progress_bar


def _eprint(*a: Any) -> None:
    print(*a, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- cheap checks (no torch)


def _check_input(path: str | os.PathLike, what: str) -> Path:
    """Fail fast, before torch is imported, on an input that cannot be read."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise ScanLabError(f"{p}: no such {what}") from None
    except OSError as e:  # a symlink loop, a name too long, no permission on a folder
        raise ScanLabError(f"{p}: cannot open {what} ({e.strerror or e})") from None
    if p.is_dir():
        raise ScanLabError(f"{p}: is a folder, not a {what}")
    if not stat.S_ISREG(st.st_mode):  # a FIFO or /dev/zero would block or never end
        raise ScanLabError(f"{p}: not a regular file (a device, pipe or socket), not a {what}")
    if not os.access(p, os.R_OK):
        raise ScanLabError(f"{p}: {what} is not readable (permission denied)")
    return p


def _model_path(spec: str | None) -> Path:
    """The model file ``-m`` names (the shipped default when omitted), checked without torch."""
    from scanlab.services.paths import default_model_path

    if spec is None or spec == "default":
        p = default_model_path()
        if not p.exists():
            raise ScanLabError(f"{p}: the shipped default model is missing; pass -m MODEL")
        return p
    return _check_input(spec, "model file")


# ---------------------------------------------------------------- commands


def cmd_train(a: argparse.Namespace) -> int:
    from scanlab.core.dataset import check_layout
    from scanlab.core.fileio import check_writable, refuse_overwrite

    out = check_writable(a.output, what="model file")
    images = check_layout(a.data_dir)  # one-line errors for empty / one-class folders, before torch
    refuse_overwrite(out, images, "a training image")
    if a.base not in ("default", "none"):
        refuse_overwrite(out, [_model_path(a.base)], "the base model")

    from scanlab.core.patches import parse_size
    from scanlab.core.training import TrainConfig
    from scanlab.services.training import TrainRequest, run_training

    try:
        sub = parse_size(a.sub)
    except ValueError as e:
        raise ScanLabError(str(e)) from None
    if a.epochs < 1:
        raise ScanLabError("--epochs must be at least 1")
    if a.max_batches is not None and a.max_batches < 1:
        raise ScanLabError("--max-batches must be at least 1")
    cfg = TrainConfig(
        epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, momentum=a.momentum, weight_decay=a.weight_decay,
        sub=sub, patience=a.patience, seed=a.seed, width=a.width, schedule=a.schedule,
        freeze_trunk=a.freeze_trunk, amp=not a.no_amp, max_batches=a.max_batches, workers=a.workers,
    )
    cache = None if a.cache is None else ("" if a.cache == "none" else a.cache)
    req = TrainRequest(
        data_dir=a.data_dir, output=a.output, config=cfg, split=a.split, base=a.base, device=a.device,
        engine=a.engine, name=a.name, cache=cache, units=a.units or a.holdout_unit,
        holdout_unit=a.holdout_unit, resume=a.resume, strict_files=a.strict_files,
    )

    def on_epoch(r: dict) -> None:
        _eprint(
            f"epoch {r['epoch']:3d}  loss {r['train_loss']:.4f}  train {r['train_acc']:.3f}  "
            f"val patch {r['val_patch_acc']:.3f}  val image {r['val_image_acc']:.3f}  "
            f"{r['seconds']:.1f}s  {r['patches_per_s']:.0f} patches/s{'  *' if r['best'] else ''}"
        )
        _eprint(f"[checkpoint] epoch {r['epoch']} saved")

    with progress_bar("training", a.json) as bar, _sigint_cancels() as cancel:
        man = run_training(req, cancel=cancel, progress=bar, on_epoch=on_epoch,
                           on_stage=lambda t: _eprint(f"[{t}]"))
    summary = {
        "output": str(Path(a.output).resolve()),
        "classes": man["classes"],
        "epochs_run": man["training"]["epochs_run"],
        "best_epoch": man["training"]["best_epoch"],
        "stop_reason": man["training"]["stop_reason"],
        "resumed_from_epoch": man["training"].get("resumed_from_epoch"),
        "counts": man["training"]["data"]["counts"],
        "val": man["metrics"].get("val"),
        "test": man["metrics"].get("test"),
        "weights_sha256": man["weights_sha256"],
        "skipped_files": man["training"].get("skipped_files", []),
    }
    for sk in summary["skipped_files"]:
        _eprint(f"scanlab: warning: {sk['path']}: skipped ({sk['reason']})")
    if a.json:
        print(json.dumps(summary, indent=2))
    else:
        t = summary["test"] or summary["val"]
        which = "test" if summary["test"] else "val"
        print(f"saved {summary['output']}")
        print(f"{which}: per-patch {t['per_patch_accuracy']:.4f}, per-image {t['per_image_accuracy']:.4f} "
              f"on {t['n_images']} images")
    return 0


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
    from scanlab.core.patches import parse_size
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


def cmd_classify(a: argparse.Namespace) -> int:
    from scanlab.core.imaging import load_scan

    _model_path(a.model)
    lm = None
    images, errors = [], []
    for path in a.images:
        try:
            scan = load_scan(_check_input(path, "image"))  # bad images fail before torch is loaded
        except ScanLabError as e:
            _eprint(f"scanlab: error: {e}")
            errors.append({"path": path, "error": str(e)})
            continue
        if lm is None:  # a bad model stops the whole command (one error line, exit 2)
            from scanlab.services.models import get_model

            lm = get_model(a.model)
        from scanlab.services.analysis import run_analysis

        try:
            with progress_bar(Path(path).name, a.json) as bar:
                r = run_analysis(_request(a, path, with_map=False), progress=bar, model=lm, scan=scan)
            images.append(r.to_json())
            if not a.json:
                v = r.verdict
                for w in v.warnings:  # input gating: said before the verdict line
                    _eprint(f"scanlab: warning: {path}: {w['message']}")
                p = r.probabilities()[r.label]
                print(f"{path}\t{v.verdict}\t{r.json_label}\t{'p' if v.calibrated else 'p(uncalibrated)'}={p:.3f}\t"
                      f"votes={r.votes()[r.label]}/{r.analysis.classification.n_patches}"
                      + (f"\t{v.reason}" if v.reason else ""))
        except ScanLabError as e:
            _eprint(f"scanlab: error: {e}")
            errors.append({"path": path, "error": str(e)})
    if a.json:
        from scanlab.services.analysis import model_json

        out: dict[str, Any] = {"images": images, "model": model_json(lm) if lm is not None else None}
        if errors:
            out["errors"] = errors
        print(json.dumps(out, indent=2))
    return 2 if errors else 0


def cmd_map(a: argparse.Namespace) -> int:
    from scanlab.core.fileio import refuse_overwrite
    from scanlab.core.imaging import load_scan
    from scanlab.services.exports import check_map_output, write_map

    out = check_map_output(a.output)
    image = _check_input(a.image, "image")
    refuse_overwrite(out, [image], "the evidence file")
    refuse_overwrite(out, [_model_path(a.model)], "the model file")
    scan = load_scan(image)  # decoded before torch is imported: bad scans fail in milliseconds

    import numpy as np

    from scanlab.core.mapstore import StoredWindows
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
        "timing": {"compute_s": r.compute_s},
        "model": model_json(lm),
        "scan": r.scan.scan_json(),
    }
    g = r.analysis.map_grid
    windows = StoredWindows(g.ys, g.xs, g.sub, g.stride, g.probs, lm.classes, g.evidence_mask(), None,
                            r.evidence.calibrated)
    write_map(out, values, meta, what=what, no_evidence=no_ev, windows=windows,
              unknown_windows=r.unknown_grid, class_names=lm.classes)
    if a.json:
        print(json.dumps(meta, indent=2))
    else:
        low = float((rel[shown] < 0.5).mean()) if shown.any() else 0.0
        mean = f"{meta['mean_reliability']:.3f}" if shown.any() else "n/a"
        print(f"{a.image}: scanner {r.label}, {v.in_words(r.label) if v else ''} ({meta['votes'][r.label]}/"
              f"{meta['n_patches']} votes); reliability of {r.map_label}: mean {mean}, {100 * low:.1f}% of evidence pixels below 0.5, "
              f"{100 * meta['no_evidence_fraction']:.1f}% no evidence; {what} map -> {out} ({r.compute_s:.2f}s)")
    return 0


def cmd_card(a: argparse.Namespace) -> int:
    from scanlab.core.modelfile import model_card, read_manifest
    from scanlab.services.models import resolve_model_path

    print(model_card(read_manifest(resolve_model_path(a.model))))
    return 0


def _no_display() -> bool:
    """True on a Linux box with no screen and no explicit Qt platform."""
    return (
        sys.platform.startswith("linux")
        and not os.environ.get("DISPLAY")
        and not os.environ.get("WAYLAND_DISPLAY")
        and not os.environ.get("QT_QPA_PLATFORM")
    )


def _headless_fallback(a: argparse.Namespace) -> int:
    """No screen: analyse the files headless and write colour maps to ./scanlab-out/."""
    from scanlab.services.paths import sample_scans

    files = list(a.files) or sample_scans()[:1]
    _eprint("scanlab: no display available; running the analysis headless instead "
            "(results below, maps in ./scanlab-out/)")
    if not files:
        raise ScanLabError("no display available and no file given")
    Path("scanlab-out").mkdir(exist_ok=True)
    rc = 0
    for f in files:
        ns = argparse.Namespace(image=f, output=f"scanlab-out/{Path(f).stem}_reliability.png", model=a.model,
                                sub="64", stride="4", label=None, engine=None, device="auto", json=False)
        try:
            rc |= cmd_map(ns)
        except ScanLabError as e:
            _eprint(f"scanlab: error: {e}")
            rc = 2
    return rc


def cmd_gui(a: argparse.Namespace) -> int:
    if a.screenshot is None and _no_display():
        return _headless_fallback(a)
    try:
        from scanlab.gui.app import run_gui
    except ImportError as e:  # the desktop app is optional in headless installs
        raise ScanLabError(f"the desktop app is not available ({e})") from None
    return run_gui(list(a.files), screenshot=a.screenshot, model=a.model)


# ---------------------------------------------------------------- parser


def _add_common(p: argparse.ArgumentParser, *, json_flag: bool = True) -> None:
    p.add_argument("-m", "--model", default=None, help="model file (default: the shipped model)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default auto)")
    p.add_argument("--engine", default=None, choices=["dense", "naive"], help="window engine (default dense)")
    if json_flag:
        p.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def _train_defaults():
    """The training defaults (one place: :class:`scanlab.core.training.TrainConfig`)."""
    from scanlab.core.trainconfig import TrainConfig

    return TrainConfig()


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used to generate docs and tests)."""
    p = argparse.ArgumentParser(prog="scanlab", description="Scanner model identification and forgery maps.")
    p.add_argument("--version", action="version", version=f"scanlab {scanlab.__version__}")
    sp = p.add_subparsers(dest="command", metavar="COMMAND")

    t = sp.add_parser("train", help="train or fine-tune a model on a folder-per-scanner tree")
    t.add_argument("data_dir", metavar="DATA_DIR")
    t.add_argument("-o", "--output", required=True, metavar="MODEL", help="model file to write (exactly this path)")
    d = _train_defaults()
    t.add_argument("--epochs", type=int, default=d.epochs)
    t.add_argument("--split", default="6:1:3", help="train:val:test ratios by image (default 6:1:3)")
    t.add_argument("--base", default="default", help="default, none or a model file to start from")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--sub", default=str(d.sub[0]), help="training sub-image size N or NxM (one random patch each)")
    t.add_argument("--batch-size", type=int, default=d.batch_size)
    t.add_argument("--lr", type=float, default=d.lr)
    t.add_argument("--momentum", type=float, default=d.momentum)
    t.add_argument("--weight-decay", type=float, default=d.weight_decay)
    t.add_argument("--schedule", default=d.schedule, choices=["constant", "cosine"],
                   help="learning-rate schedule (cosine anneals to 0 over --epochs)")
    t.add_argument("--patience", type=int, default=d.patience, help="early-stop after this many epochs without gain")
    t.add_argument("--width", type=int, default=1, help="network channel multiplier")
    t.add_argument("--freeze-trunk", action="store_true", help="train only the final layer of the base model")
    t.add_argument("--units", action="store_true",
                   help="DATA_DIR is Model/Unit/...: the first folder below a class folder is a physical unit")
    t.add_argument("--holdout-unit", action="store_true",
                   help="test split = one whole unit per class (implies --units)")
    t.add_argument("--resume", action="store_true",
                   help="continue the last crashed or cancelled run writing this -o from its checkpoint")
    t.add_argument("--max-batches", type=int, default=None, help="cap on batches per epoch (default: all)")
    t.add_argument("--workers", type=int, default=0, help="patch-loading worker processes (default 0)")
    t.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    t.add_argument("--name", default=None, help="model name for the manifest")
    t.add_argument("--cache", default=None,
                   help="decoded-image cache folder (default per-user; 'none': a temporary one)")
    t.add_argument("--device", default="auto")
    t.add_argument("--engine", default=None, choices=["dense", "naive"])
    t.add_argument("--strict-files", action="store_true",
                   help="stop on the first unreadable image instead of skipping and listing it")
    t.add_argument("--json", action="store_true")
    t.set_defaults(func=cmd_train)

    e = sp.add_parser("evaluate", help="score every image under a folder-per-scanner tree")
    e.add_argument("data_dir", metavar="DATA_DIR")
    _add_common(e)
    e.set_defaults(func=cmd_evaluate)

    c = sp.add_parser("classify", help="which scanner made these scans")
    c.add_argument("images", nargs="+", metavar="IMAGE")
    _add_common(c)
    c.set_defaults(func=cmd_classify)

    m = sp.add_parser("map", help="reliability map of one scan")
    m.add_argument("image", metavar="IMAGE")
    m.add_argument("-o", "--output", required=True, metavar="OUT", help=".npy, .h5 or .png")
    m.add_argument("--sub", default="64", help="sub-image size N or NxM (>= 64)")
    m.add_argument("--stride", default="4", help="stride N or NxM (>= 1)")
    m.add_argument("--label", default=None, help="map this class instead of the predicted one")
    m.add_argument("--what", default="reliability", choices=["reliability", "class", "unknown"],
                   help="reliability of one class (default), per-pixel attribution (class), or unknown score")
    _add_common(m)
    m.set_defaults(func=cmd_map)

    k = sp.add_parser("card", help="print a model's card (markdown)")
    k.add_argument("model", nargs="?", default=None, metavar="MODEL")
    k.set_defaults(func=cmd_card)

    g = sp.add_parser("gui", help="open the desktop app")
    g.add_argument("files", nargs="*", metavar="FILE")
    g.add_argument("-m", "--model", default=None)
    g.add_argument("--screenshot", default=None, metavar="OUT.png",
                   help="wait for the first analysis, save a screenshot and exit")
    g.set_defaults(func=cmd_gui)

    try:
        from scanlab.cli_synth import register
    except ImportError:
        pass
    else:
        register(sp)
    from scanlab.cli_selftest import register as register_selftest

    register_selftest(sp)
    from scanlab.cli_wizard import register as register_wizard

    register_wizard(sp)

    from scanlab.cli_case import register as register_case

    register_case(sp)
    return p


@contextlib.contextmanager
def _sigint_cancels() -> Iterator[Any]:
    """Ctrl-C asks a long job to stop at its next batch instead of raising wherever it lands.

    A KeyboardInterrupt raised while Python runs a finaliser (training opens and drops a
    memory map per patch, so finalisers run all the time) is printed as "Exception
    ignored" and lost: the run went on. Setting a flag cannot be lost. A second Ctrl-C
    interrupts at once, as usual.
    """
    from scanlab.core.jobs import CancelToken

    token = CancelToken()

    def _handler(signum: int, frame: Any) -> None:
        if token.cancelled:
            raise KeyboardInterrupt
        token.cancel()

    try:
        previous = signal.signal(signal.SIGINT, _handler)
    except ValueError:  # not the main thread: leave Ctrl-C alone
        yield token
        return
    try:
        yield token
    finally:
        signal.signal(signal.SIGINT, previous)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args_in = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not args_in:
        args_in = ["gui"]
    a = parser.parse_args(args_in)
    # Pillow warns (a stray stderr line) about damaged EXIF blocks it then ignores;
    # the orientation is reported as unknown instead (see decoders.quiet_exif_warnings,
    # repeated here so that the CLI's start does not import the decoders)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.TiffImagePlugin")
    if not getattr(a, "func", None):
        parser.print_help()
        return 2
    try:
        return int(a.func(a) or 0)
    except Cancelled:
        _eprint("scanlab: interrupted; no output written")
        return 130
    except KeyboardInterrupt:
        _eprint("scanlab: interrupted; no output written")
        return 130
    except ScanLabError as e:
        _eprint(f"scanlab: error: {e}")
        return 2
    except OSError as e:
        _eprint(f"scanlab: error: {e.filename or ''}: {e.strerror or e}")
        return 2
    except MemoryError:
        _eprint("scanlab: error: out of memory (try a smaller image or a larger stride)")
        return 2
