"""Add calibration, the open-set scorer and thresholds to an existing model file (same weights).

Used once for the shipped model, which was trained before ``scanlab train`` fitted
these itself. Its validation images are re-simulated from the manifest's file list
(benchmarks/evidence_data.py), so the fit uses exactly the data the model was
validated on, never its test split or the benchmark's fresh scans.

    python benchmarks/update_shipped_model.py --model trained_models/scanlab-default.safetensors \\
        --work /tmp/scanlab-evidence --demonstration
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from evidence_data import write_val_split  # noqa: E402

from scanlab.core.evidence_fit import fit_evidence_model  # noqa: E402
from scanlab.core.imaging import find_images, load_scan  # noqa: E402
from scanlab.core.modelfile import load_model, save_model  # noqa: E402


def main() -> None:
    """Fit and re-save in place (atomically)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="trained_models/scanlab-default.safetensors")
    ap.add_argument("--work", default="/tmp/scanlab-evidence")
    ap.add_argument("--demonstration", action="store_true", help="the model knows only virtual scanners")
    ap.add_argument("--method", default="knn-features", choices=["knn-features", "knn-logits"])
    ap.add_argument("-o", "--output", default=None, help="write here instead of in place")
    a = ap.parse_args()
    torch.set_num_threads(1)
    lm = load_model(a.model)
    val_dir = Path(a.work) / "val"
    write_val_split(a.model, val_dir)
    files = sorted(find_images(val_dir))

    def images():
        for f in files:
            yield load_scan(f).pixels, lm.classes.index(f.parent.name)

    diagram = str(Path(a.model).with_name(Path(a.model).stem + "-reliability.png"))
    updates, extras = fit_evidence_model(
        lm.net, images(), lm.classes, total=len(files), demonstration=a.demonstration, dpi_range=None,
        diagram=diagram if a.output is None else None, method=a.method,
    )
    man = {k: v for k, v in lm.manifest.items() if not k.startswith("_")}
    man.update(updates)
    stored = save_model(lm.net, man, a.output or a.model, extras)
    print(json.dumps({k: stored[k] for k in ("calibration", "open_set", "demonstration", "training_input")}, indent=1))


if __name__ == "__main__":
    main()
