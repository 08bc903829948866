"""``scanlab batch`` throughput: local engine with 1 and 2 workers and the Ray engine, side by side.

Usage::

    python benchmarks/bench_batch.py [--pages 6] [--model PATH] [--no-a4] [--no-ray] [--json OUT]

Pages are the real 150-dpi scans of ``../shared/data/real_scans`` (cycled when more
are asked for), analysed with the shipped model (open-set scorer included) at the
defaults (sub 64, stride 4). Each engine writes its own results folder through
:func:`scanlab.services.batch.run_batch`, the function the CLI calls; the tables are
compared (every column but timing). Reported per engine: wall time of the whole job
(model load, pool or actor start-up included), pages/s, the mean per-page time
inside the worker, the largest peak RSS of a worker process, and the CPU seconds per
page (this process plus its children; Ray's actors live outside this process tree,
so that figure is left out for Ray). ``--a4`` adds one A4 page at 300 dpi (a real
page upsampled 2x with Lanczos: a cost measurement, not an accuracy one).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from scanlab.services.batch import run_batch  # noqa: E402

# the main checkout sits beside ../shared; a worktree one level deeper
REAL = next((d / "shared" / "data" / "real_scans" for d in (REPO.parent, REPO.parent.parent)
             if (d / "shared" / "data" / "real_scans").is_dir()), REPO.parent / "shared" / "data" / "real_scans")


def _cpu_s() -> float:
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def _rows(out: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(out / "results.parquet").to_pylist()


def _run(name: str, folder: Path, work: Path, model: str | None, workers: int, ray: str | None) -> dict:
    out = work / f"out_{name}_{workers}"
    c0, t0 = _cpu_s(), time.perf_counter()
    s = run_batch([folder], out, model=model, workers=workers, ray_address=ray)
    wall, cpu = time.perf_counter() - t0, _cpu_s() - c0
    rows = _rows(out)
    ok = [r for r in rows if r["status"] == "analysed"]
    per_page = [r["timing"]["total_s"] for r in ok]
    rss = [r["timing"]["worker_peak_rss_mb"] for r in ok if r["timing"]["worker_peak_rss_mb"]]
    return {"engine": name, "workers": workers, "pages": len(rows), "analysed": len(ok), "wall_s": wall,
            "pages_per_s": len(rows) / wall, "mean_page_s": sum(per_page) / max(1, len(per_page)),
            "peak_rss_mb_worker": max(rss) if rss else None,
            "cpu_s_per_page": None if ray else cpu / max(1, len(rows)), "summary_failed": s["failed"],
            "table": [{k: v for k, v in r.items() if k != "timing"} for r in rows]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, default=6)
    ap.add_argument("--model", default=None)
    ap.add_argument("--no-a4", action="store_true")
    ap.add_argument("--no-ray", action="store_true")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    scans = sorted(p for p in REAL.glob("*") if p.suffix.lower() in (".jpg", ".png", ".tif"))
    if not scans:
        print(f"no real scans under {REAL}", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="bench_batch_"))
    folder = work / "pages"
    folder.mkdir()
    for i in range(a.pages):
        src = scans[i % len(scans)]
        shutil.copy(src, folder / f"{i:03d}_{src.name}")
    load = os.getloadavg()
    results = []
    try:
        results.append(_run("local", folder, work, a.model, 1, None))
        results.append(_run("local", folder, work, a.model, 2, None))
        if not a.no_ray:
            import ray

            t0 = time.perf_counter()
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
            ray_init = time.perf_counter() - t0
            try:
                results.append(_run("ray", folder, work, a.model, 2, "auto"))
            finally:
                ray.shutdown()
            results[-1]["ray_init_s"] = ray_init
        a4 = None
        if not a.no_a4:
            from PIL import Image

            src = Image.open(REAL / "page_a1.jpg")
            a4_dir = work / "a4"
            a4_dir.mkdir()
            src.resize((2480, 3504), Image.LANCZOS).save(a4_dir / "a4_300dpi.png", dpi=(300, 300))
            a4 = _run("local-a4", a4_dir, work, a.model, 1, None)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ref = results[0]["table"]
    for r in results[1:]:
        r["same_table_as_local_1"] = r.pop("table") == ref
    results[0].pop("table")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load before {load[0]:.1f}; "
          f"commit {commit}; {a.pages} pages (real 150-dpi scans, 1240x~1750)")
    print("| engine | workers | pages | wall s | pages/s | vs local x1 | mean s/page in worker | "
          "peak RSS/worker MiB | CPU s/page | same table |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    base = results[0]["pages_per_s"]
    for r in results:
        cpu = f"{r['cpu_s_per_page']:.1f}" if r["cpu_s_per_page"] is not None else "-"
        print(f"| {r['engine']} | {r['workers']} | {r['pages']} | {r['wall_s']:.1f} | {r['pages_per_s']:.3f} | "
              f"{r['pages_per_s'] / base:.2f}x | {r['mean_page_s']:.1f} | {r['peak_rss_mb_worker']:.0f} | {cpu} | "
              f"{r.get('same_table_as_local_1', 'ref')} |")
    if len(results) > 2:
        print(f"ray.init (local, {os.cpu_count()} CPUs): {results[2]['ray_init_s']:.1f} s, not in the wall time above; "
              f"Ray / local x2 wall time: {results[2]['wall_s'] / results[1]['wall_s']:.2f}")
    if a4 is not None:
        a4.pop("table")
        print(f"A4 300 dpi (2480x3504), 1 worker: {a4['mean_page_s']:.1f} s/page in the worker, "
              f"{a4['cpu_s_per_page']:.1f} CPU s/page (whole job incl. model load), peak RSS {a4['peak_rss_mb_worker']:.0f} MiB")
    print(f"load after {os.getloadavg()[0]:.1f}")
    if a.json:
        Path(a.json).write_text(json.dumps({"results": results, "a4": a4, "commit": commit}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
