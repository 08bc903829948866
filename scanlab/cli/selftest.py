"""``scanlab selftest``: the shipped model's figures reproduced on this install and device.

What a lab runs after installing (also offered by the desktop bundle). Exit codes
(docs/formats.md section 1): 0 PASS, 1 FAIL (the differing figures are printed),
2 bad input (self-test set or model missing, device unavailable).
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def cmd_selftest(a: argparse.Namespace) -> int:
    """Handler of ``scanlab selftest``."""
    from scanlab.services.selftest import format_report, run_selftest
    from scanlab.terminal import progress_bar

    with progress_bar("self-test", a.json) as bar:
        result = run_selftest(model=a.model, device=a.device, progress=bar)
    print(json.dumps(result, indent=2) if a.json else format_report(result))
    return 0 if result["passed"] else 1


def register(subparsers: Any) -> None:
    """Add the ``selftest`` sub-command to the main parser's ``subparsers``."""
    s = subparsers.add_parser(
        "selftest",
        help="check the shipped model's figures on this install and device (PASS/FAIL)",
        description="Score the small validation set shipped with ScanLab and compare with the "
        "figures measured when it was made and with the model card. Exit 0 PASS, 1 FAIL, 2 bad input.",
    )
    s.add_argument("-m", "--model", default=None, help="model file (default: the shipped model; the "
                   "reference figures hold for it only)")
    s.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default auto)")
    s.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    s.set_defaults(func=cmd_selftest)
