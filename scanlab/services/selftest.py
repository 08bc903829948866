"""Self-test: does the shipped model, on this install and device, give its documented figures?

The package ships a small validation set (``resources/selftest/``: 3 scans per
scanner of the default virtual bank, content seed 1001 as in the card's Table I,
and in ``unseen/`` one small scan per scanner of the bank ``elsewhere``, scanners the
model never saw; made by ``packaging/make_selftest_set.py``) and ``selftest.json``:
the commands that made it, the model it was measured with, the SHA-256 of every file
of the set and the figures measured on it. The self-test passes when

1. ``selftest.json`` is the shipped one (its SHA-256 is :data:`SHIPPED_REFERENCE_SHA256`,
   written into this module by the script that made the set) and every file of the
   set has its recorded SHA-256 (a missing file is a damaged set, exit 2);
2. the model file is the one the reference was measured with: same weights, same
   manifest (thresholds, open-set method, calibration live there, not in the
   weights) and same file bytes;
3. the figures reproduce the reference within a tolerance (a different device or
   library build changes float rounding, which may flip a few borderline patches;
   the tolerance allows that and nothing more): per-patch and per-image accuracy,
   the known scans attributed to the right scanner and the unseen scanners' scans
   answered ``unknown``;
4. the card's figures (the model manifest's ``metrics.test``) lie inside the 95%
   Wilson interval of the figures measured here: a 30-scan set cannot reproduce a
   100-scan figure exactly, but it must agree with it.

A set that is missing or damaged, or a missing model, is bad input (exit 2); a
run whose figures or hashes disagree is a FAIL (exit 1).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path
from typing import Any

from scanlab.core.errors import ScanLabError
from scanlab.core.jobs import CancelToken, ProgressFn
from scanlab.services.paths import selftest_dir

REFERENCE_FILE = "selftest.json"
#: SHA-256 of the shipped ``selftest.json`` (updated by packaging/make_selftest_set.py).
SHIPPED_REFERENCE_SHA256 = "9bb222b745f42e5ac2b78704dce2422c4ff068feec676952c9275a7da9abfecc"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manifest_digest(manifest: dict[str, Any]) -> str:
    """SHA-256 of a manifest's canonical JSON (keys set by the loader, ``_*``, left out)."""
    clean = {k: v for k, v in manifest.items() if not k.startswith("_")}
    return hashlib.sha256(json.dumps(clean, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def verdict_counts(out: dict[str, Any]) -> dict[str, int]:
    """Verdict counts of an :func:`~scanlab.services.evaluation.evaluate_folder` result.

    ``known_right``: known scans attributed to their own scanner; ``unseen_rejected``
    / ``unseen``: scans of scanners the model has no class for answered ``unknown`` or
    ``inconclusive`` (not attributed) / in all. Both refuse a name; which of the two a
    JPEG gets depends on the model's own delivery-chain figures (the verdict rules).
    """
    unseen = out.get("unknown_classes") or {}
    return {
        "known_right": int(round(float(out["attributed_and_right"]) * int(out["n_images"]))),
        "known": int(out["n_images"]),
        "unseen_rejected": sum(int(u["rejected"]) for u in unseen.values()),
        "unseen": sum(int(u["n_images"]) for u in unseen.values()),
    }


def _file_checks(folder: Path, ref: dict[str, Any]) -> list[dict[str, Any]]:
    """The reference's own hash and every file's hash; a missing file raises (damaged set)."""
    ref_sha = _sha256(folder / REFERENCE_FILE)
    checks = [{"name": "self-test reference", "measured": ref_sha, "expected": SHIPPED_REFERENCE_SHA256,
               "ok": ref_sha == SHIPPED_REFERENCE_SHA256}]
    files: dict[str, str] = ref.get("files") or {}
    missing = sorted(f for f in files if not (folder / f).is_file())
    if missing:
        raise ScanLabError(f"{folder}: self-test set damaged ({len(missing)} file(s) missing: "
                           f"{', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''})")
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} - {REFERENCE_FILE}
    changed = sorted(f for f in files if _sha256(folder / f) != files[f])
    extra = sorted(present - set(files))
    bad = [f"{f} changed" for f in changed] + [f"{f} not shipped" for f in extra]
    if not files:
        bad = ["the reference lists no files"]
    checks.append({"name": "self-test files", "measured": f"{len(files) - len(changed)} of {len(files)} as shipped",
                   "expected": f"{len(files)} files", "ok": not bad, "detail": bad})
    return checks


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
    checks: list[dict[str, Any]] = _file_checks(folder, ref)
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
    weights = lm.manifest.get("weights_sha256")
    # The weights hash alone does not cover the manifest, where the thresholds, the
    # open-set method and the calibration live: check the manifest and the whole file.
    for name, got, key in (("model weights", weights, "weights_sha256"),
                           ("model manifest", manifest_digest(lm.manifest), "manifest_sha256"),
                           ("model file", lm.manifest.get("_file_sha256"), "file_sha256")):
        exp = ref["model"].get(key)
        checks.append({"name": name, "measured": got, "expected": exp, "ok": exp is not None and got == exp})
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
    got_v, want_v = verdict_counts(out), want.get("verdicts") or {}
    n_tol = int(tol.get("verdict_scans", 1))
    for name, key, of in (("known scans attributed to their scanner", "known_right", "known"),
                          ("unseen scanners' scans not attributed", "unseen_rejected", "unseen")):
        exp = want_v.get(key)
        checks.append({
            "name": name, "measured": got_v[key], "expected": exp, "of": got_v[of],
            "low": None if exp is None else exp - n_tol, "high": None if exp is None else exp + n_tol,
            "ok": exp is not None and got_v[of] == want_v.get(of) and abs(got_v[key] - exp) <= n_tol,
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
        if c["name"] in ("model weights", "model manifest", "model file", "self-test reference"):
            lines.append(f"  {flag} {c['name']} {str(c['measured'])[:12]} (reference {str(c['expected'])[:12]})")
        elif c["name"] == "self-test files":
            lines.append(f"  {flag} self-test files: {c['measured']}" + ("" if c["ok"] else f" ({'; '.join(c['detail'][:5])})"))
        elif "of" in c:
            lines.append(f"  {flag} {c['name']}: {c['measured']} of {c['of']} (reference {c['expected']} +/- "
                         f"{c['high'] - c['expected'] if c['expected'] is not None else '?'})")
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
