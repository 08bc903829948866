"""The ``.scanlab`` case file: versioned HDF5, atomic saves, a hash-chained audit log.

Layout in ``docs/formats.md`` section 6. Everything in memory is plain data
(:class:`Case`, :class:`Evidence`, :class:`Run`); h5py objects never leave this
module, so the GUI, the CLI and the report share one reader and one writer.

Saving is atomic: the whole case is written to a temporary file beside the
target, flushed and fsynced, renamed over the target, and the folder is fsynced,
so a crash, a ``kill -9`` or a full disk at any moment leaves either the old or
the new file, never a mixture. A lock file beside the case keeps a second writer
(another app window, a script) out.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import socket
import stat
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from scanlab.core.case.rois import ROI
from scanlab.core.errors import ScanLabError
from scanlab.core.io.fileio import output_mode
from scanlab.core.io.mapstore import StoredWindows, read_windows, write_windows

FORMAT = "scanlab-case"
FORMAT_VERSION = 1
GENESIS = "0" * 64
# older format version -> function(h5 file, in-memory dict) bringing it to the next one;
# version 1 is the first released layout, so nothing needs migrating yet
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}

SaveHook = Callable[[str], None]


class CaseError(ScanLabError):
    """A case file cannot be read, written or locked; the message names the file."""


def now_iso() -> str:
    """UTC time, ISO 8601 with seconds, for every timestamp in a case."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def canonical(obj: Any) -> str:
    """Canonical JSON (sorted keys, no spaces): the bytes every hash in a case is taken over."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def sha256_text(text: str) -> str:
    """SHA-256 hex digest of UTF-8 text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------- audit log


def audit_entry(prev: list[dict[str, Any]], user: str, action: str, payload: Any = None,
                detail: str = "") -> dict[str, Any]:
    """The next entry of an audit chain (not yet appended).

    ``payload_sha256`` is the hash of the canonical JSON of ``payload``; ``detail``
    is a short human-readable line (also covered by the entry hash).
    """
    prev_hash = prev[-1]["hash"] if prev else GENESIS
    e = {"seq": len(prev), "time": now_iso(), "user": user, "action": action,
         "payload_sha256": sha256_text(canonical(payload)), "detail": detail, "prev_hash": prev_hash}
    e["hash"] = sha256_text(prev_hash + canonical(e))
    return e


def verify_chain(entries: list[dict[str, Any]]) -> list[str]:
    """Problems in an audit chain (empty when intact): edited, removed or reordered entries."""
    problems = []
    prev = GENESIS
    for i, e in enumerate(entries):
        body = {k: v for k, v in e.items() if k != "hash"}
        if e.get("seq") != i:
            problems.append(f"audit entry {i}: sequence number {e.get('seq')} (entries removed or reordered)")
        if e.get("prev_hash") != prev:
            problems.append(f"audit entry {i}: does not link to the previous entry")
        if sha256_text(str(e.get("prev_hash")) + canonical(body)) != e.get("hash"):
            problems.append(f"audit entry {i} ({e.get('action')}): content does not match its hash (edited)")
        prev = e.get("hash", "")
    return problems


# ---------------------------------------------------------------- in-memory case


@dataclass
class Run:
    """One analysis run of one evidence file: the run JSON and its window grid."""

    info: dict[str, Any]
    windows: StoredWindows | None


@dataclass
class Evidence:
    """One evidence file (referenced by path and hash; optionally embedded)."""

    eid: str
    info: dict[str, Any]
    runs: list[Run] = field(default_factory=list)
    rois: list[ROI] = field(default_factory=list)
    embedded: bytes | None = None
    # records of model-free layer runs (scanlab.services.layer_records), oldest first; plain JSON
    layer_runs: list[dict[str, Any]] = field(default_factory=list)

    def next_roi_id(self) -> int:
        """A fresh ROI id for this evidence."""
        return max((r.id for r in self.rois), default=0) + 1


@dataclass
class Case:
    """Everything a case file holds, as plain Python objects."""

    meta: dict[str, Any]
    evidence: dict[str, Evidence] = field(default_factory=dict)
    models: dict[str, bytes] = field(default_factory=dict)
    audit: list[dict[str, Any]] = field(default_factory=list)
    view: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    read_only: bool = False
    warnings: list[str] = field(default_factory=list)
    dirty: bool = False

    def log(self, user: str, action: str, payload: Any = None, detail: str = "") -> dict[str, Any]:
        """Append one entry to the audit chain and mark the case modified."""
        e = audit_entry(self.audit, user, action, payload, detail)
        self.audit.append(e)
        self.meta["modified"] = e["time"]
        self.dirty = True
        return e

    def snapshot(self) -> Case:
        """A copy that a worker may read and log to while this case keeps changing.

        Metadata, audit, view and ROIs are deep copies; runs (never changed once
        stored), embedded bytes and model bytes are shared, so a snapshot is cheap.
        """
        ev = {k: Evidence(e.eid, copy.deepcopy(e.info), list(e.runs), copy.deepcopy(e.rois), e.embedded,
                          list(e.layer_runs))  # records, like runs, never change once stored
              for k, e in self.evidence.items()}
        return Case(copy.deepcopy(self.meta), ev, dict(self.models), copy.deepcopy(self.audit),
                    copy.deepcopy(self.view), self.path, self.read_only, list(self.warnings), self.dirty)

    @property
    def head_hash(self) -> str:
        """Hash of the last audit entry (the value printed in reports)."""
        return self.audit[-1]["hash"] if self.audit else GENESIS


def new_case(title: str, analyst: str, agency: str = "", case_id: str | None = None) -> Case:
    """A new, empty case with its first audit entry."""
    if not title.strip():
        raise CaseError("a case needs a title")
    if not analyst.strip():
        raise CaseError("a case needs an analyst")
    t = now_iso()
    cid = case_id or hashlib.sha256(f"{title}|{analyst}|{t}|{os.getpid()}".encode()).hexdigest()[:12]
    c = Case(meta={"id": cid, "title": title, "analyst": analyst, "agency": agency,
                   "created": t, "modified": t})
    c.log(analyst, "case_created", c.meta, f"case {title!r} created")
    return c


# ---------------------------------------------------------------- writing


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not possible on every platform (Windows); the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write(case: Case, f: Any, hook: SaveHook | None) -> None:
    import h5py

    f.attrs["format"] = FORMAT
    f.attrs["format_version"] = FORMAT_VERSION
    f.attrs["case"] = json.dumps(case.meta)
    ev = f.create_group("evidence")
    for eid, e in case.evidence.items():
        g = ev.create_group(eid)
        g.attrs["info"] = json.dumps(e.info)
        if e.embedded is not None:
            g.create_dataset("embedded", data=np.frombuffer(e.embedded, dtype=np.uint8))
        runs = g.create_group("runs")
        for i, r in enumerate(e.runs):
            rg = runs.create_group(f"{i:03d}")
            rg.attrs["run"] = json.dumps(r.info)
            if r.windows is not None:
                write_windows(rg.create_group("windows"), r.windows)
        g.create_dataset("rois", data=json.dumps([x.to_dict() for x in e.rois]),
                         dtype=h5py.string_dtype("utf-8"))
        if e.layer_runs:  # absent in cases without layer runs (and in files written before records)
            g.create_dataset("layer_runs", data=canonical(e.layer_runs), dtype=h5py.string_dtype("utf-8"))
        if hook:
            hook("evidence")
    mg = f.create_group("models")
    for sha, data in case.models.items():
        mg.create_dataset(sha, data=np.frombuffer(data, dtype=np.uint8))
    f.create_dataset("audit", data=[canonical(e) for e in case.audit], dtype=h5py.string_dtype("utf-8"))
    f.create_dataset("view", data=json.dumps(case.view), dtype=h5py.string_dtype("utf-8"))


def save_case(case: Case, path: str | os.PathLike | None = None, *, hook: SaveHook | None = None) -> Path:
    """Write ``case`` atomically to ``path`` (default: where it was opened from).

    ``hook(stage)`` is called at ``"evidence"`` (after each evidence group),
    ``"written"`` (file complete, before fsync) and ``"renamed"``; tests use it to
    kill the process at a known point.

    Raises
    ------
    CaseError
        Read-only case, unwritable folder, disk full (the previous file is intact).
    """
    p = Path(path) if path is not None else case.path
    if p is None:
        raise CaseError("the case has no file name yet; choose one (Save as)")
    if case.read_only and (case.path is None or p.resolve() == case.path.resolve()):
        raise CaseError(f"{p}: the case was opened read-only; save it under another name")
    folder = p.parent if str(p.parent) else Path(".")
    if not folder.is_dir():
        raise CaseError(f"{p}: folder {folder} does not exist")
    import h5py

    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=folder)
    except OSError as e:
        raise CaseError(f"{p}: cannot write in {folder} ({e.strerror or e})") from None
    os.close(fd)
    try:
        os.chmod(tmp, output_mode())  # what open() would give under the user's umask
        with h5py.File(tmp, "w") as f:
            _write(case, f, hook)
        if hook:
            hook("written")
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, p)
        _fsync_dir(folder)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise CaseError(f"{p}: could not save the case ({e.strerror or e}); the previous file is unchanged") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if hook:
        hook("renamed")
    case.path = p
    case.read_only = False
    case.dirty = False
    return p


# ---------------------------------------------------------------- reading


def _in_order_added(case: Case) -> None:
    """Put the evidence back in the order it was added: HDF5 lists groups by name, i.e. by hash.

    The audit chain's ``evidence_added`` entries (detail ``"<path> (<eid>)"``) give the order;
    evidence without such an entry keeps its first-seen time, after the rest.
    """
    rank: dict[str, int] = {}
    for a in case.audit:
        if a.get("action") == "evidence_added":
            eid = str(a.get("detail", "")).rsplit("(", 1)[-1].rstrip(")")
            rank.setdefault(eid, int(a.get("seq", len(rank))))
    end = len(case.audit)
    case.evidence = dict(sorted(case.evidence.items(),
                                key=lambda kv: (rank.get(kv[0], end), str(kv[1].info.get("first_seen", "")), kv[0])))


def _json_attr(obj: Any, key: str) -> Any:
    v = obj.attrs[key]
    return json.loads(v.decode() if isinstance(v, bytes) else v)


def _json_dataset(d: Any) -> Any:
    v = d[()]
    return json.loads(v.decode() if isinstance(v, bytes) else v)


def load_case(path: str | os.PathLike) -> Case:
    """Read a case file; damaged, foreign or newer files raise :class:`CaseError`.

    Evidence hashes are *not* checked here (see ``scanlab.services.cases.open_case``).
    """
    import h5py

    p = Path(path)
    if not p.exists():
        raise CaseError(f"{p}: case file not found")
    if p.is_dir():
        raise CaseError(f"{p}: is a folder, not a case file")
    try:
        f = h5py.File(p, "r")
    except OSError:
        raise CaseError(f"{p}: not a ScanLab case file, or damaged / truncated (HDF5 cannot read it)") from None
    try:
        with f:
            if f.attrs.get("format") != FORMAT:
                raise CaseError(f"{p}: not a ScanLab case file (format {f.attrs.get('format')!r})")
            version = int(f.attrs.get("format_version", 0))
            if version > FORMAT_VERSION:
                raise CaseError(f"{p}: written by a newer ScanLab (case format {version}; this version "
                                f"reads up to {FORMAT_VERSION}); update ScanLab to open it")
            case = Case(meta=_json_attr(f, "case"), path=p)
            for eid, g in f["evidence"].items():
                e = Evidence(eid, _json_attr(g, "info"))
                if "embedded" in g:
                    e.embedded = bytes(g["embedded"][()].tobytes())
                for name in sorted(g["runs"]):
                    rg = g["runs"][name]
                    e.runs.append(Run(_json_attr(rg, "run"), read_windows(rg["windows"]) if "windows" in rg else None))
                e.rois = [ROI.from_dict(d) for d in _json_dataset(g["rois"])]
                e.layer_runs = _json_dataset(g["layer_runs"]) if "layer_runs" in g else []
                if not isinstance(e.layer_runs, list) or not all(isinstance(r, dict) for r in e.layer_runs):
                    raise ValueError(f"evidence {eid}: layer_runs is not a list of records")
                case.evidence[eid] = e
            for sha, d in f["models"].items():
                case.models[sha] = bytes(d[()].tobytes())
            case.audit = [json.loads(s.decode() if isinstance(s, bytes) else s) for s in f["audit"][()]]
            case.view = _json_dataset(f["view"]) if "view" in f else {}
    except CaseError:
        raise
    except (KeyError, ValueError, TypeError, OSError) as e:
        raise CaseError(f"{p}: case file is damaged or incomplete ({type(e).__name__}: {e})") from None
    while version < FORMAT_VERSION:  # pragma: no cover - no older layout exists yet
        if version not in MIGRATIONS:
            raise CaseError(f"{p}: case format {version} is too old to migrate")
        MIGRATIONS[version]({"case": case})
        version += 1
        case.dirty = True
    _in_order_added(case)
    # the mode bits count too: a file marked read-only stays read-only even for root
    case.read_only = (not os.access(p, os.W_OK) or not p.stat().st_mode & stat.S_IWUSR
                      or not os.access(p.parent if str(p.parent) else ".", os.W_OK))
    return case


# ---------------------------------------------------------------- lock


_HELD: set[str] = set()  # lock files this process holds (two windows of one app are refused too)


class CaseLock:
    """``<case>.lock`` beside the case: one writer at a time, stale locks taken over.

    The lock file holds ``host pid``; a lock left by a dead process on this host is
    stale and replaced. A live holder gives a clear refusal.
    """

    def __init__(self, case_path: str | os.PathLike) -> None:
        self.path = Path(str(case_path) + ".lock")
        self.held = False

    def _holder(self) -> tuple[str, int] | None:
        try:
            host, pid = self.path.read_text().split()
            return host, int(pid)
        except (OSError, ValueError):
            return None

    def acquire(self) -> CaseLock:
        """Take the lock or raise :class:`CaseError` naming the holder."""
        me = f"{socket.gethostname()} {os.getpid()}"
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                h = self._holder()
                if str(self.path.resolve()) in _HELD:
                    raise CaseError(f"{self.path.with_suffix('')}: the case is already open in this ScanLab "
                                    "(another window); switch to that window") from None
                if h and h[0] == socket.gethostname() and (h[1] == os.getpid() or not _alive(h[1])):
                    self.path.unlink(missing_ok=True)  # stale (or ours from an earlier open)
                    continue
                who = f"process {h[1]} on {h[0]}" if h else "another program"
                raise CaseError(f"{self.path.with_suffix('')}: the case is open in {who}; close it there "
                                f"first (or delete {self.path.name} if that program is gone)") from None
            except PermissionError:
                return self  # a read-only folder: nobody can write the case, so no lock is needed
            except OSError as e:
                raise CaseError(f"{self.path}: cannot create the lock file ({e.strerror or e})") from None
            with os.fdopen(fd, "w") as fh:
                fh.write(me)
            self.held = True
            _HELD.add(str(self.path.resolve()))
            return self
        raise CaseError(f"{self.path}: could not take the case lock")

    def release(self) -> None:
        """Remove the lock file if this object holds it."""
        if self.held:
            _HELD.discard(str(self.path.resolve()))
            self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> CaseLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
