"""Where ScanLab finds its shipped models and keeps per-user data.

Resolution of the default model: ``$SCANLAB_DEFAULT_MODEL`` -> a frozen bundle's
``trained_models/`` -> the checkout's ``trained_models/``. User-trained models
and caches live in the platform's per-user folders (platformdirs), never in the
install folder.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import platformdirs

APP = "ScanLab"
DEFAULT_MODEL_NAME = "scanlab-default.safetensors"


def shipped_models_dir() -> Path:
    """Folder holding the models that ship with ScanLab."""
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:
        return Path(bundle) / "trained_models"
    return Path(__file__).resolve().parents[2] / "trained_models"


def default_model_path() -> Path:
    """The model used when ``-m`` is omitted."""
    env = os.environ.get("SCANLAB_DEFAULT_MODEL")
    if env:
        return Path(env)
    return shipped_models_dir() / DEFAULT_MODEL_NAME


def user_data_dir() -> Path:
    """Per-user data folder (user models live in ``models/`` below it)."""
    return Path(os.environ.get("SCANLAB_DATA_DIR") or platformdirs.user_data_dir(APP, appauthor=False))


def user_models_dir() -> Path:
    """Folder for models the user trained."""
    return user_data_dir() / "models"


def cache_dir() -> Path:
    """Per-user cache folder (decoded-patch cache for training)."""
    return Path(os.environ.get("SCANLAB_CACHE_DIR") or platformdirs.user_cache_dir(APP, appauthor=False))


def samples_dir() -> Path:
    """Bundled sample scans."""
    bundle = getattr(sys, "_MEIPASS", None)
    root = Path(bundle) if bundle else Path(__file__).resolve().parents[2]
    return root / "resources" / "samples"


def sample_scans() -> list[str]:
    """Bundled sample scans (masks excluded), sorted."""
    from scanlab.core.imaging import is_image_path

    d = samples_dir()
    if not d.is_dir():
        return []
    return sorted(str(p) for p in d.iterdir() if is_image_path(p) and "mask" not in p.stem)
