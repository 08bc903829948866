"""Progress on the terminal for the command line: a tqdm bar on stderr, silent when piped."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class TerminalProgress:
    """A ``progress(done, total)`` callable drawing a tqdm bar when stderr is a terminal."""

    def __init__(self, desc: str, enabled: bool | None = None) -> None:
        self.desc = desc
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.bar: Any = None

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None or self.bar.total != total:
            from tqdm import tqdm  # only when a bar is really drawn

            if self.bar is not None:
                self.bar.close()
            self.bar = tqdm(total=total, desc=self.desc, file=sys.stderr, leave=False, dynamic_ncols=True)
        self.bar.n = done
        self.bar.refresh()

    def close(self) -> None:
        """Remove the bar."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None


@contextmanager
def progress_bar(desc: str, quiet: bool = False) -> Iterator[TerminalProgress]:
    """``with progress_bar("map") as bar: work(progress=bar)``; ``quiet`` disables it."""
    bar = TerminalProgress(desc, enabled=False if quiet else None)
    try:
        yield bar
    finally:
        bar.close()
