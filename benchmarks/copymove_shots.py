"""The README's copy-move pictures: the app with a pair drawn on a forged page, and its report page.

    QT_QPA_PLATFORM=offscreen python benchmarks/copymove_shots.py --out docs

The page is a document forgery of the benchmark (``scanlab.core.synth.docforge.doc_scan``,
default: style ``digit``, forgery 2 of seed 0, saved at JPEG quality 95): a digit of a
form copied to the end of its own line. The script prints what the detector finds
against where the copy really is, and stops without writing a picture unless a reported
pair has one end on the copy and the other on its source (no detection is staged).
Writes ``copymove_app.png`` (the shipped model's analysis, "Map of: Copy-move", zoomed
on the pair, the pointer on its target end so both ends are lit) and
``copymove_report.png`` (the report page with the pair's section: a case made with
``scanlab case add --layers copymove``, the PDF rendered with ``pdftoppm -r 80``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from shotkit import offscreen_window  # noqa: E402


def _app_shot(page: str, out: Path, size: tuple[int, int] = (1280, 800)) -> None:
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication

    from scanlab.services.layer_runs import layer_key

    with offscreen_window([page], size) as (win, wait):
        combo = win.controls.class_combo
        combo.setCurrentIndex(combo.findData(layer_key("copymove")))
        wait(lambda: "copymove" in win.current_document().layers)
        pl = win.display.pairs
        if pl.pairs:  # zoomed on the pair: a digit is a few dozen pixels of a 768-pixel page
            p = pl.pairs[0]
            ends = (p["source_box"], p["target_box"])
            ys = [b[0] for b in ends] + [b[0] + b[2] for b in ends]
            xs = [b[1] for b in ends] + [b[1] + b[3] for b in ends]
            cy, cx = (min(ys) + max(ys)) / 2, (min(xs) + max(xs)) / 2
            half = max(max(xs) - min(xs), max(ys) - min(ys)) * 1.2 + 60
            win.view.view.setRange(xRange=(cx - half, cx + half), yRange=(cy - half * 0.7, cy + half * 0.7), padding=0)
            QApplication.instance().processEvents()
            # the pointer (a real mouse move on the view) on the target end: both ends light up
            tgt = pl.ends(1)[1]
            QTest.mouseMove(win.view.viewport(), win.view.mapFromScene(tgt.mapToScene(tgt.path().boundingRect().center())))
        wait(lambda: False, 0.8)
        if not win.grab().save(str(out), "PNG"):
            raise SystemExit(f"{out}: could not write the picture")
        print(out, f"{len(pl.pairs)} pair(s), pair lit: {pl.lit}")


def _report_shot(page: str, out: Path) -> None:
    from scanlab.cli import main as cli

    with tempfile.TemporaryDirectory(prefix="scanlab-cmrep-") as d:
        img = Path(d) / Path(page).name
        shutil.copy(page, img)
        case = Path(d) / "c.scanlab"
        cli(["case", "new", str(case), "--title", "Copied digit", "--analyst", "A. Analyst"])
        cli(["case", "add", str(case), str(img), "--stride", "8", "--layers", "copymove"])
        pdf = Path(d) / "report.pdf"
        cli(["report", str(case), "-o", str(pdf)])
        import pypdf

        pages = [i for i, p in enumerate(pypdf.PdfReader(str(pdf)).pages, 1) if "Copy-move pair" in p.extract_text()]
        subprocess.run(["pdftoppm", "-r", "80", "-png", "-f", str(pages[0]), "-l", str(pages[0]), "-singlefile",
                        str(pdf), str(out.with_suffix(""))], check=True)
        print(out, f"page {pages[0]}")


def _overlap(a: list[int] | tuple[int, ...], b: list[int] | tuple[int, ...]) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def main() -> None:
    """Write the two pictures."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="docs")
    ap.add_argument("--style", default="digit", help="docforge copy style (digit, word, stamp, blank)")
    ap.add_argument("--k", type=int, default=2, help="forgery number (k %% 3 == 2: JPEG quality 95)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import torch  # noqa: F401  (before Qt, as the app does)

    from scanlab.core.copymove import detect_copymove
    from scanlab.core.synth.docforge import doc_scan

    f = doc_scan(a.k, a.style, seed=a.seed)
    rec = f.record
    res = detect_copymove(f.pixels)
    print(f"docforge {a.style} k={a.k} seed={a.seed}: JPEG {rec['jpeg_quality']}, rotation {rec['rotation_deg']:.2f} "
          f"deg, scale {rec['scale']:.3f}; copy {rec['source_box']} -> {rec['target_box']} ([y, x, h, w])")
    right = []
    for p in res.pairs:
        hit = ((_overlap(p.target_box, rec["target_box"]) and _overlap(p.source_box, rec["source_box"]))
               or (_overlap(p.target_box, rec["source_box"]) and _overlap(p.source_box, rec["target_box"])))
        right.append(hit)
        print(f"  pair {list(p.source_box)} / {list(p.target_box)}: q {p.q:.5f}, q_null {p.q_null:.5f}, "
              f"z {p.z:.2f}, p {p.p_value:.3g} -> {'the copy' if hit else 'NOT the copy'}")
    if not any(right):
        raise SystemExit("the detector does not find this copy: choose another forgery (--k, --seed); nothing written")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as d:
        page = Path(d) / f"doc_{a.style}_{a.seed}_{a.k}.jpg"
        page.write_bytes(f.data)  # the forgery as saved (JPEG), not re-encoded
        _app_shot(str(page), out / "copymove_app.png")
        _report_shot(str(page), out / "copymove_report.png")


if __name__ == "__main__":
    main()
