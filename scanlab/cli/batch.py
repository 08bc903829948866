"""``scanlab batch``: archive triage, one results table for thousands of pages."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from typing import Any

from scanlab.cli.common import eprint, model_path, sigint_cancels
from scanlab.core.errors import Cancelled, ScanLabError

EXIT_SOME_FAILED = 3


class BatchProgress:
    """Progress on stderr: pages done, pages/s, ETA, failures so far.

    On a terminal one line redrawn in place; otherwise a line every ``every``
    seconds (logs of a long unattended run stay readable).
    """

    def __init__(self, quiet: bool = False, every: float = 10.0) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.every = 0.5 if self.tty else every
        self.t0 = time.monotonic()
        self.first: int | None = None
        self.failed = 0
        self.last = 0.0
        self.done = self.total = 0

    def row(self, row: dict[str, Any]) -> None:
        if row["status"] != "analysed":
            self.failed += 1
            if not self.quiet:
                self._clear()
                eprint(f"scanlab: {row['status']}: {row['error']}")

    def __call__(self, done: int, total: int) -> None:
        if self.first is None:
            self.first = done  # pages resumed from an earlier run do not count towards the rate
        self.done, self.total = done, total
        now = time.monotonic()
        if not self.quiet and (now - self.last >= self.every or done == total):
            self.last = now
            self._draw(now)

    def _clear(self) -> None:
        if self.tty:
            sys.stderr.write("\r\033[K")

    def _draw(self, now: float) -> None:
        n = self.done - (self.first or 0)
        dt = now - self.t0
        rate = n / dt if dt > 0 and n else 0.0
        eta = f"{(self.total - self.done) / rate:.0f}s" if rate > 0 else "?"
        line = (f"batch: {self.done}/{self.total} pages, {rate:.2f} pages/s, ETA {eta}, "
                f"{self.failed} failed")
        if self.tty:
            sys.stderr.write("\r\033[K" + line)
            sys.stderr.flush()
        else:
            eprint(line)

    def close(self) -> None:
        if self.tty and not self.quiet:
            sys.stderr.write("\n")


def _params(a: argparse.Namespace):
    from scanlab.core.engine.patches import parse_size
    from scanlab.services.batch_page import BatchParams

    try:
        sub, stride = parse_size(str(a.sub)), parse_size(str(a.stride))
    except ValueError as e:
        raise ScanLabError(str(e)) from None
    if sub[0] < 64 or sub[1] < 64:
        raise ScanLabError(f"--sub {a.sub}: sub-image size must be at least 64")
    if stride[0] < 1 or stride[1] < 1:
        raise ScanLabError(f"--stride {a.stride}: stride must be at least 1")
    return BatchParams(sub=sub, stride=stride, engine=a.engine, device=a.device, maps=a.maps)


def _resume_command(argv: list[str]) -> str:
    args = [x for x in argv if x != "--resume"]
    return "scanlab " + " ".join(shlex.quote(x) for x in args) + " --resume"


def cmd_batch(a: argparse.Namespace) -> int:
    if a.workers is not None and a.workers < 1:
        raise ScanLabError(f"--workers {a.workers}: must be at least 1")
    params = _params(a)
    model_path(a.model)
    from scanlab.services.batch import run_batch

    prog = BatchProgress(quiet=False)
    try:
        with sigint_cancels() as token:
            summary = run_batch(a.inputs, a.output, model=a.model, params=params, workers=a.workers,
                                ray_address=a.ray, resume=a.resume, cancel=token, progress=prog, on_row=prog.row)
    except Cancelled:
        prog.close()
        eprint(f"scanlab: interrupted; {prog.done} of {prog.total} pages are saved in {a.output}. "
               f"Resume with: {_resume_command(getattr(a, 'argv', None) or sys.argv[1:])}")
        return 130
    prog.close()
    for note in summary["notes"]:
        eprint(f"scanlab: note: {note}")
    if a.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"{summary['n_pages']} pages: {summary['analysed']} analysed, {summary['failed']} failed, "
              f"{summary['skipped']} skipped ({summary['resumed']} from an earlier run) -> {summary['results']}")
        for p in summary["problems"]:
            print(f"  {p['status']}: {p['error']}")
    # a skipped page (a PDF page that draws no scanned image) is not a failure, as in classify
    return EXIT_SOME_FAILED if summary["failed"] else 0


def register(sp: Any) -> None:
    """Add ``batch`` to the top-level sub-parsers."""
    b = sp.add_parser("batch", help="archive triage: analyse every page, one results table",
                      description="Analyse every scan under INPUT (files and folders, recursive) and write "
                                  "RESULTS_DIR/results.parquet, one row per page. Exit 0: all analysed; "
                                  "3: some pages failed (rows with an error); 2: bad arguments. PDFs and multi-page "
                                  "TIFFs give one row per embedded image; a page without one is a skipped row.")
    b.add_argument("inputs", nargs="+", metavar="INPUT")
    b.add_argument("-o", "--output", required=True, metavar="RESULTS_DIR", help="results folder")
    b.add_argument("-m", "--model", default=None, help="model file (default: the shipped model)")
    b.add_argument("--sub", default="64", help="map sub-image size N or NxM (>= 64)")
    b.add_argument("--stride", default="4", help="map stride N or NxM (>= 1)")
    b.add_argument("--maps", action="store_true", help="also write each page's map as RESULTS_DIR/maps/*.h5")
    b.add_argument("--workers", type=int, default=None,
                   help="local worker processes (default 1); with --ray: actors (default one per GPU, "
                        "else one per 4 CPUs)")
    b.add_argument("--ray", default=None, metavar="auto|local|ADDRESS",
                   help='run on a Ray cluster (needs pip install "scanlab[cluster]")')
    b.add_argument("--resume", action="store_true", help="continue an interrupted run in RESULTS_DIR")
    b.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default auto)")
    b.add_argument("--engine", default=None, choices=["dense", "naive"], help="window engine (default dense)")
    b.add_argument("--json", action="store_true", help="print the summary as one JSON object on stdout")
    b.set_defaults(func=cmd_batch)
