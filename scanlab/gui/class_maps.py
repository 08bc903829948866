"""Off-GUI-thread computation of another class's reliability map.

Switching the mapped class needs no network run, but ``result.map_for(label)`` is
still an O(pixels) box average: about a second for a 16 MP scan on a laptop CPU,
too long for the GUI thread. One background Python thread computes it and hands
the map back through a queued Qt signal (napari's executor + main-thread pattern).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PySide6.QtCore import QObject, Signal

from scanlab.gui.documents import ScanDocument

log = logging.getLogger(__name__)


class ClassMapLoader(QObject):
    """Computes ``doc.result.map_for(label)`` in the background, latest request wins.

    Signals
    -------
    ready(object, str, object)
        ``(document, label, map)`` for the latest request only; emitted from the
        worker thread and delivered queued to the receiver's (GUI) thread.
    """

    ready = Signal(object, str, object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scanlab-classmap")
        self._latest: tuple[int, str] | None = None

    def request(self, doc: ScanDocument, label: str) -> None:
        """Compute ``label``'s map for ``doc``; an older pending request is dropped."""
        self._latest = (id(doc), label)
        self._pool.submit(self._work, doc, label)

    def _work(self, doc: ScanDocument, label: str) -> None:
        if self._latest != (id(doc), label):
            return  # superseded while queued
        try:
            arr: np.ndarray | None = doc.map_of(label)
        except Exception:  # noqa: BLE001 - reported, never fatal
            log.exception("map of %s for %s failed", label, doc.path)
            return
        if self._latest == (id(doc), label):
            self.ready.emit(doc, label, arr)

    def shutdown(self) -> None:
        """Drop pending work and wait for the running one."""
        self._latest = None
        self._pool.shutdown(wait=True, cancel_futures=True)
