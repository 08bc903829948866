"""Build hook: ship ``trained_models/`` and ``resources/`` inside the package.

The two folders stay at the repository root as the sources (the card, benchmarks
and README refer to them there). A wheel copies them to ``scanlab/_data/`` so that
``scanlab.services.paths`` finds them through :mod:`importlib.resources` in any
install. An editable install (``pip install -e .``) copies nothing: ``paths`` then
reads the checkout's folders directly, so an edited sample or a retrained model
is seen at once. All metadata lives in ``pyproject.toml``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
# (source folder, files to ship); anything else in those folders stays out of the wheel
SHIPPED = {
    "trained_models": ("*.safetensors", "*.md"),
    "resources": ("samples/*", "icons/*", "selftest/**/*"),
}


class build_py_with_data(build_py):  # noqa: N801 - setuptools command naming
    """``build_py`` that also copies the shipped data under ``scanlab/_data``."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        dest_root = Path(self.build_lib) / "scanlab" / "_data"
        for folder, patterns in SHIPPED.items():
            src_root = ROOT / folder
            for pattern in patterns:
                for src in sorted(src_root.glob(pattern)):
                    if not src.is_file() or "__pycache__" in src.parts:
                        continue
                    dest = dest_root / folder / src.relative_to(src_root)
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, dest)


setup(cmdclass={"build_py": build_py_with_data})
