"""One thread owns a case (issue 16 items 3 and 4): workers compute, the GUI thread changes the case.

These tests hammer adding scans, ROI edits, autosave and report export at once, then
check the audit chain in memory and on disk; every change of the window's case must
happen on the GUI thread. Adding the scan on screen records the run the analyst sees.
"""

from __future__ import annotations

import threading

import pytest

from scanlab.core.case.casefile import Case, load_case, verify_chain
from scanlab.core.case.rois import ROI

pytestmark = pytest.mark.gui


@pytest.fixture
def log_threads(monkeypatch):
    """Record (case id, thread) of every audit entry logged anywhere."""
    seen: list[tuple[int, threading.Thread]] = []
    original = Case.log

    def log(self, *a, **kw):
        seen.append((id(self), threading.current_thread()))
        return original(self, *a, **kw)

    monkeypatch.setattr(Case, "log", log)
    return seen


def test_adding_roi_edits_autosave_and_export_at_once_keep_one_chain(qtbot, opened, case_path, tmp_path,
                                                                     make_scan, log_threads):
    ctl, layer = opened.cases, opened.cases.layer
    second = make_scan(tmp_path / "second.png", (224, 256), seed=3)
    opened.open_paths([str(second)])
    opened.scan_list.setCurrentRow(0)
    qtbot.waitUntil(lambda: ctl.layer.enabled, timeout=10_000)
    jobs = []
    for i in range(4):
        for row in (0, 1):
            opened.scan_list.setCurrentRow(row)
            ctl.add_current_scan()  # a job on the runner's thread
        opened.scan_list.setCurrentRow(0)
        qtbot.waitUntil(lambda: ctl.layer.enabled, timeout=10_000)
        r = layer.add(ROI.rect(0, 10 + i, 10, 60 + i, 80))
        layer.move_points(r.id, [(20 + i, 15), (70 + i, 90)])
        jobs.append(ctl.export_to(str(tmp_path / f"r{i}.pdf")))
        layer.remove(r.id)
        layer.undo_stack.undo()  # the deleted ROI comes back under its own id
        assert layer.roi(r.id) is not None
        ctl._on_autosave_timeout()  # what the one-minute timer does, while the jobs run
    qtbot.waitUntil(lambda: not ctl._jobs and not ctl.review.busy(), timeout=120_000)
    case = ctl.case
    assert verify_chain(case.audit) == []
    mine = [t for cid, t in log_threads if cid == id(case)]
    assert mine and all(t is threading.main_thread() for t in mine), "the case was changed off the GUI thread"
    actions = [x["action"] for x in case.audit]
    assert actions.count("report_exported") == 4
    assert actions.count("analysis_run") >= 1 + 8
    assert all((tmp_path / f"r{i}.pdf").is_file() for i in range(4))
    assert ctl.save()
    saved = load_case(case_path)
    assert verify_chain(saved.audit) == [] and [x["hash"] for x in saved.audit] == [x["hash"] for x in case.audit]
    assert len(saved.evidence) == 2
    for e in saved.evidence.values():  # one id allocator: no id twice
        ids = [r.id for r in e.rois]
        assert len(ids) == len(set(ids))


def test_add_current_scan_records_the_run_on_screen(qtbot, opened, monkeypatch, log_threads):
    import scanlab.services.cases as cases

    calls = []
    real = cases.run_analysis

    def counting(*a, **kw):
        calls.append(a)
        return real(*a, **kw)

    monkeypatch.setattr(cases, "run_analysis", counting)
    ctl = opened.cases
    doc = opened.current_document()
    assert doc.result is not None
    e = ctl.current_evidence()
    n_runs = len(e.runs)
    ctl.add_current_scan()
    qtbot.waitUntil(lambda: not ctl._jobs, timeout=60_000)
    assert calls == []  # the window's result was recorded, not computed again
    e = ctl.current_evidence()
    assert len(e.runs) == n_runs + 1
    run = e.runs[-1]
    assert run.info["timings"]["compute_s"] == doc.result.compute_s
    assert run.info["classify"]["label"] == doc.result.label
    assert run.info["parameters"]["stride"] == [16, 16]


def test_add_current_scan_analyses_again_when_the_settings_differ(qtbot, opened, monkeypatch):
    import scanlab.services.cases as cases

    calls = []
    real = cases.run_analysis

    def counting(req, **kw):
        calls.append(req)
        return real(req, **kw)

    monkeypatch.setattr(cases, "run_analysis", counting)
    opened.scheduler.paused = True  # the window does not re-analyse by itself
    opened.controls.stride_spin.setValue(32)
    ctl = opened.cases
    ctl.add_current_scan()
    qtbot.waitUntil(lambda: not ctl._jobs, timeout=60_000)
    assert [r.stride for r in calls] == [(32, 32)]
    assert ctl.current_evidence().runs[-1].info["parameters"]["stride"] == [32, 32]


def test_roi_commands_share_one_id_allocator(tmp_path, tiny_model, make_scan):
    from scanlab.core.case.casefile import new_case
    from scanlab.services.cases import add_evidence
    from scanlab.services.rois import RoiCommands, add_roi

    c = new_case("Ids", "A")
    e = add_evidence(c, make_scan(tmp_path / "s.png", (192, 192)), user="A", model=tiny_model,
                     stride=(16, 16), suggest=False)
    cmd = RoiCommands(c, e.eid, "A")
    a = cmd.add(ROI.rect(0, 0, 0, 20, 20))
    b = add_roi(c, e.eid, ROI.rect(0, 5, 5, 30, 30), user="A")  # the CLI's path
    assert (a.id, b.id) == (1, 2)
    cmd.remove(a.id)
    again = cmd.add(a)  # an undone delete keeps its id while it is free
    assert again.id == a.id
    clash = cmd.add(ROI.rect(b.id, 1, 1, 9, 9))  # a taken id is never reused
    assert clash.id == 3
    moved = cmd.move(b.id, [(1, 1), (40, 40)])
    assert moved.stats == {} and [x["action"] for x in c.audit][-1] == "roi_changed"
    assert verify_chain(c.audit) == []


def test_a_reopened_case_says_when_the_map_on_screen_is_not_the_stored_run(qtbot, window, wait_settled, case_path):
    window.state.update(stride=32)  # the window's settings differ from the stored run (stride 16)
    assert window.cases.open_case_at(str(case_path))
    wait_settled(window)
    qtbot.waitUntil(lambda: window.cases.layer.enabled, timeout=10_000)
    text = window.cases.panel.case_label.text()
    assert "stride 32" in text and "stride 16" in text and "stored run" in text
    window.state.update(stride=16)
    wait_settled(window)
    assert "stored run" not in window.cases.panel.case_label.text()


def test_who_is_working_is_asked_once_per_session_and_logged(qtbot, window, case_path, monkeypatch):
    from PySide6.QtWidgets import QFileDialog, QInputDialog

    asked = []
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **kw: (str(case_path), ""))

    def get_text(parent, title, label, *a, **kw):
        asked.append(label)
        return "B. Examiner", True

    monkeypatch.setattr(QInputDialog, "getText", get_text)
    ctl = window.cases
    ctl.open_case_dialog()
    qtbot.waitUntil(lambda: ctl.layer.enabled, timeout=10_000)
    ctl.layer.add(ROI.rect(0, 10, 10, 40, 40))
    assert ctl.case.audit[-1]["user"] == "B. Examiner"  # not the OS user
    ctl.close_case()
    ctl.open_case_dialog()
    assert len(asked) == 1 and ctl.case is not None
