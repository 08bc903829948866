"""Menus, actions and keyboard shortcuts of the main window."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from PySide6.QtCore import QObject, Slot
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QCheckBox, QDockWidget, QListWidget, QMainWindow, QMenu

from scanlab.gui.scan_view import ScanView
from scanlab.services.viewstate import ViewState


class MenuHost(Protocol):
    """What the menus ask of the window: its commands, nothing of its insides."""

    def open_files_dialog(self) -> None: ...
    def open_folder_dialog(self) -> None: ...
    def open_sample(self) -> None: ...
    def open_model_dialog(self) -> None: ...
    def close_current(self) -> None: ...
    def reanalyse(self) -> None: ...
    def cancel_analysis(self) -> None: ...
    def open_paths(self, paths: list[str]) -> object: ...


class RecentFiles(Protocol):
    """The settings' recent-files list."""

    def recent_files(self) -> list[str]: ...
    def clear_recent(self) -> None: ...


class _RecentMenuController(QObject):
    """Rebuilds File > Open Recent when shown and opens the chosen file (bound slots)."""

    def __init__(self, menu: QMenu, recent: RecentFiles, host: MenuHost) -> None:
        super().__init__(menu)
        self.menu, self.recent, self.host = menu, recent, host

    @Slot()
    def _on_menu_about_to_show(self) -> None:
        self.menu.clear()
        recent = self.recent.recent_files()
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
            self.recent.clear_recent()
        elif isinstance(path, str):
            self.host.open_paths([path])


class _NavigationController(QObject):
    """Keyboard navigation between open scans and overlay toggles."""

    def __init__(self, scans: QListWidget, state: ViewState, blink: QCheckBox) -> None:
        super().__init__(scans)
        self.scans, self.state, self.blink = scans, state, blink

    @Slot()
    def _on_next_triggered(self) -> None:
        lst = self.scans
        if lst.count():
            lst.setCurrentRow((lst.currentRow() + 1) % lst.count())

    @Slot()
    def _on_previous_triggered(self) -> None:
        lst = self.scans
        if lst.count():
            lst.setCurrentRow((lst.currentRow() - 1) % lst.count())

    @Slot()
    def _on_overlay_triggered(self) -> None:
        self.state.update(overlay=not self.state.overlay)

    @Slot()
    def _on_blink_triggered(self) -> None:
        self.blink.toggle()


def _action(
    window: QMainWindow, text: str, shortcut: QKeySequence | str | None, tip: str = ""
) -> QAction:
    act = QAction(text, window)
    if shortcut is not None:
        act.setShortcut(QKeySequence(shortcut))
    if tip:
        act.setStatusTip(tip)
    return act


def build_menus(window: QMainWindow, host: MenuHost, *, view: ScanView, scans: QListWidget, state: ViewState,
                blink: QCheckBox, recent: RecentFiles,
                docks: list[QDockWidget]) -> tuple[dict[str, QAction], dict[str, QMenu]]:
    """Create the menu bar of ``window``; every action connects to a bound method of a long-lived object.

    Returns
    -------
    actions : dict of str to QAction
        The actions by name (tests trigger them directly).
    menus : dict of str to QMenu
        ``file``, ``analysis``, ``view``, ``help`` (other helpers add to them by name, not position).
    """
    file_menu = window.menuBar().addMenu("&File")
    recent_ctl = _RecentMenuController(file_menu.addMenu("Open &Recent"), recent, host)
    nav = _NavigationController(scans, state, blink)
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
    a["open"].triggered.connect(host.open_files_dialog)
    a["open_folder"].triggered.connect(host.open_folder_dialog)
    a["open_sample"].triggered.connect(host.open_sample)
    a["open_model"].triggered.connect(host.open_model_dialog)
    a["open_batch"].triggered.connect(host.open_batch_dialog)
    a["close"].triggered.connect(host.close_current)
    a["quit"].triggered.connect(window.close)
    a["reanalyse"].triggered.connect(host.reanalyse)
    a["cancel"].triggered.connect(host.cancel_analysis)
    a["fit"].triggered.connect(view.fit)
    a["actual"].triggered.connect(view.actual_size)
    a["zoom_in"].triggered.connect(view.zoom_in)
    a["zoom_out"].triggered.connect(view.zoom_out)
    a["overlay"].triggered.connect(nav._on_overlay_triggered)
    a["blink"].triggered.connect(nav._on_blink_triggered)
    a["next"].triggered.connect(nav._on_next_triggered)
    a["previous"].triggered.connect(nav._on_previous_triggered)
    recent_ctl.menu.aboutToShow.connect(recent_ctl._on_menu_about_to_show)
    recent_ctl.menu.triggered.connect(recent_ctl._on_menu_triggered)

    first = recent_ctl.menu.menuAction()
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
    for dock in docks:
        view_menu.addAction(dock.toggleViewAction())
    models = window.menuBar().addMenu("&Models")
    help_menu = window.menuBar().addMenu("&Help")
    return a, {"file": file_menu, "analysis": analysis, "view": view_menu, "models": models, "help": help_menu}
