"""Forgeries with exact masks: splices from other scanners and self copy-moves.

A forgery starts from a *host* scan exactly as its scanner saved it (decoded from
the host's file format). A **splice** pastes one or two regions cut from scans made
by other scanners of the bank (each donor scan decoded from its own format); a
**copy-move** copies a region of the host scan to another, non-overlapping place
in the same scan. The forger then saves the result once in the host scanner's
output format, as a real forger re-saving the file would.

The mask (255 = forged) is exactly the set of pasted pixels. Where the host format
is lossless, every unmasked pixel of the forged file equals the host scan.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from scanlab.core.errors import ScanLabError
from scanlab.core.jobs import CancelToken, ProgressFn, check, report
from scanlab.core.synth.bank import (
    DEFAULT_UNITS,
    check_size,
    prepare_output,
    synth_scan,
    write_atomic,
)
from scanlab.core.synth.dsp import rng_for
from scanlab.core.synth.scanner import bank, decode, encode

KINDS = ("splice", "copymove")
COPY_STYLES = ("region", "digit", "word", "stamp", "blank", "doc")


@dataclass
class Forgery:
    """One forged scan with its mask and description."""

    data: bytes  # forged file bytes in the host's format
    extension: str
    mask: np.ndarray  # bool (H, W), True = forged
    host_pixels: np.ndarray  # the host scan as saved by its scanner, before forging
    forged_pixels: np.ndarray  # the forged pixels before the final re-save
    record: dict


def region_mask(h: int, w: int, rh: int, rw: int, y0: int, x0: int, shape: str, rng: np.random.Generator) -> np.ndarray:
    """A boolean (h, w) mask of a rectangle, ellipse or polygon inside the box (y0, x0, rh, rw)."""
    m = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(m)
    if shape == "rect":
        draw.rectangle([x0, y0, x0 + rw - 1, y0 + rh - 1], fill=255)
    elif shape == "ellipse":
        draw.ellipse([x0, y0, x0 + rw - 1, y0 + rh - 1], fill=255)
    else:  # a star-shaped polygon: irregular like a hand-drawn lasso selection
        n = int(rng.integers(5, 10))
        # evenly spread vertex angles with jitter: an irregular but compact outline
        ang = (np.arange(n) + rng.uniform(-0.3, 0.3, n)) * (2 * np.pi / n)
        rad = rng.uniform(0.6, 1.0, n)
        cy, cx = y0 + (rh - 1) / 2, x0 + (rw - 1) / 2
        pts = [(cx + (rw - 1) / 2 * r * np.cos(a), cy + (rh - 1) / 2 * r * np.sin(a)) for a, r in zip(ang, rad, strict=True)]
        draw.polygon(pts, fill=255)
    return np.asarray(m) > 0


def _box(h: int, w: int, rng: np.random.Generator) -> tuple[int, int]:
    """A region size: a quarter to ~45% of each side."""
    rh = int(rng.integers(max(16, h // 4), max(17, int(h * 0.45)) + 1))
    rw = int(rng.integers(max(16, w // 4), max(17, int(w * 0.45)) + 1))
    return min(rh, h), min(rw, w)


def _place(h: int, w: int, rh: int, rw: int, rng: np.random.Generator, taken: np.ndarray | None) -> tuple[int, int] | None:
    """A random corner for an rh x rw box whose bounding box avoids ``taken`` (None after 100 tries)."""
    for _ in range(100):
        y0 = int(rng.integers(0, h - rh + 1))
        x0 = int(rng.integers(0, w - rw + 1))
        if taken is None or not taken[y0 : y0 + rh, x0 : x0 + rw].any():
            return y0, x0
    return None


def forge_one(
    k: int,
    kind: str,
    *,
    bank_name: str = "default",
    seed: int = 0,
    size: int = 768,
    n_scanners: int = 10,
    host_index: int | None = None,
    donor_index: int | None = None,
    units: int = DEFAULT_UNITS,
) -> Forgery:
    """Make forgery number ``k`` of ``kind`` ("splice" or "copymove").

    Host and donor scanners are drawn from the first ``n_scanners`` of the bank
    unless given. Everything is determined by (bank, seed, kind, k).
    """
    if kind not in KINDS:
        raise ScanLabError(f"--kind {kind!r}: expected one of {', '.join(KINDS)}")
    if n_scanners < (2 if kind == "splice" else 1):
        raise ScanLabError(f"a {kind} needs at least {2 if kind == 'splice' else 1} scanners in the bank")
    check_size(size)
    rng = rng_for("scanlab-forge", bank_name, seed, kind, k)
    designs = bank(bank_name, n_scanners)
    hi = int(rng.integers(0, n_scanners)) if host_index is None else host_index
    host = designs[hi]
    hscan = synth_scan(host, k, seed=seed, size=size, units=units, purpose=f"forge-host-{kind}")
    host_px = decode(hscan.data)  # the scan as its scanner saved it
    h, w = host_px.shape[:2]
    forged = host_px.copy()
    mask = np.zeros((h, w), dtype=bool)
    regions = []
    n_regions = 2 if (kind == "splice" and n_scanners > 2 and rng.random() < 0.3) else 1
    for r in range(n_regions):
        shape = str(rng.choice(["rect", "ellipse", "polygon"]))
        rh, rw = _box(h, w, rng)
        if kind == "splice":
            others = [i for i in range(n_scanners) if i != hi]
            di = donor_index if (donor_index is not None and r == 0) else int(rng.choice(others))
            donor = designs[di]
            dscan = synth_scan(donor, k * 4 + r, seed=seed, size=size, units=units, purpose="forge-donor")
            src_px = decode(dscan.data)
            sy, sx = int(rng.integers(0, h - rh + 1)), int(rng.integers(0, w - rw + 1))
            source = donor.name
        else:
            src_px = host_px
            source = host.name
        # target box: no overlap with earlier regions, and for a copy-move not with its
        # source box (a centred source can leave no room, so the source is redrawn)
        target = None
        for _ in range(50):
            if kind == "copymove":
                sy, sx = int(rng.integers(0, h - rh + 1)), int(rng.integers(0, w - rw + 1))
            taken = mask.copy()
            if kind == "copymove":
                taken[sy : sy + rh, sx : sx + rw] = True
            target = _place(h, w, rh, rw, rng, taken)
            if target is not None or kind == "splice":
                break
        if target is None:
            if regions:  # no room for a second region: keep the forgery with one
                break
            raise ScanLabError(f"could not place a {rh}x{rw} forged region in a {h}x{w} scan")
        ty, tx = target
        m = region_mask(h, w, rh, rw, ty, tx, shape, rng)
        # shift the source so its box lands on the target box, then paste through the mask
        shifted = np.zeros_like(forged)
        shifted[ty : ty + rh, tx : tx + rw] = src_px[sy : sy + rh, sx : sx + rw]
        forged[m] = shifted[m]
        mask |= m
        regions.append(
            {
                "shape": shape,
                "source_scanner": source,
                "source_box": [sy, sx, rh, rw],
                "target_box": [ty, tx, rh, rw],
                "area": int(m.sum()),
            }
        )
    data = encode(forged, host)
    record = {
        "kind": kind,
        "host_scanner": host.name,
        "host_unit": hscan.serial,
        "source_scanners": sorted({reg["source_scanner"] for reg in regions}),
        "regions": regions,
        "forged_fraction": float(mask.mean()),
        "format": host.format,
        "jpeg_quality": host.jpeg_quality if host.format == "jpeg" else None,
        "size": [h, w],
    }
    return Forgery(data, host.extension, mask, host_px, forged, record)


def write_forgeries(
    out: str | os.PathLike,
    n: int,
    kind: str,
    *,
    seed: int = 0,
    bank_name: str = "default",
    size: int = 768,
    n_scanners: int = 10,
    force: bool = False,
    copy: str = "region",
    cancel: CancelToken | None = None,
    progress: ProgressFn | None = None,
) -> list[dict]:
    """Write ``n`` forgeries to ``out/images``, masks to ``out/masks`` and ``out/manifest.json``.

    ``copy`` (copy-moves only): ``region`` (a large region of any page, the host's
    format), or document forgeries (:mod:`scanlab.core.synth.docforge`): ``digit``,
    ``word``, ``stamp``, ``blank``, or ``doc`` (the four in turn); these also write
    ``masks/<stem>_source.png`` and name it ``source_mask`` in the manifest.

    Returns
    -------
    list of dict
        The manifest: one object per forgery with ``image`` and ``mask`` (paths
        relative to ``out``), ``kind``, ``host_scanner``, ``source_scanners``,
        ``regions`` and format details.
    """
    if n < 1:
        raise ScanLabError(f"--n {n}: need at least 1 forgery")
    if kind not in KINDS:
        raise ScanLabError(f"--kind {kind!r}: expected one of {', '.join(KINDS)}")
    check_size(size)
    if copy != "region" and kind != "copymove":
        raise ScanLabError(f"--copy {copy}: only for --kind copymove")
    if copy not in COPY_STYLES:
        raise ScanLabError(f"--copy {copy!r}: expected one of {', '.join(COPY_STYLES)}")
    root = prepare_output(out, force)
    (root / "images").mkdir(exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    manifest: list[dict] = []
    report(progress, 0, n)
    for k in range(n):
        check(cancel)
        if copy != "region":
            manifest.append(_write_doc(root, k, copy, bank_name=bank_name, seed=seed, size=size, n_scanners=n_scanners))
            report(progress, k + 1, n)
            continue
        f = forge_one(k, kind, bank_name=bank_name, seed=seed, size=size, n_scanners=n_scanners)
        stem = f"{kind}_{k:04d}"
        img_rel = f"images/{stem}{f.extension}"
        mask_rel = f"masks/{stem}_mask.png"
        write_atomic(root / img_rel, f.data)
        write_atomic(root / mask_rel, mask_png(f.mask))
        manifest.append({"image": img_rel, "mask": mask_rel, "bank": bank_name, "seed": seed, **f.record})
        report(progress, k + 1, n)
    write_atomic(root / "manifest.json", json.dumps(manifest, indent=1).encode())
    return manifest


def _write_doc(root: Path, k: int, copy: str, **kw: object) -> dict:
    """One document copy-move (image, target and source masks); its manifest entry."""
    from scanlab.core.synth.docforge import doc_scan, doc_style_for

    style = doc_style_for(k, copy)
    f = doc_scan(k, style, **kw)  # type: ignore[arg-type]
    stem = f"copymove_{style}_{k:04d}"
    rel = {"image": f"images/{stem}.jpg", "mask": f"masks/{stem}_mask.png", "source_mask": f"masks/{stem}_source.png"}
    write_atomic(root / rel["image"], f.data)
    write_atomic(root / rel["mask"], mask_png(f.target))
    write_atomic(root / rel["source_mask"], mask_png(f.source))
    return {**rel, "bank": kw["bank_name"], "seed": kw["seed"], **f.record}


def mask_png(mask: np.ndarray) -> bytes:
    """A boolean mask as 8-bit PNG bytes (255 = forged)."""
    buf = io.BytesIO()
    Image.fromarray(np.where(mask, 255, 0).astype(np.uint8), "L").save(buf, "PNG")
    return buf.getvalue()


def read_manifest(folder: str | os.PathLike) -> list[dict]:
    """Read ``manifest.json`` of a forgery folder."""
    p = Path(folder) / "manifest.json"
    if not p.is_file():
        raise ScanLabError(f"{p}: no forgery manifest")
    return json.loads(p.read_text())
