"""Finite differences over coordinates perturbed in place: steps, sweeps, probes, noise.

Nothing here copies the parameter vector per coordinate: a coordinate is set
to its perturbed value in the working array, the cost is evaluated, and the
coordinate is set back to its exact original bits.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _policy
from ._cost import CostFailed, Evaluator, blame
from ._policy import Scheme
from ._tree import Leaf

Evaluate = Callable[[], float | complex]
Tick = Callable[[int], None]


@dataclass(frozen=True)
class Steps:
    """Each coordinate's value and step; it is evaluated at ``theta + offset·h``.

    The points themselves are computed a chunk at a time (`Scheme.points`),
    so a check holds a small constant number of copies of a parameter.
    """

    theta: np.ndarray
    h: np.ndarray  # the step actually taken (exactly representable when automatic)


def make_steps(
    scheme: Scheme, theta: np.ndarray, eps: float | None, bits: int = _policy.FLOAT64_BITS
) -> Steps:
    """Steps for the flat float64 coordinates ``theta``.

    With ``eps`` given, ``theta ± eps`` is used exactly as the textbook formula
    does (and divided by ``2 eps``). With ``eps=None`` the step is scaled to each
    coordinate and rounded so that ``theta + h`` is exact (in the precision of
    ``bits`` significand bits, in which the cost takes its inputs): the divisor is
    then the true distance between the points.
    """
    if eps is not None:
        return Steps(theta, np.full(theta.shape, float(eps)))
    h0 = scheme.default_step(theta, bits)
    if scheme.is_complex:
        return Steps(theta, h0)
    h = _rounded(theta + h0, bits) - theta
    return Steps(theta, np.where(h > 0, h, h0))


def _rounded(x: np.ndarray, bits: int) -> np.ndarray:
    """``x`` rounded to ``bits`` significand bits (itself for float64)."""
    if bits >= _policy.FLOAT64_BITS:
        return x
    mantissa, exponent = np.frexp(x)
    return np.ldexp(np.round(mantissa * 2.0**bits) / 2.0**bits, exponent)


def automatic_step(x: float) -> float:
    """The central scheme's automatic step at one value, rounded so ``x + h`` is exact."""
    steps = make_steps(_policy.SCHEMES["central"], np.asarray([x], dtype=np.float64), None)
    return float(steps.h[0])


def cost_values(
    evaluate: Evaluator,
    flat: np.ndarray,
    values: Sequence[Sequence[float | complex]],
    indices: Sequence[int],
    tick: Tick | None = None,
    stride: int = 512,
) -> list[np.ndarray]:
    """For each coordinate ``indices[j]`` evaluate the cost at each of ``values``.

    ``values[k][j]`` is the value coordinate ``indices[j]`` takes for
    evaluation ``k`` (lists of floats or complex numbers). Returns one array of
    cost values per ``k``, aligned with ``indices``. Each coordinate is
    restored to its exact bits after its evaluations, and on any exception.
    ``tick(n)`` is called every ``stride`` coordinates.

    This is the hot loop: the cost is called bare, and its outputs are
    converted to numbers (and counted) in bulk afterwards.
    """
    call = evaluate.bare()
    outs: list[list[Any]] = [[] for _ in values]
    i, k = -1, 0
    x0 = None
    try:
        if len(values) == 2:  # the common central case, unrolled
            vp, vm = values
            op, om = outs
            for j, i in enumerate(indices):
                x0 = flat[i]
                k = 0
                flat[i] = vp[j]
                op.append(call())
                k = 1
                flat[i] = vm[j]
                om.append(call())
                flat[i] = x0
                if tick is not None and j % stride == stride - 1:
                    tick(stride)
        else:
            for j, i in enumerate(indices):
                x0 = flat[i]
                for k, v in enumerate(values):
                    flat[i] = v[j]
                    outs[k].append(call())
                flat[i] = x0
                if tick is not None and j % stride == stride - 1:
                    tick(stride)
    except BaseException as exc:
        evaluate.count += sum(len(o) for o in outs) + 1
        if i >= 0 and x0 is not None:
            flat[i] = x0
        if isinstance(exc, Exception):
            raise CostFailed(i, k) from exc
        raise
    evaluate.count += sum(len(o) for o in outs)
    if tick is not None:
        tick(len(indices) % stride)
    converted = []
    for k, out in enumerate(outs):
        try:
            converted.append(evaluate.scalars(out))
        except CostFailed as exc:
            raise exc.at(indices[exc.index or 0], k) from exc.cause
    return converted


@dataclass(frozen=True)
class Probe:
    """Everything the cost says about one coordinate at steps ±h and ±h/2."""

    forward: float  # (J(θ+h) − J0) / h
    backward: float  # (J0 − J(θ−h)) / h
    forward_half: float  # (J(θ+h/2) − J0) / (h/2)
    backward_half: float
    values: tuple[float, ...] = ()  # the cost at θ+h, θ−h, θ+h/2, θ−h/2

    def coarse(self, scheme: Scheme) -> float:
        """The scheme's partial at step h."""
        return scheme.slope(self.forward, self.backward)

    def fine(self, scheme: Scheme) -> float:
        """The scheme's partial at step h/2."""
        return scheme.slope(self.forward_half, self.backward_half)

    def truncation(self, scheme: Scheme) -> float:
        """Estimated truncation error of the scheme's partial, from steps h and h/2."""
        return abs(self.coarse(scheme) - self.fine(scheme)) / scheme.halving_divisor

    def nonsmoothness(self) -> float:
        """How far the four one-sided slopes are from any smooth function's.

        For a smooth cost they obey ``F(h) − F(h/2) = B(h/2) − B(h) =
        (F(h/2) − B(h/2)) / 2`` up to O(h²); a kink breaks that by the size of
        its jump in slope.
        """
        c1 = self.forward - self.forward_half
        c2 = self.backward_half - self.backward
        c3 = self.forward_half - self.backward_half
        return max(abs(c1 - c2), abs(c3 - 2 * c1), abs(c3 - 2 * c2))


PROBE_OFFSETS = (1.0, -1.0, 0.5, -0.5)


def probe(
    evaluate: Evaluate,
    flat: np.ndarray,
    i: int,
    theta: float,
    h: float,
    j0: float,
    known: dict[float, float],
) -> Probe:
    """Evaluate coordinate ``i`` (value ``theta``) at whichever of θ±h, θ±h/2 ``known`` lacks.

    ``known`` maps offsets already evaluated by the sweep to their cost values.
    """
    x0 = flat[i]
    got = dict(known)
    points = {offset: theta + offset * h for offset in PROBE_OFFSETS}
    try:
        for offset, value in points.items():
            if offset not in got:
                flat[i] = value
                got[offset] = float(np.real(evaluate()))
    finally:
        flat[i] = x0
    hh = points[0.5] - theta
    hm = theta - points[-0.5]
    return Probe(
        forward=(got[1.0] - j0) / h,
        backward=(j0 - got[-1.0]) / h,
        forward_half=(got[0.5] - j0) / hh,
        backward_half=(j0 - got[-0.5]) / hm,
        values=tuple(float(np.real(got[o])) for o in PROBE_OFFSETS),
    )


def noise_level(evaluate: Evaluate, flat: np.ndarray, i: int, j0: float, h: float) -> float:
    """The standard deviation of the cost's round-off near the check point, measured.

    Evaluates the cost at ``NOISE_POINTS`` equally spaced points around
    coordinate ``i``, so close together that the smooth part of the cost
    vanishes from its third and higher differences, which then hold only the
    noise (Moré & Wild, "Estimating computational noise", 2011). Each k-th
    difference of independent noise of deviation σ has mean square
    ``σ² (2k)! / (k!)²``; the median of the estimates for k = 3..6 is returned.

    Where the smooth part has not vanished (a cost that varies on a scale finer than
    the step: ``sin(1e6·θ)``), the high differences keep one sign along the stencil,
    as the derivative they approximate does, where noise would flip them: the spacing
    is then made ``NOISE_SHRINK`` times finer, up to ``NOISE_REFINE`` times, until it
    shows noise (or no change at all: 0, noise below what the inputs resolve).
    """
    spacing = h * _policy.NOISE_SPACING
    estimate = 0.0
    for _ in range(_policy.NOISE_REFINE + 1):
        values = _stencil(evaluate, flat, i, j0, spacing)
        if np.all(values == values[0]):
            return 0.0
        estimate, smooth = _noise_estimate(values)
        if not smooth:
            return estimate
        spacing /= _policy.NOISE_SHRINK
    return estimate


def _stencil(evaluate: Evaluate, flat: np.ndarray, i: int, j0: float, spacing: float) -> np.ndarray:
    """The cost at ``NOISE_POINTS`` points ``spacing`` apart, centred on coordinate ``i``."""
    half = _policy.NOISE_POINTS // 2
    x0 = flat[i]
    values = []
    try:
        for j in range(-half, half + 1):
            if j == 0:
                values.append(j0)
                continue
            flat[i] = x0 + j * spacing
            values.append(float(np.real(evaluate())))
    finally:
        flat[i] = x0
    return np.asarray(values)


def _noise_estimate(values: np.ndarray) -> tuple[float, bool]:
    """Moré & Wild's estimate of the noise's deviation from equally spaced ``values``, and
    whether the smooth part dominates it: noise flips the sign of the third differences
    along the stencil and gives the same estimate at every order k = 3..6, where a smooth
    part keeps their sign, or its estimates fall (or rise) with k by more than
    ``NOISE_CONSISTENT`` over the four."""
    diffs = values
    estimates = []
    one_sign = False
    for k in range(1, 7):
        diffs = np.diff(diffs)
        if k == 3:
            one_sign = bool(np.all(diffs > 0) or np.all(diffs < 0))
        if k >= 3:
            gamma = math.factorial(k) ** 2 / math.factorial(2 * k)
            estimates.append(math.sqrt(gamma * float(np.mean(diffs**2))))
    trend = max(estimates) > _policy.NOISE_CONSISTENT * min(estimates)
    return float(np.median(estimates)), one_sign or trend


def cost_unit(j0: float, values: Sequence[float]) -> float:
    """The unit round-off of the precision the cost's values are computed in.

    A cost computed in float32 (a ``.astype(np.float32)`` inside it) returns
    values that float32 represents exactly, most of them using 23 or 24 of its
    significant bits; a float64 computation gives such a value with
    probability 2**-29, unless its values are short binary fractions (a linear
    cost of dyadic data), which use few bits. So the cost is float32's when its
    distinct values (``j0`` and ``values``) all are float32 numbers and at
    least half of them use 23 bits or more; or when it never moved at all and
    its one value is a float32 number (a float32 cost that cannot resolve the
    step has not shown that its parameters do not matter).
    """
    distinct = {j0, *values}
    if len(values) < 2 or not all(_is_float32(v) for v in distinct):
        return _policy.UNIT_ROUNDOFF
    if len(distinct) == 1:
        return FLOAT32_UNIT
    long = sum(significant_bits(v) >= 23 for v in distinct)
    return FLOAT32_UNIT if 2 * long >= len(distinct) else _policy.UNIT_ROUNDOFF


def _is_float32(v: float) -> bool:
    with np.errstate(over="ignore"):  # beyond float32's range: not a float32 number
        return bool(np.isfinite(v)) and float(np.float32(v)) == v


def significant_bits(v: float) -> int:
    """Bits of ``v``'s significand up to its last 1 (0 for 0)."""
    mantissa = int(math.frexp(abs(v))[0] * 2**53)
    if mantissa == 0:
        return 0
    return 53 - ((mantissa & -mantissa).bit_length() - 1)


FLOAT32_UNIT = float(np.finfo(np.float32).eps) / 2


@dataclass(frozen=True)
class NoiseSite:
    """A coordinate at which to measure the cost's round-off."""

    name: str  # the parameter, for messages
    flat: np.ndarray  # its working array, flat
    index: int
    h: float


@dataclass(frozen=True)
class Noise:
    """The absolute error of one cost value (``bound``), and whether the measurement saw
    the cost change (``seen``: its median deviation over the sites is not 0; at a spacing
    below the inputs' resolution, or a grid's, the values at most sites are all the same,
    and the bound is the model's alone)."""

    bound: float
    seen: bool


def measure_noise(
    evaluate: Evaluate,
    sites: Sequence[NoiseSite],
    j0: float,
    unit: float = _policy.UNIT_ROUNDOFF,
    magnitude: float = 0.0,
) -> Noise:
    """The absolute error of one cost value: modelled, and measured at ``sites``.

    The larger of the model ``COST_ROUNDOFF · u · max(|J|, magnitude)`` (``u``
    the unit round-off of the precision the cost is computed in, see
    `cost_unit`; ``magnitude`` the size of the terms it sums, when known)
    and ``NOISE_MARGIN`` times the median measured deviation.
    """
    model = _policy.COST_ROUNDOFF * unit * max(abs(j0), magnitude)
    measured = []
    for s in sites:
        with blame(f"while its round-off was measured near {s.name}"):
            measured.append(noise_level(evaluate, s.flat, s.index, j0, s.h))
    sigma = float(np.median(measured)) if measured else 0.0
    return Noise(max(model, _policy.NOISE_MARGIN * sigma), sigma > 0)


def rounded_near(evaluate: Evaluate, sites: Sequence[NoiseSite], j0: float) -> bool:
    """Whether the cost shows a grid at each site's step (the automatic one), one on
    either side of its coordinate: a cost rounded to a coarse grid mostly returns the
    same values there, of few bits, where an exact cost of short binary fractions moves
    to values of all their bits.

    Asked of values of few bits that did not repeat at the step the check took (a step
    given as ``eps``, many grid spacings wide), which either cost could have returned."""
    values = []
    for s in sites:
        x0 = s.flat[s.index]
        try:
            with blame(f"while its grid was looked for near {s.name}"):
                for x in (x0 + s.h, x0 - s.h):
                    s.flat[s.index] = x
                    values.append(float(np.real(evaluate())))
        finally:
            s.flat[s.index] = x0
    near = np.asarray([j0, *values])
    return bool(values) and repeated(near) and quantum(j0, near, repeats=False) > 0


def repeated(values: np.ndarray) -> bool:
    """Whether at most half of ``values`` are distinct: a grid's values repeat where an
    exact cost's change at nearly every point."""
    return 2 * np.unique(values).size <= values.size


def quantum(j0: float, values: np.ndarray, repeats: bool = True) -> float:
    """The spacing of the grid the cost's values are rounded to, at the largest of them
    (0 when they show no grid).

    A cost rounded to float16, to an integer or to any grid returns values with few
    significant bits, and at a small step mostly the same value; a float64 cost returns
    a new value at nearly every point, using all its bits. Taken as a floating grid of
    ``p`` significant bits (``p`` the most any of the values, ``j0`` and ``values``,
    uses), the grid's spacing at the largest value ``v`` is ``2**(e - p)``, ``e`` the
    exponent of ``v``: an upper bound on the spacing wherever the values lie (an integer
    grid is a floating one as wide as its largest value), twice the error of one value
    rounded to it; 0 for values of more than ``_policy.GRID_BITS`` bits. With ``repeats``
    the values must
    also repeat (at most half of them distinct): at the automatic step an exact cost of
    short binary fractions (a linear cost of dyadic data) uses few bits too, but changes
    at every point; at a step grown from the noise it uses all of them. Without
    ``repeats`` a cost that never moved is bounded by its one value's own bits.
    """
    short, grid, _ = spacings(j0, values)
    return grid if repeats else short


def spacings(j0: float, values: np.ndarray) -> tuple[float, float, bool]:
    """`quantum` both ways from one pass over the values: without ``repeats``, with it,
    and whether the values repeat (at most half of them distinct, `repeated`)."""
    v = np.concatenate([[j0], np.real(np.asarray(values, dtype=np.complex128).reshape(-1))])
    v = v[np.isfinite(v)]
    every = np.unique(v)
    repeats = 2 * every.size <= v.size
    distinct = every[every != 0]
    if not distinct.size:
        return 0.0, 0.0, repeats
    mantissa, exponent = np.frexp(np.abs(distinct))
    m = (mantissa * 2.0**53).astype(np.int64)
    trailing = np.log2((m & -m).astype(np.float64)).astype(np.int64)
    bits = int(np.max(53 - trailing))
    if bits > _policy.GRID_BITS:  # finer than float32: float64 values that lost low bits
        return 0.0, 0.0, repeats  # to cancellation
    short = float(2.0 ** int(np.max(exponent) - bits))
    return short, short if distinct.size >= 2 and repeats else 0.0, repeats


def moves(
    evaluate: Evaluator,
    arrays: dict[str, np.ndarray],
    leaves: Sequence[Leaf],
    j0: float,
    by: float,
) -> bool:
    """Whether the cost's value changes at all when one element moves by ``by · max(1, |θ|)``
    (each parameter's first element in turn, put back after)."""
    for leaf in leaves:
        flat = arrays[leaf.name].reshape(-1)  # a view: the working array is C-contiguous
        if not flat.size:
            continue
        old = flat[0]
        flat[0] = old + by * max(1.0, abs(float(old.real)))
        try:
            moved = evaluate() != j0
        except CostFailed:  # (outside the cost's domain there: no evidence it moves)
            moved = False
        finally:
            flat[0] = old
        if moved:
            return True
    return False
