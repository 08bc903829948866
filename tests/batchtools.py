"""Synthetic batch results tables (the triage view's tests and benchmark): any size, in seconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np

VERDICTS = ("attributed", "inconclusive", "unknown")


def write_synthetic_table(path: Path, n: int, seed: int = 0, n_labels: int = 5, failed_every: int = 50) -> Path:
    """A schema-valid ``results.parquet`` of ``n`` rows with plausible values (not analyses of anything).

    Every ``failed_every``-th row is a failed page (no verdict, an error). Written column-wise
    (from_pydict), so 10^5 rows take well under a second.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from scanlab.services.batch_table import COLUMNS, schema_with_version

    rng = np.random.default_rng(seed)
    failed = np.arange(n) % failed_every == failed_every - 1
    ok = ~failed

    def masked(values: np.ndarray) -> list:
        return [None if f else v for v, f in zip(values.tolist(), failed, strict=True)]

    cols: dict[str, list] = {k: [None] * n for k in COLUMNS}
    cols["input"] = [f"/archive/box{i // 1000:04d}/page{i:07d}.tif" for i in range(n)]
    cols["status"] = np.where(ok, "analysed", "failed").tolist()
    cols["error"] = [f"/archive/box{i // 1000:04d}/page{i:07d}.tif: corrupt or truncated image" if f else None
                     for i, f in enumerate(failed)]
    cols["verdict"] = masked(np.asarray(VERDICTS)[rng.integers(0, 3, n)])
    cols["label"] = masked(np.asarray([f"scanner-{k}" for k in range(n_labels)])[rng.integers(0, n_labels, n)])
    cols["confidence"] = masked(rng.random(n))
    cols["suspicion"] = masked(rng.beta(0.5, 4.0, n))
    cols["unknown_score"] = masked(rng.random(n))
    cols["low_fraction"] = masked(rng.random(n) * 0.3)
    cols["region_area"] = masked(rng.integers(0, 200_000, n))
    cols["region_p_value"] = masked(rng.random(n))
    cols["warnings"] = [[] for _ in range(n)]
    table = pa.Table.from_pydict(cols, schema=schema_with_version())
    pq.write_table(table, path, compression="zstd")
    return path
