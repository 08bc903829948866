"""The Qt adapter over plain-data ROIs: drawing tools, selection, editing, undo/redo.

The ROIs themselves are :class:`scanlab.core.case.rois.ROI` objects (image (row, col)
coordinates) kept by a :class:`RoiStore` (the case, edited through the
``services.cases`` ROI commands, which log every change and allocate the ids); this
layer is a view of them: it draws them on a :class:`ScanView` and turns mouse
gestures into store commands. Every command is a ``QUndoCommand`` so Ctrl+Z /
Ctrl+Shift+Z undo and redo it, and is announced with ``edited(action, roi)`` so the
case controller can recompute statistics.

Tools: select (V; click an ROI to select it, drag the view to pan), rectangle (R;
drag), polygon (P; click the vertices, double-click or Enter closes it) and
freehand lasso (L; drag). The selected drawn ROI gets handles: drag its body to
move it, a handle to resize it (rectangle) or move a vertex (polygon, lasso);
Delete removes it. Suggested regions are machine-made and are not edited, only
reviewed (or deleted).
"""

from __future__ import annotations

import copy
from typing import Protocol

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, QRectF, Qt, Signal, Slot
from PySide6.QtGui import QPainter, QUndoCommand, QUndoStack

from scanlab.core.case.rois import ROI, contains, simplify
from scanlab.gui.scan_view import ScanView

TOOLS = ("select", "rect", "polygon", "lasso")
DRAWN_PEN = pg.mkPen("#ff00ff", width=2, cosmetic=True)
SUGGESTED_PEN = pg.mkPen("#ffa000", width=2, style=Qt.PenStyle.DashLine, cosmetic=True)
SELECTED_PEN = pg.mkPen("#00e5ff", width=3, cosmetic=True)
PREVIEW_PEN = pg.mkPen("#00ff80", width=2, style=Qt.PenStyle.DotLine, cosmetic=True)
MIN_SIZE = 2.0  # image pixels: smaller gestures are clicks, not regions


class _DrawSurface(pg.GraphicsObject):
    """Invisible item over the scan that receives drawing gestures while a tool is active."""

    def __init__(self, layer: RoiLayer) -> None:
        super().__init__()
        self.layer = layer
        self._rect = QRectF()
        self.setZValue(20)

    def set_bounds(self, h: int, w: int) -> None:
        self.prepareGeometryChange()
        self._rect = QRectF(0, 0, w, h)

    def boundingRect(self) -> QRectF:  # noqa: N802 - Qt override
        return self._rect

    def paint(self, p: QPainter, *args: object) -> None:
        pass

    def mouseDragEvent(self, ev: object) -> None:  # noqa: N802 - pyqtgraph override
        if ev.button() != Qt.MouseButton.LeftButton or self.layer.tool not in ("rect", "lasso"):
            ev.ignore()
            return
        ev.accept()
        p = ev.pos()
        pt = (p.y(), p.x())
        if ev.isStart():
            self.layer.begin_stroke((ev.buttonDownPos().y(), ev.buttonDownPos().x()))
        self.layer.extend_stroke(pt)
        if ev.isFinish():
            self.layer.finish_stroke()

    def mouseClickEvent(self, ev: object) -> None:  # noqa: N802 - pyqtgraph override
        if ev.button() != Qt.MouseButton.LeftButton or self.layer.tool != "polygon":
            ev.ignore()
            return
        ev.accept()
        p = ev.pos()
        if ev.double():
            self.layer.finish_polygon()
        else:
            self.layer.add_polygon_vertex((p.y(), p.x()))


class RoiStore(Protocol):
    """Where the ROIs live: the case, edited through ``services.cases`` commands (one id allocator)."""

    def rois(self) -> list[ROI]:
        """Copies of the stored ROIs."""

    def add(self, roi: ROI) -> ROI:
        """Store ``roi`` (an id <= 0 or a taken one gets a fresh id); returns the stored copy."""

    def remove(self, roi_id: int) -> None:
        """Delete one ROI."""

    def move(self, roi_id: int, points: list[tuple[float, float]]) -> ROI:
        """Replace one ROI's outline; returns the stored copy."""


class _Command(QUndoCommand):
    """One ROI edit, done and undone through the layer's store.

    ``action`` is ``added`` (``roi`` is the new ROI), ``removed`` (``roi`` is the deleted
    one, restored with its id on undo) or ``changed`` (``before``/``after`` outlines).
    """

    def __init__(self, layer: RoiLayer, text: str, action: str, roi: ROI,
                 before: list | None = None, after: list | None = None) -> None:
        super().__init__(text)
        self.layer, self.action, self.roi = layer, action, copy.deepcopy(roi)
        self.before, self.after = before, after

    def _do(self, action: str, points: list | None) -> None:
        store = self.layer.store
        if store is None:
            return
        if action == "added":
            self.roi = store.add(self.roi)  # keeps its id when re-done after an undo
        elif action == "removed":
            store.remove(self.roi.id)
        else:
            self.roi = store.move(self.roi.id, points)
        self.layer._reload(action, self.roi)

    def redo(self) -> None:
        self._do(self.action, self.after)

    def undo(self) -> None:
        self._do({"added": "removed", "removed": "added"}.get(self.action, self.action), self.before)


class RoiLayer(QObject):
    """ROIs of the scan shown in a :class:`ScanView`, as plain data with Qt items on top.

    Signals
    -------
    edited(str, object)
        ``(action, roi)`` after a change: ``added``, ``removed`` or ``changed``
        (also when an undo/redo makes it).
    selection_changed(object)
        The selected ROI id, or ``None``.
    """

    edited = Signal(str, object)
    selection_changed = Signal(object)

    def __init__(self, view: ScanView) -> None:
        super().__init__(view)
        self.view = view
        self.undo_stack = QUndoStack(self)
        self._rois: list[ROI] = []  # a mirror of the store, for drawing and hit tests
        self.store: RoiStore | None = None
        self._curves: dict[int, tuple[pg.PlotCurveItem, pg.TextItem]] = {}
        self._editor: pg.ROI | None = None
        self._selected: int | None = None
        self._stroke: list[tuple[float, float]] = []
        self.tool = "select"
        self.enabled = False
        self.surface = _DrawSurface(self)
        self.surface.setVisible(False)
        view.view.addItem(self.surface)
        self.preview = pg.PlotCurveItem(pen=PREVIEW_PEN)
        self.preview.setZValue(25)
        view.view.addItem(self.preview)
        view.scene().sigMouseClicked.connect(self._on_scene_clicked)

    # -- state ------------------------------------------------------------------------------

    def rois(self) -> list[ROI]:
        """Deep copies of the current ROIs (plain data, safe to hand to a worker)."""
        return copy.deepcopy(self._rois)

    def roi(self, roi_id: int) -> ROI | None:
        """The live ROI with this id (for reading; change it through the layer)."""
        return next((r for r in self._rois if r.id == roi_id), None)

    @property
    def selected(self) -> int | None:
        """Id of the selected ROI, or None."""
        return self._selected

    def set_store(self, store: RoiStore | None, shape: tuple[int, int] | None, *, enabled: bool = True) -> None:
        """Show another scan's ROIs (clears undo history, selection and any stroke).

        The layer is a view of ``store``: every edit is a store command, and the
        drawn outlines are re-read from it after each one. ``None``: nothing to edit.
        """
        self.undo_stack.clear()
        self._stroke = []
        self.preview.setData([], [])
        self.store = store
        self._rois = store.rois() if store is not None else []
        self.enabled = enabled and shape is not None and store is not None
        if shape is not None:
            self.surface.set_bounds(*shape)
        self._selected = None
        self._redraw()
        self.set_tool(self.tool)

    def reload(self) -> None:
        """Re-read the store after a change that is not an edit (statistics, a review): no undo entry."""
        self._rois = self.store.rois() if self.store is not None else []
        if self._selected is not None and self.roi(self._selected) is None:
            self._selected = None
        self._redraw()

    def set_tool(self, tool: str) -> None:
        """Switch the drawing tool (``select``, ``rect``, ``polygon``, ``lasso``)."""
        if tool not in TOOLS:
            raise ValueError(f"unknown ROI tool {tool!r}")
        self.tool = tool
        self._stroke = []
        self.preview.setData([], [])
        self.surface.setVisible(self.enabled and tool != "select")

    # -- edits (all undoable) ------------------------------------------------------------------

    def _push(self, command: _Command) -> ROI | None:
        if self.store is None:
            return None
        self.undo_stack.push(command)  # runs redo(): the store does the edit
        return copy.deepcopy(command.roi)

    def add(self, roi: ROI) -> ROI | None:
        """Add a drawn ROI (the store assigns its id); None without a store."""
        out = self._push(_Command(self, f"add {roi.kind}", "added", roi))
        if out is not None:
            self.select(out.id)
        return out

    def remove(self, roi_id: int | None = None) -> None:
        """Delete an ROI (default: the selected one)."""
        rid = self._selected if roi_id is None else roi_id
        roi = self.roi(rid) if rid is not None else None
        if roi is not None:
            self._push(_Command(self, f"delete ROI {rid}", "removed", roi))

    def move_points(self, roi_id: int, points: list[tuple[float, float]]) -> None:
        """Replace an ROI's outline (move, resize, vertex drag); statistics become stale."""
        old = self.roi(roi_id)
        new = [(float(r), float(c)) for r, c in points]
        if old is None or [tuple(p) for p in old.points] == new:
            return
        self._push(_Command(self, f"edit ROI {roi_id}", "changed", old, list(old.points), new))

    def _reload(self, action: str, roi: ROI) -> None:
        """Mirror the store after an edit, then announce it."""
        self._rois = self.store.rois() if self.store is not None else []
        if self._selected is not None and self.roi(self._selected) is None:
            self._selected = None
        self._redraw()
        self.edited.emit(action, copy.deepcopy(self.roi(roi.id) or roi))

    # -- gestures --------------------------------------------------------------------------------

    def begin_stroke(self, pt: tuple[float, float]) -> None:
        """Start a rectangle or lasso drag at image point ``pt`` (row, col)."""
        self._stroke = [pt]

    def extend_stroke(self, pt: tuple[float, float]) -> None:
        """Add a point to the drag; the preview follows."""
        if not self._stroke:
            self._stroke = [pt]
        if self.tool == "rect":
            self._stroke = [self._stroke[0], pt]
            (r0, c0), (r1, c1) = self._stroke
            ys, xs = [r0, r0, r1, r1, r0], [c0, c1, c1, c0, c0]
        else:
            self._stroke.append(pt)
            ys, xs = [p[0] for p in self._stroke], [p[1] for p in self._stroke]
        self.preview.setData(np.asarray(xs, float), np.asarray(ys, float))

    def finish_stroke(self) -> ROI | None:
        """End the drag: a rectangle or lasso ROI when it is big enough."""
        pts, self._stroke = self._stroke, []
        self.preview.setData([], [])
        if len(pts) < 2:
            return None
        if self.tool == "rect":
            (r0, c0), (r1, c1) = pts[0], pts[-1]
            if abs(r1 - r0) < MIN_SIZE or abs(c1 - c0) < MIN_SIZE:
                return None
            return self.add(ROI.rect(0, round(r0), round(c0), round(r1), round(c1)))
        pts = simplify(pts, max(1.0, self._pixel_size() * 3))
        if len(pts) < 3:
            return None
        return self.add(ROI(0, "lasso", pts))

    def add_polygon_vertex(self, pt: tuple[float, float]) -> None:
        """Polygon tool: one more vertex."""
        self._stroke.append(pt)
        ys, xs = [p[0] for p in self._stroke], [p[1] for p in self._stroke]
        self.preview.setData(np.asarray(xs, float), np.asarray(ys, float))

    def finish_polygon(self) -> ROI | None:
        """Polygon tool: close the outline (double-click or Enter)."""
        pts = simplify(self._stroke, 0.5)  # a double-click repeats its last point
        self._stroke = []
        self.preview.setData([], [])
        if len(pts) < 3:
            return None
        return self.add(ROI(0, "polygon", pts))

    def _pixel_size(self) -> float:
        vb = self.view.view
        return float(vb.viewRect().width() / max(1, vb.width()))

    @Slot(object)
    def _on_scene_clicked(self, ev: object) -> None:
        if self.tool != "select" or not self.enabled or ev.button() != Qt.MouseButton.LeftButton:
            return
        p = self.view.view.mapSceneToView(ev.scenePos())
        hits = [r.id for r in self._rois if contains(r, p.y(), p.x())]
        # the last hit is the smallest drawn-on-top one in practice: pick it, cycling on repeat
        if hits and self._selected in hits:
            self.select(hits[(hits.index(self._selected) + 1) % len(hits)] if len(hits) > 1 else self._selected)
        else:
            self.select(hits[-1] if hits else None)

    # -- drawing ---------------------------------------------------------------------------------

    def select(self, roi_id: int | None) -> None:
        """Select an ROI (handles appear on drawn ones) or clear the selection."""
        if roi_id is not None and self.roi(roi_id) is None:
            roi_id = None
        changed = roi_id != self._selected
        self._selected = roi_id
        self._redraw()
        if changed:
            self.selection_changed.emit(roi_id)

    def _redraw(self) -> None:
        vb = self.view.view
        for curve, label in self._curves.values():
            vb.removeItem(curve)
            vb.removeItem(label)
        self._curves = {}
        if self._editor is not None:
            vb.removeItem(self._editor)
            self._editor = None
        for r in self._rois:
            pts = r.outline()
            ys = np.asarray([p[0] for p in pts] + [pts[0][0]], float)
            xs = np.asarray([p[1] for p in pts] + [pts[0][1]], float)
            pen = SELECTED_PEN if r.id == self._selected else (SUGGESTED_PEN if r.suggested else DRAWN_PEN)
            curve = pg.PlotCurveItem(xs, ys, pen=pen)
            curve.setZValue(15)
            label = pg.TextItem(str(r.id), color="#ffffff", fill=pg.mkBrush(0, 0, 0, 160), anchor=(0, 0))
            top = int(np.argmin(ys))  # at the outline's top vertex, on the region
            label.setPos(float(xs[top]), float(ys[top]))
            label.setZValue(16)
            vb.addItem(curve)
            vb.addItem(label)
            self._curves[r.id] = (curve, label)
        sel = self.roi(self._selected) if self._selected is not None else None
        if sel is not None and not sel.suggested and self.enabled:
            self._editor = self._make_editor(sel)
            vb.addItem(self._editor)

    def _make_editor(self, r: ROI) -> pg.ROI:
        if r.kind == "rect":
            r0, c0, r1, c1 = r.bbox()
            ed = pg.RectROI((c0, r0), (c1 - c0, r1 - r0), pen=SELECTED_PEN, movable=True, rotatable=False)
            ed.addScaleHandle((0, 0), (1, 1))
        else:
            ed = pg.PolyLineROI([(c, rr) for rr, c in r.points], closed=True, pen=SELECTED_PEN, movable=True)
        ed.setZValue(30)
        ed.sigRegionChangeFinished.connect(self._on_editor_change_finished)
        return ed

    @Slot(object)
    def _on_editor_change_finished(self, ed: pg.ROI) -> None:
        if self._selected is None:
            return
        r = self.roi(self._selected)
        if r is None:
            return
        if r.kind == "rect":
            pos, size = ed.pos(), ed.size()
            pts = [(pos.y(), pos.x()), (pos.y() + size.y(), pos.x() + size.x())]
        else:
            pts = [(q.y(), q.x()) for q in (ed.mapToParent(pos) for _name, pos in ed.getLocalHandlePositions())]
        self.move_points(r.id, pts)

