"""The README's screen-and-report pairs: the app and the case report on the same scans.

    QT_QPA_PLATFORM=offscreen python benchmarks/side_by_side.py --out docs

For the forged sample and one real page, writes ``screen_<name>.png`` (the app, as
the analyst sees it) and ``report_<name>.png`` (the report page of that scan, from a
case holding both scans, rendered with pdftoppm from poppler-utils). Both use the
case view's colour map (default inferno) and draw no-evidence areas hatched.
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

from readme_shots import REAL, _shot  # noqa: E402


def _report_pages(pdf: Path, out_prefix: Path) -> list[Path]:
    if shutil.which("pdftoppm") is None:
        raise SystemExit("pdftoppm (poppler-utils) is needed to render the report")
    subprocess.run(["pdftoppm", "-r", "70", "-png", str(pdf), str(out_prefix)], check=True)
    return sorted(out_prefix.parent.glob(out_prefix.name + "*.png"))


def main() -> None:
    """Write the screen/report pairs."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="docs")
    ap.add_argument("--real-page", default="page_e1.jpg")
    a = ap.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import torch  # noqa: F401  (before Qt, as the app does)

    from scanlab.cli import main as cli
    from scanlab.services.paths import samples_dir

    out = Path(a.out)
    scans = {"forged": str(samples_dir() / "forged_splice.jpg"), "real_page": str(REAL / a.real_page)}
    for name, path in scans.items():
        _shot([path], out / f"screen_{name}.png")
    with tempfile.TemporaryDirectory(prefix="scanlab-sbs-") as d:
        case = Path(d) / "sbs.scanlab"
        assert cli(["case", "new", str(case), "--title", "Screen and report", "--analyst", "readme"]) == 0
        assert cli(["case", "add", str(case), *scans.values()]) == 0
        pdf = Path(d) / "report.pdf"
        assert cli(["report", str(case), "-o", str(pdf)]) == 0
        pages = _report_pages(pdf, Path(d) / "page")
        # the report has one section per scan, in the order added: find each scan's page by its name
        for name, path in scans.items():
            text = [subprocess.run(["pdftotext", "-f", str(i + 1), "-l", str(i + 1), str(pdf), "-"],
                                   capture_output=True, text=True).stdout for i in range(len(pages))]
            hit = next((i for i, t in enumerate(text) if Path(path).name in t and "reliability" in t.lower()),
                       None)
            if hit is None:
                raise SystemExit(f"no report page names {Path(path).name}")
            shutil.copy(pages[hit], out / f"report_{name}.png")
            print(out / f"report_{name}.png", f"(report page {hit + 1})")


if __name__ == "__main__":
    main()
