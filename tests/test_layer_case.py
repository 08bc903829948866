"""The copy-move layer in a case and its report: pairs become linked suggested ROIs, one report section per pair."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from scanlab.cli import main
from scanlab.core.case.casefile import load_case, save_case, verify_chain
from scanlab.core.errors import ScanLabError
from scanlab.core.synth.forge import forge_one
from scanlab.services.layer_cases import pair_of, suggest_layer_pairs
from scanlab.services.layer_runs import model_free_layers, run_layer
from scanlab.services.verify import verify_case

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
    # the stored run the pair came from, as verify re-checks it: record id and map digest
    (rec,) = e.layer_runs
    flat = " ".join(text.split())
    assert f"{src.stats['copymove']['run']}, {rec['time']}; map SHA-256 {rec['map']['sha256'][:16]}" in flat
    assert f"{rec['map']['n_ge_half']} px >= 0.5" in flat


def test_case_show_names_pair_and_partner(case_file: Path, capsys) -> None:
    assert main(["case", "show", str(case_file)]) == 0
    out = capsys.readouterr().out
    assert "copymove pair 1 source, partner ROI" in out and "copymove pair 1 target, partner ROI" in out
    (e,) = load_case(case_file).evidence.values()
    (rec,) = e.layer_runs
    from scanlab.services.layer_records import record_id

    assert (f"copymove layer run {rec['time']}: {len(rec['pairs'])} pair(s), record {record_id(rec)}, "
            f"map digest {rec['map']['sha256'][:16]} (step 0.001, {rec['map']['n_ge_half']} px >= 0.5") in out
    p = rec["pairs"][0]  # the figures the ROI lines print are the stored pair's
    assert f"q {p['q']} (null {p['q_null']})" in out


def test_damaged_layer_records_give_a_one_line_error(case_file: Path, tmp_path: Path, capsys) -> None:
    import h5py

    case = _copy(case_file, tmp_path)
    with h5py.File(case, "r+") as f:
        (g,) = f["evidence"].values()
        del g["layer_runs"]
        g.create_dataset("layer_runs", data='["not a record"]', dtype=h5py.string_dtype("utf-8"))
    assert main(["verify", str(case)]) != 0
    err = capsys.readouterr().err.strip()
    assert "layer_runs is not a list of records" in err and len(err.splitlines()) == 1


# ---------------------------------------------------------------- the stored record and its re-check


def _copy(case_file: Path, tmp_path: Path) -> Path:
    case = tmp_path / "c.scanlab"
    case.write_bytes(case_file.read_bytes())
    return case


def test_case_stores_a_checkable_record_of_the_layer_run(case_file: Path) -> None:
    from scanlab.services.layer_records import map_digest, record_id, record_sha256

    c = load_case(case_file)
    (e,) = c.evidence.values()
    (rec,) = e.layer_runs
    assert rec["layer"] == "copymove" and rec["eid"] == e.eid and rec["evidence_sha256"] == e.info["sha256"]
    det = rec["detector"]
    assert len(det["source_sha256"]) == 64 and det["parameters"]["alpha"] == 1e-3 and det["scanlab_version"]
    ends = [r for r in e.rois if r.stats.get("layer") == "copymove"]
    assert len(rec["pairs"]) == len(ends) // 2 == rec["summary"]["n_pairs"]
    for r in ends:  # each end names its run, and its figures are the stored pair's
        p = pair_of(r)
        assert p["run"] == record_id(rec)
        stored = rec["pairs"][p["pair"] - 1]
        assert all(p[k] == stored[k] for k in ("q", "q_null", "z", "source_box", "target_box", "transform"))
        assert "source_outline" not in stored
    m = rec["map"]
    assert m["quantum"] == 1e-3 and m["n_ge_half"] >= sum(r.stats["copymove"]["area"] for r in ends) // 2
    assert m["shape"] == rec["shape"] and len(m["sha256"]) == 64
    # the record is the payload of its layer_run audit entry
    (entry,) = [a for a in c.audit if a["action"] == "layer_run"]
    assert entry["payload_sha256"] == record_sha256(rec) and "record stored" in entry["detail"]
    # the digest: a change of one quantum anywhere changes it; NaN counts
    s = np.zeros((70, 80), np.float32)
    d0 = map_digest(s)
    s[3, 4] = 0.001
    s[5, 6] = np.nan
    d1 = map_digest(s)
    assert d0["sha256"] != d1["sha256"] and (d1["n_nan"], d1["n_ge_half"]) == (1, 0)


def test_verify_reruns_the_layer_and_passes(case_file: Path, tmp_path: Path, capsys) -> None:
    case = _copy(case_file, tmp_path)
    assert main(["verify", str(case)]) == 0
    out = capsys.readouterr().out
    assert "1 layer runs re-checked" in out and "DIFFERENT" not in out
    res = verify_case(load_case(case))
    assert res["ok"] and res["checked"]["layer_runs"] == 1 and res["tolerance"]["layer_pairs"]["z"] == 0.01


def test_verify_names_a_tampered_stored_pair(case_file: Path, tmp_path: Path, capsys) -> None:
    case = _copy(case_file, tmp_path)
    c = load_case(case)
    (e,) = c.evidence.values()
    e.layer_runs[0]["pairs"][0]["q"] += 0.05  # the stored pair edited inside the case file
    e.layer_runs[0]["pairs"][0]["target_box"][1] += 3
    save_case(c)
    assert main(["verify", str(case)]) == 1
    out = capsys.readouterr().out
    assert "copymove layer run 000: stored record does not match the audit log" in out
    assert "pair 1 q " in out and "pair 1 target_box" in out  # and the re-run disagrees with it
    assert "no stored record matches it" in out


def test_verify_names_a_tampered_pair_roi(case_file: Path, tmp_path: Path, capsys) -> None:
    case = _copy(case_file, tmp_path)
    c = load_case(case)
    (e,) = c.evidence.values()
    r = next(r for r in e.rois if r.stats.get("layer") == "copymove")
    r.stats["copymove"]["q_null"] = 0.9  # what the report and case show would print
    save_case(c)
    assert main(["verify", str(case)]) == 1
    assert f"ROI {r.id}: copymove pair 1 figures differ from the stored run (q_null)" in capsys.readouterr().out


def test_verify_names_a_removed_record(case_file: Path, tmp_path: Path, capsys) -> None:
    case = _copy(case_file, tmp_path)
    c = load_case(case)
    (e,) = c.evidence.values()
    e.layer_runs.clear()
    save_case(c)
    assert main(["verify", str(case)]) == 1
    out = capsys.readouterr().out
    assert "no stored record matches it (removed or edited)" in out and "is not stored in the case" in out


def test_verify_names_a_modified_evidence_file(forged: Path, tmp_path: Path, capsys) -> None:
    from PIL import Image

    page = tmp_path / "page.png"
    page.write_bytes(forged.read_bytes())
    case = tmp_path / "c.scanlab"
    assert main(["case", "new", str(case), "--title", "T", "--analyst", "A"]) == 0
    assert main(["case", "add", str(case), str(page), "--stride", "16", "--layers", "copymove"]) == 0
    px = np.array(Image.open(page))
    px[0, 0] ^= 1
    Image.fromarray(px).save(page)
    capsys.readouterr()
    assert main(["verify", str(case)]) == 1
    assert f"EVIDENCE MODIFIED: {page}" in capsys.readouterr().out


@pytest.mark.parametrize("change", ["q", "map", "pair"])
def test_verify_compares_the_rerun(case_file: Path, tmp_path: Path, monkeypatch, change: str) -> None:
    """The re-run itself is compared (a detector that now answers differently), not just the audit hash."""
    import scanlab.services.copymove as scm

    case = _copy(case_file, tmp_path)
    real = scm.detect_copymove

    def changed(*a, **kw):
        res = real(*a, **kw)
        if change == "q":
            res.pairs[0].q += 0.002
        elif change == "map":
            res.score[-1, -1] = 0.3 if res.score[-1, -1] != 0.3 else 0.2
        else:
            res.pairs.append(res.pairs[0])
        return res

    monkeypatch.setattr(scm, "detect_copymove", changed)
    res = verify_case(load_case(case))
    assert not res["ok"]
    want = {"q": "pair 1 q 0", "map": "score map digest", "pair": "1 pair(s) stored, 2 on re-run"}[change]
    assert any(want in d for d in res["differences"]), res["differences"]
    assert not any("audit" in d for d in res["differences"])  # the stored record itself is intact


def _rechain(entries: list[dict]) -> list[dict]:
    """The audit chain re-hashed after a test rewrote entries (as a case of an older ScanLab had them)."""
    from scanlab.core.case.casefile import GENESIS, canonical, sha256_text

    out, prev = [], GENESIS
    for a in entries:
        body = {k: v for k, v in a.items() if k != "hash"} | {"prev_hash": prev}
        body["hash"] = sha256_text(prev + canonical(body))
        out.append(body)
        prev = body["hash"]
    return out


def test_older_case_without_record_opens_and_verify_warns(case_file: Path, tmp_path: Path, capsys) -> None:
    case = _copy(case_file, tmp_path)
    c = load_case(case)
    (e,) = c.evidence.values()
    e.layer_runs.clear()  # as written before records were kept: no record, no run link, old detail line
    for r in e.rois:
        r.stats.get("copymove", {}).pop("run", None)
    for a in c.audit:
        if a["action"] == "layer_run":
            a["detail"] = a["detail"].split(", record stored")[0]
    c.audit = _rechain(c.audit)
    save_case(c)
    c = load_case(case)
    assert c.evidence[e.eid].layer_runs == [] and not verify_chain(c.audit)
    assert main(["verify", str(case)]) == 0
    out = capsys.readouterr().out
    assert "predates re-checking" in out and out.count("warning:") >= 1 and "0 layer runs re-checked" in out
