"""Pictures for the case report, drawn with Pillow (no Qt): overlay, colorbar, numbered ROIs, crops.

The colours are the screen's: the same published colour map (the analyst's choice,
stored in the case view) and the same grey hatching for "no evidence" pixels.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from scanlab.core.case.rois import ROI
from scanlab.core.colormap import DEFAULT_COLORMAP, colorize, hatch_no_evidence, lut, stripe_for

ROI_COLOR = (255, 0, 255)  # magenta: visible on every colour of the reliability ramp
MAX_SIDE = 1400  # pixels of the page figure; enough for print at the size it is shown


def font_of_size(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the bitmap font
        return ImageFont.load_default()


def to_rgb8(pixels: np.ndarray) -> np.ndarray:
    """The decoded scan (uint8 or uint16, (H, W, 3)) as 8-bit RGB for display."""
    if pixels.dtype == np.uint16:
        return (pixels >> 8).astype(np.uint8)
    return np.asarray(pixels, dtype=np.uint8)


def overlay(rgb: np.ndarray | None, rel: np.ndarray, opacity: float = 0.55, *, cmap: str = DEFAULT_COLORMAP,
            no_evidence: np.ndarray | None = None) -> Image.Image:
    """Scan with the map's colours blended on top; ``no_evidence`` pixels hatched grey as on screen.

    NaN pixels outside ``no_evidence`` (not covered by any sub-image) show the scan only.
    """
    alpha = int(255 * opacity)
    col = colorize(rel, alpha=alpha, name=cmap)
    if no_evidence is not None and no_evidence.any():
        hatch_no_evidence(col, no_evidence, stripe_colour=stripe_for(cmap))
        # a little more opaque than the colours, so the hatch reads on any content
        col[no_evidence, 3] = min(255, alpha + 60)
    base = Image.fromarray(rgb, "RGB").convert("RGBA") if rgb is not None else \
        Image.new("RGBA", (rel.shape[1], rel.shape[0]), (200, 200, 200, 255))
    return Image.alpha_composite(base, Image.fromarray(col, "RGBA")).convert("RGB")


def _scaled_outline(roi: ROI, scale: float, dr: float = 0.0, dc: float = 0.0) -> list[tuple[float, float]]:
    return [((c - dc) * scale, (r - dr) * scale) for r, c in roi.outline()]  # PIL wants (x, y)


def annotated(img: Image.Image, rois: list[ROI]) -> Image.Image:
    """The full-size figure scaled to ``MAX_SIDE`` with numbered ROI outlines."""
    scale = min(1.0, MAX_SIDE / max(img.size))
    out = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.LANCZOS) \
        if scale < 1 else img.copy()
    d = ImageDraw.Draw(out)
    width = max(2, round(max(out.size) / 300))
    font = font_of_size(max(14, round(max(out.size) / 40)))
    for roi in rois:
        pts = _scaled_outline(roi, scale)
        d.line(pts + [pts[0]], fill=ROI_COLOR, width=width, joint="curve")
        x, y = min(pts, key=lambda p: (p[1], p[0]))  # at the outline's top vertex, on the region
        label = str(roi.id)
        box = d.textbbox((x + 3, y + 3), label, font=font)
        d.rectangle((box[0] - 3, box[1] - 2, box[2] + 3, box[3] + 2), fill=(255, 255, 255))
        d.text((x + 3, y + 3), label, fill=ROI_COLOR, font=font)
    return out


def colorbar(height: int = 600, width: int = 150, *, cmap: str = DEFAULT_COLORMAP) -> Image.Image:
    """A vertical colour bar (1 at the top) with tick labels and, below it, the no-evidence hatch swatch."""
    fsize = max(12, height // 28)  # the figure is scaled to the page: text scales with it
    width = max(width, 64 + 5 * fsize)  # room for "evidence" beside the swatch
    img = Image.new("RGB", (width, height), (255, 255, 255))
    font = font_of_size(fsize)
    legend_h = 3 * fsize + 10  # the hatch swatch and its two-line label
    bar_h = height - 40 - legend_h
    bar = np.repeat(lut(256, cmap)[::-1][:, None, :], 40, axis=1)
    img.paste(Image.fromarray(bar, "RGB").resize((40, bar_h)), (10, 20))
    d = ImageDraw.Draw(img)
    for v in (1.0, 0.75, 0.5, 0.25, 0.0):
        y = 20 + round((1 - v) * (bar_h - 1))
        d.line((50, y, 60, y), fill=(0, 0, 0), width=2)
        d.text((64, y - fsize // 2), f"{v:.2f}", fill=(0, 0, 0), font=font)
    y0 = 20 + bar_h + 12
    sw = hatch_no_evidence(np.zeros((legend_h - 12, 40, 4), np.uint8), np.ones((legend_h - 12, 40), bool),
                           stripe_colour=stripe_for(cmap))
    img.paste(Image.fromarray(sw[..., :3], "RGB"), (10, y0))
    d.text((56, y0), "no\nevidence", fill=(0, 0, 0), font=font)
    return img


def with_colorbar(fig: Image.Image, *, cmap: str = DEFAULT_COLORMAP) -> Image.Image:
    """``fig`` with a colour bar (and the no-evidence legend) of the same height to its right."""
    cb = colorbar(height=max(260, fig.height), width=max(130, fig.height // 7), cmap=cmap)
    out = Image.new("RGB", (fig.width + cb.width + 10, fig.height), (255, 255, 255))
    out.paste(fig, (0, 0))
    out.paste(cb, (fig.width + 10, 0))
    return out


def crops(rgb: np.ndarray | None, over: Image.Image, roi: ROI, side: int = 500) -> Image.Image:
    """Scan crop and overlay crop of one ROI (with a margin) side by side, outline drawn on both."""
    h, w = over.height, over.width
    r0, c0, r1, c1 = roi.bbox()
    m = 0.15 * max(r1 - r0, c1 - c0) + 8
    box = (max(0, int(c0 - m)), max(0, int(r0 - m)), min(w, int(c1 + m) + 1), min(h, int(r1 + m) + 1))
    scan_img = Image.fromarray(rgb, "RGB") if rgb is not None else Image.new("RGB", (w, h), (200, 200, 200))
    tiles = []
    for src in (scan_img, over):
        t = src.crop(box)
        scale = side / max(t.size)
        t = t.resize((max(1, round(t.width * scale)), max(1, round(t.height * scale))),
                     Image.NEAREST if scale > 2 else Image.LANCZOS)
        d = ImageDraw.Draw(t)
        pts = _scaled_outline(roi, scale, box[1], box[0])
        d.line(pts + [pts[0]], fill=ROI_COLOR, width=3)
        tiles.append(t)
    out = Image.new("RGB", (tiles[0].width + tiles[1].width + 12, max(t.height for t in tiles)), (255, 255, 255))
    out.paste(tiles[0], (0, 0))
    out.paste(tiles[1], (tiles[0].width + 12, 0))
    return out
