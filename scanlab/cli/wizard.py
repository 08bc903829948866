"""``scanlab wizard [DATA] [--screenshots DIR]``: the training wizard (desktop) or its headless page shots."""

from __future__ import annotations

import argparse
import json
import os
import sys

from scanlab.core.errors import ScanLabError


def cmd_wizard(a: argparse.Namespace) -> int:
    """Open the wizard, or with ``--screenshots`` drive it headless and save one PNG per page."""
    if a.screenshots and not any(os.environ.get(k) for k in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")):
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    if a.screenshots and not a.data_dir:
        raise ScanLabError("--screenshots needs a DATA folder to drive the wizard with")
    import torch  # noqa: F401 - before Qt (see scanlab.gui.app)

    try:
        from scanlab.gui.app import ensure_app, has_display
    except ImportError as e:
        raise ScanLabError(f"the desktop app is not available ({e})") from None
    if not has_display():
        raise ScanLabError("no display available; use 'scanlab train' or 'scanlab wizard DATA --screenshots DIR'")
    app = ensure_app()
    if a.screenshots:
        from scanlab.gui.wizard.shots import drive_wizard

        res = drive_wizard(a.data_dir, a.screenshots, epochs=a.epochs, base=a.base, name=a.name)
        print(json.dumps({"screenshots": res["screenshots"], "model": res["model"]}, indent=2))
        return 0
    from scanlab.gui.wizard.wizard import TrainingWizard

    wiz = TrainingWizard(a.data_dir or "")
    wiz.show()
    app.exec()  # type: ignore[attr-defined]
    print(wiz.page_named("save").saved_path or "", file=sys.stderr)
    return 0


def register(sp: argparse._SubParsersAction) -> None:
    """Add ``wizard`` to the ``scanlab`` sub-commands."""
    w = sp.add_parser("wizard", help="the training wizard (desktop); --screenshots drives it headless")
    w.add_argument("data_dir", nargs="?", default=None, metavar="DATA")
    w.add_argument("--screenshots", default=None, metavar="DIR", help="drive every page headless, one PNG per page")
    w.add_argument("--epochs", type=int, default=1, help="epochs when driving with --screenshots (default 1)")
    w.add_argument("--base", default=None, help="with --screenshots: default, none or a model path")
    w.add_argument("--name", default=None, help="with --screenshots: library name of the saved model")
    w.set_defaults(func=cmd_wizard)
