"""The per-user cache of rendered outlier windows, shared by every training run.

Rendering the virtual outlier scanners (:func:`scanlab.core.synth.outliers.outlier_windows`)
takes about a minute on a 2-core machine; their windows depend only on the generator's
arguments, its version and the content available (the scikit-image photographs are
optional), so they are rendered once and kept as one ``.npy`` file of uint8 64x64
patches (12 kB each) under ``<cache>/outliers/``. A file is written atomically, so
two runs rendering at once both end with a complete file.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from scanlab.core.jobs import CancelToken, ProgressFn
from scanlab.core.synth import outliers as gen
from scanlab.core.synth.content import photo_paths
from scanlab.services.paths import cache_dir

renders = 0  # windows sets rendered by this process (the tests check that a second run reuses the file)


def cache_key(n_designs: int, windows_per_design: int, seed: int, bank_name: str = gen.OUTLIER_BANK) -> str:
    """The file stem that identifies one set of outlier windows."""
    import PIL

    d = {"version": gen.GENERATOR_VERSION, "bank": bank_name, "seed": seed, "designs": n_designs,
         "windows": windows_per_design, "photos": len(photo_paths()), "pillow": PIL.__version__}
    h = hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]
    return f"{bank_name}-v{gen.GENERATOR_VERSION}-s{seed}-{n_designs}x{windows_per_design}-{h}"


def cached_outlier_windows(
    *,
    n_designs: int,
    windows_per_design: int,
    seed: int = 0,
    folder: str | os.PathLike | None = None,
    cancel: CancelToken | None = None,
    progress: ProgressFn | None = None,
) -> tuple[np.ndarray, np.ndarray, Path]:
    """Outlier windows and their design ids, from the cache or rendered (and then cached).

    Returns
    -------
    (windows, design_ids, path)
        uint8 (n, 64, 64, 3), (n,) int and the cache file.
    """
    global renders
    root = Path(folder) if folder is not None else cache_dir() / "outliers"
    stem = cache_key(n_designs, windows_per_design, seed)
    path = root / f"{stem}.npy"
    n = n_designs * windows_per_design
    if path.is_file():
        try:
            w = np.load(path, mmap_mode="r")
            if w.shape == (n, 64, 64, 3) and w.dtype == np.uint8:
                return np.asarray(w), np.repeat(np.arange(n_designs), windows_per_design), path
        except (OSError, ValueError):  # damaged or half-written by an older version: render again
            pass
    w, ids = gen.outlier_windows(n_designs=n_designs, windows_per_design=windows_per_design, seed=seed,
                                 cancel=cancel, progress=progress)
    renders += 1
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = root / f".{stem}.tmp-{os.getpid()}.npy"
        np.save(tmp, w)
        os.replace(tmp, path)
    except OSError:  # a read-only or full cache costs the next run a re-render, nothing more
        pass
    return w, ids, path
