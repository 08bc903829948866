"""What a reference collection holds, before anyone trains on it (the wizard's first page).

:func:`inspect_collection` walks a folder-per-scanner tree (or ``Model/Unit/...``),
reads every image's header (size, dpi, format), hashes every file, and reports:

* per class: image count, units, sizes, dpi values, formats, a few thumbnails;
* unreadable files (listed, excluded from training);
* label conflicts: the same bytes (SHA-256) in two scanner folders (both copies are
  excluded: one file cannot come from two scanners);
* warnings that say what to do: classes too small to split, unbalanced classes.

Only headers are decoded for every file; thumbnails are made for the first few
images of each class, so a large collection is inspected at the speed of hashing.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from scanlab.core.errors import ScanLabError
from scanlab.core.io.containers import find_evidence, is_ref
from scanlab.core.io.imaging import FORMATS, load_scan, sha256_file
from scanlab.core.jobs import CancelToken, ProgressFn, check, report
from scanlab.core.training.dataset import class_dirs

THUMBS_PER_CLASS = 4
THUMB_SIZE = 96
MIN_PER_CLASS = 3  # train + val + test need one image each
UNBALANCED_RATIO = 3.0


@dataclass
class ClassSummary:
    """One scanner's images."""

    name: str
    count: int = 0
    units: list[str] = field(default_factory=list)
    sizes: list[tuple[int, int]] = field(default_factory=list)  # (width, height) per image
    dpi: list[str] = field(default_factory=list)  # distinct values, e.g. "600x600", "unknown"
    formats: list[str] = field(default_factory=list)
    thumbnails: list[np.ndarray] = field(default_factory=list)  # small RGB uint8 arrays

    def size_text(self) -> str:
        """``"2480x3508"`` or ``"1000x800 .. 2480x3508"``."""
        if not self.sizes:
            return "-"
        lo = min(self.sizes, key=lambda s: s[0] * s[1])
        hi = max(self.sizes, key=lambda s: s[0] * s[1])
        return f"{lo[0]}x{lo[1]}" if lo == hi else f"{lo[0]}x{lo[1]} .. {hi[0]}x{hi[1]}"


@dataclass
class CollectionReport:
    """Everything the wizard's Collection page shows."""

    root: Path
    units: bool
    classes: list[ClassSummary]
    unreadable: list[tuple[str, str]]  # (path, reason)
    conflicts: list[tuple[str, list[str]]]  # (sha256, [paths in different class folders])
    warnings: list[str]
    errors: list[str]  # the collection cannot be trained on as it is

    def excluded(self) -> list[str]:
        """Files training must leave out: unreadable ones and every copy in a label conflict."""
        out = [p for p, _ in self.unreadable]
        for _, paths in self.conflicts:
            out += paths
        return sorted(set(out))

    def usable_counts(self) -> dict[str, int]:
        """Images per class once the excluded files are left out."""
        return {c.name: c.count for c in self.classes}

    def to_json(self) -> dict[str, Any]:
        """Plain data (no thumbnails) for logs and tests."""
        return {
            "root": str(self.root),
            "classes": {c.name: {"count": c.count, "units": c.units, "sizes": c.size_text(), "dpi": c.dpi,
                                 "formats": c.formats} for c in self.classes},
            "unreadable": [{"path": p, "reason": r} for p, r in self.unreadable],
            "conflicts": [{"sha256": h, "paths": ps} for h, ps in self.conflicts],
            "warnings": self.warnings,
            "errors": self.errors,
        }


def _header(path: Path) -> tuple[str, tuple[int, int], str]:
    """(format, (width, height), dpi text) from the header only; raises on unreadable files."""
    with Image.open(path) as img:
        fmt = img.format or "?"
        if fmt not in FORMATS:
            raise ValueError(f"unsupported format {fmt}")
        dpi = img.info.get("dpi")
        # TIFFs without a resolution unit report (1, 1): a placeholder, not a scanning resolution
        if dpi and min(float(dpi[0]), float(dpi[1])) >= 20:
            dpi_text = f"{round(float(dpi[0]))}x{round(float(dpi[1]))}"
        else:
            dpi_text = "not set"
        if min(img.size) < 64:
            raise ValueError(f"image is {img.size[0]}x{img.size[1]}, smaller than 64 px on a side")
        return fmt, img.size, dpi_text


def _item_header(ref: Path) -> tuple[str, tuple[int, int], str, str]:
    """(format, size, dpi text, SHA-256) of a container item (its own bytes' hash)."""
    info = load_scan(ref).info
    return info.format, (info.width, info.height), "not set", info.sha256


def _thumbnail(path: Path) -> np.ndarray | None:
    if is_ref(path):
        try:
            px = load_scan(path).pixels
        except ScanLabError:
            return None
        img = Image.fromarray((px >> 8).astype(np.uint8) if px.dtype == np.uint16 else px)
        img.thumbnail((THUMB_SIZE, THUMB_SIZE))
        return np.asarray(img, dtype=np.uint8).copy()
    try:
        with Image.open(path) as img:
            img.draft("RGB", (THUMB_SIZE * 2, THUMB_SIZE * 2))  # JPEG: decode at reduced size
            img = img.convert("RGB")
            img.thumbnail((THUMB_SIZE, THUMB_SIZE))
            return np.asarray(img, dtype=np.uint8).copy()
    except (OSError, ValueError, UnidentifiedImageError):
        return None


def inspect_collection(
    root: str | os.PathLike,
    *,
    units: bool = False,
    thumbnails: bool = True,
    cancel: CancelToken | None = None,
    progress: ProgressFn | None = None,
) -> CollectionReport:
    """Inspect a reference collection (see the module docstring).

    Raises
    ------
    DatasetError
        The folder is missing, is not a folder, or has no class sub-folders.
    """
    r, class_folders = class_dirs(root)
    files = [(d, p) for d in class_folders for p in find_evidence(d)]  # PDF items and TIFF pages included
    summaries = {d.name: ClassSummary(d.name) for d in class_folders}
    unreadable: list[tuple[str, str]] = []
    by_hash: dict[str, list[tuple[str, str]]] = defaultdict(list)
    readable: list[tuple[Path, Path, str, tuple[int, int], str]] = []
    for k, (d, p) in enumerate(files):
        check(cancel)
        try:
            if is_ref(p) or p.suffix.lower() == ".pdf":  # a PDF item or TIFF page: decoded (no header of its own)
                fmt, size, dpi, digest = _item_header(p)
            else:
                fmt, size, dpi = _header(p)
                digest = sha256_file(p)
        except ScanLabError as e:
            unreadable.append((str(p), str(e)))
        except (OSError, ValueError, SyntaxError, UnidentifiedImageError, Image.DecompressionBombError) as e:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            if isinstance(e, UnidentifiedImageError):
                msg = "not a readable image (unknown or corrupt format)"
            unreadable.append((str(p), msg))
        else:
            by_hash[digest].append((d.name, str(p)))
            readable.append((d, p, fmt, size, dpi))
        report(progress, k + 1, len(files))
    conflicts = [
        (h, sorted(p for _, p in entries)) for h, entries in sorted(by_hash.items())
        if len({c for c, _ in entries}) > 1
    ]
    conflicted = {p for _, ps in conflicts for p in ps}
    for d, p, fmt, size, dpi in readable:
        if str(p) in conflicted:
            continue
        s = summaries[d.name]
        s.count += 1
        s.sizes.append(size)
        if dpi not in s.dpi:
            s.dpi.append(dpi)
        if fmt not in s.formats:
            s.formats.append(fmt)
        if units:
            rel = p.relative_to(d).parts
            u = rel[0] if len(rel) > 1 else "(loose)"
            if u not in s.units:
                s.units.append(u)
        if thumbnails and len(s.thumbnails) < THUMBS_PER_CLASS:
            t = _thumbnail(p)
            if t is not None:
                s.thumbnails.append(t)
    classes = list(summaries.values())
    warnings, errors = _advice(r, classes, units, unreadable, conflicts)
    return CollectionReport(r, units, classes, unreadable, conflicts, warnings, errors)


def _advice(r: Path, classes: list[ClassSummary], units: bool, unreadable: list, conflicts: list):
    warnings: list[str] = []
    errors: list[str] = []
    if not classes:
        errors.append(f"{r}: no class sub-folders (expected one folder per scanner)")
        return warnings, errors
    used = [c for c in classes if c.count > 0]
    for c in classes:
        if c.count == 0:
            warnings.append(f"{c.name}: no usable images; this folder is ignored")
    if len(used) < 2:
        errors.append(f"{r}: {len(used)} scanner folder(s) with images; a model needs at least 2 scanners")
    for c in used:
        if c.count < MIN_PER_CLASS:
            errors.append(
                f"{c.name}: {c.count} image(s), too few to split into train, validation and test; "
                f"add at least {MIN_PER_CLASS - c.count} more scan(s) of this scanner"
            )
        elif c.count < 10:
            warnings.append(f"{c.name}: only {c.count} images; 10 or more per scanner give a more reliable model")
        if units and len(c.units) < 2:
            warnings.append(f"{c.name}: one unit only; 'hold out a whole unit' needs two or more units")
    if len(used) >= 2:
        lo = min(used, key=lambda c: c.count)
        hi = max(used, key=lambda c: c.count)
        if lo.count and hi.count / lo.count > UNBALANCED_RATIO:
            warnings.append(
                f"unbalanced classes: {hi.name} has {hi.count} images, {lo.name} only {lo.count}; "
                f"add scans of {lo.name} (or use fewer of {hi.name}) so the model is not biased towards {hi.name}"
            )
    if unreadable:
        warnings.append(f"{len(unreadable)} unreadable file(s) are excluded from training (listed below)")
    if conflicts:
        warnings.append(
            f"{len(conflicts)} file(s) appear in two scanner folders (label conflict); every copy is excluded: "
            "keep each scan in the folder of the scanner that made it"
        )
    return warnings, errors
