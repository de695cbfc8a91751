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


def _run(argv: list[str] | None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        from ._demo import tell

        return tell(sys.stdout)
    if args.command == "check":
        from ._cli_check import command as run_check

        return run_check(args)
    parser.print_help()
    return 2


def main(argv: list[str] | None = None) -> int:
    """Run one command and return its exit status.

    A reader that stops early (``gradproof demo | head``) ends the output quietly, as
    the Python documentation recommends. The status is then the command's own when it
    had finished (``gradproof check`` prints its report last, after the check, and still
    writes ``--html``/``--json``), else 1, Python's status for a closed pipe.
    """
    from ._cli_check import stdout_to_devnull

    code = 1
    try:
        code = _run(argv)
        sys.stdout.flush()  # now, not at exit, where a closed pipe can no longer be caught
    except BrokenPipeError:
        stdout_to_devnull()
    except KeyboardInterrupt:  # Ctrl-C: one line, not a traceback; the shell's status 130
        print("gradproof: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
