"""Desktop app entry point: ``run_gui`` (called lazily by ``scanlab`` / ``scanlab gui``)."""

from __future__ import annotations

import os
import sys
import tempfile

from scanlab.core.errors import ScanLabError

_configured = False


def has_display() -> bool:
    """False on Linux/BSD when neither X11, Wayland nor an explicit Qt platform is set."""
    if not sys.platform.startswith(("linux", "freebsd", "openbsd", "netbsd")):
        return True
    return any(os.environ.get(k) for k in ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY"))


def configure_pyqtgraph() -> None:
    """Set ScanLab's display conventions once: (row, col) arrays everywhere."""
    global _configured
    if _configured:
        return
    import pyqtgraph as pg

    pg.setConfigOptions(imageAxisOrder="row-major", antialias=True)
    _configured = True


_collector: object | None = None


def collect_garbage_in_gui_thread() -> object:
    """Run Python's cyclic garbage collector only in the GUI thread, on a timer.

    Left automatic, a collection can start in the task runner's thread (an analysis
    allocates a lot) and free Qt widgets of a closed window or wizard there: Qt
    crashes (seen: a segmentation fault in a worker thread, "Garbage-collecting",
    while the wizard's tests ran). pyqtgraph's GarbageCollector disables the automatic
    collector and collects on a main-thread timer instead. Installed once.
    """
    global _collector
    if _collector is None:
        from pyqtgraph.util.garbage_collector import GarbageCollector

        _collector = GarbageCollector(interval=1.0)
    return _collector


def ensure_app() -> object:
    """The QApplication (an existing instance is reused, e.g. under pytest-qt)."""
    from PySide6.QtWidgets import QApplication

    configure_pyqtgraph()
    app = QApplication.instance()
    if app is None:
        app = QApplication(sys.argv[:1])
        app.setOrganizationName("ScanLab")
        app.setApplicationName("ScanLab")
        _set_window_icon(app)
    collect_garbage_in_gui_thread()
    return app


def _set_window_icon(app: object) -> None:
    """The shipped icon on every window (and the task bar); skipped when not installed."""
    from PySide6.QtGui import QIcon

    from scanlab.services.paths import icons_dir

    icon = QIcon()
    for png in sorted(icons_dir().glob("scanlab-*.png")):
        icon.addFile(str(png))
    if not icon.isNull():
        app.setWindowIcon(icon)  # type: ignore[attr-defined]


def run_gui(files: list[str], *, screenshot: str | None = None, model: str | None = None) -> int:
    """Open the desktop app on ``files``.

    Parameters
    ----------
    files : list of str
        Scans or folders to open; the first is selected and analysed first.
    screenshot : str, optional
        Wait for the first file's analysis to finish (or fail), save a PNG of the
        main window there and return instead of running interactively.
    model : str, optional
        Model file to use instead of the shipped default.

    Returns
    -------
    int
        0 on success; 1 when the screenshot's analysis failed or the PNG could not be written.

    Raises
    ------
    ScanLabError
        No display is available (and no screenshot was asked for), so the caller
        can fall back to the headless analysis.
    """
    if not has_display():
        if screenshot is None:
            raise ScanLabError(
                "no display available (DISPLAY/WAYLAND_DISPLAY unset); "
                "use the command-line subcommands or set QT_QPA_PLATFORM=offscreen"
            )
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    # Import torch before Qt: on Windows a torch imported after Qt can fail to load
    # c10.dll (pytorch/pytorch#166628, reported in downstream threads).
    import torch  # noqa: F401

    app = ensure_app()
    from PySide6.QtCore import QSettings

    from scanlab.gui.main_window import MainWindow
    from scanlab.gui.screenshot import ScreenshotTaker
    from scanlab.gui.settings import GuiSettings

    taker = None
    if screenshot is None:
        window = MainWindow(model=model)
    else:
        # A throw-away settings file: screenshots get the default layout and never
        # overwrite the analyst's remembered window state.
        tmp = tempfile.TemporaryDirectory(prefix="scanlab-shot-")
        store = QSettings(os.path.join(tmp.name, "settings.ini"), QSettings.Format.IniFormat)
        window = MainWindow(settings=GuiSettings(store), model=model)
        window.resize(1280, 800)
        taker = ScreenshotTaker(window, screenshot, first=files[0] if files else None)
    window.show()
    if files:
        window.open_paths(list(files))
    elif screenshot is None and not window.settings.get_bool("app/sample_opened", False):
        # First start: show what ScanLab does on the bundled forged sample.
        window.settings.set("app/sample_opened", True)
        window.open_sample()
    if taker is not None:
        taker.arm()
    code = int(app.exec())  # type: ignore[attr-defined]
    if taker is not None:
        code = taker.exit_code
        # Close (save settings, stop the worker) without posting another Quit event.
        quit_on_close = app.quitOnLastWindowClosed()  # type: ignore[attr-defined]
        app.setQuitOnLastWindowClosed(False)  # type: ignore[attr-defined]
        window.close()
        app.setQuitOnLastWindowClosed(quit_on_close)  # type: ignore[attr-defined]
        window.deleteLater()
    return code
