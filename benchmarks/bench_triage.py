"""Triage view on a large batch table: open, sort, filter, scroll (offscreen Qt).

Usage::

    QT_QPA_PLATFORM=offscreen python benchmarks/bench_triage.py [--rows 100000]

The table is synthetic (tests/batchtools.write_synthetic_table: schema-valid, plausible
values). "open" is reading the columns + building the view + the first paint.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--shot", default=None, help="also save a screenshot of the view (PNG), sorted by suspicion")
    a = ap.parse_args()
    from batchtools import write_synthetic_table
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QApplication

    from scanlab.gui.triage import COLUMNS, TriageView

    app = QApplication.instance() or QApplication([])
    with tempfile.TemporaryDirectory() as d:
        p = write_synthetic_table(Path(d) / "results.parquet", a.rows)
        t0, c0 = time.perf_counter(), time.process_time()
        view = TriageView(p)
        view.resize(1000, 700)
        view.show()
        app.processEvents()
        t_open, c_open = time.perf_counter() - t0, time.process_time() - c0
        col = [c[0] for c in COLUMNS].index("suspicion")
        t0 = time.perf_counter()
        view.table.sortByColumn(col, Qt.SortOrder.DescendingOrder)
        app.processEvents()
        t_sort = time.perf_counter() - t0
        t0 = time.perf_counter()
        view.verdict.setCurrentText("unknown")
        app.processEvents()
        t_filter = time.perf_counter() - t0
        view.verdict.setCurrentText("(any)")
        app.processEvents()
        sb = view.table.verticalScrollBar()
        steps = 200
        t0 = time.perf_counter()
        for i in range(steps):
            sb.setValue(int(sb.maximum() * i / (steps - 1)))
            view.table.viewport().repaint()
        t_scroll = (time.perf_counter() - t0) / steps
        print(f"{a.rows} rows: open {t_open:.2f} s (CPU {c_open:.2f} s), sort by suspicion {t_sort:.3f} s, filter by verdict "
              f"{t_filter:.3f} s, scroll step + repaint {1000 * t_scroll:.1f} ms (mean of {steps}); "
              f"load {os.getloadavg()[0]:.1f}")
        if a.shot:
            view.verdict.setCurrentText("attributed")
            view.table.sortByColumn(col, Qt.SortOrder.DescendingOrder)
            view.table.scrollToTop()
            view.resize(1100, 560)
            app.processEvents()
            view.grab().save(a.shot)
        view.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
