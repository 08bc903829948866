"""Where ScanLab finds what it ships (models, samples, icons) and keeps per-user data.

This module is the single place that resolves shipped files. The repository keeps
them as sources in ``trained_models/`` and ``resources/``; a wheel (and the desktop
bundle) carries the same two folders as package data under ``scanlab/_data/``
(copied there at build time by ``setup.py``). Lookup order:

1. ``$SCANLAB_DEFAULT_MODEL`` for the default model only;
2. the package data, through :mod:`importlib.resources` (wheel, frozen bundle);
3. the checkout the package was imported from (editable install, ``PYTHONPATH``),
   where the package data is not copied so that edits to the sources show at once.

User-trained models and caches live in the platform's per-user folders
(platformdirs), never in the install folder.
"""

from __future__ import annotations

import os
from functools import lru_cache
from importlib.resources import files
from pathlib import Path

import platformdirs

APP = "ScanLab"
DEFAULT_MODEL_NAME = "scanlab-default.safetensors"


@lru_cache(maxsize=1)
def data_root() -> Path:
    """Folder that holds ``trained_models/`` and ``resources/`` for this installation.

    Returns
    -------
    Path
        ``scanlab/_data`` inside an installed package or frozen bundle, else the
        checkout's root (editable install or ``PYTHONPATH``). When neither exists
        the package-data location is returned, so messages name where files were
        expected in an installed copy.
    """
    packaged = files("scanlab") / "_data"
    # A wheel and PyInstaller both unpack to real folders; a zip import would not be
    # a Path, and then the checkout fallback below is the only option.
    packaged_path = Path(str(packaged))
    if packaged_path.is_dir():
        return packaged_path
    checkout = Path(str(files("scanlab"))).resolve().parent
    if (checkout / "trained_models").is_dir() or (checkout / "resources").is_dir():
        return checkout
    return packaged_path


def shipped_models_dir() -> Path:
    """Folder holding the models that ship with ScanLab."""
    return data_root() / "trained_models"


def default_model_path() -> Path:
    """The model used when ``-m`` is omitted."""
    env = os.environ.get("SCANLAB_DEFAULT_MODEL")
    if env:
        return Path(env)
    return shipped_models_dir() / DEFAULT_MODEL_NAME


def resources_dir() -> Path:
    """Shipped resources (``samples/``, ``icons/``, ``selftest/``)."""
    return data_root() / "resources"


def samples_dir() -> Path:
    """Bundled sample scans."""
    return resources_dir() / "samples"


def icons_dir() -> Path:
    """Application icons (SVG source and the PNG/ICO/ICNS renderings)."""
    return resources_dir() / "icons"


def selftest_dir() -> Path:
    """The small validation set that ``scanlab selftest`` runs the shipped model on."""
    return resources_dir() / "selftest"


def app_icon_path() -> Path | None:
    """The largest PNG application icon, or None when icons are not installed."""
    pngs = sorted(icons_dir().glob("scanlab-*.png"), key=lambda p: p.stat().st_size)
    return pngs[-1] if pngs else None


def user_data_dir() -> Path:
    """Per-user data folder (user models live in ``models/`` below it)."""
    return Path(os.environ.get("SCANLAB_DATA_DIR") or platformdirs.user_data_dir(APP, appauthor=False))


def user_models_dir() -> Path:
    """Folder for models the user trained."""
    return user_data_dir() / "models"


def cache_dir() -> Path:
    """Per-user cache folder (decoded-patch cache for training)."""
    return Path(os.environ.get("SCANLAB_CACHE_DIR") or platformdirs.user_cache_dir(APP, appauthor=False))


def sample_scans() -> list[str]:
    """Bundled sample scans (masks excluded), sorted."""
    from scanlab.core.io.imaging import is_image_path

    d = samples_dir()
    if not d.is_dir():
        return []
    return sorted(str(p) for p in d.iterdir() if is_image_path(p) and "mask" not in p.stem)
