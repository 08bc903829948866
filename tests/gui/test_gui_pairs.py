"""The copy-move layer in the app: offered by the registry in "Map of", run on the task runner,
its pairs drawn as linked outlines (hover one end, both light up), stored in an open case."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QPoint
from PySide6.QtTest import QTest

from scanlab.core.synth.forge import forge_one
from scanlab.services.layer_runs import layer_key, model_free_layers

pytestmark = pytest.mark.gui


@pytest.fixture
def forged(tmp_path: Path) -> str:
    """A lossless scan with a large block copied inside it (tests/test_copymove.py::moved_block)."""
    p = tmp_path / "moved.png"
    p.write_bytes(forge_one(0, "copymove", size=512, host_index=3).data)
    return str(p)


def _choose(win, key: str) -> None:
    combo = win.controls.class_combo
    idx = combo.findData(key)
    assert idx >= 0, [combo.itemText(i) for i in range(combo.count())]
    combo.setCurrentIndex(idx)


def _point_at(win, item) -> None:
    """Move the pointer (a real mouse move on the view) onto the middle of ``item``."""
    QTest.mouseMove(win.view.viewport(), win.view.mapFromScene(item.mapToScene(item.path().boundingRect().center())))


def test_map_of_offers_registered_layers_with_caveat(qtbot, window, wait_settled, forged):
    window.open_paths([forged])
    wait_settled(window)
    combo = window.controls.class_combo
    for layer in model_free_layers():  # every model-free layer of the registry, none named in the GUI
        i = combo.findData(layer_key(layer.name))
        assert i >= 0
        if layer.experimental:
            assert "experimental" in combo.itemText(i) and layer.experimental in combo.itemData(i, 3)


def test_copymove_runs_on_runner_and_draws_linked_pairs(qtbot, window, wait_settled, forged):
    window.open_paths([forged])
    wait_settled(window)
    # on the runner, with its progress in the status bar and Cancel offered, as the reliability map
    with qtbot.waitSignals([window.display.layers.ready, window.runner.progressed], timeout=60_000):
        _choose(window, layer_key("copymove"))
        assert window.runner.is_busy() and window.status.cancel_button.isVisibleTo(window)
        assert window.status.progress.isVisibleTo(window)
    doc = window.current_document()
    run = doc.layers["copymove"]
    assert run.pairs and window.view.reliability is run.score  # the score map is the heatmap
    assert "copy-move" in window.view.colorbar_label and "experimental" in window.view.colorbar_label
    assert any("experimental" in window.messages.item(i).text() for i in range(window.messages.count()))
    pl = window.display.pairs
    assert len(pl.pairs) == len(run.pairs)
    src, tgt = pl.ends(1)
    # two outlines, one at each end of the pair, in the pair's colour
    (sr, sc), (tr, tc) = pl.centre(1, "source"), pl.centre(1, "target")
    y, x, h, w = run.pairs[0]["source_box"]
    assert y <= sr <= y + h and x <= sc <= x + w
    y, x, h, w = run.pairs[0]["target_box"]
    assert y <= tr <= y + h and x <= tc <= x + w
    assert src.pen().color() == tgt.pen().color()
    p0 = run.pairs[0]  # the figures the report's pair table prints, in its formats
    assert f"q {p0['q']:.4f} against the null's lowest {p0['q_null']:.4f}" in src.toolTip()
    assert f"p = {p0['p_value']:.3g}" in src.toolTip()
    assert not pl.is_lit(src) and not pl.is_lit(tgt)
    QTest.mouseMove(window.view.viewport(), QPoint(2, 2))  # off the page
    with qtbot.waitSignal(pl.hovered) as hovered:
        _point_at(window, tgt)
    assert hovered.args == [1]
    assert pl.is_lit(src) and pl.is_lit(tgt)  # hovering the target lights up its source too
    with qtbot.waitSignal(pl.hovered) as hovered:
        QTest.mouseMove(window.view.viewport(), QPoint(2, 2))
    assert hovered.args == [None] and not pl.is_lit(src) and not pl.is_lit(tgt)
    with qtbot.waitSignal(pl.hovered) as hovered:
        _point_at(window, src)  # and the other way round
    assert hovered.args == [1] and pl.is_lit(tgt)
    # back to the reliability map: no pair outlines
    window.controls.class_combo.setCurrentIndex(0)
    assert pl.pairs == [] and window.view.reliability is not run.score
    wait_settled(window)


def test_copymove_cancel(qtbot, window, wait_settled, forged):
    window.open_paths([forged])
    wait_settled(window)
    with qtbot.waitSignal(window.runner.cancelled, timeout=30_000):
        _choose(window, layer_key("copymove"))
        window.cancel_analysis()
    assert "copymove" not in window.current_document().layers
    qtbot.waitUntil(lambda: not window.runner.is_busy(), timeout=30_000)


def test_pairs_become_suggested_rois_in_open_case(qtbot, window, wait_settled, forged, tmp_path, tiny_model):
    from scanlab.core.case.casefile import new_case, save_case
    from scanlab.services.cases import add_evidence

    c = new_case("Moved", "A")
    add_evidence(c, forged, user="A", model=tiny_model, stride=(16, 16))
    assert window.cases.open_case_at(str(save_case(c, tmp_path / "c.scanlab")))
    wait_settled(window)
    with qtbot.waitSignal(window.display.layers.ready, timeout=60_000):
        _choose(window, layer_key("copymove"))
    e = window.cases.current_evidence()
    ends = [r for r in e.rois if r.stats.get("layer") == "copymove"]
    assert len(ends) == 2 * len(window.current_document().layers["copymove"].pairs) > 0
    assert all(r.suggested and np.isfinite(r.stats["copymove"]["correlation"]) for r in ends)
    assert window.cases.case.dirty
    # the run's record, as verify re-checks it: every pair and the digest of the map on screen
    from scanlab.services.layer_records import map_digest, record_id

    run = window.current_document().layers["copymove"]
    (rec,) = e.layer_runs
    assert rec["map"] == map_digest(run.score) and len(rec["pairs"]) == len(run.pairs)
    assert all(r.stats["copymove"]["run"] == record_id(rec) for r in ends)
    # shown again: stored once per run, not twice
    window.controls.class_combo.setCurrentIndex(0)
    _choose(window, layer_key("copymove"))
    assert len([r for r in window.cases.current_evidence().rois if r.stats.get("layer")]) == len(ends)


def test_pairs_stored_when_the_scan_is_added_to_the_case_later(qtbot, window, wait_settled, forged, tmp_path):
    window.open_paths([forged])
    wait_settled(window)
    with qtbot.waitSignal(window.display.layers.ready, timeout=60_000):
        _choose(window, layer_key("copymove"))
    window.cases.new_case_at(str(tmp_path / "n.scanlab"), "Later", "A")
    assert window.cases.current_evidence() is None
    window.cases.add_current_scan()  # a job on the runner; the pairs follow once the evidence is stored

    def stored() -> None:
        e = window.cases.current_evidence()
        assert e is not None and any(r.stats.get("layer") == "copymove" for r in e.rois)

    qtbot.waitUntil(stored, timeout=60_000)
    e = window.cases.current_evidence()
    n = len(window.current_document().layers["copymove"].pairs)
    assert sum(1 for r in e.rois if r.stats.get("layer") == "copymove") == 2 * n
    table = window.cases.panel.table  # the Review dock names the pair and its end
    texts = [table.item(i, 1).text() for i in range(table.rowCount())]
    assert "pair 1 (source)" in texts and "pair 1 (target)" in texts
