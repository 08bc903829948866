"""The review panel: ROI tools, the ROI list with statistics, verdict and note per ROI.

The panel mirrors plain-data ROIs handed to :meth:`ReviewPanel.show_rois`; it
never changes them itself, it asks through signals (the case controller decides).
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QAbstractItemView,
    QButtonGroup,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from scanlab.core.case.rois import ROI, VERDICTS
from scanlab.services.layer_cases import pair_of

TOOL_LABELS = (("select", "Select (V)"), ("rect", "Rect (R)"), ("polygon", "Polygon (P)"), ("lasso", "Lasso (L)"))
UNREVIEWED = "(not reviewed)"


def _fmt(v: object, spec: str = ".3f") -> str:
    return format(v, spec) if isinstance(v, (int, float)) else "-"


def stats_text(r: ROI) -> str:
    """Multi-line summary of an ROI's statistics (empty while they are computed)."""
    s = r.stats or {}
    if "inside" not in s:
        return "statistics: computing..."
    ins, ring = s.get("inside") or {}, s.get("ring") or {}
    bs = s.get("best_scanner") or {}
    wt = s.get("window_test") or {}
    p = wt.get("p_value")
    return (_pair_text(r) + f"area {s.get('area')} px; reliability inside mean {_fmt(ins.get('mean'))}, median "
            f"{_fmt(ins.get('median'))}, min {_fmt(ins.get('min'))}\n"
            f"ring of equal area: mean {_fmt(ring.get('mean'))}, median {_fmt(ring.get('median'))}\n"
            f"below {s.get('threshold')}: {_fmt(100 * s['below_threshold_fraction'], '.1f') if s.get('below_threshold_fraction') is not None else '-'}%, "
            f"no evidence: {_fmt(100 * s['no_evidence_fraction'], '.1f') if s.get('no_evidence_fraction') is not None else '-'}%\n"
            f"best-fitting scanner: {bs.get('label', '-')}\n"
            f"Mann-Whitney (windows {wt.get('n_inside', 0)} in / {wt.get('n_outside', 0)} out): "
            + (f"p = {p:.3g}" if p is not None else "too few windows"))


def _pair_text(r: ROI) -> str:
    """The first line of a layer pair's end (copy-move): which pair, its partner, the test's figures."""
    p = pair_of(r)
    if not p:
        return ""
    pv = p.get("p_value")
    return (f"{r.stats['layer']} pair {p.get('pair')}, {p.get('end')} end; partner ROI {p.get('partner')}; "
            f"noise correlation {_fmt(p.get('correlation'))}, p = {pv:.3g}\n" if isinstance(pv, (int, float)) else
            f"{r.stats['layer']} pair {p.get('pair')}, {p.get('end')} end; partner ROI {p.get('partner')}\n")


class ReviewPanel(QWidget):
    """Tools, ROI table, verdict and note.

    Signals
    -------
    tool_requested(str)
        A tool button was pressed.
    roi_selected(object)
        A table row was chosen (ROI id).
    review_submitted(int, object, str)
        ``(roi id, verdict or None, note)`` from Apply.
    delete_requested()
        The Delete button.
    """

    tool_requested = Signal(str)
    roi_selected = Signal(object)
    review_submitted = Signal(int, object, str)
    delete_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.case_label = QLabel("No case open: File > New case or Open case")
        self.case_label.setWordWrap(True)
        self.tool_buttons: dict[str, QToolButton] = {}
        self._group = QButtonGroup(self)
        self._group.setExclusive(True)
        tools = QHBoxLayout()
        for name, text in TOOL_LABELS:
            b = QToolButton()
            b.setText(text)
            b.setCheckable(True)
            b.setProperty("tool", name)
            self._group.addButton(b)
            tools.addWidget(b)
            self.tool_buttons[name] = b
        self.tool_buttons["select"].setChecked(True)
        edit = QHBoxLayout()
        self.undo_button, self.redo_button = QToolButton(), QToolButton()
        self.delete_button = QPushButton("Delete (Del)")
        edit.addWidget(self.undo_button)
        edit.addWidget(self.redo_button)
        edit.addWidget(self.delete_button)
        edit.addStretch(1)
        self.unreviewed_label = QLabel("")
        self.table = QTableWidget(0, 5)
        self.table.setHorizontalHeaderLabels(["#", "source", "verdict", "mean in", "ring"])
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.stats_label = QLabel("")
        self.stats_label.setWordWrap(True)
        self.stats_label.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.stats_label.setMinimumHeight(110)
        self.stats_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.verdict_combo = QComboBox()
        self.verdict_combo.addItems([UNREVIEWED, *VERDICTS])
        self.note_edit = QPlainTextEdit()
        self.note_edit.setPlaceholderText("Note for this region (goes into the report)")
        self.note_edit.setMaximumHeight(70)
        self.apply_button = QPushButton("Apply verdict and note")
        lay = QVBoxLayout(self)
        for w in (self.case_label,):
            lay.addWidget(w)
        lay.addLayout(tools)
        lay.addLayout(edit)
        lay.addWidget(self.unreviewed_label)
        lay.addWidget(self.table, 2)
        lay.addWidget(self.stats_label, 1)
        lay.addWidget(self.verdict_combo)
        lay.addWidget(self.note_edit)
        lay.addWidget(self.apply_button)
        self._rois: list[ROI] = []
        self._group.buttonClicked.connect(self._on_tool_button_clicked)
        self.table.itemSelectionChanged.connect(self._on_table_selection_changed)
        self.apply_button.clicked.connect(self._on_apply_clicked)
        self.delete_button.clicked.connect(self.delete_requested)
        self.set_enabled(False)

    def set_undo_actions(self, undo: QAction, redo: QAction) -> None:
        """Show the undo stack's actions as buttons."""
        self.undo_button.setDefaultAction(undo)
        self.redo_button.setDefaultAction(redo)

    def set_enabled(self, on: bool) -> None:
        """Tools and review widgets work only for a scan that belongs to the open case."""
        for w in (*self.tool_buttons.values(), self.delete_button, self.verdict_combo, self.note_edit,
                  self.apply_button, self.table):
            w.setEnabled(on)

    def set_tool(self, tool: str) -> None:
        """Mirror the active tool."""
        self.tool_buttons[tool].setChecked(True)

    def show_rois(self, rois: list[ROI], selected: int | None) -> None:
        """Fill the table; keep the selection on ``selected``."""
        self._rois = rois
        self.table.blockSignals(True)
        self.table.setRowCount(len(rois))
        for i, r in enumerate(rois):
            ins = (r.stats.get("inside") or {}).get("mean")
            ring = (r.stats.get("ring") or {}).get("mean")
            kind = f"pair {pair_of(r)['pair']} ({pair_of(r)['end']})" if pair_of(r) else "suggested"
            vals = [str(r.id), kind if r.suggested else r.kind, r.verdict or UNREVIEWED, _fmt(ins), _fmt(ring)]
            for j, v in enumerate(vals):
                self.table.setItem(i, j, QTableWidgetItem(v))
        self.table.resizeColumnsToContents()
        self.table.clearSelection()
        self.table.blockSignals(False)
        n = sum(1 for r in rois if r.suggested and not r.reviewed)
        self.unreviewed_label.setText(f"{n} suggested region(s) not reviewed yet" if n else
                                      "every suggested region is reviewed" if any(r.suggested for r in rois) else
                                      "no region suggested (the audit log says why)")
        self.show_selected(selected)

    def show_selected(self, roi_id: int | None) -> None:
        """Select the row of ``roi_id`` and show its verdict, note and statistics."""
        r = next((x for x in self._rois if x.id == roi_id), None)
        self.table.blockSignals(True)
        self.table.clearSelection()
        if r is not None:
            self.table.selectRow(self._rois.index(r))
        self.table.blockSignals(False)
        self.stats_label.setText(stats_text(r) if r is not None else "Select or draw a region")
        self.verdict_combo.setCurrentText(r.verdict if r is not None and r.verdict else UNREVIEWED)
        self.note_edit.setPlainText(r.note if r is not None else "")

    @Slot(object)
    def _on_tool_button_clicked(self, button: QToolButton) -> None:
        self.tool_requested.emit(button.property("tool"))

    @Slot()
    def _on_table_selection_changed(self) -> None:
        rows = {i.row() for i in self.table.selectedItems()}
        if rows:
            self.roi_selected.emit(self._rois[min(rows)].id)

    @Slot()
    def _on_apply_clicked(self) -> None:
        rows = {i.row() for i in self.table.selectedItems()}
        if not rows:
            return
        v = self.verdict_combo.currentText()
        self.review_submitted.emit(self._rois[min(rows)].id, None if v == UNREVIEWED else v,
                                   self.note_edit.toPlainText())
