"""Smoke test on real scanned pages (../shared/data/real_scans); skipped when absent."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from modeltools import REAL_SCANS

from scanlab.cli import main
from scanlab.core.io.imaging import load_scan

pytestmark = pytest.mark.skipif(not REAL_SCANS.is_dir(), reason="../shared/data/real_scans not present")


def _sums() -> dict[str, str]:
    out = {}
    for line in (REAL_SCANS / "SHA256SUMS").read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            out[name.lstrip("*")] = digest
    return out


def test_real_scans_load_with_recorded_hashes():
    sums = _sums()
    assert sums
    for name, digest in sums.items():
        s = load_scan(REAL_SCANS / name)
        assert s.info.sha256 == digest
        assert s.pixels.shape[1] == 1240 and s.pixels.shape[2] == 3
    gray = load_scan(REAL_SCANS / "page_f1_gray.tif")
    assert np.array_equal(gray.pixels[..., 0], gray.pixels[..., 2])


def test_real_scan_classify_and_map(capsys, tmp_path, random_model):
    page = REAL_SCANS / "page_e1.png"
    assert main(["map", str(page), "-m", str(random_model), "--stride", "16", "-o", str(tmp_path / "m.npy"),
                 "--json"]) == 0
    meta = json.loads(capsys.readouterr().out)
    a = np.load(tmp_path / "m.npy")
    assert a.shape == tuple(meta["shape"]) and meta["coverage"] > 0.9
    assert meta["sha256"] == _sums()["page_e1.png"]


def test_shipped_model_names_no_virtual_scanner_for_a_real_page(capsys):
    """Issue 8: every real page is `unknown` or `inconclusive` with the shipped demonstration model."""
    pages = sorted(p for p in REAL_SCANS.iterdir() if p.suffix.lower() in (".jpg", ".png", ".tif"))
    assert len(pages) == 8
    assert main(["classify", *map(str, pages), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    verdicts = {Path(img["path"]).name: img["verdict"] for img in out["images"]}
    assert set(verdicts) == {p.name for p in pages}
    assert all(v in ("unknown", "inconclusive") for v in verdicts.values()), verdicts
    assert out["model"]["demonstration"] is True


@pytest.mark.parametrize("name", ["page_a2.jpg", "page_c1.jpg"])
def test_copymove_reports_no_pair_on_real_table_pages(name):
    # real forms: table rules beside different text. Trimmed of the text, a few rules fit a
    # spurious scale (0.98-1.06) as well as a copy would; a region all border keeps its samples.
    from scanlab.core.copymove import detect_copymove
    from scanlab.services.copymove import jpeg_quality_of

    scan = load_scan(REAL_SCANS / name)
    assert detect_copymove(scan.pixels, jpeg_quality=jpeg_quality_of(scan)).pairs == []


def test_a_real_page_no_known_scanner_made_gets_no_suggested_region(tmp_path, capsys):
    """The map of the top class of an `unknown` page is low nearly everywhere: neither a case nor batch
    turns it into a region to review (before, page_e1 got one 'region' of 1.45 MP and suspicion 0.60)."""
    import pandas as pd

    page = REAL_SCANS / "page_e1.png"
    jpeg = REAL_SCANS / "page_e1.jpg"  # the same page as a JPEG: "inconclusive" by the delivery-chain rule
    assert main(["batch", str(page), str(jpeg), "-o", str(tmp_path / "t"), "--stride", "16"]) == 0
    rows = {r["input"].rsplit("/", 1)[-1]: r for r in pd.read_parquet(tmp_path / "t" / "results.parquet").to_dict("records")}
    assert rows["page_e1.png"]["verdict"] == "unknown" and rows["page_e1.jpg"]["verdict"] == "inconclusive"
    for row in rows.values():
        assert row["low_fraction"] > 0.5 and row["n_regions"] == 0 and row["suspicion"] == 0.0
    case = tmp_path / "c.scanlab"
    assert main(["case", "new", str(case), "--title", "t", "--analyst", "A"]) == 0
    assert main(["case", "add", str(case), str(page), "--stride", "16"]) == 0
    capsys.readouterr()
    assert main(["case", "show", str(case)]) == 0
    assert "0 ROI(s)" in capsys.readouterr().out
