"""The copy-move layer in a case and its report: pairs become linked suggested ROIs, one report section per pair."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scanlab.cli import main
from scanlab.core.case.casefile import load_case, verify_chain
from scanlab.core.errors import ScanLabError
from scanlab.core.synth.forge import forge_one
from scanlab.services.layer_cases import pair_of, suggest_layer_pairs
from scanlab.services.layer_runs import model_free_layers, run_layer

pypdf = pytest.importorskip("pypdf")


@pytest.fixture(scope="module")
def forged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lossless scan with a large block copied inside it (as tests/test_copymove.py::moved_block)."""
    d = tmp_path_factory.mktemp("cmcase")
    f = forge_one(0, "copymove", size=512, host_index=3)
    p = d / "page.png"
    p.write_bytes(f.data)
    return p


@pytest.fixture(scope="module")
def case_file(forged: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    case = tmp_path_factory.mktemp("cmc") / "c.scanlab"
    assert main(["case", "new", str(case), "--title", "Moved block", "--analyst", "A"]) == 0
    assert main(["case", "add", str(case), str(forged), "--stride", "8", "--layers", "copymove"]) == 0
    return case


def test_registry_offers_copymove_as_model_free_layer() -> None:
    assert [lay.name for lay in model_free_layers()] == ["copymove"]
    with pytest.raises(ScanLabError, match="scanner model"):
        run_layer("reliability", "unused.png")


def test_pairs_become_linked_suggested_rois_with_stats(case_file: Path) -> None:
    c = load_case(case_file)
    (e,) = c.evidence.values()
    ends = [r for r in e.rois if r.stats.get("layer") == "copymove"]
    assert len(ends) >= 2 and len(ends) % 2 == 0
    by_id = {r.id: r for r in ends}
    for r in ends:
        p = pair_of(r)
        assert r.suggested and not r.reviewed and r.kind == "polygon"
        assert by_id[p["partner"]].stats["copymove"]["partner"] == r.id  # linked both ways
        assert {p["end"], pair_of(by_id[p["partner"]])["end"]} == {"source", "target"}
        # the exact-duplication test: q far below the scan's own same-content null; the empirical
        # p is bounded by the null's size, (1 + 0) / (1 + #null)
        assert p["q"] < 0.5 * p["q_null"] and p["p_value"] < 0.05 and len(p["transform"]) == 2
        assert "inside" in r.stats  # the region's reliability statistics sit beside the pair's
    assert len({r.id for r in e.rois}) == len(e.rois)  # one allocator
    actions = [a["action"] for a in c.audit]
    assert "layer_run" in actions and not verify_chain(c.audit)


def test_rerun_replaces_unreviewed_pairs_and_keeps_reviewed(case_file: Path, forged: Path, tmp_path: Path) -> None:
    case = tmp_path / "c.scanlab"
    case.write_bytes(case_file.read_bytes())
    c = load_case(case)
    (e,) = c.evidence.values()
    first = min(r.id for r in e.rois if r.stats.get("layer"))
    assert main(["case", "roi", "review", str(case), e.eid, str(first), "--verdict", "Suspicious"]) == 0
    c = load_case(case)
    n_before = len(c.evidence[e.eid].rois)
    new = suggest_layer_pairs(c, run_layer("copymove", forged), user="t")
    rois = c.evidence[e.eid].rois
    assert len(rois) == n_before + 1  # the reviewed end stays; its unreviewed partner was replaced
    assert any(r.id == first and r.verdict == "Suspicious" and r.stats["copymove"] for r in rois)
    assert {r.id for r in new}.isdisjoint({first})


def test_case_add_refuses_unknown_layer(case_file: Path, forged: Path, capsys) -> None:
    with pytest.raises(SystemExit):
        main(["case", "add", str(case_file), str(forged), "--layers", "reliability"])
    assert "not a layer case add can run" in capsys.readouterr().err


def test_report_has_a_section_per_pair(case_file: Path, tmp_path: Path) -> None:
    case = tmp_path / "c.scanlab"
    case.write_bytes(case_file.read_bytes())
    out = tmp_path / "r.pdf"
    assert main(["report", str(case), "-o", str(out)]) == 0
    text = "\n".join(p.extract_text() for p in pypdf.PdfReader(str(out)).pages)
    c = load_case(case)
    (e,) = c.evidence.values()
    ends = sorted((r for r in e.rois if r.stats.get("layer")), key=lambda r: r.id)
    n_pairs = len(ends) // 2
    assert text.count("Copy-move pair") == n_pairs
    src = next(r for r in ends if r.stats["copymove"]["end"] == "source")
    assert f"Copy-move pair 1: ROI {src.id} and ROI {src.stats['copymove']['partner']}" in text
    assert "same-content null" in text and "Experimental layer" in text
    assert f"{src.stats['copymove']['q']:.4f}" in text and f"{src.stats['copymove']['q_null']:.4f}" in text
    assert json.loads(json.dumps(src.stats))  # plain JSON in the case file


def test_case_show_names_pair_and_partner(case_file: Path, capsys) -> None:
    assert main(["case", "show", str(case_file)]) == 0
    out = capsys.readouterr().out
    assert "copymove pair 1 source, partner ROI" in out and "copymove pair 1 target, partner ROI" in out
