"""Folder-per-scanner data sets, the seeded split by image, and the decoded-image cache.

A data folder holds one sub-folder per class (scanner); every readable image below
a class folder is one sample of that class (each embedded image of a PDF and each
page of a multi-page TIFF too, named ``FILE.pdf#page=P&image=I`` / ``FILE.tif#page=P``). Splits are made **by image** within
each class (patches of one image never land in two splits), seeded, with ratios
train:val:test (default 6:1:3; test may be 0).

Decoding big scans is the slow part of repeated training runs, and a lab's
collection does not fit in RAM, so decoded pixel arrays live in a cache folder on
disk, **one ``.npy`` file per image** named by the file's SHA-256 and the decoder
version (:data:`scanlab.core.io.imaging.DECODER_VERSION`). Training memory-maps them
and reads only the patches it needs. Files are written under a temporary name and
renamed, so two runs sharing the cache never see or delete a half-written array,
and arrays made by an older decoder are never reused. Deleting the folder loses
nothing.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from scanlab.core.errors import ScanLabError
from scanlab.core.io.containers import find_evidence, item_sha256
from scanlab.core.io.imaging import DECODER_VERSION, load_scan

SPLITS = ("train", "val", "test")


class DatasetError(ScanLabError):
    """A data folder cannot be used as asked."""


@dataclass
class Sample:
    """One image of the data set."""

    path: Path
    label: int
    sha256: str = ""
    unit: str = ""  # physical unit (``Model/Unit/...`` layout); "" when units are not used


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


OTHER_DIR = "_other"  # DATA_DIR/_other: the lab's scans of no reference scanner (negatives), never a class


def class_dirs(root: str | os.PathLike) -> tuple[Path, list[Path]]:
    """The data folder and its class sub-folders (sorted; hidden ones and :data:`OTHER_DIR` skipped).

    Raises
    ------
    DatasetError
        The folder is missing or is not a folder.
    """
    r = Path(root)
    if not r.exists():
        raise DatasetError(f"{r}: data folder does not exist")
    if not r.is_dir():
        raise DatasetError(f"{r}: is not a folder")
    return r, sorted(d for d in r.iterdir() if d.is_dir() and not d.name.startswith(".") and d.name != OTHER_DIR)


def _class_folders(root: str | os.PathLike, min_classes: int) -> tuple[Path, list[tuple[Path, list[Path]]]]:
    r, folders = class_dirs(root)
    if not folders:
        raise DatasetError(f"{r}: no class sub-folders (expected one folder per scanner)")
    out = []
    for d in folders:
        files = find_evidence(d)  # a PDF's embedded images and a TIFF's pages are one sample each
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


def discover(
    root: str | os.PathLike,
    *,
    hash_files: bool = True,
    min_classes: int = 1,
    units: bool = False,
    exclude: Sequence[str] = (),
) -> Dataset:
    """Find classes and images below ``root``.

    ``min_classes``: 2 for training (one class cannot be trained); evaluation
    accepts a single scanner's folder.
    With ``units``, the layout is ``Model/Unit/...``: the first folder below a class
    folder names the physical unit of every image below it (see :func:`split_dataset`'s
    ``holdout_unit``); images lying directly in the class folder get unit ``"(loose)"``.
    Files in ``exclude`` (e.g. the wizard's unreadable files and label conflicts) are
    left out before anything is read.

    Raises
    ------
    DatasetError
        Missing or empty folder, no class folder with images, fewer than
        ``min_classes`` classes, or (when hashing) one file filed under two classes.
    """
    r, found = _class_folders(root, min_classes)
    samples: list[Sample] = []
    classes: list[str] = []
    drop = {Path(p).resolve() for p in exclude}
    for d, files in found:
        classes.append(d.name)
        samples += [Sample(p, len(classes) - 1, unit=_unit_of(p, d) if units else "")
                    for p in files if not drop or p.resolve() not in drop]
    h = hashlib.sha256()
    if hash_files:
        first: dict[str, Sample] = {}
        for s in samples:
            s.sha256 = item_sha256(s.path)
            h.update(f"{s.path.relative_to(r).as_posix()}\t{s.sha256}\n".encode())
            prev = first.setdefault(s.sha256, s)
            if prev.label != s.label:
                raise DatasetError(
                    f"{s.path}: the same file (identical bytes) is also under class "
                    f"{classes[prev.label]} ({prev.path}); a scan can have one scanner only"
                )
    return Dataset(r, classes, samples, h.hexdigest() if hash_files else "")


def _unit_of(path: Path, class_dir: Path) -> str:
    rel = path.relative_to(class_dir).parts
    return rel[0] if len(rel) > 1 else "(loose)"


def units_of(ds: Dataset) -> dict[str, list[str]]:
    """Units per class (sorted); empty lists when the data set was discovered without units."""
    out: dict[str, set[str]] = {c: set() for c in ds.classes}
    for s in ds.samples:
        if s.unit:
            out[ds.classes[s.label]].add(s.unit)
    return {c: sorted(u) for c, u in out.items()}


def split_dataset(
    ds: Dataset, ratios: tuple[float, float, float], seed: int, *, holdout_unit: bool = False
) -> Dataset:
    """Seeded split by image within each class; every non-zero split gets >= 1 image.

    With ``holdout_unit`` (data discovered with ``units=True``), the test split of each
    class is one whole physical unit chosen with the seed, and the other units' images
    are split train:val by the ratios: the test then measures a sensor the model never
    saw, where a split by image lets one unit's pattern leak into the test.

    Raises
    ------
    DatasetError
        A class folder has too few images (or units) for the requested split.
    """
    if holdout_unit:
        return _split_holdout_unit(ds, ratios, seed)
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


def _split_holdout_unit(ds: Dataset, ratios: tuple[float, float, float], seed: int) -> Dataset:
    rng = np.random.default_rng(seed)
    out: dict[str, list[Sample]] = {s: [] for s in SPLITS}
    tv = ratios[0] / (ratios[0] + ratios[1])
    for ci, cname in enumerate(ds.classes):
        items = [s for s in ds.samples if s.label == ci]
        units = sorted({s.unit for s in items if s.unit})
        if len(units) < 2:
            raise DatasetError(
                f"{ds.root / cname}: {len(units)} unit folder(s); holding out a whole unit needs at least 2 "
                "(use the Model/Unit/... layout, or split by image)"
            )
        test_unit = units[int(rng.integers(len(units)))]
        rest = [s for s in items if s.unit != test_unit]
        if len(rest) < 2:
            raise DatasetError(f"{ds.root / cname}: {len(rest)} image(s) outside the held-out unit; need 2")
        order = rng.permutation(len(rest))
        n_train = min(len(rest) - 1, max(1, round(len(rest) * tv)))
        out["train"] += [rest[i] for i in sorted(order[:n_train])]
        out["val"] += [rest[i] for i in sorted(order[n_train:])]
        out["test"] += [s for s in items if s.unit == test_unit]
    ds.split = out
    return ds


class ImageCache:
    """Decoded pixel arrays on disk, one ``<sha256>-d<decoder version>.npy`` file per image.

    Parameters
    ----------
    folder : path-like
        The cache folder (created when needed). Several processes may share it.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.hits = 0
        self.misses = 0

    def path_for(self, sha256: str) -> Path:
        """Cache file of the image whose bytes hash to ``sha256`` (decoder version in the name)."""
        return self.folder / f"{sha256}-d{DECODER_VERSION}.npy"

    def ensure(self, sample: Sample) -> Path:
        """Make sure ``sample`` is decoded in the cache; return its ``.npy`` path.

        Raises
        ------
        ImageLoadError
            The file cannot be decoded.
        DatasetError
            The file changed since it was hashed.
        """
        key = sample.sha256 or item_sha256(sample.path)
        out = self.path_for(key)
        if out.exists():
            try:
                np.load(out, mmap_mode="r")  # header check only: a damaged file is rebuilt
                self.hits += 1
                return out
            except (OSError, ValueError):
                pass
        scan = load_scan(sample.path)
        if scan.info.sha256 != key:
            raise DatasetError(f"{sample.path}: file changed while the data set was being read")
        self.misses += 1
        self.folder.mkdir(parents=True, exist_ok=True)
        # a private temporary name, then an atomic rename: a concurrent run writing the same
        # key replaces it with identical bytes, and readers holding the old file keep it open
        fd, tmp = tempfile.mkstemp(prefix=f".{key[:16]}.", suffix=".npy", dir=self.folder)
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, scan.pixels)
            os.replace(tmp, out)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return out

    def get(self, sample: Sample) -> np.ndarray:
        """Pixels (H, W, 3) of ``sample`` as a copy-on-write memory map of its cache file."""
        return np.load(self.ensure(sample), mmap_mode="c")


class CachedImages(Sequence):
    """A split's images as cache files: indexing memory-maps one image at a time.

    Nothing is held in RAM between accesses, so a validation or test pass over a
    large collection needs the memory of one image's touched pages at most.
    """

    def __init__(self, files: Sequence[Path], labels: Sequence[int], shapes: Sequence[tuple[int, int]]) -> None:
        self.files = [Path(f) for f in files]
        self.labels = [int(y) for y in labels]
        self.shapes = [tuple(int(v) for v in s) for s in shapes]

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i):  # type: ignore[override]
        # copy-on-write: callers (torch.from_numpy) may want a writable array; the file never changes
        return np.load(self.files[i], mmap_mode="c")
