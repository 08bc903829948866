"""A long session must not abort: PySide6 6.12 on CPython 3.11 loses references to True and None."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.gui

ROOT = Path(__file__).resolve().parents[2]

SESSION = """
import sys
from PySide6.QtCore import QObject, Signal

refs = max(sys.getrefcount(True), sys.getrefcount(None))  # before the guard
import scanlab.gui  # applies the guard

class O(QObject):
    moved = Signal(object)

o = O()
for i in range(refs + 5000):  # more calls than True and None had references: a mouse-move session
    o.moved.emit((i, i))  # loses a True
    o.setObjectName("readout")  # loses a None
print("alive")
"""


def test_many_emits_do_not_abort_the_app():
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-c", SESSION], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0 and "alive" in p.stdout, p.stderr[-500:]
