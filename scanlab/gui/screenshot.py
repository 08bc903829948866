"""``scanlab gui FILE --screenshot OUT.png``: wait for the first analysis, grab, quit."""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Slot
from PySide6.QtWidgets import QApplication

from scanlab.gui.main_window import MainWindow

log = logging.getLogger(__name__)

SETTLE_MS = 150
"""Delay between the result arriving and the grab, so the view has painted it."""


class ScreenshotTaker(QObject):
    """Saves ``QWidget.grab()`` of the window once the first scan's analysis settles."""

    def __init__(self, window: MainWindow, out: str, first: str | None) -> None:
        super().__init__(window)
        self.window = window
        self.out = Path(out)
        self.first = first
        self.exit_code = 1
        self._ok = False
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(SETTLE_MS)
        self._timer.timeout.connect(self._on_timer_timeout)
        window.analysis_settled.connect(self._on_window_analysis_settled)

    def arm(self) -> None:
        """Call after the files were opened: grabs at once if nothing will be analysed."""
        docs = self.window.documents
        if self.first is not None and Path(self.first).is_dir() and docs:
            self.first = docs[0].path  # a folder was given: its first image counts
        elif self.first is not None:  # a PDF or multi-page TIFF: its first embedded image counts
            inside = [d.path for d in docs if d.path.startswith(str(Path(self.first)) + "#")]
            if inside and not any(d.path == str(Path(self.first)) for d in docs):
                self.first = inside[0]
        if self.first is None or not any(d.path == str(Path(self.first)) for d in docs):
            # Nothing to wait for: an empty window is fine, a rejected first file is a failure.
            self._ok = self.first is None
            self.window.analysis_settled.disconnect(self._on_window_analysis_settled)
            self._timer.start()
        else:
            self.first = str(Path(self.first))

    @Slot(str, bool)
    def _on_window_analysis_settled(self, path: str, ok: bool) -> None:
        if self.first is not None and path != self.first:
            return
        self._ok = ok
        self.window.analysis_settled.disconnect(self._on_window_analysis_settled)
        self._timer.start()

    @Slot()
    def _on_timer_timeout(self) -> None:
        try:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            saved = self.window.grab().save(str(self.out), "PNG")
        except OSError as e:
            log.error("cannot write %s: %s", self.out, e)
            saved = False
        if not saved:
            log.error("could not save the screenshot to %s", self.out)
        self.exit_code = 0 if (saved and self._ok) else 1
        # Exactly one quit: closing the (last) window here would post a second Quit
        # event that outlives this loop and ends the next one (seen under pytest-qt).
        QApplication.exit(self.exit_code)
