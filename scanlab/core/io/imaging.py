"""Safe loading of evidence scans.

Rules (the same for the CLI, the GUI and training):

* The file is opened read-only and never written. Its SHA-256 is computed over
  the exact bytes on disk, from the same bytes that are decoded, so the hash
  describes what was analysed.
* Supported: JPEG, PNG, TIFF (1/8/16-bit integer and [0, 1] float), BMP, recognised
  by their magic bytes (not the suffix). Anything else is refused. PDFs and items
  of containers (``DOC.pdf#page=2&image=1``, ``SCANS.tif#page=3``) are read through
  :mod:`scanlab.core.io.containers`.
* Colour conversion (documented, deterministic):
  grayscale (L, 1, I;16, I, F) -> replicated into R = G = B;
  RGBA / LA -> the alpha channel is dropped (the stored colour values are the
  scanner's output; compositing onto a background would invent pixels);
  palette (P, PA) -> expanded through the palette to RGB;
  CMYK / YCbCr / LAB -> Pillow's conversion to RGB.
* Bit depth: decoded at full depth (16-bit RGB PNG and TIFF included, see
  :mod:`scanlab.core.io.decoders`); 8-bit samples map to [0, 1] by /255, 16-bit by
  /65535; float TIFF samples in [0, 1] are quantised to 16 bits. ``bit_depth``
  reports the file's true depth.
* EXIF orientation is **ignored**: the stored pixel array is analysed as stored.
  A scanner's traces are tied to the sensor's raster (the line sensor runs along
  the stored rows, the motor along the stored columns); rotating the array for
  display would turn column patterns into row patterns. The orientation tag is
  reported in :class:`ScanInfo` so a viewer can mention it.
* A pixel-count limit (``SCANLAB_MAX_PIXELS``, 250 MP by default) refuses
  decompression bombs from the header, before decoding. Pillow's own global
  guard is bypassed thread-safely (see :mod:`scanlab.core.io.decoders`).
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from scanlab.core.errors import ScanLabError
from scanlab.core.io.decoders import (
    Decoded,
    DecodeProblem,
    check_size,
    decode_png16,
    decode_tiff,
    open_pillow,
    pillow_meta,
    pillow_to_rgb,
    png_header,
    sniff,
)

MAX_PIXELS = 250_000_000  # default; SCANLAB_MAX_PIXELS overrides it at each load
# scanlab.core.engine.network.PATCH, repeated so that decoding never imports torch (the CLI checks
# its inputs before paying for torch; tests/test_hardening.py asserts the two agree)
PATCH = 64
# Bump whenever load_scan can decode a file to different pixels than before: the
# training cache keys on it, so arrays from an older (buggier) decoder are never reused.
# 2: the hardening decoders (16-bit PNG/TIFF read at full depth, decode before metadata).
DECODER_VERSION = 2
FORMATS = ("JPEG", "PNG", "TIFF", "BMP")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")
_SUFFIX_FORMAT = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP"}


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
    dpi: tuple[float, float] | None = None
    # PDF / multi-page TIFF item: the container's path and SHA-256, page, image index, filter and
    # the item's own SHA-256 (scanlab.core.io.containers); None for a plain image file
    container: dict | None = None
    # JPEG facts (scanlab.core.io.jpegfacts): estimated quality, chroma subsampling, re-compression test
    jpeg: dict | None = None
    # an exact enlargement found by scanlab.core.io.resampling (set by the analysis, not by decoding):
    # Upsampling.to_json(); None when none was found or the analysis did not look
    resampling: dict | None = None

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
            "dpi": list(self.dpi) if self.dpi else None,
            "notes": list(self.notes),
            "container": self.container_json(),
            "jpeg": self.jpeg,
        }

    def container_json(self) -> dict | None:
        """The ``"container"`` block of the JSON (docs/formats.md), None for a plain file."""
        if self.container is None:
            return None
        c = self.container
        return {"type": c["type"], "path": c["path"], "sha256": c["sha256"], "page": c["page"],
                "image": c["image"], "filter": c["filter"], "item_sha256": c["sha256_item"]}

    def scan_json(self) -> dict:
        """The ``"scan"`` block of ``classify --json`` / ``map --json``: what was decoded."""
        return {
            "format": self.format,
            "mode": self.mode,
            "bit_depth": self.bit_depth,
            "width": self.width,
            "height": self.height,
            "exif_orientation": self.exif_orientation,
            "dpi": list(self.dpi) if self.dpi else None,
            "jpeg": self.jpeg,
            "resampling": self.resampling,
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


def pixel_limit(max_pixels: int | None = None) -> int:
    """The pixel limit in force: ``max_pixels``, else ``SCANLAB_MAX_PIXELS``, else 250 MP."""
    if max_pixels is not None:
        return int(max_pixels)
    env = os.environ.get("SCANLAB_MAX_PIXELS")
    if env is None or not env.strip():
        return MAX_PIXELS
    try:
        v = int(env)
    except ValueError:
        raise ImageLoadError(f"SCANLAB_MAX_PIXELS={env[:40]!r}: not a whole number of pixels") from None
    if v < 1:
        raise ImageLoadError(f"SCANLAB_MAX_PIXELS={v}: must be at least 1")
    return v


def _decode(data: bytes, fmt: str, limit: int, min_side: int) -> Decoded:
    if fmt == "TIFF":
        return decode_tiff(data, limit, min_side)
    if fmt == "PNG":
        w, h, depth, ctype = png_header(data)
        check_size(w, h, limit, min_side)
    img = open_pillow(fmt, data)
    w, h = img.size
    check_size(w, h, limit, min_side)
    notes = []
    if getattr(img, "n_frames", 1) > 1:  # an APNG
        notes.append(f"animated file: frame 1 of {img.n_frames} analysed")
    if fmt == "PNG" and depth == 16 and ctype != 3:
        px, mode, more = decode_png16(data, ctype)
        orientation, dpi = pillow_meta(img, loaded=False)
        return Decoded(px, fmt, mode, 16, orientation, dpi, notes + more)
    # Decode before reading metadata: Pillow's getexif() may decode the image itself,
    # and a decode error swallowed there left a half-blank image that loaded "fine".
    img.load()
    orientation, dpi = pillow_meta(img)
    mode = img.mode
    px, depth_out, more = pillow_to_rgb(img)
    return Decoded(px, fmt, mode, depth_out if mode != "1" else 1, orientation, dpi, notes + more)


def load_scan(path: str | os.PathLike, *, max_pixels: int | None = None, min_side: int = PATCH) -> Scan:
    """Load a scan read-only, hash its bytes and decode it to an (H, W, 3) array.

    Parameters
    ----------
    path : path-like
        The evidence file. It is opened read-only; nothing is ever written to it.
    max_pixels : int, optional
        Refuse images with more pixels than this (decompression-bomb guard),
        checked from the header before decoding; defaults to
        ``SCANLAB_MAX_PIXELS`` or 250 MP.
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
    from scanlab.core.io import containers

    if containers.is_ref(path):  # DOC.pdf#page=2&image=1, SCANS.tif#page=3
        return containers.load_item(path, min_side=min_side)
    p = Path(path)
    name = str(p)
    limit = pixel_limit(max_pixels)
    data = containers.read_file(p)  # read-only, once: hash and decode the same bytes
    if sniff(data) == "PDF":  # a PDF with one embedded scan loads as that scan; several must be named
        return containers.load_item(p, data=data, min_side=min_side)
    return decode_bytes(data, name, resolved=str(p.resolve()), max_pixels=limit, min_side=min_side)


def decode_bytes(
    data: bytes, name: str, *, resolved: str | None = None, max_pixels: int | None = None, min_side: int = PATCH
) -> Scan:
    """Decode an image held in memory (what :func:`load_scan` does after reading the file).

    Raises
    ------
    ImageLoadError
        Unknown, unsupported, oversized, undersized, corrupt or truncated data.
    """
    limit = pixel_limit(max_pixels)
    fmt = sniff(data)
    if fmt == "?":
        raise ImageLoadError(f"{name}: not a readable image (unknown or corrupt format)")
    if fmt not in FORMATS:
        raise ImageLoadError(f"{name}: unsupported image format {fmt} (supported: {', '.join(FORMATS)})")
    try:
        dec = _decode(data, fmt, limit, min_side)
    except DecodeProblem as e:
        raise ImageLoadError(f"{name}: {e}") from None
    except (UnidentifiedImageError, Image.DecompressionBombError):
        raise ImageLoadError(f"{name}: not a readable image (unknown or corrupt format)") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError, struct.error, ZeroDivisionError) as e:
        # Pillow's plugins signal damaged data with these; the message says which
        msg = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise ImageLoadError(f"{name}: corrupt or truncated image ({msg})") from None
    h, w = dec.pixels.shape[:2]
    notes = list(dec.notes)
    suffix = Path(name).suffix.lower()
    if suffix and suffix in IMAGE_SUFFIXES and _SUFFIX_FORMAT[suffix] != fmt:
        notes.append(f"file named {suffix} holds {fmt} data")
    info = ScanInfo(
        path=resolved or name,
        sha256=hashlib.sha256(data).hexdigest(),
        format=fmt,
        mode=dec.mode,
        width=w,
        height=h,
        bit_depth=dec.bit_depth,
        n_bytes=len(data),
        exif_orientation=dec.orientation,
        notes=tuple(notes),
        dpi=dec.dpi,
        jpeg=_jpeg_facts(data, dec.pixels) if fmt == "JPEG" else None,
    )
    return Scan(np.ascontiguousarray(dec.pixels), info)


def _jpeg_facts(data: bytes, pixels: np.ndarray) -> dict | None:
    """The JPEG facts, or None: they describe the file's history and never stop an analysis."""
    from scanlab.core.io.jpegfacts import jpeg_facts

    try:
        return jpeg_facts(data, pixels if pixels.dtype == np.uint8 else None)
    except Exception:  # noqa: BLE001 - the pixels decoded; a fact that cannot be read is left out
        return None


def full_scale(dtype: np.dtype | type) -> float:
    """The sample value that maps to 1.0: 255 for 8-bit, 65535 for 16-bit scans, 1 for floats.

    The one place the 1/255, 1/65535 scaling rule is written (imaging, the dense
    engine, training, the no-signal rule and the open-set features all use it).
    """
    dt = np.dtype(dtype)
    if np.issubdtype(dt, np.floating):
        return 1.0
    return 65535.0 if dt == np.uint16 else 255.0


def as_uint8(pixels: np.ndarray) -> np.ndarray:
    """``pixels`` as 8-bit (rounded from 16-bit or float by :func:`full_scale`); 8-bit input is returned as is.

    What a JPEG re-save or an 8-bit window sees (delivery chain, outlier exposure).
    """
    if pixels.dtype == np.uint8:
        return pixels
    return np.rint(pixels.astype(np.float32) * (255.0 / full_scale(pixels.dtype))).astype(np.uint8)


def to_float(pixels: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8/uint16 -> (3, H, W) float32 in [0, 1] (the network's input)."""
    scale = full_scale(pixels.dtype)
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
    """Re-check an evidence file (or a container item, by its own bytes) against its recorded SHA-256."""
    from scanlab.core.io.containers import item_sha256

    return item_sha256(path) == expected
