"""Regression tests for the hardening defects of issue 9 (in-process; the CLI corpus is separate)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import warnings
from pathlib import Path

import badfiles as bf
import numpy as np
import pytest
from PIL import Image

from scanlab.core.errors import ScanLabError
from scanlab.core.io.fileio import atomic_write_bytes, refuse_overwrite
from scanlab.core.io.imaging import ImageLoadError, decode_bytes, load_scan

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------ item 1: evidence never overwritten


def test_refuse_overwrite_same_path_symlink_and_hard_link(tmp_path):
    ev = tmp_path / "scan.png"
    ev.write_bytes(b"evidence")
    link = tmp_path / "link.png"
    link.symlink_to(ev)
    hard = tmp_path / "hard.png"
    os.link(ev, hard)
    for out in (ev, link, hard, tmp_path / "sub" / ".." / "scan.png"):
        with pytest.raises(ScanLabError, match="would overwrite the evidence"):
            refuse_overwrite(out, [ev], "the evidence file")
    refuse_overwrite(tmp_path / "other.png", [ev])  # a new file is fine
    copy = tmp_path / "copy.png"
    copy.write_bytes(b"evidence")  # same bytes, different file: fine
    refuse_overwrite(copy, [ev])


# ------------------------------------------------------------ item 2: large scans, thread-safe limit


def test_139_mp_scan_loads_and_pillow_global_is_untouched():
    """A 1200 dpi A4 page (about 139 MP) loads; nothing warns or changes Pillow's global."""
    im = Image.new("1", (9921, 14031))
    b = io.BytesIO()
    im.save(b, "PNG")
    before = Image.MAX_IMAGE_PIXELS
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a DecompressionBombWarning would fail here
        s = decode_bytes(b.getvalue(), "a4_1200dpi.png")
    assert (s.info.width, s.info.height) == (9921, 14031) and s.info.bit_depth == 1
    assert Image.MAX_IMAGE_PIXELS == before
    del s


def test_over_limit_names_the_limit_and_the_variable(monkeypatch):
    data = bf.png_bomb(10_000, 9_500)  # 95 MP header: above Pillow's 89.5 MP guard
    with pytest.raises(ImageLoadError, match=r"pixel limit of 90\.0 MP .*SCANLAB_MAX_PIXELS"):
        decode_bytes(data, "big.png", max_pixels=90_000_000)
    monkeypatch.setenv("SCANLAB_MAX_PIXELS", "1000")
    with pytest.raises(ImageLoadError, match="SCANLAB_MAX_PIXELS"):
        decode_bytes(bf.png(), "x.png")


def test_limit_is_checked_in_worker_threads_without_global_state():
    from concurrent.futures import ThreadPoolExecutor

    data = bf.png_bomb(10_000, 9_500)

    def one(_i: int) -> str:
        try:
            decode_bytes(data, "t.png", max_pixels=100_000_000 if _i % 2 else 50_000_000)
        except ImageLoadError as e:
            return str(e)
        return "loaded"

    with ThreadPoolExecutor(2) as ex:
        got = list(ex.map(one, range(4)))
    # the 95 MP header is under 100 MP (then fails on its one-row body) and over 50 MP
    assert all("pixel limit of 50.0 MP" in g for g in got[::2])
    assert all("pixel limit" not in g for g in got[1::2])


# ------------------------------------------------------------ item 3: full depth


def test_48_bit_png_and_tiff_decode_at_full_depth(tmp_path):
    data, a = bf.png16_rgb(80, 100)
    p = tmp_path / "rgb48.png"
    p.write_bytes(data)
    s = load_scan(p)
    assert s.pixels.dtype == np.uint16 and s.info.bit_depth == 16 and s.info.mode == "RGB;16"
    np.testing.assert_array_equal(s.pixels, a)
    t = tmp_path / "rgb48.tif"
    t.write_bytes(bf.tiff_array(a, photometric="rgb", resolution=(600, 600), resolutionunit="INCH"))
    s = load_scan(t)
    np.testing.assert_array_equal(s.pixels, a)
    assert s.info.bit_depth == 16 and s.info.scan_json()["dpi"] == [600.0, 600.0]
    planar = tmp_path / "planar.tif"
    planar.write_bytes(bf.tiff_array(np.moveaxis(a, -1, 0), photometric="rgb", planarconfig="separate"))
    np.testing.assert_array_equal(load_scan(planar).pixels, a)


def test_float_tiff_in_unit_range_loads_else_clear_reason():
    a = np.random.default_rng(0).random((70, 90, 3), dtype=np.float32)
    s = decode_bytes(bf.tiff_array(a, photometric="rgb"), "f.tif")
    assert s.info.bit_depth == 32 and s.pixels.dtype == np.uint16
    np.testing.assert_allclose(s.pixels / 65535.0, a, atol=1 / 65535)
    with pytest.raises(ImageLoadError, match=r"outside \[0, 1\]"):
        decode_bytes(bf.tiff_array(a * 4, photometric="rgb"), "f4.tif")


def test_signalling_nan_float_tiff_is_refused_without_a_warning():
    """Found by the fuzzing campaign: casting a signalling NaN printed a RuntimeWarning."""
    a = np.full((70, 90), 0.5, np.float32)
    a.view(np.uint32)[3, 4] = 0x7FA00000  # a signalling NaN
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ImageLoadError, match="NaN or infinite"):
            decode_bytes(bf.tiff_array(a), "snan.tif")


def test_corrupt_png_data_is_refused_not_half_loaded():
    with pytest.raises(ImageLoadError, match="corrupt or truncated"):
        decode_bytes(bf.png_corrupt_idat(), "c.png")


def test_imaging_patch_matches_network_patch():
    from scanlab.core.engine import network
    from scanlab.core.io import imaging

    assert imaging.PATCH == network.PATCH


# ------------------------------------------------------------ items 4, 8: training folders


def test_one_class_folder_is_a_one_line_error(tmp_path):
    from scanlab.core.training.dataset import DatasetError, check_layout, discover

    (tmp_path / "only").mkdir()
    (tmp_path / "only" / "a.png").write_bytes(bf.png())
    for fn in (check_layout, lambda r: discover(r, min_classes=2)):
        with pytest.raises(DatasetError, match="only one class folder") as ei:
            fn(tmp_path)
        assert "\n" not in str(ei.value)
    assert discover(tmp_path).classes == ["only"]  # evaluating one scanner's folder stays allowed


# ------------------------------------------------------------ item 7: umask and durability


@pytest.mark.skipif(os.name != "posix", reason="POSIX modes")
@pytest.mark.parametrize("umask,mode", [(0o077, 0o600), (0o022, 0o644), (0o002, 0o664)])
def test_outputs_respect_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        out = tmp_path / "m.npy"
        atomic_write_bytes(out, b"x")
        assert out.stat().st_mode & 0o777 == mode
    finally:
        os.umask(old)


def test_folder_is_fsynced_after_the_rename(tmp_path, monkeypatch):
    import scanlab.core.io.fileio as fio

    seen = []
    real = fio._fsync_dir
    monkeypatch.setattr(fio, "_fsync_dir", lambda folder: (seen.append((folder, (tmp_path / "o.bin").exists())),
                                                          real(folder)))
    atomic_write_bytes(tmp_path / "o.bin", b"data")
    assert seen == [(tmp_path, True)]  # after the rename, on the output's folder


# ------------------------------------------------------------ CLI start-up


def test_bad_image_fails_before_torch_is_imported(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    code = (
        "import sys, scanlab.cli as c; "
        f"rc = c.main(['map', {str(bad)!r}, '-o', {str(tmp_path / 'o.npy')!r}]); "
        "print(rc, 'torch' in sys.modules)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert r.stdout.split() == ["2", "False"], r.stderr


@pytest.mark.skipif(os.name != "posix", reason="POSIX modes")
def test_case_files_respect_the_umask(tmp_path):
    from scanlab.core.case.casefile import new_case, save_case

    old = os.umask(0o077)
    try:
        p = save_case(new_case("t", "analyst", ""), tmp_path / "c.scanlab")
        assert p.stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)
