"""The gradient check: full mode, with errors that say where and why."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _compare, _diagnose, _directional, _parallel, _policy, _tree
from ._cost import CostRaised, Evaluator, check_finite
from ._errors import CostError, GradientError, GradientSpecError
from ._finite import noise_level
from ._grads import resolve
from ._progress import Progress
from ._report import Report, TensorReport, index_tuple
from ._sweep import LeafSweep, at_point, sweep_leaves


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
        outcome = _directional_phase(evaluate, arrays, leaves, analytic, j0, spread, opts)
        k = opts.k if opts.k is not None else _policy.DIRECTIONS_K
        policy["confidence"] = (
            f"{k} random directions per parameter: an error {_policy.CONFIDENCE_FACTOR:g}× tol "
            f"in a parameter goes unseen with probability {_directional.miss_probability(k):.1e}"
        )
    else:
        outcome = _coordinate_phase(
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
    g_all = np.concatenate([_flat(analytic[leaf.name]) for leaf in leaves])
    typical = float(np.linalg.norm(g_all)) / math.sqrt(max(g_all.size, 1))
    deterministic = _judge_determinism(spread, j0, typical, outcome.step, opts.tol, warnings)
    _warn_kinks(outcome.tensors, warnings)
    if outcome.numeric_all_zero and np.any(g_all):
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
            f"chose {mode}: a full check would take about {_fmt_duration(full_seconds)} "
            f"({n:,} coordinates at {seconds_per_eval * 1e3:.3g} ms per evaluation)"
        )
    return mode, policy


def _fmt_duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _directional_phase(evaluate, arrays, leaves, analytic, j0, spread, opts) -> _compare.Outcome:
    notes = []
    if opts.executor is not None:
        notes.append(
            "directional mode ran in this process (it needs a few hundred evaluations); "
            "executor= spreads full and sampled checks"
        )
    if opts.method != "central":
        raise GradientSpecError(
            f"mode='directional' uses central differences; got method={opts.method!r}. "
            "Leave method at its default, or use mode='full' or 'sample' for other methods"
        )
    noise = _noise_near(evaluate, arrays, leaves, analytic, j0) + spread
    rng = np.random.default_rng(opts.seed)
    k = opts.k if opts.k is not None else _policy.DIRECTIONS_K
    bar = Progress(k * len(leaves), "gradproof directions", opts.progress)
    tensors, sums, kinky = {}, {"ee": 0.0, "gg": 0.0, "nn": 0.0}, 0
    try:
        for leaf in leaves:
            g = _flat(analytic[leaf.name])
            rel = _policy.ANALYTIC_ROUNDOFF.get(analytic[leaf.name].dtype, 0.0)
            try:
                report, part, crossed = _directional.check_parameter(
                    leaf.name,
                    leaf.shape,
                    arrays[leaf.name].reshape(-1),
                    g,
                    evaluate,
                    j0,
                    noise,
                    opts,
                    rng,
                    rel,
                    bar.tick,
                )
            except CostRaised as exc:
                raise CostError(
                    f"the cost raised {type(exc.__cause__).__name__} while {leaf.name} was "
                    f"moved along a random direction: {exc.__cause__}"
                ) from exc.__cause__
            tensors[leaf.name] = report
            kinky += crossed
            for key in sums:
                sums[key] += part[key]
    finally:
        bar.close()
    den = math.sqrt(sums["gg"]) + math.sqrt(sums["nn"])
    difference = math.sqrt(sums["ee"]) / den if den > 0 else 0.0
    if kinky:
        notes.append(
            f"{kinky} random direction{'s' * (kinky != 1)} crossed a kink even at a smaller step "
            "and were left out of the verdict"
        )
    return _compare.Outcome(
        tensors=tensors,
        difference=difference,
        numeric_all_zero=sums["nn"] == 0.0,
        step=_policy.DIRECTION_STEP_MAX,
        notes=tuple(notes),
    )


def _noise_near(evaluate, arrays, leaves, analytic, j0) -> float:
    """The cost's round-off, measured at the coordinates with the largest analytic partials."""
    model = _policy.COST_ROUNDOFF * _policy.UNIT_ROUNDOFF * abs(j0)
    tops = []
    for leaf in leaves:
        g = np.abs(_flat(analytic[leaf.name]))
        if g.size:
            i = int(np.argmax(g))
            tops.append((g[i], leaf.name, i))
    tops.sort(key=lambda c: -c[0])
    measured = []
    for size, name, i in tops[: _policy.NOISE_COORDINATES]:
        if size == 0:
            continue
        flat = arrays[name].reshape(-1)
        h = float(_policy.default_step("central", np.asarray(float(flat[i]))))
        try:
            measured.append(noise_level(evaluate, flat, i, j0, h))
        except CostRaised as exc:
            raise CostError(
                f"the cost raised {type(exc.__cause__).__name__} while its round-off was "
                f"measured near {name}: {exc.__cause__}"
            ) from exc.__cause__
    sigma = float(np.median(measured)) if measured else 0.0
    return max(model, _policy.NOISE_MARGIN * sigma)


def _coordinate_phase(
    evaluate, arrays, params, leaves, analytic, j0, spread, opts, mode, executor=None, batched=None
):
    coords = _coordinates(leaves, opts, mode)
    total = sum(c.size for c in coords.values())
    bar = Progress(total, "gradproof", opts.progress)
    workers = payload = None
    if executor is not None:
        payload = _parallel.payload_for(
            evaluate.cost,
            params,
            evaluate.rng_state,
            np.float64 if opts.method != "complex" else np.complex128,
            evaluate.replay,
            evaluate.complex_ok,
        )
        workers = _parallel.Workers(executor)
    try:
        sweeps = sweep_leaves(
            evaluate, arrays, leaves, coords, j0, opts, bar.tick, workers, payload, batched
        )
    finally:
        bar.close()
    noise = _cost_noise(evaluate, leaves, sweeps, j0, opts) + spread

    tensors: dict[str, TensorReport] = {}
    judged_g, judged_n = [], []
    for leaf in leaves:
        s = sweeps[leaf.name]
        g = _flat(analytic[leaf.name])[s.coords]
        rel = _policy.ANALYTIC_ROUNDOFF.get(analytic[leaf.name].dtype, 0.0)
        judgement = _compare.judge(
            opts.method,
            g,
            s.numeric,
            s.steps.h,
            noise,
            rel,
            opts.tol,
            s.second_difference,
            s.prober(evaluate, j0) if opts.method != "complex" else None,
        )
        tensors[leaf.name] = _tensor_report(leaf, g, s, judgement, opts, analytic, mode)
        # Kinks are left out of the verdict, and so out of the difference too.
        judged = _compare.judged_mask(judgement)
        judged_g.append(g[judged])
        judged_n.append(s.numeric[judged])
    n_all = np.concatenate(judged_n)
    numerical = analytic_tree = None
    if mode == "full":
        by_path = {leaf.path: leaf for leaf in leaves}

        def shaped(path, _):
            leaf = by_path[path]
            values = sweeps[leaf.name].numeric
            return float(values[0]) if leaf.is_scalar else values.reshape(leaf.shape).copy()

        numerical = _tree.rebuild(params, shaped)

        def analytic_of(path, _):
            leaf = by_path[path]
            a = np.asarray(analytic[leaf.name], dtype=np.float64)
            return float(a.reshape(-1)[0]) if leaf.is_scalar else a.reshape(leaf.shape).copy()

        analytic_tree = _tree.rebuild(params, analytic_of)
    h_all = np.concatenate([s.steps.h for s in sweeps.values()])
    return _compare.Outcome(
        tensors=tensors,
        difference=_compare.difference(np.concatenate(judged_g), n_all),
        numeric_all_zero=not np.any(n_all),
        step=float(np.median(h_all)),
        numerical=numerical,
        analytic=analytic_tree,
    )


def _coordinates(leaves: list[_tree.Leaf], opts: Options, mode: str) -> dict[str, np.ndarray]:
    """The flat indices checked in each parameter: all of them, or a seeded sample."""
    if mode == "full":
        return {leaf.name: np.arange(leaf.size) for leaf in leaves}
    k = opts.k if opts.k is not None else _policy.SAMPLE_K
    rng = np.random.default_rng(opts.seed)
    return {
        leaf.name: np.sort(rng.choice(leaf.size, size=min(k, leaf.size), replace=False))
        for leaf in leaves
    }


def _cost_noise(evaluate, leaves, sweeps, j0: float, opts: Options) -> float:
    """The absolute error of one cost value: modelled, and measured where it can be."""
    model = _policy.COST_ROUNDOFF * _policy.UNIT_ROUNDOFF * abs(j0)
    if opts.method == "complex":
        return model
    # Sample the most sensitive coordinates that look smooth: a kink inside the
    # stencil would read as noise.
    candidates = []
    for leaf in leaves:
        s = sweeps[leaf.name]
        size = np.abs(s.numeric)
        smooth = size > 0
        if s.second_difference is not None:
            smooth &= s.second_difference <= _policy.KINK_SCREEN * size
        top = np.flatnonzero(smooth)
        top = top[np.argsort(-size[top], kind="stable")][: _policy.NOISE_COORDINATES]
        candidates += [(size[j], leaf.name, int(j)) for j in top]
    candidates.sort(key=lambda c: -c[0])
    measured = []
    for _, name, j in candidates[: _policy.NOISE_COORDINATES]:
        s = sweeps[name]
        i = int(s.coords[j])
        try:
            sigma = noise_level(evaluate, s.flat, i, j0, float(s.steps.h[j]))
        except CostRaised as exc:
            raise CostError(
                f"the cost raised {type(exc.__cause__).__name__} while its round-off was "
                f"measured near {name}: {exc.__cause__}"
            ) from exc.__cause__
        measured.append(sigma)
    sigma = float(np.median(measured)) if measured else 0.0
    return max(model, _policy.NOISE_MARGIN * sigma)


def _flat(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float64).reshape(-1)


def _real(x: float | complex) -> float:
    return x.real if isinstance(x, complex) else x


def _tensor_report(leaf, g, s: LeafSweep, judgement, opts: Options, analytic, mode) -> TensorReport:
    numeric, coords = s.numeric, s.coords
    judged = _compare.judged_mask(judgement)
    errors = np.abs(g - numeric)
    masked = np.where(judged, errors, -1.0)
    worst = int(np.argmax(masked)) if masked.size else 0
    wrong = np.flatnonzero(judgement.status >= _compare.WRONG)
    failed = judgement.failed
    diff = _compare.difference(g[judged], numeric[judged])
    diag = _diagnose.diagnose(
        leaf.name,
        leaf.shape,
        g,
        numeric,
        wrong,
        judged,
        failed,
        diff,
        opts.tol,
        coords=None if mode == "full" else coords,
    )
    return TensorReport(
        name=leaf.name,
        shape=leaf.shape,
        passed=not failed,
        difference=diff,
        max_abs_error=float(max(masked[worst], 0.0)) if masked.size else 0.0,
        worst_index=index_tuple(coords[worst], leaf.shape) if coords.size else (),
        scale=_diagnose.fit_scale(g[judged], numeric[judged]),
        diagnosis=diag.sentence,
        checked=int(g.size),
        pattern=diag.pattern,
        finding=diag.finding,
        cause=diag.cause,
        wrong=int(wrong.size),
        wrong_indices=tuple(index_tuple(coords[j], leaf.shape) for j in wrong[:10]),
        kinks=tuple(index_tuple(coords[j], leaf.shape) for j in judgement.indices(_compare.KINK)),
        probed=judgement.probed,
        dtype=str(analytic[leaf.name].dtype),
    )


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
