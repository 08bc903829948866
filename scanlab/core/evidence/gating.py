"""Input gating: is this scan like the scans the model was trained on?

Warnings (docs/formats.md section 3), shown before the verdict and never
changing it:

* ``dpi_out_of_range``: the scan's recorded resolution lies outside the
  training scans' range (``training_input.dpi`` in the manifest);
* ``bit_depth_unseen``: a bit depth no training scan had;
* ``jpeg_unseen``, ``jpeg_quality_unseen``, ``recompressed`` (:func:`jpeg_warnings`): a
  JPEG scan (its ``scan.jpeg`` facts, :mod:`scanlab.core.io.jpegfacts`) when the model saw
  no JPEG in training, a quality outside the training JPEGs' range
  (``training_input.jpeg_quality``, widened by ``recompressed_quality`` when training
  re-compressed its scans), or a file that looks re-compressed; the message quotes the
  attribution rate measured through JPEG re-compression (the manifest's
  ``delivery_chain_measured``, written by ``scanlab train`` on the model's test split or
  by ``benchmarks/bench_delivery.py``), or says that none was measured;
* ``rotated_90`` (:func:`rotation_warning`): the scan does not fit the known
  scanners as it is (unknown score above the threshold) but does once turned by
  90 degrees either way. Asked of the model itself: the line-sensor traces the
  network learned (channel misregistration along the scan direction, column
  pattern, banding) only line up with the scan turned back. Measured in
  BENCHMARKS.md ("Input gating").

* ``resampled`` (:func:`resampled_warning`): the file is an exact enlargement of a
  smaller grid (:mod:`scanlab.core.io.resampling`: the least-squares restore under one
  of Pillow's kernels re-synthesises the file to the rounding floor). Unlike the other
  warnings this one comes with a change of input: the vote, the unknown score and the
  verdict are computed on the restored original grid; maps stay on the file's pixels.
  Measured in BENCHMARKS.md ("Delivery chain", exact upsampling test). Two detectors
  tried before did not separate and were never wired: the second-derivative
  periodicity of Popescu and Farid alone (the bank's motor banding and the content
  dominate it; BENCHMARKS.md, "Input gating"), and, for rotation, the energy ratio of
  column- and row-averaged noise residuals (the model-based check above replaced it).
  The periodicity now only shortlists sizes; the decision is the exact fit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

RESAVED_MARGIN = 5  # JPEG quality points a file may lie below the nearest measured quality


def input_warnings(
    info: Any, training_input: dict[str, Any] | None, measured: dict[str, Any] | None = None
) -> list[dict[str, str]]:
    """Input-gating warnings for one decoded scan (``info``: a ScanInfo, or anything with ``dpi``/``bit_depth``).

    ``measured``: the manifest's ``delivery_chain_measured`` (None: not measured).
    """
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
    return out + jpeg_warnings(getattr(info, "jpeg", None), ti, measured)


def measured_jpeg_row(measured: dict[str, Any] | None, quality: int | None) -> dict[str, Any] | None:
    """The measured JPEG re-compression row that covers ``quality``, or None when none was measured.

    The highest measured quality at most ``RESAVED_MARGIN`` above the file's (a row at
    least about as harsh as the file's compression); the lowest measured quality when
    the file's is lower still or unknown. One choice of row for the warning's figure and
    for the verdict rule (:func:`delivery_risk`), so the two never quote different
    measurements.
    """
    rows = [r for r in ((measured or {}).get("rows") or {}).values()
            if isinstance(r, dict) and r.get("kind") == "jpeg" and isinstance(r.get("parameter"), (int, float))
            and isinstance(r.get("known_right"), (int, float))]
    if not rows:
        return None
    cover = [r for r in rows if quality is not None and r["parameter"] <= quality + RESAVED_MARGIN]
    return max(cover, key=lambda r: r["parameter"]) if cover else min(rows, key=lambda r: r["parameter"])


def measured_jpeg_note(measured: dict[str, Any] | None, quality: int | None) -> str:
    """"attribution still measured at X% ..." from the model's own measurement, or "not measured".

    The row is the one :func:`measured_jpeg_row` picks (the one the verdict rule reads).
    Never a figure the model file does not carry. A measurement made by training names
    its scans as what they are: the model's held-out test scans, and the lab's negatives.
    """
    row = measured_jpeg_row(measured, quality)
    if row is None:
        return "attribution of re-compressed scans was not measured for this model"
    n = (measured or {}).get("known_scans")
    in_training = str((measured or {}).get("benchmark", "")).startswith("scanlab train")
    known = "held-out test scans of its known scanners" if in_training else "fresh scans of its known scanners"
    text = (f"attribution still measured at {100 * row['known_right']:.0f}% ({known} "
            f"re-saved at JPEG quality {row['parameter']:g}{f', n = {n}' if n else ''}")
    if isinstance(row.get("known_wrong"), (int, float)):
        text += f"; {100 * row['known_wrong']:.0f}% attributed to a wrong scanner"
    if isinstance(row.get("unseen_rejected"), (int, float)):
        unseen = "the lab's negative scans rejected" if in_training else "unseen scanners rejected"
        text += f"; {unseen} {100 * row['unseen_rejected']:.0f}%"
    return text + ")"


def _described(quality: int | None, again: bool | None) -> str:
    """How a warning or a verdict reason names the questioned JPEG ("re-compressed at quality ~72")."""
    if quality is None:
        return "re-compressed JPEG" if again else "JPEG"
    return f"re-compressed at quality ~{quality}" if again else f"JPEG quality ~{quality}"


def jpeg_warnings(
    facts: dict[str, Any] | None, ti: dict[str, Any], measured: dict[str, Any] | None = None
) -> list[dict[str, str]]:
    """Warnings when a questioned JPEG lies outside the JPEG qualities the model was trained on.

    ``facts``: the scan's ``scan.jpeg`` block; ``ti``: the manifest's ``training_input``
    (models trained before ``formats`` was recorded get no JPEG warning); ``measured``:
    the manifest's ``delivery_chain_measured``, quoted in the message.
    """
    if not facts or "formats" not in ti:
        return []
    q, again = facts.get("quality"), facts.get("recompressed")
    what = _described(q, again)
    formats = ti.get("formats") or {}
    qr = ti.get("jpeg_quality")
    if not formats.get("JPEG"):
        seen = ", ".join(sorted(formats)) or "no recorded format"
        return [{"code": "jpeg_unseen",
                 "message": f"{what}; this model was trained on {seen} scans only, never on JPEG: "
                            "its figures do not cover this file"}]
    rq = ti.get("recompressed_quality") if ti.get("recompressed_in_training") else None
    note = measured_jpeg_note(measured, q)

    def outside(r: Any) -> bool:
        return not r or int(q) < int(r[0]) or int(q) > int(r[1])  # type: ignore[arg-type]

    if q is not None and qr and outside(qr) and outside(rq):
        seen = f"JPEG quality {qr[0]}-{qr[1]}" + (f" and re-compressed scans at quality {rq[0]}-{rq[1]}" if rq else "")
        return [{"code": "jpeg_quality_unseen", "message": f"{what}; this model was trained on {seen}: {note}"}]
    if again and not ti.get("recompressed_in_training"):  # set by training that augments with re-compression
        return [{"code": "recompressed",
                 "message": f"{what} (double-quantisation test score {facts.get('recompression_score')}): the file "
                            f"went through a second JPEG compression after the scanner; {note}"}]
    return []


def outside_training_jpegs(facts: dict[str, Any], ti: dict[str, Any]) -> bool:
    """Whether a questioned JPEG's estimated quality lies outside the training JPEGs' (any, if none were JPEG)."""
    q, qr = facts.get("quality"), ti.get("jpeg_quality")
    seen_jpeg = bool((ti.get("formats") or {}).get("JPEG"))
    return bool(q is not None and (not seen_jpeg or (qr and not int(qr[0]) <= int(q) <= int(qr[1]))))


def delivery_risk(
    facts: dict[str, Any] | None, ti: dict[str, Any] | None, measured: dict[str, Any] | None,
    thresholds: dict[str, float],
) -> dict[str, str] | None:
    """What the model's own delivery-chain measurement says about a verdict on this JPEG (the verdict rule).

    Applies to a questioned JPEG that looks re-compressed, or whose estimated quality lies
    outside the training JPEGs' (``training_input.jpeg_quality``; any quality when the
    model saw no JPEG), for a model whose manifest records its training ``formats`` and
    carries a measured JPEG row (``delivery_chain_measured``; the row
    :func:`measured_jpeg_row` picks, the one the warning quotes). To any other JPEG only
    the ``unknown`` half applies, when the measurement says ``any_jpeg`` (written since this
    rule): the re-compression test misses most re-saves at nearby qualities, so a file it
    passes may still be a re-saved scan of a known scanner.
    Returns None when it does not apply, else ``{"attributed": reason or None, "unknown":
    reason or None}``:

    * ``attributed``: the measured attributions at that quality named a wrong scanner
      more often than ``max_resaved_wrong_share`` of the time (or none was attributed,
      or the file's quality is more than ``RESAVED_MARGIN`` below every measured one);
    * ``unknown``: the model rejected (unknown or inconclusive) more than
      ``max_resaved_known_rejected`` of its *own* scanners' scans re-saved at that
      quality, so "not any known scanner" is not shown by the score either.

    The figures are the verdicts before this rule (``verdicts`` in the measurement).
    """
    ti = ti or {}
    if not facts or "formats" not in ti:
        return None
    q, again = facts.get("quality"), facts.get("recompressed")
    row = measured_jpeg_row(measured, q)
    if row is None:
        return None
    what = _described(q, again)
    p, n = row["parameter"], (measured or {}).get("known_scans")
    at = f"JPEG quality {p:g}" + (f" (n = {n})" if n else "")
    shown = bool(again or outside_training_jpegs(facts, ti))
    # Nothing may show a re-save, yet the re-compression test misses most re-saves near the first
    # quality (BENCHMARKS.md, "A re-save the JPEG test does not see"): then an attribution stands, but
    # "none of the known scanners" rests on the file being first-generation, which is not shown. Only
    # for measurements that say so (``any_jpeg``), so that files measured before keep their verdicts
    # and the cases made with them still verify.
    if not shown and not (measured or {}).get("any_jpeg"):
        return None
    if shown and q is not None and q < p - RESAVED_MARGIN:
        why = f"{what}, harsher than any re-compression this model was measured on (lowest: {at})"
        return {"attributed": why, "unknown": why}
    right = float(row["known_right"])
    wrong = float(row["known_wrong"]) if isinstance(row.get("known_wrong"), (int, float)) else 1.0 - right
    rejected = row.get("known_unknown_or_inconclusive")
    rejected = float(rejected) if isinstance(rejected, (int, float)) else max(0.0, 1.0 - right - wrong)
    out: dict[str, str | None] = {"attributed": None, "unknown": None}
    if not shown:
        pass  # an attribution of a JPEG that nothing shows re-saved stands
    elif right + wrong <= 0:
        out["attributed"] = f"{what}: this model attributed none of its own scanners' scans re-saved at {at}"
    elif wrong / (right + wrong) > thresholds.get("max_resaved_wrong_share", 0.01):
        out["attributed"] = (f"{what}: {wrong / (right + wrong):.0%} of this model's attributions of its own scanners' "
                             f"scans re-saved at {at} named a wrong scanner")
    if rejected > thresholds.get("max_resaved_known_rejected", 0.05):
        lead = f"{what}: " if shown else (f"{what}, with no re-compression this file's JPEG test can see, but the "
                                           "test misses most re-saves at nearby qualities, and ")
        out["unknown"] = f"{lead}this model rejects {rejected:.0%} of its own scanners' scans re-saved at {at}"
    return out if any(out.values()) else None  # type: ignore[return-value]


def resampled_warning(block: dict[str, Any] | None, *, with_map: bool) -> dict[str, str] | None:
    """``resampled`` when the analysis found and undid an exact enlargement (``scan.resampling``)."""
    if not block:
        return None
    (hb, wb), (ha, wa) = block["size_before"], block["size_after"]
    fr, fc = block["factor"]
    maps = ("the maps are drawn on the file as it is (its enlarged pixels, which the model was not made for)"
            if with_map else "no map was computed")
    return {
        "code": "resampled",
        "message": f"the file ({wa} x {ha} px) is an enlargement of a {wb} x {hb} px image (factor {fc:g} x {fr:g}, "
                   f"{block['kernel']} interpolation): re-synthesised from that grid it differs from the file by "
                   f"{block['residual_sd']:.3f} grey levels RMS, the rounding floor being {block['floor_sd']:.3f}. "
                   f"The vote, the unknown score and the verdict were computed on the restored {wb} x {hb} px grid "
                   f"(the evidence file is unchanged); {maps}",
    }


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
