"""Case files: round trip, audit chain, atomic saves under kill -9, locks, bad input, verify."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import pytest

from scanlab.cli import main
from scanlab.core.case.casefile import (
    FORMAT_VERSION,
    CaseError,
    CaseLock,
    load_case,
    new_case,
    save_case,
    verify_chain,
)
from scanlab.core.case.rois import ROI
from scanlab.services.cases import (
    add_evidence,
    open_case,
    sign_off,
    unreviewed_suggestions,
)
from scanlab.services.rois import add_roi, review_roi
from scanlab.services.verify import verify_case

SAMPLE = Path(__file__).resolve().parents[1] / "resources" / "samples" / "forged_splice.jpg"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A saved case with the forged sample analysed, one drawn ROI and one reviewed suggestion."""
    d = tmp_path_factory.mktemp("case")
    img = d / "questioned.jpg"
    shutil.copy(SAMPLE, img)
    c = new_case("Contract 7", "A. Analyst", "Lab")
    e = add_evidence(c, img, user="A. Analyst")
    add_roi(c, e.eid, ROI.rect(0, 100, 100, 200, 300, note="background"), user="A. Analyst")
    review_roi(c, e.eid, 1, user="A. Analyst", verdict="Suspicious", note="face pasted")
    for r in e.rois:  # any smaller suggestions (the count depends on the model): reviewed too
        if r.suggested and r.id != 1:
            review_roi(c, e.eid, r.id, user="A. Analyst", verdict="Consistent", note="small region, checked")
    path = save_case(c, d / "c.scanlab")
    return path, img


def _copy(built: tuple[Path, Path], tmp_path: Path) -> Path:
    dst = tmp_path / "c.scanlab"
    shutil.copy(built[0], dst)
    return dst


def test_round_trip_keeps_everything(built):
    path, img = built
    c = open_case(path)
    assert c.warnings == []
    assert c.meta["title"] == "Contract 7" and c.meta["agency"] == "Lab"
    (e,) = c.evidence.values()
    assert e.info["sha256"].startswith(e.eid) and len(e.eid) == 16
    assert e.info["width"] == 768 and e.info["format"] == "JPEG" and e.info["path"] == str(img)
    run = e.runs[0]
    assert run.info["classify"]["label"] == "vscan-02"
    assert run.windows.probs.shape == (177, 177, 10)
    assert run.info["model"]["sha256"] in c.models  # a copy of the model travels with the case
    kinds = {(r.id, r.kind, r.suggested, r.verdict) for r in e.rois}
    n_sug = sum(r.suggested for r in e.rois)
    assert n_sug >= 1 and (1, "polygon", True, "Suspicious") in kinds and (n_sug + 1, "rect", False, None) in kinds
    (drawn,) = [r for r in e.rois if not r.suggested]
    assert drawn.stats["area"] == 20000
    assert verify_chain(c.audit) == []
    assert [x["action"] for x in c.audit] == ["case_created", "evidence_added", "analysis_run",
                                               "regions_suggested", "roi_added"] + ["roi_reviewed"] * n_sug
    assert unreviewed_suggestions(c) == []


def test_audit_chain_detects_an_edited_entry(built, tmp_path):
    path = _copy(built, tmp_path)
    with h5py.File(path, "r+") as f:
        entries = [json.loads(s) for s in f["audit"][()]]
        entries[4]["user"] = "someone else"
        del f["audit"]
        f.create_dataset("audit", data=[json.dumps(x) for x in entries], dtype=h5py.string_dtype())
    problems = verify_chain(load_case(path).audit)
    assert any("entry 4" in p and "edited" in p for p in problems)
    assert main(["verify", str(path)]) == 1


@pytest.mark.parametrize("stage", ["evidence", "written"])
def test_kill_9_during_save_leaves_the_previous_file_readable(built, tmp_path, stage):
    path = _copy(built, tmp_path)
    before = load_case(path)
    script = f"""
import sys, time
from scanlab.core.case.casefile import load_case, save_case
c = load_case({str(path)!r})
c.meta["title"] = "changed"
def hook(s):
    if s == {stage!r}:
        print("MARK", flush=True)
        time.sleep(120)
save_case(c, hook=hook)
"""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env, text=True)
    try:
        assert proc.stdout.readline().strip() == "MARK"  # the save is in progress now
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    after = load_case(path)
    assert after.meta == before.meta and after.audit == before.audit
    assert list(after.evidence) == list(before.evidence)


def test_full_disk_while_saving_keeps_the_previous_file(built, tmp_path):
    path = _copy(built, tmp_path)
    c = load_case(path)
    c.meta["title"] = "changed"

    def full(stage: str) -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(CaseError, match="No space left.*previous file is unchanged"):
        save_case(c, hook=full)
    assert load_case(path).meta["title"] == "Contract 7"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.scanlab"]  # no temp file left


def test_newer_corrupt_and_truncated_files_are_refused(built, tmp_path):
    path = _copy(built, tmp_path)
    with h5py.File(path, "r+") as f:
        f.attrs["format_version"] = FORMAT_VERSION + 1
    with pytest.raises(CaseError, match="newer ScanLab"):
        load_case(path)
    trunc = tmp_path / "t.scanlab"
    trunc.write_bytes(built[0].read_bytes()[:5000])
    with pytest.raises(CaseError, match="damaged"):
        load_case(trunc)
    junk = tmp_path / "j.scanlab"
    junk.write_text("not a case")
    assert main(["case", "show", str(junk)]) == 2


def test_read_only_case_opens_read_only(built, tmp_path, capsys):
    path = _copy(built, tmp_path)
    os.chmod(path, 0o444)
    try:
        c = open_case(path)
        assert c.read_only and any("read-only" in w for w in c.warnings)
        with pytest.raises(CaseError, match="read-only"):
            save_case(c)
        assert main(["case", "roi", "add", str(path), "questioned", "--rect", "0", "0", "10", "10"]) == 2
        assert "read-only" in capsys.readouterr().err
        save_case(c, tmp_path / "copy.scanlab")  # Save as still works
    finally:
        os.chmod(path, 0o644)


def test_lock_refuses_a_second_writer(built, tmp_path, capsys):
    path = _copy(built, tmp_path)
    lock = Path(str(path) + ".lock")
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock.write_text(f"{os.uname().nodename} {other.pid}")
        with pytest.raises(CaseError, match="open in process"):
            CaseLock(path).acquire()
        assert main(["case", "signoff", str(path), "--analyst", "X", "--statement", "s"]) == 2
        assert "open in process" in capsys.readouterr().err
    finally:
        other.kill()
        other.wait()
    # the holder is gone: its lock is stale and taken over
    with CaseLock(path) as lk:
        assert lk.held
    assert not lock.exists()


def test_modified_and_missing_evidence_are_loud_and_logged(built, tmp_path, capsys):
    path = _copy(built, tmp_path)
    img = tmp_path / "q.jpg"
    shutil.copy(built[1], img)
    assert main(["case", "locate", str(path), "questioned", str(img)]) == 0
    img.write_bytes(img.read_bytes() + b"\0")
    assert main(["verify", str(path)]) == 1
    out = capsys.readouterr()
    assert "EVIDENCE MODIFIED" in out.err and "EVIDENCE MODIFIED" in out.out
    assert "evidence_modified" not in [e["action"] for e in load_case(path).audit]  # verify only reads
    assert main(["verify", str(path), "--record"]) == 1
    c = load_case(path)
    assert "evidence_modified" in [e["action"] for e in c.audit] and verify_chain(c.audit) == []
    img.unlink()
    c = open_case(path)
    assert any("EVIDENCE MISSING" in w for w in c.warnings)
    other = tmp_path / "other.jpg"
    other.write_bytes(b"xx")
    assert main(["case", "locate", str(path), "q", str(other)]) == 2
    assert "not the same file" in capsys.readouterr().err


def test_verify_detects_a_tampered_stored_figure(built, tmp_path, capsys):
    path = _copy(built, tmp_path)
    assert main(["verify", str(path)]) == 0
    with h5py.File(path, "r+") as f:
        rg = next(iter(f["evidence"].values()))["runs"]["000"]
        run = json.loads(rg.attrs["run"])
        run["classify"]["probabilities"]["vscan-02"] = 0.99
        rg.attrs["run"] = json.dumps(run)
    assert main(["verify", str(path)]) == 1
    out = capsys.readouterr().out
    assert "does not match the audit log" in out and "class probabilities differ" in out


def test_verify_detects_tampered_roi_statistics(built, tmp_path):
    path = _copy(built, tmp_path)
    with h5py.File(path, "r+") as f:
        g = next(iter(f["evidence"].values()))
        rois = json.loads(g["rois"][()])
        rois[1]["stats"]["inside"]["mean"] = 0.5
        del g["rois"]
        g.create_dataset("rois", data=json.dumps(rois), dtype=h5py.string_dtype())
    res = verify_case(load_case(path))
    assert not res["ok"] and any("ROI 2" in d for d in res["differences"])


def test_cli_case_workflow(tmp_path, capsys):
    img = tmp_path / "q.jpg"
    shutil.copy(SAMPLE, img)
    case = str(tmp_path / "w.scanlab")
    assert main(["case", "new", case, "--title", "T", "--analyst", "Ann"]) == 0
    assert main(["case", "new", case, "--title", "T", "--analyst", "Ann"]) == 2  # never overwrites
    assert main(["case", "add", case, str(img), "--stride", "8"]) == 0
    assert main(["case", "add", case, str(tmp_path / "nope.jpg")]) == 2
    assert main(["case", "roi", "add", case, "q", "--polygon", "10,10", "10,200", "200,10",
                 "--verdict", "Consistent", "--note", "paper"]) == 0
    capsys.readouterr()
    assert main(["case", "show", case, "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    (ev,) = s["evidence"]
    assert ev["runs"][0]["parameters"]["stride"] == [8, 8]
    drawn = [r for r in ev["rois"] if not r["suggested"]]
    assert drawn[0]["verdict"] == "Consistent" and drawn[0]["reviewed"] and drawn[0]["stats"]["area"] > 0
    assert s["unreviewed_suggestions"] and s["audit"]["problems"] == []
    assert main(["case", "signoff", case, "--analyst", "Ann", "--statement", "I reviewed this."]) == 0
    c = load_case(case)
    assert c.meta["signoff"]["analyst"] == "Ann" and c.audit[-1]["action"] == "signed_off"
    assert main(["verify", case]) == 0
    assert load_case(case).audit[-1]["action"] == "signed_off"  # verify only reads
    assert main(["verify", case, "--record"]) == 0
    assert load_case(case).audit[-1]["action"] == "verified"
    assert not Path(case + ".lock").exists()


def test_sign_off_needs_a_statement():
    c = new_case("T", "A")
    with pytest.raises(Exception, match="statement"):
        sign_off(c, analyst="A", statement=" ")


def test_verdict_flip_within_tolerance_is_a_difference():
    from scanlab.services.verify import PROB_TOL, _compare_run

    old = {"classify": {"label": "a", "verdict": "attributed", "votes": {"a": 5, "b": 3}, "n_patches": 8,
                        "probabilities": {"a": 0.5, "b": 0.5}}}
    near = {"classify": {**old["classify"], "verdict": "inconclusive",
                         "probabilities": {"a": 0.5 - PROB_TOL / 2, "b": 0.5 + PROB_TOL / 2}}}
    diffs = _compare_run("run", old, near, None, None)
    assert [d for d in diffs if "verdict" in d] == ["run: verdict 'attributed' stored, 'inconclusive' on re-analysis"]
    far = {"classify": {**near["classify"], "probabilities": {"a": 0.4, "b": 0.6}}}
    diffs = _compare_run("run", old, far, None, None)
    assert any("verdict" in d for d in diffs) and any("probabilities differ" in d for d in diffs)
    relabel = {"classify": {**near["classify"], "label": "b"}}
    assert any("label" in d for d in _compare_run("run", old, relabel, None, None))


def _tamper_run(c, change) -> None:
    """Change the stored run in memory and re-log it, as a forger who rebuilt the audit chain would."""
    (e,) = c.evidence.values()
    run = e.runs[0]
    change(run)
    c.log("forger", "analysis_run", run.info, "rebuilt")


@pytest.mark.parametrize("field,value", [
    ("unknown_score", 0.0123), ("confidence", 0.5), ("verdict", "unknown"), ("label", "vscan-09"),
    ("warnings", [{"code": "x", "message": "forged"}]), ("vote_fraction", 0.1), ("reason", "forged"),
    ("n_no_evidence", 999),
])
def test_verify_recomputes_every_printed_figure(built, field, value):
    c = load_case(built[0])
    assert verify_case(c)["ok"]
    _tamper_run(c, lambda run: run.info["classify"].__setitem__(field, value))
    res = verify_case(c)
    assert not res["ok"]
    (d,) = [d for d in res["differences"] if f": {field} " in d]
    assert d.startswith("evidence ") and "stored" in d and "\n" not in d


@pytest.mark.parametrize("grid", ["evidence", "unknown_windows/score", "probs"])
def test_verify_compares_the_stored_grids(built, tmp_path, grid, capsys):
    """The window grids are not covered by the audit hash: verify re-computes them."""
    path = _copy(built, tmp_path)
    with h5py.File(path, "r+") as f:
        g = next(iter(f["evidence"].values()))["runs"]["000"]["windows"]
        data = g[grid][()]
        if grid == "evidence":
            data[:3, :3] = 1 - data[:3, :3]
        else:
            data[2, 2] += 0.25
        g[grid][...] = data
    assert main(["verify", str(path)]) == 1
    out = capsys.readouterr().out
    what = {"evidence": "no-evidence mask", "unknown_windows/score": "unknown-score grid",
            "probs": "map window probabilities"}[grid]
    assert any(line.startswith("DIFFERENT:") and what in line for line in out.splitlines())


def test_verify_leaves_the_case_byte_identical_and_record_logs(built, tmp_path, capsys):
    import hashlib
    import os

    path = _copy(built, tmp_path)
    os.utime(path, (1_000_000_000, 1_000_000_000))
    before = (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
    assert main(["verify", str(path)]) == 0
    assert (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns) == before
    n = len(load_case(path).audit)
    assert main(["verify", str(path), "--record"]) == 0
    c = load_case(path)
    assert len(c.audit) == n + 1 and c.audit[-1]["action"] == "verified" and verify_chain(c.audit) == []
    assert "recorded in the audit log" in capsys.readouterr().out


def test_embedded_copy_is_stored_and_used_when_the_file_is_gone(tmp_path):
    img = tmp_path / "q.jpg"
    shutil.copy(SAMPLE, img)
    case = str(tmp_path / "e.scanlab")
    assert main(["case", "new", case, "--title", "T", "--analyst", "A"]) == 0
    assert main(["case", "add", case, str(img), "--stride", "16", "--embed"]) == 0
    (e,) = load_case(case).evidence.values()
    assert e.embedded == SAMPLE.read_bytes()
    img.unlink()
    assert main(["report", case, "-o", str(tmp_path / "r.pdf")]) == 0  # drawn from the embedded copy
    assert main(["verify", case]) == 1  # but the referenced evidence is missing: a difference


def test_older_case_without_the_unknown_grid_still_verifies(built, tmp_path, capsys):
    path = _copy(built, tmp_path)
    with h5py.File(path, "r+") as f:
        del next(iter(f["evidence"].values()))["runs"]["000"]["windows"]["unknown_windows"]
    assert main(["verify", str(path)]) == 0
    assert "unknown-score grid is not stored (older case file)" in capsys.readouterr().out


def test_evidence_keeps_the_order_it_was_added_in(tmp_path):
    """HDF5 lists groups by name (the hash): page 2 of a PDF must not come back before page 1."""
    from scanlab.core.case.casefile import Evidence

    c = new_case("Order", "A. Analyst")
    for sha, page in (("f" * 64, 1), ("0" * 64, 2), ("8" * 64, 3)):  # hashes in no particular order
        e = Evidence(sha[:16], {"sha256": sha, "path": f"/x/doc.pdf#page={page}&image=1"})
        c.evidence[e.eid] = e
        c.log("A. Analyst", "evidence_added", e.info, f"{e.info['path']} ({e.eid})")
    path = save_case(c, tmp_path / "o.scanlab")
    back = load_case(path)
    assert [e.info["path"][-14:] for e in back.evidence.values()] == [
        "page=1&image=1", "page=2&image=1", "page=3&image=1"]


def test_no_regions_are_suggested_on_a_scan_no_known_scanner_made(built):
    """With the verdict "unknown" the map is the fit to a scanner that did not make the scan: it marks no region."""
    from scanlab.services.cases import suggest_for

    c = open_case(built[0])
    (e,) = c.evidence.values()
    attributed = suggest_for(c, e, user="A. Analyst")
    assert attributed and c.audit[-1]["detail"].endswith(f"{len(attributed)} suggested regions")
    e.runs[-1].info["classify"]["verdict"] = "unknown"  # as a scan from an unseen scanner gets it
    before = [r.id for r in e.rois if not r.suggested or r.reviewed]
    assert suggest_for(c, e, user="A. Analyst") == []
    assert [r.id for r in e.rois] == before  # reviewed and drawn regions stay
    assert "no regions suggested: the scan's unknown score is above the threshold" in c.audit[-1]["detail"]
    # the same when a verdict rule turned that "unknown" into "inconclusive" (a JPEG, a coverage gap)
    e.runs[-1].info["classify"].update(verdict="inconclusive", verdict_before_delivery_rule="unknown")
    assert suggest_for(c, e, user="A. Analyst") == []
    e.runs[-1].info["classify"].update(verdict_before_delivery_rule=None)  # inconclusive for its own reasons
    assert suggest_for(c, e, user="A. Analyst")
