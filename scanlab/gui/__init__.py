"""The desktop app (PySide6 + pyqtgraph); the only package that imports Qt."""

from scanlab.gui.qtcompat import guard_singletons

guard_singletons()  # before any widget exists: see qtcompat (PySide6 6.12 loses references to True and None)
