"""Self-test: does the shipped model, on this install and device, give its documented figures?

The package ships a small validation set (``resources/selftest/``: 3 scans per
scanner of the default virtual bank, content seed 1001 as in the card's Table I,
made with ``scanlab synth``) and ``selftest.json``: the command that made it, the
model it was measured with (weights SHA-256) and the figures measured on it. The
self-test scores the set with the shipped model and passes when

1. the model is the one the reference was measured with (same weights hash);
2. the figures reproduce the reference within a tolerance (a different device or
   library build changes float rounding, which may flip a few borderline patches;
   the tolerance allows that and nothing more);
3. the card's figures (the model manifest's ``metrics.test``) lie inside the 95%
   Wilson interval of the figures measured here: a 30-scan set cannot reproduce a
   100-scan figure exactly, but it must agree with it.

A set that is missing or damaged, or a missing model, is bad input (exit 2); a
run whose figures disagree is a FAIL (exit 1).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from scanlab.core.errors import ScanLabError
from scanlab.core.jobs import CancelToken, ProgressFn
from scanlab.services.paths import selftest_dir

REFERENCE_FILE = "selftest.json"


def wilson_interval(fraction: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion ``fraction`` measured on ``n`` trials."""
    if n <= 0:
        return (0.0, 1.0)
    denom = 1 + z * z / n
    centre = (fraction + z * z / (2 * n)) / denom
    half = z * math.sqrt(fraction * (1 - fraction) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def load_reference(folder: Path | None = None) -> dict[str, Any]:
    """Read ``selftest.json``; a missing or unreadable file is a :class:`ScanLabError`."""
    path = (folder or selftest_dir()) / REFERENCE_FILE
    try:
        ref = json.loads(path.read_text(encoding="utf-8"))
        ref["reference"]["per_patch_accuracy"], ref["tolerance"]["per_patch_accuracy"]  # noqa: B018
    except FileNotFoundError:
        raise ScanLabError(f"{path}: the self-test set is not installed") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ScanLabError(f"{path}: unreadable self-test reference ({e})") from None
    return ref


def run_selftest(
    *,
    model: str | None = None,
    device: str = "auto",
    folder: Path | None = None,
    cancel: CancelToken | None = None,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Score the bundled validation set and compare with the reference and the card.

    Parameters
    ----------
    model : str, optional
        Model file; default the shipped model (the reference is only valid for it).
    device : str
        ``auto``, ``cpu``, ``cuda`` or ``mps``.
    folder : Path, optional
        The validation set (default: the installed ``resources/selftest``).

    Returns
    -------
    dict
        ``passed`` (bool), ``checks`` (list of ``{name, measured, expected, low,
        high, ok}``), ``model``, ``device``, ``n_images``, ``n_patches``, ``seconds``.

    Raises
    ------
    ScanLabError
        The set or the model is missing or unreadable, or the device is unavailable.
    """
    from scanlab.core.engine.engines import select_device
    from scanlab.services.evaluation import evaluate_folder
    from scanlab.services.models import get_model

    folder = folder or selftest_dir()
    ref = load_reference(folder)
    dev = str(select_device(device))
    lm = get_model(model)
    t0 = time.perf_counter()
    out = evaluate_folder(folder, model, device=dev, cancel=cancel, progress=progress)
    seconds = time.perf_counter() - t0
    want = ref["reference"]
    # Patches are counted only where a window has evidence, which a model's evidence
    # rule decides; the number of scans is what says the set is complete.
    if out["n_images"] != want["n_images"]:
        raise ScanLabError(
            f"{folder}: self-test set damaged ({out['n_images']} scans, expected {want['n_images']})"
        )
    checks: list[dict[str, Any]] = []
    weights = lm.manifest.get("weights_sha256")
    checks.append({
        "name": "model weights", "measured": weights, "expected": ref["model"]["weights_sha256"],
        "ok": weights == ref["model"]["weights_sha256"],
    })
    tol = ref["tolerance"]
    for key, n in (("per_patch_accuracy", out["n_patches"]), ("per_image_accuracy", out["n_images"])):
        got, exp = float(out[key]), float(want[key])
        label = key.replace("_accuracy", "").replace("_", "-") + " accuracy"
        checks.append({
            "name": f"{label} vs reference", "measured": got, "expected": exp,
            "low": exp - tol[key], "high": exp + tol[key], "ok": abs(got - exp) <= tol[key] + 1e-12,
        })
        card = ((lm.manifest.get("metrics") or {}).get("test") or {}).get(key)
        if card is not None:
            lo, hi = wilson_interval(got, n)
            checks.append({
                "name": f"{label} vs card (test split)", "measured": got, "expected": float(card),
                "low": lo, "high": hi, "ok": lo <= float(card) <= hi,
            })
    return {
        "passed": all(c["ok"] for c in checks),
        "checks": checks,
        "model": lm.summary(),
        "device": dev,
        "set": str(folder),
        "n_images": out["n_images"],
        "n_patches": out["n_patches"],
        "seconds": seconds,
        "reference_made_with": ref.get("made_with"),
    }


def format_report(result: dict[str, Any]) -> str:
    """Human-readable lines: one per check, then PASS or FAIL."""
    m = result["model"]
    lines = [
        f"self-test: model {m['name']} ({(m.get('weights_sha256') or '?')[:12]}), device {result['device']}, "
        f"{result['n_images']} scans / {result['n_patches']} patches from {result['set']}"
    ]
    for c in result["checks"]:
        flag = "ok  " if c["ok"] else "FAIL"
        if c["name"] == "model weights":
            lines.append(f"  {flag} model weights {str(c['measured'])[:12]} (reference {str(c['expected'])[:12]})")
        elif "card" in c["name"]:
            lines.append(
                f"  {flag} {c['name']}: card {100 * c['expected']:.2f}% within the 95% interval "
                f"[{100 * c['low']:.2f}, {100 * c['high']:.2f}] of the measured {100 * c['measured']:.2f}%"
            )
        else:
            tol = c["high"] - c["expected"]
            lines.append(
                f"  {flag} {c['name']}: {100 * c['measured']:.2f}% (reference {100 * c['expected']:.2f}% "
                f"+/- {100 * tol:.2f})"
            )
    lines.append(f"{'PASS' if result['passed'] else 'FAIL'} ({result['seconds']:.1f} s)")
    return "\n".join(lines)
