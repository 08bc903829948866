"""Tiny synthetic folder-per-scanner trees for tests (no download, deterministic).

Three "scanners" differ only by a faint per-column gain pattern (a few percent,
periodic along the row with a class-specific period), applied to smooth random
content: invisible to the eye, learnable from any 64x64 patch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

PERIODS = (2, 3, 5, 7)


def content(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Smooth random RGB content in [0, 1] (low-frequency noise plus a few boxes)."""
    small = rng.random((h // 16 + 2, w // 16 + 2, 3))
    img = np.asarray(
        Image.fromarray((small * 255).astype(np.uint8)).resize((w + 32, h + 32), Image.BICUBIC), dtype=np.float64
    )[:h, :w] / 255.0
    for _ in range(3):
        y, x = rng.integers(0, h - 8), rng.integers(0, w - 8)
        img[y : y + rng.integers(4, h // 3), x : x + rng.integers(4, w // 3)] = rng.random(3)
    return 0.15 + 0.7 * img


def scan(cls: int, rng: np.random.Generator, h: int, w: int, amplitude: float = 0.04) -> np.ndarray:
    """Content 'scanned' by scanner ``cls``: uint8 (h, w, 3)."""
    x = np.arange(w)
    gain = 1.0 + amplitude * np.cos(2 * np.pi * x / PERIODS[cls])
    img = content(rng, h, w) * gain[None, :, None] + rng.normal(0, 0.004, (h, w, 3))
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def make_tree(root: Path, n_classes: int = 3, n_images: int = 10, size: int = 192, seed: int = 0) -> Path:
    """Write ``root/scanner_k/img_i.png`` and return ``root``."""
    rng = np.random.default_rng(seed)
    for c in range(n_classes):
        d = root / f"scanner_{c}"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n_images):
            Image.fromarray(scan(c, rng, size, size + 16 * (i % 3))).save(d / f"img_{i:02d}.png")
    return root
