"""The README's copy-move pictures: the app with a pair drawn on a forged page, and its report page.

    QT_QPA_PLATFORM=offscreen python benchmarks/copymove_shots.py --out docs

The page is ``scanlab forge --kind copymove``'s lossless kind (a large block of a
vscan-04 scan copied elsewhere in it, as tests/test_copymove.py makes it), on which the
detector reports the pair. Writes ``copymove_app.png`` (the shipped model's analysis,
"Map of: Copy-move", the pointer on the pair's target end so both ends are lit) and
``copymove_report.png`` (the report page with the pair's section: a case made with
``scanlab case add --layers copymove``, the PDF rendered with ``pdftoppm -r 60``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path


def _app_shot(page: str, out: Path, size: tuple[int, int] = (1280, 800)) -> None:
    from PySide6.QtCore import QSettings
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication

    from scanlab.gui.main_window import MainWindow
    from scanlab.gui.settings import GuiSettings
    from scanlab.services.layer_runs import layer_key

    app = QApplication.instance() or QApplication([])
    tmp = tempfile.TemporaryDirectory(prefix="scanlab-shot-")
    win = MainWindow(settings=GuiSettings(QSettings(os.path.join(tmp.name, "s.ini"), QSettings.Format.IniFormat)))
    win.resize(*size)
    done: list[bool] = []
    win.analysis_settled.connect(lambda path, ok: done.append(ok))
    win.show()
    win.open_paths([page])

    def wait(cond, seconds: float = 300.0) -> None:
        t = time.time()
        while not cond() and time.time() - t < seconds:
            app.processEvents()
            time.sleep(0.02)

    wait(lambda: bool(done))
    combo = win.controls.class_combo
    combo.setCurrentIndex(combo.findData(layer_key("copymove")))
    wait(lambda: "copymove" in win.current_document().layers)
    pl = win.display.pairs
    if pl.pairs:  # the pointer (a real mouse move on the view) on the target end: both ends light up
        tgt = pl.ends(1)[1]
        QTest.mouseMove(win.view.viewport(), win.view.mapFromScene(tgt.mapToScene(tgt.path().boundingRect().center())))
    t = time.time()
    wait(lambda: time.time() - t > 0.8)
    win.grab().save(str(out), "PNG")
    print(out, f"{len(pl.pairs)} pair(s), pair lit: {pl.lit}")
    win.close()
    tmp.cleanup()


def _report_shot(page: str, out: Path) -> None:
    from scanlab.cli import main as cli

    with tempfile.TemporaryDirectory(prefix="scanlab-cmrep-") as d:
        img = Path(d) / "moved_block.png"
        shutil.copy(page, img)
        case = Path(d) / "c.scanlab"
        cli(["case", "new", str(case), "--title", "Moved block", "--analyst", "A. Analyst"])
        cli(["case", "add", str(case), str(img), "--stride", "8", "--layers", "copymove"])
        pdf = Path(d) / "report.pdf"
        cli(["report", str(case), "-o", str(pdf)])
        import pypdf

        pages = [i for i, p in enumerate(pypdf.PdfReader(str(pdf)).pages, 1) if "Copy-move pair" in p.extract_text()]
        subprocess.run(["pdftoppm", "-r", "60", "-png", "-f", str(pages[0]), "-l", str(pages[0]), "-singlefile",
                        str(pdf), str(out.with_suffix(""))], check=True)
        print(out, f"page {pages[0]}")


def main() -> None:
    """Write the two pictures."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="docs")
    a = ap.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import torch  # noqa: F401  (before Qt, as the app does)

    from scanlab.core.synth.forge import forge_one

    out = Path(a.out)
    with tempfile.TemporaryDirectory() as d:
        page = Path(d) / "moved_block.png"
        page.write_bytes(forge_one(0, "copymove", size=512, host_index=3).data)
        _app_shot(str(page), out / "copymove_app.png")
        _report_shot(str(page), out / "copymove_report.png")


if __name__ == "__main__":
    main()
