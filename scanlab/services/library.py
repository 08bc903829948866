"""The user's model library: models trained in the wizard, listed, renamed, deleted.

The library is the per-user ``models/`` folder (:func:`scanlab.services.paths.user_models_dir`);
every ``.safetensors`` file there appears in the main window's model list. A model's
file name is derived from its name; renaming rewrites the manifest's ``name`` (the
weights and their hash are unchanged) and the file name together.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from scanlab.core.errors import ScanLabError
from scanlab.core.modelfile.store import (
    ModelFileError,
    load_model,
    model_card,
    read_manifest,
    save_model,
)
from scanlab.services.paths import user_models_dir


class LibraryError(ScanLabError):
    """The model library cannot do what was asked (unwritable folder, name taken...)."""


def _slug(name: str) -> str:
    s = re.sub(r"[^A-Za-z0-9._-]+", "-", name.strip()).strip("-.")
    return s[:80]


def library_path(name: str) -> Path:
    """The file a model called ``name`` is stored in.

    Raises
    ------
    LibraryError
        The name is empty or has no usable characters.
    """
    slug = _slug(name)
    if not slug:
        raise LibraryError(f"{name!r}: give the model a name (letters, digits, - _ .)")
    return user_models_dir() / f"{slug}.safetensors"


def check_library_writable() -> Path:
    """Create the library folder if needed and make sure it can be written.

    Raises
    ------
    LibraryError
        One line naming the folder and the problem.
    """
    d = user_models_dir()
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise LibraryError(f"{d}: model library folder cannot be created ({e.strerror or e})") from None
    if not os.access(d, os.W_OK):
        raise LibraryError(f"{d}: model library folder is not writable; check its permissions")
    return d


def list_library() -> list[dict[str, Any]]:
    """Models in the library: ``{path, name, classes, created, manifest}``; damaged files get ``error``."""
    d = user_models_dir()
    out: list[dict[str, Any]] = []
    if not d.is_dir():
        return out
    for p in sorted(d.glob("*.safetensors")):
        try:
            man = read_manifest(p)
        except ModelFileError as e:
            out.append({"path": str(p), "name": p.stem, "classes": [], "created": None, "error": str(e)})
            continue
        out.append({"path": str(p), "name": man.get("name") or p.stem, "classes": man["classes"],
                    "created": man.get("created"), "manifest": man})
    return out


def card_text(path: str | os.PathLike) -> str:
    """The model card (markdown) plus the notes saved with the model."""
    man = read_manifest(path)
    text = model_card(man)
    notes = man.get("notes")
    if notes:
        text += "\n## Notes\n\n" + str(notes) + "\n"
    return text


def save_to_library(src: str | os.PathLike, name: str, notes: str = "", *, overwrite: bool = False) -> Path:
    """Store the model file ``src`` in the library under ``name`` with ``notes``.

    Raises
    ------
    LibraryError
        Empty name, a model of that name exists and ``overwrite`` is false, or the
        library folder cannot be written. Nothing is written then.
    """
    dest = library_path(name)
    check_library_writable()
    if dest.exists() and not overwrite:
        raise LibraryError(f"{dest}: a model named {name!r} exists already")
    lm = load_model(src)
    man = {k: v for k, v in lm.manifest.items() if not k.startswith("_")}
    man["name"] = name.strip()
    man["notes"] = notes
    try:
        save_model(lm.net, man, dest)
    except OSError as e:
        raise LibraryError(f"{dest}: cannot write the model ({e.strerror or e})") from None
    return dest


def rename_model(path: str | os.PathLike, new_name: str, *, overwrite: bool = False) -> Path:
    """Give a library model a new name (manifest and file name); returns the new path."""
    p = Path(path)
    dest = library_path(new_name)
    if dest.resolve() == p.resolve():
        dest = p
    elif dest.exists() and not overwrite:
        raise LibraryError(f"{dest}: a model named {new_name!r} exists already")
    man = read_manifest(p)
    new = save_to_library(p, new_name, str(man.get("notes") or ""), overwrite=True) if dest != p else None
    if new is None:  # same file name: rewrite in place
        lm = load_model(p)
        m2 = {k: v for k, v in lm.manifest.items() if not k.startswith("_")}
        m2["name"] = new_name.strip()
        save_model(lm.net, m2, p)
        return p
    p.unlink()
    return new


def delete_model(path: str | os.PathLike) -> None:
    """Delete a model file of the library (never a file outside it).

    Raises
    ------
    LibraryError
        The file is not in the library or cannot be removed.
    """
    p = Path(path).resolve()
    lib = user_models_dir().resolve()
    if p.parent != lib:
        raise LibraryError(f"{p}: not in the model library ({lib}); not deleted")
    try:
        p.unlink()
    except OSError as e:
        raise LibraryError(f"{p}: cannot delete ({e.strerror or e})") from None


def evaluation_copy(src: str | os.PathLike, name: str) -> Path:
    """A copy of the wizard's trained model, named after its content, for the main window.

    The wizard writes every run to the same work file; the main window caches results
    by model path, so a scan opened from the Evaluate page gets a copy whose name
    carries the file's SHA-256 (``wizard-<name>-<hash8>.safetensors`` next to the work
    file): a later run is a different model path, never a stale cached result.

    Raises
    ------
    LibraryError
        ``src`` cannot be read or the copy cannot be written.
    """
    import hashlib
    import shutil

    src = Path(src)
    try:
        digest = hashlib.sha256(src.read_bytes()).hexdigest()[:8]
        dest = src.parent / f"wizard-{_slug(name) or 'model'}-{digest}.safetensors"
        if not dest.exists():
            tmp = dest.with_suffix(".part")
            shutil.copyfile(src, tmp)
            os.replace(tmp, dest)  # never a half-written model under the final name
    except OSError as e:
        raise LibraryError(f"{src}: cannot copy the trained model ({e.strerror or e})") from None
    return dest
