"""The virtual scanner bank: determinism, model vs unit semantics, exact forgery masks, bad input."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scanlab.cli.synth import register
from scanlab.core.errors import ScanLabError
from scanlab.core.io.imaging import find_images, load_scan
from scanlab.core.synth.bank import synth_scan, write_bank
from scanlab.core.synth.content import document_page, make_page, photo_paths
from scanlab.core.synth.dsp import rng_for
from scanlab.core.synth.forge import forge_one, write_forgeries
from scanlab.core.synth.scanner import bank, decode, design, scan


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="scanlab")
    register(p.add_subparsers(dest="cmd"))
    return p.parse_args(argv)


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_bank_and_seed_give_identical_bytes(tmp_path: Path) -> None:
    for name in ("a", "b"):
        write_bank(tmp_path / name, 3, 2, size=96, seed=5)
    a, b = _tree_bytes(tmp_path / "a"), _tree_bytes(tmp_path / "b")
    assert a.keys() == b.keys() and len(a) == 3 * 2 + 1
    assert all(a[k] == b[k] for k in a)
    # and the files are readable scans of the requested size
    for p in find_images(tmp_path / "a"):
        assert load_scan(p).shape == (96, 96)


def test_new_seed_keeps_scanners_and_changes_content() -> None:
    d = design("default", 3)
    s1 = synth_scan(d, 0, seed=1, size=96)
    s2 = synth_scan(d, 0, seed=2, size=96)
    assert not np.array_equal(s1.pixels, s2.pixels)
    # identities depend only on the bank (and not on how many scanners are asked for)
    assert bank("default", 10)[3] == d == bank("default", 4)[3]
    assert design("other", 3) != d
    # each image of a scanner gets different content
    assert not np.array_equal(synth_scan(d, 1, seed=1, size=96).pixels, s1.pixels)


def test_default_bank_models_differ_in_design_traits() -> None:
    ds = bank("default", 10)
    assert len({d.name for d in ds}) == 10
    blur = [round(d.blur_rows, 3) for d in ds]
    assert len(set(blur)) == 10  # the Latin design spreads every continuous trait
    mis = sorted(d.line_offsets[0] for d in ds)
    assert min(np.diff(mis)) > 0.05


def test_units_share_design_but_not_sensor_pattern() -> None:
    d = design("default", 0)
    u0, u0b, u1 = d.unit(0), d.unit(0), d.unit(1)
    assert u0.design == u1.design
    assert np.array_equal(u0.column_gain, u0b.column_gain)
    assert not np.allclose(u0.column_gain, u1.column_gain)
    # same page, same noise: the two units differ by a pattern repeated down every row
    page = np.full((200 + 8, 256, 3), 0.5, dtype=np.float32)
    a = scan(u0, page, rng_for("t", 1)).astype(np.float64)
    b = scan(u1, page, rng_for("t", 1)).astype(np.float64)
    diff = (a - b).mean(axis=2)
    assert diff.mean(axis=0).std() > 3 * diff.mean(axis=1).std()


def test_content_pages_are_reflectances() -> None:
    rng = np.random.default_rng(0)
    doc = document_page(160, 200, rng)
    assert doc.shape == (160, 200, 3) and doc.dtype == np.float32
    assert 0.0 <= doc.min() and doc.max() <= 1.0 and doc.std() > 0.01
    page = make_page(100, 120, rng, photo_fraction=1.0)
    assert page.shape == (100, 120, 3)


def test_photographs_come_from_installed_package() -> None:
    paths = photo_paths()
    if not paths:
        pytest.skip("scikit-image data files not installed")
    assert all(p.is_file() for p in paths) and len(paths) >= 10


def _lossless_index(kind: str) -> int:
    return next(d.index for d in bank("default", 10) if d.format in ("png", "tiff"))


def test_splice_mask_is_exact_on_lossless_host() -> None:
    hi = _lossless_index("splice")
    f = forge_one(0, "splice", size=192, host_index=hi)
    out = decode(f.data)
    assert f.mask.sum() == sum(r["area"] for r in f.record["regions"]) > 0
    assert np.array_equal(out[~f.mask], f.host_pixels[~f.mask])
    assert np.array_equal(out, f.forged_pixels)  # lossless re-save
    assert f.record["host_scanner"] not in f.record["source_scanners"]
    # the pasted pixels are not the host's
    assert not np.array_equal(out[f.mask], f.host_pixels[f.mask])


def test_copymove_copies_within_the_same_scan() -> None:
    hi = _lossless_index("copymove")
    f = forge_one(3, "copymove", size=192, host_index=hi)
    (reg,) = f.record["regions"]
    assert f.record["source_scanners"] == [f.record["host_scanner"]]
    sy, sx, rh, rw = reg["source_box"]
    ty, tx, _, _ = reg["target_box"]
    m = f.mask[ty : ty + rh, tx : tx + rw]
    assert m.sum() == reg["area"] == f.mask.sum()
    src = f.host_pixels[sy : sy + rh, sx : sx + rw]
    assert np.array_equal(f.forged_pixels[ty : ty + rh, tx : tx + rw][m], src[m])
    assert np.array_equal(decode(f.data)[~f.mask], f.host_pixels[~f.mask])


def test_write_forgeries_manifest_and_masks(tmp_path: Path) -> None:
    man = write_forgeries(tmp_path / "f", 2, "splice", size=128, seed=1)
    on_disk = json.loads((tmp_path / "f" / "manifest.json").read_text())
    assert on_disk == man and len(man) == 2
    for rec in man:
        assert {"image", "mask", "kind", "source_scanners", "host_scanner"} <= rec.keys()
        mask = np.asarray(Image.open(tmp_path / "f" / rec["mask"]))
        assert set(np.unique(mask)) <= {0, 255}
        assert int((mask == 255).sum()) == sum(r["area"] for r in rec["regions"])
        assert load_scan(tmp_path / "f" / rec["image"]).shape == mask.shape
    assert not [p for p in (tmp_path / "f").rglob(".*")]  # no temporary files left


def test_cli_synth_and_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bank"
    a = _parse(["synth", str(out), "--scanners", "2", "--images", "1", "--size", "64"])
    assert a.func(a) == 0
    assert sorted(p.name for p in out.iterdir()) == ["synth.json", "vscan-01", "vscan-02"]
    assert "wrote 2 scans" in capsys.readouterr().out
    bad = [
        ["synth", str(tmp_path / "x"), "--scanners", "0"],
        ["synth", str(tmp_path / "x"), "--images", "0"],
        ["synth", str(tmp_path / "x"), "--size", "32"],
        ["synth", str(out), "--scanners", "1", "--images", "1", "--size", "64"],  # not empty
        ["forge", str(tmp_path / "y"), "--n", "0"],
        ["forge", str(tmp_path / "y"), "--size", "48"],
        ["forge", str(tmp_path / "y"), "--scanners", "1", "--n", "1", "--size", "96"],
    ]
    for argv in bad:
        a = _parse(argv)
        with pytest.raises(ScanLabError) as e:
            a.func(a)
        assert "\n" not in str(e.value)
    a = _parse(["synth", str(out), "--scanners", "1", "--images", "1", "--size", "64", "--force"])
    assert a.func(a) == 0
    with pytest.raises(SystemExit):
        _parse(["forge", str(tmp_path / "z"), "--kind", "blur"])
