"""``python -m scanlab`` and the ``scanlab`` console script."""

from __future__ import annotations

import sys


def main() -> None:
    """Run the command line (no arguments opens the desktop app)."""
    # torch is imported (by the CLI's services) before PySide6 on purpose: recent
    # torch builds on Windows fail to load c10.dll when imported after Qt
    # (reported against pytorch/pytorch#166628).
    from scanlab.cli import main as cli_main

    sys.exit(cli_main())


if __name__ == "__main__":
    main()
