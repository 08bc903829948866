"""Format sniffing and full-depth decoding of the formats ScanLab reads.

Why not just ``PIL.Image.open``:

* ``Image.open`` runs Pillow's decompression-bomb guard (a process-wide
  ``MAX_IMAGE_PIXELS`` of about 89.5 MP, an error above 179 MP), which refuses a
  1200 dpi A4 page (about 139 MP) before ScanLab's own, larger limit is checked.
  Changing the global or filtering warnings per call is not thread-safe (the app
  decodes in a worker thread). Instead the format is recognised here from its
  magic bytes and the plugin's image class is constructed directly: that parses
  the header (size, mode, metadata) without the global guard, and ScanLab's limit
  is applied before any pixel is decoded.
* Pillow decodes 48-bit RGB PNG and TIFF at 8 bits per channel. TIFF is read with
  ``tifffile`` (every bit depth, float samples, planar layouts); 16-bit PNG with
  ``imagecodecs.png_decode`` (libpng; a pure-Python PNG reader took 3.8 s per
  4 MP with Paeth filtering here, 40x slower).

Every function raises :class:`DecodeProblem` (one short phrase) for files it
refuses; the caller adds the file name.
"""

from __future__ import annotations

import io
import logging
import struct
from dataclasses import dataclass, field

import numpy as np
from PIL import BmpImagePlugin, Image, JpegImagePlugin, PngImagePlugin

# tifffile logs every damaged tag at ERROR level on stderr before raising or recovering;
# ScanLab reports the outcome itself (one error line, or the notes), so these are muted
logging.getLogger("tifffile").setLevel(logging.CRITICAL)

_OTHER_MAGIC = (
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"8BPS", "PSD"),
    (b"%PDF", "PDF"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"qoif", "QOI"),
)


def quiet_exif_warnings() -> None:
    """Silence Pillow's warnings about damaged EXIF blocks (process-wide; call once at start-up).

    Pillow parses EXIF with its TIFF plugin, which warns ("Corrupt EXIF data",
    "Tag data larger than file") and then ignores the damaged tags; ScanLab then
    reports the orientation as unknown. ScanLab decodes TIFF images with tifffile,
    so this filter hides nothing else. Installed by the CLI (a warning would be a
    stray stderr line next to the one-line error); found by the fuzzing campaign.
    """
    import warnings

    warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.TiffImagePlugin")


class DecodeProblem(ValueError):
    """A file is refused; the message is one phrase without the file name."""


@dataclass
class Decoded:
    """Pixels (H, W, 3) uint8 or uint16 plus what was decoded."""

    pixels: np.ndarray
    format: str
    mode: str
    bit_depth: int
    orientation: int | None = None
    dpi: tuple[float, float] | None = None
    notes: list[str] = field(default_factory=list)


def sniff(data: bytes) -> str:
    """The format name from the magic bytes: JPEG, PNG, TIFF, BMP, another name, or ``"?"``."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if data.startswith(b"BM"):
        return "BMP"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    for magic, name in _OTHER_MAGIC:
        if data.startswith(magic):
            return name
    return "?"


def png_header(data: bytes) -> tuple[int, int, int, int]:
    """(width, height, bit depth, colour type) from a PNG's IHDR chunk."""
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise DecodeProblem("corrupt PNG (no IHDR header)")
    w, h, depth, ctype = struct.unpack(">IIBB", data[16:26])
    return w, h, depth, ctype


def _dpi(info: dict) -> tuple[float, float] | None:
    d = info.get("dpi")
    try:
        if d and len(d) == 2 and all(float(v) > 0 for v in d):
            return round(float(d[0]), 3), round(float(d[1]), 3)
    except (TypeError, ValueError):
        pass
    return None


def open_pillow(fmt: str, data: bytes) -> Image.Image:
    """The Pillow image object (header parsed, nothing decoded), without the global bomb guard."""
    cls = {"PNG": PngImagePlugin.PngImageFile, "JPEG": JpegImagePlugin.JpegImageFile, "BMP": BmpImagePlugin.BmpImageFile}[fmt]
    return cls(io.BytesIO(data))


def pillow_to_rgb(img: Image.Image) -> tuple[np.ndarray, int, list[str]]:
    """Decode a Pillow image to (H, W, 3) with the documented conversions."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        a = np.asarray(img, dtype=np.uint16)
        return np.repeat(a[:, :, None], 3, axis=2), 16, ["16-bit grayscale replicated to RGB"]
    if mode in ("I", "F"):
        a = np.asarray(img)
        if mode == "I" and a.size and 0 <= int(a.min()) and int(a.max()) <= 65535:
            return np.repeat(a.astype(np.uint16)[:, :, None], 3, axis=2), 16, ["I grayscale read as 16-bit"]
        raise DecodeProblem(f"unsupported sample format {mode} (values outside the 16-bit range)")
    if mode in ("1", "L"):
        a = np.asarray(img.convert("L"), dtype=np.uint8)
        return np.repeat(a[:, :, None], 3, axis=2), 8, ["grayscale replicated to RGB"]
    if mode == "LA":
        a = np.asarray(img.getchannel("L"), dtype=np.uint8)
        return np.repeat(a[:, :, None], 3, axis=2), 8, ["alpha dropped", "grayscale replicated to RGB"]
    notes: list[str] = []
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


def _grey_or_rgb(a: np.ndarray, depth: int, what: str) -> tuple[np.ndarray, list[str]]:
    """(H, W), (H, W, 1..4) -> (H, W, 3); alpha dropped, grey replicated."""
    if a.ndim == 2:
        return np.repeat(a[:, :, None], 3, axis=2), [f"{depth}-bit grayscale replicated to RGB"]
    c = a.shape[2]
    if c == 1:
        return np.repeat(a, 3, axis=2), [f"{depth}-bit grayscale replicated to RGB"]
    if c == 2:
        return np.repeat(a[:, :, :1], 3, axis=2), ["alpha dropped", f"{depth}-bit grayscale replicated to RGB"]
    if c == 3:
        return a, []
    if c == 4:
        return a[:, :, :3], ["alpha dropped"]
    raise DecodeProblem(f"unsupported {what} layout with {c} samples per pixel")


def decode_png16(data: bytes, ctype: int) -> tuple[np.ndarray, str, list[str]]:
    """Decode a 16-bit PNG at full depth (imagecodecs/libpng)."""
    import imagecodecs

    try:
        a = imagecodecs.png_decode(data)
    except Exception as e:  # noqa: BLE001 - libpng errors come as several types
        raise DecodeProblem(f"corrupt or truncated image ({str(e).splitlines()[0][:100] if str(e) else type(e).__name__})") from None
    if a.dtype != np.uint16:
        raise DecodeProblem(f"16-bit PNG decoded as {a.dtype}")
    rgb, notes = _grey_or_rgb(a, 16, "PNG")
    mode = {0: "I;16", 2: "RGB;16", 4: "LA;16", 6: "RGBA;16"}.get(ctype, "RGB;16")
    return np.ascontiguousarray(rgb), mode, notes


def decode_tiff(data: bytes, limit: int, min_side: int, page: int | None = None) -> Decoded:
    """Decode page 1 (or the 0-based ``page``, for a container item) of a TIFF with tifffile at its true depth (sizes checked before decoding).

    Float samples in [0, 1] are quantised to 16 bits (the network's input scale);
    other float ranges, signed and 32-bit integer samples are refused with the reason.
    """
    # The buffer is ours to close: tifffile's TiffFile/TiffPages/TiffPage objects form
    # reference cycles and its FileHandle never closes a stream it was given, so without
    # this the whole file's bytes stayed reachable until the cyclic GC ran (measured: RSS
    # grew by one file size per decoded scan while a training cache was built).
    buf = io.BytesIO(data)
    try:
        return _decode_tiff(buf, limit, min_side, page)
    finally:
        buf.close()


def _decode_tiff(buf: io.BytesIO, limit: int, min_side: int, index: int | None = None) -> Decoded:
    import tifffile

    try:
        tf = tifffile.TiffFile(buf)
    except Exception as e:  # noqa: BLE001 - tifffile raises many types on damaged headers
        raise DecodeProblem(f"corrupt TIFF ({_why(e)})") from None
    with tf:
        try:
            n_pages = len(tf.pages)
            page = tf.pages[index or 0]
            shape, axes = tuple(page.shape), page.axes
            h, w = int(page.imagelength), int(page.imagewidth)
        except Exception as e:  # noqa: BLE001
            raise DecodeProblem(f"corrupt TIFF ({_why(e)})") from None
        check_size(w, h, limit, min_side)
        photometric = int(page.photometric)
        bits = int(page.bitspersample)
        try:
            a = page.asarray()
        except Exception as e:  # noqa: BLE001 - missing codecs, truncated strips, bad offsets
            raise DecodeProblem(f"corrupt or truncated image ({_why(e)})") from None
        orientation = _tag(page, 274)
        dpi = None
        try:
            res = page.get_resolution()
            unit = int(page.resolutionunit)
            if res and all(r > 0 for r in res) and unit in (2, 3):
                f = 2.54 if unit == 3 else 1.0
                dpi = (round(res[0] * f, 3), round(res[1] * f, 3))
        except Exception:  # noqa: BLE001 - resolution is optional metadata
            dpi = None
        colormap = page.colormap
    notes = [f"multi-page file: page 1 of {n_pages} analysed"] if n_pages > 1 and index is None else []
    if a.shape != shape:
        raise DecodeProblem(f"TIFF page decoded to {a.shape}, header says {shape}")
    if axes.startswith("S") and a.ndim == 3:  # planar (separate) layout
        a = np.moveaxis(a, 0, -1)
    if a.ndim not in (2, 3) or a.shape[0] != h or a.shape[1] != w:
        raise DecodeProblem(f"unsupported TIFF layout (axes {axes}, shape {shape})")
    if photometric == 3 and colormap is not None and a.ndim == 2 and a.dtype.kind == "u":  # palette
        cmap = np.asarray(colormap)
        if cmap.ndim != 2 or cmap.shape[0] != 3 or int(a.max(initial=0)) >= cmap.shape[1]:
            raise DecodeProblem("palette TIFF with an invalid colour map")
        rgb = (cmap[:, a].transpose(1, 2, 0) >> 8).astype(np.uint8)
        return Decoded(rgb, "TIFF", "P", 8, orientation, dpi, notes + ["palette expanded to RGB"])
    if photometric == 5:  # CMYK
        if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] < 4:
            raise DecodeProblem(f"unsupported CMYK TIFF ({bits}-bit)")
        rgb = np.asarray(Image.fromarray(np.ascontiguousarray(a[:, :, :4]), "CMYK").convert("RGB"))
        return Decoded(rgb, "TIFF", "CMYK", 8, orientation, dpi, notes + ["CMYK converted to RGB by Pillow"])
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
        bits = 1
    if photometric == 0 and a.dtype.kind in "u":  # min-is-white: 0 is white
        a = np.iinfo(a.dtype).max - a
        notes.append("min-is-white inverted")
    if a.dtype.kind == "f":
        # finiteness first, in the file's own dtype: casting a signalling NaN raises
        # FE_INVALID (a RuntimeWarning on stderr), found by the fuzzing campaign
        if not np.isfinite(a).all():
            raise DecodeProblem("float samples are NaN or infinite; ScanLab reads float TIFFs scaled to [0, 1] only")
        a = a.astype(np.float64, copy=False)
        if a.min(initial=0.0) < 0.0 or a.max(initial=0.0) > 1.0:
            raise DecodeProblem("float samples outside [0, 1]; ScanLab reads float TIFFs scaled to [0, 1] only")
        rgb, more = _grey_or_rgb(np.round(a * 65535.0).astype(np.uint16), bits, "TIFF")
        mode = ("F" if rgb is a or a.ndim == 2 else "RGB") + f";F{bits}"
        return Decoded(rgb, "TIFF", mode, bits, orientation, dpi, notes + more + [f"{bits}-bit float samples quantised to 16-bit"])
    if a.dtype == np.uint8:
        depth = 8 if bits != 1 else 1
    elif a.dtype == np.uint16:
        depth = 16
    else:
        raise DecodeProblem(f"unsupported sample format {a.dtype} ({bits}-bit); ScanLab reads 1/8/16-bit integer or [0, 1] float TIFFs")
    rgb, more = _grey_or_rgb(a, depth, "TIFF")
    grey = a.ndim == 2 or a.shape[2] <= 2
    mode = ("L" if grey else "RGB") + (f";{depth}" if depth != 8 else "")
    if depth == 1:
        mode = "1"
    return Decoded(np.ascontiguousarray(rgb), "TIFF", mode, depth, orientation, dpi, notes + more)


def _tag(page, code: int) -> int | None:
    try:
        t = page.tags.get(code)
        v = t.value if t is not None else None
        return int(v) if v is not None else None
    except Exception:  # noqa: BLE001 - a broken tag must not stop analysis
        return None


def _why(e: BaseException) -> str:
    s = str(e).splitlines()[0] if str(e) else ""
    return (s[:100] or type(e).__name__)


def check_size(w: int, h: int, limit: int, min_side: int) -> None:
    """Refuse sizes over ``limit`` pixels (naming the limit and how to raise it) or under ``min_side``."""
    if w <= 0 or h <= 0:
        raise DecodeProblem(f"corrupt image header (size {w}x{h})")
    if w * h > limit:
        raise DecodeProblem(
            f"{w}x{h} = {w * h / 1e6:.1f} MP exceeds the pixel limit of {limit / 1e6:.1f} MP "
            f"({limit} pixels; raise it with the environment variable SCANLAB_MAX_PIXELS)"
        )
    if min(w, h) < min_side:
        raise DecodeProblem(f"image is {w}x{h}, smaller than {min_side} px on a side")


def pillow_meta(img: Image.Image, loaded: bool = True) -> tuple[int | None, tuple[float, float] | None]:
    """(EXIF orientation, dpi) from a Pillow image, None when absent or broken.

    ``loaded`` False: the pixels were decoded elsewhere, so only the EXIF block
    already parsed from the header is used (``getexif`` would decode the image).
    """
    try:
        if loaded:
            exif = img.getexif()
        else:
            exif = Image.Exif()
            raw = img.info.get("exif")
            if raw:
                exif.load(raw)
        orientation = exif.get(0x0112)
        orientation = int(orientation) if orientation is not None else None
    except Exception:  # noqa: BLE001 - a broken EXIF block must not stop analysis
        orientation = None
    return orientation, _dpi(img.info)
