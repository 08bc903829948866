"""Wizard pages 1 and 2: the collection (what is in the folder) and the split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt, Slot
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
    QWizardPage,
)

from scanlab.core.evidence.fit import MIN_CAL_WINDOWS_PER_CLASS, MIN_VAL_IMAGES_PER_CLASS
from scanlab.core.training.dataset import DatasetError, discover, split_dataset
from scanlab.gui.task_runner import Job, JobResult, TaskRunner
from scanlab.gui.wizard.state import WizardState
from scanlab.services.collection import CollectionReport, inspect_collection


def thumb_strip(thumbs: list[np.ndarray], height: int = 48) -> QPixmap:
    """Side-by-side thumbnails scaled to ``height`` px (one pixmap for a table cell)."""
    if not thumbs:
        return QPixmap()
    scaled = []
    for t in thumbs:
        h, w = t.shape[:2]
        img = QImage(np.ascontiguousarray(t).data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
        scaled.append(img.scaledToHeight(height, Qt.TransformationMode.SmoothTransformation))
    width = sum(s.width() for s in scaled) + 4 * (len(scaled) - 1)
    out = QImage(width, height, QImage.Format.Format_RGB888)
    out.fill(Qt.GlobalColor.white)
    from PySide6.QtGui import QPainter

    p = QPainter(out)
    x = 0
    for s in scaled:
        p.drawImage(x, 0, s)
        x += s.width() + 4
    p.end()
    return QPixmap.fromImage(out)


class CollectionPage(QWizardPage):
    """Choose the folder; a table per scanner; unreadable files, conflicts, warnings."""

    def __init__(self, state: WizardState, runner: TaskRunner) -> None:
        super().__init__()
        self.state = state
        self.runner = runner
        self._job: Job | None = None
        self.setTitle("1. Reference collection")
        self.setSubTitle("A folder with one sub-folder per scanner (or Model/Unit/... when you have several "
                         "units of one model). Every readable image below a scanner folder is one sample.")
        self.folder_edit = QLineEdit(state.data_dir)
        self.folder_edit.setPlaceholderText("folder with one sub-folder per scanner")
        self.browse = QPushButton("Browse...")
        self.units_check = QCheckBox("Model/Unit/... layout (the first folder below a scanner folder is a physical unit)")
        self.units_check.setChecked(state.units)
        self.scan_button = QPushButton("Inspect")
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.table = QTableWidget(0, 7)
        self.table.setHorizontalHeaderLabels(["Scanner", "Images", "Units", "Sizes (w x h)", "dpi", "Formats",
                                              "Thumbnails"])
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(6, QHeaderView.ResizeMode.Stretch)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.problems = QListWidget()
        self.problems.setWordWrap(True)
        self.problems.setMaximumHeight(150)
        self.status = QLabel("")
        self.status.setWordWrap(True)

        row = QHBoxLayout()
        row.addWidget(self.folder_edit, 1)
        row.addWidget(self.browse)
        row.addWidget(self.scan_button)
        lay = QVBoxLayout(self)
        lay.addLayout(row)
        lay.addWidget(self.units_check)
        lay.addWidget(self.progress)
        lay.addWidget(self.table, 1)
        lay.addWidget(QLabel("Problems and advice"))
        lay.addWidget(self.problems)
        lay.addWidget(self.status)

        self.browse.clicked.connect(self._on_browse_clicked)
        self.scan_button.clicked.connect(self.inspect)
        self.folder_edit.returnPressed.connect(self.inspect)
        self.units_check.toggled.connect(self._on_units_toggled)
        runner.succeeded.connect(self._on_runner_succeeded)
        runner.failed.connect(self._on_runner_failed)
        runner.progressed.connect(self._on_runner_progressed)

    # -- actions --------------------------------------------------------------------------

    @Slot()
    def _on_browse_clicked(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Reference collection", self.folder_edit.text() or str(Path.home()))
        if d:
            self.folder_edit.setText(d)
            self.inspect()

    @Slot(bool)
    def _on_units_toggled(self, _on: bool) -> None:
        if self.folder_edit.text().strip():
            self.inspect()

    @Slot()
    def inspect(self) -> None:
        """Inspect the folder in the background (hashing a large collection takes a while)."""
        folder = self.folder_edit.text().strip()
        self.state.report = None
        self.state.data_dir = folder
        self.state.units = self.units_check.isChecked()
        self.table.setRowCount(0)
        self.problems.clear()
        if not folder:
            self.status.setText("Choose a folder.")
            self.completeChanged.emit()
            return
        units = self.state.units

        def work(*, cancel, progress):
            return inspect_collection(folder, units=units, cancel=cancel, progress=progress)

        self._job = Job(work, path=folder)
        self.status.setText("Reading the collection...")
        self.progress.setVisible(True)
        self.progress.setRange(0, 0)
        self.runner.submit(self._job)
        self.completeChanged.emit()

    def is_busy(self) -> bool:
        """True while the collection is being inspected."""
        return self._job is not None

    # -- runner slots -----------------------------------------------------------------------

    @Slot(int, int)
    def _on_runner_progressed(self, done: int, total: int) -> None:
        if self._job is not None and total:
            self.progress.setRange(0, total)
            self.progress.setValue(done)

    @Slot(object, object)
    def _on_runner_succeeded(self, result: object, _pyramid: object) -> None:
        if not isinstance(result, JobResult) or result.request is not self._job:
            return
        self._job = None
        self.progress.setVisible(False)
        self.show_report(result.value)

    @Slot(object, str)
    def _on_runner_failed(self, request: object, message: str) -> None:
        if request is not self._job:
            return
        self._job = None
        self.progress.setVisible(False)
        self.status.setText(f"<b>Cannot use this folder:</b> {message}")
        self.completeChanged.emit()

    def show_report(self, rep: CollectionReport) -> None:
        """Fill the table and the problem list."""
        self.state.report = rep
        self.table.setRowCount(len(rep.classes))
        for r, c in enumerate(rep.classes):
            vals = [c.name, str(c.count), ", ".join(c.units) if rep.units else "-", c.size_text(),
                    ", ".join(c.dpi) or "-", ", ".join(c.formats) or "-"]
            for k, v in enumerate(vals):
                item = QTableWidgetItem(v)
                if k == 1:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(r, k, item)
            lab = QLabel()
            lab.setPixmap(thumb_strip(c.thumbnails))
            self.table.setCellWidget(r, 6, lab)
            self.table.setRowHeight(r, 54)
        self.table.resizeColumnsToContents()
        self.table.horizontalHeader().setSectionResizeMode(6, QHeaderView.ResizeMode.Stretch)
        for e in rep.errors:
            self.problems.addItem(f"Error: {e}")
        for w in rep.warnings:
            self.problems.addItem(f"Warning: {w}")
        for p, why in rep.unreadable:
            self.problems.addItem(f"Unreadable (excluded): {p}: {why}")
        for h, paths in rep.conflicts:
            self.problems.addItem(f"Label conflict (excluded), SHA-256 {h[:12]}...: " + " | ".join(paths))
        if not self.problems.count():
            self.problems.addItem("No problems found.")
        n = sum(c.count for c in rep.classes)
        self.status.setText(
            f"{n} usable images in {sum(1 for c in rep.classes if c.count)} scanner folders"
            + (f"; {len(rep.excluded())} file(s) excluded" if rep.excluded() else "")
            + ("" if not rep.errors else ". <b>Fix the errors above to continue.</b>")
        )
        self.completeChanged.emit()

    def isComplete(self) -> bool:  # noqa: N802 - Qt override
        rep = self.state.report
        return rep is not None and not rep.errors and self._job is None


class SplitPage(QWizardPage):
    """Seeded train:val:test by image (editable) with the counts previewed; unit hold-out."""

    def __init__(self, state: WizardState) -> None:
        super().__init__()
        self.state = state
        self.setTitle("2. Split")
        self.setSubTitle("Images (never patches) are split per scanner, seeded. The test split is only "
                         "looked at once, after training.")
        self.spins = []
        form = QFormLayout()
        ratios = QHBoxLayout()
        for name, v in zip(("train", "val", "test"), state.split, strict=True):
            sp = QSpinBox()
            sp.setRange(0, 100)
            sp.setValue(v)
            sp.setPrefix(f"{name} ")
            self.spins.append(sp)
            ratios.addWidget(sp)
        box = QWidget()
        box.setLayout(ratios)
        form.addRow("Ratios", box)
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setValue(state.seed)
        form.addRow("Seed", self.seed)
        self.holdout = QCheckBox("Hold out a whole unit per scanner for the test (needs Model/Unit/... layout)")
        form.addRow("", self.holdout)
        self.table = QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(["Scanner", "train", "val", "test"])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.error = QLabel("")
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #b00020")
        self.val_note = QLabel("")  # what the validation counts mean for calibration and the threshold
        self.val_note.setWordWrap(True)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.table, 1)
        lay.addWidget(self.val_note)
        lay.addWidget(self.error)
        for sp in self.spins:
            sp.valueChanged.connect(self._on_value_changed)
        self.seed.valueChanged.connect(self._on_value_changed)
        self.holdout.toggled.connect(self._on_value_changed)
        self._ok = False

    def initializePage(self) -> None:  # noqa: N802 - Qt override
        self.holdout.setEnabled(self.state.units)
        if not self.state.units:
            self.holdout.setChecked(False)
        self.preview()

    @Slot()
    def _on_value_changed(self) -> None:
        self.preview()

    def preview(self) -> None:
        """Split the collection as training will and show the counts (or why it cannot)."""
        st = self.state
        st.split = tuple(sp.value() for sp in self.spins)  # type: ignore[assignment]
        st.seed = self.seed.value()
        st.holdout_unit = self.holdout.isChecked()
        self.error.setText("")
        self.val_note.setText("")
        self._ok = False
        try:
            from scanlab.core.training.dataset import parse_split

            ratios = parse_split(st.split_text())
            ds = discover(st.data_dir, hash_files=False, units=st.units)
            drop = {Path(p).resolve() for p in (st.report.excluded() if st.report else [])}
            ds.samples = [s for s in ds.samples if s.path.resolve() not in drop]
            ds = split_dataset(ds, ratios, st.seed, holdout_unit=st.holdout_unit)
        except DatasetError as e:
            self.table.setRowCount(0)
            self.error.setText(str(e))
        else:
            counts = ds.counts()
            self.table.setRowCount(len(counts))
            for r, (c, v) in enumerate(counts.items()):
                for k, val in enumerate([c, v["train"], v["val"], v["test"]]):
                    self.table.setItem(r, k, QTableWidgetItem(str(val)))
            self.val_note.setText(validation_note({c: v["val"] for c, v in counts.items()}))
            self._ok = True
        self.completeChanged.emit()

    def isComplete(self) -> bool:  # noqa: N802 - Qt override
        return self._ok


def validation_note(val_counts: dict[str, int]) -> str:
    """What the validation images per scanner mean for calibration and the unknown threshold.

    The wizard scores unknown scanners with ``gauss-image`` (core/evidence/gauss.py): its
    threshold is set with any number of validation images (core/evidence/threshold.py),
    while temperature calibration needs :data:`MIN_VAL_IMAGES_PER_CLASS` per scanner, or
    :data:`MIN_CAL_WINDOWS_PER_CLASS` validation windows (core/evidence/fit.py). The note
    names the rule that will apply.
    """
    if not val_counts:
        return ""
    need = MIN_VAL_IMAGES_PER_CLASS
    short = {c: n for c, n in val_counts.items() if n < need}
    if not short:
        return (f"<b>Validation:</b> at least {need} images per scanner, so the confidences will be "
                "calibrated (temperature scaling, fitted on them). The unknown-scanner threshold will lie "
                "between the known scans' scores (98% quantile of the training images' cross-fitted scores, "
                "and the validation images) and the scores of outlier designs held out from training.")
    few = min(short.values())
    names = ", ".join(f"{c} ({n})" for c, n in short.items())
    return (f"<b>Validation: only {few} image{'s' if few != 1 else ''} per scanner</b> for {names}. "
            f"Calibration needs at least {need} per scanner, or {MIN_CAL_WINDOWS_PER_CLASS} validation windows "
            "of 64 px per scanner (a 512 px scan has 64); with smaller scans <b>the confidences will not be "
            "calibrated</b> (the Evaluate page and the model card will say so). The unknown-scanner threshold is "
            "still set: from the training images' cross-fitted scores and the validation images (the known end) "
            "and the scores of outlier designs held out from training (the outlier end), as these do not need "
            f"{need} images per scanner. For more reliable figures raise the val ratio or add scans.")
