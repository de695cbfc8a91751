"""The ``gradproof`` command."""

from __future__ import annotations

import argparse
import sys

from . import __version__


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gradproof",
        description="Prove a backpropagation right, or show exactly where it is wrong.",
        epilog="Start with 'gradproof demo'. In Python: import gradproof as gp; gp.check(...).",
    )
    parser.add_argument("--version", action="version", version=f"gradproof {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    from ._cli_check import add_parser as add_check
    from ._demo import DESCRIPTION

    add_check(sub)
    sub.add_parser(
        "demo",
        help="the seed documents' story end to end: a planted bug caught, then fixed",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        from ._demo import run

        return run(sys.stdout)
    if args.command == "check":
        from ._cli_check import run as run_check

        return run_check(args)
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
