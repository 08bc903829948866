"""The images a PDF's pages draw, read as stored (:mod:`scanlab.core.io.containers` has the rules).

pikepdf (qpdf) parses the file; nothing here renders a page. A DCTDecode stream is
handed to the JPEG decoder as the file it is; lossless streams go through pikepdf's
``PdfImage`` after their declared size has been checked against the pixel limit and a
Flate stream's inflated size against what that size needs.
"""

from __future__ import annotations

import hashlib
import io
import logging
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from scanlab.core.errors import ScanLabError
from scanlab.core.io import containers
from scanlab.core.io.containers import EvidenceItem, error, make_ref, why
from scanlab.core.io.decoders import DecodeProblem, check_size, pillow_to_rgb

MAX_IMAGES_PER_PAGE = 1_000
MAX_FORM_DEPTH = 8  # nested form XObjects followed to find a page's images
logging.getLogger("pikepdf").setLevel(logging.CRITICAL)  # qpdf warnings: the outcome is reported in one line


def _name(v: Any) -> str:
    return str(v)[1:] if str(v).startswith("/") else str(v)


def _filters(obj: Any) -> list[str]:
    import pikepdf

    f = obj.get("/Filter")
    if f is None:
        return []
    return [_name(x) for x in f] if isinstance(f, pikepdf.Array) else [_name(f)]


class PdfSource:
    """An open PDF (its bytes kept once) and the images its pages draw."""

    def __init__(self, path: Path, data: bytes) -> None:
        import pikepdf

        self.path, self.data = path, data
        self.sha256 = hashlib.sha256(data).hexdigest()
        try:
            # no silent repair: a PDF whose cross-reference table must be rebuilt is not read
            self.pdf = pikepdf.open(io.BytesIO(data), attempt_recovery=False)
        except pikepdf.PasswordError:
            raise error(f"{path}: encrypted PDF (it needs a password); ScanLab does not decrypt evidence") from None
        except Exception as e:  # noqa: BLE001 - qpdf reports damage as several types
            raise error(f"{path}: corrupt PDF ({why(e)})") from None

    def check_warnings(self, where: str) -> None:
        """Refuse what qpdf had to repair (a stream whose /Length lies, damaged objects): for
        evidence, a repaired read is a guess at what the author wrote."""
        # a page without /Resources is given an empty one: harmless, it draws nothing we read
        w = [m for m in self.pdf.get_warnings() if "Resources is missing or invalid" not in m]
        if w:
            raise error(f"{where}: damaged PDF ({why(Exception(w[0]))}; {len(w)} problem(s)); ScanLab reads "
                         "undamaged PDFs only")

    def items(self) -> list[EvidenceItem]:
        """One item per drawn image (in page order, then drawing order); one ``empty`` item per page without."""
        try:
            return self._items()
        except (RecursionError, MemoryError):
            raise error(f"{self.path}: hostile PDF (the object structure is too deep or too large)") from None
        except Exception as e:  # noqa: BLE001
            if isinstance(e, ScanLabError):  # our own one-line errors pass through
                raise
            raise error(f"{self.path}: corrupt PDF ({why(e)})") from None

    def _items(self) -> list[EvidenceItem]:
        try:
            count = int(self.pdf.Root.Pages.get("/Count", 0))
        except Exception:  # noqa: BLE001 - checked again through pdf.pages below
            count = 0
        if count > containers.MAX_PAGES:
            raise error(f"{self.path}: PDF claims {count} pages, more than the {containers.MAX_PAGES} ScanLab reads")
        pages = self.pdf.pages
        n = len(pages)
        if n > containers.MAX_PAGES:
            raise error(f"{self.path}: PDF has {n} pages, more than the {containers.MAX_PAGES} ScanLab reads")
        if n == 0:
            raise error(f"{self.path}: PDF without pages")
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
                        raise error(f"{self.path}: a page draws more than {MAX_IMAGES_PER_PAGE} images")
                elif sub == pikepdf.Name.Form:
                    if key in forms:  # a form that draws itself: an object loop
                        raise error(f"{self.path}: hostile PDF (a form XObject draws itself: an object loop)")
                    if depth >= MAX_FORM_DEPTH:
                        raise error(f"{self.path}: hostile PDF (form XObjects nested over {MAX_FORM_DEPTH} deep)")
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
                raise error(f"{ref}: unsupported PDF filter chain {'+'.join(filters)}")
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
            raise error(f"{ref}: {e}") from None
        full = make_ref(self.path.resolve(), cont["page"], cont["image"])
        if filters and filters[-1] == "DCTDecode":
            scan = decode_bytes(raw, ref, resolved=full, max_pixels=limit)
            if (scan.info.width, scan.info.height) != (w, h):
                notes = (*scan.info.notes, f"the PDF says {w}x{h}, the JPEG is {scan.info.width}x{scan.info.height}")
                return Scan(scan.pixels, replace(scan.info, notes=notes, container=cont))
            return Scan(scan.pixels, replace(scan.info, container=cont))
        if filters and filters[-1] in ("JPXDecode", "JBIG2Decode"):
            kind = "JPEG 2000" if filters[-1] == "JPXDecode" else "JBIG2"
            raise error(f"{ref}: {kind} image ({filters[-1]}); ScanLab reads JPEG and lossless PDF images")
        # a Flate bomb: inflate at most what the declared size can need (16-bit, 4 samples, PNG predictor byte)
        if "FlateDecode" in filters:
            need = h * (w * 4 * 2 + 1) + 1
            try:
                d = zlib.decompressobj()
                out = d.decompress(raw, need + 1)
            except zlib.error as e:
                raise error(f"{ref}: corrupt Flate stream ({e})") from None
            if len(out) > need:
                raise error(f"{ref}: hostile PDF (the image stream inflates beyond its declared {w}x{h} size)")
        try:
            from pikepdf import PdfImage

            pim = PdfImage(obj).as_pil_image()
        except Exception as e:  # noqa: BLE001 - pikepdf raises several types for bad images
            raise error(f"{ref}: cannot decode the embedded image ({why(e)})") from None
        self.check_warnings(ref)
        if pim.size != (w, h):
            raise error(f"{ref}: embedded image decoded to {pim.size[0]}x{pim.size[1]}, the PDF says {w}x{h}")
        try:
            px, depth, notes = pillow_to_rgb(pim)
        except DecodeProblem as e:
            raise error(f"{ref}: {e}") from None
        if obj.get("/SMask") is not None:
            notes.append("soft mask (alpha) ignored")
        info = ScanInfo(path=full, sha256=cont["sha256_item"], format="PDF", mode=pim.mode, width=w, height=h,
                        bit_depth=depth, n_bytes=len(raw), exif_orientation=None, notes=tuple(notes),
                        dpi=None, container=cont)
        return Scan(np.ascontiguousarray(px), info)
