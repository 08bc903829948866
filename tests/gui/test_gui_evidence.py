"""What the analyst sees of the evidence: verdict words, uncalibrated flag, attribution map, no-evidence hatch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyqtgraph as pg
import pytest
import torch
from conftest import CLASSES, write_scan
from PIL import Image

from scanlab.core.engine.network import build_model
from scanlab.core.modelfile.store import make_manifest, save_model
from scanlab.services.analysis import ATTRIBUTION

pytestmark = pytest.mark.gui


@pytest.fixture
def half_blank(tmp_path: Path) -> str:
    p = write_scan(tmp_path / "half.png", shape=(192, 256), seed=3)
    px = np.asarray(Image.open(p).convert("RGB")).copy()
    px[:, :] = np.random.default_rng(0).integers(30, 220, px.shape)
    px[:, 160:] = 255  # paper white: no evidence
    Image.fromarray(px.astype(np.uint8)).save(p)
    return str(p)


def _open(qtbot, window, path: str):
    with qtbot.waitSignal(window.analysis_settled, timeout=30_000):
        window.open_paths([path])
    return window.current_document().result


def test_verdict_in_words_uncalibrated_and_hatched_no_evidence(qtbot, window, half_blank):
    res = _open(qtbot, window, half_blank)
    panel = window.results
    assert panel.verdict_value.text() == res.verdict.in_words(res.label)
    assert "uncalibrated" in panel.confidence_value.text()  # the tiny model has no calibration
    assert "95% interval" in panel.confidence_value.text()
    assert not panel.demo_notice.isVisible()
    hatch = window.view.noev.image
    assert hatch is not None and hatch.shape[:2] == (192, 256)
    # opaque coloured stripes, translucent grey between them (the scan shows through), nothing elsewhere
    assert (hatch[:, 240:, 3] > 0).all() and (hatch[:, 240:, 3] == 255).any() and (hatch[:, :100, 3] == 0).all()
    assert np.isnan(window.view.heat.image[:, 240:]).all()  # never a reliability colour there
    assert "no evidence" in window.controls.legend.text()


def test_map_of_offers_every_class_and_the_attribution_map(qtbot, window, half_blank):
    res = _open(qtbot, window, half_blank)
    combo = window.controls.class_combo
    data = [combo.itemData(i) for i in range(combo.count())]
    assert all(c in data for c in CLASSES) and ATTRIBUTION in data
    with qtbot.waitSignal(window.class_maps.ready, timeout=10_000):
        combo.setCurrentIndex(combo.findData(ATTRIBUTION))
    img = window.view.heat.image
    assert img.ndim == 3 and img.shape[2] == 4  # class colours, not the 0..1 scale
    idx = res.class_index_map()
    assert (img[idx < 0][:, 3] == 0).all() and (img[idx >= 0][:, 3] == 255).all()
    assert all(c in window.controls.legend.text() for c in set(res.classes[k] for k in np.unique(idx[idx >= 0])))
    # under a list of classes the no-evidence entry is one short line: a wrapped last line was cut off
    assert window.controls.legend.text().endswith("hatched: no evidence")


def test_demonstration_model_shows_the_notice(qtbot, window, tmp_path, half_blank):
    torch.manual_seed(0)
    net = build_model(len(CLASSES))
    man = make_manifest(net, CLASSES, name="demo")
    man["demonstration"] = True
    path = tmp_path / "demo.safetensors"
    save_model(net, man, path)
    window.controls.set_models([("demo", str(path))], str(path))
    _open(qtbot, window, half_blank)
    window.show()
    assert window.results.demo_notice.isVisible()
    assert "simulated" in window.results.demo_notice.text()


@pytest.fixture(scope="module")
def open_set_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tiny random network with calibration and an unknown-scanner scorer fitted by the real service."""
    from scanlab.core.evidence.fit import fit_evidence_model

    torch.manual_seed(0)
    net = build_model(len(CLASSES))
    rng = np.random.default_rng(5)
    val = [(rng.integers(30, 220, (128, 128, 3)).astype(np.uint8), c) for c in range(len(CLASSES)) for _ in range(3)]
    updates, extras = fit_evidence_model(net, val, CLASSES)
    assert updates["open_set"]["method"]  # enough validation images: the scorer is fitted
    man = make_manifest(net, CLASSES, name="tiny-open-set")
    man.update(updates)
    path = tmp_path_factory.mktemp("osmodel") / "open.safetensors"
    save_model(net, man, path, extras)
    return str(path)


def _choose_map(qtbot, window, what: str) -> None:
    combo = window.controls.class_combo
    i = combo.findData(what)
    assert i >= 0, what
    if window.current_document().shown_map() is not None and combo.currentIndex() == i:
        return
    with qtbot.waitSignal(window.class_maps.ready, timeout=10_000):
        combo.setCurrentIndex(i)


def test_cursor_readout_and_colour_bar_say_what_the_map_shows(qtbot, window, half_blank, open_set_model):
    from scanlab.services.analysis import UNKNOWN

    window.controls.set_models([("open", open_set_model)], open_set_model)
    res = _open(qtbot, window, half_blank)
    assert res.unknown_grid is not None
    evidence, blank = (100, 60), (100, 230)  # noise on the left, paper white (no evidence) on the right

    def readout(pos):
        window.view.cursor_moved.emit(pos)
        return window.results.cursor_value.text()

    # the predicted class's reliability map (the default)
    # a verdict other than "attributed" is repeated on the colour bar: the map is a fit, not a name
    not_named = "" if res.verdict.verdict == "attributed" else f" (verdict: {res.verdict.short(None)})"
    assert window.view.colorbar_label == f"reliability of {res.label}{not_named}"
    assert f"reliability of {res.label} 0." in readout(evidence)
    assert readout(blank).endswith("no evidence")

    _choose_map(qtbot, window, UNKNOWN)
    score = res.unknown_map()[evidence]
    assert readout(evidence).endswith(f"unknown score {score:.3f}")
    assert "reliability" not in readout(evidence)
    # high unknown scores are the suspicious ones: the scale runs the other way, so that on
    # every map dark means "does not fit" (issue 16: bright meant suspicious on this map only)
    assert window.view.colorbar_label == "unknown score (dark = fits no known scanner)"
    assert window.view.scale_reversed
    top = window.view._cmap().map(np.array([1.0]), mode="byte")[0][:3]
    bottom = window.view._cmap().map(np.array([0.0]), mode="byte")[0][:3]
    assert int(top.astype(int).sum()) < int(bottom.astype(int).sum())  # score 1 is drawn dark
    plain = pg.colormap.get(window.view.colormap).map(np.array([0.0, 1.0]), mode="byte")[:, :3]
    assert (bottom == plain[1]).all() and (top == plain[0]).all()  # the same colours, the other way round
    assert readout(blank).endswith("no evidence")

    _choose_map(qtbot, window, ATTRIBUTION)
    best = res.classes[int(res.class_index_map()[evidence])]
    assert readout(evidence).endswith(f"best fit: {best}")
    assert "reliability" not in readout(evidence) and readout(blank).endswith("no evidence")
    assert not window.view.scale_reversed  # only the unknown-score map runs the other way
    window.grab().save(str(Path(half_blank).with_name("window.png")))
