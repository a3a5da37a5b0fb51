"""The ``fewops`` command: one module per subcommand, each a thin layer over the Python API.

Each subcommand module has ``add_parser(subparsers)`` (which sets ``run`` as the parser's
default) and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import sys

from fewops.cli import compress, data, demo, export, lcc

COMMANDS = (demo, compress, data, lcc, export)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fewops",
        description="Compress neural networks for FPGAs and ASICs: code, count, simulate, export.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    if argv[:1] == ["compress"]:
        # compress's options depend on --method: it parses its own arguments.
        return _guarded(lambda: compress.main(argv[1:]))
    args = parser.parse_args(argv)
    return _guarded(lambda: int(args.run(args) or 0))


def _guarded(run) -> int:
    """Run a command; a user error (bad value, missing file) is one line and exit status 2."""
    try:
        return run()
    except (ValueError, TypeError, FileNotFoundError) as exc:
        print(f"fewops: error: {exc}", file=sys.stderr)
        return 2
    except (MemoryError, OverflowError, RecursionError) as exc:
        # The readers bound every size they are given; one of these here means an input (or an
        # option) asked for more than the machine has, and it is reported, not a traceback.
        what = (
            "ran out of memory"
            if isinstance(exc, MemoryError)
            else "met a number too large to represent"
            if isinstance(exc, OverflowError)
            else "met a structure nested too deeply"
        )
        print(f"fewops: error: the command {what} ({exc or type(exc).__name__}).", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
