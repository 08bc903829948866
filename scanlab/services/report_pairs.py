"""The report's pair sections: one per copy-move pair (or any layer's pair) stored as two linked ROIs.

A pair's two ends are suggested ROIs made by :mod:`scanlab.services.layer_cases`; this
module draws both regions side by side, cropped from the scan and outlined in the
pair's colour (the colour of the PNG export and of the app), and tabulates the pair's
statistics with the layer's caveat from the registry. :mod:`scanlab.services.report`
calls :func:`pair_sections` once per evidence (Pillow and reportlab, no Qt).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from scanlab.core.case.rois import ROI
from scanlab.services.layer_cases import is_layer_roi, pair_of, record_of
from scanlab.services.layers import LAYERS
from scanlab.services.report_figures import font_of_size
from scanlab.services.report_text import num

DEFAULT_COLOUR = (230, 25, 75)


def pairs_of(rois: list[ROI]) -> list[tuple[ROI, ROI | None]]:
    """(source end, target end) of every layer pair among ``rois``; a lone end (its partner
    was removed) comes with ``None``. Ordered by the first end's id."""
    by_id = {r.id: r for r in rois}
    out, seen = [], set()
    for r in sorted(rois, key=lambda r: r.id):
        if r.id in seen or not is_layer_roi(r):
            continue
        partner = by_id.get(pair_of(r).get("partner"))
        if partner is not None and not (is_layer_roi(partner) and pair_of(partner).get("partner") == r.id):
            partner = None
        ends = (r, partner) if partner is None or pair_of(r).get("end") != "target" else (partner, r)
        seen.update(x.id for x in ends if x is not None)
        out.append(ends)
    return out


def _crop(rgb: np.ndarray | None, shape: tuple[int, int], roi: ROI, colour: tuple[int, int, int], side: int,
          title: str) -> Image.Image:
    """One end: the scan around the region (a margin), scaled to ``side``, outlined, titled above."""
    h, w = shape
    r0, c0, r1, c1 = roi.bbox()
    m = 0.15 * max(r1 - r0, c1 - c0) + 8
    box = (max(0, int(c0 - m)), max(0, int(r0 - m)), min(w, int(c1 + m) + 1), min(h, int(r1 + m) + 1))
    src = Image.fromarray(rgb, "RGB") if rgb is not None else Image.new("RGB", (w, h), (200, 200, 200))
    t = src.crop(box)
    scale = side / max(t.size)
    t = t.resize((max(1, round(t.width * scale)), max(1, round(t.height * scale))),
                 Image.NEAREST if scale > 2 else Image.LANCZOS)
    d = ImageDraw.Draw(t)
    pts = [((c - box[0]) * scale, (r - box[1]) * scale) for r, c in roi.outline()]  # PIL wants (x, y)
    d.line(pts + [pts[0]], fill=colour, width=4, joint="curve")
    font = font_of_size(22)
    head = Image.new("RGB", (t.width, 34), (255, 255, 255))
    ImageDraw.Draw(head).text((2, 6), title, fill=colour, font=font)
    out = Image.new("RGB", (t.width, t.height + head.height), (255, 255, 255))
    out.paste(head, (0, 0))
    out.paste(t, (0, head.height))
    return out


def pair_figure(rgb: np.ndarray | None, shape: tuple[int, int], source: ROI, target: ROI | None,
                side: int = 460) -> Image.Image:
    """Both ends side by side, each cropped with a margin and outlined in the pair's colour."""
    colour = tuple(pair_of(source).get("colour") or DEFAULT_COLOUR)
    tiles = [_crop(rgb, shape, roi, colour, side, f"ROI {roi.id}: {pair_of(roi).get('end', '?')} end")
             for roi in (source, target) if roi is not None]
    out = Image.new("RGB", (sum(t.width for t in tiles) + 16 * (len(tiles) - 1), max(t.height for t in tiles)),
                    (255, 255, 255))
    x = 0
    for t in tiles:
        out.paste(t, (x, 0))
        x += t.width + 16
    return out


def _box(b: list[int] | None) -> str:
    """A [y, x, h, w] box in words."""
    return "-" if not b else f"rows {b[0]}-{b[0] + b[2]}, cols {b[1]}-{b[1] + b[3]}"


def record_row(source: ROI, records: list[dict[str, Any]] | None) -> list[str]:
    """The row naming the stored run a pair came from (record id, map digest), what ``verify`` re-checks."""
    rid = pair_of(source).get("run")
    rec = record_of(records or [], source)
    if rec is None:
        return ["stored run record (re-checked by scanlab verify)",
                "none: made before records were kept" if not rid else f"{rid}: NOT IN THE CASE"]
    m = rec.get("map") or {}
    det = rec.get("detector") or {}
    return ["stored run record (re-checked by scanlab verify)",
            f"{rid}, {rec.get('time')}; map SHA-256 {str(m.get('sha256'))[:16]} (step {m.get('quantum')}, "
            f"{m.get('n_ge_half')} px >= 0.5); detector {str(det.get('source_sha256'))[:12]}"]


def pair_rows(source: ROI, target: ROI | None, records: list[dict[str, Any]] | None = None) -> list[list[str]]:
    """The statistics table of one pair (docs/formats.md section 5b), the two ROIs' verdicts and, given
    the evidence's layer run records, the stored run the pair came from."""
    p = pair_of(source)
    tf = p.get("transform")
    ends = [source] + ([target] if target is not None else [])
    return [
        ["q: difference at the shift / one pixel off (0 = identical)", num(p.get("q"), ".4f")],
        ["lowest q of this scan's same-content null (repeated glyphs)", num(p.get("q_null"), ".4f")],
        ["strength log2(q_null / q)", num(p.get("z"), ".1f")],
        ["empirical p (rank of q among the null)", "n/a" if p.get("p_value") is None
         else f"{p['p_value']:.3g}"],
        ["high-pass correlation of the two ends", num(p.get("correlation"), ".3f")],
        ["transform (source = T x target)", "-" if tf is None else
         "; ".join("[" + ", ".join(f"{v:g}" for v in row) + "]" for row in tf)],
        ["rotation, scale", f"{num(p.get('rotation_deg'), '.1f')} deg, {num(p.get('scale'), '.3f')}"],
        ["copied area (pixels)", str(p.get("area"))],
        ["source box / target box", f"{_box(p.get('source_box'))} / {_box(p.get('target_box'))}"],
        ["found by", str(p.get("found_by", "-"))],
        ["verdicts", "; ".join(f"ROI {r.id}: {r.verdict or 'NOT REVIEWED'}" for r in ends)],
    ] + ([record_row(source, records)] if records is not None else [])


def pair_sections(rgb: np.ndarray | None, shape: tuple[int, int], rois: list[ROI], ss: Any, *,
                  image: Callable[..., Any], table: Callable[..., Any], para: Callable[..., Any],
                  records: list[dict[str, Any]] | None = None) -> list[Any]:
    """Flowables of every pair among ``rois``: heading, side-by-side crops, statistics (with the stored
    run's record when ``records``, the evidence's ``layer_runs``, is given), the layer's caveat."""
    from reportlab.platypus import KeepTogether, Spacer

    story: list[Any] = []
    for k, (src, tgt) in enumerate(pairs_of(rois), 1):
        layer = LAYERS.get(src.stats["layer"])
        title = layer.title if layer is not None else src.stats["layer"]
        ids = f"ROI {src.id} and ROI {tgt.id}" if tgt is not None else f"ROI {src.id} (its partner was removed)"
        block = [para(f"{title} pair {k}: {ids}", ss["Heading3"]),
                 image(pair_figure(rgb, shape, src, tgt), 470, 240),
                 para("The two ends are identical up to the last save, edges included, far more so than "
                      "this scan's repeated glyphs are (q against the same-content null below): one was "
                      "copied from the other inside this scan. Which end is the original is not decided.",
                      ss["Small"]),
                 table(pair_rows(src, tgt, records), [250, 220], header=False)]
        if layer is not None and layer.experimental:
            block.append(para(f"Experimental layer: {layer.experimental}.", ss["Small"]))
        story += [Spacer(1, 10), KeepTogether(block)]
    return story


__all__ = ["pair_figure", "pair_rows", "pair_sections", "pairs_of", "record_row"]
