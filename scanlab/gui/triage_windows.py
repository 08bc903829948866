"""The batch-results (triage) windows of the main window: open, keep, and route their requests.

File > Open batch results shows a ``scanlab batch`` results table in a
:class:`~scanlab.gui.triage.TriageView` of its own; a double-click asks for that page
(analysed here, or shown from the map the batch stored with ``--maps``), "add to case"
hands the selected pages to the case. The window gives this helper narrow callables,
never itself (import-linter: helpers do not import the window).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, Qt, Slot
from PySide6.QtWidgets import QFileDialog, QWidget

from scanlab.services.analysis import AnalysisResult
from scanlab.services.viewstate import ViewState

BATCH_FILTER = "Batch results (*.parquet);;All files (*)"


class TriageWindows(QObject):
    """Open triage windows (children of ``parent``, shown as windows of their own)."""

    def __init__(self, parent: QWidget, *, start_dir: Callable[[], str], state: ViewState,
                 open_paths: Callable[[list[str]], object], show_result: Callable[[AnalysisResult], object],
                 add_to_case: Callable[[list[str]], object], post: Callable[..., None]) -> None:
        super().__init__(parent)
        self._parent, self._start_dir, self._state = parent, start_dir, state
        self._open_paths, self._show_result, self._add_to_case, self._post = open_paths, show_result, add_to_case, post
        self.views: list = []  # scanlab.gui.triage.TriageView

    @Slot()
    def open_dialog(self) -> None:
        """Ask for a results.parquet and show it."""
        path, _ = QFileDialog.getOpenFileName(self._parent, "Open batch results", self._start_dir(), BATCH_FILTER)
        if path:
            self.open(path)

    def open(self, path: str):
        """Show a results table in a triage window; None (and one message) when it cannot be read."""
        from scanlab.core.errors import ScanLabError
        from scanlab.gui.triage import TriageView

        try:
            view = TriageView(path, self._parent)
        except ScanLabError as e:
            self._post(str(e), error=True)
            return None
        view.setWindowFlag(Qt.WindowType.Window, True)
        view.page_requested.connect(self._on_page_requested)
        view.stored_page_requested.connect(self._on_stored_page_requested)
        view.add_to_case_requested.connect(self._on_add_to_case)
        self.views.append(view)
        view.resize(1000, 700)
        view.show()
        return view

    @Slot(str)
    def _on_page_requested(self, path: str) -> None:
        self._open_paths([path])

    @Slot(str, str)
    def _on_stored_page_requested(self, path: str, map_path: str) -> None:
        from scanlab.gui.triage import stored_result

        result, problem = stored_result(path, map_path, self._state)
        if result is None:  # an older map, another model, a changed file: analyse as without --maps
            self._post(f"{problem}; analysing the page instead")
            self._open_paths([path])
            return
        self._show_result(result)
        self._post(f"{Path(map_path).name}: the map stored by the batch (not analysed again)")

    @Slot(list)
    def _on_add_to_case(self, paths: list) -> None:
        self._add_to_case([str(p) for p in paths])


__all__ = ["BATCH_FILTER", "TriageWindows"]
