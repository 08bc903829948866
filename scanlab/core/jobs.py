"""Cooperative cancellation and progress reporting for long functions.

Long work is a plain function with keyword-only ``cancel`` and ``progress``
arguments; it calls :func:`check` once per batch and never sees a widget.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from scanlab.core.errors import Cancelled

ProgressFn = Callable[[int, int], None]
"""``progress(done, total)``; may be called from a worker thread."""


class CancelToken:
    """A thread-safe flag; ``cancel()`` asks a running job to stop at its next batch."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        """Ask the job to stop."""
        self._event.set()

    @property
    def cancelled(self) -> bool:
        """True once :meth:`cancel` was called."""
        return self._event.is_set()

    def check(self) -> None:
        """Raise :class:`Cancelled` when cancellation was requested."""
        if self._event.is_set():
            raise Cancelled()


def check(cancel: CancelToken | None) -> None:
    """Raise :class:`Cancelled` if ``cancel`` is set (``None`` never cancels)."""
    if cancel is not None:
        cancel.check()


def report(progress: ProgressFn | None, done: int, total: int) -> None:
    """Call ``progress`` if given."""
    if progress is not None:
        progress(done, total)
