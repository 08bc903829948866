"""The model card's "Delivery chain" section, from the manifest's ``delivery_chain_measured``.

``scanlab train`` measures every model it trains on its own test split, and
``benchmarks/bench_delivery.py --store-in`` any model on a benchmark's scans
(:mod:`scanlab.services.delivery_check`): how its verdicts hold when questioned scans were
re-saved (JPEG re-compression, resampling). Input gating quotes the figures
(:mod:`scanlab.core.evidence.gating`) and the card shows them here, saying which scans
they come from. A model without the block says that nothing was measured, and why when
the training recorded it.
"""

from __future__ import annotations

from typing import Any


def delivery_card_lines(m: dict[str, Any]) -> list[str]:
    """Markdown lines: the per-transformation table, or one line saying it was not measured."""
    d = m.get("delivery_chain_measured") or {}
    ti = m.get("training_input") or {}
    lines = ["", "## Delivery chain (re-saved scans)", ""]
    if ti.get("recompressed_in_training"):
        rq = ti.get("recompressed_quality")
        lines.append("- Trained with scans re-compressed" + (f" at JPEG quality {rq[0]}-{rq[1]}" if rq else "")
                     + ", resampled and tone-changed (known scanners keep their label).")
    rows = d.get("rows") or {}
    if not rows:
        why = _NOT_MEASURED.get(str((m.get("training") or {}).get("delivery_check")), "")
        return lines + ["- Not measured for this model" + (f" ({why})" if why else "") + ": how its verdicts hold "
                        "on re-compressed or resampled scans is unknown."]
    lines += [f"- {_source(d)} JPEG: {d.get('jpeg')}; resampling: {d.get('resample')}."]
    if d.get("verdicts"):
        lines.append(f"- Verdicts as decided {d['verdicts']} (the rule that reads these figures was not applied "
                     "while measuring them).")
    na = d.get("not_analysed") or {}
    if na.get("count"):
        lines.append(f"- {na['count']} scan(s) could not be analysed after a transformation (e.g. too small once "
                     "resampled) and are left out of that row's shares.")
    lines += [
        "",
        "| scans | known: right | known: wrong scanner | known: unknown or inconclusive | unseen: rejected |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, r in ordered_rows(rows):
        cells = [r.get(k) for k in ("known_right", "known_wrong", "known_unknown_or_inconclusive", "unseen_rejected")]
        lines.append(f"| {name} | " + " | ".join(f"{100 * c:.0f}%" if isinstance(c, (int, float)) else "n/a"
                                                 for c in cells) + " |")
    # the bounds are DEFAULT_THRESHOLDS' (scanlab.core.evidence.verdict, which modelfile may not import)
    return lines + [
        "",
        "The delivery-chain verdict rule reads these figures: a questioned JPEG that looks re-compressed, or lies "
        "outside the training JPEG qualities, is answered `inconclusive` instead of a scanner when, in the JPEG row "
        "at least as harsh as the file, more than 1% of the attributions named a "
        "wrong scanner, and instead of `unknown` when that row rejects more than 5% of the known scanners' scans "
        "(docs/formats.md, section 3)."
        + (" The second half applies to every JPEG: the re-compression test misses most re-saves at nearby "
           "qualities, so a JPEG it passes may still be a known scanner's scan re-saved." if d.get("any_jpeg") else ""),
    ]


def ordered_rows(rows: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The rows from the mildest change to the harshest within each kind: as scanned, JPEG by falling
    quality, resampling by rising factor (the manifest stores them sorted by name)."""
    kinds = {"none": 0, "jpeg": 1, "resample": 2}

    def key(item: tuple[str, Any]) -> tuple[int, float, str]:
        r = item[1] if isinstance(item[1], dict) else {}
        p = r.get("parameter")
        p = float(p) if isinstance(p, (int, float)) else 0.0
        return kinds.get(str(r.get("kind")), 3), -p if r.get("kind") == "jpeg" else p, item[0]

    return sorted(rows.items(), key=key)


_NOT_MEASURED = {
    "off": "training was run with --no-delivery-check",
    "interrupted": "the check after training was cancelled; the model itself is complete",
    "no test split": "the training had no test split to measure on",
}


def _source(d: dict[str, Any]) -> str:
    """Where the figures come from, in one sentence."""
    head = f"Measured with `{d.get('benchmark')}` at {d.get('commit')} ({d.get('measured')}):"
    unseen = (f"{d.get('unseen_scans')} scans of unseen scanners ({d.get('unseen_set')})" if d.get("unseen_scans")
              else f"unseen scanners not measured ({d.get('unseen_set') or 'no scans of them'})")
    if str(d.get("benchmark", "")).startswith("scanlab train"):
        return (f"{head} the {d.get('known_scans')} scans of this model's test split (held out from training) "
                f"and {unseen}.")
    return (f"{head} {d.get('known_scans')} fresh scans of the known scanners ({d.get('known_set')}) and "
            f"{unseen}.")
