"""What the desktop app remembers between runs, kept in ``QSettings``.

Lists are stored as JSON strings: the INI backend returns a one-element list as a
plain string, and JSON round-trips identically on every platform.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QSettings

from scanlab.core.errors import ScanLabError
from scanlab.gui.scan_view import COLORMAPS
from scanlab.services.viewstate import ViewState

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


def restore_view_state(s: GuiSettings, state: ViewState) -> None:
    """Apply the remembered analysis and overlay parameters (bad stored values are skipped)."""
    cmap = s.get_str("overlay/colormap", "inferno")
    values = {"sub": s.get_int("analysis/sub", 64), "stride": s.get_int("analysis/stride", 16),
              "device": s.get_str("analysis/device", "auto"), "opacity": s.get_int("overlay/opacity", 60),
              "colormap": cmap if cmap in COLORMAPS else COLORMAPS[0],
              "threshold": s.get_int("overlay/threshold", 50),
              "threshold_on": s.get_bool("overlay/threshold_on", False)}
    for k, v in values.items():
        try:
            state.update(**{k: v})
        except ScanLabError:
            continue  # e.g. a sub-image below 64 from an old version: keep the default


def remembered_model(s: GuiSettings, model: str | None) -> str | None:
    """The model to start with: ``model`` (command line), else the remembered one if it still exists."""
    spec = model or s.get_str("analysis/model", "") or None
    if spec is not None and not Path(spec).exists() and model is None:
        return None  # a remembered model that was deleted: fall back to the default
    return spec


def save_view_state(s: GuiSettings, state: ViewState) -> None:
    """Remember the analysis and overlay parameters."""
    s.set("analysis/sub", state.sub)
    s.set("analysis/stride", state.stride)
    s.set("analysis/device", state.device)
    s.set("analysis/model", state.model or "")
    s.set("overlay/opacity", state.opacity)
    s.set("overlay/colormap", state.colormap)
    s.set("overlay/threshold", state.threshold)
    s.set("overlay/threshold_on", state.threshold_on)
