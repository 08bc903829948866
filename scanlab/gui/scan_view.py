"""The scan view: a scan with its reliability heatmap drawn over it.

This module is the one place that sets ScanLab's display conventions: arrays are
``(row, col)`` (``imageAxisOrder='row-major'``, set once in :mod:`scanlab.gui.app`),
y points down (``invertY``), the aspect ratio is locked, and the heatmap is its own
``ImageItem`` with fixed levels ``(0, 1)`` where NaN (pixels no sub-image covers, or
pixels above the threshold) is drawn transparent.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, QTimer, Signal, Slot

from scanlab.core.colormap import COLORMAPS as COLORMAPS  # the one list, re-exported to the panels
from scanlab.core.colormap import (
    DEFAULT_COLORMAP,
    colorize_classes,
    hatch_no_evidence,
    stripe_for,
)
from scanlab.gui.pyramid import build_pyramid, pick_level

"""Colormaps offered for the heatmap (perceptual ones first; CET-D1 is diverging)."""

def hatch_colour_for(colormap: str) -> tuple[int, int, int]:
    """Stripe colour of the no-evidence hatching over ``colormap`` (the same as the PNG export and the report)."""
    return stripe_for(colormap)
BLINK_INTERVAL_MS = 500
CROP_MIN_PIXELS = 4_000_000
"""Pyramid levels larger than this are drawn around the visible area only."""


def base_levels(pixels: np.ndarray) -> tuple[float, float]:
    """Display levels for a scan's dtype (passed explicitly: no auto-level scan of 16 MP)."""
    return (0.0, 65535.0) if pixels.dtype == np.uint16 else (0.0, 255.0)


def thresholded(rel: np.ndarray, threshold: float | None) -> np.ndarray:
    """Keep reliabilities at or below ``threshold``; everything else becomes NaN.

    Parameters
    ----------
    rel : ndarray of shape (M, N), float32
        Reliability map with NaN where uncovered.
    threshold : float or None
        ``None`` (or >= 1) keeps every covered pixel.

    Returns
    -------
    ndarray of shape (M, N), float32
    """
    if threshold is None or threshold >= 1.0:
        return rel
    with np.errstate(invalid="ignore"):
        return np.where(rel <= threshold, rel, np.float32(np.nan)).astype(np.float32, copy=False)


class ScanView(pg.GraphicsLayoutWidget):
    """A pan/zoom view of one scan and its heatmap, with a colour bar for the 0..1 scale.

    Signals
    -------
    cursor_moved(object)
        ``(row, col)`` of the image pixel under the mouse, or ``None`` outside it.
    """

    cursor_moved = Signal(object)

    def __init__(self, parent: object | None = None) -> None:
        super().__init__(parent)
        self.setBackground("#202020")
        self.view: pg.ViewBox = self.addViewBox(row=0, col=0)
        self.view.invertY(True)  # row 0 at the top (pyqtgraph's default puts it at the bottom)
        self.view.setAspectLocked(True)
        self.view.setMenuEnabled(False)
        # No autoDownsample: it re-averages the full scan on the GUI thread at every
        # zoom step; the view draws a pyramid level instead (see scanlab.gui.pyramid).
        self.base = pg.ImageItem(axisOrder="row-major")
        self.heat = pg.ImageItem(axisOrder="row-major")
        self.heat.setZValue(10)
        # "no evidence" drawn as neutral grey hatching above the heatmap, never as a reliability colour
        self.noev = pg.ImageItem(axisOrder="row-major")
        self.noev.setZValue(11)
        self._noev_mask: np.ndarray | None = None
        self._categorical: int | None = None  # number of classes when the map holds class indices
        self.view.addItem(self.base)
        self.view.addItem(self.heat)
        self.view.addItem(self.noev)
        self.colorbar = pg.ColorBarItem(
            values=(0, 1),
            colorMap=pg.colormap.get(DEFAULT_COLORMAP),
            label="reliability",
            interactive=False,
            colorMapMenu=False,
            width=18,
        )
        self.colorbar.setImageItem(self.heat)
        self.addItem(self.colorbar, row=0, col=1)

        self._pixels: np.ndarray | None = None
        self._levels: list[np.ndarray] = []
        self._level = 0
        self._crop = (0, 1, 0, 1)
        self._rel: np.ndarray | None = None
        self._opacity = 0.6
        self._threshold: float | None = None
        self._colormap = DEFAULT_COLORMAP
        self._reversed = False
        self._overlay_on = True
        self.heat.setOpacity(self._opacity)

        self._blink = QTimer(self)
        self._blink.setInterval(BLINK_INTERVAL_MS)
        self._blink.timeout.connect(self._on_blink_timeout)
        self.scene().sigMouseMoved.connect(self._on_scene_mouse_moved)
        self.view.sigRangeChanged.connect(self._on_view_range_changed)

    # -- content ----------------------------------------------------------------------

    @property
    def pixels(self) -> np.ndarray | None:
        """The scan shown, (M, N, 3) uint8/uint16, or ``None``."""
        return self._pixels

    @property
    def reliability(self) -> np.ndarray | None:
        """The (unthresholded) map shown, (M, N) float32, or ``None``."""
        return self._rel

    def set_scan(
        self,
        pixels: np.ndarray | None,
        *,
        pyramid: list[np.ndarray] | None = None,
        fit: bool = True,
    ) -> None:
        """Show a scan (``None`` clears the view); levels are passed, never auto-scanned.

        ``pyramid`` (from :func:`scanlab.gui.pyramid.build_pyramid`, ideally built off
        the GUI thread) is computed here when not given.
        """
        same_shape = (
            self._pixels is not None and pixels is not None and self._pixels.shape == pixels.shape
        )
        self._pixels = pixels
        if pixels is None:
            self._levels = []
            self.base.clear()
            self.set_map(None)
            return
        self._levels = pyramid if pyramid else build_pyramid(pixels)
        self._level = min(self._level, len(self._levels) - 1)
        if fit and not same_shape:
            self.fit()
            self._level = self._wanted_level()
        self._render_base()

    def set_map(
        self, rel: np.ndarray | None, *, categorical: int | None = None, label: str = "reliability",
        high_is_suspicious: bool = False,
    ) -> None:
        """Show a map of the scan's shape (``None`` hides the overlay).

        ``categorical``: the map holds class indices (NaN = none) of that many
        classes, drawn in class colours instead of the 0..1 colour scale.
        ``label``: what the values are, written along the colour bar.
        ``high_is_suspicious``: high values are the suspicious ones (the unknown score),
        so the colour scale runs the other way: on every map dark means "does not fit".
        """
        self._rel = rel
        self._categorical = categorical
        if high_is_suspicious != self._reversed:
            self._reversed = high_is_suspicious
            self.colorbar.setColorMap(self._cmap())
            self.colorbar.setLevels((0.0, 1.0))
        self.colorbar.getAxis("left").setLabel(label)
        self.colorbar.setVisible(not categorical)  # class colours have their legend in the controls
        self._render_heat()

    @property
    def colorbar_label(self) -> str:
        """The words along the colour bar (what the map's values are)."""
        return self.colorbar.getAxis("left").labelText

    @property
    def no_evidence(self) -> np.ndarray | None:
        """(M, N) bool pixels without sensor evidence (hatched), or ``None`` when there are none."""
        return self._noev_mask

    def set_no_evidence(self, mask: np.ndarray | None) -> None:
        """Pixels without sensor evidence, drawn as grey hatching (``None``: none)."""
        self._noev_mask = mask if mask is not None and mask.any() else None
        self._render_heat()

    def _crop_for_view(self) -> tuple[int, int, int, int]:
        """Region (r0, r1, c0, c1) of the scan to draw, in full-resolution pixels.

        Small levels are drawn whole. A large level (zoomed in on a big scan) is drawn
        around the visible area only, with a margin, so rendering stays at most a few
        megapixels; panning outside the margin redraws.
        """
        h, w = self._pixels.shape[:2]
        f = 2**self._level
        if (h // f) * (w // f) <= CROP_MIN_PIXELS:
            return 0, h, 0, w
        r = self.view.viewRect()
        mx, my = r.width() * 0.5, r.height() * 0.5
        c0 = max(0, int(r.left() - mx) // f * f)
        r0 = max(0, int(r.top() - my) // f * f)
        c1 = min(w, int(r.right() + mx) + f)
        r1 = min(h, int(r.bottom() + my) + f)
        return r0, max(r1, r0 + f), c0, max(c1, c0 + f)

    def _render_base(self) -> None:
        if self._pixels is None:
            return
        f = 2**self._level
        self._crop = r0, r1, c0, c1 = self._crop_for_view()
        img = self._levels[self._level][r0 // f : -(-r1 // f), c0 // f : -(-c1 // f)]
        self.base.setImage(img, levels=base_levels(img), autoLevels=False)
        # A level-k crop still spans its full-resolution coordinates.
        self.base.setRect(QRectF(c0, r0, img.shape[1] * f, img.shape[0] * f))

    def _render_heat(self) -> None:
        if self._rel is None or self._pixels is None:
            self.heat.clear()
            self.noev.clear()
            return
        f = 2**self._level
        r0, r1, c0, c1 = self._crop
        if self._categorical:
            idx = np.nan_to_num(self._rel[r0:r1:f, c0:c1:f], nan=-1).astype(np.int64)
            shown = colorize_classes(idx, self._categorical)
            self.heat.setLookupTable(None)
            self.heat.setImage(shown, levels=(0, 255), autoLevels=False)
        else:
            shown = thresholded(self._rel[r0:r1:f, c0:c1:f], self._threshold)
            self.heat.setImage(shown, levels=(0.0, 1.0), autoLevels=False)
            self.heat.setColorMap(self._cmap())
        self.heat.setRect(QRectF(c0, r0, shown.shape[1] * f, shown.shape[0] * f))
        self.heat.setVisible(self._overlay_on)
        if self._noev_mask is None:
            self.noev.clear()
        else:
            m = self._noev_mask[r0:r1:f, c0:c1:f]
            # coloured stripes, the scan visible between them: no evidence never reads as a map value
            self.noev.setImage(hatch_no_evidence(np.zeros(m.shape + (4,), np.uint8), m, period=max(6, 12 // f),
                                                 stripe_colour=self.hatch_colour(), base_alpha=140),
                               levels=(0, 255), autoLevels=False)
            self.noev.setRect(QRectF(c0, r0, m.shape[1] * f, m.shape[0] * f))
        self.noev.setVisible(self._overlay_on)

    def _wanted_level(self) -> int:
        if not self._levels or self.view.width() <= 0:
            return 0
        return pick_level(self.view.viewRect().width() / self.view.width(), len(self._levels))

    @Slot(object, object, object)
    def _on_view_range_changed(self, _view: object, _range: object, _changed: object) -> None:
        if self._pixels is None:
            return
        level = self._wanted_level()
        r0, r1, c0, c1 = self._crop
        vis = self.view.viewRect()
        h, w = self._pixels.shape[:2]
        inside = (r0 <= max(0, vis.top()) and min(h, vis.bottom()) <= r1) and (
            c0 <= max(0, vis.left()) and min(w, vis.right()) <= c1
        )
        if level != self._level or not inside:
            self._level = level
            self._render_base()
            self._render_heat()

    # -- overlay controls ---------------------------------------------------------------

    @property
    def opacity(self) -> float:
        """Heatmap opacity, 0..1."""
        return self._opacity

    def set_opacity(self, value: float) -> None:
        """Set the heatmap opacity (0 transparent .. 1 opaque)."""
        self._opacity = float(min(1.0, max(0.0, value)))
        self.heat.setOpacity(self._opacity)

    @property
    def threshold(self) -> float | None:
        """Only pixels with reliability <= threshold are drawn; ``None`` draws all."""
        return self._threshold

    def set_threshold(self, value: float | None) -> None:
        """Set (or clear with ``None``) the reliability threshold."""
        self._threshold = None if value is None else float(value)
        self._render_heat()

    @property
    def colormap(self) -> str:
        """Name of the heatmap colormap."""
        return self._colormap

    @property
    def scale_reversed(self) -> bool:
        """True while a map whose high values are suspicious (the unknown score) is drawn."""
        return self._reversed

    def _cmap(self) -> pg.ColorMap:
        cm = pg.colormap.get(self._colormap)
        if self._reversed:  # a new map: pg.colormap.get caches, so reversing in place would change every user
            table = cm.getLookupTable(nPts=256, alpha=True, mode="byte")[::-1].copy()
            cm = pg.ColorMap(np.linspace(0.0, 1.0, 256), table)
        return cm

    def set_colormap(self, name: str) -> None:
        """Use one of :data:`COLORMAPS` (any pyqtgraph colormap name works)."""
        self._colormap = name
        self.colorbar.setColorMap(self._cmap())  # also re-colours self.heat
        self.colorbar.setLevels((0.0, 1.0))
        self._render_heat()  # the hatching's stripes change with the colour map

    def hatch_colour(self) -> tuple[int, int, int]:
        """Stripe colour of the no-evidence hatching: one the current colour map never draws."""
        return hatch_colour_for(self._colormap)

    @property
    def overlay_visible(self) -> bool:
        """Whether the heatmap is drawn (the toggle/blink state)."""
        return self._overlay_on

    def set_overlay_visible(self, on: bool) -> None:
        """Show or hide the heatmap over the scan."""
        self._overlay_on = bool(on)
        self.heat.setVisible(self._overlay_on)
        self.noev.setVisible(self._overlay_on)

    def set_blinking(self, on: bool) -> None:
        """Alternate between scan and overlay every :data:`BLINK_INTERVAL_MS`."""
        if on:
            self._blink.start()
        else:
            self._blink.stop()
            self.set_overlay_visible(True)

    def is_blinking(self) -> bool:
        """True while blinking."""
        return self._blink.isActive()

    @Slot()
    def _on_blink_timeout(self) -> None:
        self.set_overlay_visible(not self._overlay_on)

    # -- navigation -----------------------------------------------------------------------

    def fit(self) -> None:
        """Zoom so the whole scan is visible."""
        if self._pixels is not None:
            h, w = self._pixels.shape[:2]
            self.view.setRange(xRange=(0, w), yRange=(0, h), padding=0.02)

    def actual_size(self) -> None:
        """Zoom to 1:1 (one scan pixel per screen pixel) around the current centre."""
        if self._pixels is None:
            return
        rect = self.view.viewRect()
        size = self.view.size()
        cx, cy = rect.center().x(), rect.center().y()
        hw, hh = size.width() / 2.0, size.height() / 2.0
        self.view.setRange(xRange=(cx - hw, cx + hw), yRange=(cy - hh, cy + hh), padding=0)

    def zoom_in(self) -> None:
        """Zoom in by a step around the centre."""
        self.view.scaleBy((0.8, 0.8))

    def zoom_out(self) -> None:
        """Zoom out by a step around the centre."""
        self.view.scaleBy((1.25, 1.25))

    @Slot(object)
    def _on_scene_mouse_moved(self, pos: QPointF) -> None:
        if self._pixels is None or not self.view.sceneBoundingRect().contains(pos):
            self.cursor_moved.emit(None)
            return
        p = self.view.mapSceneToView(pos)
        row, col = int(np.floor(p.y())), int(np.floor(p.x()))
        h, w = self._pixels.shape[:2]
        self.cursor_moved.emit((row, col) if 0 <= row < h and 0 <= col < w else None)
