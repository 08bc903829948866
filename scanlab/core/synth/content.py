"""Content for virtual scans: real photographs and rendered document pages.

Nothing is downloaded. Photographs come from files that ship *inside* the
scikit-image wheel (``skimage/data/*.png|jpg``; read with Pillow, skimage is never
imported and its pooch downloader never runs) and, on request, from extra folders
such as ``../shared/data/real_scans``. Document pages are rendered with Pillow:
paragraphs in several type styles and sizes, tables, and halftoned pictures.

Fonts: Pillow's built-in scalable font (``ImageFont.load_default(size)``) and its
bitmap font, varied by weight (stroke), slant (shear) and width (horizontal scale).
System or matplotlib fonts are deliberately *not* used: the same bank and seed
must give the same bytes on every machine with the same Pillow.

Every page is a float32 (H, W, 3) array of *linear reflectance* in [0, 1].
"""

from __future__ import annotations

import importlib.util
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from scanlab.core.errors import ScanLabError
from scanlab.core.io.imaging import find_images
from scanlab.core.synth.dsp import gaussian_blur, srgb_to_linear

# Real photographs in the scikit-image wheel (name -> shipped file). Synthetic test
# patterns (chessboard, phantom, logo, ...) are left out on purpose.
_SKIMAGE_PHOTOS = (
    "astronaut.png",
    "brick.png",
    "camera.png",
    "cell.png",
    "chelsea.png",
    "coffee.png",
    "coins.png",
    "grass.png",
    "gravel.png",
    "hubble_deep_field.jpg",
    "ihc.png",
    "moon.png",
    "motorcycle_left.png",
    "retina.jpg",
    "rocket.jpg",
    "page.png",
    "text.png",
)

_WORDS = (
    "the scanner of record was examined under controlled conditions and its output "
    "compared against reference samples drawn from the archive all pages were "
    "digitised at native resolution without further processing invoice number "
    "date amount total balance due account reference payment received signature "
    "witness statement exhibit section paragraph article clause agreement parties "
    "hereby agree following terms conditions shall remain effect until terminated "
    "notice writing delivered registered address laboratory report sample analysis "
    "result method instrument calibration uncertainty measurement traceable standard"
).split()


def _skimage_data_dir() -> Path | None:
    spec = importlib.util.find_spec("skimage")
    if spec is None or spec.origin is None:
        return None
    d = Path(spec.origin).parent / "data"
    return d if d.is_dir() else None


def require_photographs(command: str = "scanlab synth") -> None:
    """Raise a one-line error when the scikit-image photographs are not installed.

    The bank's content depends on them: without them a bank would silently differ
    from the documented one (same seed, other bytes), so the commands refuse instead.

    Raises
    ------
    ScanLabError
        scikit-image (the ``scanlab[synth]`` extra) is not installed.
    """
    d = _skimage_data_dir()
    if d is None or not any((d / n).is_file() for n in _SKIMAGE_PHOTOS):
        raise ScanLabError(
            f"scikit-image photographs: not installed; {command} needs them: "
            "pip install 'scanlab[synth]' (the desktop bundle leaves them out)"
        )


@lru_cache(maxsize=1)
def photo_paths(extra: tuple[str, ...] = ()) -> tuple[Path, ...]:
    """Photographs available as content: skimage's shipped files plus ``extra`` folders."""
    out: list[Path] = []
    d = _skimage_data_dir()
    if d is not None:
        out += [d / n for n in _SKIMAGE_PHOTOS if (d / n).is_file()]
    for folder in extra:
        if os.path.isdir(folder):
            out += find_images(folder)
    return tuple(out)


@lru_cache(maxsize=64)
def _load_photo(path: str) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def _scaled_crop(src: np.ndarray, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A random crop of ``src`` at a random scale, flipped/rotated, resized to (h, w); uint8."""
    k = int(rng.integers(0, 4))
    src = np.rot90(src, k)
    if rng.random() < 0.5:
        src = src[:, ::-1]
    sh, sw = src.shape[:2]
    # scale: the crop covers between 35% and 100% of the largest fitting window
    fit = min(sh / h, sw / w)
    f = fit * rng.uniform(0.35, 1.0)
    ch, cw = max(8, int(h * f)), max(8, int(w * f))
    y0 = int(rng.integers(0, sh - ch + 1))
    x0 = int(rng.integers(0, sw - cw + 1))
    crop = Image.fromarray(np.ascontiguousarray(src[y0 : y0 + ch, x0 : x0 + cw]))
    return np.asarray(crop.resize((w, h), Image.Resampling.BICUBIC), dtype=np.uint8)


def photo_page(h: int, w: int, rng: np.random.Generator, extra: tuple[str, ...] = ()) -> np.ndarray:
    """A photographic print: a scaled, flipped crop of a shipped photograph."""
    paths = photo_paths(extra)
    if not paths:  # no photographs installed: fall back to a rendered page
        return document_page(h, w, rng)
    src = _load_photo(str(paths[int(rng.integers(0, len(paths)))]))
    img = _scaled_crop(src, h, w, rng).astype(np.float32) / 255.0
    # print contrast and paper: prints never reach full black or full white
    lo, hi = rng.uniform(0.02, 0.06), rng.uniform(0.86, 0.95)
    return lo + (hi - lo) * srgb_to_linear(img)


def _fonts(rng: np.random.Generator, size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    if rng.random() < 0.15:
        return ImageFont.load_default_imagefont()  # the bitmap font: a typewriter-like face
    return ImageFont.load_default(size)


def _text_block(w: int, rng: np.random.Generator) -> Image.Image:
    """A paragraph in one random type style, as an 8-bit ink mask (255 = ink)."""
    size = int(rng.integers(9, 30))
    font = _fonts(rng, size)
    stroke = int(rng.random() < 0.25)  # bold
    shear = rng.uniform(0.15, 0.3) if rng.random() < 0.2 else 0.0  # oblique
    stretch = rng.uniform(0.8, 1.25)  # condensed .. expanded
    line_h = int(size * rng.uniform(1.15, 1.6)) + 2
    n_lines = int(rng.integers(2, 9))
    width = max(64, int(w / stretch))
    canvas = Image.new("L", (width, line_h * n_lines + 4), 0)
    draw = ImageDraw.Draw(canvas)
    for li in range(n_lines):
        words = [str(_WORDS[int(rng.integers(0, len(_WORDS)))]) for _ in range(int(rng.integers(4, 30)))]
        if li == 0 and rng.random() < 0.3:
            words[0] = words[0].capitalize()
        line = " ".join(words)
        draw.text((2, 2 + li * line_h), line, fill=255, font=font, stroke_width=stroke, stroke_fill=255)
    if shear:
        canvas = canvas.transform(canvas.size, Image.Transform.AFFINE, (1, shear, -shear * canvas.height / 2, 0, 1, 0))
    return canvas.resize((w, canvas.height), Image.Resampling.BILINEAR)


def _table(w: int, rng: np.random.Generator) -> Image.Image:
    """A ruled table of numbers as an ink mask."""
    rows, cols = int(rng.integers(3, 10)), int(rng.integers(2, 7))
    rh = int(rng.integers(14, 30))
    cw = max(20, (w - 8) // cols)
    font = ImageFont.load_default(int(rh * 0.6))
    img = Image.new("L", (w, rows * rh + 6), 0)
    draw = ImageDraw.Draw(img)
    lw = int(rng.integers(1, 3))
    for r in range(rows + 1):
        draw.line([(2, 2 + r * rh), (2 + cols * cw, 2 + r * rh)], fill=255, width=lw)
    for c in range(cols + 1):
        draw.line([(2 + c * cw, 2), (2 + c * cw, 2 + rows * rh)], fill=255, width=lw)
    for r in range(rows):
        for c in range(cols):
            txt = f"{rng.uniform(0, 10 ** rng.integers(1, 6)):.{int(rng.integers(0, 3))}f}"
            draw.text((6 + c * cw, 2 + r * rh + rh * 0.15), txt, fill=255, font=font)
    return img


def halftone(gray: np.ndarray, rng: np.random.Generator, period: float | None = None, angle: float | None = None) -> np.ndarray:
    """Clustered-dot halftone of ``gray`` (ink coverage in [0, 1]); returns 0/1 ink."""
    h, w = gray.shape
    p = period if period is not None else rng.uniform(3.0, 7.0)
    a = np.deg2rad(angle if angle is not None else rng.choice([0.0, 15.0, 45.0, 75.0]))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    u = xx * np.cos(a) + yy * np.sin(a)
    v = -xx * np.sin(a) + yy * np.cos(a)
    screen = 0.5 + 0.25 * (np.cos(2 * np.pi * u / p) + np.cos(2 * np.pi * v / p))
    return (gray > screen).astype(np.float32)


def _halftone_picture(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A halftoned picture (CMY dots at screen angles, or grey dots): reflectance (h, w, 3)."""
    paths = photo_paths()
    if paths:
        src = _load_photo(str(paths[int(rng.integers(0, len(paths)))]))
        pic = _scaled_crop(src, h, w, rng).astype(np.float32) / 255.0
    else:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        pic = np.stack([0.5 + 0.5 * np.sin(xx / rng.uniform(9, 40) + c) for c in range(3)], axis=2)
    p = rng.uniform(3.0, 6.0)
    if rng.random() < 0.5:  # colour: cyan, magenta, yellow screens at 15, 75, 0 degrees
        ink = np.stack([halftone(1.0 - pic[:, :, c], rng, p, ang) for c, ang in zip(range(3), (15.0, 75.0, 0.0), strict=True)], axis=2)
        return 1.0 - 0.85 * ink
    g = halftone(1.0 - pic.mean(axis=2), rng, p, 45.0)
    return np.repeat((1.0 - 0.9 * g)[:, :, None], 3, axis=2)


def document_page(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A section of a printed document: text, tables and halftoned pictures on paper."""
    paper = np.array([rng.uniform(0.84, 0.93)] * 3, dtype=np.float32) * rng.uniform(0.985, 1.0, 3).astype(np.float32)
    ink_colour = np.array(
        [0.03, 0.03, 0.04] if rng.random() < 0.8 else rng.uniform(0.02, 0.4, 3), dtype=np.float32
    )
    refl = np.ones((h, w, 3), dtype=np.float32)
    margin = int(rng.integers(0, max(1, w // 8)))
    y = int(rng.integers(-h // 4, h // 8))
    while y < h:
        r = rng.random()
        if r < 0.6:
            block = np.asarray(_text_block(w - 2 * margin, rng), dtype=np.float32) / 255.0
            pic = None
        elif r < 0.8:
            block = np.asarray(_table(w - 2 * margin, rng), dtype=np.float32) / 255.0
            pic = None
        else:
            ph = int(rng.integers(h // 5, h // 2 + 1))
            pw = int(rng.integers((w - 2 * margin) // 3, w - 2 * margin + 1))
            pic, block = _halftone_picture(ph, pw, rng), None
        bh = (block if block is not None else pic).shape[0]
        y0, y1 = max(0, y), min(h, y + bh)
        if y1 > y0:
            if block is not None:
                ink = block[y0 - y : y1 - y, : w - margin - margin, None]
                sl = refl[y0:y1, margin : margin + ink.shape[1]]
                sl *= 1.0 - ink * (1.0 - ink_colour)
            else:
                x0 = margin + int(rng.integers(0, max(1, w - 2 * margin - pic.shape[1] + 1)))
                part = pic[y0 - y : y1 - y, : w - x0]
                refl[y0:y1, x0 : x0 + part.shape[1]] *= part
        y += bh + int(rng.integers(6, 40))
    # paper grain and a touch of toner spread: content-level, random per page
    grain = gaussian_blur(rng.standard_normal((h, w)).astype(np.float32), 1.5, 1.5)
    refl = gaussian_blur(refl, 0.4, 0.4) * paper * (1.0 + 0.006 * grain[:, :, None])
    return np.clip(refl, 0.0, 1.0).astype(np.float32)


def make_page(h: int, w: int, rng: np.random.Generator, extra: tuple[str, ...] = (), photo_fraction: float = 0.5) -> np.ndarray:
    """Random content: a photograph (``photo_fraction`` of the time) or a document page."""
    if rng.random() < photo_fraction:
        return photo_page(h, w, rng, extra)
    return document_page(h, w, rng)
