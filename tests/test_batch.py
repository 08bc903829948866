"""``scanlab batch``: one row per page, errors as rows, kill -9 + --resume, local pool and Ray engines."""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scanner_tree import scan
from test_containers import _image_stream, _page_with

from scanlab.cli import main

REPO = Path(__file__).resolve().parents[1]
N_SCANS = 6
N_ROWS = N_SCANS + 3 + 1 + 3  # plain scans, corrupt files, a corrupt PDF, the scanned PDF's 3 rows


def _scanned_pdf(folder: Path, rng: np.random.Generator) -> Path:
    """``doc.pdf``: page 1 a JPEG stream and a lossless (Flate) image, page 2 text only.

    The JPEG it embeds is kept as ``folder.parent/src/page1.jpg`` (outside the inputs).
    """
    import zlib

    import pikepdf

    src = folder.parent / "src"
    src.mkdir()
    Image.fromarray(scan(1, rng, 144, 160)).save(src / "page1.jpg", quality=92)
    flat = scan(2, rng, 128, 176)
    pdf = pikepdf.Pdf.new()
    jpeg = _image_stream(pdf, (src / "page1.jpg").read_bytes(), 160, 144, "DCTDecode")
    lossless = _image_stream(pdf, zlib.compress(flat.tobytes()), 176, 128, "FlateDecode")
    _page_with(pdf, {"/Im0": jpeg, "/Im1": lossless},
               b"q 160 0 0 144 0 300 cm /Im0 Do Q q 176 0 0 128 0 0 cm /Im1 Do Q")
    pdf.add_blank_page().Contents = pdf.make_stream(b"BT /F1 12 Tf 72 720 Td (text only) Tj ET")
    pdf.save(folder / "doc.pdf")
    return folder / "doc.pdf"


def _make_inputs(folder: Path) -> Path:
    """Six small scans (PNG, JPEG, TIFF, nested folders), three corrupt files, a corrupt PDF and a
    scanned PDF (two embedded images on page 1, a text-only page 2)."""
    rng = np.random.default_rng(7)
    (folder / "a" / "b").mkdir(parents=True)
    for i in range(N_SCANS):
        px = scan(i % 3, rng, 128 + 16 * (i % 3), 160)
        sub = folder / ("a/b" if i % 3 == 0 else "a" if i % 3 == 1 else "")
        ext = (".png", ".jpg", ".tif")[i % 3]
        Image.fromarray(px).save(sub / f"scan{i}{ext}", dpi=(300, 300))
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    (folder / "a" / "empty.jpg").write_bytes(b"")
    (folder / "tiny.png").write_bytes(_png_bytes((20, 20, 3)))  # smaller than one 64x64 patch
    (folder / "a" / "bundle.pdf").write_bytes(b"%PDF-1.4\n%%EOF\n")
    (folder / ".hidden.png").write_bytes(b"not analysed: hidden")
    _scanned_pdf(folder, rng)
    return folder


def _png_bytes(shape: tuple[int, int, int]) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(np.zeros(shape, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _tree_state(folder: Path) -> dict[str, tuple[str, int]]:
    return {str(p): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _table(out: Path) -> list[dict]:
    import pyarrow.parquet as pq

    rows = pq.read_table(out / "results.parquet").to_pylist()
    return [{k: v for k, v in r.items() if k != "timing"} for r in rows]


class _Close(float):
    """A float that equals another within float32 rounding.

    A pool of N workers runs torch with cores // N threads each, so its sums run in
    another order than one process's: the same page gives the same figures to about
    1e-7, not bit for bit (seen in CI without OMP_NUM_THREADS).
    """

    def __eq__(self, other: object) -> bool:
        return isinstance(other, float) and (math.isclose(self, other, rel_tol=1e-5, abs_tol=1e-6)
                                             or (math.isnan(self) and math.isnan(other)))

    __hash__ = float.__hash__


def _approx(v):
    if isinstance(v, float):
        return _Close(v)
    if isinstance(v, dict):
        return {k: _approx(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_approx(x) for x in v]
    return v


def _same(rows: list[dict], reference: list[dict]) -> bool:
    """Every column but timing equal, floats within float32 rounding (see :class:`_Close`)."""
    return _approx(rows) == reference


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _make_inputs(tmp_path_factory.mktemp("archive") / "in")


@pytest.fixture(scope="module")
def reference(inputs: Path, random_model: Path, tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """The uninterrupted in-process run every other engine and run must reproduce."""
    out = tmp_path_factory.mktemp("ref") / "out"
    assert main(["batch", str(inputs), "-o", str(out), "-m", str(random_model), "--json"]) == 3
    return _table(out)


def test_one_row_per_page_errors_are_rows_exit_3(inputs: Path, random_model: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    before = _tree_state(inputs)
    out = inputs / "results"  # inside the input folder: must be skipped, not analysed
    out.mkdir()
    (out / "decoy.png").write_bytes(_png_bytes((80, 80, 3)))
    try:
        rc = main(["batch", str(inputs), "-o", str(out), "-m", str(random_model), "--json"])
        captured = capsys.readouterr()
        assert rc == 3
        summary = json.loads(captured.out)
        rows = _table(out)
        assert len(rows) == N_ROWS == summary["n_pages"]
        assert not any("results" in Path(r["input"]).parts for r in rows)
        assert any("lies inside input" in n for n in summary["notes"])
        by_name = {Path(r["input"]).name: r for r in rows if r["container"] is None}
        assert ".hidden.png" not in by_name
        for name in ("broken.png", "empty.jpg", "tiny.png"):
            r = by_name[name]
            assert r["status"] == "failed" and r["error"] and "\n" not in r["error"] and name in r["error"]
            assert r["verdict"] is None and r["suspicion"] is None
        bundle = by_name["bundle.pdf"]  # a corrupt PDF: one failed row, the run goes on
        assert bundle["status"] == "failed" and "bundle.pdf" in bundle["error"] and "\n" not in bundle["error"]
        assert bundle["page"] is None
        doc = inputs / "doc.pdf"
        pdf_rows = [r for r in rows if r["input"] == str(doc.resolve())]
        assert [(r["container"], r["page"], r["image_index"], r["status"]) for r in pdf_rows] == [
            ("pdf", 1, 1, "analysed"), ("pdf", 1, 2, "analysed"), ("pdf", 2, None, "skipped")]
        doc_sha = hashlib.sha256(doc.read_bytes()).hexdigest()
        assert all(r["container_sha256"] == doc_sha for r in pdf_rows)
        src_jpeg = inputs.parent / "src" / "page1.jpg"
        assert pdf_rows[0]["sha256"] == hashlib.sha256(src_jpeg.read_bytes()).hexdigest()  # the stream as stored
        assert pdf_rows[0]["format"] == "JPEG" and pdf_rows[0]["jpeg"] is not None
        assert pdf_rows[1]["format"] == "PDF" and pdf_rows[1]["sha256"] not in (None, doc_sha)
        assert (pdf_rows[0]["width"], pdf_rows[0]["height"]) == (160, 144)
        assert (pdf_rows[1]["width"], pdf_rows[1]["height"]) == (176, 128)
        skipped = pdf_rows[2]
        assert "doc.pdf#page=2" in skipped["error"] and "no scanned image" in skipped["error"]
        assert "\n" not in skipped["error"] and skipped["verdict"] is None
        ok = [r for r in rows if r["status"] == "analysed"]
        assert len(ok) == N_SCANS + 2
        for r in ok:
            assert r["error"] is None and r["verdict"] in ("attributed", "inconclusive", "unknown")
            if r["container"] is None:
                assert r["sha256"] == hashlib.sha256(Path(r["input"]).read_bytes()).hexdigest()
                assert r["dpi_x"] == pytest.approx(300, abs=0.01)
            assert r["bit_depth"] == 8
            assert r["windows_evidence"] + r["windows_no_evidence"] > 0
            assert 0 <= r["low_fraction"] <= 1 and 0 <= r["no_evidence_fraction"] <= 1
            assert 0 <= r["suspicion"] <= 1 and r["n_regions"] >= 0
            assert r["vote_interval_lo"] - 1e-9 <= r["vote_fraction"] <= r["vote_interval_hi"] + 1e-9
            assert json.loads(r["parameters"])["stride"] == [4, 4]
        assert [(r["input"]) for r in rows] == sorted(r["input"] for r in rows)
        assert {p["input"] for p in summary["problems"]} == {r["input"] for r in rows if r["status"] != "analysed"}
        # a second run into the same folder without --resume loses nothing: one-line error, exit 2
        assert main(["batch", str(inputs), "-o", str(out), "-m", str(random_model)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("scanlab: error:") and "--resume" in err and "\n" not in err
        assert _table(out) == rows
    finally:
        import shutil

        shutil.rmtree(out)
    assert _tree_state(inputs) == before  # inputs never written


def test_same_table_as_reference_and_resume_with_new_parameters(inputs: Path, random_model: Path, tmp_path: Path,
                                                                reference: list[dict],
                                                                capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    assert main(["batch", str(inputs), "-o", str(out), "-m", str(random_model)]) == 3
    assert _same(_table(out), reference)  # deterministic, sorted
    capsys.readouterr()
    # other parameters: nothing of the old run is reused, every row is redone
    assert main(["batch", str(inputs), "-o", str(out), "-m", str(random_model), "--stride", "8",
                 "--resume", "--json"]) == 3
    summary = json.loads(capsys.readouterr().out)
    assert summary["resumed"] == 0 and summary["n_pages"] == len(reference)
    assert all(json.loads(r["parameters"])["stride"] == [8, 8] for r in _table(out))


def test_a_pdf_alone_maps_per_image_and_resume_by_container_hash(inputs: Path, random_model: Path,
                                                                  reference: list[dict], tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture) -> None:
    import shutil

    doc = tmp_path / "doc.pdf"
    shutil.copy(inputs / "doc.pdf", doc)
    out = tmp_path / "out"
    # a text-only page is skipped, not failed: exit 0 (as classify)
    assert main(["batch", str(doc), "-o", str(out), "-m", str(random_model), "--maps"]) == 0
    rows = _table(out)
    maps = [r["map_path"] for r in rows if r["status"] == "analysed"]
    assert len(maps) == 2 == len(set(maps)) and all((out / m).is_file() for m in maps)
    assert "_p1_i1_" in maps[0] and "_p1_i2_" in maps[1]
    want = [r for r in reference if Path(r["input"]).name == "doc.pdf"]
    for got, ref in zip(rows, want, strict=True):  # the same pages as inside the folder run
        assert (got["page"], got["image_index"], got["sha256"], got["status"]) == (
            ref["page"], ref["image_index"], ref["sha256"], ref["status"])
    capsys.readouterr()
    assert main(["batch", str(doc), "-o", str(out), "-m", str(random_model), "--maps", "--resume", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["resumed"] == 2  # same container, pages, model, parameters
    # the container changes (re-saved with one more page): its pages are analysed again
    import pikepdf

    with pikepdf.open(doc, allow_overwriting_input=True) as pdf:
        pdf.add_blank_page()
        pdf.save(doc)
    assert main(["batch", str(doc), "-o", str(out), "-m", str(random_model), "--maps", "--resume", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["resumed"] == 0 and summary["analysed"] == 2 and summary["skipped"] == 2
    assert all(r["container_sha256"] == hashlib.sha256(doc.read_bytes()).hexdigest() for r in _table(out))


def test_pages_of_one_pdf_load_from_one_read_and_a_changed_pdf_is_refused(inputs: Path, tmp_path: Path) -> None:
    import shutil

    import pikepdf

    from scanlab.core.errors import ScanLabError
    from scanlab.core.io.containers import load_item
    from scanlab.services.batch_page import _opened, expand_tasks, load_task

    doc = tmp_path / "doc.pdf"
    shutil.copy(inputs / "doc.pdf", doc)
    tasks = [t for t in expand_tasks(doc) if not t["skip"]]
    _opened.clear()
    for t in tasks:  # the same pixels and hash as the reader on its own
        got, want = load_task(t), load_item(t["ref"])
        np.testing.assert_array_equal(got.pixels, want.pixels)
        assert got.info.sha256 == want.info.sha256
    assert len(_opened) == 1  # the PDF was expanded once for both images
    with pikepdf.open(doc, allow_overwriting_input=True) as pdf:  # changed after the pages were listed
        pdf.add_blank_page()
        pdf.save(doc)
    with pytest.raises(ScanLabError, match="changed since the run listed its pages"):
        load_task(tasks[0])


def _cli(*args: str, env_extra: dict[str, str] | None = None) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", **(env_extra or {}))
    return subprocess.Popen([sys.executable, "-m", "scanlab", "batch", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_part(out: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    t0 = time.monotonic()
    while not list((out / "parts").glob("part-*.parquet")):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - t0 < timeout, "no part file appeared"
        time.sleep(0.05)


@pytest.mark.slow
def test_kill9_then_resume_gives_the_uninterrupted_table(inputs: Path, random_model: Path, tmp_path: Path,
                                                         reference: list[dict], capsys: pytest.CaptureFixture) -> None:
    before = _tree_state(inputs)
    out = tmp_path / "out"
    proc = _cli(str(inputs), "-o", str(out), "-m", str(random_model),
                env_extra={"SCANLAB_TEST_BATCH_SLOW": "0.7"})
    _wait_for_part(out, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert not (out / "results.parquet").exists()
    stale = out / "parts" / ".part-00000099.parquet.x1y2z3.parquet"
    stale.write_bytes(b"PAR1 half-written")  # what a kill -9 inside a part write leaves
    assert main(["batch", str(inputs), "-o", str(out), "-m", str(random_model), "--resume", "--json"]) == 3
    assert not stale.exists()
    summary = json.loads(capsys.readouterr().out)
    assert 0 < summary["resumed"] < len(reference)  # killed half-way: some pages kept, the rest redone
    rows = _table(out)
    assert _same(rows, reference)
    assert len({(r["input"], r["page"], r["image_index"]) for r in rows}) == len(rows)
    assert sum(r["container"] == "pdf" for r in rows) == 3  # the PDF's pages survived the kill
    assert not list((out / "parts").glob("*"))  # merged
    assert _tree_state(inputs) == before


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_says_how_to_resume(inputs: Path, random_model: Path, tmp_path: Path,
                                                     reference: list[dict]) -> None:
    out = tmp_path / "out"
    proc = _cli(str(inputs), "-o", str(out), "-m", str(random_model), "--workers", "2",
                env_extra={"SCANLAB_TEST_BATCH_SLOW": "0.7"})
    _wait_for_part(out, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Resume with: scanlab batch" in err and "--resume" in err
    assert "Traceback" not in err
    assert main(["batch", str(inputs), "-o", str(out), "-m", str(random_model), "--resume"]) == 3
    assert _same(_table(out), reference)  # a pool of 2 workers, interrupted and resumed: the same table


@pytest.mark.slow
def test_a_page_that_kills_its_worker_is_a_failed_row(inputs: Path, random_model: Path, tmp_path: Path,
                                                      reference: list[dict], monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("SCANLAB_TEST_BATCH_CRASH", "scan4")  # the worker analysing scan4.* is SIGKILLed
    out = tmp_path / "out"
    assert main(["batch", str(inputs), "-o", str(out), "-m", str(random_model), "--workers", "2", "--json"]) == 3
    rows = _table(out)
    assert [r["input"] for r in rows] == [r["input"] for r in reference]
    for got, want in zip(rows, reference, strict=True):
        if Path(got["input"]).name.startswith("scan4"):
            assert got["status"] == "failed" and "worker process died" in got["error"]
            assert got["sha256"] == want["sha256"] and got["verdict"] is None
        else:
            assert _same([got], [want])  # the pages in flight with it were analysed again, alone
    assert any("worker process died" in p["error"] for p in json.loads(capsys.readouterr().out)["problems"])


def test_ray_without_ray_is_a_one_line_error(inputs: Path, random_model: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    rc = main(["batch", str(inputs), "-o", str(tmp_path / "out"), "-m", str(random_model), "--ray", "auto"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.count("\n") == 0 and err.startswith("scanlab: error:") and "scanlab[cluster]" in err
    assert not (tmp_path / "out").exists()


def test_a_second_run_on_the_same_folder_is_refused(inputs: Path, random_model: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    from scanlab.services.batch_table import ResultsLock

    out = tmp_path / "out"
    out.mkdir()
    with ResultsLock(out):  # a run in progress holds it
        assert main(["batch", str(inputs), "-o", str(out), "-m", str(random_model), "--resume"]) == 2
        assert "another scanlab batch is writing" in capsys.readouterr().err
    assert not (out / "results.parquet").exists()


def test_bad_arguments_exit_2(random_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["batch", str(tmp_path / "missing"), "-o", str(tmp_path / "o"), "-m", str(random_model)]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert main(["batch", str(tmp_path), "-o", str(tmp_path / "o"), "--workers", "0", "-m", str(random_model)]) == 2
    assert main(["batch", str(tmp_path), "-o", str(tmp_path / "o"), "--stride", "0", "-m", str(random_model)]) == 2


@pytest.mark.slow
def test_ray_engine_gives_the_local_table(inputs: Path, random_model: Path, tmp_path: Path,
                                          reference: list[dict]) -> None:
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    from scanlab.services.batch import run_batch

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        summary = run_batch([inputs], tmp_path / "out", model=random_model, workers=2, ray_address="auto")
    finally:
        ray.shutdown()
    assert summary["engine"] == "ray" and summary["n_pages"] == len(reference)
    assert _same(_table(tmp_path / "out"), reference)


def _fake_result(rel: np.ndarray):
    """What ``_fill_regions`` reads from an analysis: the map and its window grid (sub 64, stride 16)."""
    from types import SimpleNamespace

    ys, xs = np.arange(0, rel.shape[0] - 63, 16), np.arange(0, rel.shape[1] - 63, 16)
    p = np.array([[np.nanmean(rel[y:y + 64, x:x + 64]) for x in xs] for y in ys], np.float32)
    probs = np.stack([p, 1 - p], axis=-1)
    grid = SimpleNamespace(ys=ys, xs=xs, sub=(64, 64), stride=(16, 16), probs=probs,
                           evidence_mask=lambda: np.ones(p.shape, bool))
    return SimpleNamespace(reliability=rel, no_evidence_mask=lambda: np.isnan(rel),
                           analysis=SimpleNamespace(map_grid=grid), classes=["a", "b"],
                           evidence=SimpleNamespace(calibrated=False), map_label="a")


def test_suspicion_ranks_a_pasted_region_above_a_clean_page() -> None:
    from scanlab.services.batch_page import BatchParams, _fill_regions
    from scanlab.services.batch_table import empty_row

    clean = np.full((320, 320), 0.9, np.float32)
    pasted = clean.copy()
    pasted[96:192, 64:192] = 0.15  # a 96x128 region the scanner did not make
    faint = clean.copy()
    faint[96:192, 64:192] = 0.45  # the same region, barely below the threshold
    rows = {}
    for name, rel in (("clean", clean), ("pasted", pasted), ("faint", faint)):
        rows[name] = empty_row()
        _fill_regions(rows[name], _fake_result(rel), BatchParams())
    assert rows["clean"]["n_regions"] == 0 and rows["clean"]["suspicion"] == 0.0
    assert rows["clean"]["low_fraction"] == 0.0 and rows["clean"]["region_area"] is None
    r = rows["pasted"]
    assert r["n_regions"] == 1 and r["region_area"] == 96 * 128
    assert r["region_bbox"] == [96, 64, 192, 192]
    assert r["region_inside_mean"] == pytest.approx(0.15) and r["region_ring_mean"] == pytest.approx(0.9)
    assert r["region_p_value"] is not None and r["region_p_value"] < 0.01
    assert r["low_fraction"] == pytest.approx(96 * 128 / 320**2)
    assert r["suspicion"] == pytest.approx(0.75 * (1 - r["region_p_value"]))
    assert rows["pasted"]["suspicion"] > rows["faint"]["suspicion"] > rows["clean"]["suspicion"]
