"""Add calibration, the open-set scorer and thresholds to an existing model file.

Used for the shipped model, which was trained before ``scanlab train`` fitted
these itself. Without ``--other-head`` the weights stay the same; with it, the
network and its extra "other scanner" output come from a
``benchmarks/train_other.py`` checkpoint (outlier exposure), the open-set method
is ``other-output`` and the accuracy on the validation and test splits is
measured again. Its validation images are re-simulated from the manifest's file list
(benchmarks/evidence_data.py), so the fit uses exactly the data the model was
validated on, never its test split or the benchmark's fresh scans.

    python benchmarks/update_shipped_model.py --model trained_models/scanlab-default.safetensors \\
        --work /tmp/scanlab-evidence --demonstration
    python benchmarks/update_shipped_model.py --other-head /tmp/other.pt \
        --work /tmp/scanlab-evidence --demonstration

A checkpoint trained through the delivery chain (``train_other.py --chain-p``) gets its
thresholds and calibration from validation scans that went through the same chain
(``--val-chain P``: each validation scan, with probability P, takes one random
delivery path; the rest stay as scanned), and its ``training_input`` records the
formats and JPEG qualities of the training scans and the re-compression it was
trained with (``recompressed_in_training``, ``recompressed_quality``), which input
gating reads.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import numpy as np  # noqa: E402
from evidence_data import resimulate, write_val_split  # noqa: E402

from scanlab.core.evidence.fit import fit_evidence_model  # noqa: E402
from scanlab.core.evidence.openset import OTHER_METHOD, OtherScorer  # noqa: E402
from scanlab.core.io.decoders import sniff  # noqa: E402
from scanlab.core.io.delivery import delivered  # noqa: E402
from scanlab.core.io.imaging import find_images, load_scan  # noqa: E402
from scanlab.core.io.jpegfacts import header_facts  # noqa: E402
from scanlab.core.modelfile.store import load_model, save_model  # noqa: E402
from scanlab.core.training.loop import evaluate_arrays  # noqa: E402


def _load_other(lm, ckpt_path: str) -> tuple[OtherScorer, dict]:
    """Put a train_other.py checkpoint's weights into ``lm.net``; the scorer and the run's record."""
    ck = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    lm.net.load_state_dict(ck["state"], strict=True)
    lm.net.eval()
    other = OtherScorer(ck["other_weight"].numpy().astype("float32"), float(ck["other_bias"][0]))
    return other, {"args": ck["args"], "history": ck["history"]}


def _accuracy(lm, folder: Path) -> dict:
    files = sorted(find_images(folder))
    res = evaluate_arrays(lm.net, [load_scan(f).pixels for f in files],
                          [lm.classes.index(f.parent.name) for f in files], len(lm.classes))
    res.pop("image_predictions", None)
    return res


def _formats(lm) -> dict:
    """Formats and JPEG facts of the training split, read from one re-simulated scan per scanner.

    Every scan of a virtual scanner has its scanner's output format and quality, so one
    scan per class gives the header facts of all of them without writing 800 files.
    """
    per_class: dict[str, dict] = {}
    formats: dict[str, int] = {}
    qualities, subs = [], set()
    for rel in lm.manifest["training"]["data"]["files"]["train"]:
        cls = rel.split("/")[0]
        if cls not in per_class:
            data = resimulate(rel)
            fmt = sniff(data)
            per_class[cls] = {"format": fmt, **(header_facts(data) if fmt == "JPEG" else {})}
        f = per_class[cls]
        formats[f["format"]] = formats.get(f["format"], 0) + 1
        if f.get("quality") is not None:
            qualities.append(int(f["quality"]))
            subs.add(f["subsampling"])
    return {"formats": dict(sorted(formats.items())),
            "jpeg_quality": [min(qualities), max(qualities)] if qualities else None,
            "jpeg_subsampling": sorted(subs)}


def main() -> None:
    """Fit and re-save in place (atomically)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="trained_models/scanlab-default.safetensors")
    ap.add_argument("--work", default="/tmp/scanlab-evidence")
    ap.add_argument("--demonstration", action="store_true", help="the model knows only virtual scanners")
    ap.add_argument("--method", default="knn-features", choices=["knn-features", "knn-logits", OTHER_METHOD])
    ap.add_argument("--other-head", default=None, help="train_other.py checkpoint (implies --method other-output)")
    ap.add_argument("-o", "--output", default=None, help="write here instead of in place")
    ap.add_argument("--val-chain", type=float, default=0.0,
                    help="probability that a validation scan goes through the delivery chain (a mix)")
    ap.add_argument("--no-metrics", action="store_true", help="skip re-measuring accuracy (quick dev checkpoints)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    lm = load_model(a.model)
    other, oe_record = (None, None)
    if a.other_head:
        other, oe_record = _load_other(lm, a.other_head)
        a.method = OTHER_METHOD
    val_dir = Path(a.work) / "val"
    write_val_split(a.model, val_dir)
    files = sorted(find_images(val_dir))

    went = []

    def images():
        for k, f in enumerate(files):
            px = load_scan(f).pixels
            rng = np.random.default_rng([k, 2718])  # the same mix on every run
            if a.val_chain > 0 and rng.random() < a.val_chain:
                px, path = delivered(px, rng)
                went.append({"file": f.relative_to(val_dir).as_posix(), "path": path})
            yield px, lm.classes.index(f.parent.name)

    target = Path(a.output or a.model)
    diagram = str(target.with_name(target.stem + "-reliability.png"))
    updates, extras = fit_evidence_model(
        lm.net, images(), lm.classes, total=len(files), demonstration=a.demonstration, dpi_range=None,
        diagram=diagram, method=a.method, other=other,
    )
    man = {k: v for k, v in lm.manifest.items() if not k.startswith("_")}
    man.update(updates)
    chain_p = float((oe_record or {}).get("args", {}).get("chain_p", 0.0))
    if chain_p > 0:
        man["training_input"] = {**man["training_input"], **_formats(lm), "recompressed_in_training": True,
                                 "recompressed_quality": [60, 98]}  # delivery.jpeg_again's range
    if a.val_chain > 0:
        man["open_set"] = {**man["open_set"], "validation_mix": {
            "p": a.val_chain, "delivered": len(went), "as_scanned": len(files) - len(went),
            "rule": "each validation scan, with probability p, through one random path of "
                    "scanlab.core.io.delivery.delivered (tone, resampling 0.7-1.3, JPEG 60-98)"}}
    if oe_record is not None and not a.no_metrics:
        test_dir = Path(a.work) / "test"
        write_val_split(a.model, test_dir, split="test")
        man["parent"] = f"{lm.manifest.get('name')} ({lm.manifest.get('weights_sha256')})"
        man["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        man["training"] = dict(man["training"])
        man["training"]["outlier_exposure"] = {
            "method": "extra 'other scanner' output, cross-entropy over Ns + 1 outputs; windows of virtual "
                      "scanner designs of other bank names carry the extra label (benchmarks/train_other.py)"
                      + (f"; known and outlier scans through the delivery chain with p = {chain_p} (known ones "
                         "keep their scanner label), last block and head only" if chain_p > 0 else ""),
            "metrics_before": lm.manifest.get("metrics"), **oe_record,
        }
        man["metrics"] = {"val": _accuracy(lm, val_dir), "test": _accuracy(lm, test_dir)}
    stored = save_model(lm.net, man, a.output or a.model, extras)
    print(json.dumps({k: stored[k] for k in ("calibration", "open_set", "demonstration", "training_input")}, indent=1))


if __name__ == "__main__":
    main()
