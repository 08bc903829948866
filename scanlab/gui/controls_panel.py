"""Analysis and overlay controls: model, device, grid, mapped class, overlay look."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QStandardItemModel
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from scanlab.core.colormap import class_colors
from scanlab.core.engine.engines import available_devices
from scanlab.core.errors import ScanLabError
from scanlab.gui.scan_view import COLORMAPS, DEFAULT_COLORMAP, hatch_colour_for
from scanlab.services.analysis import ATTRIBUTION, UNKNOWN
from scanlab.services.layer_runs import layer_key, layer_of, model_free_layers
from scanlab.services.viewstate import ANALYSIS_FIELDS, OVERLAY_FIELDS, ViewState

DEVICES = ("auto", "cpu", "cuda", "mps")
OPEN_MODEL = "__open__"  # combo data of the "Open model file..." entry


def no_evidence_legend(colormap: str, *, short: bool = False) -> str:
    """The legend line of the no-evidence hatching, in the stripe colour drawn over ``colormap``.

    ``short``: one line that fits under a list of classes (a wrapped last line of a
    rich-text label in a form layout is cut off).
    """
    r, g, b = hatch_colour_for(colormap)
    swatch = f'<span style="color:#{r:02x}{g:02x}{b:02x}; background:#969696">&#9639;&#9639;</span> '
    if short:
        return swatch + "hatched: no evidence"
    return (swatch + "hatched grey with coloured stripes: no evidence (no sensor signal: clipped, flat or "
            "blank), not low reliability")


def threshold_text(map_label: str | None) -> str:
    """The threshold checkbox's words for the map on screen (bright is not always good)."""
    if map_label == UNKNOWN:
        return "Show only unknown-scanner score above"
    if map_label == ATTRIBUTION:
        return "Threshold (not used on the attribution map)"
    if layer_of(map_label) is not None:
        return "Show only score below"
    return "Show only reliability below"


class ControlsPanel(QWidget):
    """Left-hand controls: a view of a :class:`ViewState` (writes it, mirrors it).

    Signals
    -------
    open_model_requested()
        The user picked "Open model file...".
    map_class_changed(object)
        Class name to map, or ``None`` for the predicted class (per scan: the window decides).
    blink_toggled(bool)
        Blink between scan and overlay.
    input_refused(str)
        A typed value was refused (it is also shown in the panel, in red).
    """

    open_model_requested = Signal()
    map_class_changed = Signal(object)
    blink_toggled = Signal(bool)
    input_refused = Signal(str)

    def __init__(self, state: ViewState | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state if state is not None else ViewState()
        self.model_combo = QComboBox()
        self.model_combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.model_combo.setMinimumContentsLength(14)
        self.device_combo = QComboBox()
        avail = set(available_devices())
        for dev in DEVICES:
            self.device_combo.addItem(dev.upper() if dev != "auto" else "auto", dev)
        model = self.device_combo.model()
        if isinstance(model, QStandardItemModel):
            for i, dev in enumerate(DEVICES):
                if dev != "auto" and dev not in avail:
                    item = model.item(i)
                    item.setEnabled(False)
                    item.setToolTip(f"{dev} is not available on this machine")
        self.sub_spin = QSpinBox()
        # below 64 is typed into the box and refused in words (a silent clamp looked accepted)
        self.sub_spin.setRange(1, 4096)
        self.sub_spin.setKeyboardTracking(False)
        self.sub_spin.setSingleStep(16)
        self.sub_spin.setValue(64)
        self.sub_spin.setSuffix(" px")
        self.sub_spin.setToolTip("Sub-image size n (n x n) of the reliability map")
        self.stride_spin = QSpinBox()
        self.stride_spin.setRange(1, 1024)
        self.stride_spin.setKeyboardTracking(False)
        self.stride_spin.setValue(16)
        self.stride_spin.setSuffix(" px")
        self.stride_spin.setToolTip("Stride between sub-images (multiples of 4 are fastest)")

        analysis = QGroupBox("Analysis")
        form = QFormLayout(analysis)
        form.addRow("Model", self.model_combo)
        form.addRow("Device", self.device_combo)
        form.addRow("Sub-image", self.sub_spin)
        form.addRow("Stride", self.stride_spin)
        self.problem_label = QLabel("")
        self.problem_label.setStyleSheet("color: #d62728")
        self.problem_label.setWordWrap(True)
        self.problem_label.setVisible(False)
        form.addRow(self.problem_label)

        self.class_combo = QComboBox()
        self.class_combo.addItem("predicted class", None)
        self.colormap_combo = QComboBox()
        for name in COLORMAPS:
            self.colormap_combo.addItem(name, name)
        self.colormap_combo.setCurrentIndex(COLORMAPS.index(DEFAULT_COLORMAP))
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(60)
        self.threshold_check = QCheckBox("Show only reliability below")
        self.threshold_slider = QSlider(Qt.Orientation.Horizontal)
        self.threshold_slider.setRange(0, 100)
        self.threshold_slider.setValue(50)
        self.threshold_slider.setEnabled(False)
        self.threshold_label = QLabel("0.50")
        self.overlay_check = QCheckBox("Show overlay (O)")
        self.overlay_check.setChecked(True)
        self.blink_check = QCheckBox("Blink (B)")
        thr_row = QHBoxLayout()
        thr_row.addWidget(self.threshold_slider, 1)
        thr_row.addWidget(self.threshold_label)

        overlay = QGroupBox("Overlay")
        oform = QFormLayout(overlay)
        oform.addRow("Map of", self.class_combo)
        self.legend = QLabel(no_evidence_legend(self.state.colormap))
        self._legend_classes: list[str] | None = None
        self.legend.setWordWrap(True)
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        oform.addRow(self.legend)
        oform.addRow("Colormap", self.colormap_combo)
        oform.addRow("Opacity", self.opacity_slider)
        oform.addRow(self.threshold_check)
        oform.addRow("Threshold", thr_row)
        oform.addRow(self.overlay_check)
        oform.addRow(self.blink_check)

        lay = QVBoxLayout(self)
        lay.addWidget(analysis)
        lay.addWidget(overlay)
        lay.addStretch(1)

        self.model_combo.activated.connect(self._on_model_combo_activated)
        self.device_combo.currentIndexChanged.connect(self._on_device_combo_changed)
        self.sub_spin.valueChanged.connect(self._on_sub_spin_changed)
        self.stride_spin.valueChanged.connect(self._on_stride_spin_changed)
        self.class_combo.currentIndexChanged.connect(self._on_class_combo_changed)
        self.colormap_combo.currentIndexChanged.connect(self._on_colormap_combo_changed)
        self.opacity_slider.valueChanged.connect(self._on_opacity_slider_changed)
        self.threshold_check.toggled.connect(self._on_threshold_changed)
        self.threshold_slider.valueChanged.connect(self._on_threshold_changed)
        self.overlay_check.toggled.connect(self._on_overlay_check_toggled)
        self.blink_check.toggled.connect(self.blink_toggled)
        self._model_index = 0
        self.state.subscribe(self._on_state_changed)
        self._on_state_changed(frozenset(ANALYSIS_FIELDS | OVERLAY_FIELDS))

    # -- the state -> widgets ------------------------------------------------------------------

    def _on_state_changed(self, changed: frozenset[str]) -> None:
        """Mirror the state (no widget signal fires back)."""
        st = self.state
        pairs = ((self.sub_spin, "sub", lambda: self.sub_spin.setValue(st.sub)),
                 (self.stride_spin, "stride", lambda: self.stride_spin.setValue(st.stride)),
                 (self.device_combo, "device", lambda: self.set_device(st.device)),
                 (self.opacity_slider, "opacity", lambda: self.opacity_slider.setValue(st.opacity)),
                 (self.threshold_slider, "threshold", lambda: self.threshold_slider.setValue(st.threshold)),
                 (self.threshold_check, "threshold_on", lambda: self.threshold_check.setChecked(st.threshold_on)),
                 (self.overlay_check, "overlay", lambda: self.overlay_check.setChecked(st.overlay)),
                 (self.colormap_combo, "colormap",
                  lambda: self.colormap_combo.setCurrentIndex(max(0, self.colormap_combo.findData(st.colormap)))))
        for widget, name, apply in pairs:
            if name in changed:
                widget.blockSignals(True)
                apply()
                widget.blockSignals(False)
        if "model" in changed:
            idx = self.model_combo.findData(st.model)
            if idx >= 0:
                self._model_index = idx
                self.model_combo.setCurrentIndex(idx)
        self.threshold_slider.setEnabled(st.threshold_on)
        self.threshold_label.setText(f"{st.threshold / 100.0:.2f}")
        if "colormap" in changed and hasattr(self, "_legend_classes"):
            self.set_legend(self._legend_classes)  # the stripes take a colour the new map never draws
        if "map_label" in changed:
            self.threshold_check.setText(threshold_text(st.map_label))
            categorical = st.map_label == ATTRIBUTION
            self.colormap_combo.setEnabled(not categorical)  # the attribution map has class colours
            self.colormap_combo.setToolTip("the attribution map uses one fixed colour per scanner"
                                           if categorical else "colour map of the overlay")
            for w in (self.threshold_check, self.threshold_slider):
                w.setEnabled(not categorical and (w is self.threshold_check or st.threshold_on))

    def _set(self, **changes: object) -> None:
        """Write the state; a refused value is said in red and the widget shows the state again."""
        try:
            self.state.update(**changes)
        except ScanLabError as e:
            self.problem_label.setText(str(e))
            self.problem_label.setVisible(True)
            self._on_state_changed(frozenset(changes))
            self.input_refused.emit(str(e))
            return
        self.problem_label.setVisible(False)

    # -- models ---------------------------------------------------------------------------

    def set_models(self, entries: list[tuple], current: str | None) -> None:
        """Fill the model list: ``(text, spec)`` pairs plus "Open model file...".

        A ``(text, spec, reason)`` triple is an unusable file: shown disabled,
        the reason as its tooltip.
        """
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        for text, spec, *why in entries:
            self.model_combo.addItem(text, spec)
            row = self.model_combo.count() - 1
            tip = f"{spec}: {why[0]}" if why else (spec or "shipped default model")
            self.model_combo.setItemData(row, tip, Qt.ItemDataRole.ToolTipRole)
            if why:
                item = self.model_combo.model().item(row)
                if item is not None:
                    item.setEnabled(False)
        self.model_combo.insertSeparator(self.model_combo.count())
        self.model_combo.addItem("Open model file...", OPEN_MODEL)
        idx = self.model_combo.findData(current)
        self._model_index = max(0, idx)
        self.model_combo.setCurrentIndex(self._model_index)
        self.model_combo.blockSignals(False)
        self._set(model=self.model_spec())  # the list is the state's model now

    def model_spec(self) -> str | None:
        """The selected model (a path, or ``None`` for the shipped default)."""
        spec = self.model_combo.itemData(self._model_index)
        return None if spec in (None, "", OPEN_MODEL) else str(spec)

    def device(self) -> str:
        """The selected device preference."""
        return str(self.device_combo.currentData())

    def set_device(self, device: str) -> None:
        """Select a device if it is offered and enabled."""
        idx = self.device_combo.findData(device)
        model = self.device_combo.model()
        if idx >= 0 and (not isinstance(model, QStandardItemModel) or model.item(idx).isEnabled()):
            self.device_combo.setCurrentIndex(idx)

    @Slot(int)
    def _on_model_combo_activated(self, index: int) -> None:
        if self.model_combo.itemData(index) == OPEN_MODEL:
            self.model_combo.setCurrentIndex(self._model_index)
            self.open_model_requested.emit()
            return
        if index != self._model_index:
            self._model_index = index
            self._set(model=self.model_spec())

    @Slot(int)
    def _on_device_combo_changed(self, _index: int) -> None:
        self._set(device=self.device())

    @Slot(int)
    def _on_sub_spin_changed(self, value: int) -> None:
        self._set(sub=value)

    @Slot(int)
    def _on_stride_spin_changed(self, value: int) -> None:
        self._set(stride=value)

    # -- classes and overlay -----------------------------------------------------------------

    def set_classes(
        self, classes: list[str], predicted: str | None, current: str | None, *, unknown_map: bool = False
    ) -> None:
        """Offer every class, the attribution map and (with an open-set model) the unknown map (no emit)."""
        self.class_combo.blockSignals(True)
        self.class_combo.clear()
        self.class_combo.addItem(
            f"predicted ({predicted})" if predicted else "predicted class", None
        )
        for c in classes:
            self.class_combo.addItem(c, c)
        if classes:
            self.class_combo.addItem("attribution: best-fitting scanner per region", ATTRIBUTION)
            if unknown_map:
                self.class_combo.addItem("unknown-scanner score per window", UNKNOWN)
            for layer in model_free_layers():  # the registry's layers that need no model (copy-move...)
                self.class_combo.addItem(layer.title + (" (experimental)" if layer.experimental else ""),
                                         layer_key(layer.name))
                tip = layer.computes + (f". Experimental: {layer.experimental}" if layer.experimental else "")
                self.class_combo.setItemData(self.class_combo.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)
        self.class_combo.setCurrentIndex(
            max(0, self.class_combo.findData(current)) if current else 0
        )
        self.class_combo.blockSignals(False)

    def set_legend(self, classes: list[str] | None) -> None:
        """Legend under "Map of": class colours for the attribution map, always the no-evidence entry."""
        self._legend_classes = classes
        rows = []
        if classes:
            cols = class_colors(len(classes))
            rows = [f'<span style="color:#{r:02x}{g:02x}{b:02x}">&#9632;</span> {c}'
                    for c, (r, g, b) in zip(classes, cols, strict=True)]
        self.legend.setText(("<br>".join(rows) + "<br>" if rows else "")
                            + no_evidence_legend(self.state.colormap, short=bool(rows)))

    def threshold(self) -> float | None:
        """The threshold, or ``None`` when off."""
        return self.state.threshold_value()

    @Slot(int)
    def _on_class_combo_changed(self, index: int) -> None:
        self.map_class_changed.emit(self.class_combo.itemData(index))

    @Slot(int)
    def _on_colormap_combo_changed(self, index: int) -> None:
        self._set(colormap=str(self.colormap_combo.itemData(index)))

    @Slot(int)
    def _on_opacity_slider_changed(self, value: int) -> None:
        self._set(opacity=value)

    @Slot(bool)
    def _on_overlay_check_toggled(self, on: bool) -> None:
        self._set(overlay=on)

    @Slot()
    def _on_threshold_changed(self) -> None:
        self._set(threshold=self.threshold_slider.value(), threshold_on=self.threshold_check.isChecked())
