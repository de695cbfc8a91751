"""``gradproof check``: check a user's own cost and gradient without writing a script."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ._errors import GradientSpecError

DESCRIPTION = """\
Check the gradient of your own cost function and print the report.

TARGET names the cost: FILE.py:FUNCTION or package.module:FUNCTION.
--params and --grads name objects the same way (or :NAME for one beside the
cost, or a FILE.npz of arrays). A params object that is a function is called
with no arguments; a grads object that is a function is called as grads(params).

Exit status: 0 the gradient is right, 1 it is wrong, 2 bad usage.

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
    p.add_argument("--method", default="central")
    p.add_argument("--eps", type=float, default=None, help="fixed step (default: automatic)")
    p.add_argument("--tol", type=float, default=1e-7)
    p.add_argument("--mode", default="full", help="full, sample, directional or auto")
    p.add_argument("-k", type=int, default=None, help="coordinates or directions per parameter")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=None, help="worker processes")
    p.add_argument("--html", metavar="PATH", help="also write the report as an HTML page")
    p.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    p.add_argument("--no-color", action="store_true", help="plain text even on a terminal")


def _load_module(where: str) -> Any:
    if where.endswith(".py"):
        path = Path(where)
        if not path.is_file():
            raise UsageError(f"no file {where!r}; write FILE.py:NAME with a path to a Python file")
        name = f"_gradproof_user_{abs(hash(path.resolve()))}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.path.insert(0, str(path.resolve().parent))
        try:
            spec.loader.exec_module(module)
        finally:
            sys.path.pop(0)
        return module
    try:
        return importlib.import_module(where)
    except ImportError as exc:
        raise UsageError(
            f"cannot import {where!r} ({exc}); write FILE.py:NAME or package.module:NAME"
        ) from exc


def _resolve(spec: str, default_module: str | None) -> Any:
    if spec.endswith(".npz"):
        if not Path(spec).is_file():
            raise UsageError(f"no file {spec!r}")
        with np.load(spec) as data:
            return {key: data[key] for key in data.files}
    where, sep, name = spec.rpartition(":")
    if not sep or not name:
        raise UsageError(f"{spec!r} names no object; write FILE.py:NAME, module:NAME or :NAME")
    where = where or default_module
    if where is None:
        raise UsageError(f"{spec!r} has no file or module; write FILE.py:{name}")
    module = _load_module(where)
    if not hasattr(module, name):
        public = sorted(n for n in vars(module) if not n.startswith("_"))[:12]
        raise UsageError(f"{where} has no {name!r}; it has: {', '.join(public)}")
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


def run(args: argparse.Namespace) -> int:
    from ._check import check

    try:
        where = args.target.rpartition(":")[0]
        if not where:
            raise UsageError(f"TARGET {args.target!r} must be FILE.py:FUNCTION or module:FUNCTION")
        cost = _resolve(args.target, None)
        if not callable(cost):
            raise UsageError(f"{args.target} is a {type(cost).__name__}, not a function")
        params = _resolve(args.params, where)
        if callable(params) and not isinstance(params, (dict, np.ndarray)):
            params = _call(params, "the params function")
        grads = _resolve(args.grads, where)
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
    except (UsageError, GradientSpecError) as exc:
        print(f"gradproof check: {exc}", file=sys.stderr)
        return 2
    report.show(color=False if args.no_color else None)
    if args.html:
        report.save_html(args.html)
    if args.json:
        Path(args.json).write_text(report.to_json(indent=2) + "\n", encoding="utf-8")
    return 0 if report.passed else 1
