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
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from evidence_data import write_val_split  # noqa: E402

from scanlab.core.evidence.fit import fit_evidence_model  # noqa: E402
from scanlab.core.evidence.openset import OTHER_METHOD, OtherScorer  # noqa: E402
from scanlab.core.io.imaging import find_images, load_scan  # noqa: E402
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


def main() -> None:
    """Fit and re-save in place (atomically)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="trained_models/scanlab-default.safetensors")
    ap.add_argument("--work", default="/tmp/scanlab-evidence")
    ap.add_argument("--demonstration", action="store_true", help="the model knows only virtual scanners")
    ap.add_argument("--method", default="knn-features", choices=["knn-features", "knn-logits", OTHER_METHOD])
    ap.add_argument("--other-head", default=None, help="train_other.py checkpoint (implies --method other-output)")
    ap.add_argument("-o", "--output", default=None, help="write here instead of in place")
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

    def images():
        for f in files:
            yield load_scan(f).pixels, lm.classes.index(f.parent.name)

    target = Path(a.output or a.model)
    diagram = str(target.with_name(target.stem + "-reliability.png"))
    updates, extras = fit_evidence_model(
        lm.net, images(), lm.classes, total=len(files), demonstration=a.demonstration, dpi_range=None,
        diagram=diagram, method=a.method, other=other,
    )
    man = {k: v for k, v in lm.manifest.items() if not k.startswith("_")}
    man.update(updates)
    if oe_record is not None:
        test_dir = Path(a.work) / "test"
        write_val_split(a.model, test_dir, split="test")
        man["parent"] = f"{lm.manifest.get('name')} ({lm.manifest.get('weights_sha256')})"
        man["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        man["training"] = dict(man["training"])
        man["training"]["outlier_exposure"] = {
            "method": "extra 'other scanner' output, cross-entropy over Ns + 1 outputs; windows of virtual "
                      "scanner designs of other bank names carry the extra label (benchmarks/train_other.py)",
            "metrics_before": lm.manifest.get("metrics"), **oe_record,
        }
        man["metrics"] = {"val": _accuracy(lm, val_dir), "test": _accuracy(lm, test_dir)}
    stored = save_model(lm.net, man, a.output or a.model, extras)
    print(json.dumps({k: stored[k] for k in ("calibration", "open_set", "demonstration", "training_input")}, indent=1))


if __name__ == "__main__":
    main()
