"""The triage view over a batch results table: sort, filter, counts, histogram, open a page."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from batchtools import write_synthetic_table
from PySide6.QtCore import Qt

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_table(tmp_path_factory.mktemp("triage") / "results.parquet", 2000, seed=3)


def _column(view, name: str) -> int:
    from scanlab.gui.triage import COLUMNS

    return [c[0] for c in COLUMNS].index(name)


def _shown(view, name: str) -> list[str]:
    m = view.model
    col = _column(view, name)
    return [m.data(m.index(r, col)) for r in range(m.rowCount())]


def test_sort_filter_counts_histogram(qtbot, table: Path) -> None:
    import pyarrow.parquet as pq

    from scanlab.gui.triage import TriageView

    rows = pq.read_table(table).to_pylist()
    view = TriageView(table)
    qtbot.addWidget(view)
    m = view.model
    assert m.rowCount() == len(rows)
    assert view.counts.text().startswith(f"{len(rows)} of {len(rows)} pages")
    sus = np.array([r["suspicion"] for r in rows if r["suspicion"] is not None])
    assert int(view.hist_counts.sum()) == len(sus)
    # descending suspicion: the largest first, empty cells (failed pages) last
    view.table.sortByColumn(_column(view, "suspicion"), Qt.SortOrder.DescendingOrder)
    shown = _shown(view, "suspicion")
    assert shown[0] == f"{sus.max():.3f}" and shown[-1] == ""
    values = [float(s) for s in shown if s]
    assert values == sorted(values, reverse=True)
    # filters combine
    view.verdict.setCurrentText("unknown")
    view.min_suspicion.setValue(0.2)
    want = sum(1 for r in rows if r["verdict"] == "unknown" and r["suspicion"] >= 0.2)
    assert m.rowCount() == want > 0
    assert set(_shown(view, "verdict")) == {"unknown"}
    assert view.counts.text().startswith(f"{want} of {len(rows)} pages. Verdicts: unknown {want}")
    view.verdict.setCurrentText("(any)")
    view.min_suspicion.setValue(0.0)
    view.errors_only.setChecked(True)
    assert m.rowCount() == sum(1 for r in rows if r["status"] != "analysed") > 0
    assert all(e for e in _shown(view, "error"))
    label = sorted({r["label"] for r in rows if r["label"]})[1]
    view.errors_only.setChecked(False)
    view.label.setCurrentText(label)
    assert m.rowCount() == sum(1 for r in rows if r["label"] == label)


def test_double_click_asks_to_open_the_page(qtbot, table: Path) -> None:
    from scanlab.gui.triage import TriageView

    view = TriageView(table)
    qtbot.addWidget(view)
    view.table.sortByColumn(_column(view, "suspicion"), Qt.SortOrder.DescendingOrder)
    idx = view.model.index(0, 0)
    with qtbot.waitSignal(view.page_requested, timeout=2000) as sig:
        view.table.doubleClicked.emit(idx)
    assert sig.args == [view.model.input_at(0)]
    assert sig.args[0].endswith(view.model.data(idx))


def test_a_foreign_parquet_file_is_a_one_line_error(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from scanlab.core.errors import ScanLabError
    from scanlab.gui.triage import load_columns

    p = tmp_path / "other.parquet"
    pq.write_table(pa.table({"input": ["x"]}), p)
    with pytest.raises(ScanLabError, match="not a scanlab batch results file"):
        load_columns(p)


def test_main_window_opens_results_and_a_double_clicked_page(qtbot, gui_settings, tiny_model, scan,
                                                            tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from scanlab.gui.main_window import MainWindow
    from scanlab.services.batch_table import schema_with_version

    p = write_synthetic_table(tmp_path / "results.parquet", 10)
    t = pq.read_table(p).to_pylist()
    t[0]["input"] = scan  # a real page the window can open
    pq.write_table(pa.Table.from_pylist(t, schema=schema_with_version()), p)
    win = MainWindow(settings=gui_settings, model=tiny_model)
    qtbot.addWidget(win)
    assert win.actions_["open_batch"].text() == "Open &batch results..."
    view = win.open_batch(str(p))
    assert view is not None and view.model.rowCount() == 10
    row = [view.model.input_at(r) for r in range(10)].index(scan)
    view.table.doubleClicked.emit(view.model.index(row, 0))
    assert [Path(d.path).resolve() for d in win.documents] == [Path(scan).resolve()]
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet")
    assert win.open_batch(str(bad)) is None  # a message, not an exception
    win.close()


def test_add_selected_pages_to_the_open_case(qtbot, gui_settings, tiny_model, make_scan, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from scanlab.gui.main_window import MainWindow
    from scanlab.services.batch_table import schema_with_version

    pages = [str(make_scan(tmp_path / f"p{i}.png", (192, 224), seed=i)) for i in range(2)]
    p = write_synthetic_table(tmp_path / "results.parquet", 5)
    t = pq.read_table(p).to_pylist()
    t[0]["input"], t[1]["input"] = pages
    pq.write_table(pa.Table.from_pylist(t, schema=schema_with_version()), p)
    win = MainWindow(settings=gui_settings, model=tiny_model)
    qtbot.addWidget(win)
    view = win.open_batch(str(p))
    rows = [[view.model.input_at(r) for r in range(5)].index(page) for page in pages]
    view.table.selectRow(rows[0])
    assert view.selected_inputs() == [pages[0]]
    view.add_button.click()  # no case open: a message, nothing queued
    assert win.cases.case is None and not win.cases._jobs
    win.cases.new_case_at(str(tmp_path / "c.scanlab"), "Archive 3", "A. Analyst")
    view.table.selectAll()
    with qtbot.waitSignal(view.add_to_case_requested, timeout=2000) as sig:
        view.table.selectAll()
        view.add_button.click()
    assert sorted(sig.args[0]) == sorted(view.model.input_at(r) for r in range(5))
    qtbot.waitUntil(lambda: not win.cases._jobs, timeout=60_000)
    # the two real pages are in the case; the three synthetic paths failed with a message each
    assert sorted(Path(e.info["path"]).name for e in win.cases.case.evidence.values()) == ["p0.png", "p1.png"]
    win.close()


def test_double_clicking_a_pdf_row_opens_that_image_inside_the_pdf(qtbot, gui_settings, tiny_model,
                                                                   tmp_path: Path) -> None:
    import zlib

    import pikepdf
    import pyarrow as pa
    import pyarrow.parquet as pq
    from test_containers import _image_stream, _page_with

    from scanlab.core.io.imaging import load_scan
    from scanlab.gui.main_window import MainWindow
    from scanlab.services.batch_table import schema_with_version

    rng = np.random.default_rng(5)
    a, b = (rng.integers(0, 255, (96, 128, 3), dtype=np.uint8) for _ in range(2))
    pdf = pikepdf.Pdf.new()
    _page_with(pdf, {"/Im0": _image_stream(pdf, zlib.compress(a.tobytes()), 128, 96, "FlateDecode"),
                     "/Im1": _image_stream(pdf, zlib.compress(b.tobytes()), 128, 96, "FlateDecode")},
               b"q 128 0 0 96 0 0 cm /Im0 Do Q q 128 0 0 96 0 200 cm /Im1 Do Q")
    doc = tmp_path / "doc.pdf"
    pdf.save(doc)
    p = write_synthetic_table(tmp_path / "results.parquet", 4)
    t = pq.read_table(p).to_pylist()
    t[0].update(input=str(doc), container="pdf", page=1, image_index=2)  # the second image of page 1
    pq.write_table(pa.Table.from_pylist(t, schema=schema_with_version()), p)
    win = MainWindow(settings=gui_settings, model=tiny_model)
    qtbot.addWidget(win)
    view = win.open_batch(str(p))
    want = f"{doc}#page=1&image=2"
    row = [view.model.input_at(r) for r in range(4)].index(want)
    view.table.doubleClicked.emit(view.model.index(row, 0))
    assert [d.path for d in win.documents] == [want]
    np.testing.assert_array_equal(load_scan(win.documents[0].path).pixels, b)  # that image, not page 1's first


def test_double_click_on_a_batch_page_with_a_stored_map_shows_that_map(qtbot, gui_settings, tiny_model, make_scan,
                                                                       tmp_path: Path, monkeypatch) -> None:
    """``batch --maps``: the row opens with the stored ``.h5`` map; no analysis runs (issue 18 item 4)."""
    import h5py

    from scanlab.gui.main_window import MainWindow
    from scanlab.services.batch import run_batch
    from scanlab.services.batch_page import BatchParams

    (tmp_path / "in").mkdir()
    pages = [str(make_scan(tmp_path / "in" / f"p{i}.png", (192, 224), seed=i)) for i in range(2)]
    # stride 8, not the window's 4: the view takes the stored map's parameters
    run_batch([tmp_path / "in"], tmp_path / "out", model=tiny_model, workers=1,
              params=BatchParams(stride=(8, 8), maps=True))
    win = MainWindow(settings=gui_settings, model=tiny_model)
    qtbot.addWidget(win)
    submitted: list = []
    monkeypatch.setattr(win.runner, "submit", submitted.append)  # any analysis would go through here
    view = win.open_batch(str(tmp_path / "out" / "results.parquet"))
    row = [view.model.input_at(r) for r in range(view.model.rowCount())].index(pages[1])
    with qtbot.waitSignal(view.stored_page_requested, timeout=2000) as sig:
        view.table.doubleClicked.emit(view.model.index(row, 0))
    map_file = Path(sig.args[1])
    assert map_file.parent == tmp_path / "out" / "maps" and map_file.suffix == ".h5"
    (doc,) = win.documents
    assert doc.path == pages[1] and doc is win.current_document()
    qtbot.wait(600)  # past the scheduler's recompute delay: the parameter change must not start an analysis
    assert submitted == []
    with h5py.File(map_file, "r") as f:
        stored = f["reliability"][()]
        label = f.attrs["label"]
    np.testing.assert_array_equal(doc.shown_map(), stored)
    np.testing.assert_array_equal(win.view._rel, stored)  # what the view draws
    assert doc.result.label == label and doc.result.request.stride == (8, 8)
    assert (win.state.sub, win.state.stride) == (64, 8)
    assert win.results.label_value.text() == label
    shot = Path(os.environ.get("SCANLAB_SHOT_DIR", tmp_path)) / "stored_map.png"
    win.resize(1200, 800)
    win.grab().save(str(shot))
    assert shot.stat().st_size > 0
    # a page changed since the batch: its stored map no longer stands for it, the page is analysed
    make_scan(Path(pages[0]), (192, 224), seed=7)
    row0 = [view.model.input_at(r) for r in range(view.model.rowCount())].index(pages[0])
    view.table.doubleClicked.emit(view.model.index(row0, 0))
    assert [d.path for d in win.documents] == pages[::-1]
    assert submitted and {r.path for r in submitted} == {pages[0]}  # (the mock never runs it, so it may be re-asked)
    assert "changed since the batch" in win.messages.item(win.messages.count() - 1).text()
    win.close()
