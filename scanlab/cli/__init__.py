"""The ``scanlab`` command line (headless, scriptable; contract in DESIGN.md section 3).

Results go to stdout, progress to stderr (a bar on a terminal), errors to stderr
as one line ``scanlab: error: ...`` with exit code 2. Every output file is
written under a temporary name and renamed, so a failure leaves nothing partial.
One module per command group registers its sub-commands (``register(sp)``).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence

import scanlab
from scanlab.cli.common import eprint
from scanlab.core.errors import Cancelled, ScanLabError


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used to generate docs and tests)."""
    p = argparse.ArgumentParser(prog="scanlab", description="Scanner model identification and forgery maps.")
    p.add_argument("--version", action="version", version=f"scanlab {scanlab.__version__}")
    sp = p.add_subparsers(dest="command", metavar="COMMAND")
    from scanlab.cli import analyse, batch, case, gui, selftest, train, wizard

    for group in (train, analyse, gui):
        group.register(sp)
    try:
        from scanlab.cli.synth import register
    except ImportError:
        pass
    else:
        register(sp)
    for group in (selftest, wizard, case, batch):
        group.register(sp)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args_in = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not args_in:
        args_in = ["gui"]
    a = parser.parse_args(args_in)
    a.argv = args_in  # commands that print how to re-run themselves (batch --resume)
    # Pillow warns (a stray stderr line) about damaged EXIF blocks it then ignores;
    # the orientation is reported as unknown instead (see decoders.quiet_exif_warnings,
    # repeated here so that the CLI's start does not import the decoders)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.TiffImagePlugin")
    if not getattr(a, "func", None):
        parser.print_help()
        return 2
    try:
        return int(a.func(a) or 0)
    except Cancelled:
        eprint("scanlab: interrupted; no output written")
        return 130
    except KeyboardInterrupt:
        eprint("scanlab: interrupted; no output written")
        return 130
    except ScanLabError as e:
        eprint(f"scanlab: error: {e}")
        return 2
    except OSError as e:
        eprint(f"scanlab: error: {e.filename or ''}: {e.strerror or e}")
        return 2
    except MemoryError:
        eprint("scanlab: error: out of memory (try a smaller image or a larger stride)")
        return 2


