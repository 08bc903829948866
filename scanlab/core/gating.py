"""Input gating: is this scan like the scans the model was trained on?

Warnings (docs/formats.md section 3), shown before the verdict and never
changing it:

* ``dpi_out_of_range``: the scan's recorded resolution lies outside the
  training scans' range (``training_input.dpi`` in the manifest);
* ``bit_depth_unseen``: a bit depth no training scan had.

``rotated_90`` and ``resampled`` are reserved codes that are **not emitted yet**:
the two detectors tried (line-pattern energy ratio of the noise residual, and the
second-derivative periodicity of Popescu and Farid) did not separate rotated or
resampled scans from untouched ones on the virtual bank (the bank's motor banding
and the content dominate both statistics; BENCHMARKS.md, "Input gating"). A
warning that fires at random would be worse than none.
"""

from __future__ import annotations

from typing import Any


def input_warnings(info: Any, training_input: dict[str, Any] | None) -> list[dict[str, str]]:
    """Input-gating warnings for one decoded scan (``info``: a ScanInfo, or anything with ``dpi``/``bit_depth``)."""
    out: list[dict[str, str]] = []
    ti = training_input or {}
    dpi = getattr(info, "dpi", None)
    rng = ti.get("dpi")
    if dpi and rng:
        lo, hi = float(rng[0]), float(rng[1])
        d = max(float(v) for v in dpi)
        if d < lo or d > hi:
            out.append({"code": "dpi_out_of_range",
                        "message": f"scan resolution {d:g} dpi is outside the training scans' {lo:g}-{hi:g} dpi"})
    depths = ti.get("bit_depths")
    bd = getattr(info, "bit_depth", None)
    if depths and bd is not None and int(bd) not in [int(x) for x in depths]:
        out.append({"code": "bit_depth_unseen",
                    "message": f"{bd}-bit scan; the model was trained on {', '.join(map(str, depths))}-bit scans"})
    return out
