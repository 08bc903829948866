"""Entry point of the frozen ScanLab app (PyInstaller; see scanlab.spec).

``scanlab`` in the bundle is the whole command line: no arguments opens the desktop
app (without a display: one line, then the headless analysis of the sample), and
``scanlab selftest`` is the post-install check. One extra option:

    scanlab --smoke-test [OUT_DIR]    offscreen: analyse the bundled sample with the
                                      shipped model, write OUT_DIR/smoke.png and
                                      OUT_DIR/smoke.json (default ./scanlab-smoke), exit 0
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import sys  # noqa: E402


def main() -> int:
    """Dispatch ``--smoke-test``; everything else goes to the ``scanlab`` command line."""
    argv = sys.argv[1:]
    if argv[:1] == ["--smoke-test"]:
        # torch before Qt (see scanlab.gui.app.run_gui)
        import torch  # noqa: F401

        from scanlab.gui.smoke import run_smoke_test

        return run_smoke_test(argv[1] if len(argv) > 1 else "scanlab-smoke", started=STARTED)
    from scanlab.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
