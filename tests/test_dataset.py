"""Folder-per-scanner discovery, split by image, decoded-image cache."""

from __future__ import annotations

import numpy as np
import pytest
from scanner_tree import make_tree

from scanlab.core.io import imaging
from scanlab.core.training import dataset as dataset_mod
from scanlab.core.training.dataset import (
    DatasetError,
    ImageCache,
    discover,
    parse_split,
    split_dataset,
)


def test_split_by_image_is_seeded_and_disjoint(tree):
    a = split_dataset(discover(tree), parse_split("6:1:3"), seed=3)
    b = split_dataset(discover(tree), parse_split("6:1:3"), seed=3)
    names = {s: {x.path for x in a.split[s]} for s in a.split}
    assert names == {s: {x.path for x in b.split[s]} for s in b.split}
    assert not (names["train"] & names["val"]) and not (names["train"] & names["test"])
    assert sum(len(v) for v in names.values()) == 36
    assert a.counts()["scanner_0"] == {"train": 7, "val": 1, "test": 4}
    c = split_dataset(discover(tree), parse_split("6:1:3"), seed=4)
    assert {x.path for x in c.split["test"]} != names["test"]


def test_zero_test_ratio(tree):
    d = split_dataset(discover(tree), parse_split("8:2:0"), seed=0)
    assert d.split["test"] == []


def test_bad_data_folders(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        discover(tmp_path / "missing")
    with pytest.raises(DatasetError, match="no class sub-folders"):
        discover(tmp_path)
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(DatasetError, match="no images"):
        discover(tmp_path)
    small = make_tree(tmp_path / "small", n_classes=2, n_images=2, size=96)
    with pytest.raises(DatasetError, match="too few to split"):
        split_dataset(discover(small), parse_split("6:1:3"), seed=0)
    with pytest.raises(DatasetError, match="bad split"):
        parse_split("6:1")


def test_cache_avoids_second_decode(tmp_path):
    root = make_tree(tmp_path / "t", n_classes=2, n_images=2, size=96)
    ds = discover(root)
    c1 = ImageCache(tmp_path / "cache")
    first = [np.array(c1.get(s)) for s in ds.samples]
    assert c1.misses == 4 and c1.hits == 0
    c2 = ImageCache(tmp_path / "cache")
    second = [np.array(c2.get(s)) for s in ds.samples]
    assert c2.hits == 4 and c2.misses == 0
    assert all((a == b).all() for a, b in zip(first, second, strict=True))
    # one file per image, nothing half-written left behind
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted(
        f"{s.sha256}-d{imaging.DECODER_VERSION}.npy" for s in ds.samples
    )


def test_cache_key_includes_decoder_version(tmp_path, monkeypatch):
    """Arrays decoded by an older decoder are never reused: a new version decodes again."""
    root = make_tree(tmp_path / "t", n_classes=2, n_images=1, size=96)
    s = discover(root).samples[0]
    old = ImageCache(tmp_path / "cache")
    stale = old.ensure(s)
    np.save(stale, np.zeros((96, 96, 3), np.uint8))  # what a buggy old decoder might have cached
    monkeypatch.setattr(imaging, "DECODER_VERSION", imaging.DECODER_VERSION + 1)
    monkeypatch.setattr(dataset_mod, "DECODER_VERSION", imaging.DECODER_VERSION)
    new = ImageCache(tmp_path / "cache")
    px = new.get(s)
    assert new.misses == 1 and new.hits == 0
    assert new.path_for(s.sha256) != stale and stale.exists()  # the other version's file is left alone
    assert np.array_equal(px, imaging.load_scan(s.path).pixels)


def test_units_layout_and_holdout_split(tmp_path):
    for c in range(2):
        for u in range(3):
            make_tree(tmp_path / "raw" / f"{c}{u}", n_classes=1, n_images=3, size=96, seed=c * 10 + u)
            (tmp_path / "raw" / f"{c}{u}" / "scanner_0").rename(tmp_path / "raw" / f"u{c}{u}")
            dest = tmp_path / "data" / f"model_{c}" / f"unit_{u}"
            dest.parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / "raw" / f"u{c}{u}").rename(dest)
    flat = discover(tmp_path / "data")
    assert flat.classes == ["model_0", "model_1"] and len(flat.samples) == 18
    assert {s.unit for s in flat.samples} == {""}
    ds = split_dataset(discover(tmp_path / "data", units=True), parse_split("6:1:3"), seed=1, holdout_unit=True)
    for c in range(2):
        test_units = {s.unit for s in ds.split["test"] if s.label == c}
        trainval_units = {s.unit for s in ds.split["train"] + ds.split["val"] if s.label == c}
        assert len(test_units) == 1 and not (test_units & trainval_units)
        assert sum(1 for s in ds.split["test"] if s.label == c) == 3
    with pytest.raises(DatasetError, match="unit folder"):
        split_dataset(discover(tmp_path / "data"), parse_split("6:1:3"), seed=1, holdout_unit=True)
