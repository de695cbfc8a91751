"""mode="directional": k random directions per parameter, then bisection to the wrong elements.

Along a direction ``v`` the analytic side is ``vᵀg`` and the numeric side one
central difference, 2 evaluations, however many elements the parameter has.
A stray factor shows as the same ratio along every direction; an error in a
few elements does not, and is found by bisection of ``v``'s support
(`_bisection`). The moves themselves (a direction, a step along it, the
evaluations about the point) are `_mover`'s.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import _compare, _diagnose, _outcome, _policy
from ._bisection import Bisected, localize
from ._compare import flat64
from ._cost import Evaluator, blame
from ._finite import NoiseSite, Probe, Tick, automatic_step, measure_noise
from ._mover import Mover
from ._options import Options
from ._progress import Progress
from ._records import NO_DIAGNOSIS, Outcome, TensorReport
from ._sweep import Point
from ._tree import Leaf, index_tuple

CENTRAL = _policy.SCHEMES["central"]


@dataclass(frozen=True)
class _Along:
    analytic: float  # vᵀg along the displacement actually taken
    numeric: float
    step: float
    status: _compare.Status


def _step(noise: _Noise, tol: float, vg: float, eps: float | None) -> float:
    """The step along a direction: round-off ``DIRECTION_SIGNAL`` times below tol·|vᵀg|.

    It is capped at the central scheme's automatic step, except for a cost whose
    measured round-off is large (float32 inside, say): there the cap rises to the
    step that balances truncation against that round-off, cbrt(relative noise),
    since a smaller step could resolve nothing at all.
    """
    if eps is not None:
        return eps
    cap = _policy.DIRECTION_STEP_MAX
    if noise.measured and noise.relative > 0:
        cap = max(cap, min(_policy.DIRECTION_STEP_NOISY_MAX, noise.relative ** (1 / 3)))
    if vg == 0.0:
        return cap
    t = _policy.DIRECTION_SIGNAL * noise.value / (tol * abs(vg))
    return float(np.clip(t, _policy.DIRECTION_STEP_MIN, cap))


class _Noise:
    """The error of one cost value: modelled at first, measured only once a direction
    is in doubt (a correct model's directions all agree, and the measurement is most
    of what a directional check would otherwise spend)."""

    def __init__(self, model: float, measure: Callable[[], float], j0: float):
        self.model = model  # (a kink itself inflates what is measured near it)
        self.value = model
        self.measured = False
        self._measure = measure
        self._scale = abs(j0)

    @property
    def relative(self) -> float:
        """The error of one cost value relative to the cost (0 when the cost is 0)."""
        return self.value / self._scale if self._scale > 0 else 0.0

    def measure(self) -> None:
        self.value = max(self.value, self._measure())
        self.measured = True


def _one_direction(
    mover: Mover,
    v: np.ndarray,
    g: np.ndarray,
    j0: float,
    noise: _Noise,
    *,
    tol: float,
    rel: float,
    eps: float | None,
    accepted: _compare.Accepted,
) -> tuple[_Along, int]:
    """Judge one direction; returns it and the number of probes spent.

    In doubt, the cheapest evidence comes first: the same difference at a
    smaller step (a crossed kink, or truncation error, fades there), then the
    cost's measured round-off, then a probe at half the step that tells a
    kink, numerical error and a wrong gradient apart.
    """
    probes = 0
    vg = float(v @ g)
    t = _step(noise, tol, vg, eps)
    looked_closer = False
    attempt = 0
    while True:
        jp, jm, d = mover.central(v, t, g)
        dn = (jp - jm) / (2 * t)
        gap = abs(d - dn)
        roundoff = noise.value / t + rel * abs(d)
        if (
            gap <= tol * (abs(d) + abs(dn))
            or gap <= _policy.ERROR_SAFETY * roundoff
            or accepted(np.asarray(gap), np.asarray(dn))
        ):
            return _Along(d, dn, t, _compare.Status.AGREES), probes
        if not looked_closer:
            t /= _policy.KINK_RETRY_SHRINK
            looked_closer = True
            continue
        if not noise.measured:  # still in doubt at the modelled round-off: measure it
            noise.measure()
            t, looked_closer = _step(noise, tol, vg, eps), False
            continue
        jp2, jm2, _ = mover.central(v, t / 2, g)
        probes += 1
        probe = Probe(
            forward=(jp - j0) / t,
            backward=(j0 - jm) / t,
            forward_half=(jp2 - j0) / (t / 2),
            backward_half=(j0 - jm2) / (t / 2),
        )
        status = _compare.classify(
            CENTRAL, probe, gap=gap, roundoff=roundoff, noise=noise.value, h=t
        )
        # A kink crossed off-centre reads as large truncation error rather than
        # as a kink: either way, a smaller step makes crossing one unlikely.
        if (
            status in (_compare.Status.KINK, _compare.Status.NUMERICS)
            and attempt < _policy.KINK_RETRIES
        ):
            t /= _policy.KINK_RETRY_SHRINK
            attempt += 1
            continue
        return _Along(d, dn, t, status), probes


def _disagrees(
    analytic: float, numeric: float, theta: float, noise: _Noise, tol: float, rel: float
) -> bool:
    """Whether an element's own central difference (``numeric``, at the automatic step
    from its value ``theta``) confirms that its ``analytic`` partial is wrong."""
    gap = abs(analytic - numeric)
    h = automatic_step(theta)
    bound = _policy.ERROR_SAFETY * (noise.value / h + rel * abs(analytic))
    return gap > tol * (abs(analytic) + abs(numeric)) and gap > bound


@dataclass(frozen=True)
class _Tally:
    """One parameter's directions: those that count (kinks left out), and their verdict."""

    directions: tuple[_Along, ...]

    @property
    def valid(self) -> np.ndarray:
        return np.array([a.status != _compare.Status.KINK for a in self.directions], dtype=bool)

    @property
    def d(self) -> np.ndarray:
        return np.array([a.analytic for a in self.directions])[self.valid]

    @property
    def dn(self) -> np.ndarray:
        return np.array([a.numeric for a in self.directions])[self.valid]

    @property
    def failed(self) -> bool:
        return any(a.status == _compare.Status.WRONG for a in self.directions)

    @property
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


def check_parameter(
    leaf: Leaf,
    flat: np.ndarray,
    g: np.ndarray,
    evaluate: Evaluator,
    *,
    j0: float,
    noise: _Noise,
    opts: Options,
    rng: np.random.Generator,
    rel: float,
    tick: Tick | None,
    dtype: str = "float64",
) -> _Checked:
    """Check one parameter along k random directions; localize a failure."""
    name, shape = leaf.name, leaf.shape
    assert opts.k is not None  # resolved by Options for mode="directional"
    k = opts.k
    mover = Mover(flat, evaluate)
    if not np.all(np.isfinite(g)):  # a framework's derivative with inf/NaN: wrong as it is
        if tick is not None:
            tick(k)
        bad = np.flatnonzero(~np.isfinite(g))
        first = index_tuple(int(bad[0]), shape)
        report = _outcome.not_finite(
            dataclasses.replace(_outcome.empty(name, shape), worst_index=first), bad
        )
        return _Checked(report, 0.0, 0.0, 0.0, crossed=0, signal=False)
    if flat.size == 0 or (mover.frozen is not None and mover.frozen.all()):
        if tick is not None:
            tick(k)
        return _Checked(_outcome.empty(name, shape), 0.0, 0.0, 0.0, crossed=0, signal=False)
    # Directions are kept as seeds, not vectors: k vectors would be k copies. A
    # direction in doubt (a kink, numerical error) earns the parameter another one.
    seeds = [int(x) for x in rng.integers(2**63, size=k)]
    most = max(k, _policy.DIRECTIONS_MAX)
    directions, norms, probed = [], [], 0
    kinks: list[int] = []  # elements found on a kink by bisection, left out
    for seed in seeds:
        v = mover.direction(seed)
        along, spent = _one_direction(
            mover, v, g, j0, noise, tol=opts.tol, rel=rel, eps=opts.eps, accepted=opts.accepted
        )
        directions.append(along)
        norms.append(float(np.linalg.norm(v)))
        probed += spent
        del v
        if along.status in (_compare.Status.NUMERICS, _compare.Status.KINK) and len(seeds) < most:
            seeds.append(int(rng.integers(2**63)))
        if tick is not None:
            tick(1)
    signal = any(
        abs(a.analytic) > _policy.ERROR_SAFETY * (noise.value / a.step + rel * abs(a.analytic))
        for a in directions
    )
    tally = _Tally(tuple(directions))
    found: list[int] = []
    partials: dict[int, float] = {}
    diagnosis = NO_DIAGNOSIS
    if tally.failed:
        seen = _diagnose.along_directions(name, g, tally.d, tally.dn)
        if seen is not None:
            diagnosis = seen
        else:
            gaps = [
                abs(a.analytic - a.numeric) if a.status == _compare.Status.WRONG else -1.0
                for a in directions
            ]
            j = int(np.argmax(gaps))
            v = mover.direction(seeds[j])
            # Bisect at the step the noise calls for: a direction found wrong only after
            # smaller steps would bisect in round-off there.
            t = max(directions[j].step, _step(noise, opts.tol, float(v @ g), opts.eps))
            whole = directions[j]
            if t != whole.step:
                jp, jm, d_t = mover.central(v, t, g)
                whole = _Along(d_t, (jp - jm) / (2 * t), t, whole.status)
            found = localize(
                mover, Bisected(v, g, t, whole.analytic, whole.numeric), noise.value, opts.tol
            )
            partials = {i: mover.coordinate(i) for i in found}
            confirmed = [
                i
                for i in found
                if _disagrees(g[i], partials[i], float(mover.saved[i]), noise, opts.tol, rel)
            ]
            # an element on a kink its analytic partial is a one-sided slope of is left out
            # (looked for among the first few; where none is one, the rest are not tried)
            for n, i in enumerate(confirmed):
                if n >= _policy.KINK_SAMPLE and not kinks:
                    break
                if mover.kink(i, float(g[i]), j0, noise.model):
                    kinks.append(i)
            confirmed = [i for i in confirmed if i not in kinks]
            if found and not confirmed:
                # Bisection led to elements that agree one by one, or sit on kinks: the
                # directions' disagreement was numerical, not an error in dθ.
                tally = tally.wrong_as_kinks()
                found, partials = [], {}
            else:
                many = len(found) >= _policy.LOCALIZE_MAX
                found = confirmed or found
                partials = {i: partials[i] for i in found}
                diagnosis = _diagnose.localized(name, shape, g, partials, many)
    d, dn, valid = tally.d, tally.dn, tally.valid
    if not tally.failed:
        diagnosis = _diagnose.within_numerics(
            tally.difference, opts.tol, opts.method, opts.eps, dtype
        )
    worst = max(found, key=lambda i: abs(g[i] - partials[i]), default=None)
    if worst is not None:
        max_error = abs(g[worst] - partials[worst])
    else:  # the largest error along a unit direction
        unit = np.asarray(norms)[valid]
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
        kinks=tuple(index_tuple(i, shape) for i in kinks),
        probed=probed,
        dtype=dtype,
    )
    return _Checked(
        report,
        ee=float(np.sum((d - dn) ** 2)),
        gg=float(np.sum(d**2)),
        nn=float(np.sum(dn**2)),
        crossed=int(np.count_nonzero(~valid)),
        signal=signal,
    )


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
    evaluate, arrays, leaves, j0 = point.evaluate, point.arrays, point.leaves, point.j0
    spread = point.spread
    notes = []
    if opts.executor is not None:
        notes.append(
            "directional mode ran in this process (it needs a few hundred evaluations); "
            "executor= spreads full and sampled checks"
        )
    notes += [
        n for leaf in leaves if (n := _diagnose.left_out(leaf.name, arrays[leaf.name].reshape(-1)))
    ]
    noise = _Noise(
        measure_noise(evaluate, [], j0, magnitude=evaluate.magnitude).bound + spread,
        lambda: _noise_near(evaluate, arrays, leaves, analytic, j0) + spread,
        j0,
    )
    rng = np.random.default_rng(opts.seed)
    assert opts.k is not None  # resolved by Options for mode="directional"
    bar = Progress(opts.k * len(leaves), "gradproof directions", opts.progress)
    results: dict[str, _Checked] = {}
    try:
        for leaf in leaves:
            with blame(f"while {leaf.name} was moved along a random direction"):
                results[leaf.name] = check_parameter(
                    leaf,
                    arrays[leaf.name].reshape(-1),
                    flat64(analytic[leaf.name]),
                    evaluate,
                    j0=j0,
                    noise=noise,
                    opts=opts,
                    rng=rng,
                    rel=_policy.analytic_roundoff(analytic[leaf.name].dtype),
                    tick=bar.tick,
                    dtype=str(analytic[leaf.name].dtype),
                )
    finally:
        bar.close()
    ee, gg, nn = (sum(getattr(r, key) for r in results.values()) for key in ("ee", "gg", "nn"))
    den = math.sqrt(gg) + math.sqrt(nn)
    difference = math.sqrt(ee) / den if den > 0 else 0.0
    kinky = sum(r.crossed for r in results.values())
    if kinky:
        notes.append(
            f"{kinky} random direction{'s' * (kinky != 1)} crossed a kink even at a smaller step "
            "and were left out of the verdict"
        )
    judged = any(r.report.checked for r in results.values())  # (not all left out as kinks)
    cost_flat = nn == 0.0 and judged and any(r.signal for r in results.values())
    if cost_flat and _moves(evaluate, arrays, leaves, j0):
        # even about the point (|θ| at 0): its central differences vanish, its value does not
        cost_flat = False
        notes.append(
            "the cost's central differences vanish along every direction, yet its value "
            "moves: the check point is a kink or an extremum of it in every direction "
            "(|θ| at θ = 0); move the check point off it to check the gradient"
        )
    found = Outcome(
        tensors={name: r.report for name, r in results.items()},
        difference=difference,
        cost_flat=cost_flat,
        step=_policy.DIRECTION_STEP_MAX,
        notes=tuple(notes),
    )
    return _outcome.said(found)


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


def _moves(
    evaluate: Evaluator, arrays: dict[str, np.ndarray], leaves: list[Leaf], j0: float
) -> bool:
    """Whether the cost's value changes at all when one element moves by a small step
    (each parameter's first element in turn, put back after)."""
    for leaf in leaves:
        flat = arrays[leaf.name].reshape(-1)  # a view: the working array is C-contiguous
        if not flat.size:
            continue
        old = flat[0]
        flat[0] = old + _policy.SCHEMES["central"].step_factor * max(1.0, abs(float(old.real)))
        try:
            moved = evaluate() != j0
        finally:
            flat[0] = old
        if moved:
            return True
    return False
