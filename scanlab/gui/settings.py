"""What the desktop app remembers between runs, kept in ``QSettings``.

Lists are stored as JSON strings: the INI backend returns a one-element list as a
plain string, and JSON round-trips identically on every platform.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QByteArray, QSettings

from scanlab.gui.scan_view import COLORMAPS

if TYPE_CHECKING:
    from scanlab.gui.main_window import MainWindow

MAX_RECENT = 10

ORG = "ScanLab"
APP = "ScanLab"


def open_settings() -> QSettings:
    """The app's settings store (per user, native format)."""
    return QSettings(ORG, APP)


class GuiSettings:
    """Typed access to the keys the GUI uses."""

    def __init__(self, store: QSettings | None = None) -> None:
        self.store = store if store is not None else open_settings()

    def _get(self, key: str, default: Any, kind: type) -> Any:
        value = self.store.value(key, default)
        try:
            if kind is bool:
                return (
                    value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
                )
            return kind(value)
        except (TypeError, ValueError):
            return default

    def get_str(self, key: str, default: str = "") -> str:
        """A string setting."""
        return self._get(key, default, str)

    def get_int(self, key: str, default: int) -> int:
        """An int setting."""
        return self._get(key, default, int)

    def get_float(self, key: str, default: float) -> float:
        """A float setting."""
        return self._get(key, default, float)

    def get_bool(self, key: str, default: bool) -> bool:
        """A bool setting."""
        return self._get(key, default, bool)

    def set(self, key: str, value: Any) -> None:
        """Store a plain value."""
        self.store.setValue(key, value)

    def get_bytes(self, key: str) -> QByteArray | None:
        """Window geometry/state blobs."""
        value = self.store.value(key)
        return value if isinstance(value, QByteArray) else None

    # -- recent files --------------------------------------------------------------------

    def recent_files(self) -> list[str]:
        """Most recent first."""
        try:
            items = json.loads(self.get_str("recent/files", "[]"))
        except json.JSONDecodeError:
            return []
        return [str(x) for x in items if isinstance(x, str)][:MAX_RECENT]

    def add_recent(self, paths: list[str]) -> None:
        """Put ``paths`` at the front of the recent list."""
        items = list(paths) + self.recent_files()
        seen: set[str] = set()
        out = [p for p in items if not (p in seen or seen.add(p))]
        self.set("recent/files", json.dumps(out[:MAX_RECENT]))

    def clear_recent(self) -> None:
        """Forget the recent files."""
        self.set("recent/files", "[]")

    def sync(self) -> None:
        """Write to disk now."""
        self.store.sync()


def restore_window_settings(window: MainWindow, model: str | None) -> None:
    """Apply remembered layout, parameters and overlay settings to a new window."""
    s = window.settings
    geom = s.get_bytes("window/geometry")
    if geom is not None:
        window.restoreGeometry(geom)
    else:
        window.resize(1280, 800)
    state = s.get_bytes("window/state")
    if state is None or not window.restoreState(state):
        window.default_layout()
    c = window.controls
    for w in (c.sub_spin, c.stride_spin, c.device_combo):
        w.blockSignals(True)
    c.sub_spin.setValue(s.get_int("analysis/sub", 64))
    c.stride_spin.setValue(s.get_int("analysis/stride", 16))
    c.set_device(s.get_str("analysis/device", "auto"))
    for w in (c.sub_spin, c.stride_spin, c.device_combo):
        w.blockSignals(False)
    spec = model or s.get_str("analysis/model", "") or None
    if spec is not None and not Path(spec).exists() and model is None:
        spec = None  # a remembered model that was deleted: fall back to the default
    if spec is not None:
        window._extra_models.append(spec)
    window.refresh_models(current=spec)
    c.opacity_slider.setValue(s.get_int("overlay/opacity", 60))
    cmap = s.get_str("overlay/colormap", "inferno")
    c.colormap_combo.setCurrentIndex(COLORMAPS.index(cmap) if cmap in COLORMAPS else 0)
    c.threshold_slider.setValue(s.get_int("overlay/threshold", 50))
    c.threshold_check.setChecked(s.get_bool("overlay/threshold_on", False))
    window.view.set_opacity(c.opacity_slider.value() / 100.0)
    window.view.set_colormap(str(c.colormap_combo.currentData()))
    window.view.set_threshold(c.threshold())


def save_window_settings(window: MainWindow) -> None:
    """Remember window layout, analysis parameters and overlay settings."""
    s, c = window.settings, window.controls
    s.set("window/geometry", window.saveGeometry())
    s.set("window/state", window.saveState())
    s.set("analysis/sub", c.sub_spin.value())
    s.set("analysis/stride", c.stride_spin.value())
    s.set("analysis/device", c.device())
    s.set("analysis/model", c.model_spec() or "")
    s.set("overlay/opacity", c.opacity_slider.value())
    s.set("overlay/colormap", str(c.colormap_combo.currentData()))
    s.set("overlay/threshold", c.threshold_slider.value())
    s.set("overlay/threshold_on", c.threshold_check.isChecked())
    s.sync()
