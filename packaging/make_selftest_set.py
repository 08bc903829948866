"""(Re)make the self-test set in resources/selftest/ and its reference figures.

    python packaging/make_selftest_set.py            # after the shipped model changed

Writes 3 scans per scanner of the default virtual bank with content seed 1001 (the
card's Table I fresh-set seed: content the model never saw) at 512 x 512, and one
small scan (256 x 256) per scanner of the bank ``elsewhere`` (scanners the model
never saw) into ``unseen/``; drops the scans whose content came from a scikit-image
photograph without a stated licence (UNCLEAR, see packaging/THIRD_PARTY.md), then
scores the rest with the shipped model on the CPU and records in
resources/selftest/selftest.json: the figures and verdict counts, the model file's
SHA-256 (weights *and* manifest), the SHA-256 of every file of the set, and the
tolerance. The SHA-256 of selftest.json itself goes into
``scanlab/services/selftest.py`` (``SHIPPED_REFERENCE_SHA256``), so an edited
reference is caught too. Needs scanlab[synth].
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "resources" / "selftest"
# scikit-image ships these without a licence statement (moon, page) or from a data set
# whose terms do not grant redistribution (Middlebury stereo): never shipped by us.
UNCLEAR = ("moon.png", "page.png", "motorcycle_left.png")
ARGS = ["--scanners", "10", "--images", "3", "--size", "512", "--seed", "1001", "--bank", "default"]
# Scanners of another bank: the shipped model must answer "unknown" on them. Small
# scans, one per scanner, keep the shipped set small (~0.4 MB) and the run short.
UNSEEN_ARGS = ["--scanners", "10", "--images", "1", "--size", "256", "--seed", "1001", "--bank", "elsewhere"]
SELFTEST_PY = ROOT / "scanlab" / "services" / "selftest.py"


def _shipped_name(rel: str) -> str:
    """Where a bank file lands in the set: the unseen bank's scans all go to ``unseen/``."""
    return f"unseen/{Path(rel).name}" if rel.startswith("elsewhere-") else rel


def main() -> int:
    from scanlab.cli import main as cli
    from scanlab.core.modelfile.store import library_versions, read_manifest
    from scanlab.core.synth import bank as bank_mod
    from scanlab.core.synth import content
    from scanlab.services.evaluation import evaluate_folder
    from scanlab.services.paths import default_model_path
    from scanlab.services.selftest import manifest_digest, verdict_counts

    # Record which shipped photographs each scan's content used.
    used: dict[str, set[str]] = {}
    current = [""]
    synth_scan, load_photo = bank_mod.synth_scan, content._load_photo

    def recording_synth_scan(d, k, **kw):
        current[0] = f"{d.name}/{d.name}_{k:04d}{d.extension}"
        used[current[0]] = set()
        return synth_scan(d, k, **kw)

    def recording_load_photo(path: str):
        used[current[0]].add(Path(path).name)
        return load_photo(path)

    bank_mod.synth_scan, content._load_photo = recording_synth_scan, recording_load_photo
    with tempfile.TemporaryDirectory() as tmp:
        bank = Path(tmp) / "selftest"
        unseen = Path(tmp) / "unseen"
        try:
            if cli(["synth", str(bank), *ARGS]) != 0 or cli(["synth", str(unseen), *UNSEEN_ARGS]) != 0:
                return 1
        finally:
            bank_mod.synth_scan, content._load_photo = synth_scan, load_photo
        excluded = sorted(f for f, photos in used.items() if photos & set(UNCLEAR))
        for f in excluded:
            (bank / f).unlink(missing_ok=True)
            (unseen / f).unlink(missing_ok=True)
        # the unseen scanners' scans go into one folder the model has no class for
        (bank / "unseen").mkdir()
        for f in sorted(unseen.rglob("*")):
            if f.is_file():
                f.rename(bank / "unseen" / f.name)
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
        "excluded": {"files": [_shipped_name(f) for f in excluded], "why": "content from scikit-image photographs without a "
                     "stated licence: " + ", ".join(UNCLEAR)},
        "photographs": {_shipped_name(f): sorted(p) for f, p in sorted(used.items()) if f not in excluded},
        "made_with_unseen": "scanlab synth unseen " + " ".join(UNSEEN_ARGS) + " (files moved to unseen/)",
        "model": {"name": out["model"]["name"], "file": default_model_path().name,
                  "weights_sha256": out["model"]["weights_sha256"],
                  "file_sha256": hashlib.sha256(default_model_path().read_bytes()).hexdigest(),
                  "manifest_sha256": manifest_digest(read_manifest(default_model_path()))},
        "files": {f.relative_to(OUT).as_posix(): hashlib.sha256(f.read_bytes()).hexdigest()
                  for f in sorted(OUT.rglob("*")) if f.is_file() and f.name != "selftest.json"},
        "reference": {
            "per_patch_accuracy": out["per_patch_accuracy"],
            "per_image_accuracy": out["per_image_accuracy"],
            "n_images": n_img,
            "n_patches": out["n_patches"],
            "confusion_per_image": out["confusion_per_image"],
            "verdicts": verdict_counts(out),
            "device": "cpu",
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "versions": library_versions(),
            "commit": commit,
        },
        # Another device or BLAS rounds differently and may flip a few borderline
        # windows: half a point of patches (~10 of 1920) and one scan of the set.
        # Verdict counts: one scan either way (a score on its threshold may tip).
        "tolerance": {"per_patch_accuracy": 0.005, "per_image_accuracy": round(1.0 / n_img + 1e-4, 4),
                      "verdict_scans": 1},
    }
    ref_path = OUT / "selftest.json"
    ref_path.write_text(json.dumps(ref, indent=1) + "\n", encoding="utf-8")
    digest = hashlib.sha256(ref_path.read_bytes()).hexdigest()
    code = SELFTEST_PY.read_text(encoding="utf-8")
    code, n = re.subn(r'^SHIPPED_REFERENCE_SHA256 = "[0-9a-f]*"$', f'SHIPPED_REFERENCE_SHA256 = "{digest}"', code,
                      flags=re.M)
    if n != 1:
        print(f"{SELFTEST_PY}: no SHIPPED_REFERENCE_SHA256 line to update", file=sys.stderr)
        return 1
    SELFTEST_PY.write_text(code, encoding="utf-8")
    print(json.dumps(ref["reference"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
