"""Helpers every command module shares: stderr, cheap input checks, Ctrl-C, common options."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from scanlab.core.errors import ScanLabError


def eprint(*a: Any) -> None:
    print(*a, file=sys.stderr, flush=True)


def check_input(path: str | os.PathLike, what: str) -> Path:
    """Fail fast, before torch is imported, on an input that cannot be read."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise ScanLabError(f"{p}: no such {what}") from None
    except OSError as e:  # a symlink loop, a name too long, no permission on a folder
        raise ScanLabError(f"{p}: cannot open {what} ({e.strerror or e})") from None
    if p.is_dir():
        raise ScanLabError(f"{p}: is a folder, not a {what}")
    if not stat.S_ISREG(st.st_mode):  # a FIFO or /dev/zero would block or never end
        raise ScanLabError(f"{p}: not a regular file (a device, pipe or socket), not a {what}")
    if not os.access(p, os.R_OK):
        raise ScanLabError(f"{p}: {what} is not readable (permission denied)")
    return p


def model_path(spec: str | None) -> Path:
    """The model file ``-m`` names (the shipped default when omitted), checked without torch."""
    from scanlab.services.paths import default_model_path

    if spec is None or spec == "default":
        p = default_model_path()
        if not p.exists():
            raise ScanLabError(f"{p}: the shipped default model is missing; pass -m MODEL")
        return p
    return check_input(spec, "model file")


def add_common(p: argparse.ArgumentParser, *, json_flag: bool = True) -> None:
    p.add_argument("-m", "--model", default=None, help="model file (default: the shipped model)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default auto)")
    p.add_argument("--engine", default=None, choices=["dense", "naive"], help="window engine (default dense)")
    if json_flag:
        p.add_argument("--json", action="store_true", help="print one JSON object on stdout")


@contextlib.contextmanager
def sigint_cancels() -> Iterator[Any]:
    """Ctrl-C asks a long job to stop at its next batch instead of raising wherever it lands.

    A KeyboardInterrupt raised while Python runs a finaliser (training opens and drops a
    memory map per patch, so finalisers run all the time) is printed as "Exception
    ignored" and lost: the run went on. Setting a flag cannot be lost. A second Ctrl-C
    interrupts at once, as usual.
    """
    from scanlab.core.jobs import CancelToken

    token = CancelToken()

    def _handler(signum: int, frame: Any) -> None:
        if token.cancelled:
            raise KeyboardInterrupt
        token.cancel()

    try:
        previous = signal.signal(signal.SIGINT, _handler)
    except ValueError:  # not the main thread: leave Ctrl-C alone
        yield token
        return
    try:
        yield token
    finally:
        signal.signal(signal.SIGINT, previous)


