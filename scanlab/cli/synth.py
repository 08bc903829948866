"""``scanlab synth`` and ``scanlab forge``: the virtual scanner bank on the command line.

:func:`register` adds both sub-commands to the main parser's sub-parsers. Handlers
return an exit code; bad input raises :class:`~scanlab.core.errors.ScanLabError`
(one line), which the main CLI prints as ``scanlab: error: ...`` with exit code 2.
Progress goes to stderr (a tqdm bar on a terminal), a one-line summary to stdout.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from scanlab.core.errors import ScanLabError
from scanlab.terminal import progress_bar


def cmd_synth(a: argparse.Namespace) -> int:
    """Handler of ``scanlab synth``."""
    from scanlab.core.synth.bank import write_bank
    from scanlab.core.synth.content import require_photographs

    require_photographs("scanlab synth")
    with progress_bar("synth") as bar:
        meta = write_bank(
            a.out, a.scanners, a.images, size=a.size, seed=a.seed, bank_name=a.bank, units=a.units,
            force=a.force, extra_content=tuple(a.content), progress=bar,
        )
    names = [s["name"] for s in meta["scanners"]]
    if a.json:
        print(json.dumps({"out": a.out, "bank": a.bank, "seed": a.seed, "scanners": names,
                          "images_per_scanner": a.images, "size": a.size}))
    else:
        print(f"wrote {len(names) * a.images} scans of {len(names)} scanners ({', '.join(names)}) to {a.out}")
    return 0


def cmd_forge(a: argparse.Namespace) -> int:
    """Handler of ``scanlab forge``."""
    from scanlab.core.synth.content import require_photographs
    from scanlab.core.synth.forge import write_forgeries

    require_photographs("scanlab forge")
    with progress_bar("forge") as bar:
        manifest = write_forgeries(
            a.out, a.n, a.kind, seed=a.seed, bank_name=a.bank, size=a.size, n_scanners=a.scanners,
            force=a.force, copy=a.copy, progress=bar,
        )
    if a.json:
        print(json.dumps({"out": a.out, "n": len(manifest), "kind": a.kind, "manifest": "manifest.json"}))
    else:
        print(f"wrote {len(manifest)} {a.kind} forgeries with masks and manifest.json to {a.out}")
    return 0


def _positive_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def register(subparsers: Any) -> None:
    """Add the ``synth`` and ``forge`` sub-commands to ``subparsers``."""
    s = subparsers.add_parser(
        "synth",
        help="write a virtual scanner bank (one folder per scanner)",
        description="Simulate flatbed scanners on real photographs and rendered documents. "
        "Scanner identities depend only on --bank; --seed changes the content.",
    )
    s.add_argument("out", metavar="OUT", help="output folder (OUT/<scanner>/*)")
    s.add_argument("--scanners", type=_positive_int, default=10, help="number of scanners (default 10)")
    s.add_argument("--images", type=_positive_int, default=20, help="images per scanner (default 20)")
    s.add_argument("--size", type=_positive_int, default=512, help="side of each scan in px (default 512)")
    s.add_argument("--seed", type=int, default=0, help="content seed (default 0)")
    s.add_argument("--bank", default="default", help="bank name: fixes the scanners (default: default)")
    s.add_argument("--units", type=_positive_int, default=2, help="physical units per scanner model (default 2)")
    s.add_argument("--content", action="append", default=[], metavar="DIR",
                   help="extra folder of photographs/scans to use as content (repeatable)")
    s.add_argument("--force", action="store_true", help="write into an existing non-empty folder")
    s.add_argument("--json", action="store_true", help="print a JSON summary")
    s.set_defaults(func=cmd_synth)

    f = subparsers.add_parser(
        "forge",
        help="write forged scans (splice or copy-move) with exact masks",
        description="Forge virtual scans: splices paste regions from other scanners' scans, "
        "copy-moves copy within one scan; the result is re-saved in the host scanner's format.",
    )
    f.add_argument("out", metavar="OUT", help="output folder (images/, masks/, manifest.json)")
    f.add_argument("--n", type=_positive_int, default=10, help="number of forgeries (default 10)")
    f.add_argument("--kind", choices=("splice", "copymove"), default="splice")
    f.add_argument("--copy", default="region", choices=("region", "digit", "word", "stamp", "blank", "doc"),
                   help="copy-move style: region (default: a large region of any page) or a document forgery "
                   "(a duplicated digit or word, a copied stamp/signature, blank paper over a word; doc = all four "
                   "in turn), re-saved as JPEG 75/85/95, in part rotated or scaled")
    f.add_argument("--seed", type=int, default=0, help="content seed (default 0)")
    f.add_argument("--bank", default="default", help="bank name (default: default)")
    f.add_argument("--scanners", type=_positive_int, default=10, help="scanners of the bank to use (default 10)")
    f.add_argument("--size", type=_positive_int, default=768, help="side of each scan in px (default 768)")
    f.add_argument("--force", action="store_true", help="write into an existing non-empty folder")
    f.add_argument("--json", action="store_true", help="print a JSON summary")
    f.set_defaults(func=cmd_forge)


__all__ = ["ScanLabError", "cmd_forge", "cmd_synth", "register"]
