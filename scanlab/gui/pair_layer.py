"""Linked outlines of a layer's pairs (copy-move) on the scan view: hover one end, both light up.

Each pair is two outlines (its source and target ends, image (row, col) outlines from
:class:`scanlab.services.layer_runs.LayerRun`) in the pair's colour, the colour the PNG
export and the report use, with a dashed line between their centres and the pair's
number. Hovering either end (or its number) lights up both: a thicker, brighter outline
and a translucent fill, so the partner is found at once on a full page.
"""

from __future__ import annotations

from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import QObject, QPointF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QPainterPath, QPen
from PySide6.QtWidgets import QGraphicsLineItem, QGraphicsPathItem, QGraphicsSceneHoverEvent

from scanlab.gui.scan_view import ScanView

Z_PAIRS = 18  # above the heatmap (10), the hatching (11) and the ROI outlines (15, 16)


def _path(outline: list) -> QPainterPath:
    """A closed path through (row, col) points, in the view's (x = col, y = row) coordinates."""
    path = QPainterPath()
    pts = [(float(c), float(r)) for r, c in outline]
    path.moveTo(*pts[0])
    for x, y in pts[1:]:
        path.lineTo(x, y)
    path.closeSubpath()
    return path


class PairEnd(QGraphicsPathItem):
    """One end of one pair; hovering it lights up the pair (it tells its :class:`PairLayer`)."""

    def __init__(self, layer: PairLayer, index: int, end: str, outline: list) -> None:
        super().__init__(_path(outline))
        self.layer, self.index, self.end = layer, index, end
        self.setAcceptHoverEvents(True)
        self.setZValue(Z_PAIRS)
        self.setToolTip(layer.tooltip(index, end))

    def hoverEnterEvent(self, event: QGraphicsSceneHoverEvent) -> None:  # noqa: N802 - Qt override
        """The pointer is on this end: light up the pair."""
        self.layer.highlight(self.index)
        super().hoverEnterEvent(event)

    def hoverLeaveEvent(self, event: QGraphicsSceneHoverEvent) -> None:  # noqa: N802 - Qt override
        """The pointer left: back to the plain outlines."""
        if self.layer.lit == self.index:
            self.layer.highlight(None)
        super().hoverLeaveEvent(event)


class PairLayer(QObject):
    """Draws the pairs of the map on screen on a :class:`ScanView`.

    Signals
    -------
    hovered(object)
        The 1-based number of the pair lit up, or ``None``.
    """

    hovered = Signal(object)

    def __init__(self, view: ScanView) -> None:
        super().__init__(view)
        self.view = view
        self.pairs: list[dict[str, Any]] = []
        self.lit: int | None = None
        self._items: dict[int, tuple[PairEnd, PairEnd, QGraphicsLineItem, pg.TextItem]] = {}

    def tooltip(self, index: int, end: str) -> str:
        """Words for one end: which pair, which end, the test's figures."""
        p = next((q for q in self.pairs if q["index"] == index), {})
        other = "target" if end == "source" else "source"
        return (f"copy-move pair {index}, {end} end (its {other} end lights up with it)\n"
                f"q {p.get('q', float('nan')):.4f} against the null's lowest {p.get('q_null', float('nan')):.4f} "
                f"(empirical p = {p.get('p_value', float('nan')):.3g}); which end is the original is not decided")

    def set_pairs(self, pairs: list[dict[str, Any]] | None) -> None:
        """Draw these pairs (``None`` or empty: none), replacing the ones drawn."""
        vb = self.view.view
        for items in self._items.values():
            for it in items:
                vb.removeItem(it)
        self._items, self.lit = {}, None
        self.pairs = list(pairs or [])
        for p in self.pairs:
            i = int(p["index"])
            src, tgt = PairEnd(self, i, "source", p["source_outline"]), PairEnd(self, i, "target", p["target_outline"])
            a, b = src.path().boundingRect().center(), tgt.path().boundingRect().center()
            link = QGraphicsLineItem(a.x(), a.y(), b.x(), b.y())
            link.setZValue(Z_PAIRS - 1)
            link.setAcceptHoverEvents(False)
            label = pg.TextItem(str(i), color="#ffffff", anchor=(0.5, 0.5))
            label.setPos(QPointF((a.x() + b.x()) / 2, (a.y() + b.y()) / 2))
            label.setZValue(Z_PAIRS + 1)
            for it in (src, tgt, link, label):
                vb.addItem(it)
            self._items[i] = (src, tgt, link, label)
            self._style(i, False)

    def ends(self, index: int) -> tuple[PairEnd, PairEnd]:
        """The two outline items of pair ``index``."""
        src, tgt, _link, _label = self._items[index]
        return src, tgt

    def highlight(self, index: int | None) -> None:
        """Light up pair ``index`` (both ends), or none."""
        if index == self.lit:
            return
        old, self.lit = self.lit, index
        if old in self._items:
            self._style(old, False)
        if index in self._items:
            self._style(index, True)
        self.hovered.emit(index)

    def is_lit(self, item: PairEnd) -> bool:
        """Whether ``item`` is drawn lit up (its pen is the wide one)."""
        return item.pen().widthF() > 3

    def _style(self, index: int, lit: bool) -> None:
        p = next(q for q in self.pairs if q["index"] == index)
        rgb = tuple(int(v) for v in p.get("colour") or (230, 25, 75))
        colour = QColor(*rgb).lighter(150) if lit else QColor(*rgb)
        pen = QPen(colour, 5 if lit else 2)
        pen.setCosmetic(True)  # the same width at every zoom
        fill = QBrush(QColor(*rgb, 90)) if lit else QBrush(Qt.BrushStyle.NoBrush)
        src, tgt, link, label = self._items[index]
        for end in (src, tgt):
            end.setPen(pen)
            end.setBrush(fill)
        dash = QPen(colour, 3 if lit else 1.5, Qt.PenStyle.DashLine)
        dash.setCosmetic(True)
        link.setPen(dash)
        label.fill = pg.mkBrush(*rgb, 230)
        label.update()

    def centre(self, index: int, end: str) -> tuple[float, float]:
        """(row, col) of the centre of one end's outline."""
        item = self.ends(index)[0 if end == "source" else 1]
        c = item.path().boundingRect().center()
        return float(c.y()), float(c.x())


__all__ = ["PairEnd", "PairLayer"]
