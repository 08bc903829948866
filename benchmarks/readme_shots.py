"""The README's verdict screenshots, with the shipped model (run offscreen).

    QT_QPA_PLATFORM=offscreen python benchmarks/readme_shots.py --out docs

Writes ``verdict_forged.png`` (the forged sample), ``verdict_real_page.png`` (a real
page of ``../shared/data/real_scans``), ``attribution_map.png`` (the forged sample,
"Map of: attribution") and ``rotated_scan.png`` (a fresh scan of a known virtual
scanner turned by 90 degrees: the ``rotated_90`` warning).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from shotkit import offscreen_window  # noqa: E402

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real_scans"


def _shot(files: list[str], out: Path, *, map_of: str | None = None, size: tuple[int, int] = (1280, 800)) -> None:
    with offscreen_window(files, size) as (win, wait):
        if map_of is not None:
            combo = win.controls.class_combo
            combo.setCurrentIndex(combo.findData(map_of))
            wait(lambda: False, 3.0)
        wait(lambda: False, 0.5)
        win.grab().save(str(out), "PNG")
    print(out)


def main() -> None:
    """Write the screenshots."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="docs")
    ap.add_argument("--real-page", default="page_e1.jpg")
    a = ap.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import torch  # noqa: F401  (before Qt, as the app does)

    from scanlab.core.synth.bank import synth_scan
    from scanlab.core.synth.scanner import decode, design
    from scanlab.services.analysis import ATTRIBUTION
    from scanlab.services.paths import samples_dir

    out = Path(a.out)
    sample = str(samples_dir() / "forged_splice.jpg")
    _shot([sample], out / "verdict_forged.png")
    _shot([str(REAL / a.real_page)], out / "verdict_real_page.png")
    _shot([sample], out / "attribution_map.png", map_of=ATTRIBUTION)
    with tempfile.TemporaryDirectory() as d:
        from PIL import Image

        px = decode(synth_scan(design("default", 3), 5, seed=4242, size=512).data)
        turned = Path(d) / "vscan-04_turned_90.png"
        Image.fromarray(np.ascontiguousarray(np.rot90(px, 3))).save(turned)
        _shot([str(turned)], out / "rotated_scan.png")


if __name__ == "__main__":
    main()
