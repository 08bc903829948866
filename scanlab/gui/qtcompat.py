"""Work-arounds for bugs of the Qt binding that ScanLab cannot avoid by writing different code.

PySide6 6.12.0 on CPython 3.11 drops references it never took: every ``Signal.emit``
from Python loses one reference to ``True``, and every call of a Qt method that
returns nothing (``setText``, ``setValue``, ``setObjectName``...) loses one to
``None`` (measured: 100 calls lower ``sys.getrefcount`` by exactly 100). After some
ten thousand such calls in one session (mouse moves over the scan emit
``cursor_moved`` and update the readout) the count reaches zero and CPython aborts
with "Fatal Python error: bool_dealloc" or "none_dealloc". From CPython 3.12 on these
singletons are immortal and the bug is harmless. :func:`guard_singletons` detects
each leak with one probe call and, only where it happens, gives the singleton the
practically infinite reference count that CPython 3.12 gives it.
"""

from __future__ import annotations

import ctypes
import sys

from PySide6.QtCore import QObject, Signal

_GUARD = 1 << 40  # references: more calls than any session makes
_guarded: set[str] = set()


class _Probe(QObject):
    ping = Signal(object)


def leaking_singletons() -> list[str]:
    """Names of the singletons (``True``, ``None``) that one binding call loses a reference to here."""
    probe = _Probe()
    out = []
    before = sys.getrefcount(True)
    probe.ping.emit(0)
    if sys.getrefcount(True) < before:
        out.append("True")
    before = sys.getrefcount(None)
    probe.setObjectName("probe")
    if sys.getrefcount(None) < before:
        out.append("None")
    return out


def guard_singletons() -> list[str]:
    """Protect ``True`` and ``None`` from the binding's lost references (once; only where lost).

    Returns the names guarded so far.
    """
    if sys.implementation.name != "cpython" or sys.version_info >= (3, 12):
        return sorted(_guarded)
    for name in leaking_singletons():
        if name not in _guarded:
            obj = {"True": True, "None": None}[name]
            # CPython < 3.12: ob_refcnt is the first field of every object, at id(obj)
            ctypes.c_ssize_t.from_address(id(obj)).value += _GUARD
            _guarded.add(name)
    return sorted(_guarded)
