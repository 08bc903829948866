"""Menus, actions and keyboard shortcuts of the main window."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Slot
from PySide6.QtGui import QAction, QKeySequence

if TYPE_CHECKING:
    from scanlab.gui.main_window import MainWindow


class _RecentMenuController(QObject):
    """Rebuilds File > Open Recent when shown and opens the chosen file (bound slots)."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.menu = window.menuBar().addMenu("&File").addMenu("Open &Recent")

    @Slot()
    def _on_menu_about_to_show(self) -> None:
        self.menu.clear()
        recent = self.window.settings.recent_files()
        for path in recent:
            act = self.menu.addAction(Path(path).name)
            act.setData(path)
            act.setToolTip(path)
        if not recent:
            self.menu.addAction("(none)").setEnabled(False)
        self.menu.addSeparator()
        self.menu.addAction("Clear recent files").setData("")

    @Slot(QAction)
    def _on_menu_triggered(self, action: QAction) -> None:
        path = action.data()
        if path == "":
            self.window.settings.clear_recent()
        elif isinstance(path, str):
            self.window.open_paths([path])


class _NavigationController(QObject):
    """Keyboard navigation between open scans and overlay toggles."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window

    @Slot()
    def _on_next_triggered(self) -> None:
        lst = self.window.scan_list
        if lst.count():
            lst.setCurrentRow((lst.currentRow() + 1) % lst.count())

    @Slot()
    def _on_previous_triggered(self) -> None:
        lst = self.window.scan_list
        if lst.count():
            lst.setCurrentRow((lst.currentRow() - 1) % lst.count())

    @Slot()
    def _on_overlay_triggered(self) -> None:
        self.window.controls.overlay_check.toggle()

    @Slot()
    def _on_blink_triggered(self) -> None:
        self.window.controls.blink_check.toggle()


def _action(
    window: MainWindow, text: str, shortcut: QKeySequence | str | None, tip: str = ""
) -> QAction:
    act = QAction(text, window)
    if shortcut is not None:
        act.setShortcut(QKeySequence(shortcut))
    if tip:
        act.setStatusTip(tip)
    return act


def build_menus(window: MainWindow) -> dict[str, QAction]:
    """Create the menu bar; every action connects to a bound method of a long-lived object.

    Returns
    -------
    dict of str to QAction
        The actions by name (tests trigger them directly).
    """
    recent = _RecentMenuController(window)
    nav = _NavigationController(window)
    window._menu_helpers = (recent, nav)  # keep the controllers alive with the window
    file_menu = recent.menu.parentWidget()
    view = window.view
    a = {
        "open": _action(window, "&Open scans...", QKeySequence.StandardKey.Open),
        "open_folder": _action(window, "Open &folder...", "Ctrl+Shift+O"),
        "open_sample": _action(window, "Open &sample scan", None, "The bundled forged sample scan"),
        "open_model": _action(window, "Open &model file...", "Ctrl+M"),
        "open_batch": _action(window, "Open &batch results...", "Ctrl+Shift+B",
                              "A scanlab batch results table: sort and filter pages, open one"),
        "close": _action(window, "&Close scan", QKeySequence.StandardKey.Close),
        "quit": _action(window, "&Quit", QKeySequence.StandardKey.Quit),
        "reanalyse": _action(window, "&Re-analyse", "F5", "Analyse the selected scan again"),
        "cancel": _action(window, "&Cancel analysis", "Esc"),
        "fit": _action(window, "&Fit to window", "F"),
        "actual": _action(window, "&Actual size (1:1)", "1"),
        "zoom_in": _action(window, "Zoom &in", QKeySequence.StandardKey.ZoomIn),
        "zoom_out": _action(window, "Zoom &out", QKeySequence.StandardKey.ZoomOut),
        "overlay": _action(window, "Toggle &overlay", "O", "Show or hide the heatmap"),
        "blink": _action(window, "&Blink overlay", "B", "Alternate scan and heatmap"),
        "next": _action(window, "&Next scan", "Ctrl+PgDown"),
        "previous": _action(window, "&Previous scan", "Ctrl+PgUp"),
    }
    a["open"].triggered.connect(window.open_files_dialog)
    a["open_folder"].triggered.connect(window.open_folder_dialog)
    a["open_sample"].triggered.connect(window.open_sample)
    a["open_model"].triggered.connect(window.open_model_dialog)
    a["open_batch"].triggered.connect(window.open_batch_dialog)
    a["close"].triggered.connect(window.close_current)
    a["quit"].triggered.connect(window.close)
    a["reanalyse"].triggered.connect(window.reanalyse)
    a["cancel"].triggered.connect(window.cancel_analysis)
    a["fit"].triggered.connect(view.fit)
    a["actual"].triggered.connect(view.actual_size)
    a["zoom_in"].triggered.connect(view.zoom_in)
    a["zoom_out"].triggered.connect(view.zoom_out)
    a["overlay"].triggered.connect(nav._on_overlay_triggered)
    a["blink"].triggered.connect(nav._on_blink_triggered)
    a["next"].triggered.connect(nav._on_next_triggered)
    a["previous"].triggered.connect(nav._on_previous_triggered)
    recent.menu.aboutToShow.connect(recent._on_menu_about_to_show)
    recent.menu.triggered.connect(recent._on_menu_triggered)

    first = recent.menu.menuAction()
    file_menu.insertActions(first, [a["open"], a["open_folder"], a["open_sample"], a["open_batch"]])
    file_menu.addSeparator()
    file_menu.addActions([a["open_model"], a["close"]])
    file_menu.addSeparator()
    file_menu.addAction(a["quit"])
    analysis = window.menuBar().addMenu("&Analysis")
    analysis.addActions([a["reanalyse"], a["cancel"]])
    view_menu = window.menuBar().addMenu("&View")
    view_menu.addActions([a["fit"], a["actual"], a["zoom_in"], a["zoom_out"]])
    view_menu.addSeparator()
    view_menu.addActions([a["overlay"], a["blink"], a["next"], a["previous"]])
    view_menu.addSeparator()
    for dock in window._docks.values():
        view_menu.addAction(dock.toggleViewAction())
    return a
