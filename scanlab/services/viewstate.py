"""What the analyst has chosen to see: analysis and overlay parameters, without Qt.

One :class:`ViewState` per window is the single owner of these choices. Widgets bind
to it (the controls panel writes it and mirrors it), and everything else reads it:
the analysis scheduler (which parameters to analyse with), the settings store, the
case view saved in a case file, the menus. It is plain data with a tiny observer
mechanism, so it can be tested, saved and restored without a display (the way
napari's ``components`` models are bound by its ``_qt`` widgets).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from scanlab.core.errors import ScanLabError

MIN_SUB = 64  # the network's patch: a sub-image smaller than one window has no probability
ANALYSIS_FIELDS = frozenset({"model", "sub", "stride", "device", "engine"})
OVERLAY_FIELDS = frozenset({"map_label", "colormap", "opacity", "threshold", "threshold_on", "overlay"})
CASE_VIEW_FIELDS = ("opacity", "colormap", "threshold_on", "threshold")  # stored in a case file's view

Observer = Callable[[frozenset[str]], None]


@dataclass
class ViewState:
    """Analysis and overlay parameters of one window.

    Attributes
    ----------
    model : str or None
        Model file, or ``None`` for the shipped default.
    sub, stride : int
        Reliability-map sub-image size (>= 64) and stride (>= 1), in pixels.
    device : str
        ``auto``, ``cpu``, ``cuda`` or ``mps``.
    engine : str or None
        Map engine (``None``: the default dense engine).
    map_label : str or None
        What the overlay is a map of (a class, the attribution or unknown map;
        ``None``: the predicted class) for the scan on screen.
    colormap : str
        Colour-map name of the reliability overlay.
    opacity, threshold : int
        Percent (0..100); the threshold applies only when ``threshold_on``.
    threshold_on, overlay : bool
        Show only values below the threshold; show the overlay at all.
    """

    model: str | None = None
    sub: int = MIN_SUB
    stride: int = 16
    device: str = "auto"
    engine: str | None = None
    map_label: str | None = None
    colormap: str = "inferno"
    opacity: int = 60
    threshold: int = 50
    threshold_on: bool = False
    overlay: bool = True
    _observers: list[Observer] = field(default_factory=list, repr=False, compare=False)

    def subscribe(self, fn: Observer) -> None:
        """Call ``fn(changed_field_names)`` after every change (on the caller's thread)."""
        self._observers.append(fn)

    def clear_observers(self) -> None:
        """Forget every observer (a closing window: no widget is called after it is gone)."""
        self._observers.clear()

    def update(self, **changes: Any) -> frozenset[str]:
        """Change some fields; observers hear which ones actually changed.

        Raises
        ------
        ScanLabError
            A value out of range (nothing changes then), or an unknown field.
        """
        known = {f.name for f in fields(self) if not f.name.startswith("_")}
        for k, v in changes.items():
            if k not in known:
                raise ScanLabError(f"view state has no field {k!r}")
            _check(k, v)
        changed = frozenset(k for k, v in changes.items() if getattr(self, k) != v)
        for k in changed:
            setattr(self, k, changes[k])
        if changed:
            for fn in list(self._observers):
                fn(changed)
        return changed

    def analysis_key(self) -> tuple[str | None, int, int, str]:
        """``(model, sub, stride, device)``: what an analysis result depends on."""
        return (self.model, self.sub, self.stride, self.device)

    def threshold_value(self) -> float | None:
        """The overlay threshold in 0..1, or ``None`` when off."""
        return self.threshold / 100.0 if self.threshold_on else None

    def case_view(self) -> dict[str, Any]:
        """The overlay part of a case file's ``view`` (docs/formats.md)."""
        return {k: getattr(self, k) for k in CASE_VIEW_FIELDS}

    def apply_case_view(self, view: dict[str, Any]) -> None:
        """Restore what :meth:`case_view` stored; missing or bad values are left as they are."""
        ok = {}
        for k in CASE_VIEW_FIELDS:
            if k in view and view[k] is not None:
                try:
                    v = bool(view[k]) if k == "threshold_on" else str(view[k]) if k == "colormap" else int(view[k])
                    _check(k, v)
                except (TypeError, ValueError, ScanLabError):
                    continue
                ok[k] = v
        self.update(**ok)


def _check(name: str, value: Any) -> None:
    """Refuse values no analysis or overlay can use, with the reason in words."""
    if name == "sub" and (not isinstance(value, int) or value < MIN_SUB):
        raise ScanLabError(f"sub-image {value} px refused: it must be at least {MIN_SUB} px "
                           "(the network's patch size)")
    if name == "stride" and (not isinstance(value, int) or value < 1):
        raise ScanLabError(f"stride {value} px refused: it must be at least 1 px")
    if name in ("opacity", "threshold") and (not isinstance(value, int) or not 0 <= value <= 100):
        raise ScanLabError(f"{name} {value} refused: it is a percentage (0..100)")
