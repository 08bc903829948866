"""Help > Run self-test: ``scanlab selftest`` from the desktop app (and the bundle).

The self-test runs on its own QThread (it scores 30 scans, several seconds) and the
report is shown in a message box. Signals go to bound slots of this long-lived
controller, never lambdas (DESIGN.md section 4).
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, QThread, Signal, Slot
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMainWindow, QMessageBox


class _Worker(QObject):
    done = Signal(object)
    error = Signal(str)

    @Slot()
    def run(self) -> None:
        from scanlab.core.errors import ScanLabError
        from scanlab.services.selftest import run_selftest

        try:
            self.done.emit(run_selftest())
        except ScanLabError as e:
            self.error.emit(str(e))


class SelftestController(QObject):
    """Owns the Help > Run self-test action, its thread and the result box."""

    def __init__(self, window: QMainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.action = QAction("Run &self-test", window)
        self.action.setStatusTip("Check the shipped model's figures on this computer (scanlab selftest)")
        self.action.triggered.connect(self.start)
        menu = next((a.menu() for a in window.menuBar().actions() if a.text().replace("&", "") == "Help"), None)
        (menu or window.menuBar().addMenu("&Help")).addAction(self.action)
        self._thread: QThread | None = None
        self._worker: _Worker | None = None
        self.last_result: dict[str, Any] | None = None
        self.last_error: str | None = None

    @Slot()
    def start(self) -> None:
        """Run the self-test in the background (ignored while one runs)."""
        if self._thread is not None:
            return
        self.action.setEnabled(False)
        self.window.statusBar().showMessage("Running the self-test...")
        self._thread = QThread(self)
        self._worker = _Worker()
        self._worker.moveToThread(self._thread)
        self._thread.started.connect(self._worker.run)
        self._worker.done.connect(self._on_worker_done)
        self._worker.error.connect(self._on_worker_error)
        self._thread.start()

    def _stop_thread(self) -> None:
        if self._thread is not None:
            self._thread.quit()
            self._thread.wait()
            self._thread.deleteLater()
        if self._worker is not None:
            self._worker.deleteLater()
        self._thread, self._worker = None, None
        self.action.setEnabled(True)

    @Slot(object)
    def _on_worker_done(self, result: dict[str, Any]) -> None:
        from scanlab.services.selftest import format_report

        self._stop_thread()
        self.last_result = result
        verdict = "PASS" if result["passed"] else "FAIL"
        self.window.statusBar().showMessage(f"Self-test: {verdict}", 8000)
        self._show(QMessageBox.Icon.Information if result["passed"] else QMessageBox.Icon.Warning,
                   f"Self-test: {verdict}", format_report(result))

    @Slot(str)
    def _on_worker_error(self, message: str) -> None:
        self._stop_thread()
        self.last_error = message
        self.window.statusBar().showMessage("Self-test could not run", 8000)
        self._show(QMessageBox.Icon.Critical, "Self-test could not run", message)

    def _show(self, icon: QMessageBox.Icon, title: str, text: str) -> None:
        box = QMessageBox(icon, title, title, QMessageBox.StandardButton.Ok, self.window)
        box.setInformativeText(text)
        box.setModal(False)
        box.show()
        self.box = box
