"""Input gating: is this scan like the scans the model was trained on?

Warnings (docs/formats.md section 3), shown before the verdict and never
changing it:

* ``dpi_out_of_range``: the scan's recorded resolution lies outside the
  training scans' range (``training_input.dpi`` in the manifest);
* ``bit_depth_unseen``: a bit depth no training scan had;
* ``jpeg_unseen``, ``jpeg_quality_unseen``, ``recompressed`` (:func:`jpeg_warnings`): a
  JPEG scan (its ``scan.jpeg`` facts, :mod:`scanlab.core.io.jpegfacts`) when the model saw
  no JPEG in training, a quality outside the training JPEGs' range
  (``training_input.jpeg_quality``), or a file that looks re-compressed;
* ``rotated_90`` (:func:`rotation_warning`): the scan does not fit the known
  scanners as it is (unknown score above the threshold) but does once turned by
  90 degrees either way. Asked of the model itself: the line-sensor traces the
  network learned (channel misregistration along the scan direction, column
  pattern, banding) only line up with the scan turned back. Measured in
  BENCHMARKS.md ("Input gating").

``resampled`` is a reserved code that is **not emitted yet**: the detector tried
(the second-derivative periodicity of Popescu and Farid) did not separate
resampled scans from untouched ones on the virtual bank (the bank's motor banding
and the content dominate the statistic; BENCHMARKS.md, "Input gating"). A warning
that fires at random would be worse than none. The first rotation detector tried,
the energy ratio of column- and row-averaged noise residuals, did not separate
either; the model-based one above replaced it.
"""

from __future__ import annotations

from collections.abc import Callable
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
    return out + jpeg_warnings(getattr(info, "jpeg", None), ti)


def jpeg_warnings(facts: dict[str, Any] | None, ti: dict[str, Any]) -> list[dict[str, str]]:
    """Warnings when a questioned JPEG lies outside the JPEG qualities the model was trained on.

    ``facts``: the scan's ``scan.jpeg`` block; ``ti``: the manifest's ``training_input``
    (models trained before ``formats`` was recorded get no JPEG warning).
    """
    if not facts or "formats" not in ti:
        return []
    q, again = facts.get("quality"), facts.get("recompressed")
    what = (f"re-compressed at quality ~{q}" if again else f"JPEG quality ~{q}") if q is not None else "JPEG"
    formats = ti.get("formats") or {}
    qr = ti.get("jpeg_quality")
    if not formats.get("JPEG"):
        seen = ", ".join(sorted(formats)) or "no recorded format"
        return [{"code": "jpeg_unseen",
                 "message": f"{what}; this model was trained on {seen} scans only, never on JPEG: "
                            "its figures do not cover this file"}]
    if q is not None and qr and (int(q) < int(qr[0]) or int(q) > int(qr[1])):
        return [{"code": "jpeg_quality_unseen",
                 "message": f"{what}; this model was trained on JPEG quality {qr[0]}-{qr[1]}: "
                            "its figures do not cover this file"}]
    if again and not ti.get("recompressed_in_training"):  # set by training that augments with re-compression
        return [{"code": "recompressed",
                 "message": f"{what} (double-quantisation test score {facts.get('recompression_score')}): the file "
                            "went through a second JPEG compression after the scanner; attribution may be weaker"}]
    return []


def rotation_warning(
    score: Callable[[int], float | None], unknown_score: float | None, threshold: float | None
) -> dict[str, str] | None:
    """``rotated_90`` when the scan fits the known scanners only once turned by 90 degrees.

    ``score(k)`` gives the unknown score of the scan turned by ``k`` quarter turns
    anticlockwise (the model's open-set scorer; the analysis scores a bounded
    sample of windows with evidence, :func:`scanlab.core.evidence.openset.turned_window_score`).
    It is asked only when the scan as it is scores above ``threshold``.
    """
    if unknown_score is None or threshold is None or unknown_score <= threshold:
        return None
    for k, turn in ((1, "anticlockwise"), (3, "clockwise")):
        u = score(k)
        if u is not None and u <= threshold:
            return {
                "code": "rotated_90",
                "message": f"the scan fits the known scanners only when turned 90 degrees {turn} (unknown score "
                f"{u:.2f} turned, {unknown_score:.2f} as it is): it was probably rotated in software; "
                "analyse it turned back",
            }
    return None
