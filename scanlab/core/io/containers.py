"""Containers of several scans: PDF files and multi-page TIFFs.

One input path expands into a list of :class:`EvidenceItem` (one per embedded
page image), each named by a *reference*: the path plus a fragment,
``DOC.pdf#page=2&image=1`` (1-based page, 1-based image index on the page, in
drawing order) or ``SCANS.tif#page=3``. :func:`scanlab.core.io.imaging.load_scan`
accepts a reference wherever it accepts a path, so every command and the app
read container items through the same loader as plain files.

Rules (docs/formats.md section "PDF and multi-page TIFF input"):

* **Never rasterised, never re-encoded.** A DCTDecode stream is the JPEG it was
  made from: its bytes are decoded by the same JPEG path as a ``.jpg`` file, and
  their SHA-256 is that of the JPEG file. Lossless streams (Flate, LZW,
  RunLength, uncompressed, CCITT) are decoded to their exact samples by pikepdf.
  Rendering a page would resample it and erase the scanner's traces.
* The evidence's own SHA-256 is over the stream's stored bytes (for a DCT stream
  with an outer Flate, over the JPEG inside); a TIFF page's is over its strips or
  tiles as stored, in file order.
* Hostile files are refused with one line, within the pixel limit: the page count
  (:data:`MAX_PAGES`), each image's size (checked from the stream dictionary before
  any byte is decoded), a Flate stream that inflates beyond what its declared size
  needs, loops in the page tree or in nested forms, and encrypted files that need
  a password.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import stat
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scanlab.core.io.decoders import DecodeProblem, check_size, decode_tiff, pillow_to_rgb, sniff

MAX_PAGES = 10_000  # more pages than any scanned document; a "million-page tree" stops here
MAX_IMAGES_PER_PAGE = 1_000
MAX_FORM_DEPTH = 8  # nested form XObjects followed to find a page's images
CONTAINER_SUFFIXES = (".pdf", ".tif", ".tiff")
_REF = re.compile(r"^(?P<path>.+)#page=(?P<page>\d{1,9})(?:&image=(?P<image>\d{1,9}))?$")

logging.getLogger("pikepdf").setLevel(logging.CRITICAL)  # qpdf warnings: the outcome is reported in one line


def _error(msg: str) -> Exception:
    from scanlab.core.io.imaging import ImageLoadError  # imaging imports this module lazily

    return ImageLoadError(msg)


@dataclass
class EvidenceItem:
    """One piece of evidence from an input path.

    ``ref`` is the path itself for a plain image, else the reference with its
    fragment. ``container`` is None for a plain image. ``empty`` is the reason
    when a container page holds no scanned image (``load`` then raises it).
    """

    ref: str
    path: Path
    container: dict[str, Any] | None = None
    empty: str | None = None
    _loader: Callable[[], Any] | None = None
    _jpeg: bytes | None = None  # a PDF item's JPEG stream (read, not decoded)

    def jpeg_bytes(self) -> bytes | None:
        """The JPEG file a PDF's DCT stream is (None for other items)."""
        return self._jpeg

    def load(self, *, min_side: int | None = None):
        """Decode this item to a :class:`~scanlab.core.io.imaging.Scan` (lazily, now)."""
        if self.empty is not None:
            raise _error(f"{self.ref}: {self.empty}")
        if self._loader is None:
            from scanlab.core.io.imaging import load_scan

            return load_scan(self.path) if min_side is None else load_scan(self.path, min_side=min_side)
        return self._loader()


def make_ref(path: str | os.PathLike, page: int, image: int | None = None) -> str:
    """``PATH#page=P`` (TIFF) or ``PATH#page=P&image=I`` (PDF); 1-based."""
    return f"{path}#page={page}" + (f"&image={image}" if image is not None else "")


def parse_ref(ref: str | os.PathLike) -> tuple[Path, int | None, int | None]:
    """``(file, page, image)`` of a reference; ``(Path(ref), None, None)`` for a plain path.

    A name that exists as a file is a plain path even when it contains ``#page=``.
    """
    s = str(ref)
    m = _REF.match(s)
    if m is None or os.path.lexists(s):
        return Path(s), None, None
    return Path(m["path"]), int(m["page"]), int(m["image"]) if m["image"] else None


def is_ref(ref: str | os.PathLike) -> bool:
    """True when ``ref`` names an item inside a container (it has a ``#page=`` fragment)."""
    return parse_ref(ref)[1] is not None


def _read(p: Path) -> bytes:
    name = str(p)
    try:
        if p.is_dir():
            raise _error(f"{name}: is a folder, not an image")
        if not stat.S_ISREG(p.stat().st_mode):
            raise _error(f"{name}: not a regular file (a device, pipe or socket)")
        data = p.read_bytes()
    except FileNotFoundError:
        raise _error(f"{name}: no such file") from None
    except OSError as e:
        raise _error(f"{name}: cannot read ({e.strerror or e})") from None
    if not data:
        raise _error(f"{name}: empty file (0 bytes)")
    return data


def expand(path: str | os.PathLike, *, data: bytes | None = None) -> list[EvidenceItem]:
    """The pieces of evidence in one input: one per embedded image of a PDF, one per
    TIFF page, or the file itself. Pages are in order; nothing is decoded yet.

    A reference (``DOC.pdf#page=2&image=1``) expands to that one item.

    Raises
    ------
    ImageLoadError
        Unreadable, encrypted, corrupt or hostile container (one line).
    """
    p, page, image = parse_ref(path)
    if data is None and (page is not None or p.suffix.lower() in CONTAINER_SUFFIXES):
        data = _read(p)
    if data is None:
        return [EvidenceItem(str(p), p)]
    kind = sniff(data)
    if kind == "PDF":
        items = _PdfSource(p, data).items()
    elif kind == "TIFF":
        items = _tiff_items(p, data)
    elif page is not None:
        raise _error(f"{path}: #page= names an item of a PDF or TIFF, but {p} holds {kind} data")
    else:
        return [EvidenceItem(str(p), p)]
    if page is None:
        return items
    where = [parse_ref(it.ref)[1:] for it in items]
    hit = [it for it, (pg, im) in zip(items, where, strict=True)
           if pg == page and (image is None or im in (None, image))]
    if not hit:
        n_pages = max((pg or 1 for pg, _ in where), default=1)
        raise _error(f"{path}: no such image (the file has {n_pages} page(s); see 'scanlab classify {p}')")
    if image is None and len(hit) > 1:
        raise _error(f"{path}: page {page} holds {len(hit)} images; name one as {make_ref(p, page, 1)}")
    return hit[:1]


def load_item(ref: str | os.PathLike, *, data: bytes | None = None, min_side: int | None = None):
    """Decode the one piece of evidence ``ref`` names (a reference, or a container with one image).

    Raises
    ------
    ImageLoadError
        Also when a container holds no image or several (the message names them).
    """
    items = expand(ref, data=data)
    real = [it for it in items if it.empty is None]
    if len(items) == 1:
        return items[0].load(min_side=min_side)
    if not real:
        raise _error(f"{ref}: no scanned image in the file (text or vector pages only)")
    if len(real) > 1:
        raise _error(f"{ref}: holds {len(real)} images; name one as {real[0].ref} (or classify the whole file)")
    return real[0].load(min_side=min_side)


def item_sha256(ref: str | os.PathLike) -> str:
    """SHA-256 of the evidence ``ref`` names: the file's, or the embedded item's own bytes."""
    from scanlab.core.io.imaging import sha256_file

    if not is_ref(ref):
        return sha256_file(ref)
    items = expand(ref)
    return items[0].container["sha256_item"] if items[0].container else sha256_file(items[0].path)


def find_evidence(folder: str | os.PathLike) -> list[Path]:
    """Every piece of evidence below ``folder``: image files, PDF items and TIFF pages as references.

    A container that cannot be read stays one plain path (loading it later gives its
    one-line error); pages without a scanned image are left out.
    """
    from scanlab.core.io.imaging import IMAGE_SUFFIXES

    root = Path(folder)
    out: list[Path] = []
    for p in sorted(root.rglob("*")):
        if not p.is_file() or any(s.startswith(".") for s in p.relative_to(root).parts):
            continue
        suf = p.suffix.lower()
        if suf not in IMAGE_SUFFIXES and suf != ".pdf":
            continue
        if suf not in CONTAINER_SUFFIXES:
            out.append(p)
            continue
        try:
            out += [Path(it.ref) for it in expand(p) if it.empty is None]
        except Exception:  # noqa: BLE001 - reported when the file is loaded
            out.append(p)
    return out


# -- PDF -------------------------------------------------------------------------------------


def _name(v: Any) -> str:
    return str(v)[1:] if str(v).startswith("/") else str(v)


def _filters(obj: Any) -> list[str]:
    import pikepdf

    f = obj.get("/Filter")
    if f is None:
        return []
    return [_name(x) for x in f] if isinstance(f, pikepdf.Array) else [_name(f)]


class _PdfSource:
    """An open PDF (its bytes kept once) and the images its pages draw."""

    def __init__(self, path: Path, data: bytes) -> None:
        import pikepdf

        self.path, self.data = path, data
        self.sha256 = hashlib.sha256(data).hexdigest()
        try:
            # no silent repair: a PDF whose cross-reference table must be rebuilt is not read
            self.pdf = pikepdf.open(io.BytesIO(data), attempt_recovery=False)
        except pikepdf.PasswordError:
            raise _error(f"{path}: encrypted PDF (it needs a password); ScanLab does not decrypt evidence") from None
        except Exception as e:  # noqa: BLE001 - qpdf reports damage as several types
            raise _error(f"{path}: corrupt PDF ({_why(e)})") from None

    def check_warnings(self, where: str) -> None:
        """Refuse what qpdf had to repair (a stream whose /Length lies, damaged objects): for
        evidence, a repaired read is a guess at what the author wrote."""
        # a page without /Resources is given an empty one: harmless, it draws nothing we read
        w = [m for m in self.pdf.get_warnings() if "Resources is missing or invalid" not in m]
        if w:
            raise _error(f"{where}: damaged PDF ({_why(Exception(w[0]))}; {len(w)} problem(s)); ScanLab reads "
                         "undamaged PDFs only")

    def items(self) -> list[EvidenceItem]:
        """One item per drawn image (in page order, then drawing order); one ``empty`` item per page without."""
        try:
            return self._items()
        except (RecursionError, MemoryError):
            raise _error(f"{self.path}: hostile PDF (the object structure is too deep or too large)") from None
        except Exception as e:  # noqa: BLE001
            if type(e).__name__ == "ImageLoadError":
                raise
            raise _error(f"{self.path}: corrupt PDF ({_why(e)})") from None

    def _items(self) -> list[EvidenceItem]:
        try:
            count = int(self.pdf.Root.Pages.get("/Count", 0))
        except Exception:  # noqa: BLE001 - checked again through pdf.pages below
            count = 0
        if count > MAX_PAGES:
            raise _error(f"{self.path}: PDF claims {count} pages, more than the {MAX_PAGES} ScanLab reads")
        pages = self.pdf.pages
        n = len(pages)
        if n > MAX_PAGES:
            raise _error(f"{self.path}: PDF has {n} pages, more than the {MAX_PAGES} ScanLab reads")
        if n == 0:
            raise _error(f"{self.path}: PDF without pages")
        out: list[EvidenceItem] = []
        for pno in range(1, n + 1):
            images, small = self._page_images(pages[pno - 1])
            if not images:
                why = "no scanned image on this page (text or vector only)"
                if small:
                    why = f"no scanned image on this page ({small} image(s) under 64 px on a side)"
                out.append(EvidenceItem(make_ref(self.path, pno), self.path, empty=why))
            for k, obj in enumerate(images, start=1):
                out.append(self._item(obj, pno, k))
        self.check_warnings(str(self.path))
        return out

    def _page_images(self, page: Any) -> tuple[list[Any], int]:
        """The page's image XObjects in drawing order (forms followed), each once; and how many were tiny."""
        import pikepdf

        found: list[Any] = []
        seen: set[tuple[int, int]] = set()
        small = 0

        def walk(container: Any, depth: int, forms: frozenset) -> None:
            nonlocal small
            res = container.get("/Resources")
            xobjs = res.get("/XObject") if res is not None else None
            if xobjs is None:
                return
            for operands, op in pikepdf.parse_content_stream(container, "Do"):
                if str(op) != "Do" or not operands:
                    continue
                obj = xobjs.get(operands[0])
                if obj is None or not isinstance(obj, pikepdf.Stream):
                    continue
                key = obj.objgen
                sub = obj.get("/Subtype")
                if sub == pikepdf.Name.Image:
                    if key in seen or bool(obj.get("/ImageMask", False)):
                        continue
                    seen.add(key)
                    if min(int(obj.get("/Width", 0)), int(obj.get("/Height", 0))) < 64:
                        small += 1
                        continue
                    found.append(obj)
                    if len(found) > MAX_IMAGES_PER_PAGE:
                        raise _error(f"{self.path}: a page draws more than {MAX_IMAGES_PER_PAGE} images")
                elif sub == pikepdf.Name.Form:
                    if key in forms:  # a form that draws itself: an object loop
                        raise _error(f"{self.path}: hostile PDF (a form XObject draws itself: an object loop)")
                    if depth >= MAX_FORM_DEPTH:
                        raise _error(f"{self.path}: hostile PDF (form XObjects nested over {MAX_FORM_DEPTH} deep)")
                    walk(obj, depth + 1, forms | {key})

        walk(page.obj if hasattr(page, "obj") else page, 0, frozenset())
        return found, small

    def _item(self, obj: Any, page: int, index: int) -> EvidenceItem:
        filters = _filters(obj)
        ref = make_ref(self.path, page, index)
        cont = {"type": "PDF", "path": str(self.path.resolve()), "sha256": self.sha256, "page": page,
                "image": index, "filter": "+".join(filters) or "none"}
        raw = self._stream(obj, ref, filters)
        cont["sha256_item"] = hashlib.sha256(raw).hexdigest()
        jpeg = raw if filters and filters[-1] == "DCTDecode" else None
        return EvidenceItem(ref, self.path, cont, None, lambda: self._decode(obj, raw, ref, cont, filters), jpeg)

    def _stream(self, obj: Any, ref: str, filters: list[str]) -> bytes:
        """The evidence bytes: the stored stream, or the JPEG inside an outer lossless filter."""
        import pikepdf

        raw = obj.read_raw_bytes()
        if filters and filters[-1] == "DCTDecode" and len(filters) > 1:
            if any(f not in ("FlateDecode", "LZWDecode", "ASCII85Decode", "ASCIIHexDecode", "RunLengthDecode")
                   for f in filters[:-1]):
                raise _error(f"{ref}: unsupported PDF filter chain {'+'.join(filters)}")
            raw = obj.read_bytes(decode_level=pikepdf.StreamDecodeLevel.generalized)
        return raw

    def _decode(self, obj: Any, raw: bytes, ref: str, cont: dict, filters: list[str]):
        from dataclasses import replace

        from scanlab.core.io.imaging import PATCH, Scan, ScanInfo, decode_bytes, pixel_limit

        limit = pixel_limit()
        w, h = int(obj.get("/Width", 0)), int(obj.get("/Height", 0))
        try:
            check_size(w, h, limit, PATCH)
        except DecodeProblem as e:
            raise _error(f"{ref}: {e}") from None
        full = make_ref(self.path.resolve(), cont["page"], cont["image"])
        if filters and filters[-1] == "DCTDecode":
            scan = decode_bytes(raw, ref, resolved=full, max_pixels=limit)
            if (scan.info.width, scan.info.height) != (w, h):
                notes = (*scan.info.notes, f"the PDF says {w}x{h}, the JPEG is {scan.info.width}x{scan.info.height}")
                return Scan(scan.pixels, replace(scan.info, notes=notes, container=cont))
            return Scan(scan.pixels, replace(scan.info, container=cont))
        if filters and filters[-1] in ("JPXDecode", "JBIG2Decode"):
            kind = "JPEG 2000" if filters[-1] == "JPXDecode" else "JBIG2"
            raise _error(f"{ref}: {kind} image ({filters[-1]}); ScanLab reads JPEG and lossless PDF images")
        # a Flate bomb: inflate at most what the declared size can need (16-bit, 4 samples, PNG predictor byte)
        if "FlateDecode" in filters:
            need = h * (w * 4 * 2 + 1) + 1
            try:
                d = zlib.decompressobj()
                out = d.decompress(raw, need + 1)
            except zlib.error as e:
                raise _error(f"{ref}: corrupt Flate stream ({e})") from None
            if len(out) > need:
                raise _error(f"{ref}: hostile PDF (the image stream inflates beyond its declared {w}x{h} size)")
        try:
            from pikepdf import PdfImage

            pim = PdfImage(obj).as_pil_image()
        except Exception as e:  # noqa: BLE001 - pikepdf raises several types for bad images
            raise _error(f"{ref}: cannot decode the embedded image ({_why(e)})") from None
        self.check_warnings(ref)
        if pim.size != (w, h):
            raise _error(f"{ref}: embedded image decoded to {pim.size[0]}x{pim.size[1]}, the PDF says {w}x{h}")
        try:
            px, depth, notes = pillow_to_rgb(pim)
        except DecodeProblem as e:
            raise _error(f"{ref}: {e}") from None
        if obj.get("/SMask") is not None:
            notes.append("soft mask (alpha) ignored")
        info = ScanInfo(path=full, sha256=cont["sha256_item"], format="PDF", mode=pim.mode, width=w, height=h,
                        bit_depth=depth, n_bytes=len(raw), exif_orientation=None, notes=tuple(notes),
                        dpi=None, container=cont)
        return Scan(np.ascontiguousarray(px), info)


# -- multi-page TIFF ---------------------------------------------------------------------------


def _tiff_items(path: Path, data: bytes) -> list[EvidenceItem]:
    import tifffile

    buf = io.BytesIO(data)
    try:
        with tifffile.TiffFile(buf) as tf:
            pages = tf.pages
            pages.useframes = False
            n = 0
            meta = []
            for page in pages:  # walks the IFD chain once; tifffile stops at loops
                n += 1
                if n > MAX_PAGES:
                    raise _error(f"{path}: TIFF has more than {MAX_PAGES} pages")
                segs = list(zip(page.dataoffsets, page.databytecounts, strict=False))
                comp = getattr(page.compression, "name", str(page.compression))
                meta.append((segs, comp))
    except Exception as e:  # noqa: BLE001 - tifffile raises many types on damaged files
        if type(e).__name__ == "ImageLoadError":
            raise
        raise _error(f"{path}: corrupt TIFF ({_why(e)})") from None
    finally:
        buf.close()
    if n <= 1:
        return [EvidenceItem(str(path), path)]
    sha = hashlib.sha256(data).hexdigest()
    out = []
    for k, (segs, comp) in enumerate(meta, start=1):
        h = hashlib.sha256()
        for off, cnt in segs:
            h.update(data[int(off):int(off) + int(cnt)])
        cont = {"type": "TIFF", "path": str(path.resolve()), "sha256": sha, "page": k, "image": 1,
                "filter": comp, "sha256_item": h.hexdigest()}
        n_bytes = sum(int(c) for _, c in segs)
        out.append(EvidenceItem(make_ref(path, k), path, cont, None,
                                lambda k=k, cont=cont, n_bytes=n_bytes: _tiff_page(path, data, k, cont, n_bytes)))
    return out


def _tiff_page(path: Path, data: bytes, page: int, cont: dict, n_bytes: int):
    from scanlab.core.io.imaging import PATCH, Scan, ScanInfo, pixel_limit

    ref = make_ref(path, page)
    try:
        dec = decode_tiff(data, pixel_limit(), PATCH, page=page - 1)
    except DecodeProblem as e:
        raise _error(f"{ref}: {e}") from None
    h, w = dec.pixels.shape[:2]
    info = ScanInfo(path=make_ref(path.resolve(), page), sha256=cont["sha256_item"], format="TIFF", mode=dec.mode, width=w, height=h,
                    bit_depth=dec.bit_depth, n_bytes=n_bytes, exif_orientation=dec.orientation,
                    notes=tuple(dec.notes), dpi=dec.dpi, container=cont)
    return Scan(dec.pixels, info)


def _why(e: BaseException) -> str:
    s = str(e).splitlines()[0] if str(e) else ""
    s = re.sub(r"^stream <_io\.BytesIO object at 0x[0-9a-fA-F]+>[:,]?\s*", "", s)  # qpdf names our buffer
    return s[:100] or type(e).__name__
