"""JPEG facts in the scan block: quality from the tables, chroma subsampling, the re-compression test."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from scanlab.core.io import jpegfacts as jf
from scanlab.core.io.imaging import decode_bytes


def _content(seed: int, size: int = 384) -> np.ndarray:
    """Scan-like pixels never JPEG-compressed: smooth shapes, edges and sensor noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    base = 128 + 60 * np.sin(6 * x + rng.random() * 6) * np.cos(4 * y) + 40 * (((x * 7).astype(int) + (y * 5).astype(int)) % 2)
    rgb = base[..., None] + np.array([10, 0, -10]) + rng.normal(0, 6, (size, size, 3))
    return np.clip(rgb, 0, 255).astype(np.uint8)


def _jpeg(px: np.ndarray, q: int, subsampling: int = 2) -> bytes:
    b = io.BytesIO()
    Image.fromarray(px).save(b, "JPEG", quality=q, subsampling=subsampling)
    return b.getvalue()


def _again(data: bytes, q: int) -> bytes:
    return _jpeg(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), q)


@pytest.mark.parametrize("q", [30, 50, 75, 90, 95])
def test_quality_is_read_from_standard_tables(q):
    f = jf.jpeg_facts(_jpeg(_content(0, 128), q))
    assert f["quality"] == q and f["tables"] == "standard"


def test_custom_tables_are_called_custom():
    b = io.BytesIO()
    t = [int(v) for v in np.clip(jf.ijg_table(80) + np.arange(64) % 3, 1, 255)]
    Image.fromarray(_content(0, 128)).save(b, "JPEG", qtables=[t, t])
    f = jf.jpeg_facts(b.getvalue())
    assert f["tables"] == "custom" and abs(f["quality"] - 80) <= 5


@pytest.mark.parametrize("code, name", [(0, "4:4:4"), (1, "4:2:2"), (2, "4:2:0")])
def test_subsampling(code, name):
    assert jf.jpeg_facts(_jpeg(_content(1, 128), 90, code))["subsampling"] == name


def test_grey_jpeg():
    b = io.BytesIO()
    Image.fromarray(_content(1, 128)[..., 0]).save(b, "JPEG", quality=85)
    f = jf.jpeg_facts(b.getvalue())
    assert f["subsampling"] == "grey" and f["quality"] == 85


def test_single_and_double_compression_are_told_apart():
    for seed in range(3):
        px = _content(seed)
        single = decode_bytes(_jpeg(px, 90), "s.jpg").info.jpeg
        double = decode_bytes(_again(_jpeg(px, 75), 90), "d.jpg").info.jpeg
        assert single["quality"] == double["quality"] == 90
        assert single["recompressed"] is False and single["recompression_score"] < jf.THRESHOLD / 3
        assert double["recompressed"] is True and double["recompression_score"] > 2 * jf.THRESHOLD


def test_the_second_decode_and_the_decoded_colours_agree():
    data = _again(_jpeg(_content(4), 75), 90)
    a = jf.jpeg_facts(data)  # libjpeg's own luminance
    b = decode_bytes(data, "x.jpg").info.jpeg  # from the decoded RGB, as analyses do
    assert a["recompressed"] is b["recompressed"] is True


def test_scan_block_carries_the_facts_for_jpeg_only():
    px = _content(2, 128)
    assert decode_bytes(_jpeg(px, 90), "a.jpg").info.scan_json()["jpeg"]["quality"] == 90
    b = io.BytesIO()
    Image.fromarray(px).save(b, "PNG")
    assert decode_bytes(b.getvalue(), "a.png").info.scan_json()["jpeg"] is None


def test_flat_page_is_undecided():
    """A blank page has no coefficients to read: the test says None, not False."""
    f = jf.jpeg_facts(_jpeg(np.full((256, 256, 3), 250, np.uint8), 90))
    assert f["recompressed"] is None and f["recompression_score"] is None


class _Info:
    def __init__(self, jpeg):
        self.jpeg, self.dpi, self.bit_depth = jpeg, None, 8


def test_gating_says_when_a_jpeg_lies_outside_the_training_qualities():
    from scanlab.core.evidence.gating import input_warnings

    ti = {"formats": {"JPEG": 30}, "jpeg_quality": [85, 95], "bit_depths": [8]}
    codes = lambda facts, t=ti: [w["code"] for w in input_warnings(_Info(facts), t)]  # noqa: E731
    inside = {"quality": 90, "recompressed": False, "recompression_score": 0.01}
    assert codes(inside) == []
    low = {"quality": 72, "recompressed": True, "recompression_score": 0.9}
    (w,) = input_warnings(_Info(low), ti)
    assert w["code"] == "jpeg_quality_unseen" and "re-compressed at quality ~72" in w["message"] and "85-95" in w["message"]
    assert codes({**inside, "recompressed": True}) == ["recompressed"]
    assert codes({**inside, "recompressed": True}, {**ti, "recompressed_in_training": True}) == []
    assert codes(inside, {"formats": {"PNG": 30}, "jpeg_quality": None}) == ["jpeg_unseen"]
    assert codes(inside, {"bit_depths": [8]}) == []  # an older manifest records no formats: no guess
    assert codes(None) == []  # not a JPEG


def test_input_summary_reads_headers_of_files_and_pdf_items(tmp_path):
    import pikepdf

    px = _content(3, 128)
    (tmp_path / "a.jpg").write_bytes(_jpeg(px, 80))
    (tmp_path / "b.jpg").write_bytes(_jpeg(px, 93, 0))
    Image.fromarray(px).save(tmp_path / "c.png")
    pdf = pikepdf.Pdf.new()
    page = pdf.add_blank_page()
    im = pikepdf.Stream(pdf, _jpeg(px, 70))
    im.Type, im.Subtype, im.ColorSpace, im.Filter = (pikepdf.Name.XObject, pikepdf.Name.Image,
                                                      pikepdf.Name.DeviceRGB, pikepdf.Name.DCTDecode)
    im.Width, im.Height, im.BitsPerComponent = 128, 128, 8
    page.Resources = pikepdf.Dictionary(XObject=pikepdf.Dictionary(Im0=im))
    page.Contents = pdf.make_stream(b"/Im0 Do")
    pdf.save(tmp_path / "d.pdf")
    paths = [tmp_path / "a.jpg", tmp_path / "b.jpg", tmp_path / "c.png", f"{tmp_path / 'd.pdf'}#page=1&image=1"]
    s = jf.input_summary(str(p) for p in paths)
    assert s == {"formats": {"JPEG": 3, "PNG": 1}, "jpeg_quality": [70, 93], "jpeg_subsampling": ["4:2:0", "4:4:4"]}


def test_trained_model_records_its_input_formats(trained_model):
    from scanlab.core.modelfile.store import read_manifest

    ti = read_manifest(trained_model)["training_input"]
    assert sum(ti["formats"].values()) > 0 and "jpeg_quality" in ti and "jpeg_subsampling" in ti


def test_card_names_the_training_formats():
    from scanlab.core.modelfile.store import _evidence_card

    m = {"training_input": {"dpi": None, "bit_depths": [8], "formats": {"JPEG": 4, "PNG": 2},
                            "jpeg_quality": [85, 95], "jpeg_subsampling": ["4:2:0"]}}
    assert any("JPEG 4, PNG 2; JPEG quality 85-95 (4:2:0)" in line for line in _evidence_card(m))


_MEASURED = {"known_scans": 20, "unseen_scans": 20, "rows": {
    "as scanned": {"kind": "none", "parameter": None, "known_right": 1.0, "known_wrong": 0.0, "unseen_rejected": 0.95},
    "jpeg-q90": {"kind": "jpeg", "parameter": 90, "known_right": 0.85, "known_wrong": 0.0, "unseen_rejected": 1.0},
    "jpeg-q75": {"kind": "jpeg", "parameter": 75, "known_right": 0.6, "known_wrong": 0.05, "unseen_rejected": 1.0},
}}


def test_gating_quotes_the_attribution_measured_through_recompression():
    """The warning carries the model file's own figure for the nearest measured quality, or says none was measured."""
    from scanlab.core.evidence.gating import input_warnings

    ti = {"formats": {"JPEG": 30}, "jpeg_quality": [85, 95], "bit_depths": [8]}
    low = {"quality": 72, "recompressed": True, "recompression_score": 0.9}
    (w,) = input_warnings(_Info(low), ti, _MEASURED)
    assert w["code"] == "jpeg_quality_unseen"
    assert "attribution still measured at 60%" in w["message"] and "quality 75" in w["message"]
    assert "5% attributed to a wrong scanner" in w["message"]
    (w,) = input_warnings(_Info({"quality": 88, "recompressed": True, "recompression_score": 0.9}), ti, _MEASURED)
    assert w["code"] == "recompressed" and "attribution still measured at 85%" in w["message"]
    for measured in (None, {"rows": {"as scanned": _MEASURED["rows"]["as scanned"]}}):
        (w,) = input_warnings(_Info(low), ti, measured)
        assert "not measured for this model" in w["message"] and "%" not in w["message"]


def test_gating_knows_the_qualities_training_recompressed_to():
    """A model trained through the delivery chain covers re-compression down to its recorded quality, not below."""
    from scanlab.core.evidence.gating import input_warnings

    ti = {"formats": {"JPEG": 30}, "jpeg_quality": [85, 95], "bit_depths": [8],
          "recompressed_in_training": True, "recompressed_quality": [60, 98]}
    assert input_warnings(_Info({"quality": 72, "recompressed": True, "recompression_score": 0.9}), ti) == []
    (w,) = input_warnings(_Info({"quality": 40, "recompressed": True, "recompression_score": 0.9}), ti, _MEASURED)
    assert w["code"] == "jpeg_quality_unseen" and "re-compressed scans at quality 60-98" in w["message"]
    assert "attribution still measured at 60%" in w["message"]


def test_gating_text_comes_from_the_model_file(random_model):
    """The shipped file carries measured figures and the warning quotes them; a file without them says so."""
    from scanlab.core.evidence.gating import input_warnings
    from scanlab.core.evidence.verdict import EvidenceConfig
    from scanlab.core.modelfile.store import read_manifest
    from scanlab.services.paths import default_model_path

    ti = {"formats": {"JPEG": 30}, "jpeg_quality": [85, 95], "bit_depths": [8]}
    low = _Info({"quality": 72, "recompressed": True, "recompression_score": 0.9})
    shipped = read_manifest(default_model_path())
    row = shipped["delivery_chain_measured"]["rows"]["jpeg-q75"]  # measured by benchmarks/bench_delivery.py
    (w,) = input_warnings(low, ti, EvidenceConfig.from_model(shipped).delivery_measured)
    assert f"attribution still measured at {100 * row['known_right']:.0f}%" in w["message"]
    (w,) = input_warnings(low, ti, EvidenceConfig.from_model(read_manifest(random_model)).delivery_measured)
    assert "not measured for this model" in w["message"]


def test_shipped_model_warns_on_a_resaved_jpeg_through_classify(tmp_path):
    """The shipped file records its training formats, so a questioned JPEG below them is flagged end to end.

    Before, its manifest had no ``formats`` and a JPEG re-saved at quality 75 (which the
    shipped model attributes right only 10% of the time) came out with no warning at all.
    """
    from scanlab.core.modelfile.store import read_manifest
    from scanlab.services.analysis import AnalysisRequest, run_analysis
    from scanlab.services.paths import default_model_path

    ti = read_manifest(default_model_path())["training_input"]
    assert ti["formats"]["JPEG"] > 0 and ti["jpeg_quality"][0] > 75
    f = tmp_path / "resaved.jpg"
    f.write_bytes(_jpeg(_content(11, 256), 75))
    r = run_analysis(AnalysisRequest(str(f), with_map=False))
    codes = {w["code"]: w["message"] for w in r.verdict.warnings}
    assert "jpeg_quality_unseen" in codes and "attribution still measured at" in codes["jpeg_quality_unseen"]
