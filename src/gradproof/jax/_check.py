"""`gradproof.jax.check`: every requested check of one function, the programs its checkers
share, and where its error enters (`_origin`)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .. import _adapter, _policy, _trace
from .._adapter import Derivative
from .._options import Options, user_options
from .._report import Report
from ._checker import Checker, Shared
from ._intake import JAX_CONVENTION, Call, checking, float64_leaf, load_jax, path_name


def check(
    fn: Callable[..., Any],
    params: Any,
    *args: Any,
    modes: Sequence[str] = ("rev",),
    order: int = 1,
    **check_options: Any,
) -> Report:
    """Check what JAX computes for ``fn(params, *args)`` against finite differences.

    Args:
        fn: ``fn(params, *args)`` returning the cost. A non-scalar output ``y``
            is reduced to ``sum(y * r)`` with a fixed random ``r`` (seeded by
            ``seed``), which checks the backward pass for that cotangent; a
            tuple of outputs is checked one output at a time, each named.
        params: a pytree of arrays; leaves are named by path (``"layers.0.W"``).
        args: further arguments for ``fn``, held fixed.
        modes: ``"rev"`` checks ``jax.grad`` (VJPs, ``custom_vjp``); ``"fwd"``
            checks forward mode (``jax.jvp``, ``custom_jvp``); both also
            compare the two modes with each other.
        order: 2 checks second derivatives too (``jax.grad`` of the
            gradient against finite differences of the gradient), named
            ``"W [order 2]"``.
        check_options: as for [`gradproof.check`][gradproof.check].

    Returns:
        A [`gradproof.Report`][gradproof.Report], by leaf name.
    """
    jax, _ = load_jax()
    modes = _adapter.validate_modes("gradproof.jax.check", modes, order)
    opts = user_options("gradproof.jax.check", **check_options)
    request = _adapter.Request(opts, modes, order)
    call = Call(fn, params, args)
    with checking(jax):
        report = check_all(jax, call, request)
        if not report.passed:

            def whole(opts: Options) -> Report:
                return check_all(jax, call, request.using(opts))

            try:
                report = _isolated(jax, call, whole, opts, report)
            except Exception as exc:  # (the verdict stands without it)
                report = _trace.unsearched(report, exc)
    return report


def _isolated(
    jax: Any,
    call: Call,
    whole: Callable[[Options], Report],
    opts: Options,
    report: Report,
) -> Report:
    """``report`` with where its error enters, where the function's custom rules, each
    checked on its own at the arguments it received, show it (``Report.origin``)."""
    from . import _origin as _jax_origin

    alone = dataclasses.replace(opts, progress=False, k=None, executor=None)

    def check_alone(rule: Callable[[Any], Any], values: Any) -> Report:
        size = sum(np.size(x) for x in jax.tree_util.tree_leaves(values))
        mode = _policy.part_mode(size)
        return check_all(
            jax, Call(lambda p: rule(p), values), _adapter.Request(alone.with_mode(mode))
        )

    def again() -> Report:  # (as closely as the function's own check looked)
        mode: _policy.Mode = "full" if report.mode == "full" else "directional"
        return whole(alone.with_mode(mode))

    started = time.perf_counter()
    point = jax.tree_util.tree_map(float64_leaf, call.params)
    paths, _ = jax.tree_util.tree_flatten_with_path(point)
    named = {path_name(path): leaf for path, leaf in paths}
    subject = _jax_origin.Subject(call.fn, point, call.args, named)
    found = _jax_origin.locate(jax, subject, report, check_alone, again)
    return _trace.searched(report, found, time.perf_counter() - started, layer_order=False)


def check_all(
    jax: Any, call: Call, request: _adapter.Request, shared: Shared | None = None
) -> Report:
    """Every requested check (outputs × modes × orders) of one call, as one report.
    ``shared``: programs and values from an earlier check of the same call."""
    if shared is None:
        shared = Shared(request.modes, request.order, seed=request.opts.seed)
    elif shared.seed != request.opts.seed:  # (its programs hold the directions of its seed)
        raise ValueError("a Shared serves the checks of one seed")
    shared.batching = request.opts.mode in ("full", "sample")

    def make(output: int | None, kind: Derivative, depth: int = 1) -> Checker:
        return Checker(jax, call, shared, output, kind, depth)

    return _adapter.check_all(make, request, JAX_CONVENTION)
