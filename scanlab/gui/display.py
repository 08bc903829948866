"""What the window shows of the scan on screen: view, results panel, status line, cursor readout.

One place draws a :class:`ScanDocument`: the scan and its map in the :class:`ScanView`,
the verdict in the :class:`ResultsPanel`, the "Map of" choices in the controls, and
the status line; all of them about the same scan and the same map. The map shown is
written to the :class:`ViewState` (``map_label``) so the controls can word the
threshold for it. Maps of other classes are computed off the GUI thread.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, Slot
from PySide6.QtWidgets import QLabel, QProgressBar, QStatusBar, QToolButton

from scanlab.gui.class_maps import ClassMapLoader
from scanlab.gui.controls_panel import ControlsPanel
from scanlab.gui.documents import ScanDocument
from scanlab.gui.layer_maps import LayerMaps
from scanlab.gui.pair_layer import PairLayer
from scanlab.gui.results_panel import ResultsPanel, map_quantity, pixel_readout
from scanlab.gui.scan_view import ScanView
from scanlab.gui.task_runner import TaskRunner
from scanlab.services.analysis import ATTRIBUTION, UNKNOWN
from scanlab.services.layer_runs import layer_of
from scanlab.services.layers import LAYERS
from scanlab.services.viewstate import ViewState


def _map_name(label: str | None) -> str:
    """Words for a "Map of" choice in the status bar."""
    if layer_of(label) in LAYERS:
        return f"the {LAYERS[layer_of(label)].title.lower()} layer"
    return {ATTRIBUTION: "attribution (best-fitting scanner per region)",
            UNKNOWN: "the unknown-scanner score"}.get(label or "", str(label))


class StatusArea(QObject):
    """The status bar's parts: the line about the scan on screen, a progress bar, Cancel."""

    def __init__(self, bar: QStatusBar) -> None:
        super().__init__(bar)
        self.label = QLabel("Drop scans or folders here, or File > Open (Ctrl+O)")
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(220)
        self.progress.setVisible(False)
        self.cancel_button = QToolButton()
        self.cancel_button.setText("Cancel")
        self.cancel_button.setToolTip("Cancel the running analysis (Esc)")
        self.cancel_button.setVisible(False)
        bar.addWidget(self.label, 1)
        bar.addPermanentWidget(self.progress)
        bar.addPermanentWidget(self.cancel_button)

    def busy(self) -> None:
        """An analysis started: busy until the engine reports its steps."""
        self.progress.setRange(0, 0)
        self.progress.setVisible(True)
        self.cancel_button.setVisible(True)

    @Slot(int, int)
    def on_progress(self, done: int, total: int) -> None:
        """Steps done; after the last step the result is still being assembled: busy, never "100%"."""
        if done >= total:
            self.progress.setRange(0, 0)
            return
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(done)

    def idle(self) -> None:
        """Nothing runs."""
        self.progress.setVisible(False)
        self.cancel_button.setVisible(False)


class DocumentDisplay(QObject):
    """Shows one document at a time on the window's view, panels and status line."""

    def __init__(self, *, view: ScanView, results: ResultsPanel, controls: ControlsPanel, status: QLabel,
                 state: ViewState, class_maps: ClassMapLoader, current: Callable[[], ScanDocument | None],
                 parent: QObject, runner: TaskRunner, busy: Callable[[], None],
                 post: Callable[..., None]) -> None:
        super().__init__(parent)
        self.view, self.results, self.controls, self.status_label = view, results, controls, status
        self.state, self.class_maps, self.current = state, class_maps, current
        # model-free layers (copy-move) run on the window's runner; their pairs are drawn linked
        self.layers = LayerMaps(runner, busy, self)
        self.layers.ready.connect(self._on_layer_ready)
        self.post = post  # the window's messages panel: post(text, error=False)
        self.layers.note.connect(self._on_layer_note)
        self.layers.problem.connect(self._on_layer_problem)
        self.pairs = PairLayer(view)
        self._noev_of_layer = False  # the hatching drawn is a layer's no-evidence mask
        self._view_map_of: str | None = None  # the "Map of" choice whose map the view draws
        state.subscribe(self._on_state_changed)
        self._on_state_changed(frozenset({"opacity", "colormap", "threshold", "overlay"}))
        view.cursor_moved.connect(self._on_view_cursor_moved)
        class_maps.ready.connect(self._on_class_maps_ready)
        controls.map_class_changed.connect(self._on_controls_map_class_changed)

    def _on_state_changed(self, changed: frozenset[str]) -> None:
        """The overlay follows the view state."""
        st = self.state
        if "opacity" in changed:
            self.view.set_opacity(st.opacity / 100.0)
        if "colormap" in changed:
            self.view.set_colormap(st.colormap)
        if changed & {"threshold", "threshold_on"}:
            self.view.set_threshold(st.threshold_value())
        if "overlay" in changed:
            self.view.set_overlay_visible(st.overlay)

    def show(self, doc: ScanDocument | None) -> None:
        """Everything on screen follows ``doc``: view, panels, status line, cursor readout."""
        result = doc.result if doc is not None else None
        self.results.show_cursor("-")  # the previous scan's pixel is not this scan's
        self.status_label.setText(self.status_text(doc))
        if result is None:
            preview = doc.preview if doc is not None else None
            self.view.set_scan(preview, pyramid=doc.pyramid if preview is not None else None)
            failed = doc is not None and doc.error is not None
            self.results.show_result(None, None if doc is None else "analysis failed" if failed else "analysing...",
                                     error=failed)
            self.controls.set_classes([], None, None)
            self.pairs.set_pairs(None)
            self._view_map_of = None
            self.state.update(map_label=None)
            return
        self.view.set_scan(result.pixels, pyramid=doc.pyramid)
        self.view.set_no_evidence(result.no_evidence_mask() if result.reliability is not None else None)
        self._noev_of_layer = False
        shown = doc.shown_map()
        self._set_view_map(doc, shown)
        if shown is None and doc.shown_label() is not None:
            self._request_map(doc, doc.shown_label())
        self.results.show_result(result)
        self.controls.set_classes(result.classes, result.label, doc.map_label,
                                  unknown_map=result.unknown_grid is not None)

    def status_text(self, doc: ScanDocument | None) -> str:
        """The status line: always about the scan on screen, and the map it shows."""
        if doc is None:
            return "Drop scans or folders here, or File > Open (Ctrl+O)"
        if doc.result is None:
            return f"{doc.name}: analysis failed (Analysis > Re-analyse, F5)" if doc.error else f"Analysing {doc.name}..."
        r = doc.result
        text = f"{doc.name}: {r.answer} ({r.compute_s:.1f} s on {r.device})"
        if doc.result_key != self.state.analysis_key():
            text += "; computed with other settings, re-analysing" if doc.pending_id else "; other settings"
        return text + (f"; map of {_map_name(self._view_map_of)}" if self._view_map_of else "")

    @Slot(object)
    def _on_controls_map_class_changed(self, label: str | None) -> None:
        doc = self.current()
        if doc is None or doc.result is None:
            return
        doc.map_label = label
        shown = doc.shown_map()
        if shown is not None:
            self._set_view_map(doc, shown)
        else:  # computed off the GUI thread; the old map stays until it arrives
            self.status_label.setText(f"{doc.name}: computing the map of {_map_name(label)}...")
            self._request_map(doc, doc.shown_label())

    def _request_map(self, doc: ScanDocument, label: str) -> None:
        """A map not computed yet: a layer on the task runner, another class's map on the class-map thread."""
        if layer_of(label) is not None:
            self.layers.request(doc, layer_of(label))
        else:
            self.class_maps.request(doc, label)

    @Slot(str)
    def _on_layer_note(self, text: str) -> None:
        self.post(text)

    @Slot(str)
    def _on_layer_problem(self, text: str) -> None:
        self.post(text, error=True)

    @Slot(object, str)
    def _on_layer_ready(self, doc: ScanDocument, name: str) -> None:
        if doc is self.current() and layer_of(doc.shown_label()) == name:
            self._set_view_map(doc, doc.shown_map())

    @Slot(object, str, object)
    def _on_class_maps_ready(self, doc: ScanDocument, label: str, rel: object) -> None:
        if doc is self.current() and doc.shown_label() == label:
            self._set_view_map(doc, rel)

    def _set_view_map(self, doc: ScanDocument, arr: object) -> None:
        """Draw ``arr`` as the map of ``doc.shown_label()``: class colours for the attribution map."""
        result = doc.result
        attribution = result is not None and doc.shown_label() == ATTRIBUTION
        # remembered with the map: while another class's map is computed the old one stays drawn
        self._view_map_of = doc.shown_label() if arr is not None else None
        label = map_quantity(self._view_map_of)
        v = getattr(result, "verdict", None)
        if v is not None and v.verdict != "attributed" and self._view_map_of not in (None, ATTRIBUTION, UNKNOWN):
            # the fit to a scanner the verdict does not name: say so on the colour bar itself
            label += f" (verdict: {v.short(None)})"
        if self._view_map_of == UNKNOWN:
            label += " (dark = fits no known scanner)"  # the scale runs the other way: dark is suspicious
        layer = layer_of(self._view_map_of)
        run = doc.layers.get(layer) if layer is not None and arr is not None else None
        if run is not None:
            label += " (dark = copied; experimental)" if run.experimental else " (dark = copied)"
            self.view.set_no_evidence(run.no_evidence)  # the layer's own no-evidence rule
            self._noev_of_layer = True
            self.layers.store(doc, layer)
        elif self._noev_of_layer and result is not None:
            self.view.set_no_evidence(result.no_evidence_mask() if result.reliability is not None else None)
            self._noev_of_layer = False
        self.pairs.set_pairs(run.pairs if run is not None else None)
        self.view.set_map(arr, categorical=len(result.classes) if attribution else None, label=label,
                          high_is_suspicious=self._view_map_of == UNKNOWN or run is not None)
        self.controls.set_legend(result.classes if attribution else None)
        self.state.update(map_label=self._view_map_of)
        self.status_label.setText(self.status_text(doc))  # the status line names the map now drawn

    @Slot(object)
    def _on_view_cursor_moved(self, pos: tuple[int, int] | None) -> None:
        doc = self.current()
        classes = doc.result.classes if doc is not None and doc.result is not None else None
        self.results.show_cursor(pixel_readout(
            self.view.pixels, self.view.reliability, pos, what=self._view_map_of,
            classes=classes, no_evidence=self.view.no_evidence))
