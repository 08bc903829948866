"""One epoch's training patches: where they are drawn and how each is read.

Each epoch draws one 64x64 patch from a random position inside every non-overlapping
training sub-image (DESIGN.md section 2), seeded by ``(seed, epoch)``;
:class:`PatchDataset` reads them from the images' memory-mapped cache files and, for a
run trained with the delivery chain, passes some of them through one random delivery
path first (:func:`scanlab.core.io.delivery.delivered_patch`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset as TorchDataset

from scanlab.core.engine.network import PATCH
from scanlab.core.engine.patches import Size, grid_positions, training_patch_corners
from scanlab.core.io.delivery import delivered_patch
from scanlab.core.io.imaging import full_scale


def n_subimages(shape: tuple[int, int], sub: Size) -> int:
    """Patches one epoch draws from one image (one per sub-image)."""
    n, m = min(sub[0], shape[0]), min(sub[1], shape[1])
    return len(grid_positions(shape[0], n, n)) * len(grid_positions(shape[1], m, m))


JITTER_STEP = 8  # patch jitter moves corners by multiples of 8 px: the JPEG block grid and the network's 4-px stride


def jittered(corners: np.ndarray, shape: tuple[int, int], jitter: int, rng: np.random.Generator) -> np.ndarray:
    """Move each (row, col) corner by a random multiple of :data:`JITTER_STEP` in [-jitter, +jitter]
    per axis, clipped so the 64x64 patch stays inside the image."""
    k = jitter // JITTER_STEP
    if k <= 0 or not len(corners):
        return corners
    d = rng.integers(-k, k + 1, size=corners.shape) * JITTER_STEP
    hi = np.array([shape[0] - PATCH, shape[1] - PATCH])
    return np.clip(corners + d, 0, hi)


def epoch_corners(shapes: Sequence[tuple[int, int]], labels: Sequence[int], sub: Size, seed: int, epoch: int,
                  jitter: int = 0):
    """The patches of one epoch: (image index, row, col, label) arrays.

    One random corner inside each non-overlapping sub-image of every image (zig-zag
    order, :func:`training_patch_corners`), seeded by ``(seed, epoch)`` so a resumed run
    draws exactly the patches the uninterrupted run would have drawn. With ``jitter``
    (``TrainConfig.patch_jitter``) each corner then moves by up to that many pixels
    (:func:`jittered`): with 64-px sub-images the corner inside the sub-image is fixed,
    so without it every epoch trains on the very same patches.
    """
    rng = np.random.default_rng([seed, epoch])
    jrng = np.random.default_rng([seed, epoch, 1]) if jitter else None
    idx, rows, cols, labs = [], [], [], []
    for i, (shape, y) in enumerate(zip(shapes, labels, strict=True)):
        s = (min(sub[0], shape[0]), min(sub[1], shape[1]))
        c = training_patch_corners(shape, s, rng)
        if jrng is not None:
            c = jittered(c, shape, jitter, jrng)
        idx.append(np.full(len(c), i, dtype=np.int64))
        rows.append(c[:, 0])
        cols.append(c[:, 1])
        labs.append(np.full(len(c), y, dtype=np.int64))
    cat = np.concatenate
    return cat(idx), cat(rows), cat(cols), cat(labs)


def toned(x: np.ndarray, rng: np.random.Generator, t: float) -> np.ndarray:
    """A random tone curve ``x ** g`` (``g = exp(U(-t, t))``) of a patch in [0, 1]: another brightness and
    contrast, no clipping, the same spatial structure (``TrainConfig.tone_jitter``)."""
    g = float(np.exp(rng.uniform(-t, t)))
    return np.power(np.clip(x, 0.0, 1.0), np.float32(g), dtype=np.float32)


class PatchDataset(TorchDataset):
    """One epoch's training patches, read from the images' cache files on demand.

    Each item memory-maps its image, copies the 64x64 patch and unmaps it again, so
    neither the decoded collection nor the pages touched by earlier patches stay in
    memory: resident memory does not grow with the collection.

    With ``delivery_chain`` > 0 each patch, with that probability, is cut from a larger
    crop around its corner that went through one random delivery path first
    (:func:`scanlab.core.io.delivery.delivered_patch`), seeded by ``(seed, epoch, k)``:
    a resumed run and any number of loader workers draw the same patches.
    """

    def __init__(self, files: Sequence[os.PathLike | str], corners: tuple[np.ndarray, ...], *,
                 delivery_chain: float = 0.0, seed: int = 0, epoch: int = 0, tone_jitter: float = 0.0) -> None:
        self.files = [str(f) for f in files]
        self.tone_jitter = float(tone_jitter)
        self.idx, self.rows, self.cols, self.labels = corners
        self.delivery_chain, self.seed, self.epoch = float(delivery_chain), int(seed), int(epoch)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, int]:
        img = np.load(self.files[self.idx[k]], mmap_mode="r")
        r, c = int(self.rows[k]), int(self.cols[k])
        rng = np.random.default_rng([self.seed, self.epoch, k]) if self.delivery_chain > 0 else None
        if rng is not None and rng.random() < self.delivery_chain:
            patch = delivered_patch(img, r, c, rng)
        else:
            patch = np.array(img[r : r + PATCH, c : c + PATCH])
        del img  # unmap now: pages of a kept map would count as resident memory
        scale = full_scale(patch.dtype)
        x = patch.transpose(2, 0, 1).astype(np.float32) / scale
        if self.tone_jitter > 0:
            x = toned(x, np.random.default_rng([self.seed, self.epoch, k, 2]), self.tone_jitter)
        return torch.from_numpy(x), int(self.labels[k])


__all__ = ["PatchDataset", "epoch_corners", "n_subimages"]
