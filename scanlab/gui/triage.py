"""The triage view: a ``scanlab batch`` results table, sortable and filterable, in the app.

The table can hold 10^5-10^6 rows, so nothing here is per-row Python at open time:
the columns shown are read once into NumPy arrays (:func:`load_columns`), sorting is
one ``argsort`` and filtering one boolean mask over them, and the Qt model only maps
visible row numbers to positions (a QSortFilterProxyModel would call back into Python
O(n log n) times per sort). Double-clicking a row asks the main window to open the page:
with the map the batch stored for it (``batch --maps``) when there is one, else to analyse it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt, Signal, Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from scanlab.core.errors import ScanLabError
from scanlab.core.io.containers import make_ref
from scanlab.services.analysis import AnalysisResult
from scanlab.services.batch_table import read_columns

# (column in the table, header, kind): kind "s" text, "f" float (3 decimals), "i" integer
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("name", "File", "s"), ("page", "Page", "i"), ("status", "Status", "s"), ("verdict", "Verdict", "s"),
    ("label", "Scanner", "s"), ("confidence", "Confidence", "f"), ("suspicion", "Suspicion", "f"),
    ("unknown_score", "Unknown", "f"), ("low_fraction", "Low share", "f"), ("region_area", "Region px", "i"),
    ("region_p_value", "Region p", "f"), ("error", "Error", "s"),
)
ANY = "(any)"
_Index = QModelIndex | QPersistentModelIndex


def load_columns(path: str | Path) -> dict[str, np.ndarray]:
    """The columns the view shows (plus ``input`` and ``ref``), as arrays: object for text, float64 with NaN for null.

    ``ref`` is what opens the row's page: the file, or for a page inside a PDF or
    multi-page TIFF its reference (``DOC.pdf#page=2&image=1``), which every loader reads.
    """
    want = ["input", "container", "image_index", "page", "status", "verdict", "label", "confidence", "suspicion", "unknown_score",
            "low_fraction", "region_area", "region_p_value", "error", "map_path"]
    cols = read_columns(path, want)
    cols["name"] = np.asarray([Path(p).name for p in cols["input"]], dtype=object)
    cols["ref"] = np.asarray([_ref(i, c, p, k) for i, c, p, k in
                              zip(cols["input"], cols["container"], cols["page"], cols["image_index"], strict=True)],
                             dtype=object)
    return cols


def _ref(path: str, container: str | None, page: float, image: float) -> str:
    """The reference of a row's page (a PDF names its image; a TIFF page is the page)."""
    if not container or not np.isfinite(page):
        return str(path)
    return make_ref(path, int(page), int(image) if container == "pdf" and np.isfinite(image) else None)


class TriageModel(QAbstractTableModel):
    """Rows of a results table; ``order`` holds the visible rows (after filter and sort)."""

    def __init__(self, cols: dict[str, np.ndarray], parent: Any = None) -> None:
        super().__init__(parent)
        self.cols = cols
        self.n = len(cols["input"])
        self.order = np.arange(self.n)
        self._sort: tuple[int, Qt.SortOrder] | None = None
        self._mask = np.ones(self.n, dtype=bool)

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else len(self.order)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return COLUMNS[section][1]
        return None

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        key, _, kind = COLUMNS[index.column()]
        v = self.cols[key][self.order[index.row()]]
        if role == Qt.ItemDataRole.ToolTipRole and key in ("name", "error"):
            return self.cols["input"][self.order[index.row()]] if key == "name" else v
        if role != Qt.ItemDataRole.DisplayRole:
            return None
        if kind == "s":
            return "" if v is None else str(v)
        if v is None or not np.isfinite(v):
            return ""
        return f"{v:.3f}" if kind == "f" else str(int(v))

    def input_at(self, row: int) -> str:
        """What opens visible row ``row``: its file, or its reference inside a PDF / multi-page TIFF."""
        return str(self.cols["ref"][self.order[row]])

    def map_at(self, row: int, results_dir: Path) -> Path | None:
        """The stored map of visible row ``row`` (``batch --maps``), when it was written and still exists."""
        rel = self.cols["map_path"][self.order[row]]
        if not rel:
            return None
        p = results_dir / str(rel)
        return p if p.is_file() else None

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        self._sort = (column, order)
        self._apply()

    def set_mask(self, mask: np.ndarray) -> None:
        """Show only rows where ``mask`` is true (order kept)."""
        self._mask = mask
        self._apply()

    def _apply(self) -> None:
        self.beginResetModel()
        idx = np.flatnonzero(self._mask)
        if self._sort is not None:
            key, _, kind = COLUMNS[self._sort[0]]
            v = self.cols[key][idx]
            if kind == "s":
                v = np.asarray(["" if x is None else str(x) for x in v])
                o = np.argsort(v, kind="stable")
            else:
                o = np.argsort(np.where(np.isfinite(v), v, np.inf), kind="stable")  # empty cells last
            if self._sort[1] == Qt.SortOrder.DescendingOrder:
                # descending but empty cells still last, ties in table order
                finite = np.ones(len(v), bool) if kind == "s" else np.isfinite(v[o])
                o = np.concatenate([o[finite][::-1], o[~finite]])
            idx = idx[o]
        self.order = idx
        self.endResetModel()


class TriageView(QWidget):
    """Filters, counts, a suspicion histogram and the table of one ``results.parquet``.

    Signals
    -------
    page_requested(str)
        The input path of a double-clicked row without a stored map (the main window opens and analyses it).
    stored_page_requested(str, str)
        The input path and the stored ``.h5`` map of a double-clicked row (the main window
        shows that map and does not analyse).
    add_to_case_requested(list)
        The input paths of the selected rows ("Add to case").
    """

    page_requested = Signal(str)
    stored_page_requested = Signal(str, str)
    add_to_case_requested = Signal(list)

    def __init__(self, path: str | Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.path = Path(path)
        self.setWindowTitle(f"Batch results: {self.path}")
        self.model = TriageModel(load_columns(self.path), self)
        c = self.model.cols
        self.verdict = QComboBox()
        self.verdict.addItems([ANY, *sorted({str(v) for v in c["verdict"] if v is not None})])
        self.label = QComboBox()
        self.label.addItems([ANY, *sorted({str(v) for v in c["label"] if v is not None})])
        self.min_suspicion = QDoubleSpinBox()
        self.min_suspicion.setRange(0.0, 1.0)
        self.min_suspicion.setSingleStep(0.05)
        self.errors_only = QCheckBox("Errors only")
        self.add_button = QPushButton("Add to case")
        self.add_button.setToolTip("Analyse the selected pages and store them in the open case")
        bar = QHBoxLayout()
        for w in (QLabel("Verdict"), self.verdict, QLabel("Scanner"), self.label, QLabel("Suspicion >="),
                  self.min_suspicion, self.errors_only, self.add_button):
            bar.addWidget(w)
        bar.addStretch(1)
        self.counts = QLabel()
        self.counts.setWordWrap(True)
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSortingEnabled(True)
        self.table.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
        self.table.verticalHeader().setDefaultSectionSize(20)  # fixed height: no per-row measuring
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setColumnWidth(0, 220)  # file names; the rest fit the default width
        self.histogram = pg.PlotWidget()
        self.histogram.setMaximumHeight(140)
        self.histogram.setLabel("bottom", "suspicion")
        self.histogram.setLabel("left", "pages")
        lay = QVBoxLayout(self)
        lay.addLayout(bar)
        lay.addWidget(self.counts)
        lay.addWidget(self.histogram)
        lay.addWidget(self.table, 1)
        self.verdict.currentTextChanged.connect(self._on_filter_changed)
        self.label.currentTextChanged.connect(self._on_filter_changed)
        self.min_suspicion.valueChanged.connect(self._on_filter_changed)
        self.errors_only.toggled.connect(self._on_filter_changed)
        self.table.doubleClicked.connect(self._on_double_clicked)
        self.add_button.clicked.connect(self._on_add_clicked)
        self._on_filter_changed()

    def mask(self) -> np.ndarray:
        """Rows passing the current filters."""
        c = self.model.cols
        m = np.ones(self.model.n, dtype=bool)
        if self.verdict.currentText() != ANY:
            m &= c["verdict"] == self.verdict.currentText()
        if self.label.currentText() != ANY:
            m &= c["label"] == self.label.currentText()
        if self.min_suspicion.value() > 0:
            with np.errstate(invalid="ignore"):
                m &= c["suspicion"] >= self.min_suspicion.value()
        if self.errors_only.isChecked():
            m &= c["status"] != "analysed"
        return m

    @Slot()
    def _on_filter_changed(self, *_: Any) -> None:
        m = self.mask()
        self.model.set_mask(m)
        c = self.model.cols
        per_verdict = _counts(c["verdict"][m], c["status"][m])
        per_label = _counts(c["label"][m])
        self.counts.setText(f"{int(m.sum())} of {self.model.n} pages. Verdicts: {per_verdict}. Scanners: {per_label}.")
        s = c["suspicion"][m]
        s = s[np.isfinite(s)]
        hist, edges = np.histogram(s, bins=20, range=(0.0, 1.0))
        self.hist_counts = hist
        self.histogram.clear()
        self.histogram.addItem(pg.BarGraphItem(x0=edges[:-1], x1=edges[1:], height=hist, brush=(80, 120, 200)))

    @Slot(QModelIndex)
    def _on_double_clicked(self, index: QModelIndex) -> None:
        stored = self.model.map_at(index.row(), self.path.parent)
        if stored is not None:
            self.stored_page_requested.emit(self.model.input_at(index.row()), str(stored))
        else:
            self.page_requested.emit(self.model.input_at(index.row()))

    def selected_inputs(self) -> list[str]:
        """Input paths of the selected rows, in view order, each once."""
        rows = sorted({i.row() for i in self.table.selectionModel().selectedRows()})
        return list(dict.fromkeys(self.model.input_at(r) for r in rows))

    @Slot()
    def _on_add_clicked(self) -> None:
        paths = self.selected_inputs()
        if paths:
            self.add_to_case_requested.emit(paths)



def stored_result(path: str, map_path: str, state: Any) -> tuple[AnalysisResult | None, str]:
    """The page ``path`` with its stored batch map, for the app's current model (no network run).

    Returns ``(result, "")``, or ``(None, reason)`` when the map cannot stand for an
    analysis (an older map, another model, a changed file): the caller analyses then.
    """
    from scanlab.services.models import get_model
    from scanlab.services.stored_maps import load_stored_result

    try:
        model = get_model(state.model)
        return load_stored_result(map_path, path, model, model_spec=state.model, device=state.device), ""
    except ScanLabError as e:
        return None, str(e)

def _counts(values: np.ndarray, status: np.ndarray | None = None) -> str:
    """"attributed 12, unknown 3, failed 1": counts of each value (a null verdict counts as its status)."""
    if not len(values):
        return "none"
    null = np.equal(values, None)
    filled = np.where(null, status if status is not None else "none", values).astype(str)
    u, n = np.unique(filled, return_counts=True)
    return ", ".join(f"{k} {int(v)}" for k, v in sorted(zip(u, n, strict=True), key=lambda t: -t[1]))
