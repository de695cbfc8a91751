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

from . import _coarse, _compare, _diagnose, _judge, _outcome, _policy, _tree
from ._compare import Allowance, Judgement, Partials, Prober, flat64
from ._errors import GradientSpecError
from ._finite import Noise, NoiseSite, cost_unit, measure_noise
from ._options import Options
from ._parallel import Task, Workers
from ._progress import Progress
from ._records import Outcome, TensorReport
from ._sweep import LeafSweep, Point, grid_of, sweep_at
from ._tree import Leaf, index_tuple


def run(point: Point, analytic: dict[str, np.ndarray], opts: Options) -> Outcome:
    """Check every coordinate (``opts.mode == "full"``) or a seeded sample of ``opts.k``;
    ``point.left_out`` masks, by parameter, elements a front-end leaves out of the check.

    In stages: the coordinates, their sweep (`_swept`), the cost's resolution
    (`_resolving`), each parameter's `_Evidence` and its judgement, a second judgement at
    a larger step where the cost is coarse (`_coarse_parameters`), then the verdicts.
    """
    # A framework's derivative may hold inf/NaN: those elements are wrong as they stand,
    # and are not swept (the cost may not even be finite beside them).
    broken = {n: np.flatnonzero(~np.isfinite(flat64(a))) for n, a in analytic.items()}
    coords = _coordinates(point.leaves, point.arrays, opts, _excluded(broken, point.left_out))
    sweeps = _swept(point, coords, opts)
    partials = {
        leaf.name: sweeps[leaf.name].partials(opts.scheme, point.j0, flat64(analytic[leaf.name]))
        for leaf in point.leaves
    }
    rel = {n: _policy.analytic_roundoff(a.dtype) for n, a in analytic.items()}
    cost = _resolving(point, sweeps, partials, rel, opts)
    evidence = {}
    for name, s in sweeps.items():
        allow = cost.allowance(opts, rel[name])
        probe_at = (
            None if opts.scheme.is_complex else s.prober(opts.scheme, point.evaluate, point.j0)
        )
        judgement = _judge.judge(partials[name], allow, probe_at)
        dtype = str(analytic[name].dtype)
        evidence[name] = _Evidence(
            s, partials[name], allow, probe_at, judgement, dtype, broken[name]
        )
    reference = max((float(np.linalg.norm(flat64(a))) for a in analytic.values()), default=0.0)
    evidence = _coarse_parameters(evidence, cost, opts, reference)
    evidence = {name: e.refined() for name, e in evidence.items()}
    full = opts.mode == "full"
    found = Outcome(
        tensors={name: _verdict(e, cost, opts) for name, e in evidence.items()},
        difference=_difference(evidence),
        cost_flat=_flat(evidence, cost.j0),
        step=_typical_step(evidence, opts),
        numerical=_tree.from_flat(
            point.params, point.leaves, {name: _scattered(e) for name, e in evidence.items()}
        )
        if full
        else None,
        analytic=_tree.from_flat(point.params, point.leaves, analytic) if full else None,
        notes=(
            *_left_out_notes(evidence, point.arrays),
            *_unsettled_notes(evidence),
            *_floored_notes(evidence, opts),
        ),
        cost_unit=cost.unit,
    )
    return _outcome.said(found, point)


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

    def allowance(self, opts: Options, analytic_rel: float) -> Allowance:
        """What a parameter's disagreements are measured against at this noise, given the
        relative accuracy of its analytic gradient's dtype."""
        return Allowance(
            opts.scheme, self.noise, analytic_rel, opts.tol, opts.accepted, self.inexact
        )

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


@dataclass(frozen=True)
class _Evidence:
    """What one parameter's verdict is built from: its sweep, its partials, what their
    disagreements are measured against, its prober (a coordinate's cost at a second
    step), its judgement, and, for the report, its analytic gradient's dtype and
    non-finite elements. A second judgement at a larger step (`_coarse_parameters`) or
    at smaller ones (`refined`) replaces ``partials`` and ``judgement``."""

    sweep: LeafSweep  # where, at which steps, the cost values (and the automatic step's partials)
    partials: Partials  # the partials judged
    allow: Allowance
    probe_at: Prober | None  # None: the complex step, which is not probed
    judgement: Judgement
    dtype: str  # the analytic gradient's
    broken: np.ndarray  # flat indices where the analytic gradient is not finite
    resolution: _coarse.Resolution | None = None  # judged at a step the cost's noise allows

    @property
    def leaf(self) -> Leaf:
        return self.sweep.leaf

    @property
    def accuracy(self) -> float:
        """The accuracy the parameter was checked to at a larger step (0: not judged there)."""
        return self.resolution.accuracy if self.resolution is not None else 0.0

    def refined(self) -> _Evidence:
        """The same, where the judgement took a smaller step for some coordinates, with the
        partials found there: a coordinate judged from a smaller step reports them."""
        refined = self.judgement.refined
        if not refined:
            return self
        numerical = self.partials.numerical.copy()
        numerical[list(refined)] = list(refined.values())
        return dataclasses.replace(
            self, partials=dataclasses.replace(self.partials, numerical=numerical)
        )


def _excluded(
    broken: dict[str, np.ndarray], left_out: dict[str, np.ndarray] | None
) -> dict[str, np.ndarray]:
    """The flat indices not swept, by parameter: where the analytic gradient is not finite,
    and the elements a front-end leaves out (``left_out``: masks)."""
    excluded = dict(broken)
    for name, mask in (left_out or {}).items():
        excluded[name] = np.union1d(excluded.get(name, []), np.flatnonzero(mask)).astype(int)
    return excluded


def _swept(point: Point, coords: dict[str, np.ndarray], opts: Options) -> dict[str, LeafSweep]:
    """The sweep of ``coords`` at ``point`` (`_sweep.sweep_at`) under a progress bar: on
    worker processes where ``opts.executor`` asks for them."""
    bar = Progress(sum(c.size for c in coords.values()), "gradproof", opts.progress)
    try:
        if opts.executor is None:
            return sweep_at(point, coords, opts, bar.tick)
        with Workers(opts.executor, _task(point, opts)) as workers:
            return sweep_at(point, coords, opts, bar.tick, workers)
    finally:
        bar.close()


def _task(point: Point, opts: Options) -> Task:
    """What every worker needs to evaluate the cost at ``point``: refused for a cost that
    draws from np.random on a thread pool (its replayed draws would race)."""
    evaluate = point.evaluate
    if evaluate.replay and isinstance(opts.executor, cf.ThreadPoolExecutor):
        raise GradientSpecError(
            "the cost draws from np.random, and executor is a ThreadPoolExecutor: its "
            "threads share one global RNG, so the replayed draws would race. Use "
            "executor=n (worker processes), a ProcessPoolExecutor, or executor=None"
        )
    return Task(
        evaluate.cost,
        point.params,
        evaluate.rng_state,
        np.complex128 if opts.scheme.is_complex else np.float64,
        evaluate.replay,
        evaluate.complex_ok,
    )


def _resolving(
    point: Point,
    sweeps: dict[str, LeafSweep],
    partials: dict[str, Partials],
    rel: dict[str, float],
    opts: Options,
) -> _Resolving:
    """The cost's resolution as the sweep shows it: the unit round-off of its values, their
    grid, and the error of one value, modelled, or measured (`_noise`) where some
    parameter (``rel``: its analytic gradient's relative accuracy) is not settled at the
    model's."""
    evaluate, j0 = point.evaluate, point.j0
    # A cost computed in float32 rounds as float32 does: its model round-off says so
    # (up to 8 values of each offset of each parameter: some parameters may not move it).
    swept = [float(np.real(v)) for s in sweeps.values() for vs in s.values for v in vs[:8]]
    unit = max(cost_unit(j0, swept), _policy.roundoff_of(opts.precision_bits))
    # The round-off of the precision the values are in, and, for a cost rounded to a
    # coarse grid (float16, integers), half the grid's spacing.
    precision = measure_noise(evaluate, [], j0, unit, evaluate.magnitude).bound
    grid = grid_of(list(sweeps.values()), evaluate, j0, precision, opts.scheme.is_complex)

    def measured(sites: list[NoiseSite]) -> Noise:
        """The cost's round-off: modelled, and measured at ``sites`` (none: the model)."""
        found = measure_noise(evaluate, sites, j0, unit, evaluate.magnitude)
        return Noise(max(found.bound, grid / 2), found.seen)

    # The modelled round-off is a lower bound: where everything agrees even at it,
    # measuring the real round-off would change no verdict, and is skipped.
    modelled = max(precision, grid / 2)  # (what measured([]) would say)
    noise = modelled + point.spread
    model = _Resolving(j0, unit, grid, noise, modelled, evaluate.magnitude, opts.normwise_floor)
    if not all(_compare.settled(p, model.allowance(opts, rel[n])) for n, p in partials.items()):
        noise = _noise(sweeps, partials, opts, measured, modelled) + point.spread
    inexact = opts.normwise_floor or noise > _policy.INEXACT_EVIDENCE * modelled
    return dataclasses.replace(model, noise=noise, inexact=inexact)


def _coarse_parameters(
    evidence: dict[str, _Evidence], cost: _Resolving, opts: Options, reference: float
) -> dict[str, _Evidence]:
    """The evidence, with parameters the automatic step cannot resolve judged at a step
    chosen from the cost's noise (`_coarse`), or, where ``eps`` is given, at the caller's
    step to the accuracy it allows. ``reference`` is the check's largest analytic
    gradient norm.

    Only a cost shown to be coarse (`_Resolving.coarse`) is examined, or one that
    never moved from a short value. A drop-in keeps the replaced checker's judgement
    (its caller's tolerances); the complex step has no round-off to escape.
    """
    if opts.scheme.is_complex or opts.normwise_floor or (opts.atol, opts.rtol) != (None, None):
        return evidence
    return {
        name: _resolved(e, cost, opts, reference) if _unresolved(e, cost, opts, reference) else e
        for name, e in evidence.items()
    }


def _unresolved(e: _Evidence, cost: _Resolving, opts: Options, reference: float) -> bool:
    """Whether a parameter's verdict at the automatic step may rest on the cost's noise
    alone: it failed on a cost that never moved from a short value, or it passed on a
    coarse cost that could not have shown it wrong."""
    p, judgement = e.partials, e.judgement
    if not p.analytic.size:
        return False
    # A cost that did not move at all and whose value is a short binary fraction (an
    # integer, a float16 number) may be rounded to a grid coarser than the step's
    # change: its parameters' "wrong" verdicts rest on no evidence yet.
    still = _coarse.short(cost.j0) and all(np.all(v == cost.j0) for v in e.sweep.values)
    if judgement.failed:
        return still
    if still and reference == 0.0:
        return True
    if not cost.coarse(opts):
        return False  # an exact float64 cost: the automatic step's verdict stands
    # an analytic gradient that an exact float64 cost would not show even at the
    # largest step is zero (the round-off of a zero gradient): no cost could show it
    zero = _policy.ERROR_SAFETY * cost.zero_noise() / _coarse.widest(p)
    bound = _policy.ERROR_SAFETY * _compare.numerical_error(p, e.allow)
    return not (
        np.all(np.abs(p.analytic) <= zero)
        or _coarse.accuracy(p, bound, judgement.judged, reference) <= _policy.COARSE_TRIGGER
    )


def _resolved(e: _Evidence, cost: _Resolving, opts: Options, reference: float) -> _Evidence:
    """A parameter judged at the step its cost's noise allows (`_coarse.resolve`), or, where
    the step is the caller's, judged there to the accuracy it allows."""
    if opts.eps is not None:
        resolution = _coarse.as_is(e.partials, e.allow, reference, e.judgement)
    else:
        assert e.probe_at is not None  # only the complex step is not probed
        resolution = _coarse.resolve(
            e.partials, e.allow, e.probe_at, reference=reference, unit=cost.unit, j0=cost.j0
        )
    return dataclasses.replace(
        e, partials=resolution.partials, judgement=resolution.judgement, resolution=resolution
    )


def _verdict(e: _Evidence, cost: _Resolving, opts: Options) -> TensorReport:
    """One parameter's report: as judged (`_tensor_report`), then as a larger step left it
    (`_resolved_report`), then with its non-finite analytic elements failed."""
    report = _tensor_report(e, opts)
    if e.resolution is not None:
        report = _resolved_report(report, e.resolution, cost.why(opts, e.resolution.grid), opts)
    if e.broken.size:
        report = _outcome.not_finite(report, e.broken)
    return report


def _difference(evidence: dict[str, _Evidence]) -> float:
    """The check's difference, over every parameter's judged coordinates. Kinks are left
    out of the verdict, and so out of the difference too; a parameter that is zero
    within round-off counts as zero on both sides."""
    judged_g, judged_n = [], []
    for e in evidence.values():
        kept = e.judgement.judged & ~_roundoff_level(e.judgement)
        judged_g.append(e.partials.analytic[kept])
        judged_n.append(e.partials.numerical[kept])
    return _compare.difference(np.concatenate(judged_g), np.concatenate(judged_n))


def _flat(evidence: dict[str, _Evidence], j0: float) -> bool:
    """Whether the cost never moved, yet some analytic partial is beyond round-off. (Not
    merely even: |θ| at 0 has zero central differences, yet its value moves; the swept
    values are compared only where every partial is zero.)"""
    return (
        not any(np.any(e.partials.numerical) for e in evidence.values())
        and not all(np.all(e.judgement.negligible) for e in evidence.values())
        and all(np.all(np.real(v) == j0) for e in evidence.values() for v in e.sweep.values)
    )


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
            report,
            explanation=_diagnose.coarse(
                resolution.accuracy, resolution.step, why, opts.eps is not None
            ),
        )
    return report


def _scattered(e: _Evidence) -> np.ndarray:
    """The numeric partials at every element, NaN where an element was left out."""
    coords, numerical, size = e.sweep.coords, e.partials.numerical, e.leaf.size
    if coords.size == size:
        return numerical
    out = np.full(size, np.nan)
    out[coords] = numerical
    return out


def _typical_step(evidence: dict[str, _Evidence], opts: Options) -> float:
    steps = np.concatenate([e.sweep.steps.h for e in evidence.values()])
    return float(np.median(steps)) if steps.size else opts.scheme.step_factor


def _roundoff_level(judgement: Judgement) -> np.ndarray:
    """All of a parameter's coordinates when every one is zero within round-off, else none."""
    negligible = judgement.negligible
    everywhere = negligible.size > 0 and bool(np.all(negligible[judgement.judged]))
    return np.full(negligible.shape, everywhere)


def _left_out_notes(evidence: dict[str, _Evidence], arrays: dict[str, np.ndarray]) -> list[str]:
    notes = []
    for name, e in evidence.items():
        note = _diagnose.left_out(name, arrays[name].reshape(-1).real)
        if note:
            notes.append(note)
        shrunk = e.sweep.shrunk
        if shrunk:
            notes.append(
                f"{name}: {shrunk} coordinate{'s' * (shrunk != 1)} near the edge of the "
                "cost's domain were checked at a smaller step (the automatic one left the domain)"
            )
    return notes


def _coordinates(
    leaves: list[Leaf],
    arrays: dict[str, np.ndarray],
    opts: Options,
    excluded: dict[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """The flat indices checked in each parameter: all of them, or a seeded sample, none
    of ``excluded``.

    Elements that are not finite (an input masked with -inf) cannot be moved
    by a step, and are left out.
    """
    finite = {leaf.name: np.isfinite(arrays[leaf.name].reshape(-1).real) for leaf in leaves}
    for name, bad in excluded.items():
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
        size = np.abs(p.numerical)
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


def _tensor_report(e: _Evidence, opts: Options) -> TensorReport:
    """One parameter's report from its judgement: the difference over its judged
    coordinates, the worst and wrong elements, and what the evidence says of them."""
    leaf, coords, p, judgement, dtype = e.leaf, e.sweep.coords, e.partials, e.judgement, e.dtype
    judged = judgement.judged
    errors = np.abs(p.analytic - p.numerical)
    masked = np.where(judged, errors, -1.0)
    worst = int(np.argmax(masked)) if masked.size else 0
    wrong = judgement.wrong
    diff = _compare.difference(p.analytic[judged], p.numerical[judged])
    if judgement.failed:
        sampled = None if opts.mode == "full" else coords
        explanation = _diagnose.diagnose(leaf.name, leaf.shape, p, judgement, sampled, e.accuracy)
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
        scale=_diagnose.fit_scale(p.analytic[judged], p.numerical[judged]),
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
    errors = np.where(judged, p.analytic - p.numerical, 0.0) ** 2
    total = float(errors.sum())
    return float(errors[list(judgement.refined)].sum()) / total if total else 0.0


def _floored_notes(evidence: dict[str, _Evidence], opts: Options) -> list[str]:
    """For each parameter with disagreements accepted below the floor, how many, how large."""
    notes = []
    for name, e in evidence.items():
        floored = e.judgement.floored
        if not floored.size:
            continue
        p = e.partials
        norm = float(np.linalg.norm(p.analytic) + np.linalg.norm(p.numerical))
        largest = float(np.max(np.abs(p.analytic[floored] - p.numerical[floored])))
        why = (
            "as the checker it replaces would"
            if opts.normwise_floor
            else "the cost is measured noisier than round-off (an iterative solver's tolerance?)"
        )
        notes.append(
            f"{name}: {floored.size} element{'s' * (floored.size != 1)} disagree beyond tol "
            f"relative to themselves but by at most {largest:.2g}, below "
            f"{_policy.ELEMENT_FLOOR * opts.tol:.0e} of the parameter's gradient norm "
            f"({norm:.3g}): accepted, {why}"
        )
    return notes


def _unsettled_notes(evidence: dict[str, _Evidence]) -> list[str]:
    """For each parameter with coordinates whose finite differences do not settle, the
    evidence at the first of them: the numeric partial at each step, and the analytic."""
    notes = []
    for name, e in evidence.items():
        unsettled = e.judgement.unsettled
        if not unsettled:
            continue
        j = min(unsettled)
        index = list(index_tuple(int(e.sweep.coords[j]), e.leaf.shape))
        steps = ", ".join(f"{value:.3g} at h={step:.2g}" for step, value in unsettled[j])
        more = f" (and {len(unsettled) - 1} more elements)" if len(unsettled) > 1 else ""
        notes.append(
            f"{name}: not differentiable at {index}{more}, or steeper there than any "
            f"step resolves: the finite differences do not settle as the step shrinks "
            f"({steps}; analytic {e.partials.analytic[j]:.3g}); left out of the "
            "verdict. A kink under a square root or a jump does this: move the check point "
            "off it to check it"
        )
    return notes
