"""The model card's "Delivery chain" section, from the manifest's ``delivery_chain_measured``.

``benchmarks/bench_delivery.py --store-in`` measures how a model's verdicts hold when
questioned scans were re-saved (JPEG re-compression, resampling) and stores the figures
in the manifest; input gating quotes them (:mod:`scanlab.core.evidence.gating`) and the
card shows them here. A model without the block says that nothing was measured.
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
        return lines + ["- Not measured for this model: how its verdicts hold on re-compressed or resampled "
                        "scans is unknown."]
    lines += [
        f"- Measured with `{d.get('benchmark')}` at commit {d.get('commit')} ({d.get('measured')}): "
        f"{d.get('known_scans')} fresh scans of the known scanners ({d.get('known_set')}) and "
        f"{d.get('unseen_scans')} scans of unseen scanners ({d.get('unseen_set')}); JPEG: {d.get('jpeg')}; "
        f"resampling: {d.get('resample')}.",
        "",
        "| scans | known: right | known: wrong scanner | known: unknown or inconclusive | unseen: rejected |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, r in rows.items():
        cells = [r.get(k) for k in ("known_right", "known_wrong", "known_unknown_or_inconclusive", "unseen_rejected")]
        lines.append(f"| {name} | " + " | ".join(f"{100 * c:.0f}%" if isinstance(c, (int, float)) else "n/a"
                                                 for c in cells) + " |")
    return lines + [
        "",
        "These are the verdicts before the delivery-chain rule, which reads them: a questioned JPEG that looks "
        "re-compressed, or lies outside the training JPEG qualities, is answered `inconclusive` instead of a scanner "
        "when the JPEG row at least as harsh as the file shows any wrong attribution, and instead of `unknown` when "
        "that row rejects more than 5% of the known scanners' scans (docs/formats.md, section 3).",
    ]
