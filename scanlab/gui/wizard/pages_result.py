"""Wizard pages 5 and 6: evaluation of the trained model, then saving it to the library."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QFormLayout,
    QGridLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPlainTextEdit,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWizardPage,
)

from scanlab.core.errors import ScanLabError
from scanlab.core.evidence.calibration import bins_from_block, ece_of_bins
from scanlab.core.modelfile.coverage_card import coverage_advice
from scanlab.core.modelfile.delivery_card import ordered_rows
from scanlab.gui.wizard.state import WizardState
from scanlab.services.library import LibraryError, library_path, save_to_library


def precision_recall(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class precision and recall of a [true, predicted] confusion matrix (NaN where undefined)."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    with np.errstate(invalid="ignore", divide="ignore"):
        return tp / cm.sum(0), tp / cm.sum(1)


class ConfusionHeatmap(pg.PlotWidget):
    """A confusion matrix as a heatmap (row-normalised colour, counts written in each cell)."""

    def __init__(self, title: str) -> None:
        super().__init__(title=title)
        self.setBackground("w")
        self.setAspectLocked(True)
        self.invertY(True)
        self.image = pg.ImageItem()
        self.image.setColorMap(pg.colormap.get("viridis"))
        self.addItem(self.image)
        self._texts: list[pg.TextItem] = []

    def set_matrix(self, cm: np.ndarray, classes: list[str]) -> None:
        """Show ``cm`` [true, predicted]."""
        cm = np.asarray(cm, dtype=np.float64)
        for t in self._texts:
            self.removeItem(t)
        self._texts = []
        rows = cm.sum(1, keepdims=True)
        norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
        self.image.setImage(norm, levels=(0, 1))  # row-major: [row=true, col=predicted]
        n = len(classes)
        for i in range(n):
            for j in range(n):
                t = pg.TextItem(f"{int(cm[i, j])}", color="w" if norm[i, j] < 0.6 else "k", anchor=(0.5, 0.5))
                t.setPos(j + 0.5, i + 0.5)
                self.addItem(t)
                self._texts.append(t)
        ticks = [[(k + 0.5, c[:14]) for k, c in enumerate(classes)]]
        self.getAxis("bottom").setTicks(ticks)
        self.getAxis("left").setTicks(ticks)
        self.setLabel("bottom", "predicted")
        self.setLabel("left", "true")
        self.setRange(xRange=(0, n), yRange=(0, n), padding=0.02)


class ReliabilityDiagram(pg.PlotWidget):
    """Accuracy against confidence per bin, before and after calibration, from the manifest's bins.

    The bins come from ``calibration.bins`` (docs/formats.md section 2), written
    by the same fit that set the temperature, on the validation split's windows.
    """

    def __init__(self) -> None:
        super().__init__(title="Calibration (validation windows)")
        self.setBackground("w")
        self.setLabel("bottom", "confidence (top class)")
        self.setLabel("left", "accuracy")
        self.setMouseEnabled(x=False, y=False)
        self.setMenuEnabled(False)
        self.legend = self.addLegend(offset=(4, 4), verSpacing=-6, labelTextColor="k", brush=pg.mkBrush(255, 255, 255, 220))
        self.available = False
        self.message = pg.TextItem("", color="k", anchor=(0.5, 0.5))
        self.set_calibration(None)

    def set_calibration(self, cal: dict[str, Any] | None) -> None:
        """Draw the diagram of a manifest's ``calibration`` block (a message when it has no bins)."""
        self.clear()
        self.legend.clear()
        self.setRange(xRange=(0, 1), yRange=(0, 1), padding=0.02)
        self.plotItem.addItem(pg.PlotDataItem([0, 1], [0, 1], pen=pg.mkPen((150, 150, 150), style=Qt.PenStyle.DashLine),
                                              name="ideal"))
        bins = bins_from_block(cal) if cal and cal.get("calibrated") else None
        self.available = bins is not None
        if bins is None:
            why = ("model saved without\nper-bin calibration data" if cal and cal.get("calibrated")
                   else "model not calibrated")
            self.message.setText("Reliability diagram\nnot available:\n" + why)
            self.message.setPos(0.5, 0.5)
            self.addItem(self.message)
            return
        before, after = bins
        x = np.array([(b["lo"] + b["hi"]) / 2 for b in after])
        width = float(after[0]["hi"] - after[0]["lo"])
        filled = np.array([b["n"] > 0 for b in after])
        acc = np.array([b["accuracy"] if b["n"] else 0.0 for b in after])
        self.bars = pg.BarGraphItem(x=x[filled], height=acc[filled], width=0.9 * width,
                                    brush=pg.mkBrush(70, 120, 200, 170), pen=pg.mkPen(40, 80, 160),
                                    name=f"after, T {_num(cal.get('temperature'))}: ECE {_ece(cal, 'ece_after', after):.3f}")
        self.addItem(self.bars)
        if self.bars.opts["name"] not in [lab.text for _, lab in self.legend.items]:
            self.legend.addItem(self.bars, self.bars.opts["name"])
        pts = [(b["confidence"], b["accuracy"]) for b in before if b["n"]]
        self.before_curve = self.plot([p[0] for p in pts], [p[1] for p in pts], pen=pg.mkPen((90, 90, 90), width=2),
                                      symbol="o", symbolSize=6, symbolBrush=(90, 90, 90),
                                      name=f"before (raw): ECE {_ece(cal, 'ece_before', before):.3f}")
        self.setRange(xRange=(0, 1), yRange=(0, 1), padding=0.02)


def _num(v: object) -> str:
    return f"{v:.3g}" if isinstance(v, (int, float)) else str(v)


def _ece(cal: dict[str, Any], key: str, bins: list[dict]) -> float:
    """The ECE the fit recorded (exact), else the one of the stored (rounded) bins."""
    v = cal.get(key)
    return float(v) if isinstance(v, (int, float)) else ece_of_bins(bins)


class EvaluatePage(QWizardPage):
    """Accuracy, both confusion matrices, precision/recall, misclassified scans, calibration."""

    open_scan_requested = Signal(str, str)  # scan path, model file evaluated here ("" when none)

    def __init__(self, state: WizardState) -> None:
        super().__init__()
        self.state = state
        self.setTitle("5. Evaluate")
        self.setSubTitle("Measured on the test split (images the model never saw during training). "
                         "Click a misclassified scan to open it in the main window, analysed with this model.")
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.cm_image = ConfusionHeatmap("Confusion per image")
        self.cm_patch = ConfusionHeatmap("Confusion per patch")
        self.pr = QTableWidget(0, 3)
        self.pr.setHorizontalHeaderLabels(["Scanner", "Precision (image)", "Recall (image)"])
        self.pr.verticalHeader().setVisible(False)
        self.pr.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.pr.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.wrong = QListWidget()
        self.calib = QLabel()
        self.calib.setWordWrap(True)
        self.calib.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.reliability = ReliabilityDiagram()
        self.delivery_caption = QLabel()  # one line: a wrapped label would claim the height of many
        self.delivery = QTableWidget(0, len(DELIVERY_COLUMNS))
        self.delivery.setHorizontalHeaderLabels([c[0] for c in DELIVERY_COLUMNS])
        for k, (_title, _key, tip) in enumerate(DELIVERY_COLUMNS):
            self.delivery.horizontalHeaderItem(k).setToolTip(tip)
        self.delivery.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.delivery.verticalHeader().setDefaultSectionSize(18)
        self.delivery.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        grid = QGridLayout()
        grid.addWidget(self.cm_image, 0, 0)
        grid.addWidget(self.cm_patch, 0, 1)
        grid.addWidget(self.reliability, 0, 2)
        grid.addWidget(self.pr, 1, 0)
        mid = QVBoxLayout()
        mid.addWidget(QLabel("Misclassified scans"))
        mid.addWidget(self.wrong, 1)
        mid.addWidget(self.delivery_caption)
        mid.addWidget(self.delivery)
        grid.addLayout(mid, 1, 1)
        grid.addWidget(self.calib, 1, 2)
        grid.setRowStretch(0, 3)
        grid.setRowStretch(1, 2)
        lay = QVBoxLayout(self)
        lay.addWidget(self.summary)
        lay.addLayout(grid, 1)
        self.wrong.itemActivated.connect(self._on_wrong_item_activated)
        self.wrong.itemClicked.connect(self._on_wrong_item_activated)

    def initializePage(self) -> None:  # noqa: N802 - Qt override
        man = self.state.manifest or {}
        classes = man.get("classes", [])
        met = man.get("metrics", {}) or {}
        which = "test" if met.get("test") else "val"
        m: dict[str, Any] = met.get(which) or {}
        if not m:
            self.summary.setText("No evaluation available.")
            return
        self.summary.setText(
            f"<b>{which} split, {m['n_images']} images, {m['n_patches']} patches:</b> per-image accuracy "
            f"<b>{100 * m['per_image_accuracy']:.1f}%</b>, per-patch accuracy "
            f"<b>{100 * m['per_patch_accuracy']:.1f}%</b> (chance {100 / max(1, len(classes)):.0f}%)."
            + "".join(f"<br><span style='color:#b35900'><b>Reference coverage:</b> {html.escape(a)}.</span>"
                      for a in coverage_advice((man.get("training_input") or {}).get("reference_coverage")))
        )
        self.cm_image.set_matrix(np.asarray(m["confusion_per_image"]), classes)
        self.cm_patch.set_matrix(np.asarray(m["confusion_per_patch"]), classes)
        prec, rec = precision_recall(np.asarray(m["confusion_per_image"]))
        self.pr.setRowCount(len(classes))
        for r, c in enumerate(classes):
            for k, v in enumerate([c, _pct(prec[r]), _pct(rec[r])]):
                self.pr.setItem(r, k, QTableWidgetItem(v))
        self.pr.resizeColumnsToContents()
        self.pr.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.wrong.clear()
        root = Path(man.get("training", {}).get("data", {}).get("root", self.state.data_dir))
        for w in m.get("misclassified", []):
            it = QListWidgetItem(f"{w['path']}: {w['true']} -> predicted {w['predicted']}")
            it.setData(256, str(root / w["path"]))
            it.setToolTip(str(root / w["path"]))
            self.wrong.addItem(it)
        if not self.wrong.count():
            self.wrong.addItem("(none)")
        self.calib.setText(calibration_text(man))
        self.reliability.set_calibration(man.get("calibration"))
        self._show_delivery(man)

    def _show_delivery(self, man: dict[str, Any]) -> None:
        """The delivery-chain rows measured on the test split (or one line saying they were not)."""
        d = man.get("delivery_chain_measured") or {}
        rows = d.get("rows") or {}
        self.delivery.setVisible(bool(rows))
        if not rows:
            why = {"off": "training ran with --no-delivery-check",
                   "interrupted": "the check was cancelled"}.get((man.get("training") or {}).get("delivery_check"), "")
            self.delivery_caption.setText("<b>Re-saved test scans:</b> not measured" + (f" ({why})." if why else "."))
            return
        unseen = (f"unseen: {d.get('unseen_scans')} negative scans" if d.get("unseen_scans")
                  else "unseen: not measured")
        self.delivery_caption.setText(f"<b>Re-saved test scans</b> ({d.get('known_scans')}; {unseen})")
        self.delivery_caption.setToolTip(
            "Verdicts on the test split's scans as scanned, re-saved as JPEG at quality 90 and 75 and resampled "
            "x0.8 and x1.25; 'Unseen': your negative scans (no reference scanner) answered unknown or inconclusive"
            + ("" if d.get("unseen_scans") else " (none given: put some in DATA_DIR/_other/)"))
        ordered = ordered_rows(rows)
        self.delivery.setRowCount(len(ordered))
        self.delivery.setVerticalHeaderLabels([name for name, _row in ordered])
        self.delivery.setFixedHeight(self.delivery.horizontalHeader().sizeHint().height() + 18 * len(rows) + 4)
        for r, (_name, row) in enumerate(ordered):
            for k, (_title, key, _tip) in enumerate(DELIVERY_COLUMNS):
                v = row.get(key)
                self.delivery.setItem(r, k, QTableWidgetItem(f"{100 * v:.0f}%" if isinstance(v, (int, float))
                                                             else "n/a"))

    @Slot(QListWidgetItem)
    def _on_wrong_item_activated(self, item: QListWidgetItem) -> None:
        path = item.data(256)
        if path:
            model = self.state.trained_path
            self.open_scan_requested.emit(path, model if model and Path(model).is_file() else "")


def calibration_text(man: dict[str, Any]) -> str:
    """The calibration and unknown-scanner lines of the Evaluate page (from the manifest)."""
    cal = man.get("calibration")
    if not cal:
        lines = ["<b>Calibration:</b> not available for this model."]
    elif not cal.get("calibrated"):
        lines = [f"<b>Calibration:</b> not calibrated ({cal.get('reason') or 'no reason recorded'})."]
    else:
        lines = [f"<b>Calibration</b> ({cal.get('method')}, fitted on {cal.get('fitted_on')}, "
                 f"{cal.get('n_images')} images): ECE {cal.get('ece_before', float('nan')):.3f} before, "
                 f"{cal.get('ece_after', float('nan')):.3f} after; temperature {cal.get('temperature')}."]
        if bins_from_block(cal) is None:
            lines.append("Reliability diagram: not available for this model (saved without per-bin data).")
    osd = man.get("open_set")
    if not osd:
        lines.append("<b>Unknown-scanner threshold:</b> not available for this model.")
    elif not osd.get("method"):
        lines.append(f"<b>Unknown-scanner threshold:</b> not fitted ({osd.get('reason') or 'no reason recorded'}).")
    else:
        th = osd.get("thresholds", {}) or {}
        lines.append(f"<b>Unknown-scanner threshold</b> ({osd.get('method')}, fitted on {osd.get('fitted_on')}): "
                     + ", ".join(f"{k} {v}" for k, v in th.items()))
        if osd.get("threshold_rule"):
            import html

            lines.append(f"Rule: {html.escape(str(osd['threshold_rule']))}")
        measured = rejection_text(osd)
        if measured:
            lines.append(measured)
    return "<br>".join(lines)


def rejection_text(osd: dict[str, Any]) -> str | None:
    """The rejection rates measured when the threshold was set (manifest ``open_set``), in one line.

    Held-out outlier designs (never trained on) and the lab's held-out negatives
    stand for scanners the model never saw; the validation images (and, for
    ``gauss-image``, the cross-fitted training images) for its own.
    """
    s = osd.get("threshold_samples") or {}
    parts = []
    if isinstance(s.get("outlier_rejected_at_threshold"), (int, float)):
        parts.append(f"{100 * s['outlier_rejected_at_threshold']:.0f}% of {s.get('n_outlier_designs')} held-out "
                     "virtual outlier designs rejected")
    neg = osd.get("negatives") or {}
    if isinstance(neg.get("rejected"), (int, float)):
        parts.append(f"{100 * neg['rejected']:.0f}% of your {neg.get('n_images')} held-out negative scans rejected")
    known = s.get("known_rejected_at_threshold", s.get("known_val_rejected_at_threshold"))
    if isinstance(known, (int, float)):
        n = (s.get("n_crossfit_images") or 0) + (s.get("n_val_images") or 0)
        parts.append(f"{100 * known:.0f}% of {n} of your own scanners' images rejected")
    if not parts:
        return None
    return "<b>Measured at this threshold:</b> " + "; ".join(parts) + "."


DELIVERY_COLUMNS = (  # header, row key, tooltip
    ("Right", "known_right", "test scans attributed to their own scanner"),
    ("Wrong", "known_wrong", "test scans attributed to another of your scanners"),
    ("Unk./inc.", "known_unknown_or_inconclusive", "test scans answered unknown or inconclusive"),
    ("Unseen", "unseen_rejected", "your negative scans (no reference scanner) answered unknown or inconclusive"),
)


def _pct(v: float) -> str:
    return "-" if v != v else f"{100 * v:.1f}%"


class SavePage(QWizardPage):
    """Name and notes; the model goes to the user's library (asks before overwriting)."""

    model_saved = Signal(str)

    def __init__(self, state: WizardState) -> None:
        super().__init__()
        self.state = state
        self.setTitle("6. Save")
        self.setSubTitle("The model goes to your model library and appears in the main window's model list.")
        self.name = QLineEdit()
        self.notes = QPlainTextEdit()
        self.notes.setPlaceholderText("What this model is for, where the reference scans came from...")
        self.where = QLabel()
        self.where.setWordWrap(True)
        self.error = QLabel()
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #b00020")
        form = QFormLayout(self)
        form.addRow("Name", self.name)
        form.addRow("Notes", self.notes)
        form.addRow("", self.where)
        form.addRow("", self.error)
        self.name.textChanged.connect(self._on_name_text_changed)
        self.saved_path: str | None = None
        self.confirm_overwrite = self._ask_overwrite  # tests replace it (no modal dialog)

    def initializePage(self) -> None:  # noqa: N802 - Qt override
        if not self.name.text():
            self.name.setText(Path(self.state.data_dir).name or "my-scanners")
        self._on_name_text_changed(self.name.text())

    @Slot(str)
    def _on_name_text_changed(self, text: str) -> None:
        self.error.setText("")
        try:
            p = library_path(text)
        except LibraryError as e:
            self.where.setText(str(e))
        else:
            self.where.setText(f"Will be saved as {p}" + ("  (exists: you will be asked)" if p.exists() else ""))
        self.completeChanged.emit()

    def _ask_overwrite(self, path: Path) -> bool:
        ans = QMessageBox.question(self, "Overwrite model?", f"A model is already saved as\n{path}\nReplace it?")
        return ans == QMessageBox.StandardButton.Yes

    def save(self) -> bool:
        """Save to the library; False (with the reason shown) when it did not happen."""
        name = self.name.text().strip()
        try:
            dest = library_path(name)
            overwrite = False
            if dest.exists():
                if not self.confirm_overwrite(dest):
                    self.error.setText("Not saved: choose another name.")
                    return False
                overwrite = True
            out = save_to_library(self.state.trained_path, name, self.notes.toPlainText(), overwrite=overwrite)
        except ScanLabError as e:
            self.error.setText(f"Not saved: {e}")
            return False
        self.saved_path = str(out)
        self.model_saved.emit(str(out))
        return True

    def validatePage(self) -> bool:  # noqa: N802 - Qt override
        return self.save()

    def isComplete(self) -> bool:  # noqa: N802 - Qt override
        return bool(self.name.text().strip())
