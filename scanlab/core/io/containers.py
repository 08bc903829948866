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
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scanlab.core.errors import ScanLabError
from scanlab.core.io.decoders import DecodeProblem, decode_tiff, sniff

MAX_PAGES = 10_000  # more pages than any scanned document; a "million-page tree" stops here
CONTAINER_SUFFIXES = (".pdf", ".tif", ".tiff")
_REF = re.compile(r"^(?P<path>.+)#page=(?P<page>\d{1,9})(?:&image=(?P<image>\d{1,9}))?$")

def error(msg: str) -> Exception:
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
            raise error(f"{self.ref}: {self.empty}")
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


def read_file(p: Path) -> bytes:
    """The bytes of one input file, read once, with one-line errors (folder, device, missing, empty)."""
    name = str(p)
    try:
        if p.is_dir():
            raise error(f"{name}: is a folder, not an image")
        if not stat.S_ISREG(p.stat().st_mode):
            raise error(f"{name}: not a regular file (a device, pipe or socket)")
        data = p.read_bytes()
    except FileNotFoundError:
        raise error(f"{name}: no such file") from None
    except OSError as e:
        raise error(f"{name}: cannot read ({e.strerror or e})") from None
    if not data:
        raise error(f"{name}: empty file (0 bytes)")
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
    if data is None and page is None and p.suffix.lower() in (".tif", ".tiff") and _tiff_pages(p) == 1:
        return [EvidenceItem(str(p), p)]  # the usual case: a one-page TIFF is read from its header only
    if data is None and (page is not None or p.suffix.lower() in CONTAINER_SUFFIXES):
        data = read_file(p)
    if data is None:
        return [EvidenceItem(str(p), p)]
    kind = sniff(data)
    if kind == "PDF":
        from scanlab.core.io.pdfimages import PdfSource  # pikepdf is imported only for PDFs

        items = PdfSource(p, data).items()
    elif kind == "TIFF":
        items = _tiff_items(p, data)
    elif page is not None:
        raise error(f"{path}: #page= names an item of a PDF or TIFF, but {p} holds {kind} data")
    else:
        return [EvidenceItem(str(p), p)]
    if page is None:
        return items
    if len(items) == 1 and items[0].container is None and page == 1 and image in (None, 1):
        return items  # SCAN.tif#page=1 of a one-page TIFF
    where = [parse_ref(it.ref)[1:] for it in items]
    hit = [it for it, (pg, im) in zip(items, where, strict=True)
           if pg == page and (image is None or im in (None, image))]
    if not hit:
        n_pages = max((pg or 1 for pg, _ in where), default=1)
        raise error(f"{path}: no such image (the file has {n_pages} page(s); see 'scanlab classify {p}')")
    if image is None and len(hit) > 1:
        raise error(f"{path}: page {page} holds {len(hit)} images; name one as {make_ref(p, page, 1)}")
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
        raise error(f"{ref}: no scanned image in the file (text or vector pages only)")
    if len(real) > 1:
        raise error(f"{ref}: holds {len(real)} images; name one as {real[0].ref} (or classify the whole file)")
    return real[0].load(min_side=min_side)


def item_sha256(ref: str | os.PathLike) -> str:
    """SHA-256 of the evidence ``ref`` names: the file's, or the embedded item's own bytes."""
    from scanlab.core.io.imaging import sha256_file

    if not is_ref(ref):
        return sha256_file(ref)
    items = expand(ref)
    return items[0].container["sha256_item"] if items[0].container else sha256_file(items[0].path)


def evidence_files(folder: str | os.PathLike) -> list[Path]:
    """The files below ``folder`` that may hold evidence (image suffixes and PDFs), sorted, hidden ones left out.

    Containers are not opened: :func:`find_evidence` expands them, ``scanlab batch``
    expands them itself so that an empty page or a bad file becomes a row.
    """
    from scanlab.core.io.imaging import IMAGE_SUFFIXES

    root = Path(folder)
    return [p for p in sorted(root.rglob("*"))
            if p.is_file() and not any(s.startswith(".") for s in p.relative_to(root).parts)
            and (p.suffix.lower() in IMAGE_SUFFIXES or p.suffix.lower() == ".pdf")]


def find_evidence(folder: str | os.PathLike) -> list[Path]:
    """Every piece of evidence below ``folder``: image files, PDF items and TIFF pages as references.

    A container that cannot be read stays one plain path (loading it later gives its
    one-line error); pages without a scanned image are left out.
    """
    out: list[Path] = []
    for p in evidence_files(folder):
        if p.suffix.lower() not in CONTAINER_SUFFIXES:
            out.append(p)
            continue
        try:
            out += [Path(it.ref) for it in expand(p) if it.empty is None]
        except Exception:  # noqa: BLE001 - reported when the file is loaded
            out.append(p)
    return out


# -- multi-page TIFF ---------------------------------------------------------------------------


def _tiff_pages(path: Path) -> int | None:
    """Page count from the IFD chain (pixels are not read); None when the file cannot say."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tf:
            return len(tf.pages)
    except Exception:  # noqa: BLE001 - the full read reports the problem in one line
        return None


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
                    raise error(f"{path}: TIFF has more than {MAX_PAGES} pages")
                segs = list(zip(page.dataoffsets, page.databytecounts, strict=False))
                comp = getattr(page.compression, "name", str(page.compression))
                meta.append((segs, comp))
    except Exception as e:  # noqa: BLE001 - tifffile raises many types on damaged files
        if isinstance(e, ScanLabError):  # our own one-line errors pass through
            raise
        raise error(f"{path}: corrupt TIFF ({why(e)})") from None
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
        raise error(f"{ref}: {e}") from None
    h, w = dec.pixels.shape[:2]
    info = ScanInfo(path=make_ref(path.resolve(), page), sha256=cont["sha256_item"], format="TIFF", mode=dec.mode,
                    width=w, height=h, bit_depth=dec.bit_depth, n_bytes=n_bytes, exif_orientation=dec.orientation,
                    notes=tuple(dec.notes), dpi=dec.dpi, container=cont)
    return Scan(dec.pixels, info)


def why(e: BaseException) -> str:
    s = str(e).splitlines()[0] if str(e) else ""
    s = re.sub(r"^stream <_io\.BytesIO object at 0x[0-9a-fA-F]+>[:,]?\s*", "", s)  # qpdf names our buffer
    return s[:100] or type(e).__name__
