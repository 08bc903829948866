"""What happens to a scan between the scanner and the lab: resampling and JPEG re-compression.

Used by training (the known windows of outlier exposure, :mod:`scanlab.core.training.other`)
and by the outlier generator (:mod:`scanlab.core.synth.outliers`): both sides see the
same transformations, so a model cannot learn "re-compressed means another scanner".
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from scanlab.core.io.imaging import as_uint8

PATCH = 64  # never resample below one analysis window
MARGIN = PATCH // 4  # crop beyond a training patch on each side, so that resampling and JPEG see context
_FILTERS = (Image.Resampling.BICUBIC, Image.Resampling.BILINEAR, Image.Resampling.BOX, Image.Resampling.LANCZOS)


def jpeg_again(img: np.ndarray, rng: np.random.Generator, lo: int = 60, hi: int = 98) -> np.ndarray:
    """Re-compress uint8 (H, W, 3) as JPEG at a random quality in [lo, hi], 4:4:4 or 4:2:0."""
    buf = io.BytesIO()
    Image.fromarray(img, "RGB").save(buf, "JPEG", quality=int(rng.integers(lo, hi + 1)),
                                     subsampling=int(rng.choice([0, 2])))
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


def resample(img: np.ndarray, rng: np.random.Generator, lo: float = 0.7, hi: float = 1.3) -> np.ndarray:
    """Resize uint8 (H, W, 3) by a random factor in [lo, hi] with a random filter (at least 64 px)."""
    f = float(rng.uniform(lo, hi))
    h, w = img.shape[:2]
    size = (max(PATCH, round(w * f)), max(PATCH, round(h * f)))
    return np.asarray(Image.fromarray(img, "RGB").resize(size, _FILTERS[int(rng.integers(0, len(_FILTERS)))]))


def delivery_chain(img: np.ndarray, rng: np.random.Generator, p: float = 0.25) -> np.ndarray:
    """Each with probability ``p``: resampling 0.7-1.3, then JPEG re-compression at quality 60-98."""
    if rng.random() < p:
        img = resample(img, rng)
    if rng.random() < p:
        img = jpeg_again(img, rng)
    return img


def tone(img: np.ndarray, rng: np.random.Generator, gamma: tuple[float, float] = (0.8, 1.25),
         contrast: tuple[float, float] = (0.85, 1.15)) -> np.ndarray:
    """Mild gamma and contrast change of uint8 (H, W, 3), as a viewer's "auto levels" or a copier does."""
    g = float(np.exp(rng.uniform(np.log(gamma[0]), np.log(gamma[1]))))
    c = float(rng.uniform(*contrast))
    lut = np.arange(256, dtype=np.float32) / 255.0
    lut = np.clip((lut**g - 0.5) * c + 0.5, 0.0, 1.0)
    return np.rint(lut * 255.0).astype(np.uint8)[img]


def delivered(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
    """One random path a scan takes to the lab: some of tone, resampling, JPEG re-compression.

    Tone change (probability 0.3, gamma 0.8-1.25 and contrast 0.85-1.15), resampling
    (0.5, x0.7-1.3 with a random filter) and JPEG re-compression (0.7, quality 60-98,
    4:4:4 or 4:2:0), in that order (a document system re-encodes last); at least one of
    them is always applied. Returns the pixels and the steps taken, for the record.
    """
    steps = [name for name, p in (("tone", 0.3), ("resample", 0.5), ("jpeg", 0.7)) if rng.random() < p]
    if not steps:
        steps = ["jpeg"]
    if "tone" in steps:
        img = tone(img, rng)
    if "resample" in steps:
        img = resample(img, rng)
    if "jpeg" in steps:
        img = jpeg_again(img, rng)
    return img, steps


def delivered_patch(img: np.ndarray, r: int, c: int, rng: np.random.Generator) -> np.ndarray:
    """The 64x64 training patch at (r, c) of ``img`` as it looks after one random delivery path.

    A crop of up to ``PATCH + 2 * MARGIN`` pixels around the patch goes through
    :func:`delivered` (as 8-bit: a questioned JPEG is 8-bit), so the JPEG grid falls at
    any phase of the patch and a resampled patch is as sharp as one cut from a
    resampled scan; the patch is then cut where the original one went (uint8 (64, 64, 3)).
    """
    h, w = img.shape[:2]
    side_y, side_x = min(h, PATCH + 2 * MARGIN), min(w, PATCH + 2 * MARGIN)
    y0 = min(max(0, r - MARGIN), h - side_y)
    x0 = min(max(0, c - MARGIN), w - side_x)
    crop = as_uint8(np.array(img[y0 : y0 + side_y, x0 : x0 + side_x]))
    out, _ = delivered(crop, rng)
    fy, fx = out.shape[0] / side_y, out.shape[1] / side_x
    yy = min(max(0, round((r - y0) * fy)), out.shape[0] - PATCH)
    xx = min(max(0, round((c - x0) * fx)), out.shape[1] - PATCH)
    return np.ascontiguousarray(out[yy : yy + PATCH, xx : xx + PATCH])
