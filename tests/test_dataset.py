"""Folder-per-scanner discovery, split by image, decoded-image cache."""

from __future__ import annotations

import pytest
from scanner_tree import make_tree

from scanlab.core.dataset import DatasetError, ImageCache, discover, parse_split, split_dataset


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
    c1 = ImageCache(tmp_path / "cache.h5")
    first = [c1.get(s) for s in ds.samples]
    assert c1.misses == 4 and c1.hits == 0
    c2 = ImageCache(tmp_path / "cache.h5")
    second = [c2.get(s) for s in ds.samples]
    assert c2.hits == 4 and c2.misses == 0
    assert all((a == b).all() for a, b in zip(first, second, strict=True))
