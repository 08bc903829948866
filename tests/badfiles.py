"""Generators of good and bad input files (bytes), so no binary test file lives in git.

Used by the bad-input corpus (tests/test_bad_input_corpus.py), the fuzzers and
benchmarks/fuzz_campaign.py.
"""

from __future__ import annotations

import io
import pickle
import struct
import zlib

import numpy as np
from PIL import Image


def _rgb(h: int = 96, w: int = 96, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def pil_bytes(img: Image.Image, fmt: str, **kw) -> bytes:
    b = io.BytesIO()
    img.save(b, format=fmt, **kw)
    return b.getvalue()


def png(h: int = 96, w: int = 96, seed: int = 0) -> bytes:
    return pil_bytes(Image.fromarray(_rgb(h, w, seed)), "PNG")


def jpeg(h: int = 96, w: int = 96) -> bytes:
    return pil_bytes(Image.fromarray(_rgb(h, w)), "JPEG", quality=90)


def tiff(h: int = 96, w: int = 96) -> bytes:
    return pil_bytes(Image.fromarray(_rgb(h, w)), "TIFF")


def bmp(h: int = 96, w: int = 96) -> bytes:
    return pil_bytes(Image.fromarray(_rgb(h, w)), "BMP")


GOOD = {"png": png, "jpg": jpeg, "tif": tiff, "bmp": bmp}


def chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk with a correct CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(w: int = 100_000, h: int = 100_000) -> bytes:
    """A ~100-byte PNG whose header claims w x h pixels (of one zero row)."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * (3 * 64 + 1))) + chunk(b"IEND", b"")


def png_bad_crc() -> bytes:
    data = bytearray(png())
    data[29] ^= 0xFF  # inside the IHDR CRC
    return bytes(data)


def png_corrupt_idat() -> bytes:
    data = bytearray(png())
    i = data.index(b"IDAT") + 4
    data[i : i + 200] = b"\x55" * 200
    return bytes(data)


def jpeg_corrupt() -> bytes:
    data = bytearray(jpeg())
    data[2:200] = b"\xff\x00" * 99  # markers gone
    return bytes(data)


def tiff_corrupt() -> bytes:
    data = bytearray(tiff())
    data[4:8] = struct.pack("<I", 0xFFFFFF00)  # first IFD offset far past the end
    return bytes(data)


def bmp_corrupt() -> bytes:
    data = bytearray(bmp())
    data[14:18] = struct.pack("<I", 7)  # impossible DIB header size
    return bytes(data)


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def gif(frames: int = 1) -> bytes:
    ims = [Image.fromarray(_rgb(seed=i)).convert("P") for i in range(frames)]
    return pil_bytes(ims[0], "GIF", save_all=frames > 1, append_images=ims[1:])


def webp(frames: int = 1) -> bytes:
    ims = [Image.fromarray(_rgb(seed=i)) for i in range(frames)]
    return pil_bytes(ims[0], "WEBP", save_all=frames > 1, append_images=ims[1:])


def tiff_array(a: np.ndarray, **kw) -> bytes:
    import tifffile

    b = io.BytesIO()
    tifffile.imwrite(b, a, **kw)
    return b.getvalue()


def png16_rgb(h: int = 96, w: int = 96) -> tuple[bytes, np.ndarray]:
    """A real 48-bit RGB PNG (libpng via imagecodecs) and its pixels."""
    import imagecodecs

    a = np.random.default_rng(3).integers(0, 65536, (h, w, 3), dtype=np.uint16)
    return imagecodecs.png_encode(a), a


def variants() -> dict[str, bytes]:
    """Readable files in every mode the loader promises to handle (name -> bytes)."""
    rgb = _rgb()
    img = Image.fromarray(rgb)
    exif = Image.Exif()
    exif[0x0112] = 6
    out = {
        "one_bit.png": pil_bytes(img.convert("1"), "PNG"),
        "palette.png": pil_bytes(img.convert("P"), "PNG"),
        "la.png": pil_bytes(img.convert("LA"), "PNG"),
        "rgba.png": pil_bytes(img.convert("RGBA"), "PNG"),
        "cmyk.jpg": pil_bytes(img.convert("CMYK"), "JPEG"),
        "cmyk.tif": tiff_array(np.asarray(img.convert("CMYK")), photometric="separated"),
        "grey16.png": pil_bytes(Image.fromarray(rgb[:, :, 0].astype(np.uint16) * 257), "PNG"),
        "rgb48.png": png16_rgb()[0],
        "rgb48.tif": tiff_array(rgb.astype(np.uint16) * 257, photometric="rgb"),
        "float.tif": tiff_array(rgb.astype(np.float32) / 255, photometric="rgb"),
        "multipage.tif": tiff_array(np.stack([rgb, rgb[::-1]]), photometric="rgb"),
        "exif_rotated.jpg": pil_bytes(img, "JPEG", exif=exif.tobytes()),
        # orientation 6, then a tag whose data lies past the EXIF block: Pillow warns and skips it
        "corrupt_exif.jpg": pil_bytes(img, "JPEG", exif=b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x05\x00"
                                      b"\x12\x01\x03\x00\x01\x00\x00\x00\x06\x00\x00\x00"
                                      b"\x0f\x01\x02\x00\xff\xff\x00\x00\x10\x00\x00\x00"),
        "png_named.jpg": png(),
        "trailing_garbage.png": png() + b"GARBAGE" * 100,
        "spaced ünïcode name.png": png(),
    }
    return out


class Payload:
    """Unpickling this creates ``sentinel``: a real code-execution payload."""

    def __init__(self, sentinel: str) -> None:
        self.sentinel = sentinel

    def __reduce__(self):
        return (open, (self.sentinel, "w"))


def pickle_payload(sentinel: str) -> bytes:
    return pickle.dumps(Payload(sentinel))


# -- PDFs (scanlab.core.io.containers) ---------------------------------------------------------


def raw_pdf(objects: list[bytes]) -> bytes:
    """A PDF written by hand (objects 1..n, object 1 the catalog) with a correct cross-reference table."""
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for i, o in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + o + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


_CATALOG = b"<< /Type /Catalog /Pages 2 0 R >>"
_PAGE = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 99 99] /Resources << /XObject << /Im0 4 0 R >> >> /Contents 5 0 R >>"
_DRAW = b"<< /Length 7 >>\nstream\n/Im0 Do\nendstream"


def _pdf_image(w: int, h: int, data: bytes, filt: str = "", length: int | None = None) -> bytes:
    f = f" /Filter /{filt}" if filt else ""
    n = len(data) if length is None else length
    head = f"<< /Type /XObject /Subtype /Image /Width {w} /Height {h} /ColorSpace /DeviceRGB /BitsPerComponent 8{f} /Length {n} >>"
    return head.encode() + b"\nstream\n" + data + b"\nendstream"


def pdf_with_jpeg() -> bytes:
    """A one-page PDF drawing one JPEG (DCTDecode) image: readable."""
    return raw_pdf([_CATALOG, b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>", _PAGE,
                    _pdf_image(96, 96, jpeg(), "DCTDecode"), _DRAW])


def pdf_truncated() -> bytes:
    data = pdf_with_jpeg()
    return data[: len(data) * 2 // 3]


def pdf_length_lies() -> bytes:
    """The image stream's /Length says 1000 bytes fewer than it holds (xref offsets still right)."""
    j = jpeg()
    return raw_pdf([_CATALOG, b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>", _PAGE,
                    _pdf_image(96, 96, j, "DCTDecode", length=len(j) - 1000), _DRAW])


def pdf_flate_bomb() -> bytes:
    """200 MB of zeros (about 200 kB deflated) behind a 100x100 image."""
    return raw_pdf([_CATALOG, b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>", _PAGE,
                    _pdf_image(100, 100, zlib.compress(bytes(200_000_000), 9), "FlateDecode"), _DRAW])


def pdf_giant_image() -> bytes:
    """An image dictionary claiming 100000 x 100000 pixels."""
    return raw_pdf([_CATALOG, b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>", _PAGE,
                    _pdf_image(100_000, 100_000, b"x"), _DRAW])


def pdf_million_pages() -> bytes:
    """A page tree whose /Count claims a million pages."""
    return raw_pdf([_CATALOG, b"<< /Type /Pages /Kids [3 0 R] /Count 1000000 >>", _PAGE,
                    _pdf_image(96, 96, jpeg(), "DCTDecode"), _DRAW])


def pdf_page_tree_loop() -> bytes:
    """The page tree lists itself among its kids."""
    return raw_pdf([_CATALOG, b"<< /Type /Pages /Kids [3 0 R 2 0 R] /Count 2 >>", _PAGE,
                    _pdf_image(96, 96, jpeg(), "DCTDecode"), _DRAW])


def pdf_form_loop() -> bytes:
    """A form XObject that draws itself."""
    page = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 99 99] /Resources << /XObject << /F0 4 0 R >> >> /Contents 5 0 R >>"
    form = (b"<< /Type /XObject /Subtype /Form /BBox [0 0 9 9] /Resources << /XObject << /F0 4 0 R >> >> "
            b"/Length 6 >>\nstream\n/F0 Do\nendstream")
    return raw_pdf([_CATALOG, b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>", page, form,
                    b"<< /Length 6 >>\nstream\n/F0 Do\nendstream"])


def pdf_text_only() -> bytes:
    """A page with text and no image."""
    page = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 99 99] /Contents 4 0 R >>"
    return raw_pdf([_CATALOG, b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>", page,
                    b"<< /Length 24 >>\nstream\nBT (text only) Tj ET    \nendstream"])


def pdf_encrypted() -> bytes:
    """The readable PDF, encrypted with a user password (pikepdf)."""
    import pikepdf

    out = io.BytesIO()
    with pikepdf.open(io.BytesIO(pdf_with_jpeg())) as pdf:
        pdf.save(out, encryption=pikepdf.Encryption(owner="o", user="secret"))
    return out.getvalue()
