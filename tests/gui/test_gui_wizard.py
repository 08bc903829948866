"""Training wizard: from the first page to a saved model the main window lists; Models dialog."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

sys.path.insert(0, str(Path(__file__).parents[1]))
from scanner_tree import make_tree  # noqa: E402

from scanlab.gui.wizard.pages_result import precision_recall  # noqa: E402
from scanlab.gui.wizard.pages_train import CHAIN_P  # noqa: E402
from scanlab.services.library import list_library  # noqa: E402
from scanlab.services.paths import user_models_dir  # noqa: E402

pytestmark = pytest.mark.gui


@pytest.fixture
def collection(tmp_path):
    return make_tree(tmp_path / "refs", n_classes=3, n_images=5, size=128, seed=4)


def _combo_texts(win) -> list[str]:
    c = win.controls.model_combo
    return [c.itemText(i) for i in range(c.count())]


def test_screenshots_drive_every_page_to_a_saved_model(qtbot, collection, tmp_path, capsys, gui_settings, tiny_model):
    from scanlab.cli import main
    from scanlab.gui.main_window import MainWindow

    shots = tmp_path / "shots"
    rc = main(["wizard", str(collection), "--screenshots", str(shots), "--epochs", "1", "--base", "none",
               "--name", "refs lab"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    names = [Path(p).name for p in out["screenshots"]]
    assert names == ["01-collection.png", "02-split.png", "03-model.png", "04-train.png", "05-evaluate.png",
                     "06-save.png"]
    for p in out["screenshots"]:
        assert Path(p).stat().st_size > 10_000  # a real page, not an empty grab
    saved = Path(out["model"])
    assert saved.parent == user_models_dir() and saved.name == "refs-lab.safetensors"
    lib = list_library()
    assert [m["name"] for m in lib] == ["refs lab"]
    man = lib[0]["manifest"]
    assert man["classes"] == ["scanner_0", "scanner_1", "scanner_2"] and man["training"]["epochs_run"] == 1
    # the wizard's model measured its own verdicts on re-saved test scans, like `scanlab train`
    assert man["delivery_chain_measured"]["benchmark"] == "scanlab train (test split)"
    assert man["delivery_chain_measured"]["known_scans"] == len(man["training"]["data"]["files"]["test"])
    win = MainWindow(settings=gui_settings, model=tiny_model)
    qtbot.addWidget(win)
    assert "refs lab (user)" in _combo_texts(win)
    win.close()


def test_wizard_from_main_window_to_saved_model(qtbot, window, collection, tmp_path):
    wiz = window.models_menu.open_wizard(str(collection))
    qtbot.addWidget(wiz)
    col = wiz.page_named("collection")
    qtbot.waitUntil(lambda: col.isComplete(), timeout=30_000)
    assert col.table.rowCount() == 3 and col.table.item(0, 1).text() == "5"
    wiz.next()
    split = wiz.page_named("split")
    assert split.isComplete()
    assert [split.table.item(0, k).text() for k in (1, 2, 3)] == ["2", "1", "2"]
    split.spins[1].setValue(0)  # val 0: not allowed, the page says why
    assert not split.isComplete() and "val" in split.error.text()
    split.spins[1].setValue(1)
    wiz.next()
    model = wiz.page_named("model")
    model.base.setCurrentIndex(model.base.findData("none"))
    model.advanced.setChecked(True)
    model.epochs.setValue(2)
    model.chain.setChecked(True)  # questioned scans arrive re-saved
    wiz.next()
    train = wiz.page_named("train")
    assert not train.isComplete()
    qtbot.mouseClick(train.start_button, __import__("PySide6.QtCore", fromlist=["Qt"]).Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: train.isComplete(), timeout=120_000)
    assert len(train.history) == 2
    xs, ys = train.curves["val_loss"].getData()
    assert list(xs) == [1, 2] and len(ys) == 2
    wiz.next()
    ev = wiz.page_named("evaluate")
    assert "per-image accuracy" in ev.summary.text() and "test split" in ev.summary.text()
    # one validation scan per class: below the minimum of 3, so no calibration, and it says why
    assert "not calibrated" in ev.calib.text() and "at least 3" in ev.calib.text()
    assert ev.pr.rowCount() == 3
    wiz.next()
    save = wiz.page_named("save")
    save.name.setText("wizard model")
    save.notes.setPlainText("reference scans of the three lab scanners")
    with qtbot.waitSignal(wiz.model_saved, timeout=10_000):
        assert save.save()
    assert "wizard model (user)" in _combo_texts(window)
    # the same name again: asks; "no" keeps the first model
    asked = []
    save.confirm_overwrite = lambda p: asked.append(p) or False
    assert not save.save() and asked and "choose another name" in save.error.text()
    save.confirm_overwrite = lambda p: True
    assert save.save()
    lib = list_library()
    assert len(lib) == 1 and lib[0]["manifest"]["notes"].startswith("reference scans")
    assert lib[0]["manifest"]["training"]["recipe"]["delivery_chain"] == CHAIN_P
    wiz.close()


def _gated_train_page(qtbot, collection, monkeypatch, hook: str, stop, epochs: int):
    """A wizard on its Train page, started; the worker waits inside callback ``hook`` (on_epoch or on_stage)
    whenever ``stop(req, value)`` is true, until the returned gate is set (the test presses Cancel first)."""
    import threading

    from scanlab.gui.wizard import pages_train
    from scanlab.gui.wizard.wizard import TrainingWizard

    gate = threading.Event()
    real = pages_train.run_training

    def gated(req, **kw):
        inner = kw[hook]

        def hold(value):
            inner(value)
            if stop(req, value):
                gate.wait(30)

        kw[hook] = hold
        return real(req, **kw)

    monkeypatch.setattr(pages_train, "run_training", gated)
    wiz = TrainingWizard(str(collection))
    qtbot.addWidget(wiz)
    wiz.show()
    qtbot.waitUntil(lambda: wiz.page_named("collection").isComplete(), timeout=30_000)
    wiz.next()
    wiz.next()
    model = wiz.page_named("model")
    model.base.setCurrentIndex(model.base.findData("none"))
    model.epochs.setValue(epochs)
    wiz.next()
    train = wiz.page_named("train")
    train.start()
    return wiz, train, gate


def test_train_cancel_then_resume(qtbot, collection, monkeypatch):
    # the worker waits after epoch 1 until the test has pressed Cancel
    wiz, train, gate = _gated_train_page(qtbot, collection, monkeypatch, "on_epoch",
                                         lambda req, rec: rec["epoch"] == 1 and not req.resume, epochs=3)
    qtbot.waitUntil(lambda: len(train.history) >= 1 or not train.is_running(), timeout=60_000)
    assert train.history, train.info.text()
    train.cancel()
    gate.set()
    qtbot.waitUntil(lambda: not train.is_running(), timeout=60_000)
    assert not train.isComplete() and train.resume_button.isEnabled() and "Cancelled" in train.info.text()
    train.resume()
    qtbot.waitUntil(lambda: train.isComplete(), timeout=120_000)
    assert wiz.state.manifest["training"]["resumed_from_epoch"] == 1
    assert [h["epoch"] for h in train.history] == [1, 2, 3]
    wiz.close()


def test_cancel_during_the_delivery_check_keeps_the_trained_model(qtbot, collection, monkeypatch):
    from scanlab.core.modelfile.store import load_model

    # the worker waits when the delivery check starts until the test has pressed Cancel
    wiz, train, gate = _gated_train_page(qtbot, collection, monkeypatch, "on_stage",
                                         lambda req, text: text.startswith("delivery check:"), epochs=1)
    qtbot.waitUntil(lambda: "Cancel skips this check" in train.info.text() or not train.is_running(),
                    timeout=120_000)
    assert train.is_running(), train.info.text()
    train.cancel()
    gate.set()
    qtbot.waitUntil(lambda: not train.is_running(), timeout=60_000)
    assert train.isComplete(), train.info.text()  # the analyst goes on to Evaluate and Save
    assert "delivery check was cancelled" in train.info.text()
    man = wiz.state.manifest
    assert man["training"]["delivery_check"] == "interrupted" and "delivery_chain_measured" not in man
    assert load_model(wiz.state.trained_path).manifest["weights_sha256"] == man["weights_sha256"]
    wiz.next()
    ev = wiz.page_named("evaluate")
    assert "not measured (the check was cancelled)" in ev.delivery_caption.text()
    assert ev.delivery.isHidden()
    wiz.close()


def test_evaluate_page_shows_the_delivery_chain_rows(qtbot):
    from scanlab.gui.wizard.pages_result import EvaluatePage
    from scanlab.gui.wizard.state import WizardState

    man = _evaluate_manifest({"calibrated": False, "reason": "few"})
    rows = {"as scanned": {"kind": "none", "parameter": None, "known_right": 1.0, "known_wrong": 0.0,
                           "known_unknown_or_inconclusive": 0.0, "unseen_rejected": None},
            "jpeg-q75": {"kind": "jpeg", "parameter": 75, "known_right": 0.3333, "known_wrong": 0.4444,
                         "known_unknown_or_inconclusive": 0.2222, "unseen_rejected": None},
            "jpeg-q90": {"kind": "jpeg", "parameter": 90, "known_right": 0.5, "known_wrong": 0.25,
                         "known_unknown_or_inconclusive": 0.25, "unseen_rejected": None}}
    man["delivery_chain_measured"] = {"known_scans": 9, "unseen_scans": 0, "rows": rows}
    page = EvaluatePage(WizardState(manifest=man))
    qtbot.addWidget(page)
    page.initializePage()
    assert "(9; unseen: not measured)" in page.delivery_caption.text()
    t = page.delivery
    assert not t.isHidden() and t.rowCount() == 3
    # as the analyst reads them: as scanned, then JPEG from the mildest quality down (the file stores them by name)
    assert [t.verticalHeaderItem(r).text() for r in range(3)] == ["as scanned", "jpeg-q90", "jpeg-q75"]
    assert [t.item(2, c).text() for c in range(4)] == ["33%", "44%", "22%", "n/a"]


def test_collection_problems_are_listed_and_excluded(qtbot, tmp_path):
    from scanlab.gui.wizard.wizard import TrainingWizard

    root = make_tree(tmp_path / "bad", n_classes=2, n_images=4, size=96, seed=2)
    (root / "scanner_0" / "broken.png").write_bytes(b"not an image at all")
    shutil.copy(root / "scanner_0" / "img_00.png", root / "scanner_1" / "copied.png")
    wiz = TrainingWizard(str(root))
    qtbot.addWidget(wiz)
    col = wiz.page_named("collection")
    qtbot.waitUntil(lambda: wiz.state.report is not None, timeout=30_000)
    text = "\n".join(col.problems.item(i).text() for i in range(col.problems.count()))
    assert "Unreadable (excluded)" in text and "broken.png" in text
    assert "Label conflict (excluded)" in text and "copied.png" in text and "img_00.png" in text
    assert "only 3 images" in text
    assert col.isComplete()  # the rest can be trained on
    assert col.table.item(0, 1).text() == "3" and col.table.item(1, 1).text() == "4"
    # one class only: a clear error, the page does not complete
    one = make_tree(tmp_path / "one", n_classes=1, n_images=4, size=96)
    col.folder_edit.setText(str(one))
    col.inspect()
    qtbot.waitUntil(lambda: wiz.state.report is not None, timeout=30_000)
    assert not col.isComplete() and "at least 2 scanners" in col.problems.item(0).text()
    col.folder_edit.setText(str(tmp_path / "missing"))
    col.inspect()
    qtbot.waitUntil(lambda: "Cannot use this folder" in col.status.text(), timeout=30_000)
    assert "does not exist" in col.status.text() and not col.isComplete()
    wiz.close()


def test_unwritable_library_gives_a_clear_message(qtbot, tmp_path, monkeypatch, random_model):
    from scanlab.gui.wizard.pages_result import SavePage
    from scanlab.gui.wizard.state import WizardState

    data = tmp_path / "userdata"
    data.mkdir(parents=True, exist_ok=True)
    (data / "models").write_text("a file where the library folder should be")
    page = SavePage(WizardState(trained_path=str(random_model)))
    qtbot.addWidget(page)
    page.name.setText("x")
    assert not page.save()
    assert "model library folder cannot be created" in page.error.text()


def test_models_dialog_rename_and_delete(qtbot, window, random_model):
    from scanlab.services.library import save_to_library

    p = save_to_library(random_model, "first")
    dlg = window.models_menu.open_library()
    qtbot.addWidget(dlg)
    assert dlg.list.count() == 1 and "Model card: first" in dlg.card.toPlainText()
    dlg.ask_name = lambda cur: "renamed one"
    dlg.rename_button.click()
    assert [m["name"] for m in list_library()] == ["renamed one"] and not p.exists()
    assert "renamed one (user)" in _combo_texts(window)
    dlg.confirm_delete = lambda name: False
    dlg.delete_button.click()
    assert len(list_library()) == 1  # declined: still there
    dlg.confirm_delete = lambda name: True
    dlg.delete_button.click()
    assert list_library() == [] and dlg.list.count() == 0
    assert not any("renamed one" in t for t in _combo_texts(window))


def _misclassified_manifest(root) -> dict:
    cm = [[1, 1], [0, 2]]
    return {"name": "lab refs", "classes": ["a", "b"], "training": {"data": {"root": str(root)}},
            "metrics": {"test": {"n_images": 4, "n_patches": 40, "per_image_accuracy": 0.75,
                                 "per_patch_accuracy": 0.7, "confusion_per_image": cm, "confusion_per_patch": cm,
                                 "misclassified": [{"path": "b/x.png", "true": "a", "predicted": "b"}]}},
            "calibration": {"calibrated": True, "method": "temperature", "temperature": 1.3, "ece_before": 0.08,
                            "ece_after": 0.01, "fitted_on": "val", "n_images": 10}}


def test_misclassified_scan_opens_with_the_evaluated_model_and_the_wizard_stays_in_front(
        qtbot, window, make_scan, tmp_path, random_model, tiny_model, wait_settled):
    from PySide6.QtWidgets import QApplication

    scan = make_scan(tmp_path / "data" / "b" / "x.png")
    trained = tmp_path / "work" / "last-run.safetensors"  # the wizard's work file
    trained.parent.mkdir()
    shutil.copyfile(random_model, trained)
    wiz = window.models_menu.open_wizard()
    qtbot.addWidget(wiz)
    wiz.state.manifest = _misclassified_manifest(tmp_path / "data")
    wiz.state.trained_path = str(trained)
    page = wiz.page_named("evaluate")
    page.initializePage()
    assert "ECE 0.080 before, 0.010 after" in page.calib.text()
    assert "Unknown-scanner threshold:</b> not available" in page.calib.text()
    window.activateWindow()  # the main window has the focus before the click
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window, timeout=5_000)
    qtbot.mouseClick(page.wrong.viewport(), Qt.MouseButton.LeftButton,
                     pos=page.wrong.visualItemRect(page.wrong.item(0)).center())
    assert [d.path for d in window.documents] == [str(scan)]
    # analysed with a content-named copy of the evaluated model, not the shipped/previous one
    spec = window.state.model
    assert spec != tiny_model and Path(spec).parent == trained.parent and Path(spec).name.startswith("wizard-lab-refs-")
    assert Path(spec).read_bytes() == trained.read_bytes()
    assert window.controls.model_combo.currentText() == Path(spec).stem + " (file)"
    said = window.messages.item(window.messages.count() - 1).text()
    assert "x.png: analysed with the model the wizard evaluated" in said and spec in said
    wait_settled(window)
    assert window.documents[0].result.model.path == spec
    # the wizard is still shown and in front, so the analyst can go on clicking
    assert wiz.isVisible() and QApplication.activeWindow() is wiz
    # a later training run (new weights in the same work file) gets its own copy: no stale cached result
    from scanlab.services.library import evaluation_copy

    trained.write_bytes(trained.read_bytes() + b" ")
    assert str(evaluation_copy(trained, "lab refs")) != spec
    wiz.close()


def test_misclassified_scan_without_a_trained_file_says_which_model(qtbot, window, make_scan, tmp_path, tiny_model):
    from scanlab.gui.wizard.pages_result import EvaluatePage
    from scanlab.gui.wizard.state import WizardState

    scan = make_scan(tmp_path / "data" / "b" / "x.png")
    page = EvaluatePage(WizardState(manifest=_misclassified_manifest(tmp_path / "data")))
    qtbot.addWidget(page)
    page.open_scan_requested.connect(window.models_menu._on_wizard_open_scan_requested)
    page.initializePage()
    page._on_wrong_item_activated(page.wrong.item(0))
    assert [d.path for d in window.documents] == [str(scan)] and window.state.model == tiny_model
    assert "holds no trained model file" in window.messages.item(window.messages.count() - 1).text()


def test_split_page_says_what_the_validation_count_means(qtbot, collection, tmp_path):
    from scanlab.core.evidence.fit import MIN_VAL_IMAGES_PER_CLASS
    from scanlab.gui.wizard.wizard import TrainingWizard

    wiz = TrainingWizard(str(collection))
    qtbot.addWidget(wiz)
    wiz.resize(1000, 720)
    wiz.show()
    qtbot.waitUntil(lambda: wiz.page_named("collection").isComplete(), timeout=30_000)
    wiz.next()
    split = wiz.page_named("split")
    assert [split.table.item(0, k).text() for k in (1, 2, 3)] == ["2", "1", "2"]
    note = split.val_note.text()
    assert "only 1 image per scanner" in note and "scanner_0 (1), scanner_1 (1), scanner_2 (1)" in note
    assert f"at least {MIN_VAL_IMAGES_PER_CLASS} per scanner" in note and "will not be calibrated" in note
    assert "unknown-scanner threshold is still set" in note and "outlier designs held out" in note
    split.grab().save(str(tmp_path / "split.png"))
    # enough validation images: calibration is fitted, the threshold uses validation image scores
    split.spins[0].setValue(1)
    split.spins[1].setValue(3)
    split.spins[2].setValue(1)
    assert [split.table.item(0, k).text() for k in (1, 2, 3)] == ["1", "3", "1"]
    note = split.val_note.text()
    assert "will be calibrated" in note and "cross-fitted scores" in note
    assert "only" not in note
    split.spins[1].setValue(0)  # no validation at all: the split error, no note
    assert split.val_note.text() == "" and split.error.text()
    wiz.close()


def _evaluate_manifest(calibration: dict) -> dict:
    cm = [[3, 0], [1, 2]]
    return {"classes": ["a", "b"], "training": {"data": {"root": "/nonexistent"}},
            "metrics": {"test": {"n_images": 6, "n_patches": 60, "per_image_accuracy": 5 / 6,
                                 "per_patch_accuracy": 0.8, "confusion_per_image": cm, "confusion_per_patch": cm,
                                 "misclassified": []}},
            "calibration": calibration,
            "open_set": {"method": "knn-features", "fitted_on": "val", "thresholds": {"unknown": 0.87}}}


def test_evaluate_page_draws_the_reliability_diagram_from_the_stored_bins(qtbot, tmp_path):
    import numpy as np

    from scanlab.core.engine.reliability import apply_temperature
    from scanlab.core.evidence import calibration as cal
    from scanlab.gui.wizard.pages_result import EvaluatePage
    from scanlab.gui.wizard.state import WizardState

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 2000)
    logits = rng.normal(0, 1, (2000, 2))
    logits[np.arange(2000), labels] += 1.5
    probs = np.exp(3 * logits) / np.exp(3 * logits).sum(1, keepdims=True)  # over-confident
    t = cal.fit_temperature(probs, labels)
    after = apply_temperature(probs, t)
    block = {"calibrated": True, "method": "temperature", "temperature": round(t, 4), "fitted_on": "val",
             "n_images": 9, "ece_before": cal.ece(probs, labels), "ece_after": cal.ece(after, labels),
             "bins": cal.bins_block(cal.reliability_bins(probs, labels), cal.reliability_bins(after, labels))}
    page = EvaluatePage(WizardState(manifest=_evaluate_manifest(block)))
    qtbot.addWidget(page)
    page.resize(1100, 700)
    page.show()
    page.initializePage()
    diag = page.reliability
    assert diag.available
    legend = [lab.text for _, lab in diag.legend.items]
    assert f"before (raw): ECE {block['ece_before']:.3f}" in legend
    assert any(t.startswith("after, T ") and f"ECE {block['ece_after']:.3f}" in t for t in legend)
    assert "ideal" in legend
    # one bar per non-empty bin, at the accuracy stored for it
    stored = block["bins"]["after"]
    heights = [a for a, n in zip(stored["accuracy"], stored["count"], strict=True) if n]
    assert np.allclose(diag.bars.opts["height"], heights)
    assert "Unknown-scanner threshold</b> (knn-features" in page.calib.text() and "0.87" in page.calib.text()
    page.grab().save(str(tmp_path / "evaluate.png"))
    assert (tmp_path / "evaluate.png").stat().st_size > 10_000


def test_evaluate_page_shows_the_measured_rejection_rates():
    from scanlab.gui.wizard.pages_result import calibration_text, rejection_text

    osd = {"method": "gauss-image", "fitted_on": "train (cross-fitted) + val + held-out outlier designs",
           "thresholds": {"unknown": 0.75}, "threshold_rule": "the larger of ...",
           "threshold_samples": {"n_crossfit_images": 18, "n_val_images": 3, "n_outlier_designs": 80,
                                 "outlier_rejected_at_threshold": 0.8375, "known_rejected_at_threshold": 0.0476},
           "negatives": {"n_images": 2, "rejected": 0.5}}
    line = rejection_text(osd)
    assert "84% of 80 held-out virtual outlier designs rejected" in line
    assert "50% of your 2 held-out negative scans rejected" in line
    assert "5% of 21 of your own scanners' images rejected" in line
    man = _evaluate_manifest({"calibrated": False, "reason": "few"})
    man["open_set"] = osd
    assert "Measured at this threshold:</b> 84% of 80" in calibration_text(man)
    assert rejection_text({"method": "knn-features", "thresholds": {"unknown": 0.8}}) is None  # nothing measured


def test_evaluate_page_says_the_diagram_is_not_available_for_older_models(qtbot):
    from scanlab.gui.wizard.pages_result import EvaluatePage
    from scanlab.gui.wizard.state import WizardState

    old = {"calibrated": True, "method": "temperature", "temperature": 1.3, "ece_before": 0.08,
           "ece_after": 0.01, "fitted_on": "val", "n_images": 10}  # saved before bins were recorded
    page = EvaluatePage(WizardState(manifest=_evaluate_manifest(old)))
    qtbot.addWidget(page)
    page.initializePage()
    assert not page.reliability.available
    assert "Reliability diagram: not available for this model" in page.calib.text()
    assert "not available" in page.reliability.message.textItem.toPlainText()
    assert "ECE 0.080 before, 0.010 after" in page.calib.text()


def test_precision_recall():
    prec, rec = precision_recall([[3, 1], [0, 4]])
    assert prec.tolist() == [1.0, 0.8] and rec.tolist() == [0.75, 1.0]


def test_closing_main_window_stops_the_wizard_thread(qtbot, window, collection):
    wiz = window.models_menu.open_wizard(str(collection))
    qtbot.waitUntil(lambda: wiz.page_named("collection").isComplete(), timeout=30_000)
    assert wiz.runner._thread.isRunning()
    window.close()
    assert not wiz.runner._thread.isRunning()


def test_evaluate_page_names_the_scanner_whose_references_stop_short(qtbot):
    from scanlab.gui.wizard.pages_result import EvaluatePage
    from scanlab.gui.wizard.state import WizardState

    man = _evaluate_manifest({"calibrated": False, "reason": "few"})
    man["training_input"] = {"reference_coverage": {"ranges": {"a": [67.0, 236.0], "b": [60.0, 201.0]}}}
    page = EvaluatePage(WizardState(manifest=man))
    qtbot.addWidget(page)
    page.initializePage()
    text = page.summary.text()
    assert "Reference coverage" in text and "b: no reference windows brighter than grey 201" in text
    man["training_input"]["reference_coverage"]["ranges"]["b"] = [60.0, 230.0]
    page.initializePage()
    assert "Reference coverage" not in page.summary.text()
