"""The model card's reference-coverage lines and the advice ``scanlab train`` prints.

From the manifest's ``training_input.reference_coverage`` (written by ``scanlab train``;
:mod:`scanlab.core.evidence.coverage` computes it and the verdict rule reads it): the grey
levels each class's training windows span, and which class's references leave out pages
the others show, so the lab knows which references to add.
"""

from __future__ import annotations

from typing import Any

# the verdict rule's bound (evidence.coverage.MAX_UNCOVERED_SHARE, chosen by measurement there) when the
# manifest does not set it
DEFAULT_SHARE = 0.5
GAP_LEVELS = 15  # grey levels a class's range must fall short of the others' before the advice names it


def coverage_advice(cov: dict[str, Any] | None) -> list[str]:
    """One sentence per class whose training windows stop well short of the brightest or darkest of the others."""
    ranges = (cov or {}).get("ranges") or {}
    if len(ranges) < 2:
        return []
    out = []
    for name, (lo, hi) in ranges.items():
        others = [r for k, r in ranges.items() if k != name]
        top, bottom = max(r[1] for r in others), min(r[0] for r in others)
        short = []
        if top - hi >= GAP_LEVELS:
            short.append(f"brighter than grey {hi:.0f} (other scanners' references reach {top:.0f})")
        if lo - bottom >= GAP_LEVELS:
            short.append(f"darker than grey {lo:.0f} (others' reach {bottom:.0f})")
        if short:
            out.append(f"{name}: no reference windows {' or '.join(short)}; questioned pages like that will be "
                       f"inconclusive until references of {name} on such pages are added")
    return out


def coverage_card_lines(m: dict[str, Any]) -> list[str]:
    """Markdown lines for the card's "What this model knows" section (none when not recorded)."""
    ti = m.get("training_input") or {}
    cov = ti.get("reference_coverage") or {}
    ranges = cov.get("ranges") or {}
    if not ranges:
        return []
    share = ((m.get("open_set") or {}).get("thresholds") or {}).get("max_uncovered_share", DEFAULT_SHARE)
    lines = ["- Reference coverage (" + str(cov.get("measure")) + ", percentiles "
             + "-".join(f"{p:g}" for p in cov.get("percentiles") or []) + "): "
             + ", ".join(f"{k} {lo:.0f}-{hi:.0f}" for k, (lo, hi) in ranges.items())
             + f". A questioned scan with more than {share:.0%} of its windows with evidence outside one "
             "class's range is `inconclusive` (that scanner was never seen on such a page)."]
    return lines + [f"- {a}." for a in coverage_advice(cov)]
