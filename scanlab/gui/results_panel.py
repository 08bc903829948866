"""Results of the current scan: label, per-class probabilities and votes, provenance."""

from __future__ import annotations

import math
import os

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from scanlab.core.evidence.verdict import warnings_beside_reason
from scanlab.services.analysis import ATTRIBUTION, UNKNOWN, AnalysisResult
from scanlab.services.layer_runs import layer_of
from scanlab.services.layers import LAYERS

DEMO_NOTICE = (
    "Demonstration model: trained only on simulated (virtual) scanners. It has never seen a real "
    "scanner; train or fine-tune on your lab's own reference scans (scanlab train REFERENCE_DIR, "
    "one folder per scanner) before attributing real evidence."
)
_BAR = pg.mkBrush("#4c78a8")
_BAR_PREDICTED = pg.mkBrush("#f58518")
_BAR_TOP_NOT_ATTRIBUTED = pg.mkBrush("#9e9e9e")  # the top class of a scan no known scanner made: no highlight


def _selectable(text: str = "") -> QLineEdit:
    """A read-only line the analyst can copy from (hashes, paths)."""
    w = QLineEdit(text)
    w.setReadOnly(True)
    w.setFrame(False)
    w.setCursorPosition(0)
    return w


def map_quantity(what: str | None) -> str:
    """What the values of a "Map of" choice are, in words (cursor readout and colour bar)."""
    if what == UNKNOWN:
        return "unknown score"
    if what == ATTRIBUTION:
        return "best-fitting scanner"
    if layer_of(what) is not None:
        layer = LAYERS.get(layer_of(what))
        return f"{layer.title.lower() if layer else layer_of(what)} score"
    return f"reliability of {what}" if what else "reliability"


ERROR_COLOUR = "#d62728"


def pixel_readout(
    pixels: np.ndarray | None,
    rel: np.ndarray | None,
    pos: tuple[int, int] | None,
    *,
    what: str | None = None,
    classes: list[str] | None = None,
    no_evidence: np.ndarray | None = None,
) -> str:
    """One line describing the pixel at ``pos``: coordinates, value and what the map shows there.

    Parameters
    ----------
    pixels, rel : ndarray or None
        The scan and the map drawn over it (NaN = no value).
    pos : (row, col) or None
        The pixel under the cursor.
    what : str, optional
        What ``rel`` is a map of (the "Map of" choice): a class name (its
        reliability), :data:`ATTRIBUTION` (class indices) or :data:`UNKNOWN`
        (unknown-scanner scores). ``None``: a reliability map.
    classes : list of str, optional
        Class names, to name the best-fitting scanner of the attribution map.
    no_evidence : ndarray of bool, optional
        Pixels without sensor evidence: said as "no evidence" rather than "not covered".
    """
    if pixels is None or pos is None:
        return "-"
    row, col = pos
    value = ", ".join(str(int(v)) for v in np.atleast_1d(pixels[row, col]))
    head = f"row {row}, col {col}   RGB ({value})   "
    name = map_quantity(what)
    if rel is None:
        return head + f"{name} no map"
    v = float(rel[row, col])
    if math.isnan(v):
        noev = no_evidence is not None and bool(no_evidence[row, col])
        return head + ("no evidence" if noev else f"{name} not covered")
    if what == ATTRIBUTION:
        k = int(round(v))
        return head + f"best fit: {classes[k] if classes and 0 <= k < len(classes) else f'class {k + 1}'}"
    return head + f"{name} {v:.3f}"


def tick_labels(classes: list[str], budget: int = 44) -> list[str]:
    """Bar-chart labels that fit under the bars (the table below shows the full names).

    Full names when they fit; else without their common prefix ("vscan-01" -> "01");
    else the class numbers 1..N.
    """
    if sum(len(c) + 2 for c in classes) <= budget:
        return list(classes)
    prefix = os.path.commonprefix(classes)
    short = [c[len(prefix):] for c in classes]
    if all(short) and sum(len(c) + 2 for c in short) <= budget:
        return short
    return [str(i + 1) for i in range(len(classes))]


class ResultsPanel(QWidget):
    """Shows one :class:`AnalysisResult` (or nothing) and the pixel under the cursor."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        # shown before the verdict: what the model is and whether the input suits it
        self.demo_notice = QLabel(DEMO_NOTICE)
        self.demo_notice.setWordWrap(True)
        self.demo_notice.setStyleSheet("background:#fff3cd; color:#664d03; padding:4px; border-radius:3px;")
        self.demo_notice.setVisible(False)
        self.warnings_value = QLabel("")
        self.warnings_value.setWordWrap(True)
        self.warnings_value.setStyleSheet("color:#b35c00;")
        self.warnings_value.setVisible(False)
        self.verdict_value = QLabel("-")
        self.verdict_value.setWordWrap(True)
        vf = self.verdict_value.font()
        vf.setPointSizeF(vf.pointSizeF() * 1.25)
        vf.setBold(True)
        self.verdict_value.setFont(vf)
        self.verdict_value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.confidence_value = QLabel("-")
        self.confidence_value.setWordWrap(True)
        self.label_value = QLabel("-")
        font = self.label_value.font()
        font.setBold(True)
        self.label_value.setFont(font)
        self.label_value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.label_value.setWordWrap(True)  # "none (no window with evidence)" must not widen the dock

        self.chart = pg.PlotWidget(background=None)
        self.chart.setMinimumHeight(120)
        self.chart.setMaximumHeight(180)
        self.chart.setMouseEnabled(x=False, y=False)
        self.chart.hideButtons()
        self.chart.setMenuEnabled(False)
        self.chart.setYRange(0, 1, padding=0)
        self.chart.setLabel("left", "probability")
        self.bars = pg.BarGraphItem(x=[], height=[], width=0.6, brush=_BAR)
        self.chart.addItem(self.bars)

        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["class", "probability", "votes"])
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setMinimumHeight(110)
        self.table.setMaximumHeight(260)

        self.patches_value = QLabel("-")
        self.grid_value = QLabel("-")
        self.time_value = QLabel("-")
        self.model_value = QLabel("-")
        self.model_value.setWordWrap(True)
        self.sha_value = _selectable()
        self.sha_value.setToolTip("SHA-256 of the evidence file as read for this analysis")
        self.cursor_value = QLabel("-")
        self.cursor_value.setWordWrap(True)

        details = QGroupBox("Provenance")
        form = QFormLayout(details)
        form.addRow("Patches used", self.patches_value)
        form.addRow("Map grid", self.grid_value)
        form.addRow("Compute", self.time_value)
        form.addRow("Model", self.model_value)
        form.addRow("SHA-256", self.sha_value)

        lay = QVBoxLayout(self)
        lay.addWidget(self.demo_notice)
        lay.addWidget(self.warnings_value)
        lay.addWidget(QLabel("Verdict"))
        lay.addWidget(self.verdict_value)
        lay.addWidget(self.confidence_value)
        top = QHBoxLayout()
        self.top_label = QLabel("Top class:")
        top.addWidget(self.top_label)
        top.addWidget(self.label_value, 1)
        lay.addLayout(top)
        lay.addWidget(self.chart)
        lay.addWidget(self.table)
        lay.addWidget(details)
        lay.addWidget(QLabel("Under the cursor"))
        lay.addWidget(self.cursor_value)
        lay.addStretch(1)

    def show_result(self, result: AnalysisResult | None, message: str | None = None, *,
                    error: bool = False) -> None:
        """Fill the panel from ``result``; ``None`` clears it (showing ``message``, red when ``error``)."""
        if result is None:
            self.verdict_value.setText(message or "-")
            # never the previous verdict's colour: a failure in green read as a finding
            self.verdict_value.setStyleSheet(f"color:{ERROR_COLOUR};" if error else "")
            self.label_value.setText("-")
            self.confidence_value.setText("-")
            self.warnings_value.setVisible(False)
            self.bars.setOpts(x=[], height=[])
            self.table.setRowCount(0)
            for w in (self.patches_value, self.grid_value, self.time_value, self.model_value):
                w.setText("-")
            self.sha_value.setText("")
            return
        probs, votes = result.probabilities(), result.votes()
        classes = result.classes
        self._show_verdict(result)
        self.label_value.setText(result.json_label or "none (no window with evidence)")
        v = result.verdict
        attributed = v is None or v.verdict == "attributed"
        # as in the report: outside an attribution the top class is a fit, not a finding
        font = self.label_value.font()
        font.setBold(attributed)
        self.label_value.setFont(font)
        self.label_value.setStyleSheet("" if attributed else "color:#6e6e6e;")
        self.top_label.setText("Top class:" if attributed else "Top known class (not an attribution):")
        top_brush = _BAR_PREDICTED if attributed else _BAR_TOP_NOT_ATTRIBUTED
        # no window with evidence: the windows' probabilities measure nothing, so none is shown
        evidence = result.json_label is not None
        top = result.label if evidence else None
        brushes = [top_brush if c == top else _BAR for c in classes]
        self.bars.setOpts(
            x=list(range(len(classes))), height=[probs[c] if evidence else 0.0 for c in classes], brushes=brushes
        )
        self.chart.getAxis("bottom").setTicks([list(enumerate(tick_labels(classes)))])
        self.chart.setXRange(-0.6, len(classes) - 0.4, padding=0)
        self.table.setRowCount(len(classes))
        for i, c in enumerate(classes):
            cells = (c, f"{probs[c]:.3f}" if evidence else "-", str(votes[c]))
            for j, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if j:
                    item.setTextAlignment(
                        Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
                    )
                if c == top:
                    f = item.font()
                    f.setBold(True)
                    item.setFont(f)
                self.table.setItem(i, j, item)
        req = result.request
        self.patches_value.setText(str(int(result.analysis.classification.n_patches)))
        self.grid_value.setText(f"sub-image {req.sub[0]} x {req.sub[1]}, stride {req.stride[0]}")
        self.time_value.setText(
            f"{result.compute_s:.2f} s on {result.device} ({result.analysis.engine})"
        )
        s = result.model.summary()
        self.model_value.setText(
            f"{s['name']} ({s['architecture']} v{s['architecture_version']}, "
            f"weights {str(s.get('weights_sha256') or '?')[:12]})"
        )
        self.model_value.setToolTip(s["path"])
        self.sha_value.setText(result.scan.sha256)
        self.sha_value.setCursorPosition(0)

    def _show_verdict(self, result: AnalysisResult) -> None:
        """Input warnings first, then the verdict in words, calibrated confidence and the vote."""
        v = result.verdict
        self.demo_notice.setVisible(bool(result.evidence.demonstration))
        warns = warnings_beside_reason(v.warnings, v.reason) if v is not None else []
        self.warnings_value.setText("\n".join(f"\u26a0 {w['message']}" for w in warns))
        self.warnings_value.setVisible(bool(warns))
        if v is None:
            self.verdict_value.setText(result.label)
            self.verdict_value.setStyleSheet("")
            self.confidence_value.setText("-")
            return
        colour = {"attributed": "#1a7f37", "inconclusive": "#9a6700", "unknown": "#cf222e"}[v.verdict]
        self.verdict_value.setText(v.in_words(result.label))
        self.verdict_value.setStyleSheet(f"color:{colour};")
        lo, hi = v.vote_interval
        n = int(result.analysis.classification.n_patches)
        k = int(round(v.vote_fraction * n))
        conf = "-" if v.confidence is None else f"{v.confidence:.2f}"
        cal = "calibrated" if v.calibrated else "<b>uncalibrated</b> (raw softmax mean)"
        # a probability beside "not any known scanner" must not read as certainty about
        # the scan's origin: outside an attribution it is only the top class among the known
        first = (f"Confidence {conf} ({cal})" if v.verdict == "attributed" else
                 "No class fit: no window carries sensor evidence" if result.json_label is None else
                 f"Fit of the top known class ({result.label}): {conf}"
                 f"{'' if v.calibrated else ' (<b>uncalibrated</b> raw softmax mean)'}, not an attribution")
        parts = [
            first,
            f"Votes {k} of {n} = {v.vote_fraction:.0%} (95% interval {lo:.0%}-{hi:.0%})",
        ]
        if v.unknown_score is not None:
            parts.append(f"Unknown score {v.unknown_score:.2f} (threshold {v.thresholds.get('unknown', float('nan')):.2f})")
        elif result.evidence.scorer is None:
            parts.append("No unknown-scanner check: this model has no open-set scorer")
        if v.n_no_evidence:
            parts.append(f"{v.n_no_evidence} window(s) without sensor evidence left out")
        self.confidence_value.setText("<br>".join(parts))

    def show_cursor(self, text: str) -> None:
        """Update the pixel-under-cursor line."""
        self.cursor_value.setText(text)
