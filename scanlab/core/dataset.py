"""Folder-per-scanner data sets, the seeded split by image, and the decoded-image cache.

A data folder holds one sub-folder per class (scanner); every readable image below
a class folder is one sample of that class. Splits are made **by image** within
each class (patches of one image never land in two splits), seeded, with ratios
train:val:test (default 6:1:3; test may be 0).

Decoding big scans is the slow part of repeated training runs, so decoded pixel
arrays are cached in one HDF5 file keyed by the file's SHA-256: a second run (or a
run on a renamed copy) does not decode again. The cache is a convenience; deleting
it loses nothing.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from scanlab.core.errors import ScanLabError
from scanlab.core.imaging import find_images, load_scan, sha256_file

SPLITS = ("train", "val", "test")


class DatasetError(ScanLabError):
    """A data folder cannot be used as asked."""


@dataclass
class Sample:
    """One image of the data set."""

    path: Path
    label: int
    sha256: str = ""


@dataclass
class Dataset:
    """Discovered data: class names (sorted folder names) and samples."""

    root: Path
    classes: list[str]
    samples: list[Sample]
    folder_hash: str = ""
    split: dict[str, list[Sample]] = field(default_factory=dict)

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per class per split."""
        out = {c: {s: 0 for s in SPLITS} for c in self.classes}
        for s, items in self.split.items():
            for it in items:
                out[self.classes[it.label]][s] += 1
        return out


def parse_split(text: str) -> tuple[float, float, float]:
    """``"6:1:3"`` -> normalised (0.6, 0.1, 0.3); train and val must be > 0."""
    try:
        parts = [float(p) for p in text.split(":")]
    except ValueError:
        raise DatasetError(f"bad split {text!r}: expected three numbers like 6:1:3") from None
    if len(parts) != 3 or any(p < 0 for p in parts) or parts[0] <= 0 or parts[1] <= 0:
        raise DatasetError(f"bad split {text!r}: need train:val:test with train and val > 0")
    s = sum(parts)
    return parts[0] / s, parts[1] / s, parts[2] / s


def _class_folders(root: str | os.PathLike, min_classes: int) -> tuple[Path, list[tuple[Path, list[Path]]]]:
    r = Path(root)
    if not r.exists():
        raise DatasetError(f"{r}: data folder does not exist")
    if not r.is_dir():
        raise DatasetError(f"{r}: is not a folder")
    class_dirs = sorted(d for d in r.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise DatasetError(f"{r}: no class sub-folders (expected one folder per scanner)")
    out = []
    for d in class_dirs:
        files = find_images(d)
        if not files:
            raise DatasetError(f"{d}: class folder has no images")
        out.append((d, files))
    if len(out) < min_classes:
        raise DatasetError(
            f"{r}: only one class folder ({out[0][0].name}); training needs at least two "
            "scanners, one sub-folder each"
        )
    return r, out


def check_layout(root: str | os.PathLike, min_classes: int = 2) -> list[Path]:
    """Cheap structural check of a training folder (no file is read); returns every image path.

    Raises
    ------
    DatasetError
        Missing or non-folder root, no class folders, an empty class folder, or
        fewer than ``min_classes`` classes (training needs two).
    """
    _, classes = _class_folders(root, min_classes)
    return [p for _, files in classes for p in files]


def discover(root: str | os.PathLike, *, hash_files: bool = True, min_classes: int = 1) -> Dataset:
    """Find classes and images below ``root``.

    ``min_classes``: 2 for training (one class cannot be trained); evaluation
    accepts a single scanner's folder.

    Raises
    ------
    DatasetError
        Missing or empty folder, no class folder with images, fewer than
        ``min_classes`` classes, or (when hashing) one file filed under two classes.
    """
    r, found = _class_folders(root, min_classes)
    samples: list[Sample] = []
    classes: list[str] = []
    for d, files in found:
        classes.append(d.name)
        samples += [Sample(p, len(classes) - 1) for p in files]
    h = hashlib.sha256()
    if hash_files:
        first: dict[str, Sample] = {}
        for s in samples:
            s.sha256 = sha256_file(s.path)
            h.update(f"{s.path.relative_to(r).as_posix()}\t{s.sha256}\n".encode())
            prev = first.setdefault(s.sha256, s)
            if prev.label != s.label:
                raise DatasetError(
                    f"{s.path}: the same file (identical bytes) is also under class "
                    f"{classes[prev.label]} ({prev.path}); a scan can have one scanner only"
                )
    return Dataset(r, classes, samples, h.hexdigest() if hash_files else "")


def split_dataset(ds: Dataset, ratios: tuple[float, float, float], seed: int) -> Dataset:
    """Seeded split by image within each class; every non-zero split gets >= 1 image.

    Raises
    ------
    DatasetError
        A class folder has too few images for the requested split.
    """
    need = sum(1 for r in ratios if r > 0)
    rng = np.random.default_rng(seed)
    out: dict[str, list[Sample]] = {s: [] for s in SPLITS}
    for ci, cname in enumerate(ds.classes):
        items = [s for s in ds.samples if s.label == ci]
        if len(items) < need:
            raise DatasetError(
                f"{ds.root / cname}: {len(items)} image(s), too few to split {need} ways "
                f"(need at least {need})"
            )
        order = rng.permutation(len(items))
        n = len(items)
        n_val = max(1, round(n * ratios[1]))
        n_test = max(1, round(n * ratios[2])) if ratios[2] > 0 else 0
        n_train = n - n_val - n_test
        if n_train < 1:  # tiny classes: keep at least one training image
            if n_test > 1:
                n_test -= 1
            else:
                n_val -= 1
            n_train = n - n_val - n_test
        idx = {"train": order[:n_train], "val": order[n_train : n_train + n_val], "test": order[n_train + n_val :]}
        for s in SPLITS:
            out[s] += [items[i] for i in sorted(idx[s])]
    ds.split = out
    return ds


class ImageCache:
    """Decoded pixel arrays in one HDF5 file, keyed by SHA-256 of the file's bytes."""

    def __init__(self, path: str | os.PathLike | None) -> None:
        self.path = Path(path) if path else None
        self.hits = 0
        self.misses = 0

    def get(self, sample: Sample) -> np.ndarray:
        """Pixels (H, W, 3) for ``sample``, from the cache or decoded (then cached)."""
        key = sample.sha256 or sha256_file(sample.path)
        if self.path is not None and self.path.exists():
            try:
                with h5py.File(self.path, "r") as f:
                    if key in f:
                        self.hits += 1
                        return f[key][()]
            except OSError:
                pass  # a damaged cache is ignored and rebuilt below
        scan = load_scan(sample.path)
        if scan.info.sha256 != key:
            raise DatasetError(f"{sample.path}: file changed while the data set was being read")
        self.misses += 1
        if self.path is not None:
            self._put(key, scan.pixels)
        return scan.pixels

    def _put(self, key: str, pixels: np.ndarray) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with h5py.File(self.path, "a") as f:
                if key not in f:
                    f.create_dataset(key, data=pixels, compression="lzf", chunks=True)
        except OSError:
            # a broken cache file must not stop training: start it afresh once
            try:
                self.path.unlink()
                with h5py.File(self.path, "a") as f:
                    f.create_dataset(key, data=pixels, compression="lzf", chunks=True)
            except OSError:
                self.path = None
