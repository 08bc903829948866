"""The batch results table: one row per analysed page, its Arrow schema, part files, merging.

``scanlab batch`` writes ``RESULTS_DIR/results.parquet`` (docs/formats.md section
"Batch results"). While it runs, finished rows are appended as *part files*
(``RESULTS_DIR/parts/part-NNNNNNNN.parquet``), each written under a temporary name
and renamed, so a ``kill -9`` loses at most the rows not yet flushed and never
leaves a half-written file. :func:`merge_table` folds the parts (and an earlier
``results.parquet``) into the final table: the last row written for a page wins,
rows are sorted by page key, the parts are removed only after the table is safely
renamed into place.

Rows are plain dicts (JSON types only) so that worker processes and Ray actors can
hand them back without pickling numpy or Arrow objects.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from scanlab.core.errors import ScanLabError
from scanlab.core.io.fileio import atomic_write

SCHEMA_VERSION = 1
TABLE_NAME = "results.parquet"
PARTS_DIR = "parts"
MAPS_DIR = "maps"
TIMING_FIELDS = ("load_s", "compute_s", "regions_s", "total_s", "worker_peak_rss_mb")
_PART_RE = re.compile(r"^part-(\d{8})\.parquet$")
META_KEY = b"scanlab.batch"


def schema() -> Any:
    """The Arrow schema of the table (without its version metadata)."""
    import pyarrow as pa

    s, f, i, b = pa.string(), pa.float64(), pa.int64(), pa.bool_()
    return pa.schema([
        ("input", s),              # the file given (resolved absolute path)
        ("container", s),          # "pdf" / "tiff" for an embedded page, null for a plain file
        ("container_sha256", s),   # SHA-256 of the container file (null for a plain file)
        ("page", i),               # 1-based page in the container (null for a plain file)
        ("image_index", i),        # 0-based image on that page (null for a plain file)
        ("status", s),             # analysed | failed | skipped
        ("error", s),              # one line for failed/skipped rows, else null
        ("sha256", s),             # SHA-256 of the analysed image's bytes
        ("n_bytes", i),
        ("format", s),
        ("mode", s),
        ("width", i),
        ("height", i),
        ("dpi_x", f),
        ("dpi_y", f),
        ("bit_depth", i),
        ("jpeg_quality", f),
        ("jpeg_subsampling", s),
        ("jpeg_recompressed", b),
        ("jpeg", s),               # the scan block's full "jpeg" object as JSON (null: not a JPEG / not read)
        ("verdict", s),
        ("label", s),
        ("confidence", f),
        ("calibrated", b),
        ("vote_fraction", f),
        ("vote_interval_lo", f),
        ("vote_interval_hi", f),
        ("unknown_score", f),
        ("reason", s),
        ("windows_evidence", i),
        ("windows_no_evidence", i),
        ("threshold", f),
        ("low_fraction", f),
        ("no_evidence_fraction", f),
        ("n_regions", i),
        ("region_area", i),
        ("region_bbox", pa.list_(i)),
        ("region_inside_mean", f),
        ("region_ring_mean", f),
        ("region_contrast", f),
        ("region_p_value", f),
        ("suspicion", f),
        ("warnings", pa.list_(s)),
        ("map_path", s),           # relative to RESULTS_DIR (with --maps), else null
        ("model_name", s),
        ("model_sha256", s),
        ("parameters", s),         # canonical JSON of the analysis parameters
        ("params_key", s),         # SHA-256 (16 hex) of model_sha256 + parameters: the resume identity
        ("device", s),
        ("scanlab_version", s),
        ("timing", pa.struct([(k, f) for k in TIMING_FIELDS])),
    ])


def schema_with_version() -> Any:
    """:func:`schema` with the ``scanlab.batch`` metadata every results file carries."""
    return schema().with_metadata({META_KEY: json.dumps({"schema_version": SCHEMA_VERSION})})


COLUMNS = (
    "input", "container", "container_sha256", "page", "image_index", "status", "error", "sha256", "n_bytes",
    "format", "mode", "width", "height", "dpi_x", "dpi_y", "bit_depth", "jpeg_quality", "jpeg_subsampling",
    "jpeg_recompressed", "jpeg", "verdict", "label", "confidence", "calibrated", "vote_fraction",
    "vote_interval_lo", "vote_interval_hi", "unknown_score", "reason", "windows_evidence", "windows_no_evidence",
    "threshold", "low_fraction", "no_evidence_fraction", "n_regions", "region_area", "region_bbox",
    "region_inside_mean", "region_ring_mean", "region_contrast", "region_p_value", "suspicion", "warnings",
    "map_path", "model_name", "model_sha256", "parameters", "params_key", "device", "scanlab_version", "timing",
)


def empty_row() -> dict[str, Any]:
    """A row with every column null (``warnings`` an empty list)."""
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    row["warnings"] = []
    return row


def row_key(row: dict[str, Any]) -> tuple[str, int, int]:
    """The identity of a page in the table and its sort order: (input, page, image index); -1 = none."""
    page = row.get("page")
    idx = row.get("image_index")
    return (str(row["input"]), -1 if page is None else int(page), -1 if idx is None else int(idx))


def file_sha256(row: dict[str, Any]) -> str | None:
    """The hash of the input *file* a row came from (the container's for an embedded page)."""
    return row.get("container_sha256") if row.get("container") else row.get("sha256")


def to_arrow(rows: list[dict[str, Any]]) -> Any:
    """An Arrow table of ``rows`` in the table's schema (unknown keys are an error)."""
    import pyarrow as pa

    for r in rows:
        extra = set(r) - set(COLUMNS)
        if extra:
            raise ValueError(f"unknown batch columns {sorted(extra)}")
    return pa.Table.from_pylist([{k: r.get(k) for k in COLUMNS} for r in rows], schema=schema_with_version())


def _write_parquet(path: Path, rows: list[dict[str, Any]]) -> None:
    import pyarrow.parquet as pq

    table = to_arrow(rows)
    atomic_write(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"), hook=False)


def _read_table(path: str | os.PathLike, columns: list[str] | None = None) -> Any:
    """A results or part file as an Arrow table; a foreign or newer file is a one-line error."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
        meta = (pf.schema_arrow.metadata or {}).get(META_KEY)
    except (OSError, pa.ArrowException) as e:
        raise ScanLabError(f"{path}: not a readable batch results file ({str(e).splitlines()[0][:120]})") from None
    try:
        version = int(json.loads(meta)["schema_version"]) if meta else None
    except (ValueError, KeyError, TypeError):
        version = None
    if version is None:
        raise ScanLabError(f"{path}: not a scanlab batch results file (no {META_KEY.decode()} metadata)")
    if version > SCHEMA_VERSION:
        raise ScanLabError(f"{path}: batch results schema v{version} is newer than this scanlab (v{SCHEMA_VERSION})")
    try:
        return pf.read(columns=columns)
    except (OSError, pa.ArrowException, KeyError) as e:
        raise ScanLabError(f"{path}: damaged batch results file ({str(e).splitlines()[0][:120]})") from None


def read_rows(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a results or part file as plain dicts."""
    return _read_table(path).to_pylist()


class PartWriter:
    """Buffers finished rows and flushes them as numbered part files.

    A flush happens when ``max_rows`` rows are buffered or ``max_seconds`` have
    passed since the last flush (checked at each :meth:`add`), and at :meth:`close`.
    Numbering continues after the highest existing part, so a resumed run's rows
    come after (and win over) an interrupted run's.
    """

    def __init__(self, results_dir: Path, *, max_rows: int = 256, max_seconds: float = 2.0) -> None:
        self.folder = results_dir / PARTS_DIR
        self.folder.mkdir(parents=True, exist_ok=True)
        self.max_rows = max_rows
        self.max_seconds = max_seconds
        self.buffer: list[dict[str, Any]] = []
        self.next_index = max((i for i, _ in list_parts(results_dir)), default=0) + 1
        import time

        self._clock = time.monotonic
        self._last = self._clock()

    def add(self, row: dict[str, Any]) -> None:
        """Buffer one row; flush when the buffer is full or old enough."""
        self.buffer.append(row)
        if len(self.buffer) >= self.max_rows or self._clock() - self._last >= self.max_seconds:
            self.flush()

    def flush(self) -> None:
        """Write the buffered rows as the next part file (nothing when empty)."""
        if self.buffer:
            _write_parquet(self.folder / f"part-{self.next_index:08d}.parquet", self.buffer)
            self.next_index += 1
            self.buffer = []
        self._last = self._clock()


def list_parts(results_dir: Path) -> list[tuple[int, Path]]:
    """(number, path) of every complete part file, in write order (temporary files ignored)."""
    folder = results_dir / PARTS_DIR
    if not folder.is_dir():
        return []
    out = []
    for p in folder.iterdir():
        m = _PART_RE.match(p.name)
        if m:
            out.append((int(m.group(1)), p))
    return sorted(out)


def _sources(results_dir: Path) -> list[Path]:
    table = results_dir / TABLE_NAME
    return ([table] if table.exists() else []) + [p for _, p in list_parts(results_dir)]


def _fold(results_dir: Path, columns: list[str] | None = None) -> Any:
    """Every page's last written row (the table, then the parts in order), sorted by page key.

    Column-wise in Arrow (one sort of the concatenated files), so 10^6 rows never
    become Python objects. None when nothing is stored.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    sources = _sources(results_dir)
    if not sources:
        return None
    t = pa.concat_tables([_read_table(s, columns) for s in sources])
    keys = pa.table({"input": t["input"], "page": pc.fill_null(t["page"], -1),
                     "idx": pc.fill_null(t["image_index"], -1), "seq": pa.array(np.arange(t.num_rows))})
    order = pc.sort_indices(keys, sort_keys=[("input", "ascending"), ("page", "ascending"),
                                             ("idx", "ascending"), ("seq", "ascending")])
    k = keys.take(order).combine_chunks()
    last = np.ones(k.num_rows, dtype=bool)
    if k.num_rows > 1:  # the last of each run of equal keys wins (the latest write)
        same = np.ones(k.num_rows - 1, dtype=bool)
        for name in ("input", "page", "idx"):
            col = k[name].chunk(0) if k[name].num_chunks else k[name]
            same &= pc.equal(col.slice(0, k.num_rows - 1), col.slice(1)).to_numpy(zero_copy_only=False)
        last[:-1] = ~same
    return t.take(order.filter(pa.array(last)))


def _key_strings(t: Any) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    page = pc.cast(pc.fill_null(t["page"], -1), pa.string())
    idx = pc.cast(pc.fill_null(t["image_index"], -1), pa.string())
    return pc.binary_join_element_wise(t["input"], page, idx, "\x00")


def stored_rows(results_dir: Path) -> dict[tuple[str, int, int], dict[str, Any]]:
    """What ``--resume`` needs of every stored page: key, status, identity and hashes (last write wins)."""
    t = _fold(results_dir, ["input", "page", "image_index", "status", "params_key", "sha256", "container",
                            "container_sha256"])
    return {} if t is None else {row_key(r): r for r in t.to_pylist()}


def merge_table(results_dir: Path, keys: Iterable[tuple[str, int, int]] | None = None) -> Any:
    """Fold the parts into ``results.parquet`` and return it (an Arrow table sorted by :func:`row_key`).

    ``keys``: the pages of this run; rows of other pages (an earlier run over
    other inputs) are dropped so the table describes exactly this run's inputs.
    The parts are deleted only after the new table is renamed into place: a crash
    in between leaves rows that a later merge folds in again, never a gap.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    t = _fold(results_dir)
    if t is None:
        t = to_arrow([])
    if keys is not None:
        wanted = pa.array([f"{i}\x00{p}\x00{x}" for i, p, x in keys], pa.string())
        t = t.filter(pc.is_in(_key_strings(t), value_set=wanted))
    t = t.replace_schema_metadata(schema_with_version().metadata)
    atomic_write(results_dir / TABLE_NAME, lambda tmp: pq.write_table(t, tmp, compression="zstd"), hook=False)
    for _, p in list_parts(results_dir):
        p.unlink(missing_ok=True)
    return t


def read_columns(path: str | os.PathLike, names: list[str]) -> dict[str, Any]:
    """Some columns of a results file as NumPy arrays (the app's triage view, 10^5+ rows).

    Text columns become object arrays (None for null), numeric ones float64 with NaN
    for null. The schema version is checked as in :func:`read_rows`.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    table = _read_table(path, names)
    out: dict[str, Any] = {}
    for name in names:
        col = table.column(name)
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            out[name] = col.to_numpy(zero_copy_only=False).astype(object)
        else:
            out[name] = np.asarray(pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
    return out


class ResultsLock:
    """An exclusive lock on a results folder (``RESULTS_DIR/.lock``), held for the whole run.

    Two runs writing the same folder would number their part files alike and
    replace each other's rows. The lock is an ``flock``, released by the kernel
    when the process dies (``kill -9`` included), so it never goes stale. Where
    ``fcntl`` is missing (Windows) no lock is taken.
    """

    def __init__(self, results_dir: Path) -> None:
        self.path = results_dir / ".lock"
        self._fd: int | None = None

    def __enter__(self) -> ResultsLock:
        try:
            import fcntl
        except ImportError:
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise ScanLabError(f"{self.path.parent}: another scanlab batch is writing to this results folder") from None
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the flock
            self._fd = None


def remove_stale_temporaries(results_dir: Path) -> None:
    """Delete temporary part files a killed run left behind (complete parts are never touched)."""
    folder = results_dir / PARTS_DIR
    if folder.is_dir():
        for p in folder.iterdir():
            if p.name.startswith(".part-"):
                p.unlink(missing_ok=True)
