"""Model registry: resolve ``-m`` arguments, list available models, cache loaded ones."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import torch

from scanlab.core.errors import ScanLabError
from scanlab.core.modelfile.store import LoadedModel, ModelFileError, load_model, read_manifest
from scanlab.services.paths import default_model_path, shipped_models_dir, user_models_dir

_lock = threading.Lock()
_cache: dict[tuple[str, float, int, str], LoadedModel] = {}


def resolve_model_path(spec: str | os.PathLike | None) -> Path:
    """``None``/"default" -> the shipped default model; otherwise the given path."""
    if spec is None or str(spec) == "default":
        p = default_model_path()
        if not p.exists():
            raise ModelFileError(
                f"{p}: the shipped default model is missing; pass -m MODEL (train one with 'scanlab train')"
            )
        return p
    return Path(spec)


def shipped_model_problem() -> str | None:
    """None when the shipped default model loads; else a one-line reason (missing, corrupt...).

    The app shows it at start so an analyst knows to open a model of their own
    before the first analysis fails, instead of after.
    """
    try:
        get_model(None)
    except ScanLabError as e:  # ModelFileError and the schema/format errors alike
        return str(e)
    return None


def get_model(spec: str | os.PathLike | None, device: torch.device | str = "cpu") -> LoadedModel:
    """Load (or reuse) a model; the cache key includes the file's mtime and size."""
    p = resolve_model_path(spec).resolve()
    if not p.exists():
        raise ModelFileError(f"{p}: model file not found")
    st = p.stat()
    key = (str(p), st.st_mtime, st.st_size, str(device))
    with _lock:
        hit = _cache.get(key)
        if hit is None:
            hit = load_model(p, device=device)
            _cache.clear()  # one model at a time keeps memory bounded
            _cache[key] = hit
        return hit


def list_models() -> list[dict]:
    """Shipped and user models: ``{path, name, origin, classes, usable, reason}`` each.

    A file that cannot be used (corrupt, foreign, wrong types, newer format...) is
    listed with ``usable`` False, ``classes`` empty and the one-line ``reason``;
    it never stops the listing (one bad file in the models folder must not stop
    the app from starting).
    """
    out = []
    for origin, folder in (("shipped", shipped_models_dir()), ("user", user_models_dir())):
        try:
            files = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
        except OSError:
            continue
        for p in files:
            try:
                man = read_manifest(p)
            except ScanLabError as e:
                out.append({"path": str(p), "name": p.stem, "origin": origin, "classes": [],
                            "usable": False, "reason": str(e).removeprefix(f"{p}: ")})
                continue
            except OSError as e:
                out.append({"path": str(p), "name": p.stem, "origin": origin, "classes": [],
                            "usable": False, "reason": f"cannot read ({e.strerror or e})"})
                continue
            out.append({"path": str(p), "name": man.get("name") or p.stem, "origin": origin,
                        "classes": man["classes"], "usable": True, "reason": None})
    return out


def model_entries(extra: list[str]) -> tuple[list[tuple], str | None]:
    """The app's model list: shipped default, shipped + user models, then ``extra`` files.

    Returns ``(entries, problem)``: entries are ``(text, spec)`` pairs, or
    ``(text, spec, reason)`` for an unusable file (listed, not selectable); ``spec``
    is ``None`` for the shipped default. ``problem`` says why the shipped model
    cannot be used (None when it can).
    """
    default = default_model_path()
    problem = shipped_model_problem()
    state = "shipped" if problem is None else "missing" if not default.exists() else "unreadable"
    entries: list[tuple] = [(f"default ({state})", None)]
    for m in list_models():
        if not m.get("usable", True):
            entries.append((f"{Path(m['path']).name} (unusable)", m["path"], m["reason"]))
        elif Path(m["path"]).resolve() != default.resolve():
            entries.append((f"{m['name']} ({m['origin']})", m["path"]))
    known = {e[1] for e in entries}
    entries += [(Path(p).stem + " (file)", p) for p in extra if p not in known]
    return entries, problem
