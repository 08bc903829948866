"""Collection inspection (the wizard's first page) and the user's model library, without Qt."""

from __future__ import annotations

import shutil

import pytest
from scanner_tree import make_tree

from scanlab.core.modelfile.store import read_manifest
from scanlab.core.training.dataset import DatasetError
from scanlab.services.collection import inspect_collection
from scanlab.services.library import (
    LibraryError,
    delete_model,
    list_library,
    rename_model,
    save_to_library,
)
from scanlab.services.paths import user_models_dir


def test_inspection_lists_problems_and_advice(tmp_path):
    root = make_tree(tmp_path / "c", n_classes=3, n_images=2, size=96, seed=1)
    for i in range(2, 9):  # scanner_0 gets 9 images: unbalanced against 2
        shutil.copy(root / "scanner_0" / "img_00.png", root / "scanner_0" / f"dup_{i}.png")
    (root / "scanner_1" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    shutil.copy(root / "scanner_2" / "img_00.png", root / "scanner_1" / "moved.png")
    rep = inspect_collection(root)
    counts = {c.name: c.count for c in rep.classes}
    assert counts == {"scanner_0": 9, "scanner_1": 2, "scanner_2": 1}
    assert [p.endswith("bad.png") for p, _ in rep.unreadable] == [True]
    assert len(rep.conflicts) == 1 and {p.split("/")[-1] for p in rep.conflicts[0][1]} == {"img_00.png", "moved.png"}
    assert any("too few to split" in e and "scanner_1" in e for e in rep.errors)  # 2 left: cannot make 3 splits
    assert any("scanner_2" in e and "add at least 2 more" in e for e in rep.errors)
    assert any(w.startswith("unbalanced classes: scanner_0 has 9") for w in rep.warnings)
    assert sorted(p.split("/")[-1] for p in rep.excluded()) == ["bad.png", "img_00.png", "moved.png"]
    assert rep.classes[0].sizes[0] == (96, 96) and rep.classes[0].formats == ["PNG"]
    assert rep.classes[0].thumbnails and rep.classes[0].thumbnails[0].shape[2] == 3


def test_inspection_of_units_and_bad_folders(tmp_path):
    for k, (c, u) in enumerate((c, u) for c in ("m0", "m1") for u in ("u0", "u1")):
        t = make_tree(tmp_path / "raw" / c / u, n_classes=1, n_images=2, size=96, seed=k)
        (t / "scanner_0").rename(tmp_path / "raw" / c / f"{u}_x")
        shutil.rmtree(t)
        (tmp_path / "raw" / c / f"{u}_x").rename(tmp_path / "raw" / c / u)
    rep = inspect_collection(tmp_path / "raw", units=True)
    assert [c.units for c in rep.classes] == [["u0", "u1"], ["u0", "u1"]] and not rep.errors
    with pytest.raises(DatasetError, match="does not exist"):
        inspect_collection(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    assert "no class sub-folders" in inspect_collection(tmp_path / "empty").errors[0]


def test_library_save_rename_delete(tmp_path, random_model):
    p = save_to_library(random_model, "Lab model", "notes here")
    assert p == user_models_dir() / "Lab-model.safetensors"
    man = read_manifest(p)
    assert man["name"] == "Lab model" and man["notes"] == "notes here"
    assert man["weights_sha256"] == read_manifest(random_model)["weights_sha256"]  # weights untouched
    with pytest.raises(LibraryError, match="exists already"):
        save_to_library(random_model, "Lab model")
    with pytest.raises(LibraryError, match="give the model a name"):
        save_to_library(random_model, " / ")
    q = rename_model(p, "Other")
    assert not p.exists() and read_manifest(q)["notes"] == "notes here"
    assert [m["name"] for m in list_library()] == ["Other"]
    with pytest.raises(LibraryError, match="not in the model library"):
        delete_model(random_model)
    assert random_model.exists()
    delete_model(q)
    assert list_library() == []


def test_evaluation_copy_is_named_after_its_content(tmp_path, random_model):
    from scanlab.services.library import LibraryError, evaluation_copy

    work = tmp_path / "last-run.safetensors"
    shutil.copyfile(random_model, work)
    first = evaluation_copy(work, "lab refs")
    assert first.parent == tmp_path and first.name.startswith("wizard-lab-refs-")
    assert first.read_bytes() == work.read_bytes() and evaluation_copy(work, "lab refs") == first  # reused
    work.write_bytes(work.read_bytes() + b" ")  # the next run's weights in the same work file
    assert evaluation_copy(work, "lab refs") != first and first.read_bytes() != work.read_bytes()
    with pytest.raises(LibraryError, match="cannot copy the trained model"):
        evaluation_copy(tmp_path / "missing.safetensors", "x")
