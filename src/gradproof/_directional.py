"""mode="directional": k random directions per parameter, then bisection to the wrong elements.

Along a direction ``v`` the analytic side is ``vᵀg`` and the numeric side one
central difference, 2 evaluations, however many elements the parameter has.
A stray factor shows as the same ratio along every direction; an error in a
few elements does not, and is found by bisection of ``v``'s support
(`_bisection`). One direction's judgement is `_along`'s; the moves themselves (a
direction, a step along it, the evaluations about the point) are `_mover`'s.

A parameter's check runs in stages over records: `_walk` judges its directions
(`_Walked`), `_localize` follows a failure to the wrong elements (`_Localized`), and
`_checked` makes its row (`_Checked`); `run` combines the rows (`_combined`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

import numpy as np

from . import _compare, _diagnose, _outcome, _policy
from ._along import CENTRAL, Along, Context, CostNoise, Parameter, judge_along, step_along
from ._bisection import Bisected, localize
from ._compare import flat64
from ._cost import Evaluator, blame
from ._finite import NoiseSite, automatic_step, measure_noise, moves
from ._mover import Mover
from ._options import Options
from ._progress import Progress
from ._records import NO_DIAGNOSIS, Diagnosis, Outcome, TensorReport
from ._sweep import Point
from ._tree import Leaf, index_tuple


@dataclass(frozen=True)
class _Tally:
    """One parameter's directions: those that count (kinks left out), and their verdict."""

    directions: tuple[Along, ...]

    @functools.cached_property
    def valid(self) -> np.ndarray:
        return np.array([a.status != _compare.Status.KINK for a in self.directions], dtype=bool)

    @functools.cached_property
    def d(self) -> np.ndarray:
        return np.array([a.analytic for a in self.directions])[self.valid]

    @functools.cached_property
    def dn(self) -> np.ndarray:
        return np.array([a.numerical for a in self.directions])[self.valid]

    @property
    def failed(self) -> bool:
        return any(a.status == _compare.Status.WRONG for a in self.directions)

    @functools.cached_property
    def difference(self) -> float:
        return _compare.difference(self.d, self.dn)

    def wrong_as_kinks(self) -> _Tally:
        """The directions found wrong, left out instead (their disagreement was numerical)."""
        return _Tally(
            tuple(
                dataclasses.replace(a, status=_compare.Status.KINK)
                if a.status == _compare.Status.WRONG
                else a
                for a in self.directions
            )
        )


@dataclass(frozen=True)
class _Checked:
    """One parameter's result along its directions, and its share of the overall figures."""

    report: TensorReport
    ee: float  # Σ (vᵀg − numeric)² over the directions judged
    gg: float  # Σ (vᵀg)²
    nn: float  # Σ numeric²
    crossed: int  # directions that crossed a kink
    signal: bool  # some vᵀg is beyond round-off: a flat cost would be a finding


@dataclass(frozen=True)
class _Walked:
    """One parameter's random directions, judged: the seeds they were drawn from (kept
    instead of the vectors: k vectors would be k copies of the parameter), each
    direction's verdict and norm, the probes spent, and whether some vᵀg is beyond
    round-off (a cost flat along all of them would then be a finding)."""

    seeds: tuple[int, ...]
    directions: tuple[Along, ...]
    norms: tuple[float, ...]
    probed: int
    signal: bool


@dataclass(frozen=True)
class _Localized:
    """What a parameter's failure came to: its directions (those found wrong left out
    instead, where their wrong elements agreed one by one), the wrong elements (flat
    indices) and their own partials, the elements left out on a kink, and the diagnosis
    (`NO_DIAGNOSIS` where nothing failed: the report's stage gives that one)."""

    tally: _Tally
    found: tuple[int, ...]
    partials: dict[int, float]
    kinks: tuple[int, ...]
    diagnosis: Diagnosis


def check_parameter(param: Parameter, ctx: Context) -> _Checked:
    """Check one parameter along k random directions and localize a failure: its row,
    and its share of the overall figures."""
    mover = Mover(param.flat, ctx.evaluate)
    unmoved = _unmoved(param, mover, ctx)
    if unmoved is not None:
        return unmoved
    walked = _walk(param, mover, ctx)
    tally = _Tally(walked.directions)
    if tally.failed:
        localized = _localize(param, mover, walked, tally, ctx)
    else:
        localized = _Localized(tally, (), {}, (), NO_DIAGNOSIS)
    return _checked(param, walked, localized, ctx)


def _unmoved(param: Parameter, mover: Mover, ctx: Context) -> _Checked | None:
    """The row of a parameter no direction is taken along, its k directions counted as
    done: a gradient with inf or NaN (a framework's, wrong as it is), or no element free
    to move (none, or all inf/NaN); ``None`` for a parameter to check."""
    name, shape, g = param.leaf.name, param.leaf.shape, param.g
    if not np.all(np.isfinite(g)):
        if ctx.tick is not None:
            ctx.tick(ctx.k)
        bad = np.flatnonzero(~np.isfinite(g))
        first = index_tuple(int(bad[0]), shape)
        report = _outcome.not_finite(
            dataclasses.replace(_outcome.empty(name, shape), worst_index=first), bad
        )
        return _Checked(report, 0.0, 0.0, 0.0, crossed=0, signal=False)
    if param.flat.size == 0 or (mover.frozen is not None and mover.frozen.all()):
        if ctx.tick is not None:
            ctx.tick(ctx.k)
        return _Checked(_outcome.empty(name, shape), 0.0, 0.0, 0.0, crossed=0, signal=False)
    return None


def _walk(param: Parameter, mover: Mover, ctx: Context) -> _Walked:
    """Judge ``param`` along k random directions, and along one more for each direction
    in doubt (a kink, numerical error), up to ``DIRECTIONS_MAX`` in all; hands on their
    verdicts and the seeds to draw them again from."""
    rng, k = ctx.rng, ctx.k
    seeds = [int(x) for x in rng.integers(2**63, size=k)]
    most = max(k, _policy.DIRECTIONS_MAX)
    directions, norms, probed = [], [], 0
    for seed in seeds:
        v = mover.direction(seed)
        along, spent = judge_along(mover, v, param, ctx)
        directions.append(along)
        norms.append(float(np.linalg.norm(v)))
        probed += spent
        del v
        if along.status in (_compare.Status.NUMERICS, _compare.Status.KINK) and len(seeds) < most:
            seeds.append(int(rng.integers(2**63)))
        if ctx.tick is not None:
            ctx.tick(1)
    noise, rel = ctx.noise, param.rel
    signal = any(
        abs(a.analytic) > _policy.ERROR_SAFETY * (noise.value / a.step + rel * abs(a.analytic))
        for a in directions
    )
    return _Walked(tuple(seeds), tuple(directions), tuple(norms), probed, signal)


def _localize(
    param: Parameter, mover: Mover, walked: _Walked, tally: _Tally, ctx: Context
) -> _Localized:
    """From a failed parameter's directions (``walked``, ``tally``) to what it came to: a
    pattern its directions show on their own (a stray factor), or else its wrong
    elements, by bisection, each confirmed by its own central difference and left out
    where it sits on a kink."""
    name, shape, g = param.leaf.name, param.leaf.shape, param.g
    seen = _diagnose.along_directions(name, g, tally.d, tally.dn)
    if seen is not None:
        return _Localized(tally, (), {}, (), seen)
    found = _bisect_worst(param, mover, walked, ctx)
    partials = {i: mover.coordinate(i) for i in found}
    confirmed, kinks = _confirmed(param, mover, found, partials, ctx)
    if found and not confirmed:
        # Bisection led to elements that agree one by one, or sit on kinks: the
        # directions' disagreement was numerical, not an error in dθ.
        return _Localized(tally.wrong_as_kinks(), (), {}, kinks, NO_DIAGNOSIS)
    many = len(found) >= _policy.LOCALIZE_MAX
    found = confirmed or found
    partials = {i: partials[i] for i in found}
    diagnosis = _diagnose.localized(name, shape, g, partials, many)
    return _Localized(tally, tuple(found), partials, kinks, diagnosis)


def _bisect_worst(param: Parameter, mover: Mover, walked: _Walked, ctx: Context) -> list[int]:
    """The wrong elements (flat indices) on the support of the direction ``walked`` found
    wrong by the largest gap, by bisection (`_bisection.localize`)."""
    g, directions = param.g, walked.directions
    gaps = [
        abs(a.analytic - a.numerical) if a.status == _compare.Status.WRONG else -1.0
        for a in directions
    ]
    j = int(np.argmax(gaps))
    v = mover.direction(walked.seeds[j])
    # Bisect at the step the noise calls for: a direction found wrong only after
    # smaller steps would bisect in round-off there.
    t = max(directions[j].step, step_along(ctx.noise, ctx.opts.tol, float(v @ g), ctx.opts.eps))
    whole = directions[j]
    if t != whole.step:
        jp, jm, d_t = mover.central(v, t, g)
        whole = Along(d_t, (jp - jm) / (2 * t), t, whole.status)
    return localize(
        mover, Bisected(v, g, t, whole.analytic, whole.numerical), ctx.noise.value, ctx.opts.tol
    )


def _confirmed(
    param: Parameter,
    mover: Mover,
    found: list[int],
    partials: dict[int, float],
    ctx: Context,
) -> tuple[list[int], tuple[int, ...]]:
    """Of the elements bisection ``found``, those whose own central difference
    (``partials``) confirms them wrong, and apart, those of them on a kink their
    analytic partial is a one-sided slope of (left out, as full mode leaves kinks)."""
    g, noise, tol = param.g, ctx.noise, ctx.opts.tol
    confirmed = [
        i
        for i in found
        if _disagrees(g[i], partials[i], float(mover.saved[i]), noise, tol, param.rel)
    ]
    # looked for among the first few; where none is one, the rest are not tried
    kinks: list[int] = []
    for n, i in enumerate(confirmed):
        if n >= _policy.KINK_SAMPLE and not kinks:
            break
        if mover.kink(i, float(g[i]), ctx.j0, noise.model):
            kinks.append(i)
    return [i for i in confirmed if i not in kinks], tuple(kinks)


def _disagrees(
    analytic: float, numerical: float, theta: float, noise: CostNoise, tol: float, rel: float
) -> bool:
    """Whether an element's own central difference (``numerical``, at the automatic step
    from its value ``theta``) confirms that its ``analytic`` partial is wrong."""
    gap = abs(analytic - numerical)
    h = automatic_step(theta)
    bound = _policy.ERROR_SAFETY * (noise.value / h + rel * abs(analytic))
    return gap > tol * (abs(analytic) + abs(numerical)) and gap > bound


def _checked(param: Parameter, walked: _Walked, localized: _Localized, ctx: Context) -> _Checked:
    """The parameter's row (`_Checked`) from its directions (``walked``) and what they
    came to (``localized``), with its share of the overall difference: over the
    directions judged, those that crossed a kink left out."""
    name, shape, g, opts = param.leaf.name, param.leaf.shape, param.g, ctx.opts
    tally, found, partials = localized.tally, localized.found, localized.partials
    d, dn, valid = tally.d, tally.dn, tally.valid
    diagnosis = localized.diagnosis
    if not tally.failed:
        diagnosis = _diagnose.within_numerics(
            tally.difference, opts.tol, opts.method, opts.eps, param.dtype
        )
    worst = max(found, key=lambda i: abs(g[i] - partials[i]), default=None)
    if worst is not None:
        max_error = abs(g[worst] - partials[worst])
    else:  # the largest error along a unit direction
        unit = np.asarray(walked.norms)[valid]
        max_error = float(np.max(np.abs(d - dn) / unit)) if unit.size else 0.0
    wrong = len(found) if found else (g.size if tally.failed else 0)
    report = TensorReport(
        name=name,
        shape=shape,
        passed=not tally.failed,
        difference=tally.difference,
        max_abs_error=float(max_error),
        worst_index=index_tuple(worst, shape) if worst is not None else (),
        scale=_diagnose.fit_scale(d, dn),
        checked=int(np.count_nonzero(valid)),
        explanation=diagnosis,
        wrong=int(wrong),
        wrong_indices=tuple(index_tuple(i, shape) for i in found[: _policy.WRONG_SHOWN]),
        kinks=tuple(index_tuple(i, shape) for i in localized.kinks),
        probed=walked.probed,
        dtype=param.dtype,
    )
    if not tally.failed and _unresolved(walked, tally, ctx):
        report = dataclasses.replace(
            report,
            passed=False,
            undecided=True,
            explanation=_diagnose.noisy_directions(tally.difference, not np.any(valid)),
        )
    return _Checked(
        report,
        ee=float(np.sum((d - dn) ** 2)),
        gg=float(np.sum(d**2)),
        nn=float(np.sum(dn**2)),
        crossed=int(np.count_nonzero(~valid)),
        signal=walked.signal,
    )


def _unresolved(walked: _Walked, tally: _Tally, ctx: Context) -> bool:
    """Whether a parameter's pass rests on nothing a noisy cost resolves, where some
    ``vᵀg`` is beyond round-off (``walked.signal``; a gradient at round-off level is zero
    within it, whatever its difference): every direction left out as a kink, or agreement
    only within the finite differences' error at a difference a 10% error would give
    (`_policy.NOISY_DIRECTIONS_LIMIT`). Only on a cost whose measured noise is well above
    its model: an exact cost's kinks are kinks (every direction a kink on a cost of
    exactly 0: |θ| at 0, whose kinks inflate what is measured near them)."""
    noise = ctx.noise
    if not walked.signal or noise.value <= _policy.INEXACT_EVIDENCE * noise.model:
        return False
    if not np.any(tally.valid):
        return ctx.j0 != 0  # (k >= 1: some direction was taken)
    return tally.difference > _policy.NOISY_DIRECTIONS_LIMIT


def confidence(k: int | None) -> str:
    """What k random directions per parameter can miss, in words, for the report's policy."""
    assert k is not None  # resolved by Options for mode="directional"
    return (
        f"{k} random directions per parameter (more where one was in doubt): an error "
        f"{_policy.CONFIDENCE_FACTOR:g}× tol in a parameter goes unseen with probability "
        f"{miss_probability(k):.1e}"
    )


def miss_probability(k: int) -> float:
    """Chance that k Gaussian directions all miss an error CONFIDENCE_FACTOR × tol."""
    return ((2 / math.pi) * math.atan(1 / _policy.CONFIDENCE_FACTOR)) ** k


def run(point: Point, analytic: dict[str, np.ndarray], opts: Options) -> Outcome:
    """Check every parameter along ``opts.k`` random directions, localizing any failure."""
    notes = _notes(point, opts)
    noise = _noise(point, analytic)
    rng = np.random.default_rng(opts.seed)
    assert opts.k is not None  # resolved by Options for mode="directional"
    bar = Progress(opts.k * len(point.leaves), "gradproof directions", opts.progress)
    ctx = Context(point.evaluate, point.j0, noise, opts, rng, bar.tick)
    results: dict[str, _Checked] = {}
    try:
        for leaf in point.leaves:
            with blame(f"while {leaf.name} was moved along a random direction"):
                results[leaf.name] = check_parameter(_parameter(leaf, point, analytic), ctx)
    finally:
        bar.close()
    return _outcome.said(_combined(point, results, notes), point)


def _notes(point: Point, opts: Options) -> list[str]:
    """The report's notes before any direction is taken: an executor left unused, and
    each parameter's inf and NaN elements, which no step can move."""
    notes = []
    if opts.executor is not None:
        notes.append(
            "directional mode ran in this process (it needs a few hundred evaluations); "
            "executor= spreads full and sampled checks"
        )
    return notes + [
        n
        for leaf in point.leaves
        if (n := _diagnose.left_out(leaf.name, point.arrays[leaf.name].reshape(-1)))
    ]


def _noise(point: Point, analytic: dict[str, np.ndarray]) -> CostNoise:
    """The cost's round-off, modelled now (plus how far another evaluation at the point
    moved), measured near the largest analytic partials only if a direction needs it."""
    evaluate, arrays, leaves, j0 = point.evaluate, point.arrays, point.leaves, point.j0
    spread = point.spread
    return CostNoise(
        measure_noise(evaluate, [], j0, magnitude=evaluate.magnitude).bound + spread,
        lambda: _noise_near(evaluate, arrays, leaves, analytic, j0) + spread,
        j0,
    )


def _parameter(leaf: Leaf, point: Point, analytic: dict[str, np.ndarray]) -> Parameter:
    """``leaf`` as checked (`Parameter`): its working values and analytic gradient, flat."""
    return Parameter(
        leaf,
        point.arrays[leaf.name].reshape(-1),
        flat64(analytic[leaf.name]),
        rel=_policy.analytic_roundoff(analytic[leaf.name].dtype),
        dtype=str(analytic[leaf.name].dtype),
    )


def _combined(point: Point, results: dict[str, _Checked], notes: list[str]) -> Outcome:
    """The parameters' rows as one `Outcome`: the difference over every direction judged,
    what was left out at kinks, and whether the cost is flat about the point."""
    ee, gg, nn = (sum(getattr(r, key) for r in results.values()) for key in ("ee", "gg", "nn"))
    den = math.sqrt(gg) + math.sqrt(nn)
    difference = math.sqrt(ee) / den if den > 0 else 0.0
    kinky = sum(r.crossed for r in results.values())
    if kinky:
        notes = [
            *notes,
            f"{kinky} random direction{'s' * (kinky != 1)} crossed a kink even at a smaller "
            "step and were left out of the verdict",
        ]
    judged = any(r.report.checked for r in results.values())  # (not all left out as kinks)
    cost_flat = nn == 0.0 and judged and any(r.signal for r in results.values())
    moving = (point.evaluate, point.arrays, point.leaves, point.j0)
    if cost_flat and moves(*moving, _policy.SCHEMES["central"].step_factor):
        # even about the point (|θ| at 0): its central differences vanish, its value does not
        cost_flat = False
        notes = [
            *notes,
            "the cost's central differences vanish along every direction, yet its value "
            "moves: the check point is a kink or an extremum of it in every direction "
            "(|θ| at θ = 0); move the check point off it to check the gradient",
        ]
    return Outcome(
        tensors={name: r.report for name, r in results.items()},
        difference=difference,
        cost_flat=cost_flat,
        step=_policy.DIRECTION_STEP_MAX,
        notes=tuple(notes),
    )


def _noise_near(
    evaluate: Evaluator,
    arrays: dict[str, np.ndarray],
    leaves: list[Leaf],
    analytic: dict[str, np.ndarray],
    j0: float,
) -> float:
    """The cost's round-off, measured at the coordinates with the largest analytic partials."""
    tops = []
    for leaf in leaves:
        g = np.abs(flat64(analytic[leaf.name]))
        if g.size:
            i = int(np.argmax(g))
            tops.append((g[i], leaf.name, i))
    tops.sort(key=lambda c: -c[0])
    sites = []
    for size, name, i in tops[: _policy.NOISE_COORDINATES]:
        if size == 0:
            continue
        flat = arrays[name].reshape(-1)
        h = float(CENTRAL.default_step(np.asarray(float(flat[i]))))
        sites.append(NoiseSite(name, flat, i, h))
    return measure_noise(evaluate, sites, j0, magnitude=evaluate.magnitude).bound
