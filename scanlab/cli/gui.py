"""``scanlab gui``: the desktop app, or the same analysis headless where there is no display."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from scanlab.cli.analyse import cmd_map
from scanlab.cli.common import eprint
from scanlab.core.errors import ScanLabError


def _no_display() -> bool:
    """True on a Linux box with no screen and no explicit Qt platform."""
    return (
        sys.platform.startswith("linux")
        and not os.environ.get("DISPLAY")
        and not os.environ.get("WAYLAND_DISPLAY")
        and not os.environ.get("QT_QPA_PLATFORM")
    )


def _headless_fallback(a: argparse.Namespace) -> int:
    """No screen: analyse the files headless and write colour maps to ./scanlab-out/."""
    from scanlab.services.paths import sample_scans

    files = list(a.files) or sample_scans()[:1]
    eprint("scanlab: no display available; running the analysis headless instead "
            "(results below, maps in ./scanlab-out/)")
    if not files:
        raise ScanLabError("no display available and no file given")
    Path("scanlab-out").mkdir(exist_ok=True)
    rc = 0
    for f in files:
        ns = argparse.Namespace(image=f, output=f"scanlab-out/{Path(f).stem}_reliability.png", model=a.model,
                                sub="64", stride="4", label=None, engine=None, device="auto", json=False)
        try:
            rc |= cmd_map(ns)
        except ScanLabError as e:
            eprint(f"scanlab: error: {e}")
            rc = 2
    return rc


def cmd_gui(a: argparse.Namespace) -> int:
    if a.screenshot is None and _no_display():
        return _headless_fallback(a)
    try:
        from scanlab.gui.app import run_gui
    except ImportError as e:  # the desktop app is optional in headless installs
        raise ScanLabError(f"the desktop app is not available ({e})") from None
    return run_gui(list(a.files), screenshot=a.screenshot, model=a.model)


def register(sp: Any) -> None:
    """Add this group's commands to the top-level sub-parsers."""
    g = sp.add_parser("gui", help="open the desktop app")
    g.add_argument("files", nargs="*", metavar="FILE")
    g.add_argument("-m", "--model", default=None)
    g.add_argument("--screenshot", default=None, metavar="OUT.png",
                   help="wait for the first analysis, save a screenshot and exit")
    g.set_defaults(func=cmd_gui)
