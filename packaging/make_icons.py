"""Render resources/icons/scanlab.svg to the PNG, ICO and ICNS icons beside it.

    python packaging/make_icons.py

Qt's SVG renderer (QtSvg, part of PySide6-Essentials) draws the SVG at each size
(a small icon is drawn from the vector source, not downscaled from a large bitmap);
Pillow writes the multi-size Windows ICO and macOS ICNS from those renderings.
Run it after editing the SVG and commit the results: the build does not need Qt's
SVG module, and the wheel ships the files as they are.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ICONS = Path(__file__).resolve().parents[1] / "resources" / "icons"
SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)


def render(svg: Path, size: int):
    """The SVG drawn at size x size as a Pillow RGBA image."""
    from PIL import Image
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice, Qt
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        sys.exit(f"make_icons: error: {svg}: not a valid SVG")
    img = QImage(size, size, QImage.Format.Format_ARGB32)
    img.fill(Qt.GlobalColor.transparent)
    painter = QPainter(img)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    data = QByteArray()
    buf = QBuffer(data)
    buf.open(QIODevice.OpenModeFlag.WriteOnly)
    img.save(buf, "PNG")
    import io

    return Image.open(io.BytesIO(bytes(data))).convert("RGBA")


def main() -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtGui import QGuiApplication

    _app = QGuiApplication.instance() or QGuiApplication([])  # QImage text/paint needs an app
    svg = ICONS / "scanlab.svg"
    images = {s: render(svg, s) for s in SIZES}
    for s, im in images.items():
        im.save(ICONS / f"scanlab-{s}.png", optimize=True)
    images[256].save(ICONS / "scanlab.ico", sizes=[(s, s) for s in ICO_SIZES],
                     append_images=[images[s] for s in ICO_SIZES if s != 256])
    images[512].save(ICONS / "scanlab.icns")
    for p in sorted(ICONS.iterdir()):
        print(f"{p.stat().st_size:8d}  {p.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
