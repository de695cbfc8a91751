"""The gradient check: full mode, with errors that say where and why."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _coordinate_mode, _directional, _parallel, _policy, _tree
from ._compare import flat64
from ._cost import Evaluator, check_finite
from ._errors import GradientError, GradientSpecError
from ._grads import resolve
from ._progress import format_seconds
from ._report import Report, TensorReport
from ._sweep import at_point


@dataclass(frozen=True)
class Options:
    method: str
    eps: float | None
    tol: float
    mode: str
    k: int | None
    seed: int
    progress: bool | None
    executor: Any = None


def _options(method, eps, tol, mode, k, seed, executor, progress) -> Options:
    if method not in _policy.METHODS:
        raise GradientSpecError(
            f"unknown method {method!r}; use one of {', '.join(map(repr, _policy.METHODS))}"
        )
    if eps is not None:
        if isinstance(eps, bool) or not isinstance(eps, (int, float, np.floating, np.integer)):
            raise GradientSpecError(
                f"eps must be a positive float or None (automatic), got {eps!r}"
            )
        if not (math.isfinite(float(eps)) and float(eps) > 0):
            raise GradientSpecError(f"eps must be a positive finite step or None, got {eps!r}")
        eps = float(eps)
    if (
        isinstance(tol, bool)
        or not isinstance(tol, (int, float, np.floating))
        or not (math.isfinite(float(tol)) and float(tol) > 0)
    ):
        raise GradientSpecError(f"tol must be a positive finite number (e.g. 1e-7), got {tol!r}")
    if mode not in _policy.MODES:
        raise GradientSpecError(
            f"unknown mode {mode!r}; use one of {', '.join(map(repr, _policy.MODES))}"
        )
    if k is not None and (isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1):
        raise GradientSpecError(f"k must be a positive integer or None, got {k!r}")
    _parallel.validate(executor)
    if progress not in (None, True, False):
        raise GradientSpecError(f"progress must be None, True or False, got {progress!r}")
    return Options(
        method, eps, float(tol), mode, None if k is None else int(k), int(seed), progress, executor
    )


def check(
    cost: Callable[[Any], Any],
    params: Any,
    grads: Any,
    *,
    method: str = "central",
    eps: float | None = None,
    tol: float = 1e-7,
    mode: str = "full",
    k: int | None = None,
    seed: int = 0,
    executor: Any = None,
    progress: bool | None = None,
) -> Report:
    """Check an analytic gradient against finite differences of the cost.

    Args:
        cost: ``cost(params)`` returning the scalar cost (a float, a size-1
            array, or a tuple whose first item is the cost).
        params: where to check: an array, a number, or dicts/lists/tuples of
            them. Never modified: the cost is evaluated on a private copy.
        grads: the analytic gradient: the same structure as ``params``, a flat
            dict keyed ``"d" + name`` (other ``d``-keys such as ``"dA1"`` are
            ignored), or a callable ``grads(params)`` returning either.
        method: ``"central"``, ``"forward"``, ``"backward"``, ``"complex"``
            (the cost must accept complex input) or ``"richardson"``.
        eps: the step; ``None`` picks one per coordinate.
        tol: the threshold on the relative difference.
        mode: ``"full"``: every coordinate is perturbed.
        k, seed: coordinates or directions per parameter, and their seed, for
            the sampling modes.
        executor: where the evaluations of a full or sampled check run: ``None``
            (this process), an ``int`` n (n worker processes; lambdas and
            closures work), or any ``concurrent.futures.Executor``, such as
            ``dask.distributed.Client(...).get_executor()``. Same numbers, bit
            for bit; a chunk whose worker dies is retried once.
        progress: ``None`` shows a progress bar for long checks on a terminal.

    Returns:
        A :class:`Report`; ``print(report)`` shows which parameter is wrong and why.

    Example:
        >>> import numpy as np, gradproof as gp
        >>> x = np.array([1.0, 2.0])
        >>> gp.check(lambda p: np.sum(p["w"] ** 2), {"w": x}, {"dw": 2 * x}).passed
        True
    """
    opts = _options(method, eps, tol, mode, k, seed, executor, progress)
    return run_check(cost, params, grads, opts)


def run_adapter(checker: Any, opts: Options) -> Report:
    """A check whose cost, params, analytic gradient and batched evaluation come from a
    framework adapter (``gradproof.torch``, ``gradproof.jax``); its notes lead the warnings."""
    report = run_check(
        checker.cost,
        checker.params,
        checker.analytic(),
        opts,
        batched=checker.batched if opts.mode in ("full", "sample") else None,
    )
    notes = checker.notes()
    return dataclasses.replace(report, warnings=notes + report.warnings) if notes else report


def run_check(cost, params, grads, opts: Options, batched=None) -> Report:
    """:func:`check` with validated options; ``batched`` evaluates chunks at once (vmap)."""
    leaves = _tree.parse(params)
    rng_state = np.random.get_state()
    started = time.perf_counter()
    try:
        return _run(cost, params, grads, leaves, opts, rng_state, started, batched)
    finally:
        np.random.set_state(rng_state)


def _fresh_copy(params: Any) -> Callable[[], Any]:
    return lambda: _tree.working_copy(params, np.float64)[0]


def _analytic(grads: Any, leaves: list[_tree.Leaf], params: Any, rng_state: tuple):
    np.random.set_state(rng_state)
    return resolve(grads, leaves, _fresh_copy(params))


def _precision_warnings(leaves: list[_tree.Leaf], analytic: dict[str, np.ndarray]) -> list[str]:
    warnings = []
    low = [leaf for leaf in leaves if leaf.dtype.itemsize < 8]
    if low:
        dtypes = "/".join(sorted({str(leaf.dtype) for leaf in low}))
        warnings.append(
            f"{', '.join(leaf.name for leaf in low)} {'is' if len(low) == 1 else 'are'} "
            f"{dtypes}: checked on float64 copies, so the cost ran in float64 (low-precision "
            "round-off would swamp the finite differences)"
        )
    low_grads = sorted({str(a.dtype) for a in analytic.values() if a.dtype.itemsize < 8})
    if low_grads:
        warnings.append(
            f"the analytic gradient is {'/'.join(low_grads)}: its own round-off is allowed for "
            "in each parameter's verdict, but the overall difference cannot reach a float64 tol"
        )
    return warnings


def _run(cost, params, grads, leaves, opts: Options, rng_state, started, batched=None) -> Report:
    analytic = _analytic(grads, leaves, params, rng_state)
    warnings = _precision_warnings(leaves, analytic)
    work_dtype = np.complex128 if opts.method == "complex" else np.float64
    tree, arrays = _tree.working_copy(params, work_dtype)
    evaluate = Evaluator(cost, tree, rng_state, complex_ok=opts.method == "complex")

    t0 = time.perf_counter()
    j0 = at_point(evaluate.first, "at the check point")
    check_finite(j0, "at the check point")
    j0_again = at_point(evaluate, "at the check point (second evaluation)")
    seconds_per_eval = (time.perf_counter() - t0) / 2
    j0 = _real(j0)
    spread = abs(_real(j0_again) - j0)

    mode, policy = _choose_mode(opts, leaves, seconds_per_eval)
    if mode == "directional":
        outcome = _directional.run_phase(evaluate, arrays, leaves, analytic, j0, spread, opts)
        k = opts.k if opts.k is not None else _policy.DIRECTIONS_K
        policy["confidence"] = (
            f"{k} random directions per parameter: an error {_policy.CONFIDENCE_FACTOR:g}× tol "
            f"in a parameter goes unseen with probability {_directional.miss_probability(k):.1e}"
        )
    else:
        outcome = _coordinate_mode.run_phase(
            evaluate,
            arrays,
            params,
            leaves,
            analytic,
            j0,
            spread,
            opts,
            mode,
            opts.executor,
            batched if opts.method == "central" and opts.executor is None else None,
        )
    j0_end = at_point(evaluate, "at the check point (final evaluation)")
    spread = max(spread, abs(_real(j0_end) - j0))

    warnings += list(outcome.notes)
    flats = [flat64(analytic[leaf.name]) for leaf in leaves]
    size = sum(f.size for f in flats)
    typical = math.sqrt(sum(float(f @ f) for f in flats) / max(size, 1))
    deterministic = _judge_determinism(spread, j0, typical, outcome.step, opts.tol, warnings)
    _warn_kinks(outcome.tensors, warnings)
    if outcome.numeric_all_zero and any(np.any(f) for f in flats):
        warnings.append(
            "the cost did not change when any parameter was perturbed: does it use the params "
            "passed to it, rather than arrays it closes over?"
        )
    tensors = outcome.tensors
    passed = (
        outcome.difference <= opts.tol and all(t.passed for t in tensors.values()) and deterministic
    )
    return Report(
        passed=bool(passed),
        difference=outcome.difference,
        tol=opts.tol,
        tensors=tensors,
        evaluations=evaluate.count,
        numerical=outcome.numerical,
        analytic=outcome.analytic,
        warnings=warnings,
        method=opts.method,
        eps=opts.eps,
        mode=mode,
        policy=policy,
        deterministic=deterministic,
        seconds=time.perf_counter() - started,
    )


def _choose_mode(opts: Options, leaves: list[_tree.Leaf], seconds_per_eval: float):
    mode = opts.mode
    policy = _policy.as_record(opts.method, opts.eps, opts.tol, mode, opts.k, opts.seed)
    if mode == "auto":
        n = sum(leaf.size for leaf in leaves)
        full_seconds = _policy.EVALS_PER_COORDINATE[opts.method] * n * seconds_per_eval
        mode = "full" if full_seconds <= _policy.AUTO_FULL_SECONDS else "directional"
        policy = _policy.as_record(opts.method, opts.eps, opts.tol, mode, opts.k, opts.seed)
        policy["auto"] = (
            f"chose {mode}: a full check would take about {format_seconds(full_seconds)} "
            f"({n:,} coordinates at {seconds_per_eval * 1e3:.3g} ms per evaluation)"
        )
    return mode, policy


def _real(x: float | complex) -> float:
    return x.real if isinstance(x, complex) else x


def _judge_determinism(spread, j0, typical: float, step: float, tol, warnings: list[str]) -> bool:
    if spread == 0.0:
        return True
    impact = spread / step
    if impact > tol * max(typical, np.finfo(float).tiny):
        warnings.append(
            f"the cost is non-deterministic: two evaluations at the same point differ by "
            f"{spread:.3g} (relative {spread / max(abs(j0), 1e-300):.1e}), which moves the "
            f"numeric partials by about {impact:.2g}. Fix the randomness (draw from np.random, "
            "which gradproof replays, or seed your generator inside the cost) and check again"
        )
        return False
    warnings.append(
        f"the cost varies slightly between evaluations at the same point ({spread:.2g}); "
        "this is below what the check can see and was allowed for"
    )
    return True


def _warn_kinks(tensors: dict[str, TensorReport], warnings: list[str]) -> None:
    for t in tensors.values():
        if t.kinks:
            shown = ", ".join(str(list(i)) for i in t.kinks[:5])
            more = f" and {len(t.kinks) - 5} more" if len(t.kinks) > 5 else ""
            warnings.append(
                f"{t.name}: the cost has a kink (one-sided slopes disagree) at {shown}{more}; "
                "left out of the verdict. Move the check point off the kink to check those too"
            )


def assert_gradients(cost: Callable[[Any], Any], params: Any, grads: Any, **kw: Any) -> Report:
    """Like :func:`check`, but raises :class:`GradientError` (an ``AssertionError``) on failure.

    Example:
        >>> import numpy as np, gradproof as gp
        >>> gp.assert_gradients(lambda w: np.sum(w ** 3), np.ones(3), 3 * np.ones(3)).passed
        True
    """
    report = check(cost, params, grads, **kw)
    if not report.passed:
        raise GradientError(report)
    return report
