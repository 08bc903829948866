"""What the training wizard's pages decide, as plain data (one object all pages share)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from scanlab.core.training.config import TrainConfig
from scanlab.services.collection import CollectionReport
from scanlab.services.paths import cache_dir
from scanlab.services.training import TrainRequest


@dataclass
class WizardState:
    """The wizard's model: pages write it, later pages and the training job read it."""

    data_dir: str = ""
    units: bool = False
    report: CollectionReport | None = None
    split: tuple[int, int, int] = (6, 1, 3)
    seed: int = 0
    holdout_unit: bool = False
    base: str = "default"  # "default", "none" or a model path
    config: TrainConfig = field(default_factory=TrainConfig)
    device: str = "auto"
    manifest: dict[str, Any] | None = None  # of the trained model, once training succeeded
    trained_path: str = ""  # where the trained model waits until it is saved

    def split_text(self) -> str:
        """``"6:1:3"``."""
        return ":".join(str(v) for v in self.split)

    def request(self, *, resume: bool = False) -> TrainRequest:
        """The training request the pages describe (the model goes to a work file first)."""
        work = cache_dir() / "wizard"
        work.mkdir(parents=True, exist_ok=True)
        out = work / "last-run.safetensors"
        self.trained_path = str(out)
        excluded = tuple(self.report.excluded()) if self.report is not None else ()
        return TrainRequest(
            data_dir=self.data_dir, output=str(out), config=replace(self.config, seed=self.seed), split=self.split_text(),
            base=self.base, device=self.device, units=self.units, holdout_unit=self.holdout_unit and self.units,
            resume=resume, exclude=excluded, name=Path(self.data_dir).name or "model",
        )
