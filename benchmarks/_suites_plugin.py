"""pytest plugin for ``benchmarks/suites.py``: each checker call run by the original and gradproof.

Loaded with ``-p _suites_plugin`` (``benchmarks/`` on ``PYTHONPATH``); the
project's files are not edited. At configure time, and again after
collection, the checkers ``torch.autograd.gradcheck``/``gradgradcheck`` (also
as attributes of the module ``torch.autograd.gradcheck``) and JAX's
``check_grads`` (``jax.test_util``, ``jax._src.public_test_util``,
``jax._src.test_util``) are replaced by a wrapper, and so is every
module-global name bound to one of them in the collected test modules, in the
modules under the project's checkout and in the project's own packages.

The wrapper, for each call: copies the tensor arguments, runs the original
(timed), then gradproof's drop-in on the copies (timed, from the same RNG
state, with its own time limit and its warnings recorded rather than raised),
restores the RNG state the original left, records both outcomes and returns
or raises what the original did: the test runs as it would under the
original alone. A call made from inside a checker (torch's gradgradcheck
calls gradcheck) goes to the original only.

One JSON record per test is appended to ``$GRADPROOF_SUITES_RESULTS``: the
test's pytest outcome (``original``), its outcome had gradproof been the
checker (``gradproof``, with ``reason``) and every call's two outcomes.

Environment:
    GRADPROOF_SUITES_RESULTS: the JSON-lines file to append to (required).
    GRADPROOF_SUITES_FRAMEWORK: ``torch`` or ``jax``, imported at configure time.
    GRADPROOF_SUITES_PACKAGES: comma-separated module prefixes (the project's
        packages, e.g. ``kornia``) whose globals are patched too.
    GRADPROOF_SUITES_EVERY: run every n-th test only (in collection order, after -k).
    GRADPROOF_SUITES_TIMEOUT: seconds a test may run (gradproof's time not
        counted) and, separately, each gradproof call (default 300).
    GRADPROOF_SUITES_PROFILE: a file to write a cProfile of the drop-in's calls
        to (all of them together), for ``python -m pstats``.
"""

from __future__ import annotations

import atexit
import cProfile
import functools
import importlib
import json
import os
import random
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

# (module, attribute) of each checker -> gradproof's drop-in, as (module, attribute).
CHECKERS = {
    ("torch.autograd", "gradcheck"): ("gradproof.torch", "gradcheck"),
    ("torch.autograd", "gradgradcheck"): ("gradproof.torch", "gradgradcheck"),
    ("torch.autograd.gradcheck", "gradcheck"): ("gradproof.torch", "gradcheck"),
    ("torch.autograd.gradcheck", "gradgradcheck"): ("gradproof.torch", "gradgradcheck"),
    ("jax.test_util", "check_grads"): ("gradproof.jax", "check_grads"),
    ("jax._src.public_test_util", "check_grads"): ("gradproof.jax", "check_grads"),
    ("jax._src.test_util", "check_grads"): ("gradproof.jax", "check_grads"),
}
# Exceptions that are a checker's verdict "wrong gradient"; anything else is an error.
VERDICTS = ("GradientError", "GradcheckError", "AssertionError")
MESSAGE_CHARS = 4000

RESULTS = Path(os.environ["GRADPROOF_SUITES_RESULTS"])
TIMEOUT = float(os.environ.get("GRADPROOF_SUITES_TIMEOUT", "300"))
EVERY = int(os.environ.get("GRADPROOF_SUITES_EVERY", "1"))
PACKAGES = tuple(p for p in os.environ.get("GRADPROOF_SUITES_PACKAGES", "").split(",") if p)

PROFILE = os.environ.get("GRADPROOF_SUITES_PROFILE")
_profiler = cProfile.Profile() if PROFILE else None
if _profiler is not None:
    atexit.register(lambda: _profiler.dump_stats(PROFILE))

_wrappers: dict[Any, Any] = {}  # original checker -> its wrapper
_busy = False  # inside a checker call: nested calls go to the original alone
_test: dict[str, Any] | None = None  # the running test's record


class Timeout(BaseException):
    """A test, or one gradproof call, ran past GRADPROOF_SUITES_TIMEOUT."""


def _alarm(signum, frame):
    raise Timeout(f"over the {TIMEOUT:g} s limit")


# --- patching ------------------------------------------------------------


def _wrapper_for(original, dropin_at: tuple[str, str]):
    if original not in _wrappers:
        module, attr = dropin_at
        dropin = getattr(importlib.import_module(module), attr)
        name = f"{original.__module__}.{original.__name__}"
        _wrappers[original] = functools.wraps(original)(
            functools.partial(_side_by_side, name, original, dropin)
        )
    return _wrappers[original]


def _patch(modules=()) -> None:
    """Replace the checkers, and the globals bound to them in the project's modules."""
    for (module_name, attr), dropin_at in CHECKERS.items():
        module = sys.modules.get(module_name)
        current = getattr(module, attr, None)
        if callable(current) and current not in _wrappers.values():
            setattr(module, attr, _wrapper_for(current, dropin_at))
    root = str(Path.cwd().resolve())
    project = [
        m
        for m in list(sys.modules.values())
        if m.__name__.split(".")[0] in PACKAGES
        or str(getattr(m, "__file__", None) or "").startswith(root)
    ]
    for module in {id(m): m for m in [*project, *modules]}.values():
        for name, value in list(vars(module).items()):
            try:
                wrapper = _wrappers.get(value)
            except TypeError:  # unhashable value
                continue
            if wrapper is not None:
                setattr(module, name, wrapper)


def pytest_configure(config):
    signal.signal(signal.SIGALRM, _alarm)
    framework = os.environ.get("GRADPROOF_SUITES_FRAMEWORK")
    if framework:
        importlib.import_module(framework)
        importlib.import_module("jax.test_util" if framework == "jax" else "torch.autograd")
    _patch()


@pytest.hookimpl(trylast=True)  # after -k has deselected
def pytest_collection_modifyitems(config, items):
    if EVERY > 1:
        config.hook.pytest_deselected(items=[it for i, it in enumerate(items) if i % EVERY])
        items[:] = items[::EVERY]
    _patch({id(m): m for m in (getattr(item, "module", None) for item in items) if m}.values())


# --- one checker call ------------------------------------------------------


def _copy(value):
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        return value.detach().clone().requires_grad_(value.requires_grad)
    if type(value) in (list, tuple):
        return type(value)(_copy(v) for v in value)
    if type(value) is dict:
        return {k: _copy(v) for k, v in value.items()}
    return value


def _rng_state():
    torch = sys.modules.get("torch")
    return (
        random.getstate(),
        np.random.get_state(),
        torch.random.get_rng_state() if torch is not None else None,
    )


def _set_rng_state(state) -> None:
    python, numpy, torch_state = state
    random.setstate(python)
    np.random.set_state(numpy)
    if torch_state is not None:
        sys.modules["torch"].random.set_rng_state(torch_state)


def _raised(exc: BaseException) -> dict[str, Any]:
    names = [c.__name__ for c in type(exc).__mro__]
    return {
        "status": "fail" if any(n in VERDICTS for n in names) else "error",
        "type": type(exc).__name__,
        "refusal": "GradientSpecError" in names,
        "message": str(exc)[:MESSAGE_CHARS],
    }


def _returned(value) -> dict[str, Any]:
    if value is False:
        return {"status": "fail", "type": None, "message": "returned False"}
    return {"status": "pass"}


def _run_gradproof(dropin, args, kwargs) -> dict[str, Any]:
    """The drop-in's outcome, under its own time limit (the test's clock paused meanwhile)."""
    test_left, _ = signal.setitimer(signal.ITIMER_REAL, TIMEOUT)
    start = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if _profiler is not None:
                _profiler.enable()
            try:
                outcome = _returned(dropin(*args, **kwargs))
            finally:
                if _profiler is not None:
                    _profiler.disable()
    except Timeout as exc:
        outcome = {"status": "error", "type": "Timeout", "message": str(exc)}
    except Exception as exc:
        outcome = _raised(exc)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        outcome["seconds"] = time.perf_counter() - start
        signal.setitimer(signal.ITIMER_REAL, test_left)
    outcome["warnings"] = sorted({str(w.message).splitlines()[0][:200] for w in caught})
    return outcome


def _side_by_side(name, original, dropin, *args, **kwargs):
    global _busy
    if _busy or _test is None:
        return original(*args, **kwargs)
    _busy = True
    try:
        copies = _copy(args), _copy(kwargs)
        before = _rng_state()
        start = time.perf_counter()
        try:
            value = original(*args, **kwargs)
        except Exception as exc:
            value, error, outcome = None, exc, _raised(exc)
        else:
            error, outcome = None, _returned(value)
        outcome["seconds"] = time.perf_counter() - start
        after = _rng_state()
        _set_rng_state(before)
        gradproof = _run_gradproof(dropin, *copies)
        _set_rng_state(after)
        _test["calls"].append({"checker": name, "original": outcome, "gradproof": gradproof})
        if error is not None:
            _test["raised"].append(error)
            raise error
        return value
    finally:
        _busy = False


# --- one test ---------------------------------------------------------------


def _caused_by(exc: BaseException | None, candidates: list[BaseException]) -> bool:
    while exc is not None:
        if any(exc is c for c in candidates):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _first_lines(text: str, n: int = 6) -> str:
    return "\n".join([line for line in text.splitlines() if line.strip()][:n])


def _agree(call: dict[str, Any]) -> bool:
    return (call["original"]["status"] == "pass") == (call["gradproof"]["status"] == "pass")


def _under_gradproof(test: dict[str, Any]) -> tuple[str, str]:
    """The test's outcome had gradproof been the checker, and why it differs."""
    calls, original = test["calls"], test["original"]
    differing = [c for c in calls if not _agree(c)]
    if original == "passed" and differing:
        gp = differing[0]["gradproof"]
        if gp["status"] == "pass":
            return "failed", "gradproof passed a call the original failed (the test expected it to)"
        return "failed", _first_lines(f"{gp['type']}: {gp['message']}")
    if original == "failed" and test["failed_in_checker"]:
        raising, earlier = calls[-1], calls[:-1]
        if raising["gradproof"]["status"] == "pass" and not any(c in differing for c in earlier):
            return "passed", "the original failed only in a checker call gradproof passed"
    return original, ""


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    global _test
    _test = {"nodeid": item.nodeid, "phases": {}, "calls": [], "raised": []}
    _test["failed_in_checker"] = False
    try:
        return (yield)
    finally:
        test, _test = _test, None
        _write(test)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    signal.setitimer(signal.ITIMER_REAL, TIMEOUT)
    try:
        return (yield)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if _test is not None and call.when == "call" and call.excinfo is not None:
        _test["failed_in_checker"] = _caused_by(call.excinfo.value, _test["raised"])
    return report


def pytest_runtest_logreport(report):
    if _test is None:
        return
    if hasattr(report, "wasxfail"):
        outcome = "xfailed" if report.skipped else "xpassed"
    else:
        outcome = report.outcome
    _test["phases"][report.when] = outcome
    if report.failed and "failure" not in _test:
        text = report.longreprtext
        errors = [line[1:].strip() for line in text.splitlines() if line.startswith("E ")]
        _test["failure"] = _first_lines("\n".join(errors) or text[-MESSAGE_CHARS:])


def _write(test: dict[str, Any]) -> None:
    phases = test.pop("phases")
    test.pop("raised")
    order = ("failed", "xpassed", "xfailed", "skipped")
    test["original"] = next((o for o in order if o in phases.values()), "passed")
    test["gradproof"], test["reason"] = _under_gradproof(test)
    with RESULTS.open("a") as f:
        f.write(json.dumps(test) + "\n")


def pytest_sessionfinish(session, exitstatus):
    import gradproof

    record = {
        "session": True,
        "gradproof": gradproof.__file__,
        "version": getattr(gradproof, "__version__", None),
        "exitstatus": int(exitstatus),
    }
    with RESULTS.open("a") as f:
        f.write(json.dumps(record) + "\n")
