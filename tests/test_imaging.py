"""Safe scan loading: formats, colour rules, bad files, evidence never modified."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest
from PIL import Image

from scanlab.core.io.imaging import ImageLoadError, load_scan, to_float


def _rgb(h: int = 80, w: int = 96) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("ext,fmt", [(".png", "PNG"), (".jpg", "JPEG"), (".tif", "TIFF"), (".bmp", "BMP")])
def test_formats_load_as_rgb(tmp_path, ext, fmt):
    p = tmp_path / f"x{ext}"
    Image.fromarray(_rgb()).save(p)
    s = load_scan(p)
    assert s.pixels.shape == (80, 96, 3) and s.pixels.dtype == np.uint8
    assert s.info.format == fmt
    assert s.info.sha256 == hashlib.sha256(p.read_bytes()).hexdigest()
    if ext != ".jpg":
        assert np.array_equal(s.pixels, _rgb())


def test_16bit_tiff_keeps_depth(tmp_path):
    a = (np.arange(80 * 96).reshape(80, 96) * 7 % 65536).astype(np.uint16)
    p = tmp_path / "g16.tif"
    Image.fromarray(a).save(p)
    s = load_scan(p)
    assert s.info.bit_depth == 16 and s.pixels.dtype == np.uint16
    assert np.array_equal(s.pixels[..., 0], a) and np.array_equal(s.pixels[..., 2], a)
    f = to_float(s.pixels)
    assert f.shape == (3, 80, 96) and f.max() <= 1.0 and abs(f[0, 1, 0] - a[1, 0] / 65535) < 1e-6


def test_mode_rules(tmp_path):
    rgb = _rgb()
    Image.fromarray(rgb[..., 0]).save(tmp_path / "l.png")
    assert np.array_equal(load_scan(tmp_path / "l.png").pixels[..., 1], rgb[..., 0])
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 10, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    s = load_scan(tmp_path / "a.png")
    assert np.array_equal(s.pixels, rgb) and "alpha dropped" in s.info.notes  # stored colours, not composited
    Image.fromarray(rgb).convert("P").save(tmp_path / "p.png")
    assert load_scan(tmp_path / "p.png").pixels.shape == (80, 96, 3)
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "c.tif")
    assert load_scan(tmp_path / "c.tif").pixels.shape == (80, 96, 3)


def test_exif_orientation_is_reported_not_applied(tmp_path):
    img = Image.fromarray(_rgb(80, 120))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 on display
    p = tmp_path / "o.jpg"
    img.save(p, exif=exif)
    s = load_scan(p)
    assert s.pixels.shape[:2] == (80, 120)
    assert s.info.exif_orientation == 6


@pytest.mark.parametrize(
    "make,msg",
    [
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: p.write_text("not an image at all"), "not a readable image"),
        (lambda p: Image.fromarray(_rgb(40, 200)).save(p), "smaller than 64"),
    ],
)
def test_bad_files_one_line_error(tmp_path, make, msg):
    p = tmp_path / "bad.png"
    make(p)
    with pytest.raises(ImageLoadError) as e:
        load_scan(p)
    assert msg in str(e.value) and str(p) in str(e.value) and "\n" not in str(e.value)


def test_truncated_jpeg(tmp_path):
    p = tmp_path / "t.jpg"
    Image.fromarray(_rgb(300, 300)).save(p, quality=95)
    p.write_bytes(p.read_bytes()[:2000])
    with pytest.raises(ImageLoadError, match="corrupt or truncated"):
        load_scan(p)


def test_pixel_limit_refuses_before_decoding(tmp_path):
    p = tmp_path / "big.png"
    Image.fromarray(_rgb(300, 300)).save(p)
    with pytest.raises(ImageLoadError, match="exceeds the pixel limit"):
        load_scan(p, max_pixels=300 * 300 - 1)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ImageLoadError, match="no such file"):
        load_scan(tmp_path / "nope.png")
    with pytest.raises(ImageLoadError, match="folder"):
        load_scan(tmp_path)


def test_evidence_not_modified(tmp_path):
    p = tmp_path / "e.tif"
    Image.fromarray(_rgb()).save(p)
    os.chmod(p, 0o444)  # read-only evidence still loads
    before = (p.read_bytes(), os.stat(p).st_mtime_ns)
    load_scan(p)
    assert (p.read_bytes(), os.stat(p).st_mtime_ns) == before


def test_tiff_decode_releases_file_bytes_without_cyclic_gc():
    """Decoding a TIFF must not leave its file bytes reachable from a reference cycle:
    building a training cache decodes scan after scan, and bytes held until the cyclic GC
    ran made resident memory grow by one file size per scan (about 1 GB over ten scans)."""
    import gc
    import io
    import sys

    from scanlab.core.io.imaging import decode_bytes

    buf = io.BytesIO()
    Image.fromarray(np.arange(96 * 80 * 3, dtype=np.uint8).reshape(96, 80, 3)).save(buf, format="TIFF")
    data = buf.getvalue()
    before = sys.getrefcount(data)
    gc.disable()
    try:
        scan = decode_bytes(data, "x.tif")
        assert scan.pixels.shape == (96, 80, 3)
        del scan
        assert sys.getrefcount(data) == before
    finally:
        gc.enable()
