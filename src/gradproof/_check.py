"""The gradient check, top to bottom: options, a private working copy, the mode, the verdict.

``check`` → `_options.options` → `check_with` (the analytic gradient,
the check point) → `_full.run` or `_directional.run` (an
`_records.Outcome`) → `_verdict` → [`_report.Report`][gradproof.Report].
``numerical_gradient`` and ``derivative`` share the same setup.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _directional, _full, _narrow, _policy, _tree
from ._compare import flat64
from ._cost import Evaluator, RngState, blame, check_finite, rng_state, to_scalar
from ._errors import CostError, GradientSpecError
from ._grads import given, resolve
from ._options import Executor, Options, options, refuse
from ._policy import Method, Mode
from ._progress import format_seconds
from ._records import Outcome, TensorReport
from ._report import GradientError, Report
from ._sweep import Batched, Point, sweep_at
from ._trace import told, traced, unsearched

Cost = Callable[[Any], Any]


def _suggesting(fn: Callable[..., Report]) -> Callable[..., Report]:
    """``fn`` with a misspelt option answered by the closest one it takes (a
    [`GradientSpecError`][gradproof.GradientSpecError]), not Python's bare ``TypeError``."""
    signature = inspect.signature(fn)
    names = tuple(signature.parameters)

    @functools.wraps(fn)
    def checked(*args: Any, **kwargs: Any) -> Report:
        unknown = [k for k in kwargs if k not in signature.parameters]
        if unknown:
            refuse(f"gp.{fn.__name__}", unknown[0], names)
        return fn(*args, **kwargs)  # (a positional mistake: Python's own message)

    return checked


@_suggesting
def check(
    cost: Cost,
    params: Any,
    grads: Any,
    *,
    method: Method = "central",
    eps: float | None = None,
    tol: float = 1e-7,
    mode: Mode = "full",
    k: int | None = None,
    seed: int = 0,
    executor: Executor | None = None,
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
        method: ``"central"`` (two-sided), ``"forward"``, ``"backward"``,
            ``"complex"`` (complex step; the cost must accept complex input)
            or ``"richardson"`` (extrapolated central differences).
        eps: the step; ``None`` picks one per coordinate from its magnitude.
        tol: the threshold on the relative difference.
        mode: which coordinates are perturbed:

            - ``"full"``: every coordinate (2 evaluations each, central);
              ``report.numerical`` holds the whole numerical gradient.
            - ``"sample"``: ``k`` coordinates per parameter (default 32),
              drawn from ``seed``, judged and diagnosed as in full mode.
            - ``"directional"``: ``k`` random directions per parameter
              (default 3, 2 evaluations each whatever the parameter's size,
              one more for each direction in doubt, up to 8);
              a failing parameter's wrong elements are found by bisection.
            - ``"auto"``: full when it would take at most 30 s, else
              directional (sample for a method other than central);
              ``report.policy["auto"]`` says which and why.
        k: coordinates (``"sample"``) or directions (``"directional"``) per
            parameter.
        seed: the seed that draws those coordinates or directions.
        executor: where the evaluations of a full or sampled check run: ``None``
            (this process), an ``int`` n (n worker processes; lambdas and
            closures work), or any ``concurrent.futures.Executor``, such as
            ``dask.distributed.Client(...).get_executor()``. Same numbers, bit
            for bit; a chunk whose worker dies is retried once.
        progress: ``None`` shows a progress bar for long checks on a terminal.

    Returns:
        A [`Report`][gradproof.Report]; ``print(report)`` shows which parameter is wrong and why.

    Examples:
        >>> import numpy as np, gradproof as gp
        >>> x = np.array([1.0, 2.0])
        >>> gp.check(lambda p: np.sum(p["w"] ** 2), {"w": x}, {"dw": 2 * x}).passed
        True
    """
    opts = options(
        "gp.check",
        method=method,
        eps=eps,
        tol=tol,
        mode=mode,
        k=k,
        seed=seed,
        executor=executor,
        progress=progress,
    )
    return check_with(cost, params, grads, opts)


@_suggesting
def assert_gradients(
    cost: Cost,
    params: Any,
    grads: Any,
    *,
    method: Method = "central",
    eps: float | None = None,
    tol: float = 1e-7,
    mode: Mode = "full",
    k: int | None = None,
    seed: int = 0,
    executor: Executor | None = None,
    progress: bool | None = None,
) -> Report:
    """Like [`check`][gradproof.check] (the same arguments), but raises
    [`GradientError`][gradproof.GradientError] (an ``AssertionError``) on failure.

    Examples:
        >>> import numpy as np, gradproof as gp
        >>> gp.assert_gradients(lambda w: np.sum(w ** 3), np.ones(3), 3 * np.ones(3)).passed
        True
    """
    opts = options(
        "gp.assert_gradients",
        method=method,
        eps=eps,
        tol=tol,
        mode=mode,
        k=k,
        seed=seed,
        executor=executor,
        progress=progress,
    )
    report = check_with(cost, params, grads, opts)
    if not report.passed:
        raise GradientError(report)
    return report


def numerical_gradient(
    cost: Cost, params: Any, *, method: Method = "central", eps: float | None = None
) -> Any:
    """The finite-difference gradient of ``cost`` at ``params``, same structure as ``params``.

    Examples:
        >>> import numpy as np, gradproof as gp
        >>> g = gp.numerical_gradient(lambda p: np.sum(p["w"] ** 2), {"w": np.array([1.0, -2.0])})
        >>> np.round(g["w"], 6)
        array([ 2., -4.])
    """
    opts = options("gp.numerical_gradient", method=method, eps=eps, progress=False)
    leaves = _tree.parse(params)
    with _global_rng_kept() as rng_state:
        point = _CheckPoint.at(cost, params, leaves, opts, rng_state)
        coords = {leaf.name: np.arange(leaf.size) for leaf in leaves}
        at = Point(leaves, point.arrays, params, point.evaluate, point.j0)
        sweeps = sweep_at(at, coords, opts)
    return _tree.from_flat(params, leaves, {name: s.numerical for name, s in sweeps.items()})


def derivative(
    f: Callable[[Any], Any], x: float, *, method: Method = "central", eps: float | None = None
) -> float:
    """The derivative of a scalar function at the real number ``x``.

    Examples:
        >>> import gradproof as gp
        >>> gp.derivative(lambda x: x ** 2, 3.0, eps=1e-2)
        5.999999999999872
        >>> gp.derivative(lambda x: x ** 2, 3.0, method="forward", eps=1e-2)
        6.009999999999849
    """
    if isinstance(x, np.ndarray):
        if x.size != 1:
            raise GradientSpecError(
                f"derivative takes a single number x, got an array of shape {x.shape}; "
                "use gp.numerical_gradient for arrays"
            )
        x = x.reshape(()).item()
    if isinstance(x, bool) or not isinstance(x, (int, float, np.floating, np.integer)):
        raise GradientSpecError(f"derivative takes a real number x, got {type(x).__name__}")
    return float(numerical_gradient(f, float(x), method=method, eps=eps))


@contextmanager
def _global_rng_kept() -> Iterator[RngState]:
    """The global NumPy RNG state at entry, put back on exit whatever happens."""
    state = rng_state()
    try:
        yield state
    finally:
        np.random.set_state(state)


@dataclass(frozen=True)
class _CheckPoint:
    """A private working copy of params, the cost on it, and its value there."""

    leaves: list[_tree.Leaf]
    arrays: dict[str, np.ndarray]  # the copy's arrays by leaf name; perturbed in place
    evaluate: Evaluator
    j0: float

    @classmethod
    def at(
        cls, cost: Cost, params: Any, leaves: list[_tree.Leaf], opts: Options, rng_state: RngState
    ) -> _CheckPoint:
        complex_step = opts.scheme.is_complex
        tree, arrays = _tree.working_copy(params, np.complex128 if complex_step else np.float64)
        evaluate = Evaluator(cost, tree, rng_state, complex_ok=complex_step)
        with blame("at the check point"):
            j0 = evaluate.first()
        check_finite(j0, "at the check point")
        changed = _tree.first_changed(params, arrays)
        if changed is not None:
            raise CostError(
                f"the cost changed the params passed to it: {changed} is different after one "
                "evaluation (an in-place update such as p['W'] -= ..., or out= into a "
                "parameter). Your arrays are intact (the check runs on a private copy), but a "
                "cost must leave its input alone: write W = W - ... or copy inside the cost"
            )
        return cls(leaves, arrays, evaluate, _real(j0))


@dataclass(frozen=True)
class FrontEnd:
    """What a front-end (a framework's adapter, ``gradproof.nn``) tells `check_with` beyond
    `check`'s arguments; the defaults are `check`'s own.

    ``batched`` evaluates chunks of a full check at once (a framework's vmap).
    With ``framework``, ``grads`` came from a framework's autodiff: an inf or NaN in
    it is a finding about that derivative, not bad input. ``cost_magnitude`` is the
    size of the terms the cost sums, when the front-end knows it: the cost's
    round-off is modelled relative to it. Without ``spread_first`` a full or
    directional check does not evaluate the cost a second time at the check point
    before it starts (a drop-in, priced as the original): its determinism is judged
    from the final evaluation alone, and a scatter beyond round-off is allowed for
    where the noise measured near the point shows it. ``left_out`` masks, by
    parameter, elements the front-end leaves out (a full check's; their gradient is
    0). ``trace_origin``: say where an error enters the backward pass
    (``Report.origin``) where the layer order shows it; a forward-mode or higher-order
    check has no backward pass to say it of, and a front-end that checks a model's
    parts on their own says it itself.
    """

    batched: Batched | None = None
    framework: bool = False
    cost_magnitude: float = 0.0
    spread_first: bool = True
    left_out: dict[str, np.ndarray] | None = None
    trace_origin: bool = True


def check_with(
    cost: Cost, params: Any, grads: Any, opts: Options, front: FrontEnd = FrontEnd()
) -> Report:
    """[`check`][gradproof.check] with validated options, and what a front-end adds."""
    batched, left_out = front.batched, front.left_out
    leaves = _tree.parse(params)
    started = time.perf_counter()
    with _global_rng_kept() as rng_state:
        as_given = given(grads, lambda: _tree.working_copy(params, np.float64)[0])
        analytic = resolve(
            as_given,
            leaves,
            unchecked=_unchecked(params, left_out),
            nonfinite_is_wrong=front.framework,
        )
        point = _CheckPoint.at(cost, params, leaves, opts, rng_state)  # also a warm-up
        _within_range(point.j0, analytic)
        evaluate = point.evaluate
        evaluate.magnitude = front.cost_magnitude
        repeats = _policy.AUTO_TIMED_EVALUATIONS if opts.mode == "auto" else 1
        if opts.mode != "auto" and not front.spread_first:
            repeats = 0
        spread, seconds_per_eval = _evaluated_again(evaluate, point.j0, repeats)
        opts, auto_policy = _chosen_mode(opts, leaves, seconds_per_eval)
        at = Point(
            leaves,
            point.arrays,
            params,
            evaluate,
            point.j0,
            spread,
            seconds_per_eval,
            batched if opts.method == "central" and opts.executor is None else None,
            left_out,
        )
        mode = _directional.run if opts.mode == "directional" else _full.run
        outcome = mode(at, analytic, opts)
        with blame("at the check point (final evaluation)"):
            spread = max(spread, abs(_real(evaluate()) - point.j0))
    policy = _policy_of(opts, auto_policy, outcome)
    if evaluate.replay and not callable(grads) and _draw_matters(evaluate, point.j0):
        outcome = _another_draw_suspected(outcome)
    ran = _Ran(
        policy=policy,
        spread=spread,
        j0=point.j0,
        warnings=[*_precision_warnings(leaves, analytic), *outcome.notes],
        evaluations=evaluate.count,
        seconds=time.perf_counter() - started,
    )
    report = _verdict(outcome, analytic, opts, ran, trace_origin=front.trace_origin)
    return _narrowed(report, outcome, point, as_given, analytic)


def _evaluated_again(evaluate: Evaluator, j0: float, repeats: int) -> tuple[float, float]:
    """The cost evaluated ``repeats`` more times at the check point, after the warm-up:
    how far its values moved from ``j0`` (the spread), and the median seconds one took,
    which size progress ticks and the estimate of ``mode="auto"`` (which times a few more
    to be sure of it)."""
    timings, spread = [], 0.0
    for _ in range(repeats):
        started = time.perf_counter()
        with blame("at the check point (second evaluation)"):
            spread = max(spread, abs(_real(evaluate()) - j0))
        timings.append(time.perf_counter() - started)
    return spread, float(np.median(timings)) if timings else 0.0


def _policy_of(opts: Options, auto_policy: dict[str, Any], outcome: Outcome) -> dict[str, Any]:
    """The numerical policy the check ran under, for the report: the options', how
    ``mode="auto"`` chose, a lower-precision cost's unit round-off, and directional
    mode's confidence."""
    policy = opts.policy()
    policy.update(auto_policy)
    if outcome.cost_unit > _policy.UNIT_ROUNDOFF:  # a lower-precision cost: its round-off
        policy["cost_unit"] = outcome.cost_unit
    if opts.mode == "directional":
        policy["confidence"] = _directional.confidence(opts.k)
    return policy


def _narrowed(
    report: Report, outcome: Outcome, point: _CheckPoint, as_given: Any, analytic: Any
) -> Report:
    """``report`` with its origin (from the layer order) narrowed to the line where the
    error enters, where the cost returned its cache and ``as_given`` (the gradients as
    given) the intermediates (`_narrow`)."""
    origin = report.origin
    if origin is None or not point.evaluate.aside or point.evaluate.complex_ok:
        return report
    try:
        narrowed = _narrow.narrow(origin, point.evaluate.aside, as_given, point.arrays, analytic)
    except Exception as exc:  # (the verdict and the layer order's origin stand without it)
        return unsearched(report, exc)
    if narrowed is origin:
        return report
    return dataclasses.replace(report, origin=narrowed, tensors=told(outcome.tensors, narrowed))


def _unchecked(params: Any, left_out: dict[str, np.ndarray] | None) -> dict[str, np.ndarray]:
    """By leaf, the elements not checked: non-finite parameters, and those left out."""
    unchecked = _tree.nonfinite(params)
    for name, mask in (left_out or {}).items():
        mask = mask.reshape(-1)
        unchecked[name] = mask if name not in unchecked else unchecked[name].reshape(-1) | mask
    return unchecked


@dataclass(frozen=True)
class _Ran:
    """What a check's run measured besides its mode's `Outcome`: the policy it ran under,
    the spread of the cost's values at the check point and the value there, the warnings
    so far, the evaluations made and the time taken."""

    policy: dict[str, Any]
    spread: float
    j0: float
    warnings: list[str]
    evaluations: int
    seconds: float


def _verdict(
    outcome: Outcome,
    analytic: dict[str, np.ndarray],
    opts: Options,
    ran: _Ran,
    trace_origin: bool = True,
) -> Report:
    policy, spread, j0, warnings = ran.policy, ran.spread, ran.j0, ran.warnings
    evaluations, seconds = ran.evaluations, ran.seconds
    flats = [flat64(a) for a in analytic.values()]
    size = sum(f.size for f in flats)
    typical = math.sqrt(sum(float(f @ f) for f in flats) / max(size, 1))
    deterministic = _judge_determinism(spread, j0, typical, outcome.step, opts.tol, warnings)
    warnings += _kink_warnings(outcome.tensors)
    if outcome.cost_flat:
        warnings.append(
            "the cost did not change when any parameter was perturbed: does it use the params "
            "passed to it, rather than arrays it closes over?"
        )
    # A difference above tol that is wholly numerical does not fail the check:
    # only a wrong parameter, a cost that ignores params or one that cannot be
    # judged (non-deterministic) does. ``strict`` keeps the literal rule.
    passed = (
        all(t.passed for t in outcome.tensors.values()) and deterministic and not outcome.cost_flat
    )
    origin, tensors = None, outcome.tensors
    if trace_origin and deterministic and not outcome.cost_flat:
        origin, tensors = traced(tensors)  # (`_trace`)
    return Report(
        passed=bool(passed),
        difference=outcome.difference,
        tol=opts.tol,
        tensors=tensors,
        origin=origin,
        evaluations=evaluations,
        numerical=outcome.numerical,
        analytic=outcome.analytic,
        warnings=warnings,
        method=opts.method,
        eps=opts.eps,
        mode=opts.mode,
        policy=policy,
        deterministic=deterministic,
        seconds=seconds,
        strict=passed and outcome.difference <= opts.tol,
        cost_flat=outcome.cost_flat,
    )


def _within_range(j0: float, analytic: dict[str, np.ndarray]) -> None:
    """Refuse a cost or gradient so large that squaring it overflows float64: the norms
    and round-off estimates of the check would be inf, and inf reads as no difference."""
    finite = [flat64(a) for a in analytic.values()]  # (inf or nan there: a finding of its own)
    largest = max(
        [abs(j0), *(float(np.max(np.abs(a[np.isfinite(a)]), initial=0.0)) for a in finite)]
    )
    if largest > _policy.LARGEST_MAGNITUDE:
        raise CostError(
            f"the cost or its gradient reaches {largest:.1e}, beyond "
            f"{_policy.LARGEST_MAGNITUDE:g}: their squares overflow float64, and the check's "
            "norms with them. Divide the cost "
            "by a constant (its gradient scales with it) and check that"
        )


def _draw_matters(evaluate: Evaluator, j0: float) -> bool:
    """Whether the cost's value depends on the global RNG's state when it is called (a
    dropout draw), not only moves that state: a cost that seeds np.random itself (a
    reparameterized sample drawn from a fixed seed) returns ``j0`` from any state. The
    caller's RNG state is put back afterwards, as every check does."""
    state = np.random.get_state()
    try:
        np.random.seed(_policy.OTHER_DRAW_SEED)
        evaluate.count += 1
        try:
            value = _real(to_scalar(evaluate.cost(evaluate.tree), evaluate.complex_ok))
        except Exception:  # a cost that fails from another state depends on it
            return True
    finally:
        np.random.set_state(state)
    return value != j0


def _another_draw_suspected(outcome: Outcome) -> Outcome:
    """Failing parameters of a cost that draws from np.random, checked against a grads dict:
    that dict may come from another draw (dropout mask) than the one the check replays."""
    suspects = {
        name: t
        for name, t in outcome.tensors.items()
        if not t.passed and t.pattern in ("masks", "other")
    }
    if not suspects:
        return outcome
    cause = (
        "the cost draws from np.random (dropout?) and grads is a fixed dict: if it came from "
        "another draw than the one gradproof replays (the RNG state when check() was called), "
        "every masked element disagrees. Pass grads as a function grads(params), or seed "
        "np.random right before both; if it still fails, re-derive the backward pass"
    )
    tensors = dict(outcome.tensors)
    for name, t in suspects.items():
        tensors[name] = dataclasses.replace(
            t, explanation=dataclasses.replace(t.explanation, cause=cause)
        )
    return dataclasses.replace(outcome, tensors=tensors)


def _chosen_mode(
    opts: Options, leaves: list[_tree.Leaf], seconds_per_eval: float
) -> tuple[Options, dict[str, Any]]:
    """``opts`` with mode="auto" resolved (full if it is quick enough), and why, for the policy."""
    if opts.mode != "auto":
        return opts, {}
    n = sum(leaf.size for leaf in leaves)
    full_seconds = opts.scheme.evaluations * n * seconds_per_eval
    # Directional mode needs central differences; other methods sample coordinates instead.
    cheap: Mode = "directional" if opts.method == "central" else "sample"
    chosen = opts.with_mode("full" if full_seconds <= _policy.AUTO_FULL_SECONDS else cheap)
    took = "under a second" if full_seconds < 1 else f"about {format_seconds(full_seconds)}"
    why = (
        f"chose {chosen.mode}: a full check would take {took} "
        f"({n:,} coordinates at {seconds_per_eval * 1e3:.3g} ms per evaluation)"
    )
    return chosen, {"auto": why, "auto_full_seconds": full_seconds}


def _real(x: float | complex) -> float:
    return x.real if isinstance(x, complex) else x


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


def _judge_determinism(
    spread: float, j0: float, typical: float, step: float, tol: float, warnings: list[str]
) -> bool:
    if spread <= _policy.COST_ROUNDOFF * _policy.UNIT_ROUNDOFF * abs(j0):
        return True  # a few ulps, as threaded or GPU reductions give: within modelled round-off
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


def _kink_warnings(tensors: dict[str, TensorReport]) -> list[str]:
    warnings = []
    for t in tensors.values():
        kinks = [i for i in t.kinks if i not in t.unsettled]  # (those have their own note)
        if kinks:
            shown = ", ".join(str(list(i)) for i in kinks[:5])
            more = f" and {len(kinks) - 5} more" if len(kinks) > 5 else ""
            warnings.append(
                f"{t.name}: the cost has a kink (one-sided slopes disagree) at {shown}{more}; "
                "left out of the verdict. Move the check point off the kink to check those too"
            )
    return warnings
