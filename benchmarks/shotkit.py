"""The offscreen app window the README picture scripts share (``readme_shots``, ``copymove_shots``).

:func:`offscreen_window` opens a :class:`~scanlab.gui.main_window.MainWindow` with
throw-away settings at a fixed size, opens the scans and waits until the first
analysis has settled; it yields the window and a ``wait(cond, seconds)`` that keeps
the event loop turning until ``cond()`` (``wait(lambda: False, s)``: for ``s`` seconds),
and closes the window afterwards.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def offscreen_window(files: list[str], size: tuple[int, int] = (1280, 800)) -> Iterator[tuple[Any, Callable]]:
    """(window, wait) with ``files`` open and their first analysis settled."""
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from scanlab.gui.main_window import MainWindow
    from scanlab.gui.settings import GuiSettings

    app = QApplication.instance() or QApplication([])
    tmp = tempfile.TemporaryDirectory(prefix="scanlab-shot-")
    win = MainWindow(settings=GuiSettings(QSettings(os.path.join(tmp.name, "s.ini"), QSettings.Format.IniFormat)))
    win.resize(*size)
    done: list[bool] = []
    win.analysis_settled.connect(lambda path, ok: done.append(ok))
    win.show()
    win.open_paths(files)

    def wait(cond: Callable[[], bool], seconds: float = 300.0) -> None:
        t = time.time()
        while not cond() and time.time() - t < seconds:
            app.processEvents()
            time.sleep(0.02)

    wait(lambda: bool(done))
    try:
        yield win, wait
    finally:
        win.close()
        tmp.cleanup()


__all__ = ["offscreen_window"]
