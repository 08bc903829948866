"""Writing a virtual scanner bank to disk: ``OUT/<scanner>/<scanner>_<k>.<ext>``.

Scanner identities (design parameters and unit sensor patterns) depend only on
the bank name; ``seed`` drives the content and the per-scan noise, so a new seed
gives a fresh test set of the *same* scanners. Image ``k`` of a model is scanned
by unit ``k % units`` (default two units per model), so a classifier trained on
the bank has to learn model traits, not one unit's column pattern.

Files are written to a hidden temporary name and renamed, so an interrupted run
leaves no half-written image behind (and ``find_images`` skips hidden names).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scanlab.core.engine.network import PATCH
from scanlab.core.errors import ScanLabError
from scanlab.core.jobs import CancelToken, ProgressFn, check, report
from scanlab.core.synth.content import make_page
from scanlab.core.synth.dsp import rng_for
from scanlab.core.synth.scanner import ScannerDesign, bank, encode, scan, unit_for_image

DEFAULT_UNITS = 2
MAX_SIZE = 8192


@dataclass(frozen=True)
class SynthScan:
    """One simulated scan: the processed pixels and the encoded file bytes."""

    design: ScannerDesign
    serial: int
    pixels: np.ndarray  # uint8 (H, W, 3) before encoding
    data: bytes  # file bytes in the scanner's format

    @property
    def extension(self) -> str:
        """File suffix."""
        return self.design.extension


def check_size(size: int) -> None:
    """Refuse scan sizes a 64x64 patch does not fit in (or absurdly large ones)."""
    if size < PATCH:
        raise ScanLabError(f"--size {size}: images must be at least {PATCH} px on a side")
    if size > MAX_SIZE:
        raise ScanLabError(f"--size {size}: images larger than {MAX_SIZE} px are not supported")


def synth_scan(
    d: ScannerDesign,
    image_index: int,
    *,
    seed: int = 0,
    size: int | tuple[int, int] = 512,
    units: int = DEFAULT_UNITS,
    extra_content: tuple[str, ...] = (),
    purpose: str = "bank",
) -> SynthScan:
    """Simulate scan ``image_index`` of scanner ``d``.

    Content and noise come from (bank, seed, purpose, scanner index, image index):
    different scanners and images always get different content.
    """
    h, w = (size, size) if isinstance(size, int) else size
    rng = rng_for("scanlab-content", d.bank, seed, purpose, d.index, image_index)
    page = make_page(h + 8, w, rng, extra_content)
    unit = unit_for_image(d, image_index, units)
    px = scan(unit, page, rng)
    return SynthScan(d, unit.serial, px, encode(px, d))


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a hidden temporary file and a rename."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def prepare_output(out: str | os.PathLike, force: bool) -> Path:
    """Create ``out`` or refuse an existing non-empty folder unless ``force``."""
    p = Path(out)
    if p.exists() and not p.is_dir():
        raise ScanLabError(f"{p}: exists and is not a folder")
    if p.is_dir() and any(p.iterdir()) and not force:
        raise ScanLabError(f"{p}: output folder exists and is not empty (use --force to write into it)")
    p.mkdir(parents=True, exist_ok=True)
    return p


def write_bank(
    out: str | os.PathLike,
    n_scanners: int,
    n_images: int,
    *,
    size: int = 512,
    seed: int = 0,
    bank_name: str = "default",
    units: int = DEFAULT_UNITS,
    force: bool = False,
    extra_content: tuple[str, ...] = (),
    cancel: CancelToken | None = None,
    progress: ProgressFn | None = None,
) -> dict:
    """Write ``n_images`` scans for each of the first ``n_scanners`` scanners of a bank.

    Parameters
    ----------
    out : path
        Output folder; one sub-folder per scanner is created.
    n_scanners, n_images : int
        Scanners (>= 1) and images per scanner (>= 1).
    size : int
        Side of each square scan in pixels (>= 64).
    seed : int
        Content seed; the scanners themselves depend only on ``bank_name``.
    units : int
        Physical units per model; image k is scanned by unit ``k % units``.
    force : bool
        Write into an existing non-empty folder (old images of the same scanners
        are removed first so the folder holds exactly this bank).
    extra_content : tuple of str
        Extra folders of photographs to use as content (e.g. real scans).

    Returns
    -------
    dict
        The provenance written to ``OUT/synth.json``.
    """
    if n_scanners < 1:
        raise ScanLabError(f"--scanners {n_scanners}: need at least 1 scanner")
    if n_images < 1:
        raise ScanLabError(f"--images {n_images}: need at least 1 image per scanner")
    if units < 1:
        raise ScanLabError(f"units {units}: need at least 1 unit per model")
    check_size(size)
    if not bank_name or any(c in bank_name for c in "/\\:") or bank_name.startswith("."):
        raise ScanLabError(f"--bank {bank_name!r}: not a usable bank name")
    root = prepare_output(out, force)
    designs = bank(bank_name, n_scanners)
    total = n_scanners * n_images
    report(progress, 0, total)
    files: dict[str, list[str]] = {}
    for si, d in enumerate(designs):
        folder = root / d.name
        folder.mkdir(exist_ok=True)
        for old in folder.glob(f"{d.name}_*"):
            old.unlink()
        files[d.name] = []
        for k in range(n_images):
            check(cancel)
            s = synth_scan(d, k, seed=seed, size=size, units=units, extra_content=extra_content)
            name = f"{d.name}_{k:04d}{d.extension}"
            write_atomic(folder / name, s.data)
            files[d.name].append(name)
            report(progress, si * n_images + k + 1, total)
    meta = {
        "generator": "scanlab.core.synth",
        "bank": bank_name,
        "seed": seed,
        "size": size,
        "units_per_model": units,
        "scanners": [d.to_dict() for d in designs],
        "images_per_scanner": n_images,
        "extra_content": list(extra_content),
    }
    write_atomic(root / "synth.json", json.dumps(meta, indent=1).encode())
    return meta
