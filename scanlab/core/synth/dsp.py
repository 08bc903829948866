"""Small numpy signal-processing helpers for the scanner simulator.

Only numpy: the simulator must run wherever ScanLab runs, and these few separable
filters are cheap at scan sizes (a 768x768 RGB scan takes milliseconds each).
Arrays are float32, (H, W) or (H, W, C), rows first.
"""

from __future__ import annotations

import hashlib

import numpy as np


def stable_seed(*parts: object) -> int:
    """A 64-bit seed derived from ``parts`` by SHA-256.

    Python's ``hash()`` is salted per process, so seeds that must identify a
    scanner across runs and machines come from a cryptographic hash instead.
    """
    text = "\x1f".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little")


def rng_for(*parts: object) -> np.random.Generator:
    """A numpy Generator seeded by :func:`stable_seed` of ``parts``."""
    return np.random.default_rng(stable_seed(*parts))


def gaussian_kernel(sigma: float) -> np.ndarray:
    """Normalised 1-D Gaussian of standard deviation ``sigma`` (radius 3 sigma, >= 1)."""
    if sigma <= 1e-3:
        return np.ones(1, dtype=np.float32)
    r = max(1, int(np.ceil(3.0 * sigma)))
    x = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).astype(np.float32)


def convolve_axis(img: np.ndarray, kernel: np.ndarray, axis: int) -> np.ndarray:
    """Correlate ``img`` with a 1-D odd-length ``kernel`` along ``axis`` (reflect borders)."""
    k = np.asarray(kernel, dtype=np.float32)
    r = len(k) // 2
    if r == 0:
        return img.astype(np.float32, copy=True) * k[0]
    pad = [(0, 0)] * img.ndim
    pad[axis] = (r, r)
    p = np.pad(img.astype(np.float32, copy=False), pad, mode="reflect")
    n = img.shape[axis]
    out = np.zeros(img.shape, dtype=np.float32)
    for i, w in enumerate(k):
        out += w * np.take(p, np.arange(i, i + n), axis=axis)
    return out


def gaussian_blur(img: np.ndarray, sigma_rows: float, sigma_cols: float) -> np.ndarray:
    """Anisotropic separable Gaussian blur (different spread down rows and along columns)."""
    out = convolve_axis(img, gaussian_kernel(sigma_rows), axis=0)
    return convolve_axis(out, gaussian_kernel(sigma_cols), axis=1)


def _cubic_weights(t: np.ndarray, a: float) -> tuple[np.ndarray, ...]:
    """Keys cubic-convolution weights for taps -1, 0, 1, 2 at fractional offset ``t``."""

    def w(x: np.ndarray) -> np.ndarray:
        x = np.abs(x)
        return np.where(
            x <= 1,
            (a + 2) * x**3 - (a + 3) * x**2 + 1,
            np.where(x < 2, a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a, 0.0),
        )

    return w(t + 1), w(t), w(1 - t), w(2 - t)


def resample_axis(img: np.ndarray, pos: np.ndarray, axis: int, kind: str = "linear", a: float = -0.5) -> np.ndarray:
    """Sample ``img`` at fractional positions ``pos`` along ``axis``.

    Parameters
    ----------
    img : ndarray
        (H, W) float array.
    pos : ndarray
        Positions (in pixels of ``img``) of each output line; its length is the
        output length along ``axis``. Positions are clamped to the image.
    axis : int
        0 resamples rows (scan direction), 1 resamples columns.
    kind : {"linear", "cubic"}
        Linear interpolation blurs by an amount that depends on the fractional
        part of each position; Keys cubic (parameter ``a``) sharpens slightly.
        Which one a scanner's firmware uses is one of its traits.
    """
    src = np.moveaxis(img, axis, 0)
    n = src.shape[0]
    p = np.clip(np.asarray(pos, dtype=np.float64), 0.0, n - 1.0)
    i0 = np.floor(p).astype(np.int64)
    t = (p - i0).astype(np.float32)
    shape = (-1,) + (1,) * (src.ndim - 1)
    if kind == "linear":
        i1 = np.minimum(i0 + 1, n - 1)
        out = src[i0] * (1 - t).reshape(shape) + src[i1] * t.reshape(shape)
    elif kind == "cubic":
        ws = _cubic_weights(t.astype(np.float64), a)
        out = np.zeros((len(p),) + src.shape[1:], dtype=np.float32)
        for off, wt in zip((-1, 0, 1, 2), ws, strict=True):
            idx = np.clip(i0 + off, 0, n - 1)
            out += src[idx] * wt.astype(np.float32).reshape(shape)
    else:
        raise ValueError(f"unknown interpolation {kind!r}")
    return np.moveaxis(out.astype(np.float32, copy=False), 0, axis)


def ar1(n: int, rho: float, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """An AR(1) sequence ``x[i] = rho * x[i-1] + sigma * e[i]`` (stationary start)."""
    e = rng.standard_normal(n) * sigma
    x = np.empty(n, dtype=np.float64)
    x[0] = e[0] / np.sqrt(max(1e-9, 1 - rho * rho))
    for i in range(1, n):
        x[i] = rho * x[i - 1] + e[i]
    return x


def srgb_to_linear(v: np.ndarray) -> np.ndarray:
    """sRGB-encoded values in [0, 1] to linear reflectance (the print the scanner sees)."""
    v = np.clip(v, 0.0, 1.0)
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4).astype(np.float32)
