"""The training recipe as plain data (no torch import: the CLI parser reads its defaults)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

Size = tuple[int, int]


@dataclass
class TrainConfig:
    """Everything that defines a training run (JSON-serialisable).

    Defaults come from the measurements in BENCHMARKS.md ("Training defaults").
    """

    epochs: int = 8
    batch_size: int = 64
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    sub: Size = (64, 64)
    patience: int = 6
    seed: int = 0
    width: int = 1
    schedule: str = "cosine"  # or "constant"; cosine anneals lr to 0 over ``epochs``
    freeze_trunk: bool = False  # train only the final layer (fine-tuning a base model)
    # each training patch's corner moves by a random multiple of 8 px up to this many pixels per axis
    # (core/training/patchdata.epoch_corners); 0: the corner inside the sub-image only
    patch_jitter: int = 0
    # every training patch goes through a random tone curve x ** g, |log g| <= tone_jitter (0: none)
    tone_jitter: float = 0.0
    freeze_early: bool = False  # freeze the stem and the first inception block (weights and batch-norm statistics)
    amp: bool = True  # mixed precision, used on CUDA only
    max_batches: int | None = None  # cap on batches per epoch (None: one patch per sub-image)
    workers: int = 0  # DataLoader worker processes
    oe_steps: int | None = None  # steps of the "other scanner" training (None: a share of the run's batches)
    # probability that a training patch first goes through one random delivery path (JPEG re-save,
    # resampling, tone: scanlab.core.io.delivery.delivered); 0 trains on the scans as they are
    delivery_chain: float = 0.0

    def recipe(self) -> dict[str, Any]:
        """The recipe part of the manifest."""
        d = asdict(self)
        d["optimizer"] = "SGD"
        d["sub"] = list(self.sub)
        return d
