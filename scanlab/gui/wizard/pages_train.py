"""Wizard pages 3 and 4: the model to start from and its recipe, then training with live curves."""

from __future__ import annotations

import gc
import time
from dataclasses import replace
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWizardPage,
)

from scanlab.core.engine.engines import available_devices
from scanlab.core.training.config import TrainConfig
from scanlab.gui.task_runner import Job, JobResult, TaskRunner
from scanlab.gui.wizard.state import WizardState
from scanlab.services.library import list_library
from scanlab.services.paths import default_model_path
from scanlab.services.training import run_training

CHAIN_P = 0.5  # the wizard's "re-saved" choice: scanlab train --delivery-chain 0.5


class ModelPage(QWizardPage):
    """Base model (shipped / user / scratch), freeze trunk, advanced recipe, device."""

    def __init__(self, state: WizardState) -> None:
        super().__init__()
        self.state = state
        self.setTitle("3. Model")
        self.setSubTitle("Fine-tuning the shipped model is the measured default (see BENCHMARKS.md, "
                         "'Training defaults'); the advanced settings rarely need changing.")
        d = TrainConfig()
        self.base = QComboBox()
        self.freeze = QCheckBox("Freeze the trunk (train only the last layer; fast, for very small collections)")
        self.device = QComboBox()
        avail = available_devices()
        for dev in ("auto", "cpu", "cuda", "mps"):
            self.device.addItem(dev if dev == "auto" or dev in avail else f"{dev} (not available)", dev)
            if dev not in avail and dev != "auto":
                self.device.model().item(self.device.count() - 1).setEnabled(False)
        self.amp = QCheckBox("Mixed precision (CUDA only)")
        self.amp.setChecked(d.amp)
        self.chain = QCheckBox("Questioned scans arrive re-saved (JPEG, resized): train on re-saved patches too")
        self.chain.setToolTip(f"Each training patch, with probability {CHAIN_P}, first goes through a random JPEG "
                              "re-save (quality 60-98), resampling (x0.7-1.3) or tone change, and the thresholds "
                              "also see the validation scans re-saved (scanlab train --delivery-chain "
                              f"{CHAIN_P}). See BENCHMARKS.md, 'Delivery chain'.")
        self.chain.setChecked(d.delivery_chain > 0)
        adv = QGroupBox("Advanced")
        adv.setCheckable(True)
        adv.setChecked(False)
        self.advanced = adv
        self.lr = QDoubleSpinBox()
        self.lr.setDecimals(5)
        self.lr.setRange(1e-5, 1.0)
        self.lr.setSingleStep(0.001)
        self.lr.setValue(d.lr)
        self.momentum = QDoubleSpinBox()
        self.momentum.setRange(0.0, 0.99)
        self.momentum.setSingleStep(0.05)
        self.momentum.setValue(d.momentum)
        self.schedule = QComboBox()
        self.schedule.addItems(["cosine", "constant"])
        self.schedule.setCurrentText(d.schedule)
        self.epochs = QSpinBox()
        self.epochs.setRange(1, 1000)
        self.epochs.setValue(d.epochs)
        self.sub = QSpinBox()
        self.sub.setRange(64, 4096)
        self.sub.setSingleStep(32)
        self.sub.setValue(d.sub[0])
        self.batch = QSpinBox()
        self.batch.setRange(2, 4096)
        self.batch.setValue(d.batch_size)
        g = QFormLayout(adv)
        g.addRow("Learning rate", self.lr)
        g.addRow("Momentum", self.momentum)
        g.addRow("Schedule", self.schedule)
        g.addRow("Epochs", self.epochs)
        g.addRow("Sub-image (px, one random patch each)", self.sub)
        g.addRow("Batch size", self.batch)
        form = QFormLayout()
        form.addRow("Start from", self.base)
        form.addRow("", self.freeze)
        form.addRow("Device", self.device)
        form.addRow("", self.amp)
        form.addRow("", self.chain)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(adv)
        lay.addStretch(1)
        self.device.currentIndexChanged.connect(self._on_device_changed)
        self._on_device_changed()

    def initializePage(self) -> None:  # noqa: N802 - Qt override
        self.base.clear()
        if default_model_path().exists():
            self.base.addItem("Shipped model (fine-tune)", "default")
        for m in list_library():
            if "error" not in m:
                self.base.addItem(f"User model: {m['name']} (fine-tune)", m["path"])
        self.base.addItem("Train from scratch", "none")

    @Slot()
    def _on_device_changed(self) -> None:
        dev = self.device.currentData()
        cuda = dev == "cuda" or (dev == "auto" and "cuda" in available_devices())
        self.amp.setEnabled(cuda)

    def validatePage(self) -> bool:  # noqa: N802 - Qt override
        st = self.state
        st.base = self.base.currentData() or "none"
        st.device = self.device.currentData() or "auto"
        s = self.sub.value()
        st.config = replace(
            TrainConfig(), lr=self.lr.value(), momentum=self.momentum.value(), schedule=self.schedule.currentText(),
            epochs=self.epochs.value(), sub=(s, s), batch_size=self.batch.value(),
            freeze_trunk=self.freeze.isChecked() and st.base != "none", amp=self.amp.isChecked(),
            delivery_chain=CHAIN_P if self.chain.isChecked() else 0.0,
        )
        return True


class _TrainEvents(QObject):
    """Carries the training job's callbacks from the worker thread to the page (queued)."""

    epoch = Signal(object)
    batch = Signal(object)
    stage = Signal(str)
    saved = Signal(object)  # the stored manifest, once the model file is complete


class TrainPage(QWizardPage):
    """Live loss/accuracy curves, patches/s, ETA, device; cancel and resume."""

    def __init__(self, state: WizardState, runner: TaskRunner) -> None:
        super().__init__()
        self.state = state
        self.runner = runner
        self.setTitle("4. Train")
        self.setSubTitle("A checkpoint is written after every epoch: a cancelled or crashed run resumes from it.")
        self.events = _TrainEvents(self)
        self._job: Job | None = None
        self._t0 = 0.0
        self.history: list[dict[str, Any]] = []
        self.start_button = QPushButton("Start training")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.resume_button = QPushButton("Resume")
        self.resume_button.setEnabled(False)
        self.progress = QProgressBar()
        self.info = QLabel("Press Start training.")
        self.info.setWordWrap(True)
        self.loss_plot = pg.PlotWidget(title="Loss")
        self.acc_plot = pg.PlotWidget(title="Accuracy")
        for p in (self.loss_plot, self.acc_plot):
            p.setBackground("w")
            p.showGrid(x=True, y=True, alpha=0.3)
            p.setLabel("bottom", "epoch")
            p.addLegend(offset=(-10, 10))
        self.acc_plot.setYRange(0, 1)
        self.curves = {
            "train_loss": self.loss_plot.plot(pen=pg.mkPen("#1f77b4", width=2), symbol="o", symbolSize=5, name="train"),
            "val_loss": self.loss_plot.plot(pen=pg.mkPen("#d62728", width=2), symbol="o", symbolSize=5, name="validation"),
            "train_acc": self.acc_plot.plot(pen=pg.mkPen("#1f77b4", width=2), symbol="o", symbolSize=5,
                                            name="train (patch)"),
            "val_patch_acc": self.acc_plot.plot(pen=pg.mkPen("#d62728", width=2), symbol="o", symbolSize=5,
                                                name="validation (patch)"),
            "val_image_acc": self.acc_plot.plot(pen=pg.mkPen("#2ca02c", width=2, style=pg.QtCore.Qt.PenStyle.DashLine),
                                                symbol="t", symbolSize=6, name="validation (image)"),
        }
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.resume_button)
        buttons.addWidget(self.progress, 1)
        plots = QGridLayout()
        plots.addWidget(self.loss_plot, 0, 0)
        plots.addWidget(self.acc_plot, 0, 1)
        lay = QVBoxLayout(self)
        lay.addLayout(buttons)
        lay.addWidget(self.info)
        lay.addLayout(plots, 1)
        self.start_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.resume_button.clicked.connect(self.resume)
        self.events.epoch.connect(self._on_events_epoch)
        self.events.batch.connect(self._on_events_batch)
        self.events.stage.connect(self._on_events_stage)
        self.events.saved.connect(self._on_events_saved)
        runner.progressed.connect(self._on_runner_progressed)
        runner.succeeded.connect(self._on_runner_succeeded)
        runner.failed.connect(self._on_runner_failed)
        runner.cancelled.connect(self._on_runner_cancelled)
        self._device = ""
        self._last_batch: dict[str, Any] = {}
        self._saved: dict[str, Any] | None = None  # the run's model, complete (even if its last check was cancelled)

    # -- control ----------------------------------------------------------------------------

    @Slot()
    def start(self) -> None:
        """Start a fresh run with the settings of the earlier pages."""
        self._launch(resume=False)

    @Slot()
    def resume(self) -> None:
        """Continue the cancelled or failed run from its last checkpoint."""
        self._launch(resume=True)

    @Slot()
    def cancel(self) -> None:
        """Stop at the next batch; the last checkpoint stays for Resume.

        During the delivery check the model is already complete and saved: a cancel
        stops the check only, and the page goes on as after a finished run.
        """
        if self._job is not None:
            self.runner.cancel()

    def is_running(self) -> bool:
        """True while a training job runs."""
        return self._job is not None

    def _launch(self, *, resume: bool) -> None:
        st = self.state
        st.manifest = None
        self._saved = None
        req = st.request(resume=resume)
        if not resume:
            self.history = []
            for c in self.curves.values():
                c.setData([], [])
        ev = self.events
        from scanlab.core.engine.engines import select_device

        try:
            self._device = str(select_device(req.device))
        except Exception as e:  # noqa: BLE001 - shown, not raised
            self.info.setText(f"<b>Cannot train:</b> {e}")
            return

        def work(*, cancel, progress):
            man = run_training(req, cancel=cancel, progress=progress, on_epoch=ev.epoch.emit,
                               on_batch=ev.batch.emit, on_stage=ev.stage.emit)
            ev.saved.emit(man)  # reaches the page even when the runner reports a late cancel
            return man

        # Move every object alive now (Qt, torch, pyqtgraph: hundreds of thousands) out of the
        # cyclic collector's reach: a full collection triggered by the training loop's
        # allocations would otherwise hold the GIL, and so freeze the window, for 100-300 ms.
        gc.freeze()
        self._job = Job(work, path=st.data_dir)
        self._t0 = time.monotonic()
        self.start_button.setEnabled(False)
        self.resume_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.info.setText(f"Starting on {self._device}...")
        self.runner.submit(self._job)
        self.completeChanged.emit()

    # -- live updates -----------------------------------------------------------------------------

    @Slot(object)
    def _on_events_epoch(self, rec: dict[str, Any]) -> None:
        self.history = [h for h in self.history if h["epoch"] < rec["epoch"]] + [rec]
        ep = [h["epoch"] for h in self.history]
        for key, curve in self.curves.items():
            curve.setData(ep, [h[key] for h in self.history])

    @Slot(object)
    def _on_events_batch(self, b: dict[str, Any]) -> None:
        self._last_batch = b
        cfg = self.state.config
        done = (b["epoch"] - 1) * b["batches"] + b["batch"]
        total = cfg.epochs * b["batches"]
        el = time.monotonic() - self._t0
        left = el / max(done, 1) * (total - done) if done else float("nan")
        self.info.setText(
            f"Epoch {b['epoch']}/{cfg.epochs}, batch {b['batch']}/{b['batches']} on <b>{self._device}</b>: "
            f"{b['patches_per_s']:.0f} patches/s, ETA {_fmt_s(left)} (validation adds a little per epoch)"
        )

    @Slot(str)
    def _on_events_stage(self, text: str) -> None:
        if text.startswith("delivery check:"):
            self.info.setText(f"{text[0].upper()}{text[1:]}: the trained model is saved; Cancel skips this check.")
        elif text != "training":
            self.info.setText(f"{text.capitalize()}...")

    @Slot(object)
    def _on_events_saved(self, manifest: object) -> None:
        if self._job is not None and isinstance(manifest, dict):
            self._saved = manifest

    @Slot(int, int)
    def _on_runner_progressed(self, done: int, total: int) -> None:
        if self._job is not None and total:
            self.progress.setRange(0, total)
            self.progress.setValue(done)

    @Slot(object, object)
    def _on_runner_succeeded(self, result: object, _p: object) -> None:
        if not isinstance(result, JobResult) or result.request is not self._job:
            return
        self._done(result.value)

    def _done(self, manifest: dict[str, Any]) -> None:
        """The run produced a complete model: show it and let the wizard go on to Evaluate."""
        self._finish()
        self.state.manifest = manifest
        tr = manifest["training"]
        skipped = (" The delivery check was cancelled: the model is complete, without its figures on re-saved "
                   "scans." if tr.get("delivery_check") == "interrupted" else "")
        self.info.setText(
            f"Done on {self._device}: {tr['epochs_run']} epochs ({tr['stop_reason']}), best epoch "
            f"{tr['best_epoch']}, {_fmt_s(time.monotonic() - self._t0)}, "
            f"{tr['history'][-1].get('patches_per_s', 0):.0f} patches/s.{skipped} Next: evaluate on the test split."
        )
        self.progress.setValue(self.progress.maximum())
        self.completeChanged.emit()

    @Slot(object, str)
    def _on_runner_failed(self, request: object, message: str) -> None:
        if request is not self._job:
            return
        self._finish()
        self.resume_button.setEnabled(True)
        self.info.setText(f"<b>Training stopped:</b> {message}")
        self.completeChanged.emit()

    @Slot(object)
    def _on_runner_cancelled(self, request: object) -> None:
        if request is not self._job:
            return
        if self._saved is not None:  # cancelled during the delivery check: the model is complete
            self._done(self._saved)
            return
        self._finish()
        self.resume_button.setEnabled(bool(self.history))
        self.info.setText("Cancelled. Resume continues from the last completed epoch; Start begins afresh.")
        self.completeChanged.emit()

    def _finish(self) -> None:
        self._job = None
        self.start_button.setEnabled(True)
        self.cancel_button.setEnabled(False)

    def isComplete(self) -> bool:  # noqa: N802 - Qt override
        return self.state.manifest is not None and self._job is None

    def cleanupPage(self) -> None:  # noqa: N802 - Qt override
        self.cancel()  # going Back stops a run (it can be resumed)


def _fmt_s(s: float) -> str:
    if s != s or s == float("inf"):
        return "-"
    s = int(s)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
