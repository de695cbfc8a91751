"""``gradproof check``: check a user's own cost and gradient without writing a script."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib
import importlib.util
import os
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ._errors import CostError, GradientSpecError, WorkerError

DESCRIPTION = """\
Check the gradient of your own cost function and print the report.

TARGET names the cost: FILE.py:FUNCTION or package.module:FUNCTION.
--params and --grads name objects the same way (or :NAME for one beside the
cost, or a FILE.npz of arrays). A params object that is a function is called
with no arguments; a grads object that is a function is called as grads(params).
FILE.py may import modules that sit beside it, with or without --workers.

Exit status: 0 the gradient is right, 1 it is wrong, 2 bad usage, a cost or
file that raised, a failed worker or an output file that cannot be written.
A closed output pipe (gradproof check ... | head) does not change it.

Example:
  gradproof check model.py:cost --params :params --grads :backward
"""


class UsageError(Exception):
    """Bad command-line input; the message says what to write instead."""


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "check",
        help="check the gradient of your own cost function",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("target", metavar="TARGET", help="the cost: FILE.py:FUNCTION or module:FUNCTION")
    p.add_argument("--params", default=":params", help="params object (default :params)")
    p.add_argument("--grads", default=":grads", help="gradient object or function (default :grads)")
    p.add_argument(
        "--method",
        default="central",
        help="finite differences: central (default), forward, backward, complex or richardson",
    )
    p.add_argument("--eps", type=float, default=None, help="fixed step (default: automatic)")
    p.add_argument(
        "--tol",
        type=float,
        default=1e-7,
        help="bound on the relative difference |g - g~| / (|g| + |g~|) (default 1e-7)",
    )
    p.add_argument(
        "--mode",
        default="auto",
        help="auto (default: full when it takes at most 30 s, else directional, or sample "
        "with a method other than central), full, "
        "sample or directional",
    )
    p.add_argument("-k", type=int, default=None, help="coordinates or directions per parameter")
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the sampled coordinates or directions"
    )
    p.add_argument("--workers", type=int, default=None, help="worker processes")
    p.add_argument("--html", metavar="PATH", help="also write the report as an HTML page")
    p.add_argument(
        "--json",
        metavar="PATH",
        help="also write the report as JSON ('-': to stdout, the table then to stderr)",
    )
    p.add_argument("--no-color", action="store_true", help="plain text even on a terminal")


def stdout_to_devnull() -> None:
    """After a closed pipe: send what is still buffered, and any later output, nowhere.

    The recipe in the Python documentation (signal module, "Note on SIGPIPE"):
    without it, the interpreter's final flush fails once more and prints a traceback.
    """
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return  # not a real file (captured output): nothing is buffered at the OS level
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


class _UserCode:
    """Loads the user's files for one command and undoes what that took when it ends.

    A FILE.py is loaded once (the cost, params and grads share its globals) under a
    private module name, and its folder stays first on ``sys.path`` for the whole
    command, as ``python FILE.py`` would have it: so ``import mynet`` beside it works,
    also inside the cost while it runs. Worker processes started with "spawn" get the
    parent's ``sys.path``, so they find ``mynet`` too; the file's own functions and
    classes are sent to them by value (cloudpickle), since the private name is not
    importable there.
    """

    def __init__(self) -> None:
        self.modules: dict[Path, Any] = {}

    def load(self, where: str) -> Any:
        if where.endswith(".py"):
            return self._load_file(where)
        return self._import(where)

    def _load_file(self, where: str) -> Any:
        path = Path(where)
        if not path.is_file():
            raise UsageError(f"no file {where!r}; write FILE.py:NAME with a path to a Python file")
        resolved = path.resolve()
        if resolved in self.modules:
            return self.modules[resolved]
        folder = str(resolved.parent)
        if folder not in sys.path:
            sys.path.insert(0, folder)
        name = f"_gradproof_user_{len(self.modules)}_{abs(hash(resolved)):x}"
        spec = importlib.util.spec_from_file_location(name, resolved)
        if spec is None or spec.loader is None:
            raise UsageError(f"cannot load {where!r} as Python; write FILE.py:NAME")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except (Exception, SystemExit) as exc:
            del sys.modules[name]
            raise UsageError(_import_failed(where, exc, resolved)) from exc
        self.modules[resolved] = module
        _pickle_by_value(module)
        return module

    def _import(self, where: str) -> Any:
        here = os.getcwd()
        if here not in sys.path and "" not in sys.path:
            sys.path.insert(0, here)  # as under python -m: modules in this folder import
        try:
            return importlib.import_module(where)
        except ImportError as exc:
            missing = getattr(exc, "name", None)
            if missing and (where == missing or where.startswith(missing + ".")):
                raise UsageError(
                    f"cannot import {where!r} ({exc}); write FILE.py:NAME, or "
                    "package.module:NAME for a module Python can import from here"
                ) from exc
            raise UsageError(_import_failed(where, exc, None)) from exc
        except (Exception, SystemExit) as exc:
            raise UsageError(_import_failed(where, exc, None)) from exc

    def close(self) -> None:
        for module in self.modules.values():
            with contextlib.suppress(Exception):
                _pickle_by_value(module, register=False)
            sys.modules.pop(module.__name__, None)
        self.modules.clear()


def _pickle_by_value(module: Any, register: bool = True) -> None:
    try:
        import cloudpickle
    except ImportError:  # pragma: no cover - a dependency; workers need it anyway
        return
    if register:
        cloudpickle.register_pickle_by_value(module)
    else:
        cloudpickle.unregister_pickle_by_value(module)


def _import_failed(where: str, exc: BaseException, path: Path | None) -> str:
    """One line: which file raised what, where, and how to see or fix it."""
    if isinstance(exc, SystemExit):
        return (
            f"loading {where} called sys.exit({exc.code!r}); put the script part of "
            "that file under if __name__ == '__main__':"
        )
    line = ""
    if isinstance(exc, SyntaxError):
        what = f"SyntaxError: {exc.msg}"
        if exc.filename and exc.lineno:
            line = f" ({Path(exc.filename).name}, line {exc.lineno})"
    else:
        what = f"{type(exc).__name__}: {exc}"
        if path is not None:  # the innermost line in the user's folder: theirs to fix
            frames = traceback.extract_tb(exc.__traceback__)
            mine = [f for f in frames if Path(f.filename).parent == path.parent]
            if mine:
                line = f" ({Path(mine[-1].filename).name}, line {mine[-1].lineno})"
    what = " ".join(what.split())  # one line, whatever the exception's message holds
    # Commands that show the whole traceback without running the file's __main__ part.
    if path is not None:
        show = f'python -c "import runpy; runpy.run_path({where!r})"'
    else:
        show = f'python -c "import {where}"'
    fix = f"fix that file ({show} shows the whole traceback)"
    if isinstance(exc, ModuleNotFoundError) and exc.name and path is not None:
        fix = f"install {exc.name!r}"
        if "." not in exc.name:
            fix += f" or put {exc.name}.py beside {where}"
    return f"loading {where} raised {what}{line}; {fix}"


@contextlib.contextmanager
def _user_code() -> Iterator[_UserCode]:
    """The user's code, importable from the user's folders for as long as the command runs."""
    saved_path = list(sys.path)
    code = _UserCode()
    try:
        yield code
    finally:
        code.close()
        sys.path[:] = saved_path


def _resolve(spec: str, default_module: str | None, code: _UserCode) -> Any:
    if spec.endswith(".npz"):
        if not Path(spec).is_file():
            raise UsageError(f"no file {spec!r}")
        try:
            with np.load(spec) as data:
                return {key: data[key] for key in data.files}
        except (OSError, ValueError) as exc:
            raise UsageError(
                f"cannot read {spec!r} as .npz arrays ({exc}); save it with "
                "np.savez(path, W1=..., b1=...)"
            ) from exc
    where, sep, name = spec.rpartition(":")
    if not sep or not name:
        raise UsageError(f"{spec!r} names no object; write FILE.py:NAME, module:NAME or :NAME")
    source = where or default_module
    if source is None:
        raise UsageError(f"{spec!r} has no file or module; write FILE.py:{name}")
    module = code.load(source)
    if not hasattr(module, name):
        public = sorted(n for n in vars(module) if not n.startswith("_"))[:12]
        raise UsageError(f"{source} has no {name!r}; it has: {', '.join(public)}")
    return getattr(module, name)


def _call(fn: Any, what: str, *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception as exc:
        name = getattr(fn, "__name__", "")
        raise UsageError(f"{what} {name} raised {type(exc).__name__}: {exc}") from exc


def _guarded(grads_fn: Any) -> Any:
    def grads(p: Any) -> Any:
        return _call(grads_fn, "the gradient function", p)

    return grads


def _cannot_write(option: str, path: str, why: str, fix: str) -> UsageError:
    return UsageError(f"cannot write {option} {path}: {why}; {fix}")


def _check_writable(option: str, path: str, example: str) -> None:
    """Fail now, before the check runs, if the report could not be saved at ``path``."""
    target = Path(path)
    if target.is_dir():
        raise _cannot_write(
            option, path, "it is a folder", f"give a file path such as {target / example}"
        )
    folder = target.parent
    if not folder.exists():
        raise _cannot_write(
            option,
            path,
            f"folder {str(folder)!r} does not exist",
            f"create it first (mkdir -p {folder}) or write to an existing folder",
        )
    if not folder.is_dir():
        raise _cannot_write(
            option,
            path,
            f"{str(folder)!r} is a file, not a folder",
            "give a path inside a folder",
        )
    existed = target.exists()
    try:
        with open(target, "a", encoding="utf-8"):
            pass  # opens for writing without changing an existing file
    except OSError as exc:
        raise _cannot_write(
            option, path, exc.strerror or str(exc), "choose a path you can write to"
        ) from exc
    if not existed:
        target.unlink(missing_ok=True)


def _check_outputs(args: argparse.Namespace) -> None:
    if args.html == "-":
        raise UsageError("--html needs a file path (stdout takes the table, or --json -)")
    if args.html and args.json and Path(args.html).resolve() == Path(args.json).resolve():
        raise UsageError(f"--html and --json both name {args.html}; give them different files")
    if args.html:
        _check_writable("--html", args.html, "report.html")
    if args.json and args.json != "-":
        _check_writable("--json", args.json, "report.json")


def _what(args: argparse.Namespace) -> str:
    """What was checked, and when, for the HTML page's heading."""
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    return f"gradproof check {args.target} (params {args.params}, grads {args.grads}), {when}"


def _write_outputs(args: argparse.Namespace, report: Any) -> None:
    for option, path, write in (
        ("--html", args.html, lambda p: report.save_html(p, _what(args))),
        (
            "--json",
            args.json,
            lambda p: Path(p).write_text(report.to_json(indent=2) + "\n", encoding="utf-8"),
        ),
    ):
        if not path or path == "-":
            continue
        try:
            write(path)
        except OSError as exc:
            raise _cannot_write(
                option, path, exc.strerror or str(exc), "choose a path you can write to"
            ) from exc


def _show(report: Any, color: bool | None, json_out: bool = False) -> None:
    """Print the report (to stderr when stdout carries its JSON, ``json_out``); a reader
    that closed the pipe early (| head) is not an error."""
    try:
        if json_out:
            report.show(file=sys.stderr, color=color)
            sys.stdout.write(report.to_json(indent=2) + "\n")
        else:
            report.show(color=color)
        sys.stdout.flush()
    except BrokenPipeError:
        stdout_to_devnull()


def command(args: argparse.Namespace) -> int:
    from ._check import check

    try:
        where = args.target.rpartition(":")[0]
        if not where:
            raise UsageError(f"TARGET {args.target!r} must be FILE.py:FUNCTION or module:FUNCTION")
        _check_outputs(args)
        with _user_code() as code:
            cost = _resolve(args.target, None, code)
            if not callable(cost):
                raise UsageError(f"{args.target} is a {type(cost).__name__}, not a function")
            params = _resolve(args.params, where, code)
            if callable(params) and not isinstance(params, (dict, np.ndarray)):
                params = _call(params, "the params function")
            grads = _resolve(args.grads, where, code)
            if callable(grads) and not isinstance(grads, (dict, np.ndarray)):
                grads = _guarded(grads)
            report = check(
                cost,
                params,
                grads,
                method=args.method,
                eps=args.eps,
                tol=args.tol,
                mode=args.mode,
                k=args.k,
                seed=args.seed,
                executor=args.workers,
            )
        _show(report, False if args.no_color else None, json_out=args.json == "-")
        _write_outputs(args, report)
    except (UsageError, GradientSpecError, CostError, WorkerError) as exc:
        # One line however the message was written: the cost's own exception may span several.
        message = " ".join(part.strip() for part in str(exc).splitlines() if part.strip())
        with contextlib.suppress(BrokenPipeError):  # 2>&1 | head: the status still says it
            print(f"gradproof check: {message}", file=sys.stderr)
        return 2
    return 0 if report.passed else 1
