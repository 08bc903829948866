"""Copy-move forgeries of the kind analysts meet on scanned documents, with exact masks.

A host page is a rendered document (paragraphs full of repeated glyphs, from
:func:`scanlab.core.synth.content.document_page`) with a form area added at the
bottom whose layout is known: an invoice number and an amount (one box per
character), a line of words (one box per word), a round stamp and a signature.
The page is scanned by a virtual scanner of the bank and decoded from its output
format. The forger then works on those pixels, as a forger with an image editor:

* ``digit``: one character box of the amount is copied into the blank space
  just after the amount (``12,340.50`` becomes ``12,340.505``);
* ``word``: one word box is copied to the blank end of another form line;
* ``stamp``: the stamp or the signature is copied to a blank area (a duplicated stamp);
* ``blank``: a patch of blank paper is copied over a word to hide it.

Digit, word and stamp copies are, in part (40%), rotated by 1-4 degrees or scaled by
0.9-1.1 (bicubic, about the centre of the copied box). The forged page is saved as
JPEG at quality 75, 85 or 95 (by ``k``), i.e. the copy is re-compressed with the page.
The masks are exact: ``target`` is every pasted pixel, ``source`` the copied box.
The same page *without* the forgery (:func:`doc_scan` with ``forge=False``), saved the
same way, is the authentic twin used as the false-alarm test.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from scanlab.core.synth.bank import DEFAULT_UNITS
from scanlab.core.synth.content import document_page
from scanlab.core.synth.dsp import gaussian_blur, rng_for
from scanlab.core.synth.scanner import bank, decode, encode, scan, unit_for_image

DOC_STYLES = ("digit", "word", "stamp", "blank")
QUALITIES = (75, 85, 95)
_FORM_WORDS = ("paid", "approved", "received", "total", "account", "balance", "signed", "date", "copy", "void")


@dataclass
class DocForgery:
    """One forged (or authentic) document scan."""

    data: bytes  # JPEG bytes of the saved page
    pixels: np.ndarray  # decoded uint8 (H, W, 3)
    target: np.ndarray  # bool (H, W): pasted pixels (all False when authentic)
    source: np.ndarray  # bool (H, W): the copied box
    record: dict


def _box_of(mask: np.ndarray) -> list[int]:
    ys, xs = np.nonzero(mask)
    return [int(ys.min()), int(xs.min()), int(ys.max() - ys.min() + 1), int(xs.max() - xs.min() + 1)]


def _form(h: int, w: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Ink (h, w) float in [0, 1] of the form area and the boxes of its parts (page coords)."""
    ink = Image.new("L", (w, h), 0)
    d = ImageDraw.Draw(ink)
    size = int(rng.integers(max(14, h // 14), max(15, h // 9)))
    font = ImageFont.load_default(size)
    x0 = int(rng.integers(w // 20, w // 8))
    line_h = int(size * 1.6)
    y = int(size * 0.5)
    layout: dict = {"chars": [], "words": [], "lines": []}
    amount = f"{rng.integers(1, 99)},{rng.integers(100, 999)}.{rng.integers(10, 99)}"
    for label, value in (("Invoice no. ", f"{rng.integers(10000, 99999)}"), ("Total amount: ", amount)):
        d.text((x0, y), label, fill=255, font=font)
        x = x0 + font.getlength(label)
        for ch in value:
            adv = font.getlength(ch)
            d.text((x, y), ch, fill=255, font=font)
            if ch.isdigit():
                bb = d.textbbox((x, y), ch, font=font)
                layout["chars"].append([bb[1], bb[0], bb[3] - bb[1], bb[2] - bb[0]])
            x += adv
        layout["lines"].append({"y": y, "end": int(x), "height": size})
        y += line_h
    for _ in range(2):  # two lines of form words
        x = float(x0)
        words = [str(_FORM_WORDS[int(rng.integers(0, len(_FORM_WORDS)))]) for _ in range(int(rng.integers(2, 4)))]
        for wd in words:
            bb = d.textbbox((x, y), wd, font=font)
            d.text((x, y), wd, fill=255, font=font)
            layout["words"].append([bb[1], bb[0], bb[3] - bb[1], bb[2] - bb[0]])
            x += font.getlength(wd + " ")
        layout["lines"].append({"y": y, "end": int(x), "height": size})
        y += line_h
    # a round stamp (rings and a word) and a signature (a smooth random scrawl)
    r = int(min(h - y, w // 4) * rng.uniform(0.32, 0.42))
    cy, cx = y + r + 4, int(w * rng.uniform(0.55, 0.75))
    d.ellipse([cx - r, cy - r, cx + r, cy + r], outline=255, width=3)
    d.ellipse([cx - r + 8, cy - r + 8, cx + r - 8, cy + r - 8], outline=255, width=2)
    sf = ImageFont.load_default(max(10, r // 3))
    d.text((cx, cy), str(rng.choice(["PAID", "COPY", "OK"])), fill=255, font=sf, anchor="mm")
    layout["stamp"] = [cy - r - 2, cx - r - 2, 2 * r + 5, 2 * r + 5]
    t = np.linspace(0, 1, 200)
    sx = x0 + t * w * 0.3
    sy = cy + r * 0.3 * np.sin(2 * np.pi * (t * rng.uniform(2, 5))) + r * 0.2 * np.sin(2 * np.pi * t * rng.uniform(7, 11))
    d.line(list(zip(sx.tolist(), sy.tolist(), strict=True)), fill=255, width=2)
    layout["signature"] = [int(sy.min()) - 4, int(sx.min()) - 4, int(sy.max() - sy.min()) + 9, int(sx.max() - sx.min()) + 9]
    return np.asarray(ink, dtype=np.float32) / 255.0, layout


def _page(size: int, rng: np.random.Generator) -> tuple[np.ndarray, dict, int]:
    """Document page reflectance (size + 8, size, 3) with the form area; layout; form top row."""
    h = w = size
    refl = document_page(h + 8, w, rng)
    top = int(h * 0.52)
    paper = float(np.median(refl[:, :, 1]))
    refl[top:] = paper * (1.0 + 0.006 * gaussian_blur(rng.standard_normal((h + 8 - top, w)).astype(np.float32), 1.5, 1.5))[:, :, None]
    ink, layout = _form(h + 8 - top, w, rng)
    ink = gaussian_blur(ink, 0.4, 0.4)
    colour = np.array([0.55, 0.12, 0.15], np.float32)  # stamp ink: red; the rest black
    sy, sx, sh, sw = layout["stamp"]
    tint = np.zeros_like(ink)
    tint[max(0, sy) : sy + sh, max(0, sx) : sx + sw] = 1.0
    black = np.array([0.03, 0.03, 0.04], np.float32)
    col = black[None, None] * (1 - tint[:, :, None]) + colour[None, None] * tint[:, :, None]
    refl[top:] *= 1.0 - ink[:, :, None] * (1.0 - col)
    # page coordinates of the scanned image: the scanner starts 4 rows down the page
    def shift(b: list[float]) -> list[int]:
        return [int(b[0]) + top - 4, int(b[1]), int(np.ceil(b[2])), int(np.ceil(b[3]))]

    out = {"chars": [shift(b) for b in layout["chars"]], "words": [shift(b) for b in layout["words"]],
           "stamp": shift(layout["stamp"]), "signature": shift(layout["signature"]),
           "lines": [{"y": ln["y"] + top - 4, "end": ln["end"], "height": ln["height"]} for ln in layout["lines"]]}
    return np.clip(refl, 0, 1), out, top - 4


def _pad(b: list[int], m: int, h: int, w: int) -> list[int]:
    b = [int(round(v)) for v in b]
    y0, x0 = max(0, b[0] - m), max(0, b[1] - m)
    y1, x1 = min(h, b[0] + b[2] + m), min(w, b[1] + b[3] + m)
    return [y0, x0, y1 - y0, x1 - x0]


def _warp(crop: np.ndarray, angle: float, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Rotate/scale ``crop`` about its centre (bicubic); returns pixels and the valid mask."""
    h, w = crop.shape[:2]
    a = np.deg2rad(angle)
    # PIL's affine maps output (x, y) to input: inverse of rotate-then-scale about the centre
    c, s = np.cos(a) / scale, np.sin(a) / scale
    cx, cy = (w - 1) / 2, (h - 1) / 2
    coeffs = (c, s, cx - c * cx - s * cy, -s, c, cy + s * cx - c * cy)
    im = Image.fromarray(crop).transform((w, h), Image.Transform.AFFINE, coeffs, Image.Resampling.BICUBIC)
    m = Image.new("L", (w, h), 255).transform((w, h), Image.Transform.AFFINE, coeffs, Image.Resampling.NEAREST)
    valid = np.asarray(m) > 0
    # one pixel in from the edge: bicubic taps there mixed in the black fill
    valid[1:-1, 1:-1] &= valid[:-2, 1:-1] & valid[2:, 1:-1] & valid[1:-1, :-2] & valid[1:-1, 2:]
    valid[[0, -1]] = False
    valid[:, [0, -1]] = False
    return np.asarray(im), valid


def _blank_spot(px: np.ndarray, bh: int, bw: int, rng: np.random.Generator, avoid: np.ndarray, y_min: int) -> tuple[int, int] | None:
    """Top-left of a bh x bw box of blank paper (low local variation) that avoids ``avoid``."""
    g = px.astype(np.float32).mean(axis=2)
    h, w = g.shape
    for _ in range(400):
        y = int(rng.integers(y_min, max(y_min + 1, h - bh)))
        x = int(rng.integers(0, max(1, w - bw)))
        win = g[y : y + bh, x : x + bw]
        if win.shape != (bh, bw) or avoid[max(0, y - 6) : y + bh + 6, max(0, x - 6) : x + bw + 6].any():
            continue
        if win.max() - win.min() < 40:
            return y, x
    return None


def doc_scan(
    k: int,
    style: str,
    *,
    forge: bool = True,
    bank_name: str = "default",
    seed: int = 0,
    size: int = 768,
    n_scanners: int = 10,
    units: int = DEFAULT_UNITS,
) -> DocForgery:
    """Document copy-move forgery number ``k`` of ``style`` (or its authentic twin).

    Everything is determined by (bank, seed, style, k); ``forge=False`` returns the
    same page, scanned by the same unit, saved at the same JPEG quality, unforged.
    """
    if style not in DOC_STYLES:
        raise ValueError(f"copy style {style!r}: expected one of {', '.join(DOC_STYLES)}")
    rng = rng_for("scanlab-docforge", bank_name, seed, style, k)
    designs = bank(bank_name, n_scanners)
    host = designs[int(rng.integers(0, n_scanners))]
    page, layout, form_top = _page(size, rng)
    unit = unit_for_image(host, k, units)
    px = decode(encode(scan(unit, page, rng), host))  # as the scanner saved it
    h, w = px.shape[:2]
    quality = QUALITIES[k % len(QUALITIES)]
    geo = rng.random() < 0.4 and style != "blank"
    angle = float(rng.choice([-1, 1]) * rng.uniform(1.0, 4.0)) if geo and rng.random() < 0.5 else 0.0
    scale = float(rng.choice([rng.uniform(0.9, 0.97), rng.uniform(1.03, 1.1)])) if geo and angle == 0.0 else 1.0
    forged = px.copy()
    target = np.zeros((h, w), bool)
    source = np.zeros((h, w), bool)
    lines = layout["lines"]
    if style == "digit":
        cb = layout["chars"][int(rng.integers(0, len(layout["chars"])))]
        sb = _pad(cb, 3, h, w)
        ln = min(lines[:2], key=lambda li: abs(li["y"] - cb[0]))  # the line the digit is on
        ty, tx = sb[0], ln["end"] + 1  # right after the last character of that line
    elif style == "word":
        wb = layout["words"][int(rng.integers(0, len(layout["words"])))]
        sb = _pad(wb, 3, h, w)
        ln = lines[int(rng.integers(0, len(lines)))]
        ty, tx = sb[0] + (ln["y"] - min(lines, key=lambda li: abs(li["y"] - wb[0]))["y"]), ln["end"] + int(ln["height"] * 0.5)
    elif style == "stamp":
        sb = _pad(layout[str(rng.choice(["stamp", "signature"]))], 2, h, w)
        taken = np.zeros((h, w), bool)
        taken[sb[0] : sb[0] + sb[2], sb[1] : sb[1] + sb[3]] = True
        spot = _blank_spot(px, sb[2], sb[3], rng, taken, 0) or (max(0, h - sb[2]), max(0, w - sb[3]))
        ty, tx = spot
    else:  # blank paper over a word (or a digit run) to hide it
        hide = _pad(layout["words"][int(rng.integers(0, len(layout["words"])))], 4, h, w)
        taken = np.zeros((h, w), bool)
        taken[hide[0] : hide[0] + hide[2], hide[1] : hide[1] + hide[3]] = True
        spot = _blank_spot(px, hide[2], hide[3], rng, taken, form_top)
        if spot is None:
            spot = _blank_spot(px, hide[2], hide[3], rng, taken, 0) or (0, 0)
        sb = [spot[0], spot[1], hide[2], hide[3]]
        ty, tx = hide[0], hide[1]
    ty, tx = int(min(max(0, ty), h - sb[2])), int(min(max(0, tx), w - sb[3]))
    crop = px[sb[0] : sb[0] + sb[2], sb[1] : sb[1] + sb[3]]
    valid = np.ones(crop.shape[:2], bool)
    if angle or scale != 1.0:
        crop, valid = _warp(crop, angle, scale)
    if forge:
        region = forged[ty : ty + sb[2], tx : tx + sb[3]]
        region[valid] = crop[valid]
        target[ty : ty + sb[2], tx : tx + sb[3]] = valid
        source[sb[0] : sb[0] + sb[2], sb[1] : sb[1] + sb[3]] = True
        source &= ~target  # a copy next to its source: the overlap counts as pasted
    buf = io.BytesIO()
    Image.fromarray(forged, "RGB").save(buf, "JPEG", quality=quality, subsampling=0)
    data = buf.getvalue()
    record = {
        "kind": "copymove", "copy": style if forge else "authentic", "host_scanner": host.name,
        "host_unit": unit.serial, "jpeg_quality": quality, "rotation_deg": angle, "scale": scale,
        "source_box": sb, "target_box": [ty, tx, sb[2], sb[3]], "size": [h, w],
        "forged_fraction": float(target.mean()), "format": "jpeg",
    }
    if not forge:
        record["source_box"] = record["target_box"] = None
    return DocForgery(data, decode(data), target, source, record)


def doc_style_for(k: int, copy: str) -> str:
    """The style of forgery ``k`` for ``--copy`` (``doc`` cycles through the four)."""
    return DOC_STYLES[k % len(DOC_STYLES)] if copy == "doc" else copy


__all__ = ["DOC_STYLES", "QUALITIES", "DocForgery", "doc_scan", "doc_style_for"]
