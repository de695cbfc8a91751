"""Parameters the automatic step cannot resolve, judged at a step chosen from the cost's noise.

A cost whose values are coarse (rounded to float16 or to an integer, computed in
float32 inside, the output of an iterative solver) buries its gradient in its
own noise at the automatic step: the finite differences' error ``noise / h``
exceeds the partials, and a wrong gradient would agree with them "within
round-off". A larger step divides that error, and adds truncation, which the
same probe measures (the partial at steps ``H`` and ``H/2``). So, parameter by
parameter, the step grows from the one the noise asks for, by powers of four,
in whichever direction the error estimate falls, and the parameter is judged
where its estimated error is smallest. It then says to what accuracy it was
checked (`accuracy`, in the units of ``difference``); where even the best
step leaves it coarser than ``_policy.ACCURACY_LIMIT``, the parameter is undecided:
it does not pass.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from . import _compare, _judge, _policy
from ._compare import Allowance, Judgement, Partials, Prober, Status
from ._errors import CostError
from ._finite import quantum, significant_bits


def accuracy(p: Partials, bound: np.ndarray, judged: np.ndarray, reference: float) -> float:
    """The smallest ``difference`` a comparison allowing ``bound`` at each element resolves.

    ``‖bound‖ / (‖g‖ + ‖g̃‖)`` over the judged coordinates (a bound is ``ERROR_SAFETY``
    times an estimated error); a parameter whose partials are all zero is measured
    against ``2·reference`` (the largest analytic gradient norm of the check), and is
    exact (0) when that is zero too: every partial, analytic and numeric, is zero.
    """
    b = float(np.linalg.norm(bound[judged]))
    size = float(np.linalg.norm(p.analytic[judged]) + np.linalg.norm(p.numerical[judged]))
    if size == 0.0:
        size = 2 * reference
    if b == 0.0 or size == 0.0:
        return 0.0
    return b / size


@dataclass(frozen=True)
class Level:
    """One parameter's partials at a step ``H`` grown from the automatic one, taken from
    the half step ``H/2``, with the parts of their error.

    The cost's noise enters each partial twice: directly, and in the truncation
    estimated from the partials at ``H`` and ``H/2`` (by at most ``contamination``).
    A grid's rounding is bounded (``hard``: half its spacing per value); a measured
    noise, the analytic gradient's round-off and truncation are estimates (``soft``),
    which the comparison multiplies by ``ERROR_SAFETY``.
    """

    partials: Partials
    truncation: np.ndarray  # of the half step's partial, from H and H/2 (noise included)
    contamination: np.ndarray  # the most the noise can add to ``truncation``
    soft: np.ndarray  # measured noise, the step's own rounding, the analytic round-off
    hard: np.ndarray  # a grid's rounding, at most
    kinks: np.ndarray  # bool: the one-sided slopes at H, H/2 disagree like a kink's
    grid: float  # the spacing of the cost's values seen here (0: none)

    @property
    def judged(self) -> np.ndarray:
        return ~self.kinks

    def allowance(self) -> np.ndarray:
        """How far each analytic partial may be from the numeric one and still agree."""
        return _policy.ERROR_SAFETY * (self.truncation + self.soft) + self.hard


@dataclass(frozen=True)
class Resolution:
    """A parameter judged at the step its cost's noise allows."""

    partials: Partials
    judgement: Judgement
    accuracy: float  # the smallest difference the check there resolves
    step: float  # the typical step of the partials (the half step H/2)
    decided: bool  # a verdict was reached: wrong, or checked finer than _policy.ACCURACY_LIMIT
    grid: float = 0.0  # the spacing of the cost's values, where they are rounded to a grid

    @property
    def undecided(self) -> bool:
        return not self.decided


@dataclass(frozen=True)
class _Ladder:
    """One parameter and what each `Level` of its grown steps is measured from: its
    partials at the automatic step, what they are judged against, the probe of a
    coordinate at a smaller (or larger) step, the unit round-off of the precision the
    cost takes its inputs in (the step rounds in it) and the cost at the check point."""

    partials: Partials
    allow: Allowance
    probe_at: Prober
    unit: float
    j0: float


def resolve(
    p: Partials,
    allow: Allowance,
    probe_at: Prober,
    *,
    reference: float,
    unit: float,
    j0: float,
) -> Resolution:
    """Judge one parameter at the step, grown from the automatic one, where the finite
    differences' estimated error is smallest (see the module's docstring).

    ``reference`` is the check's largest analytic gradient norm; ``unit`` the unit
    round-off of the precision the cost takes its inputs in (the step rounds in it);
    ``j0`` the cost at the check point.
    """
    ladder = _Ladder(p, allow, probe_at, unit, j0)
    levels = _climbed(ladder, reference)
    if not levels:
        return as_is(p, allow, reference)
    _add_one_below(ladder, levels)
    vouched = _vouched(levels)
    if not vouched:
        return as_is(p, allow, reference)
    best = min(vouched, key=lambda g: _norm(vouched[g], levels[g]))
    return _judged(
        levels[best], vouched[best], allow, reference, probes=len(levels) * p.analytic.size
    )


def _first_growth(p: Partials, allow: Allowance, reference: float) -> tuple[float, float]:
    """How much to grow the automatic step first: enough that the noise's share of the
    partials falls to ``COARSE_NOISE_TARGET`` (a power of ``COARSE_STEP_RATIO``), and the
    most it may grow (to `widest`)."""
    scheme = allow.scheme
    grow_max = float(np.min(widest(p) / p.h))
    noise_now = scheme.roundoff_gain * allow.noise / p.h
    size = float(np.linalg.norm(p.analytic)) or reference or 1.0
    need = (
        _policy.ERROR_SAFETY
        * float(np.linalg.norm(noise_now))
        / (_policy.COARSE_NOISE_TARGET * size)
    )
    grow = _policy.COARSE_STEP_RATIO ** np.ceil(
        np.log(max(need, _policy.COARSE_STEP_RATIO)) / np.log(_policy.COARSE_STEP_RATIO)
    )
    return float(min(grow, grow_max)), grow_max


def _climbed(ladder: _Ladder, reference: float) -> dict[float, Level]:
    """The levels tried, by growth: from the first growth, by ``COARSE_STEP_RATIO`` in
    whichever direction the error estimate falls, until it rises again or turns (the best
    then lies behind), or a step leaves the cost's domain or the admitted range."""
    grow, grow_max = _first_growth(ladder.partials, ladder.allow, reference)
    levels: dict[float, Level] = {}
    direction = 0.0
    for _ in range(_policy.COARSE_LEVELS):
        if grow < 1.0 or grow > grow_max or grow in levels:
            break
        level = _level(ladder, grow)
        if level is None:  # the larger step left the cost's domain
            break
        levels[grow] = level
        if min(levels.values(), key=_size) is not level:
            break  # the estimate rose again: the best lies behind
        step = _downhill(level)
        if direction and step != direction:
            break  # turned: the level before was on the other side of the best
        direction = step
        grow = min(grow * step, grow_max) if step > 1 else grow * step
    return levels


def _downhill(level: Level) -> float:
    """The factor to grow the step by next: smaller where truncation (less the noise's
    share of it) outweighs the noise, larger where the noise does."""
    bias = np.maximum(level.truncation - level.contamination, 0.0)[level.judged]
    noise = (level.soft + level.hard)[level.judged]
    if np.linalg.norm(bias) > np.linalg.norm(noise):
        return 1 / _policy.COARSE_STEP_RATIO
    return _policy.COARSE_STEP_RATIO


def _add_one_below(ladder: _Ladder, levels: dict[float, Level]) -> None:
    """The level one ratio below the lowest tried, into ``levels``, where the step there is
    no smaller than the automatic one and stays in the cost's domain: every level tried
    is then vouched for by the one below it (`_vouched`)."""
    lowest = min(levels)
    if lowest / _policy.COARSE_STEP_RATIO >= 1.0:
        level = _level(ladder, lowest / _policy.COARSE_STEP_RATIO)
        if level is not None:
            levels[lowest / _policy.COARSE_STEP_RATIO] = level


def _vouched(levels: dict[float, Level]) -> dict[float, np.ndarray]:
    """Each level's allowance, as the level below it vouches for it (infinite where it
    cannot), by growth in increasing order.

    A smaller step has more noise and less truncation. A truncation estimate from H and
    H/2 alone fails where the step is beyond the cost's smoothness (a fast oscillation
    aliases, both partials wrong alike): the agreement a level allows is at least its
    disagreement with the level below plus that level's own error.
    """
    # (each from its own truncation estimate: a level above cannot vouch for a smaller
    # truncation here, it may be aliased itself)
    allowances = {g: level.allowance() for g, level in levels.items()}
    ordered = sorted(levels)
    vouched = {}
    for below, g in itertools.pairwise(ordered):
        here, there = levels[g].partials.numerical, levels[below].partials.numerical
        apart = np.abs(here - there)
        vouched[g] = np.maximum(allowances[g], apart + allowances[below])
        # Still at this step and moving at the smaller one: the step spans a period of
        # the cost (or its grid): nothing here speaks for the partial.
        stalled = (here == 0) & (there != 0)
        # Of opposite signs, each beyond its own error: a smooth cost's partials converge
        # from one side; a step past its smoothness scale aliases, and can flip the sign.
        flipped = (
            (np.sign(here) != np.sign(there))
            & (np.abs(here) > allowances[g])
            & (np.abs(there) > allowances[below])
        )
        # and a level that cannot be vouched for vouches for nothing above it
        untrusted = ~np.isfinite(vouched.get(below, allowances[below]))
        vouched[g][stalled | flipped | untrusted] = np.inf
    if ordered[0] < _policy.COARSE_STEP_RATIO:
        # at (or near) the automatic step: nothing smaller to ask
        vouched[ordered[0]] = allowances[ordered[0]]
    return vouched


def short(value: float) -> bool:
    """Whether a cost value is a short binary fraction, as a rounded cost's are."""
    return significant_bits(value) <= _policy.SHORT_VALUE_BITS


def _scale(p: Partials) -> np.ndarray:
    return np.maximum(1.0, np.abs(p.theta if p.theta is not None else 0.0))


def widest(p: Partials) -> np.ndarray:
    """The largest step admitted at each coordinate of ``p``."""
    return _policy.COARSE_STEP_MAX * _scale(p)


def _norm(allowance: np.ndarray, level: Level) -> float:
    if not level.judged.any():
        return float("inf")
    return float(np.linalg.norm(allowance[level.judged]))


def _size(level: Level) -> float:
    return _norm(level.allowance(), level)


def _level(ladder: _Ladder, grow: float) -> Level | None:
    """The parameter's partials at the automatic step times ``grow``, with the parts of
    their error (`Level`); ``None`` where a probe leaves the cost's domain."""
    p, allow, j0 = ladder.partials, ladder.allow, ladder.j0
    scheme = allow.scheme
    n = p.analytic.size
    probes = []
    for j in range(n):
        try:
            probes.append(ladder.probe_at(j, 1 / grow))
        except CostError:
            return None
    coarse = np.array([pr.coarse(scheme) for pr in probes])
    fine = np.array([pr.fine(scheme) for pr in probes])
    if not (np.all(np.isfinite(coarse)) and np.all(np.isfinite(fine))):
        return None
    values = np.array([v for pr in probes for v in pr.values])
    h = p.h * grow
    half = h / 2
    # Rounded to a grid, each value errs by at most half the grid's spacing: a bound. (A
    # cost that did not move at all is bounded by the one value's own lowest bit.)
    grid = quantum(j0, values, repeats=False)
    if not np.any(values) and j0 == 0:
        grid = np.inf  # zero wherever it was evaluated: no bound on a grid at all
    gridded = grid / 2 >= allow.noise
    noise = max(allow.noise, grid / 2)
    gain = scheme.roundoff_gain
    # the noise in the partial at H/2; at H it is half as large; their difference holds both
    direct = gain * noise / half
    order = scheme.order or 1
    contamination = 1.5 * direct / scheme.halving_divisor / 2.0**order
    gap = np.abs(p.analytic - fine)
    kinks = np.array(
        [
            _judge.is_kink(scheme, pr, g, noise, hj)
            for pr, g, hj in zip(probes, gap, h, strict=True)
        ],
        dtype=bool,
    )
    # The step itself errs where the cost rounds its inputs to a lower precision.
    rounding = np.abs(fine) * ladder.unit * _scale(p) / half
    analytic_error = _compare.analytic_error(p.analytic, allow.analytic_rel)
    soft = rounding + analytic_error + (0.0 if gridded else direct)
    hard = direct if gridded else np.zeros(n)
    truncation = np.abs(coarse - fine) / scheme.halving_divisor / 2.0**order
    # Beyond the cost's smoothness (a fast oscillation aliased at this step) H and H/2 can
    # agree by chance; the four one-sided slopes still break a smooth function's relations
    # (Probe.nonsmoothness), by more than the noise can (20 times the slopes' noise).
    slopes_noise = 20 * noise / h
    broken = np.array([pr.nonsmoothness() for pr in probes]) - slopes_noise
    truncation = np.maximum(truncation, np.maximum(broken, 0.0) / 2.0**order)
    partials = Partials(p.analytic, fine, half, None, p.theta)
    return Level(partials, truncation, contamination, soft, hard, kinks, grid if gridded else 0.0)


def _judged(
    level: Level, bound: np.ndarray, allow: Allowance, reference: float, probes: int
) -> Resolution:
    p, judged = level.partials, level.judged
    gap = np.abs(p.analytic - p.numerical)
    size = np.abs(p.analytic) + np.abs(p.numerical)
    wrong = judged & (gap > allow.tol * size) & (gap > bound)
    status = np.full(p.analytic.size, Status.AGREES, dtype=np.int8)
    status[level.kinks] = Status.KINK
    status[wrong] = Status.WRONG
    acc = accuracy(p, bound, judged, reference)
    enough = judged.sum() >= _policy.COARSE_JUDGED_SHARE * judged.size
    decided = bool(wrong.any()) or (enough and acc <= _policy.ACCURACY_LIMIT)
    negligible = (np.abs(p.analytic) <= bound) & (np.abs(p.numerical) <= bound)
    judgement = Judgement(status, probes, negligible, float(bound.max(initial=0.0)))
    step = float(np.median(p.h)) if p.h.size else 0.0
    return Resolution(p, judgement, acc, step, decided, level.grid)


def as_is(
    p: Partials, allow: Allowance, reference: float, probed: Judgement | None = None
) -> Resolution:
    """Judged where it stands: the step is the caller's, or no larger one stays in the
    cost's domain. A coordinate the ``probed`` judgement at this step found within the
    finite differences' own error (``NUMERICS``: the truncation of a large step, seen
    from its probes at half the step) is allowed its disagreement, which the accuracy
    then counts: no truncation is estimated here."""
    error = _compare.numerical_error(p, allow)
    if probed is not None:
        explained = probed.status == Status.NUMERICS
        gap = np.abs(p.analytic - p.numerical)
        error = np.where(explained, np.maximum(error, gap / _policy.ERROR_SAFETY), error)
    zeros = np.zeros(p.analytic.size)
    level = Level(p, zeros, zeros, error, zeros, zeros.astype(bool), 0.0)
    return _judged(level, level.allowance(), allow, reference, probes=0)
