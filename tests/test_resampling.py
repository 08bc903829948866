"""The exact upsampling test (scanlab.core.io.resampling) and its use by the analysis (``scan.resampling``)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from scanlab.core.io.imaging import decode_bytes
from scanlab.core.io.resampling import detect_upsampling, kernel_matrix

FILTERS = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR,
           "lanczos3": Image.Resampling.LANCZOS}


def _noisy(h: int = 200, w: int = 240, seed: int = 5) -> np.ndarray:
    """A scan-like uint8 RGB image: smooth shading plus sensor-like noise, away from the clip."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = 128 + 40 * np.sin(xx / 17.0) * np.cos(yy / 23.0)
    px = base[..., None] + rng.normal(0, 12, (h, w, 3))
    return np.clip(np.rint(px), 20, 235).astype(np.uint8)


def _saved(px: np.ndarray, factor: float | None = None, kernel: str = "bicubic", jpeg: int | None = None):
    """``px`` resized by ``factor`` with Pillow, saved as PNG (or JPEG at ``jpeg``) and decoded from the bytes."""
    im = Image.fromarray(px, "RGB")
    if factor is not None:
        im = im.resize((round(im.width * factor), round(im.height * factor)), FILTERS[kernel])
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=jpeg) if jpeg else im.save(buf, "PNG")
    return decode_bytes(buf.getvalue(), "x.jpg" if jpeg else "x.png").pixels


@pytest.mark.parametrize("kernel", sorted(FILTERS))
def test_the_matrices_are_pillows_resize(kernel):
    """Pillow's two passes (horizontal first, 8-bit between) rebuilt from the matrices: off by at most 1 (its fixed point)."""
    x = _noisy(60, 80)[..., 0]
    y = np.asarray(Image.fromarray(x).resize((97, 75), FILTERS[kernel])).astype(float)
    ar, ac = kernel_matrix(60, 75, kernel), kernel_matrix(80, 97, kernel)
    t = np.clip(np.floor((ac @ x.T.astype(float)).T + 0.5), 0, 255)
    z = np.clip(np.floor(ar @ t + 0.5), 0, 255)
    assert np.abs(y - z).max() <= 1 and np.mean(y != z) < 0.05  # bilinear: ties of the fixed point, ~4%


def test_an_enlarged_png_is_found_and_restored_on_its_original_grid():
    px = _noisy()
    up, found = detect_upsampling(_saved(px, 1.25))
    assert found.fired and up is not None, found.reason
    assert up.size_before == (200, 240) and up.size_after == (250, 300) and up.kernel == "bicubic"
    assert up.residual_sd <= 1.3 * up.floor_sd
    rms = np.sqrt(np.mean((up.native_pixels(np.uint8).astype(float) - px) ** 2))
    assert rms < 1.0, rms
    j = up.to_json()
    assert j["factor"] == [1.25, 1.25] and j["size_before"] == [200, 240] and j["restored"] is True


@pytest.mark.parametrize("kernel, factor", [("lanczos3", 1.25), ("bilinear", 1.6)])
def test_other_pillow_kernels_and_factors_are_found(kernel, factor):
    px = _noisy()
    up, found = detect_upsampling(_saved(px, factor, kernel))
    assert found.fired and up.kernel == kernel and up.size_before == (200, 240), found.reason


@pytest.mark.parametrize("what", ["untouched", "reduced x0.8", "enlarged then JPEG q90"])
def test_no_detection_without_an_exact_enlargement(what):
    """An untouched scan and a reduced one are no enlargement; a JPEG saved after enlarging carries
    compression noise far above the rounding floor, so the exact test (rightly) cannot vouch for it."""
    px = _noisy()
    y = {"untouched": lambda: _saved(px), "reduced x0.8": lambda: _saved(px, 0.8),
         "enlarged then JPEG q90": lambda: _saved(px, 1.25, jpeg=90)}[what]()
    up, found = detect_upsampling(y)
    assert up is None and not found.fired, found


def test_classify_json_says_the_scan_was_enlarged_and_votes_on_the_restored_grid(tmp_path, capsys):
    """Through the shipped model: ``scan.resampling``, the ``resampled`` warning, maps on the file's grid."""
    from scanlab.cli import main
    from scanlab.core.synth.bank import synth_scan
    from scanlab.core.synth.scanner import decode, design
    from scanlab.services.analysis import AnalysisRequest, run_analysis

    px = decode(synth_scan(design("default", 3), 5, seed=4242, size=256).data)  # vscan-04, content it never saw
    f = tmp_path / "enlarged.png"
    Image.fromarray(px).resize((320, 320), Image.Resampling.BICUBIC).save(f)
    assert main(["classify", str(f), "--json"]) == 0
    e = json.loads(capsys.readouterr().out)["images"][0]
    r = e["scan"]["resampling"]
    assert r["size_before"] == [256, 256] and r["size_after"] == [320, 320] and r["kernel"] == "bicubic"
    assert r["restored"] is True and r["residual_sd"] <= 1.3 * r["floor_sd"]
    (w,) = [w for w in e["warnings"] if w["code"] == "resampled"]
    assert "256 x 256" in w["message"] and "restored" in w["message"]
    assert sum(e["votes"].values()) == 16  # the 64-px vote grid of the 256 x 256 original, not of the file
    res = run_analysis(AnalysisRequest(path=str(f), device="cpu"))  # with the map: on the file's pixels
    assert res.reliability.shape == (320, 320) and res.native_pixels.shape == (256, 256, 3)
    assert res.scan.resampling == r and "resampling" in res.timing
    assert "maps are drawn on the file as it is" in res.verdict.warnings[0]["message"]
    plain = tmp_path / "as_scanned.png"
    Image.fromarray(px).save(plain)
    assert main(["classify", str(plain), "--json"]) == 0
    e = json.loads(capsys.readouterr().out)["images"][0]
    assert e["scan"]["resampling"] is None and not [w for w in e["warnings"] if w["code"] == "resampled"]
