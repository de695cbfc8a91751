"""mode="full" and mode="sample": every coordinate, or k of them, perturbed in turn.

The sweep gives each coordinate's numeric partial; the cost's round-off is
measured at the most sensitive smooth coordinates; each parameter's partials
are judged (doubtful ones probed at a second step) and diagnosed.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import _coarse, _compare, _diagnose, _outcome, _policy, _tree
from ._compare import Allowance, Judgement, Partials, flat64
from ._cost import Evaluator
from ._errors import GradientSpecError
from ._finite import Noise, NoiseSite, cost_unit, measure_noise, quantum
from ._options import Options
from ._parallel import Task, Workers
from ._progress import Progress
from ._records import Outcome, TensorReport
from ._sweep import LeafSweep, Point, sweep_leaves
from ._tree import Leaf, index_tuple


def run(point: Point, analytic: dict[str, np.ndarray], opts: Options) -> Outcome:
    """Check every coordinate (``opts.mode == "full"``) or a seeded sample of ``opts.k``;
    ``point.left_out`` masks, by parameter, elements a front-end leaves out of the check."""
    evaluate, arrays, leaves, j0 = point.evaluate, point.arrays, point.leaves, point.j0
    spread, skip = point.spread, point.left_out
    # A framework's derivative may hold inf/NaN: those elements are wrong as they stand,
    # and are not swept (the cost may not even be finite beside them).
    broken = {n: np.flatnonzero(~np.isfinite(flat64(a))) for n, a in analytic.items()}
    excluded = dict(broken)
    for name, mask in (skip or {}).items():
        excluded[name] = np.union1d(excluded.get(name, []), np.flatnonzero(mask)).astype(int)
    coords = _coordinates(leaves, arrays, opts, excluded)
    bar = Progress(sum(c.size for c in coords.values()), "gradproof", opts.progress)
    try:
        if opts.executor is not None:
            if evaluate.replay and isinstance(opts.executor, cf.ThreadPoolExecutor):
                raise GradientSpecError(
                    "the cost draws from np.random, and executor is a ThreadPoolExecutor: its "
                    "threads share one global RNG, so the replayed draws would race. Use "
                    "executor=n (worker processes), a ProcessPoolExecutor, or executor=None"
                )
            task = Task(
                evaluate.cost,
                point.params,
                evaluate.rng_state,
                np.complex128 if opts.scheme.is_complex else np.float64,
                evaluate.replay,
                evaluate.complex_ok,
            )
            with Workers(opts.executor, task) as workers:
                sweeps = sweep_leaves(
                    evaluate, arrays, leaves, coords, j0, opts, tick=bar.tick, workers=workers
                )
        else:
            sweeps = sweep_leaves(
                evaluate,
                arrays,
                leaves,
                coords,
                j0,
                opts,
                tick=bar.tick,
                seconds_per_eval=point.seconds,
                batched=point.batched,
            )
    finally:
        bar.close()
    partials = {
        leaf.name: sweeps[leaf.name].partials(opts.scheme, j0, flat64(analytic[leaf.name]))
        for leaf in leaves
    }
    rel = {n: _policy.analytic_roundoff(a.dtype) for n, a in analytic.items()}
    # A cost computed in float32 rounds as float32 does: its model round-off says so
    # (up to 8 values of each offset of each parameter: some parameters may not move it).
    swept = [float(np.real(v)) for s in sweeps.values() for vs in s.values for v in vs[:8]]
    unit = max(cost_unit(j0, swept), _policy.roundoff_of(opts.precision_bits))

    # A cost rounded to a coarse grid (float16, integers) errs by up to half its spacing.
    values = [v for s in sweeps.values() for v in s.values]
    grid = quantum(j0, np.concatenate(values) if values else np.empty(0))

    def measured(sites: list[NoiseSite]) -> Noise:
        """The cost's round-off: modelled, and measured at ``sites`` (none: the model)."""
        found = measure_noise(evaluate, sites, j0, unit, evaluate.magnitude)
        return Noise(max(found.bound, grid / 2), found.seen)

    # The modelled round-off is a lower bound: where everything agrees even at it,
    # measuring the real round-off would change no verdict, and is skipped.
    modelled = measured([]).bound
    noise = modelled + spread

    def allowance(name: str, noise: float, inexact: bool) -> Allowance:
        return Allowance(opts.scheme, noise, rel[name], opts.tol, opts.accepted, inexact)

    if not all(
        _compare.settled(p, allowance(n, noise, opts.normwise_floor)) for n, p in partials.items()
    ):
        noise = _noise(sweeps, partials, opts, measured, modelled) + spread
    inexact = opts.normwise_floor or noise > _policy.INEXACT_EVIDENCE * modelled
    allows = {leaf.name: allowance(leaf.name, noise, inexact) for leaf in leaves}
    judgements = {
        leaf.name: _compare.judge(
            partials[leaf.name],
            allows[leaf.name],
            None if opts.scheme.is_complex else sweeps[leaf.name].prober(opts.scheme, evaluate, j0),
        )
        for leaf in leaves
    }
    cost = _Resolving(j0, unit, grid, noise, modelled, evaluate.magnitude, inexact)
    reference = max((float(np.linalg.norm(flat64(a))) for a in analytic.values()), default=0.0)
    resolved = _coarse_parameters(
        leaves, partials, judgements, sweeps, allows, cost, evaluate, opts, reference
    )
    # A coordinate judged from a smaller step reports the partial found there.
    for name, judgement in judgements.items():
        if judgement.refined:
            numeric = partials[name].numeric.copy()
            numeric[list(judgement.refined)] = list(judgement.refined.values())
            partials[name] = dataclasses.replace(partials[name], numeric=numeric)
            sweeps[name] = dataclasses.replace(sweeps[name], numeric=numeric)
    # Flat: the cost never moved, yet some analytic partial is beyond round-off.
    # (not merely even: |θ| at 0 has zero central differences, yet its value moves; the
    # swept values are compared only where every partial is zero)
    cost_flat = (
        not any(np.any(p.numeric) for p in partials.values())
        and not all(np.all(j.negligible) for j in judgements.values())
        and all(np.all(np.real(v) == j0) for s in sweeps.values() for v in s.values)
    )
    tensors: dict[str, TensorReport] = {}
    judged_g, judged_n = [], []
    for leaf in leaves:
        p, judgement = partials[leaf.name], judgements[leaf.name]
        dtype = str(analytic[leaf.name].dtype)
        resolution = resolved.get(leaf.name)
        slack = resolution.accuracy if resolution is not None else 0.0
        report = _tensor_report(leaf, sweeps[leaf.name].coords, p, judgement, opts, dtype, slack)
        if resolution is not None:
            report = _resolved_report(report, resolution, cost.why(opts, resolution.grid), opts)
        if broken[leaf.name].size:
            report = _outcome.not_finite(report, broken[leaf.name])
        tensors[leaf.name] = report
        # Kinks are left out of the verdict, and so out of the difference too; a
        # parameter that is zero within round-off counts as zero on both sides.
        kept = judgement.judged & ~_roundoff_level(judgement)
        judged_g.append(p.analytic[kept])
        judged_n.append(p.numeric[kept])
    full = opts.mode == "full"
    numeric = {leaf.name: _scattered(sweeps[leaf.name], leaf.size) for leaf in leaves}
    found = Outcome(
        tensors=tensors,
        difference=_compare.difference(np.concatenate(judged_g), np.concatenate(judged_n)),
        cost_flat=cost_flat,
        step=_typical_step(sweeps, opts),
        numerical=_tree.from_flat(point.params, leaves, numeric) if full else None,
        analytic=_tree.from_flat(point.params, leaves, analytic) if full else None,
        notes=tuple(
            [
                *_left_out_notes(leaves, arrays, sweeps),
                *_unsettled_notes(leaves, sweeps, partials, judgements),
                *_floored_notes(leaves, partials, judgements, opts),
            ]
        ),
        cost_unit=unit,
    )
    return _outcome.said(found)


@dataclass(frozen=True)
class _Resolving:
    """What the automatic step's sweep showed of the cost's resolution."""

    j0: float
    unit: float  # unit round-off of the precision its values are computed in
    grid: float  # spacing of the grid its values are rounded to (0: none seen)
    noise: float  # the absolute error of one value, as the check judged with it
    modelled: float  # the model's (lower) bound of that error
    magnitude: float  # the size of the terms the cost sums, when a front-end knows it
    inexact: bool  # measured noisier than the model (or a drop-in's)

    @property
    def float64(self) -> bool:
        """Values in float64's precision and on no coarser grid."""
        return self.unit <= _policy.UNIT_ROUNDOFF and self.grid == 0.0

    def coarse(self, opts: Options) -> bool:
        """Shown to be coarse: lower-precision or gridded values, or noisier than the model."""
        return not self.float64 or self.inexact or opts.precision_bits < _policy.FLOAT64_BITS

    def zero_noise(self) -> float:
        """The error of one value of an exact float64 cost (its measured noise if its
        values are float64's): a gradient it would not show even at the largest step is
        the round-off of a zero gradient."""
        exact = _policy.COST_ROUNDOFF * _policy.UNIT_ROUNDOFF * max(abs(self.j0), self.magnitude)
        return max(exact, self.noise) if self.float64 else exact

    def why(self, opts: Options, grid: float = 0.0) -> str:
        """What makes the cost's values coarse, in words (``grid``: as seen at a larger
        step, in place of the automatic one's)."""
        grid = grid or self.grid
        if grid == np.inf:
            return "the cost is 0 wherever it was evaluated"
        if grid > 0:
            return f"the cost's values are rounded to multiples of {grid:.2g}"
        if self.unit > _policy.UNIT_ROUNDOFF and opts.precision_bits >= _policy.FLOAT64_BITS:
            return "the cost is computed in float32 inside"
        if self.unit > _policy.UNIT_ROUNDOFF:
            return f"the cost runs in its inputs' {opts.precision_bits}-bit precision"
        if self.noise > _policy.INEXACT_EVIDENCE * self.modelled:
            return (
                f"the cost's values scatter by about {self.noise:.2g} (an iterative solver's "
                "tolerance?)"
            )
        return f"the cost's round-off ({self.noise:.2g}) is large beside its gradient"


def _coarse_parameters(
    leaves: list[Leaf],
    partials: dict[str, Partials],
    judgements: dict[str, Judgement],
    sweeps: dict[str, LeafSweep],
    allows: dict[str, Allowance],
    cost: _Resolving,
    evaluate: Evaluator,
    opts: Options,
    reference: float,
) -> dict[str, _coarse.Resolution]:
    """Parameters the automatic step cannot resolve, judged at a step chosen from the
    cost's noise (`_coarse`); ``partials``, ``judgements`` and ``sweeps`` are
    updated in place to what was found there. ``reference`` is the check's largest
    analytic gradient norm.

    Only a cost shown to be coarse (`_Resolving.coarse`) is examined, or one that
    never moved from a short value. A drop-in keeps the replaced checker's judgement
    (its caller's tolerances); the complex step has no round-off to escape.
    """
    if opts.scheme.is_complex or opts.normwise_floor or (opts.atol, opts.rtol) != (None, None):
        return {}
    j0 = cost.j0
    out = {}
    for leaf in leaves:
        p, judgement, allow = partials[leaf.name], judgements[leaf.name], allows[leaf.name]
        if not p.analytic.size:
            continue
        # A cost that did not move at all and whose value is a short binary fraction (an
        # integer, a float16 number) may be rounded to a grid coarser than the step's
        # change: its parameters' "wrong" verdicts rest on no evidence yet.
        still = _coarse.short(j0) and all(np.all(v == j0) for v in sweeps[leaf.name].values)
        if judgement.failed and not still:
            continue
        if not judgement.failed and not (still and reference == 0.0):
            if not cost.coarse(opts):
                continue  # an exact float64 cost: the automatic step's verdict stands
            # an analytic gradient that an exact float64 cost would not show even at the
            # largest step is zero (the round-off of a zero gradient): no cost could show it
            zero = _policy.ERROR_SAFETY * cost.zero_noise() / _coarse.widest(p)
            bound = _policy.ERROR_SAFETY * _compare.numeric_error(p, allow)
            if np.all(np.abs(p.analytic) <= zero) or (
                _coarse.accuracy(p, bound, judgement.judged, reference) <= _policy.COARSE_TRIGGER
            ):
                continue
        if opts.eps is not None:  # the step is the caller's: judged there
            resolution = _coarse.as_is(p, allow, reference)
        else:
            prober = sweeps[leaf.name].prober(opts.scheme, evaluate, j0)
            resolution = _coarse.resolve(
                p, allow, prober, reference=reference, unit=cost.unit, j0=j0
            )
        out[leaf.name] = resolution
        partials[leaf.name] = resolution.partials
        judgements[leaf.name] = resolution.judgement
        sweeps[leaf.name] = dataclasses.replace(
            sweeps[leaf.name], numeric=resolution.partials.numeric
        )
    return out


def _resolved_report(
    report: TensorReport, resolution: _coarse.Resolution, why: str, opts: Options
) -> TensorReport:
    """A parameter's report once judged at the step its cost's noise allows: the accuracy
    it was checked to, undecided where that is no verdict at all."""
    report = dataclasses.replace(report, accuracy=resolution.accuracy)
    if not report.passed:
        return report
    if resolution.undecided:
        return dataclasses.replace(
            report,
            passed=False,
            undecided=True,
            explanation=_diagnose.undecided(
                resolution.accuracy, resolution.step, why, opts.eps is not None
            ),
        )
    if resolution.accuracy > opts.tol:
        return dataclasses.replace(
            report, explanation=_diagnose.coarse(resolution.accuracy, resolution.step, why)
        )
    return report


def _scattered(s: LeafSweep, size: int) -> np.ndarray:
    """The numeric partials at every element, NaN where an element was left out."""
    if s.coords.size == size:
        return s.numeric
    out = np.full(size, np.nan)
    out[s.coords] = s.numeric
    return out


def _typical_step(sweeps: dict[str, LeafSweep], opts: Options) -> float:
    steps = np.concatenate([s.steps.h for s in sweeps.values()])
    return float(np.median(steps)) if steps.size else opts.scheme.step_factor


def _roundoff_level(judgement: Judgement) -> np.ndarray:
    """All of a parameter's coordinates when every one is zero within round-off, else none."""
    negligible = judgement.negligible
    everywhere = negligible.size > 0 and bool(np.all(negligible[judgement.judged]))
    return np.full(negligible.shape, everywhere)


def _left_out_notes(
    leaves: list[Leaf], arrays: dict[str, np.ndarray], sweeps: dict[str, LeafSweep]
) -> list[str]:
    notes = []
    for leaf in leaves:
        note = _diagnose.left_out(leaf.name, arrays[leaf.name].reshape(-1).real)
        if note:
            notes.append(note)
        shrunk = sweeps[leaf.name].shrunk
        if shrunk:
            notes.append(
                f"{leaf.name}: {shrunk} coordinate{'s' * (shrunk != 1)} near the edge of the "
                "cost's domain were checked at a smaller step (the automatic one left the domain)"
            )
    return notes


def _coordinates(
    leaves: list[Leaf],
    arrays: dict[str, np.ndarray],
    opts: Options,
    broken: dict[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """The flat indices checked in each parameter: all of them, or a seeded sample.

    Elements that are not finite (an input masked with -inf) cannot be moved
    by a step, and are left out.
    """
    finite = {leaf.name: np.isfinite(arrays[leaf.name].reshape(-1).real) for leaf in leaves}
    for name, bad in broken.items():
        finite[name][bad] = False
    if opts.mode == "full":
        return {
            name: np.arange(ok.size) if ok.all() else np.flatnonzero(ok)
            for name, ok in finite.items()
        }
    assert opts.k is not None  # resolved by Options for mode="sample"
    rng = np.random.default_rng(opts.seed)
    out = {}
    for leaf in leaves:
        ok = finite[leaf.name]
        pool = np.arange(leaf.size) if ok.all() else np.flatnonzero(ok)
        n = pool.size
        out[leaf.name] = np.sort(rng.choice(pool, size=min(opts.k, n), replace=False))
    return out


def _noise(
    sweeps: dict[str, LeafSweep],
    partials: dict[str, Partials],
    opts: Options,
    measured: Callable[[list[NoiseSite]], Noise],
    modelled: float,
) -> float:
    """The absolute error of one cost value, measured at the most sensitive coordinates."""
    if opts.scheme.is_complex:
        return modelled
    # A kink inside the measuring stencil would read as noise: smooth coordinates only.
    # A cost that is round-off through and through (the gradient of a constant, checked at
    # order 2) looks kinked everywhere: with no smooth coordinate at all, it is measured
    # where it moved most.
    smooth_candidates: list[tuple[float, str, int]] = []
    other_candidates: list[tuple[float, str, int]] = []
    for name, p in partials.items():
        size = np.abs(p.numeric)
        smooth = np.ones(size.shape, dtype=bool)
        if p.second_difference is not None:
            smooth = p.second_difference <= _policy.KINK_SCREEN * size
        for keep, out in ((smooth, smooth_candidates), (~smooth, other_candidates)):
            top = np.flatnonzero(keep & (size > 0))
            top = top[np.argsort(-size[top], kind="stable")][: _policy.NOISE_COORDINATES]
            out += [(size[j], name, int(j)) for j in top]
    candidates = smooth_candidates or other_candidates
    candidates.sort(key=lambda c: -c[0])

    def sites(shrink: float) -> list[NoiseSite]:
        return [
            NoiseSite(
                name,
                sweeps[name].flat,
                int(sweeps[name].coords[j]),
                float(sweeps[name].steps.h[j]) / shrink,
            )
            for _, name, j in candidates[: _policy.NOISE_COORDINATES]
        ]

    coarse = measured(sites(1.0)).bound
    if smooth_candidates:
        return coarse
    # Where the smooth part of the cost (or a kink) does reach into the stencil, it shrinks
    # with the spacing while noise does not: measured twice, the smaller is the noise,
    # unless the finer spacing saw nothing at all (below the resolution of the inputs).
    fine = measured(sites(16.0))
    return min(coarse, fine.bound) if fine.seen else coarse


def _tensor_report(
    leaf: Leaf,
    coords: np.ndarray,
    p: Partials,
    judgement: Judgement,
    opts: Options,
    dtype: str,
    accuracy: float = 0.0,
) -> TensorReport:
    judged = judgement.judged
    errors = np.abs(p.analytic - p.numeric)
    masked = np.where(judged, errors, -1.0)
    worst = int(np.argmax(masked)) if masked.size else 0
    wrong = judgement.wrong
    diff = _compare.difference(p.analytic[judged], p.numeric[judged])
    if judgement.failed:
        sampled = None if opts.mode == "full" else coords
        explanation = _diagnose.diagnose(leaf.name, leaf.shape, p, judgement, sampled, accuracy)
    elif diff > 0 and np.all(_roundoff_level(judgement)):
        diff = 0.0
        explanation = _diagnose.zero_within_roundoff(judgement.floor)
    elif diff > opts.tol and judgement.refined and _steep_share(p, judged, judgement) >= 0.5:
        where = [list(index_tuple(coords[j], leaf.shape)) for j in sorted(judgement.refined)]
        explanation = _diagnose.steep(diff, where)
    else:
        explanation = _diagnose.within_numerics(diff, opts.tol, opts.method, opts.eps, dtype)
    return TensorReport(
        name=leaf.name,
        shape=leaf.shape,
        passed=not judgement.failed,
        difference=diff,
        max_abs_error=float(max(masked[worst], 0.0)) if masked.size else 0.0,
        worst_index=index_tuple(coords[worst], leaf.shape) if coords.size else (),
        scale=_diagnose.fit_scale(p.analytic[judged], p.numeric[judged]),
        checked=int(p.analytic.size),
        explanation=explanation,
        wrong=int(wrong.size),
        wrong_indices=tuple(
            index_tuple(coords[j], leaf.shape) for j in wrong[: _policy.WRONG_SHOWN]
        ),
        kinks=tuple(
            index_tuple(coords[j], leaf.shape) for j in judgement.indices(_compare.Status.KINK)
        ),
        probed=judgement.probed,
        dtype=dtype,
        unsettled=tuple(index_tuple(coords[j], leaf.shape) for j in sorted(judgement.unsettled)),
    )


def _steep_share(p: Partials, judged: np.ndarray, judgement: Judgement) -> float:
    """The share of a parameter's squared disagreement that lies at coordinates judged
    from a smaller step (where the cost is steep for the automatic one)."""
    errors = np.where(judged, p.analytic - p.numeric, 0.0) ** 2
    total = float(errors.sum())
    return float(errors[list(judgement.refined)].sum()) / total if total else 0.0


def _floored_notes(
    leaves: list[Leaf],
    partials: dict[str, Partials],
    judgements: dict[str, Judgement],
    opts: Options,
) -> list[str]:
    """For each parameter with disagreements accepted below the floor, how many, how large."""
    notes = []
    for leaf in leaves:
        floored = judgements[leaf.name].floored
        if not floored.size:
            continue
        p = partials[leaf.name]
        norm = float(np.linalg.norm(p.analytic) + np.linalg.norm(p.numeric))
        largest = float(np.max(np.abs(p.analytic[floored] - p.numeric[floored])))
        why = (
            "as the checker it replaces would"
            if opts.normwise_floor
            else "the cost is measured noisier than round-off (an iterative solver's tolerance?)"
        )
        notes.append(
            f"{leaf.name}: {floored.size} element{'s' * (floored.size != 1)} disagree beyond tol "
            f"relative to themselves but by at most {largest:.2g}, below "
            f"{_policy.ELEMENT_FLOOR * opts.tol:.0e} of the parameter's gradient norm "
            f"({norm:.3g}): accepted, {why}"
        )
    return notes


def _unsettled_notes(
    leaves: list[Leaf],
    sweeps: dict[str, LeafSweep],
    partials: dict[str, Partials],
    judgements: dict[str, Judgement],
) -> list[str]:
    """For each parameter with coordinates whose finite differences do not settle, the
    evidence at the first of them: the numeric partial at each step, and the analytic."""
    notes = []
    for leaf in leaves:
        unsettled = judgements[leaf.name].unsettled
        if not unsettled:
            continue
        j = min(unsettled)
        index = list(index_tuple(int(sweeps[leaf.name].coords[j]), leaf.shape))
        steps = ", ".join(f"{value:.3g} at h={step:.2g}" for step, value in unsettled[j])
        more = f" (and {len(unsettled) - 1} more elements)" if len(unsettled) > 1 else ""
        notes.append(
            f"{leaf.name}: not differentiable at {index}{more}, or steeper there than any "
            f"step resolves: the finite differences do not settle as the step shrinks "
            f"({steps}; analytic {partials[leaf.name].analytic[j]:.3g}); left out of the "
            "verdict. A kink under a square root or a jump does this: move the check point "
            "off it to check it"
        )
    return notes
