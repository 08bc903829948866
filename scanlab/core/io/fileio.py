"""Output files that are never half-written, and early checks that a path can be written."""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Callable, Iterable, Sequence
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


def _umask() -> int:
    """The process umask.

    Linux reports it in /proc without changing it; elsewhere it is read by
    setting and restoring it (Python has no getter), under a lock.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        m = os.umask(0o022)
        os.umask(m)
    return m


_UMASK_LOCK = threading.Lock()


def output_mode() -> int:
    """Mode for a new output file: 0o666 minus the umask (what ``open(path, "w")`` gives)."""
    return 0o666 & ~_umask()


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable: fsync the folder that holds the new entry (POSIX only)."""
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on folders; the data itself is synced
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[str], None], *, hook: bool = True) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, fsync it, rename it over ``path``.

    The temporary name keeps ``path``'s suffix (some writers, like ``numpy.save``,
    append one otherwise). The file gets the mode a plain ``open(path, "w")``
    would give (0o666 minus the umask, so a lab's ``umask 077`` keeps results
    private), and the folder is fsynced after the rename. On any failure,
    including a cancel or Ctrl-C, the temporary file is removed and an existing
    ``path`` is left untouched.

    ``SCANLAB_TEST_WRITE_HOOK`` (tests only): when set to a file name, the
    writer creates that file after the temporary file is complete and before the
    rename, then waits, so a test can ``kill -9`` the process at that point.
    ``hook=False`` exempts internal files (training checkpoints) so the hook marks
    the user-visible output.
    """
    p = Path(path)
    folder = p.parent if str(p.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=p.suffix or ".part", dir=folder)
    os.close(fd)
    try:
        # mkstemp creates 0600; give what open() would have given under this umask
        os.chmod(tmp, output_mode())
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        if hook:
            _test_hook(tmp)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(folder)


def _test_hook(tmp: str) -> None:
    marker = os.environ.get("SCANLAB_TEST_WRITE_HOOK")
    if not marker:
        return
    # written under another name and renamed: a test polling for the marker must never
    # read it half-written (seen as an empty path under load)
    Path(marker + ".part").write_text(tmp)
    os.replace(marker + ".part", marker)
    import time

    time.sleep(60)  # the test kills the process here; never reached in normal use


def _identity(p: Path) -> tuple[str, tuple[int, int] | None]:
    try:
        st = p.stat()
        ident: tuple[int, int] | None = (st.st_dev, st.st_ino)
    except OSError:
        ident = None
    try:
        resolved = str(p.resolve())
    except (OSError, RuntimeError):  # a symlink loop
        resolved = os.path.abspath(p)
    return resolved, ident


def refuse_overwrite(output: str | os.PathLike, inputs: Iterable[str | os.PathLike], what: str = "an input") -> None:
    """Refuse an output path that is (or would replace) one of the inputs.

    Compares resolved paths (catches symlinks and ``..``) and (st_dev, st_ino)
    (catches hard links). Call it before any work starts.

    Raises
    ------
    ScanLabError
        ``<output>: output would overwrite <what> <input>``.
    """
    out = Path(output)
    o_res, o_id = _identity(out)
    for src in inputs:
        s = Path(src)
        s_res, s_id = _identity(s)
        if o_res == s_res or (o_id is not None and o_id == s_id):
            raise ScanLabError(f"{out}: output would overwrite {what} ({s}); choose another output path")


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, hook: bool = True) -> None:
    """:func:`atomic_write` for a bytes payload."""

    def _write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    atomic_write(path, _write, hook=hook)
