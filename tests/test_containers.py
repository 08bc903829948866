"""PDF and multi-page TIFF input: one piece of evidence per embedded image, never re-encoded."""

from __future__ import annotations

import hashlib
import json
import re
import zlib
from pathlib import Path

import badfiles as bf
import numpy as np
import pikepdf
import pytest
from PIL import Image

from scanlab.cli import main
from scanlab.core.io import containers
from scanlab.core.io.imaging import ImageLoadError, load_scan, sha256_file


def run(capsys, *args):
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def _image_stream(pdf: pikepdf.Pdf, data: bytes, w: int, h: int, filt: str | None) -> pikepdf.Stream:
    s = pikepdf.Stream(pdf, data)
    s.Type, s.Subtype = pikepdf.Name.XObject, pikepdf.Name.Image
    s.Width, s.Height, s.BitsPerComponent = w, h, 8
    s.ColorSpace = pikepdf.Name.DeviceRGB
    if filt:
        s.Filter = pikepdf.Name("/" + filt)
    return s


def _page_with(pdf: pikepdf.Pdf, xobjects: dict[str, pikepdf.Object], draw: bytes) -> None:
    page = pdf.add_blank_page(page_size=(612, 792))
    page.Resources = pikepdf.Dictionary(XObject=pikepdf.Dictionary({k: v for k, v in xobjects.items()}))
    page.Contents = pdf.make_stream(draw)


@pytest.fixture
def sources(tmp_path: Path) -> dict[str, Path]:
    """A JPEG made by Pillow and a lossless image (PNG) with sensor-like noise."""
    rng = np.random.default_rng(3)
    a = np.clip(rng.normal(128, 40, (200, 260, 3)), 0, 255).astype(np.uint8)
    b = np.clip(rng.normal(100, 30, (190, 150, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(a).save(tmp_path / "a.jpg", quality=90)
    Image.fromarray(b).save(tmp_path / "b.png")
    return {"jpg": tmp_path / "a.jpg", "png": tmp_path / "b.png"}


@pytest.fixture
def two_scans_pdf(tmp_path: Path, sources: dict[str, Path]) -> Path:
    """Page 1: the JPEG as a DCTDecode stream; page 2: text only; page 3: the PNG's pixels, Flate."""
    pdf = pikepdf.Pdf.new()
    jpg = sources["jpg"].read_bytes()
    _page_with(pdf, {"/Im0": _image_stream(pdf, jpg, 260, 200, "DCTDecode")}, b"q 260 0 0 200 0 0 cm /Im0 Do Q")
    pdf.add_blank_page().Contents = pdf.make_stream(b"BT /F1 12 Tf 72 720 Td (text only) Tj ET")
    b = np.asarray(Image.open(sources["png"]))
    _page_with(pdf, {"/Im1": _image_stream(pdf, zlib.compress(b.tobytes()), 150, 190, "FlateDecode")},
               b"q 150 0 0 190 0 0 cm /Im1 Do Q")
    out = tmp_path / "doc.pdf"
    pdf.save(out)
    return out


def test_expand_gives_items_in_page_order_and_the_jpeg_stream_unchanged(two_scans_pdf, sources):
    items = containers.expand(two_scans_pdf)
    assert [it.ref for it in items] == [f"{two_scans_pdf}#page=1&image=1", f"{two_scans_pdf}#page=2",
                                         f"{two_scans_pdf}#page=3&image=1"]
    assert items[1].empty and "no scanned image" in items[1].empty
    jpg = items[0].load()
    assert jpg.info.sha256 == sha256_file(sources["jpg"])  # the stream is the JPEG file's bytes
    assert jpg.info.format == "JPEG" and jpg.info.container["filter"] == "DCTDecode"
    assert np.array_equal(jpg.pixels, load_scan(sources["jpg"]).pixels)  # the same decoder path
    png = items[2].load()
    assert png.info.container["page"] == 3 and png.info.container["filter"] == "FlateDecode"
    assert np.array_equal(png.pixels, load_scan(sources["png"]).pixels)  # lossless: the exact samples
    assert png.info.sha256 != png.info.container["sha256"] == sha256_file(two_scans_pdf)
    # a reference loads the same item; a PDF with several images must be named
    assert load_scan(items[2].ref).info.sha256 == png.info.sha256
    with pytest.raises(ImageLoadError, match="holds 2 images"):
        load_scan(two_scans_pdf)
    with pytest.raises(ImageLoadError, match="no scanned image on this page"):
        load_scan(f"{two_scans_pdf}#page=2")


def test_classify_a_pdf_gives_two_verdicts_equal_to_the_source_files(capsys, two_scans_pdf, sources, random_model):
    rc, out, err = run(capsys, "classify", two_scans_pdf, "-m", random_model, "--json", "--device", "cpu")
    assert rc == 0, err
    doc = json.loads(out)
    imgs = doc["images"]
    assert [(i["container"]["page"], i["container"]["image"]) for i in imgs] == [(1, 1), (3, 1)]
    assert imgs[0]["sha256"] == sha256_file(sources["jpg"]) == imgs[0]["container"]["item_sha256"]
    assert imgs[0]["container"]["sha256"] == sha256_file(two_scans_pdf)
    assert doc["skipped"][0]["path"].endswith("#page=2") and err.count("no scanned image on this page") == 1
    rc, out, _ = run(capsys, "classify", sources["jpg"], sources["png"], "-m", random_model, "--json",
                     "--device", "cpu")
    plain = json.loads(out)["images"]
    assert rc == 0 and [p["container"] for p in plain] == [None, None]
    for from_pdf, from_file in zip(imgs, plain, strict=True):
        assert from_pdf["probabilities"] == from_file["probabilities"]
        assert from_pdf["votes"] == from_file["votes"]


def test_map_needs_one_named_image_of_a_pdf(capsys, two_scans_pdf, random_model, tmp_path):
    rc, _, err = run(capsys, "map", two_scans_pdf, "-m", random_model, "-o", tmp_path / "m.npy")
    assert rc == 2 and "holds 2 images" in err and "#page=1&image=1" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m.npy").exists()
    rc, out, err = run(capsys, "map", f"{two_scans_pdf}#page=3&image=1", "-m", random_model, "-o",
                       tmp_path / "m.npy", "--json", "--device", "cpu")
    assert rc == 0, err
    meta = json.loads(out)
    assert meta["container"]["page"] == 3 and np.load(tmp_path / "m.npy").shape == (190, 150)


def test_case_add_and_report_name_the_pdf_and_the_page(capsys, two_scans_pdf, random_model, tmp_path):
    case = tmp_path / "c.scanlab"
    assert run(capsys, "case", "new", case, "--title", "T", "--analyst", "A")[0] == 0
    rc, out, err = run(capsys, "case", "add", case, two_scans_pdf, "-m", random_model, "--device", "cpu")
    assert rc == 0, err
    rc, out, _ = run(capsys, "case", "show", case, "--json")
    ev = json.loads(out)["evidence"]  # in the order added, i.e. page order (not by hash)
    assert [e["container"]["page"] for e in ev] == [1, 3] and ev[0]["path"].endswith("doc.pdf#page=1&image=1")
    assert run(capsys, "verify", case)[0] == 0  # the stored items re-extract to the same bytes and results
    # the PDF moves: locate takes the container, or the item as `case show` prints it
    moved = tmp_path / "moved.pdf"
    two_scans_pdf.rename(moved)
    assert run(capsys, "case", "locate", case, ev[0]["eid"], moved)[0] == 0
    rc, _, err = run(capsys, "case", "locate", case, ev[1]["eid"], f"{moved}#page=1&image=1")
    assert rc == 2 and "not the same file" in err  # page 1 is another image: the hash says so
    assert run(capsys, "case", "locate", case, ev[1]["eid"], f"{moved}#page=3&image=1")[0] == 0
    assert run(capsys, "verify", case)[0] == 0
    rc, _, err = run(capsys, "report", case, "-o", tmp_path / "r.pdf")
    assert rc == 0, err
    pypdf = pytest.importorskip("pypdf")  # the test extra has it
    text = " ".join(p.extract_text() or "" for p in pypdf.PdfReader(tmp_path / "r.pdf").pages).replace("\n", " ")
    assert "Image 1 of page 3 of the PDF file" in text and "doc.pdf#page=3&image=1" in text


def test_multipage_tiff_gives_one_row_per_page(capsys, tmp_path, random_model):
    import tifffile

    rng = np.random.default_rng(5)
    pages = [np.clip(rng.normal(120 + 10 * k, 30, (128, 160, 3)), 0, 255).astype(np.uint8) for k in range(3)]
    path = tmp_path / "pages.tif"
    with tifffile.TiffWriter(path) as tw:
        for p in pages:
            tw.write(p, photometric="rgb", compression="zlib")
    items = containers.expand(path)
    assert [it.ref for it in items] == [f"{path}#page={k}" for k in (1, 2, 3)]
    for it, p in zip(items, pages, strict=True):
        s = it.load()
        assert np.array_equal(s.pixels, p) and s.info.container["filter"] in ("ADOBE_DEFLATE", "DEFLATE")
    assert len({it.container["sha256_item"] for it in items}) == 3
    rc, out, err = run(capsys, "classify", path, "-m", random_model, "--json", "--device", "cpu")
    assert rc == 0, err
    assert [i["container"]["page"] for i in json.loads(out)["images"]] == [1, 2, 3]


def test_training_discovery_expands_containers(two_scans_pdf, tmp_path):
    from scanlab.core.training.dataset import discover

    root = tmp_path / "data"
    (root / "s1").mkdir(parents=True)
    (root / "s1" / "doc.pdf").write_bytes(two_scans_pdf.read_bytes())
    ds = discover(root)
    assert [Path(s.path).name for s in ds.samples] == ["doc.pdf#page=1&image=1", "doc.pdf#page=3&image=1"]
    assert ds.samples[0].sha256 == load_scan(ds.samples[0].path).info.sha256


# -- bad and hostile PDFs: one line, exit 2, nothing written ---------------------------------------


def _one_line_error(capsys, path, random_model, tmp_path, pattern):
    rc, out, err = run(capsys, "classify", path, "-m", random_model)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and re.search(pattern, err), err
    case = tmp_path / "c.scanlab"
    if not case.exists():
        run(capsys, "case", "new", case, "--title", "T", "--analyst", "A")
    before = case.read_bytes()
    rc, _, err = run(capsys, "case", "add", case, path, "-m", random_model)
    assert rc == 2 and re.search(pattern, err) and case.read_bytes() == before


def test_encrypted_pdf_is_refused(capsys, two_scans_pdf, tmp_path, random_model):
    out = tmp_path / "enc.pdf"
    with pikepdf.open(two_scans_pdf) as pdf:
        pdf.save(out, encryption=pikepdf.Encryption(owner="o", user="secret"))
    _one_line_error(capsys, out, random_model, tmp_path, "encrypted PDF")


def test_truncated_pdf_is_refused(capsys, two_scans_pdf, tmp_path, random_model):
    out = tmp_path / "cut.pdf"
    data = two_scans_pdf.read_bytes()
    out.write_bytes(data[: len(data) * 2 // 3])
    _one_line_error(capsys, out, random_model, tmp_path, "corrupt PDF|damaged PDF")


def test_pdf_whose_stream_length_lies_is_refused(capsys, two_scans_pdf, tmp_path, random_model):
    with pikepdf.open(two_scans_pdf) as pdf:  # uncompressed objects so the /Length is plain text
        pdf.save(tmp_path / "plain.pdf", object_stream_mode=pikepdf.ObjectStreamMode.disable)
    data = (tmp_path / "plain.pdf").read_bytes()
    n = int(re.findall(rb"/Length (\d+)", data)[1])  # the JPEG stream's
    lie = str(n - 1000).rjust(len(str(n)), "0").encode()  # same width: the xref offsets stay right
    out = tmp_path / "lies.pdf"
    out.write_bytes(data.replace(b"/Length %d" % n, b"/Length " + lie, 1))
    _one_line_error(capsys, out, random_model, tmp_path, "damaged PDF")


@pytest.mark.parametrize("make, pattern", [
    (bf.pdf_flate_bomb, "inflates beyond"), (bf.pdf_giant_image, "exceeds the pixel limit"),
    (bf.pdf_million_pages, "claims 1000000 pages"), (bf.pdf_page_tree_loop, "Loop detected"),
    (bf.pdf_form_loop, "object loop"),
])
def test_hostile_pdfs_are_refused_within_the_limits(capsys, tmp_path, random_model, make, pattern):
    path = tmp_path / "hostile.pdf"
    path.write_bytes(make())
    _one_line_error(capsys, path, random_model, tmp_path, pattern)


def test_a_pdf_without_images_says_so_in_one_line(capsys, tmp_path, random_model):
    path = tmp_path / "text.pdf"
    path.write_bytes(bf.pdf_text_only())
    rc, out, err = run(capsys, "classify", path, "-m", random_model)
    assert rc == 0 and out == "" and err.strip() == f"scanlab: note: {path}#page=1: no scanned image on this page " \
        "(text or vector only)"


def test_sha256_of_a_reference_is_the_items_own(two_scans_pdf, sources):
    assert containers.item_sha256(f"{two_scans_pdf}#page=1&image=1") == hashlib.sha256(
        sources["jpg"].read_bytes()).hexdigest()
    assert containers.item_sha256(two_scans_pdf) == sha256_file(two_scans_pdf)


def test_one_page_tiff_stays_a_plain_file(tmp_path):
    import tifffile

    path = tmp_path / "one.tif"
    tifffile.imwrite(path, np.zeros((96, 96, 3), np.uint8), photometric="rgb")
    (item,) = containers.expand(path)
    assert item.ref == str(path) and item.container is None
    assert load_scan(f"{path}#page=1").info.sha256 == sha256_file(path)
    with pytest.raises(ImageLoadError, match="no such image"):
        load_scan(f"{path}#page=2")


def test_wizard_collection_counts_pdf_items(two_scans_pdf, tmp_path):
    from scanlab.services.collection import inspect_collection

    root = tmp_path / "refs"
    for c in ("s1", "s2"):
        (root / c).mkdir(parents=True)
        (root / c / "doc.pdf").write_bytes(two_scans_pdf.read_bytes())
    (root / "s2" / "bad.pdf").write_bytes(bf.pdf_truncated())
    rep = inspect_collection(root)
    assert [c.count for c in rep.classes] == [0, 0]  # the same images under two scanners: conflicts
    assert len(rep.conflicts) == 2 and any("bad.pdf" in p and "corrupt PDF" in m for p, m in rep.unreadable)
    (root / "s2" / "doc.pdf").unlink()
    rep = inspect_collection(root)
    assert rep.classes[0].count == 2 and set(rep.classes[0].formats) == {"JPEG", "PDF"}
    assert len(rep.classes[0].thumbnails) == 2
