"""``--smoke-test`` of the desktop bundle (also runnable from a source install).

Offscreen, with nothing but what the installation ships: open the bundled sample in
the main window with the shipped model, wait for its analysis, save a screenshot,
then write a JSON result (the sample's ``classify`` entry, where every file came
from, and the time from process start to the analysed screenshot). Exit 0 only when
the window analysed the sample, the PNG was written and the sample is attributed
to the scanner its own record (``forged_splice.json``) names as the host.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any


def run_smoke_test(out_dir: str | os.PathLike, *, started: float | None = None) -> int:
    """Run the smoke test, writing ``smoke.png`` and ``smoke.json`` into ``out_dir``.

    Parameters
    ----------
    out_dir : path
        Folder for the screenshot and the JSON result (created if needed).
    started : float, optional
        ``time.perf_counter()`` at process start, so the reported start-up time covers
        imports too (the frozen entry point passes it).

    Returns
    -------
    int
        0 when every check passed, 1 otherwise (the JSON says which failed).
    """
    started = time.perf_counter() if started is None else started
    os.environ["QT_QPA_PLATFORM"] = "offscreen"  # a smoke test never needs a screen
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shot = out / "smoke.png"
    result: dict[str, Any] = {"frozen": bool(getattr(sys, "frozen", False)), "checks": {}}

    from scanlab.services.paths import data_root, default_model_path, sample_scans, samples_dir

    samples = sample_scans()
    result.update(data_root=str(data_root()), model_path=str(default_model_path()), samples=samples)
    if not samples:
        result["error"] = f"{samples_dir()}: no bundled sample scan"
        return _finish(out, result, started)
    sample = samples[0]

    from scanlab.gui.app import run_gui

    gui_rc = run_gui([sample], screenshot=str(shot))
    result["seconds_to_screenshot"] = round(time.perf_counter() - started, 2)
    result["checks"]["window_analysed_and_saved"] = gui_rc == 0 and shot.is_file()

    from scanlab.core.errors import ScanLabError
    from scanlab.services.analysis import AnalysisRequest, run_analysis

    try:
        r = run_analysis(AnalysisRequest(path=sample, with_map=True, device="cpu"))
    except ScanLabError as e:
        result["error"] = str(e)
        return _finish(out, result, started)
    result["classify"] = r.to_json()
    record = Path(sample).with_suffix(".json")
    expected = json.loads(record.read_text(encoding="utf-8")).get("host_scanner") if record.is_file() else None
    result["expected_label"] = expected
    result["checks"]["attributed_to_host"] = expected is not None and r.label == expected
    result["checks"]["suggested_region_on_forgery"] = _suggestion_hits_mask(r.reliability, sample, result)
    return _finish(out, result, started)


def _suggestion_hits_mask(reliability, sample: str, result: dict[str, Any]) -> bool:
    """ROI suggestions (scipy + contourpy in the bundle) find the pasted region."""
    import numpy as np
    from PIL import Image

    from scanlab.core.case.rois import rasterize, suggest_regions

    mask_file = Path(sample).with_name(Path(sample).stem + "_mask.png")
    if not mask_file.is_file():
        return False
    with Image.open(mask_file) as im:
        forged = np.asarray(im.convert("L")) > 127
    rois = suggest_regions(reliability)
    hits = [int((rasterize(roi, forged.shape) & forged).sum()) for roi in rois]
    result["suggested_regions"] = {"n": len(rois), "forged_pixels_covered": hits}
    return bool(hits) and max(hits) > 0


def _finish(out: Path, result: dict[str, Any], started: float) -> int:
    result["seconds_total"] = round(time.perf_counter() - started, 2)
    result["passed"] = bool(result["checks"]) and all(result["checks"].values()) and "error" not in result
    tmp = out / "smoke.json.tmp"
    tmp.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    tmp.replace(out / "smoke.json")
    verdict = "passed" if result["passed"] else "FAILED"
    print(f"smoke test {verdict}: {out / 'smoke.json'} ({result['seconds_total']:.1f} s)", file=sys.stderr)
    return 0 if result["passed"] else 1
