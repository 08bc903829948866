"""Main window: drag and drop, overlay controls, class switch, settings, bad input."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent

from scanlab.gui.scan_view import thresholded

pytestmark = pytest.mark.gui


def _mime(paths: list[Path | str]) -> QMimeData:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    return mime


def _drop(win, paths: list[Path | str]) -> QDropEvent:
    mime = _mime(paths)
    with (
        warnings.catch_warnings()
    ):  # PySide6 6.12 flags the only (QPoint) constructor as deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        enter = QDragEnterEvent(
            win.rect().center(),
            Qt.DropAction.CopyAction,
            mime,
            Qt.MouseButton.LeftButton,
            Qt.KeyboardModifier.NoModifier,
        )
    win.dragEnterEvent(enter)
    assert enter.isAccepted()
    event = QDropEvent(
        QPointF(win.rect().center()),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    win.dropEvent(event)
    return event


def _messages(win) -> str:
    return "\n".join(win.messages.item(i).text() for i in range(win.messages.count()))


def test_drop_files_folders_and_bad_input(qtbot, window, wait_settled, tmp_path, make_scan):
    good = make_scan(tmp_path / "a" / "good.png")
    folder = tmp_path / "folder"
    make_scan(folder / "one.png", seed=2)
    make_scan(folder / "sub" / "two.tif", seed=3)
    empty = tmp_path / "empty"
    empty.mkdir()
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n garbage")

    event = _drop(window, [good, folder, empty, notes, broken])
    assert event.isAccepted()
    wait_settled(window)

    names = [d.name for d in window.documents]
    assert names == ["good.png", "one.png", "two.tif", "broken.png"]
    by_name = {d.name: d for d in window.documents}
    assert all(by_name[n].result is not None for n in ("good.png", "one.png", "two.tif"))
    assert by_name["broken.png"].result is None
    assert "broken.png" in by_name["broken.png"].error
    text = _messages(window)
    assert "notes.txt: not an image" in text
    assert "no images" in text
    assert "broken.png" in text
    assert window.isVisible()  # the app is alive and still usable
    window.scan_list.setCurrentRow(0)
    assert window.view.pixels is not None and window.view.pixels.shape == (192, 224, 3)


def test_drop_without_local_files_gives_message(window):
    mime = QMimeData()
    mime.setText("just text")
    event = QDropEvent(
        QPointF(10, 10),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    window.dropEvent(event)
    assert "nothing to open" in _messages(window)
    assert window.documents == []


@pytest.fixture
def analysed(qtbot, window, scan):
    with qtbot.waitSignal(window.analysis_settled, timeout=30_000) as blocker:
        window.open_paths([scan])
    assert blocker.args == [str(Path(scan)), True]
    return window


def test_result_shown_in_view_and_panel(analysed):
    win = analysed
    doc = win.current_document()
    res = doc.result
    heat = win.view.heat.image
    assert heat.shape == (192, 224)
    np.testing.assert_array_equal(np.isnan(heat), np.isnan(res.reliability))
    assert win.results.label_value.text() == res.label
    assert win.results.sha_value.text() == res.scan.sha256
    assert win.results.table.rowCount() == len(res.classes)
    assert win.results.patches_value.text() == str(int(res.analysis.classification.n_patches))
    assert "tiny-random" in win.results.model_value.text()


def test_overlay_controls_change_what_is_drawn(analysed):
    win, c, heat = analysed, analysed.controls, analysed.view.heat
    c.opacity_slider.setValue(25)
    assert heat.opacity() == pytest.approx(0.25)

    before_lut = np.array(heat.lut, copy=True)
    c.colormap_combo.setCurrentIndex(c.colormap_combo.findData("viridis"))
    assert not np.array_equal(before_lut, heat.lut)
    assert heat.getLevels() is not None and tuple(np.ravel(heat.getLevels())) == (0.0, 1.0)

    rel = win.current_document().result.reliability
    c.threshold_slider.setValue(int(np.floor(np.nanmax(rel) * 100)))
    c.threshold_check.setChecked(True)
    np.testing.assert_array_equal(heat.image, thresholded(rel, c.threshold()))
    assert np.isnan(heat.image).sum() > np.isnan(rel).sum()
    c.threshold_check.setChecked(False)
    assert np.isnan(heat.image).sum() == np.isnan(rel).sum()

    c.overlay_check.setChecked(False)
    assert not heat.isVisible()
    win.actions_["overlay"].trigger()
    assert heat.isVisible()


def test_blink_toggles_overlay(qtbot, analysed):
    heat = analysed.view.heat
    analysed.actions_["blink"].trigger()
    assert analysed.view.is_blinking()
    qtbot.waitUntil(lambda: not heat.isVisible(), timeout=2000)
    qtbot.waitUntil(heat.isVisible, timeout=2000)
    analysed.actions_["blink"].trigger()
    assert not analysed.view.is_blinking() and heat.isVisible()


def test_class_switch_redraws_without_recompute(qtbot, analysed):
    win = analysed
    res = win.current_document().result
    other = next(c for c in res.classes if c != res.label)
    idx = win.controls.class_combo.findData(other)
    with qtbot.assertNotEmitted(win.runner.succeeded, wait=100):
        with qtbot.waitSignal(win.class_maps.ready, timeout=10_000):
            win.controls.class_combo.setCurrentIndex(idx)
    assert not win.runner.is_busy()
    np.testing.assert_allclose(win.view.heat.image, res.map_for(other), equal_nan=True)
    win.controls.class_combo.setCurrentIndex(0)
    np.testing.assert_allclose(win.view.heat.image, res.reliability, equal_nan=True)


def test_grid_changes_recompute_once_debounced(qtbot, analysed, wait_settled):
    win = analysed
    submitted = []
    original = win.runner.submit

    def counting_submit(request):
        submitted.append(request)
        original(request)

    win.runner.submit = counting_submit
    for v in (80, 96, 112, 128):  # quick successive steps
        win.controls.sub_spin.setValue(v)
    win.controls.stride_spin.setValue(32)
    wait_settled(win)
    assert len(submitted) == 1
    assert submitted[0].sub == (128, 128) and submitted[0].stride == (32, 32)
    assert win.current_document().result.request.sub == (128, 128)


def test_thresholded_keeps_only_low_reliability():
    rel = np.array([[0.1, 0.5], [np.nan, 0.9]], dtype=np.float32)
    out = thresholded(rel, 0.5)
    np.testing.assert_array_equal(out, np.array([[0.1, 0.5], [np.nan, np.nan]], dtype=np.float32))
    assert thresholded(rel, None) is rel


def test_cursor_readout(analysed):
    win = analysed
    win.view.cursor_moved.emit((10, 20))
    text = win.results.cursor_value.text()
    assert "row 10, col 20" in text and "reliability" in text
    win.view.cursor_moved.emit(None)
    assert win.results.cursor_value.text() == "-"


def test_missing_default_model_is_a_clear_message(qtbot, gui_settings, scan):
    from scanlab.gui.main_window import MainWindow

    win = MainWindow(settings=gui_settings)  # no model: the (absent) shipped default
    qtbot.addWidget(win)
    with qtbot.waitSignal(win.analysis_settled, timeout=30_000) as blocker:
        win.open_paths([scan])
    assert blocker.args[1] is False
    assert "default model is missing" in _messages(win)
    assert win.controls.model_combo.itemText(0) == "default (missing)"
    win.close()


def test_settings_and_recent_files_persist(qtbot, gui_settings, tiny_model, scan, analysed):
    from scanlab.gui.main_window import MainWindow

    analysed.controls.opacity_slider.setValue(33)
    analysed.controls.colormap_combo.setCurrentIndex(
        analysed.controls.colormap_combo.findData("magma")
    )
    analysed.controls.stride_spin.setValue(32)
    analysed.close()
    assert gui_settings.recent_files()[0] == str(Path(scan))

    again = MainWindow(settings=gui_settings)
    qtbot.addWidget(again)
    assert again.controls.opacity_slider.value() == 33
    assert again.view.colormap == "magma"
    assert again.controls.stride_spin.value() == 32
    assert again.controls.model_spec() == tiny_model
    again.close()


class _PreviewProbe:
    """Records, when the scan arrives, whether the view already shows it without a result."""

    def __init__(self, win) -> None:
        self.win = win
        self.seen: list[bool] = []

    def on_loaded(self, request, pixels, pyramid) -> None:
        doc = self.win.current_document()
        self.seen.append(doc.result is None and self.win.view.pixels is pixels)


def test_scan_shown_while_its_map_is_computed(qtbot, window, wait_settled, scan):
    probe = _PreviewProbe(window)
    window.runner.loaded.connect(probe.on_loaded)  # after the window's own slot
    with qtbot.waitSignal(window.runner.loaded, timeout=30_000):
        window.open_paths([scan])
    assert probe.seen == [True]
    wait_settled(window)
    assert window.current_document().result is not None


def test_open_sample_opens_the_bundled_forged_scan(window, wait_settled):
    from scanlab.services.paths import sample_scans

    samples = sample_scans()
    assert samples and all("mask" not in s for s in samples)
    window.actions_["open_sample"].trigger()
    assert [d.path for d in window.documents] == samples[:1]
    wait_settled(window)
    assert window.current_document().result is not None


def test_bar_labels_never_overlap():
    from scanlab.gui.results_panel import tick_labels

    assert tick_labels(["scanner A", "scanner B"]) == ["scanner A", "scanner B"]
    assert tick_labels([f"vscan-{i:02d}" for i in range(1, 11)]) == [f"{i:02d}" for i in range(1, 11)]
    long = ["Epson Perfection V39", "Canon LiDE 300", "HP ScanJet 2600", "Brother ADS", "Fujitsu fi", "Plustek"]
    assert tick_labels(long) == ["1", "2", "3", "4", "5", "6"]


def test_bad_model_file_in_models_folder_is_listed_unusable(qtbot, gui_settings, tmp_path, monkeypatch, tiny_model):
    """Issue 9 item 5: one broken file in the user's models folder must not stop the app."""
    import shutil

    from scanlab.gui.main_window import MainWindow
    from scanlab.services.paths import user_models_dir

    folder = user_models_dir()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "broken.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00[1, 2]  ")
    shutil.copy(tiny_model, folder / "good.safetensors")
    win = MainWindow(settings=gui_settings)
    qtbot.addWidget(win)
    combo = win.controls.model_combo
    texts = [combo.itemText(i) for i in range(combo.count())]
    row = texts.index("broken.safetensors (unusable)")
    assert not combo.model().item(row).isEnabled()
    assert "not a ScanLab model file or corrupt" in combo.itemData(row, Qt.ItemDataRole.ToolTipRole)
    good = [t for t in texts if t.endswith("(user)")]
    assert good and combo.model().item(texts.index(good[0])).isEnabled()


def test_drop_a_pdf_opens_each_embedded_scan(qtbot, window, wait_settled, tmp_path, make_scan):
    """A PDF is one document per embedded image; a page without one is a message, not a skip."""
    import pikepdf
    from PIL import Image

    src = make_scan(tmp_path / "src.png")
    rgb = np.asarray(Image.open(src).convert("RGB"))
    jpg = tmp_path / "src.jpg"
    Image.fromarray(rgb).save(jpg, quality=92)
    pdf = pikepdf.Pdf.new()
    for data, filt in ((jpg.read_bytes(), "/DCTDecode"), (None, None)):
        page = pdf.add_blank_page()
        if data is None:
            continue
        im = pikepdf.Stream(pdf, data)
        im.Type, im.Subtype, im.ColorSpace = pikepdf.Name.XObject, pikepdf.Name.Image, pikepdf.Name.DeviceRGB
        im.Width, im.Height, im.BitsPerComponent, im.Filter = rgb.shape[1], rgb.shape[0], 8, pikepdf.Name(filt)
        page.Resources = pikepdf.Dictionary(XObject=pikepdf.Dictionary(Im0=im))
        page.Contents = pdf.make_stream(b"/Im0 Do")
    doc = tmp_path / "doc.pdf"
    pdf.save(doc)
    _drop(window, [doc])
    wait_settled(window)
    assert [d.name for d in window.documents] == ["doc.pdf#page=1&image=1"]
    assert window.documents[0].result is not None
    assert window.documents[0].result.scan.container["page"] == 1
    assert "doc.pdf#page=2: no scanned image on this page" in _messages(window)
