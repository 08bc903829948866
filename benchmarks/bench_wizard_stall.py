"""Longest GUI event-loop stall while the training wizard trains (issue 10).

A 10 ms ``QTimer`` in the GUI thread records the gaps between its ticks while the
wizard's Train page runs a training job on its :class:`TaskRunner` worker thread and
draws the live curves and the per-batch status line (the same probe as
``bench_gui_stall.py``). A small collection is generated with numpy (3 classes, faint
per-column gain patterns, PNG); training starts from scratch.

Usage::

    QT_QPA_PLATFORM=offscreen OMP_NUM_THREADS=1 python benchmarks/bench_wizard_stall.py
        [--images 8] [--size 256] [--epochs 2]

Prints one table; no assertion.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
import torch  # noqa: E402, F401 - before Qt
from PIL import Image  # noqa: E402


def make_collection(root: Path, n: int, size: int) -> None:
    rng = np.random.default_rng(0)
    x = np.arange(size)
    for c, period in enumerate((2, 3, 5)):
        d = root / f"scanner_{c}"
        d.mkdir(parents=True)
        gain = 1 + 0.04 * np.cos(2 * np.pi * x / period)
        for i in range(n):
            small = rng.random((size // 16 + 1, size // 16 + 1, 3))
            img = np.asarray(Image.fromarray((small * 255).astype(np.uint8)).resize((size, size)), np.float64)
            img = img * gain[None, :, None] + rng.normal(0, 1, img.shape)
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(d / f"img_{i:02d}.png")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--verbose", action="store_true", help="list the long gaps and the training stages in time")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-wizard-"))
    os.environ.setdefault("SCANLAB_DATA_DIR", str(work / "userdata"))
    os.environ.setdefault("SCANLAB_CACHE_DIR", str(work / "cache"))
    make_collection(work / "refs", a.images, a.size)

    from PySide6.QtCore import QObject, QTimer, Slot
    from PySide6.QtWidgets import QApplication

    from scanlab.gui.app import ensure_app
    from scanlab.gui.wizard.wizard import TrainingWizard

    ensure_app()

    class Probe(QObject):
        def __init__(self) -> None:
            super().__init__()
            self.gaps: list[float] = []
            self._last = time.perf_counter()
            self.timer = QTimer(self)
            self.timer.setInterval(10)
            self.timer.timeout.connect(self._on_timer_timeout)

            self.events: list[tuple[float, str]] = []
            self.t0 = time.perf_counter()

        @Slot()
        def _on_timer_timeout(self) -> None:
            now = time.perf_counter()
            self.gaps.append(now - self._last)
            if now - self._last > 0.1:
                self.events.append((self._last - self.t0, f"gap {1000 * (now - self._last):.0f} ms"))
            self._last = now

        @Slot(str)
        def _on_stage(self, text: str) -> None:
            self.events.append((time.perf_counter() - self.t0, f"stage {text}"))

        @Slot(object)
        def _on_epoch(self, rec: object) -> None:
            self.events.append((time.perf_counter() - self.t0, "epoch done"))

    wiz = TrainingWizard(str(work / "refs"))
    wiz.show()
    col = wiz.page_named("collection")
    while not col.isComplete():
        QApplication.processEvents()
        time.sleep(0.01)
    wiz.next()
    wiz.next()
    model = wiz.page_named("model")
    model.base.setCurrentIndex(model.base.findData("none"))
    model.epochs.setValue(a.epochs)
    wiz.next()
    train = wiz.page_named("train")
    probe = Probe()
    train.events.stage.connect(probe._on_stage)
    train.events.epoch.connect(probe._on_epoch)
    probe.timer.start()
    t0 = probe.t0 = time.perf_counter()
    train.start()
    while train.is_running():
        QApplication.processEvents()
        time.sleep(0.002)
    wall = time.perf_counter() - t0
    probe.timer.stop()
    g = np.asarray(probe.gaps) * 1000
    print(f"training {a.epochs} epochs on {3 * a.images} scans of {a.size} px: {wall:.1f} s; "
          f"completed: {train.isComplete()}")
    print("| phase | wall s | max gap ms | p99 gap ms | gaps > 100 ms |")
    print("|---|---:|---:|---:|---:|")
    print(f"| training (worker thread) | {wall:.1f} | {g.max():.1f} | {np.percentile(g, 99):.1f} | "
          f"{int((g > 100).sum())} |")
    if a.verbose:
        for t, what in probe.events:
            print(f"{t:7.2f} s  {what}")
    wiz.shutdown()
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
