"""Safe loading of evidence scans.

Rules (the same for the CLI, the GUI and training):

* The file is opened read-only and never written. Its SHA-256 is computed over
  the exact bytes on disk, from the same bytes that are decoded, so the hash
  describes what was analysed.
* Supported: JPEG, PNG, TIFF (8- and 16-bit), BMP. Anything else is refused.
* Colour conversion (documented, deterministic):
  grayscale (L, 1, I;16, I, F) -> replicated into R = G = B;
  RGBA / LA -> the alpha channel is dropped (the stored colour values are the
  scanner's output; compositing onto a background would invent pixels);
  palette (P, PA) -> expanded through the palette to RGB;
  CMYK / YCbCr / LAB -> Pillow's conversion to RGB.
* Bit depth: 8-bit samples map to [0, 1] by /255, 16-bit by /65535.
* EXIF orientation is **ignored**: the stored pixel array is analysed as stored.
  A scanner's traces are tied to the sensor's raster (the line sensor runs along
  the stored rows, the motor along the stored columns); rotating the array for
  display would turn column patterns into row patterns. The orientation tag is
  reported in :class:`ScanInfo` so a viewer can mention it.
* A pixel-count limit (``MAX_PIXELS``, 250 MP by default) refuses decompression
  bombs before decoding.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from scanlab.core.errors import ScanLabError
from scanlab.core.network import PATCH

MAX_PIXELS = int(os.environ.get("SCANLAB_MAX_PIXELS", 250_000_000))
# Bump whenever load_scan can decode a file to different pixels than before: the
# training cache keys on it, so arrays from an older (buggier) decoder are never reused.
DECODER_VERSION = 1
FORMATS = ("JPEG", "PNG", "TIFF", "BMP")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")


class ImageLoadError(ScanLabError):
    """A scan could not be loaded; the message names the file and the problem."""


@dataclass(frozen=True)
class ScanInfo:
    """What was read, for provenance."""

    path: str
    sha256: str
    format: str
    mode: str
    width: int
    height: int
    bit_depth: int
    n_bytes: int
    exif_orientation: int | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        """Plain-JSON view."""
        return {
            "path": self.path,
            "sha256": self.sha256,
            "format": self.format,
            "mode": self.mode,
            "width": self.width,
            "height": self.height,
            "bit_depth": self.bit_depth,
            "n_bytes": self.n_bytes,
            "exif_orientation": self.exif_orientation,
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class Scan:
    """A decoded scan: ``pixels`` is uint8 or uint16 of shape (H, W, 3)."""

    pixels: np.ndarray
    info: ScanInfo

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols)."""
        return self.pixels.shape[0], self.pixels.shape[1]


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def is_image_path(path: str | os.PathLike) -> bool:
    """True when the suffix is one ScanLab reads."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def find_images(folder: str | os.PathLike) -> list[Path]:
    """Every file with an image suffix below ``folder``, sorted, hidden files skipped."""
    root = Path(folder)
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and is_image_path(p) and not any(s.startswith(".") for s in p.relative_to(root).parts)
    )


def _to_rgb_array(img: Image.Image, name: str) -> tuple[np.ndarray, int, list[str]]:
    notes: list[str] = []
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        a = np.asarray(img, dtype=np.uint16)
        return np.repeat(a[:, :, None], 3, axis=2), 16, ["16-bit grayscale replicated to RGB"]
    if mode in ("I", "F"):
        a = np.asarray(img)
        hi = float(np.nanmax(a)) if a.size else 0.0
        if mode == "I" and hi <= 65535 and float(a.min()) >= 0:
            a16 = a.astype(np.uint16)
            return np.repeat(a16[:, :, None], 3, axis=2), 16, [f"{mode} grayscale read as 16-bit"]
        raise ImageLoadError(f"{name}: unsupported sample format {mode} (values outside 16-bit range)")
    if mode in ("RGB;16", "RGBA;16"):  # pragma: no cover - Pillow rarely exposes these
        raise ImageLoadError(f"{name}: unsupported 16-bit colour layout {mode}")
    if mode == "1" or mode == "L":
        a = np.asarray(img.convert("L"), dtype=np.uint8)
        notes.append("grayscale replicated to RGB")
        return np.repeat(a[:, :, None], 3, axis=2), 8, notes
    if mode == "LA":
        a = np.asarray(img.getchannel("L"), dtype=np.uint8)
        return np.repeat(a[:, :, None], 3, axis=2), 8, ["alpha dropped", "grayscale replicated to RGB"]
    if mode in ("P", "PA"):
        notes.append("palette expanded to RGB")
        img = img.convert("RGBA" if "transparency" in img.info or mode == "PA" else "RGB")
        mode = img.mode
    if mode == "RGBA":
        notes.append("alpha dropped")
        img = img.convert("RGB")
    elif mode != "RGB":
        notes.append(f"{mode} converted to RGB by Pillow")
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.uint8).copy(), 8, notes


def load_scan(path: str | os.PathLike, *, max_pixels: int | None = None, min_side: int = PATCH) -> Scan:
    """Load a scan read-only, hash its bytes and decode it to an (H, W, 3) array.

    Parameters
    ----------
    path : path-like
        The evidence file. It is opened read-only; nothing is ever written to it.
    max_pixels : int, optional
        Refuse images with more pixels than this (decompression-bomb guard);
        defaults to ``MAX_PIXELS``.
    min_side : int
        Refuse images with a side shorter than this (a 64x64 patch must fit).

    Returns
    -------
    Scan
        ``pixels`` (uint8 or uint16, shape (H, W, 3)) and :class:`ScanInfo`.

    Raises
    ------
    ImageLoadError
        With a one-line message naming the file and the problem.
    """
    p = Path(path)
    name = str(p)
    limit = MAX_PIXELS if max_pixels is None else max_pixels
    if not p.exists():
        raise ImageLoadError(f"{name}: no such file")
    if p.is_dir():
        raise ImageLoadError(f"{name}: is a folder, not an image")
    try:
        with open(p, "rb") as f:  # read-only, once: hash and decode the same bytes
            data = f.read()
    except OSError as e:
        raise ImageLoadError(f"{name}: cannot read ({e.strerror or e})") from None
    if not data:
        raise ImageLoadError(f"{name}: empty file (0 bytes)")
    digest = hashlib.sha256(data).hexdigest()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            fmt = img.format or "?"
            if fmt not in FORMATS:
                raise ImageLoadError(f"{name}: unsupported image format {fmt} (supported: {', '.join(FORMATS)})")
            w, h = img.size
            if w * h > limit:
                raise ImageLoadError(
                    f"{name}: {w}x{h} = {w * h / 1e6:.0f} MP exceeds the pixel limit of {limit / 1e6:.0f} MP"
                )
            if min(w, h) < min_side:
                raise ImageLoadError(f"{name}: image is {w}x{h}, smaller than {min_side} px on a side")
            orientation = None
            try:
                orientation = img.getexif().get(0x0112)
            except Exception:  # noqa: BLE001 - a broken EXIF block must not stop analysis
                orientation = None
            if getattr(img, "n_frames", 1) > 1:
                note = [f"multi-page file: page 1 of {img.n_frames} analysed"]
            else:
                note = []
            old = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None  # our own limit above already applied
            try:
                img.load()
            finally:
                Image.MAX_IMAGE_PIXELS = old
            mode = img.mode
            arr, depth, notes = _to_rgb_array(img, name)
    except ImageLoadError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise ImageLoadError(f"{name}: not a readable image (unknown or corrupt format)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ImageLoadError(f"{name}: corrupt or truncated image ({msg})") from None
    info = ScanInfo(
        path=str(p.resolve()),
        sha256=digest,
        format=fmt,
        mode=mode,
        width=w,
        height=h,
        bit_depth=depth,
        n_bytes=len(data),
        exif_orientation=orientation,
        notes=tuple(note + notes),
    )
    return Scan(np.ascontiguousarray(arr), info)


def to_float(pixels: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8/uint16 -> (3, H, W) float32 in [0, 1] (the network's input)."""
    scale = 65535.0 if pixels.dtype == np.uint16 else 255.0
    return np.ascontiguousarray(np.moveaxis(pixels, -1, 0), dtype=np.float32) / np.float32(scale)


def image_hw(image: np.ndarray) -> tuple[int, int]:
    """(rows, cols) of a network-input float (3, H, W) array or a decoded integer (H, W, 3) scan."""
    if np.issubdtype(image.dtype, np.floating):
        return int(image.shape[1]), int(image.shape[2])
    return int(image.shape[0]), int(image.shape[1])


def as_float_chw(image: np.ndarray) -> np.ndarray:
    """Float (3, H, W) view of either image layout (integer scans are converted)."""
    return image if np.issubdtype(image.dtype, np.floating) else to_float(image)


def verify_hash(path: str | os.PathLike, expected: str) -> bool:
    """Re-check an evidence file against its recorded SHA-256."""
    return sha256_file(path) == expected
