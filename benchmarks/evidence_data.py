"""Data for the evidence benchmark: the shipped model's validation split, fresh scans, unknown scanners.

The validation images are re-simulated from the file list in the model's manifest
(``training.data.files.val``: ``vscan-NN/vscan-NN_KKKK.jpg`` is scan KKKK of scanner
NN of the default bank, content seed ``training.seed`` of the bank), byte for byte the
files the model was validated on, without writing the 1000-scan bank.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from scanlab.core.modelfile.store import read_manifest
from scanlab.core.synth.bank import synth_scan, write_atomic, write_bank
from scanlab.core.synth.scanner import design

_NAME = re.compile(r"vscan-(\d+)/vscan-\d+_(\d+)\.\w+$")


def resimulate(rel: str, *, bank_seed: int = 0, size: int = 512) -> bytes:
    """The file bytes of ``vscan-NN/vscan-NN_KKKK.ext``: scan KKKK of scanner NN of the default bank."""
    m = _NAME.search(rel)
    if m is None:
        raise SystemExit(f"unexpected scan file name in the manifest: {rel!r}")
    return synth_scan(design("default", int(m.group(1)) - 1), int(m.group(2)), seed=bank_seed, size=size).data


def write_val_split(model: str, out: Path, *, bank_seed: int = 0, size: int = 512, split: str = "val") -> int:
    """Re-simulate the model's validation (or other ``split``) images into ``out/<class>/``; returns the count."""
    files = read_manifest(model)["training"]["data"]["files"][split]
    for rel in files:
        target = out / rel
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(target, resimulate(rel, bank_seed=bank_seed, size=size))
    return len(files)


def main() -> None:
    """Write val/, known-fresh/ and unknown/ under --work (skipping what exists)."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="trained_models/scanlab-default.safetensors")
    ap.add_argument("--work", default="/tmp/scanlab-evidence")
    ap.add_argument("--seed", type=int, default=2024, help="content seed of the fresh known scans")
    ap.add_argument("--images", type=int, default=10, help="fresh scans per scanner")
    ap.add_argument("--unknown-bank", default="elsewhere", help="bank name of the unknown scanners")
    ap.add_argument("--unknown-scanners", type=int, default=10)
    ap.add_argument("--size", type=int, default=512)
    a = ap.parse_args()
    work = Path(a.work)
    out = {"val": write_val_split(a.model, work / "val")}
    fresh = work / f"known-s{a.seed}"
    if not fresh.exists():
        write_bank(fresh, n_scanners=10, n_images=a.images, size=a.size, seed=a.seed)
    unk = work / f"unknown-{a.unknown_bank}"
    if not unk.exists():
        write_bank(unk, n_scanners=a.unknown_scanners, n_images=a.images, size=a.size, seed=a.seed,
                   bank_name=a.unknown_bank)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
