"""Longest GUI event-loop stall while the TaskRunner computes a large reliability map.

A 10 ms QTimer in the GUI thread records the gaps between its ticks; a gap much
longer than 10 ms means the event loop was blocked (by the GIL held in the worker,
or by work done on the GUI thread itself). Phases measured:

* ``idle``     - one second with nothing running (the timer's own jitter);
* ``compute``  - from ``runner.submit`` until ``runner.succeeded`` (worker thread);
* ``display``  - applying the result on the GUI thread (``ScanView.set_scan`` and
  ``set_map``, plus one render of the view), timed directly.

Usage::

    QT_QPA_PLATFORM=offscreen python benchmarks/bench_gui_stall.py \
        [--size 4000] [--sub 64] [--stride 4] [--engine dense] [--threads N] [--model PATH]

Without ``--model`` a random-weight 10-class model is used (timings do not depend
on the weights). Prints one table; no assertion.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402


def _make_inputs(folder: Path, size: int, model: str | None) -> tuple[str, str]:
    from scanlab.core.engine.network import build_model
    from scanlab.core.modelfile.store import make_manifest, save_model

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    base = np.stack([(xx * 0.05) % 256, (yy * 0.07) % 256, ((xx + yy) * 0.03) % 256], -1)
    noise = rng.normal(0, 6, (size, size, 3)).astype(np.float32)
    img = np.clip(base + noise, 0, 255).astype(np.uint8)
    scan = folder / "bench.tif"
    Image.fromarray(img).save(scan)  # uncompressed TIFF: decoding stays a small share
    if model is None:
        torch.manual_seed(0)
        net = build_model(10)
        model = str(folder / "random.safetensors")
        save_model(
            net, make_manifest(net, [f"scanner{i}" for i in range(10)], name="random"), model
        )
    return str(scan), model


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print a table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=4000, help="square scan side (4000: 16 MP)")
    ap.add_argument("--sub", type=int, default=64)
    ap.add_argument("--stride", type=int, default=4)
    ap.add_argument("--engine", default=None, help="dense or naive (default: the default engine)")
    ap.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads before the run"
    )
    ap.add_argument("--model", default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from PySide6.QtCore import QObject, QTimer, Slot

    from scanlab.core.engine.engines import DEFAULT_ENGINE
    from scanlab.gui.app import ensure_app
    from scanlab.gui.class_maps import ClassMapLoader
    from scanlab.gui.documents import ScanDocument
    from scanlab.gui.scan_view import ScanView
    from scanlab.gui.task_runner import TaskRunner
    from scanlab.services.analysis import AnalysisRequest

    app = ensure_app()

    class StallProbe(QObject):
        def __init__(self) -> None:
            super().__init__()
            self.gaps: list[float] = []
            self._last = time.perf_counter()
            self.timer = QTimer(self)
            self.timer.setInterval(10)
            self.timer.timeout.connect(self._on_timer_timeout)

        def reset(self) -> None:
            self.gaps = []
            self._last = time.perf_counter()

        @Slot()
        def _on_timer_timeout(self) -> None:
            now = time.perf_counter()
            self.gaps.append(now - self._last)
            self._last = now

    class Waiter(QObject):
        def __init__(self) -> None:
            super().__init__()
            self.result = None
            self.error = None
            self.pyramid = None
            self.other = None

        @Slot(object, str, object)
        def _on_loader_ready(self, doc: object, label: str, rel: object) -> None:
            self.other = rel

        @Slot(object, object)
        def _on_runner_succeeded(self, result: object, pyramid: object) -> None:
            self.result = result
            self.pyramid = pyramid

        @Slot(object, str)
        def _on_runner_failed(self, request: object, message: str) -> None:
            self.error = message

    def run_until(pred, timeout_s: float) -> None:
        t_end = time.perf_counter() + timeout_s
        while not pred() and time.perf_counter() < t_end:
            app.processEvents()
            time.sleep(0.001)

    def stats(name: str, gaps: list[float], wall: float) -> tuple:
        g = np.asarray(gaps) * 1000 if gaps else np.zeros(1)
        return (
            name,
            wall,
            float(g.max()),
            float(np.percentile(g, 99)),
            int((g > 50).sum()),
            int((g > 100).sum()),
            len(gaps),
        )

    with tempfile.TemporaryDirectory(prefix="scanlab-bench-") as tmp:
        t0 = time.perf_counter()
        scan, model = _make_inputs(Path(tmp), args.size, args.model)
        print(f"inputs ready in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        probe, waiter = StallProbe(), Waiter()
        runner = TaskRunner()
        runner.succeeded.connect(waiter._on_runner_succeeded)
        runner.failed.connect(waiter._on_runner_failed)
        view = ScanView()
        view.resize(1000, 800)
        view.show()
        rows = []

        probe.timer.start()
        probe.reset()
        t0 = time.perf_counter()
        run_until(lambda: False, 1.0)
        rows.append(stats("idle", probe.gaps, time.perf_counter() - t0))

        req = AnalysisRequest(
            path=scan,
            model=model,
            sub=(args.sub, args.sub),
            stride=(args.stride, args.stride),
            engine=args.engine,
            device="cpu",
        )
        probe.reset()
        t0 = time.perf_counter()
        runner.submit(req)
        run_until(lambda: waiter.result is not None or waiter.error is not None, 3600)
        rows.append(stats("compute", probe.gaps, time.perf_counter() - t0))
        if waiter.error:
            print(f"analysis failed: {waiter.error}", file=sys.stderr)
            runner.shutdown()
            return 1
        res = waiter.result

        probe.reset()
        t0 = time.perf_counter()
        view.set_scan(res.pixels, pyramid=waiter.pyramid)
        view.set_map(res.reliability)
        view.grab()  # one full render of the downsampled base + heatmap
        apply_s = time.perf_counter() - t0
        run_until(lambda: False, 0.3)
        rows.append(
            (
                "display",
                apply_s,
                apply_s * 1000,
                apply_s * 1000,
                int(apply_s > 0.05),
                int(apply_s > 0.1),
                1,
            )
        )

        probe.reset()
        t0 = time.perf_counter()
        # Class switch as the window does it: map_for in ClassMapLoader's thread, then draw.
        doc = ScanDocument(path=scan)
        doc.set_result(res, ("bench",), waiter.pyramid)
        loader = ClassMapLoader()
        loader.ready.connect(waiter._on_loader_ready)
        loader.request(doc, res.classes[(res.classes.index(res.label) + 1) % len(res.classes)])
        run_until(lambda: waiter.other is not None, 600)
        view.set_map(waiter.other)
        view.grab()
        rows.append(stats("class switch", probe.gaps, time.perf_counter() - t0))
        loader.shutdown()
        probe.timer.stop()
        runner.shutdown()

    h, w = res.pixels.shape[:2]
    print(
        f"scan {h}x{w} ({h * w / 1e6:.1f} MP), sub {args.sub}, stride {args.stride}, "
        f"engine {res.analysis.engine or args.engine or DEFAULT_ENGINE}, torch threads {torch.get_num_threads()}, "
        f"compute_s {res.compute_s:.1f}"
    )
    print(
        f"{'phase':<13} {'wall s':>8} {'max gap ms':>11} {'p99 ms':>8} {'>50ms':>6} {'>100ms':>7} {'ticks':>6}"
    )
    for name, wall, mx, p99, n50, n100, n in rows:
        print(f"{name:<13} {wall:8.2f} {mx:11.1f} {p99:8.1f} {n50:6d} {n100:7d} {n:6d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
