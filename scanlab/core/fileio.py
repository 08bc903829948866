"""Output files that are never half-written, and early checks that a path can be written."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from scanlab.core.errors import ScanLabError


def check_writable(path: str | os.PathLike, suffixes: Sequence[str] | None = None, what: str = "file") -> Path:
    """Fail early (before any long work) when ``path`` cannot be written.

    Raises
    ------
    ScanLabError
        Wrong suffix, a folder, a missing or read-only parent folder, a read-only file.
    """
    p = Path(path)
    if suffixes and p.suffix.lower() not in suffixes:
        raise ScanLabError(f"{p}: output must end in {', '.join(suffixes)}")
    if p.is_dir():
        raise ScanLabError(f"{p}: is a folder; give a {what} name")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise ScanLabError(f"{p}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise ScanLabError(f"{p}: folder {parent} is not writable")
    if p.exists() and not os.access(p, os.W_OK):
        raise ScanLabError(f"{p}: file is not writable")
    return p


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, fsync it, rename it over ``path``.

    The temporary name keeps ``path``'s suffix (some writers, like ``numpy.save``,
    append one otherwise). On any failure, including a cancel or Ctrl-C, the
    temporary file is removed and an existing ``path`` is left untouched.
    """
    p = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=p.suffix or ".part",
                               dir=p.parent if str(p.parent) else ".")
    os.close(fd)
    try:
        # mkstemp creates 0600; outputs are shared results, readable like any saved file
        os.chmod(tmp, 0o644)
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """:func:`atomic_write` for a bytes payload."""

    def _write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    atomic_write(path, _write)
