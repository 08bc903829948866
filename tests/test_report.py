"""The PDF case report, read back with pypdf (CI has no poppler)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from scanlab.cli import main
from scanlab.core.case.casefile import load_case, verify_chain

pypdf = pytest.importorskip("pypdf")

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "resources" / "samples" / "forged_splice.jpg"


@pytest.fixture(scope="module")
def case_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("rep")
    img = d / "questioned.jpg"
    shutil.copy(SAMPLE, img)
    case = d / "c.scanlab"
    assert main(["case", "new", str(case), "--title", "Contract 7", "--analyst", "A. Analyst",
                 "--agency", "Forensic Lab"]) == 0
    assert main(["case", "add", str(case), str(img), "--stride", "8"]) == 0
    assert main(["case", "roi", "add", str(case), "questioned", "--rect", "100", "100", "200", "300",
                 "--verdict", "Consistent", "--note", "printed text, fits the host scanner"]) == 0
    return case


def _pages(pdf: Path) -> list[str]:
    return [p.extract_text() for p in pypdf.PdfReader(str(pdf)).pages]


def test_draft_report_contents(case_file, tmp_path):
    case = tmp_path / "c.scanlab"
    shutil.copy(case_file, case)
    head = load_case(case).head_hash
    out = tmp_path / "report.pdf"
    assert main(["report", str(case), "-o", str(out)]) == 0
    printed = load_case(case).head_hash  # the export entry's own hash: what `case show` prints now
    assert printed != head
    pages = _pages(out)
    text = "\n".join(pages)
    n = len(pages)
    assert n >= 4
    for i, page in enumerate(pages, 1):  # footer and DRAFT mark on every page
        assert f"page {i} of {n}" in page
        assert printed in page.replace("\n", "")
        assert "DRAFT" in page
    c = load_case(case)
    (e,) = c.evidence.values()
    assert e.info["sha256"] in re.sub(r"\s", "", text)  # the table wraps the hash over lines
    for needle in ("Contract 7", "A. Analyst", "Forensic Lab", "ScanLab version",
                   "vscan-02", "calibrated", "ROI 1", "ROI 2", "Consistent", "printed text, fits the host scanner",
                   "Mann-Whitney", "ring of equal area", "VIRTUAL scanners only", "knows only virtual scanners",
                   "torch", "reportlab", "Limitations", "not reviewed by the analyst", "Recompression",
                   "copy-move", "scanner MODEL", "not one physical unit", "NOT SIGNED OFF", "Parameters", "8x8"):
        assert needle.lower() in text.replace("\n", " ").lower(), needle
    # the unreviewed suggestions are counted in the limitations
    n_sug = sum(r.suggested for r in e.rois)
    assert n_sug >= 1 and f"{n_sug} suggested region(s) not reviewed" in text.replace("\n", " ")
    # the export is the last entry, its hash is the head the report prints, and the chain stays intact
    last = c.audit[-1]
    assert last["action"] == "report_exported" and last["prev_hash"] == head and last["hash"] == printed
    assert "report_exported" in text and verify_chain(c.audit) == []
    # raw maps beside the PDF, re-analysable
    with h5py.File(tmp_path / "report.maps.h5") as f:
        g = f[e.eid]
        rel = g["reliability"][()]
        assert rel.shape == (768, 768) and g.attrs["sha256"] == e.info["sha256"]
        assert g["windows/probs"].shape[2] == 10
        assert np.nanmin(rel) < 0.2


def test_signed_off_report_is_not_a_draft(case_file, tmp_path):
    case = tmp_path / "c.scanlab"
    shutil.copy(case_file, case)
    assert main(["case", "roi", "review", str(case), "questioned", "1", "--verdict", "Suspicious",
                 "--note", "splice"]) == 0
    (e,) = load_case(case).evidence.values()
    for r in e.rois:  # smaller suggestions, if the model makes any
        if r.suggested and r.id != 1:
            assert main(["case", "roi", "review", str(case), "questioned", str(r.id), "--verdict", "Consistent",
                         "--note", "small region, checked"]) == 0
    assert main(["case", "signoff", str(case), "--analyst", "A. Analyst",
                 "--statement", "I reviewed every region of this case."]) == 0
    out = tmp_path / "final.pdf"
    assert main(["report", str(case), "-o", str(out)]) == 0
    pages = _pages(out)
    assert not any("DRAFT" in p for p in pages)
    text = " ".join(pages).replace("\n", " ")
    assert "I reviewed every region of this case." in text and "0 suggested region(s) not reviewed" in text


def test_unwritable_report_path_is_refused(case_file, tmp_path, capsys):
    case = tmp_path / "c.scanlab"
    shutil.copy(case_file, case)
    before = load_case(case).audit
    assert main(["report", str(case), "-o", str(tmp_path / "missing" / "r.pdf")]) == 2
    assert main(["report", str(case), "-o", str(tmp_path / "r.txt")]) == 2
    assert "scanlab: error:" in capsys.readouterr().err
    assert load_case(case).audit == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.scanlab"]


def test_report_puts_input_warnings_before_the_verdict(tmp_path):
    """A scan turned by 90 degrees: the report says so above the verdict and names no scanner as attributed."""
    from PIL import Image

    from scanlab.core.synth.bank import synth_scan
    from scanlab.core.synth.scanner import decode, design

    px = decode(synth_scan(design("default", 3), 5, seed=4242, size=512).data)
    img = tmp_path / "turned.png"
    Image.fromarray(np.ascontiguousarray(np.rot90(px, 3))).save(img)
    case = tmp_path / "t.scanlab"
    assert main(["case", "new", str(case), "--title", "Turned", "--analyst", "A. Analyst"]) == 0
    assert main(["case", "add", str(case), str(img), "--stride", "16"]) == 0
    out = tmp_path / "r.pdf"
    assert main(["report", str(case), "-o", str(out)]) == 0
    text = " ".join(p.replace("\n", " ") for p in _pages(out))
    i, j = text.index("input checks (read first)"), text.index("top class among known scanners")
    assert i < j and "turned 90 degrees anticlockwise" in text[i:j].replace("  ", " ")
    assert "the verdict is unknown: this is the fit to a scanner the verdict does not name" in text


def test_show_prints_the_head_the_report_prints(case_file, tmp_path, capsys):
    case = tmp_path / "c.scanlab"
    shutil.copy(case_file, case)
    out = tmp_path / "r.pdf"
    assert main(["report", str(case), "-o", str(out)]) == 0
    capsys.readouterr()
    assert main(["case", "show", str(case)]) == 0
    shown = re.search(r"head ([0-9a-f]{16})", capsys.readouterr().out).group(1)
    footer = re.search(r"audit head ([0-9a-f]{64})", _pages(out)[0].replace("\n", "")).group(1)
    assert footer.startswith(shown)
    # the audit table's time column ends before the user column begins
    from reportlab.pdfbase.pdfmetrics import stringWidth

    frags: list[tuple[float, str, float]] = []
    page = pypdf.PdfReader(str(out)).pages[-1]
    # x on the page: the text matrix is relative to the cell (cm) for wrapped cells
    page.extract_text(visitor_text=lambda t, cm, tm, font, size: frags.append((cm[4] + tm[4], t, size))
                      if t.strip() else None)
    (user_x,) = [x for x, t, _ in frags if t.strip() == "user"]
    times = [(x, t.strip(), size) for x, t, size in frags if re.match(r"\d{4}-\d\d-\d\d|\d\d:\d\d", t.strip())]
    assert times and all(x < user_x for x, _, _ in times)
    assert all(x + stringWidth(t, "Helvetica", size or 8) < user_x for x, t, size in times), times


def test_unknown_verdict_is_not_called_a_confidence(tmp_path):
    """A scan of a scanner the model never saw: the report says unknown, with score and threshold, in the
    case view's colour map, and calls the top class's probability what it is. (A PNG: the shipped model answers
    a JPEG of an unseen scanner inconclusive, since it rejects 60% of its own scanners' scans re-saved as JPEG.)"""
    from scanlab.core.case.casefile import save_case

    img = tmp_path / "u.png"
    shutil.copy(ROOT / "resources" / "selftest" / "unseen" / "elsewhere-03_0000.png", img)
    case = tmp_path / "u.scanlab"
    assert main(["case", "new", str(case), "--title", "U", "--analyst", "A"]) == 0
    assert main(["case", "add", str(case), str(img), "--stride", "16"]) == 0
    c = load_case(case)
    c.view = {"colormap": "viridis"}
    save_case(c)
    (e,) = c.evidence.values()
    cl = e.runs[-1].info["classify"]
    assert cl["verdict"] == "unknown" and cl["calibrated"]
    out = tmp_path / "r.pdf"
    assert main(["report", str(case), "-o", str(out)]) == 0
    text = " ".join(p.replace("\n", " ") for p in _pages(out))
    text = re.sub(r"\s+", " ", text)
    assert not re.search(r"confidence \d\.\d+ \(calibrated", text)
    assert "fit of the top known class, not an attribution" in text
    assert f"{cl['confidence']:.3f} (calibrated probability of {cl['label']}; the verdict is unknown)" in text
    thr = cl["thresholds"]["unknown"]
    assert f"{cl['unknown_score']:.3f} (threshold {thr:.3f}; above it" in text
    assert "DEMONSTRATION MODEL" in text and "viridis colour map" in text and "hatched grey with coloured stripes, as on screen: no evidence" in text
    assert "unless the model detects unknown scanners" not in text
    assert "is answered 'unknown' when its unknown score is above the model's threshold" in text
    assert f"verdict unknown; top known class (not an attribution) {cl['label']}" in text


def test_roi_without_windows_has_no_best_scanner():
    from scanlab.services.report_text import roi_rows

    st = {"area": 40, "best_scanner": None, "window_test": {"n_inside": 0, "n_outside": 12, "p_value": None}}
    rows = {r[0]: r[1] for r in roi_rows(st)}
    assert rows["best-fitting scanner"] == "none: no window inside the region"
    st["best_scanner"] = {"label": "vscan-02", "source": "windows inside", "n_windows": 3}
    st["window_test"]["n_inside"] = 3
    assert roi_rows(st)[7][1] == "vscan-02 (windows inside, 3 windows)"


def test_verdict_rows_say_what_each_number_is():
    from reportlab.lib.styles import getSampleStyleSheet

    from scanlab.services.report_text import NOT_AN_ATTRIBUTION, verdict_rows

    ss = getSampleStyleSheet()
    ss.add(ss["BodyText"].clone("Warn"))
    base = {"verdict": "attributed", "label": "a", "confidence": 0.9, "calibrated": True, "unknown_score": 0.1,
            "thresholds": {"unknown": 0.46}, "votes": {"a": 9, "b": 1}, "n_patches": 10, "vote_fraction": 0.9,
            "vote_interval": [0.6, 0.98], "probabilities": {"a": 0.9, "b": 0.1}, "reason": None, "warnings": []}

    def rows(c, demo=False):
        return {r[0]: r[1] for r in verdict_rows(c, {"demonstration": demo}, ss)}

    r = rows(base)
    assert r["confidence"] == "0.900 (calibrated probability)" and "model" not in r
    assert r["unknown-scanner score"] == "0.100 (threshold 0.460; below it)"
    r = rows({**base, "verdict": "inconclusive", "reason": "votes are split"}, demo=True)
    assert "confidence" not in r and r[NOT_AN_ATTRIBUTION].startswith("0.900 (calibrated probability of a;")
    assert r["top class among known scanners"] == "a (not an attribution)" and "model" in r
    blank = {**base, "verdict": "inconclusive", "label": None, "confidence": None, "unknown_score": None,
             "votes": {}, "n_patches": 0, "vote_fraction": 0.0}
    r = rows(blank)
    assert r["top class among known scanners"] == "none: no window carries sensor evidence"
    assert r["unknown-scanner score"] == "not computed: no window carries sensor evidence"
    assert rows({**blank, "thresholds": {}})["unknown-scanner score"] == (
        "not computed: this model has no unknown-scanner detector")
