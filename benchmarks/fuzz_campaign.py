"""Long fuzzing campaign of the image loader and the model-file reader (figures for HARDENING.md).

Runs the same Hypothesis strategies as tests/test_fuzz.py with many more
examples and no fixed seed; warnings are turned into errors (each would be a
stray stderr line in the CLI). Unexpected exceptions do not stop the campaign: each
is counted by signature (type and innermost ScanLab/library frame) and its first
input saved under ``--out`` for replay. Prints one JSON summary.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/fuzz_campaign.py --examples 100000 --minutes 15

``--minutes`` bounds the wall time of each target (the campaign stops a target at
whichever limit comes first).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def _signature(e: BaseException) -> str:
    tb = traceback.extract_tb(e.__traceback__)
    frame = tb[-1] if tb else None
    where = f"{Path(frame.filename).name}:{frame.lineno}" if frame else "?"
    return f"{type(e).__name__} at {where}"


def run_target(name, strategy, check, examples: int, seconds: float, out: Path) -> dict:
    from hypothesis import HealthCheck, Phase, given, settings

    from scanlab.core.io.decoders import quiet_exif_warnings

    counts: collections.Counter[str] = collections.Counter()
    crashes: collections.Counter[str] = collections.Counter()
    t0 = time.monotonic()

    class _Stop(Exception):
        pass

    @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def target(data: bytes) -> None:
        if time.monotonic() - t0 > seconds:
            raise _Stop
        try:
            with warnings.catch_warnings():  # a warning is a finding too: a stray stderr line in the CLI
                warnings.simplefilter("error")
                quiet_exif_warnings()  # what the CLI installs at start-up
                counts[check(data)] += 1
        except Exception as e:  # noqa: BLE001 - every escape is a finding, recorded and counted
            sig = _signature(e)
            if not crashes[sig]:
                (out / f"{name}-{len(crashes)}.bin").write_bytes(data)
                (out / f"{name}-{len(crashes)}.txt").write_text("".join(traceback.format_exception(e)))
            crashes[sig] += 1
            counts["crash"] += 1

    try:
        target()
    except _Stop:
        pass
    return {"examples": sum(counts.values()), "outcomes": dict(counts), "crashes": dict(crashes),
            "seconds": round(time.monotonic() - t0, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=100_000, help="examples per target at most")
    ap.add_argument("--minutes", type=float, default=5.0, help="wall-time bound per target")
    ap.add_argument("--targets", default="image,model,manifest")
    ap.add_argument("--out", default=None, help="folder for crashing inputs (default: a temp folder)")
    a = ap.parse_args()
    from fuzz_targets import check_image, check_model, image_input, manifest_input, model_input

    out = Path(a.out or tempfile.mkdtemp(prefix="scanlab-fuzz-"))
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="scanlab-fuzz-work-"))
    targets = {
        "image": (image_input(), check_image),
        "model": (model_input(), lambda d: check_model(d, work)),
        "manifest": (manifest_input(), lambda d: check_model(d, work)),
    }
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    report = {"commit": commit, "machine": f"{platform.machine()} {os.cpu_count()} CPUs, {platform.python_version()}",
              "crash_inputs": str(out), "targets": {}}
    for name in a.targets.split(","):
        strategy, check = targets[name]
        report["targets"][name] = run_target(name, strategy, check, a.examples, a.minutes * 60, out)
        print(f"{name}: {report['targets'][name]}", file=sys.stderr, flush=True)
    print(json.dumps(report, indent=2))
    return 1 if any(t["crashes"] for t in report["targets"].values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
