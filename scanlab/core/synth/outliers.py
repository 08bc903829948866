"""Outlier windows for training the "other scanner" output: scanners no lab owns.

``scanlab train`` teaches every model one extra output, "none of my scanners", by
outlier exposure (:mod:`scanlab.core.training.other`). Its negatives are 64x64
windows of virtual scanner designs drawn from the bank generator under bank names
of their own (:data:`OUTLIER_BANK`; never a bank a benchmark uses as its unseen
scanners, such as ``elsewhere``).

Windows drawn from one generator's parameter ranges teach "not these designs" more
than "not these scanners", so half the designs are pushed *outside* the bank's ranges
(stronger misregistration, blur, noise, banding and firmware processing, other JPEG
qualities) and the rendered scans then go, each with its own probability, through
things a bank scanner never does: a camera-like pipeline (Bayer mosaic, bilinear
demosaicking, sensor noise), heavy sharpening or smoothing, resampling, JPEG
re-compression and additive noise. Resampling and re-compression are also what a
questioned scan of a *known* scanner goes through on its way to the lab, so the
training applies them to the known windows too and the
extra output cannot learn "re-compressed means other" (:mod:`scanlab.core.io.delivery`).

Everything is seeded by (bank name, seed, design index): the same arguments give the
same windows, which is what lets the per-user cache (``services.outlier_cache``) key
them by name, seed and :data:`GENERATOR_VERSION`.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from scanlab.core.engine.network import PATCH
from scanlab.core.io.delivery import jpeg_again, resample
from scanlab.core.jobs import CancelToken, ProgressFn, check, report
from scanlab.core.synth.bank import synth_scan
from scanlab.core.synth.dsp import gaussian_blur, rng_for
from scanlab.core.synth.scanner import ScannerDesign, decode, design

# Bump whenever the windows for the same arguments would change (new transforms,
# other ranges, another scan size): the cache key includes it.
GENERATOR_VERSION = 1
OUTLIER_BANK = "oe-lab"  # bank names a benchmark's unseen scanners never use
RENDER_SIZE = 160  # side of each rendered outlier scan (px): 0.06 s per design here


def widen_design(d: ScannerDesign, rng: np.random.Generator) -> ScannerDesign:
    """The design with its traits pushed beyond the bank's ranges (each trait with probability 1/2)."""
    def maybe(v: float, lo: float, hi: float) -> float:
        return float(rng.uniform(lo, hi)) if rng.random() < 0.5 else v

    mis = float(rng.uniform(1.0, 2.5)) * (1 if rng.random() < 0.5 else -1)
    fmt = ("jpeg", "png", "tiff")[int(rng.integers(0, 3))]
    return replace(
        d,
        line_offsets=tuple(v * mis for v in d.line_offsets) if rng.random() < 0.5 else d.line_offsets,
        blur_rows=maybe(d.blur_rows, 0.15, 2.2),
        blur_cols=maybe(d.blur_cols, 0.15, 2.2),
        read_noise=maybe(d.read_noise, 0.5, 80.0),
        full_well=float(np.exp(maybe(float(np.log(d.full_well)), np.log(800.0), np.log(2e5)))),
        prnu=maybe(d.prnu, 0.0005, 0.03),
        band_amplitude=maybe(d.band_amplitude, 0.0, 0.8),
        band_period=maybe(d.band_period, 2.5, 80.0),
        gamma=maybe(d.gamma, 1.7, 2.8),
        firmware_amount=maybe(d.firmware_amount, 0.0, 1.8) if d.firmware != "none" else 0.0,
        format=fmt,
        jpeg_quality=int(rng.integers(55, 100)),
        subsampling=int(rng.integers(0, 3)),
    )


def camera_like(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A camera's traces instead of a scanner's: RGGB mosaic, bilinear demosaicking, sensor noise."""
    x = img.astype(np.float32) / 255.0
    x = x + rng.normal(0, rng.uniform(0.003, 0.02), x.shape).astype(np.float32) * np.sqrt(np.maximum(x, 1e-3))
    h, w = x.shape[:2]
    mask = np.zeros((h, w, 3), np.float32)
    mask[0::2, 0::2, 0] = 1
    mask[0::2, 1::2, 1] = 1
    mask[1::2, 0::2, 1] = 1
    mask[1::2, 1::2, 2] = 1
    k = np.array([0.5, 1.0, 0.5], np.float32)
    k2 = np.outer(k, k)
    out = np.empty_like(x)
    for c in range(3):  # normalised convolution: the bilinear interpolation of each colour's samples
        num = _conv3(x[:, :, c] * mask[:, :, c], k2)
        den = _conv3(mask[:, :, c], k2)
        out[:, :, c] = num / np.maximum(den, 1e-6)
    return np.clip(np.rint(out * 255), 0, 255).astype(np.uint8)


def _conv3(a: np.ndarray, k: np.ndarray) -> np.ndarray:
    p = np.pad(a, 1, mode="reflect")
    h, w = a.shape
    return sum(k[i, j] * p[i : i + h, j : j + w] for i in range(3) for j in range(3))


def heavy_processing(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Strong sharpening or smoothing (office-copier and phone-app style processing)."""
    x = img.astype(np.float32) / 255.0
    r = float(rng.uniform(0.6, 2.5))
    soft = gaussian_blur(x, r, r)
    amt = float(rng.uniform(0.8, 2.5))
    x = x + amt * (x - soft) if rng.random() < 0.6 else soft
    return np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)


def _beyond(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Transformations no bank scanner applies (each with its own probability), then the delivery chain."""
    if rng.random() < 0.2:
        img = camera_like(img, rng)
    if rng.random() < 0.2:
        img = heavy_processing(img, rng)
    if rng.random() < 0.15:
        noisy = img.astype(np.float32) + rng.normal(0, rng.uniform(1.0, 6.0), img.shape)
        img = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    if rng.random() < 0.3:
        img = resample(img, rng, 0.55, 1.6)
    if rng.random() < 0.3:
        img = jpeg_again(img, rng, 45, 97)
    return img


def outlier_windows(
    *,
    n_designs: int = 400,
    windows_per_design: int = 8,
    seed: int = 0,
    bank_name: str = OUTLIER_BANK,
    cancel: CancelToken | None = None,
    progress: ProgressFn | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Render the outlier windows.

    Parameters
    ----------
    n_designs : int
        Virtual scanner designs (design ``i`` of bank ``bank_name``; one scan each).
    windows_per_design : int
        Random 64x64 windows cut from each scan.
    seed : int
        Content, widening and window positions.
    bank_name : str
        The designs' bank: never the name of a bank used as unseen scanners.

    Returns
    -------
    (windows, design_ids)
        uint8 (n_designs * windows_per_design, 64, 64, 3) and the design index of each window.
    """
    out = np.empty((n_designs * windows_per_design, PATCH, PATCH, 3), np.uint8)
    ids = np.repeat(np.arange(n_designs), windows_per_design)
    for i in range(n_designs):
        check(cancel)
        rng = rng_for("scanlab-outliers", bank_name, seed, i)
        d = design(bank_name, i)
        if i % 2:
            d = widen_design(d, rng)
        s = synth_scan(d, 0, seed=seed, size=RENDER_SIZE, purpose="outliers")
        img = decode(s.data)
        img = _beyond(img, rng)
        h, w = img.shape[:2]
        for k in range(windows_per_design):
            y, x = int(rng.integers(0, h - PATCH + 1)), int(rng.integers(0, w - PATCH + 1))
            out[i * windows_per_design + k] = img[y : y + PATCH, x : x + PATCH]
        report(progress, i + 1, n_designs)
    return out, ids
