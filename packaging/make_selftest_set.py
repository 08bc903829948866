"""(Re)make the self-test set in resources/selftest/ and its reference figures.

    python packaging/make_selftest_set.py            # after the shipped model changed

Writes 3 scans per scanner of the default virtual bank with content seed 1001 (the
card's Table I fresh-set seed: content the model never saw) at 512 x 512, then scores
them with the shipped model on the CPU and records the figures, the model's weights
hash and the tolerance in resources/selftest/selftest.json. Needs scanlab[synth].
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "resources" / "selftest"
ARGS = ["--scanners", "10", "--images", "3", "--size", "512", "--seed", "1001", "--bank", "default"]


def main() -> int:
    from scanlab.cli import main as cli
    from scanlab.core.modelfile import library_versions
    from scanlab.services.evaluation import evaluate_folder
    from scanlab.services.paths import default_model_path

    with tempfile.TemporaryDirectory() as tmp:
        bank = Path(tmp) / "selftest"
        if cli(["synth", str(bank), *ARGS]) != 0:
            return 1
        out = evaluate_folder(bank, None, device="cpu")
        shutil.rmtree(OUT, ignore_errors=True)
        shutil.copytree(bank, OUT)
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    n_img = out["n_images"]
    ref = {
        "format": "scanlab-selftest",
        "version": 1,
        "made_with": "scanlab synth resources/selftest " + " ".join(ARGS),
        "model": {"name": out["model"]["name"], "file": default_model_path().name,
                  "weights_sha256": out["model"]["weights_sha256"]},
        "reference": {
            "per_patch_accuracy": out["per_patch_accuracy"],
            "per_image_accuracy": out["per_image_accuracy"],
            "n_images": n_img,
            "n_patches": out["n_patches"],
            "confusion_per_image": out["confusion_per_image"],
            "device": "cpu",
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "versions": library_versions(),
            "commit": commit,
        },
        # Another device or BLAS rounds differently and may flip a few borderline
        # windows: half a point of patches (~10 of 1920) and one scan of the set.
        "tolerance": {"per_patch_accuracy": 0.005, "per_image_accuracy": round(1.0 / n_img + 1e-4, 4)},
    }
    (OUT / "selftest.json").write_text(json.dumps(ref, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(ref["reference"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
