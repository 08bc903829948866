"""``scanlab train``: train or fine-tune a model on a folder-per-scanner tree."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from scanlab.cli.common import eprint, model_path, sigint_cancels
from scanlab.core.errors import ScanLabError
from scanlab.core.modelfile.coverage_card import coverage_advice
from scanlab.terminal import progress_bar


def cmd_train(a: argparse.Namespace) -> int:
    from scanlab.core.io.fileio import check_writable, refuse_overwrite
    from scanlab.core.training.dataset import check_layout

    out = check_writable(a.output, what="model file")
    images = check_layout(a.data_dir)  # one-line errors for empty / one-class folders, before torch
    refuse_overwrite(out, images, "a training image")
    if a.base not in ("default", "none"):
        refuse_overwrite(out, [model_path(a.base)], "the base model")

    from scanlab.core.engine.patches import parse_size
    from scanlab.core.training.loop import TrainConfig
    from scanlab.services.training import TrainRequest, run_training

    try:
        sub = parse_size(a.sub)
    except ValueError as e:
        raise ScanLabError(str(e)) from None
    if a.epochs < 1:
        raise ScanLabError("--epochs must be at least 1")
    if a.max_batches is not None and a.max_batches < 1:
        raise ScanLabError("--max-batches must be at least 1")
    if a.oe_steps is not None and a.oe_steps < 1:
        raise ScanLabError("--oe-steps must be at least 1")
    if not 0.0 <= a.delivery_chain <= 1.0:
        raise ScanLabError("--delivery-chain must be a probability between 0 and 1")
    if a.distributed != 1:
        from scanlab.services.training_ddp import check_request

        check_request(a.distributed, a.batch_size)
    if a.ray is not None:
        from scanlab.services.training_ddp import require_ray

        require_ray()  # one line naming the extra, before any data is read
    cfg = TrainConfig(
        epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, momentum=a.momentum, weight_decay=a.weight_decay,
        sub=sub, patience=a.patience, seed=a.seed, width=a.width, schedule=a.schedule,
        freeze_trunk=a.freeze_trunk, amp=not a.no_amp, max_batches=a.max_batches, workers=a.workers,
        oe_steps=a.oe_steps, delivery_chain=a.delivery_chain,
    )
    cache = None if a.cache is None else ("" if a.cache == "none" else a.cache)
    from scanlab.services.budget import parse_budget

    budget_s = None if a.budget is None else parse_budget(a.budget)
    req = TrainRequest(
        data_dir=a.data_dir, output=a.output, config=cfg, split=a.split, base=a.base, device=a.device,
        engine=a.engine, name=a.name, cache=cache, units=a.units or a.holdout_unit,
        holdout_unit=a.holdout_unit, resume=a.resume, strict_files=a.strict_files, other=a.other,
        budget_s=budget_s, distributed=a.distributed, ray=a.ray, delivery_check=not a.no_delivery_check,
    )

    def on_epoch(r: dict) -> None:
        eprint(
            f"epoch {r['epoch']:3d}  loss {r['train_loss']:.4f}  train {r['train_acc']:.3f}  "
            f"val patch {r['val_patch_acc']:.3f}  val image {r['val_image_acc']:.3f}  "
            f"{r['seconds']:.1f}s  {r['patches_per_s']:.0f} patches/s{'  *' if r['best'] else ''}"
        )
        eprint(f"[checkpoint] epoch {r['epoch']} saved")

    with progress_bar("training", a.json) as bar, sigint_cancels() as cancel:
        man = run_training(req, cancel=cancel, progress=bar, on_epoch=on_epoch,
                           on_stage=lambda t: eprint(f"[{t}]"))
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
        "open_set": {k: (man.get("open_set") or {}).get(k) for k in ("method", "thresholds", "threshold_rule",
                                                                       "threshold_samples", "negatives")},
        "budget": man["training"].get("budget"),
        "distributed": man["training"].get("distributed"),
        "delivery_check": man["training"].get("delivery_check"),
        "delivery_chain_measured": (man.get("delivery_chain_measured") or {}).get("rows"),
    }
    for sk in summary["skipped_files"]:
        eprint(f"scanlab: warning: {sk['path']}: skipped ({sk['reason']})")
    if summary["delivery_check"] == "interrupted":
        eprint("scanlab: note: the delivery check was cancelled; the trained model is saved without "
               "delivery_chain_measured (train again, or measure with benchmarks/bench_delivery.py --store-in)")
    if a.json:
        print(json.dumps(summary, indent=2))
    else:
        t = summary["test"] or summary["val"]
        which = "test" if summary["test"] else "val"
        print(f"saved {summary['output']}")
        print(f"{which}: per-patch {t['per_patch_accuracy']:.4f}, per-image {t['per_image_accuracy']:.4f} "
              f"on {t['n_images']} images")
        os_ = summary["open_set"]
        if os_["method"]:
            print(f"unknown scanners: {os_['method']}, threshold {os_['thresholds']['unknown']} "
                  f"({os_['threshold_rule']})")
        for name, r in (summary["delivery_chain_measured"] or {}).items():
            print(f"{name}: " + delivery_row_text(r))
    for advice in coverage_advice((man.get("training_input") or {}).get("reference_coverage")):
        eprint(f"scanlab: warning: reference coverage: {advice}")
    return 0


def delivery_row_text(r: dict[str, Any]) -> str:
    """One row of ``delivery_chain_measured`` in words: right / wrong / unknown or inconclusive, unseen rejected."""
    def pct(v: Any) -> str:
        return f"{100 * v:.0f}%" if isinstance(v, (int, float)) else "n/a"

    unseen = "not measured" if r.get("unseen_rejected") is None else f"{pct(r['unseen_rejected'])} rejected"
    return (f"right {pct(r.get('known_right'))}, wrong {pct(r.get('known_wrong'))}, unknown or inconclusive "
            f"{pct(r.get('known_unknown_or_inconclusive'))} of {r.get('known_analysed', 'the')} test scans; "
            f"unseen {unseen}")


def _train_defaults():
    """The training defaults (one place: :class:`scanlab.core.training.loop.TrainConfig`)."""
    from scanlab.core.training.config import TrainConfig

    return TrainConfig()


def register(sp: Any) -> None:
    """Add this group's commands to the top-level sub-parsers."""
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
    t.add_argument("--other", default=None, metavar="DIR",
                   help="the lab's scans of no reference scanner (like DATA_DIR/_other/): outlier exposure and "
                        "a check of the unknown threshold")
    t.add_argument("--oe-steps", type=int, default=None,
                   help="steps of the 'other scanner' training (default: as many as the batches the run trained, 100-400)")
    t.add_argument("--delivery-chain", type=float, default=d.delivery_chain, metavar="P",
                   help="train as questioned scans arrive: each training patch, with probability P, first goes "
                        "through a random re-save (JPEG 60-98, resampling 0.7-1.3, gamma/contrast); the "
                        "thresholds then also see the validation scans re-saved (default %(default)s: off)")
    t.add_argument("--budget", default=None, metavar="TIME",
                   help="time budget like 15m or 1h: patches per epoch are set from a measured throughput "
                        "(the estimate is printed before training starts)")
    t.add_argument("--distributed", type=int, default=1, metavar="N",
                   help="train with N data-parallel (DDP) processes: gloo on CPU, nccl with one GPU each")
    t.add_argument("--ray", default=None, metavar="auto|ADDRESS",
                   help='run the --distributed N processes as Ray Train workers (needs pip install "scanlab[cluster]")')
    t.add_argument("--no-delivery-check", action="store_true",
                   help="skip measuring the trained model's verdicts on its test scans re-saved (JPEG q90/q75, "
                        "resampled x0.8/x1.25); without it the gating warnings say 'not measured'")
    t.add_argument("--json", action="store_true")
    t.set_defaults(func=cmd_train)
