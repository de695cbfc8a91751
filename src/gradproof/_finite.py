"""Finite-difference schemes over coordinates perturbed in place.

Nothing here copies the parameter vector per coordinate: a coordinate is set
to its perturbed value in the working array, the cost is evaluated, and the
coordinate is set back to its exact original bits.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import _policy

Evaluate = Callable[[], float]


@dataclass(frozen=True)
class Steps:
    """Each coordinate's value and step; it is evaluated at ``theta ± h`` (and ``± h/2``).

    The points themselves are computed a chunk at a time (:func:`points_for`),
    so a check holds a small constant number of copies of a parameter.
    """

    theta: np.ndarray
    h: np.ndarray  # the step actually taken (exactly representable when automatic)


def make_steps(method: str, theta: np.ndarray, eps: float | None) -> Steps:
    """Steps for the flat float64 coordinates ``theta``.

    With ``eps`` given, ``theta ± eps`` is used exactly as the textbook formula
    does (and divided by ``2 eps``). With ``eps=None`` the step is scaled to each
    coordinate and rounded so that ``theta + h`` is exact: the divisor is then
    the true distance between the points.
    """
    if eps is None:
        h0 = _policy.default_step(method, theta)
        if method == "complex":
            h = h0
        else:
            h = (theta + h0) - theta
            h = np.where(h > 0, h, h0)
    else:
        h = np.full(theta.shape, float(eps))
    return Steps(theta, h)


def points_for(method: str, theta: np.ndarray, h: np.ndarray) -> list[np.ndarray]:
    """The perturbed values each coordinate takes, in evaluation order."""
    if method == "central":
        return [theta + h, theta - h]
    if method == "forward":
        return [theta + h]
    if method == "backward":
        return [theta - h]
    if method == "richardson":
        return [theta + h, theta - h, theta + h / 2, theta - h / 2]
    if method == "complex":
        return [theta + 1j * h]
    raise ValueError(method)


class SweepInterrupted(Exception):
    """Internal: the cost raised at ``(index, point)``; the cause is chained."""

    def __init__(self, index: int, point: int) -> None:
        super().__init__(index, point)
        self.index = index
        self.point = point


def sweep(
    evaluate: Evaluate,
    flat: np.ndarray,
    values: list,
    indices: range | list[int],
    tick: Callable[[int], None] | None = None,
) -> list[np.ndarray]:
    """For each coordinate ``indices[j]`` evaluate the cost at each of ``values``.

    ``values[k][j]`` is the value coordinate ``indices[j]`` takes for
    evaluation ``k`` (lists of floats or complex numbers). Returns one array of
    cost values per ``k``, aligned with ``indices``. Each coordinate is
    restored to its exact bits after its evaluations, and on any exception.
    """
    outs: list[list] = [[] for _ in values]
    i, k = -1, 0
    stride = 512
    x0 = None
    try:
        if len(values) == 2:
            vp, vm = values
            op, om = outs
            for j, i in enumerate(indices):
                x0 = flat[i]
                k = 0
                flat[i] = vp[j]
                op.append(evaluate())
                k = 1
                flat[i] = vm[j]
                om.append(evaluate())
                flat[i] = x0
                if tick is not None and j % stride == stride - 1:
                    tick(stride)
        else:
            for j, i in enumerate(indices):
                x0 = flat[i]
                for k, v in enumerate(values):
                    flat[i] = v[j]
                    outs[k].append(evaluate())
                flat[i] = x0
                if tick is not None and j % stride == stride - 1:
                    tick(stride)
    except BaseException as exc:
        if i >= 0 and x0 is not None:
            flat[i] = x0
        if isinstance(exc, Exception) and not isinstance(exc, KeyboardInterrupt):
            raise SweepInterrupted(i, k) from exc
        raise
    if tick is not None:
        tick(len(indices) % stride)
    return [np.asarray(o) for o in outs]


def estimate(method: str, j0: float, js: list[np.ndarray], h: np.ndarray) -> np.ndarray:
    """The numerical partials from the cost values of :func:`sweep`."""
    if method == "central":
        jp, jm = js
        return (jp - jm) / (2 * h)
    if method == "forward":
        return (js[0] - j0) / h
    if method == "backward":
        return (j0 - js[0]) / h
    if method == "richardson":
        jp, jm, jhp, jhm = js
        coarse = (jp - jm) / (2 * h)
        fine = (jhp - jhm) / h
        return (4 * fine - coarse) / 3
    if method == "complex":
        return np.imag(js[0]) / h
    raise ValueError(method)


@dataclass(frozen=True)
class Probe:
    """Everything the cost says about one coordinate at steps ±h and ±h/2."""

    forward: float  # (J(θ+h) − J0) / h
    backward: float  # (J0 − J(θ−h)) / h
    forward_half: float  # (J(θ+h/2) − J0) / (h/2)
    backward_half: float

    def scheme(self, method: str, half: bool) -> float:
        f, b = (self.forward_half, self.backward_half) if half else (self.forward, self.backward)
        if method in ("central", "richardson"):
            return (f + b) / 2
        return f if method == "forward" else b

    def truncation(self, method: str) -> float:
        """Estimated truncation error of the method's partial, from steps h and h/2."""
        p = _policy.ORDER[method]
        gap = abs(self.scheme(method, False) - self.scheme(method, True))
        if method == "richardson":
            return gap / 3
        return gap / (1 - 2.0**-p)

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


def probe(
    evaluate: Evaluate,
    flat: np.ndarray,
    i: int,
    j: int,
    j0: float,
    steps: Steps,
    known: dict[str, float],
) -> Probe:
    """Evaluate coordinate ``i`` (``steps`` entry ``j``) at those of θ±h, θ±h/2 not in ``known``."""
    x0 = flat[i]
    got = dict(known)
    theta, h = float(steps.theta[j]), float(steps.h[j])
    points = {
        "plus": theta + h,
        "minus": theta - h,
        "half_plus": theta + h / 2,
        "half_minus": theta - h / 2,
    }
    try:
        for key, value in points.items():
            if key not in got:
                flat[i] = value
                got[key] = evaluate()
    finally:
        flat[i] = x0
    hh = points["half_plus"] - theta
    hm = theta - points["half_minus"]
    return Probe(
        forward=(got["plus"] - j0) / h,
        backward=(j0 - got["minus"]) / h,
        forward_half=(got["half_plus"] - j0) / hh,
        backward_half=(j0 - got["half_minus"]) / hm,
    )


def noise_level(evaluate: Evaluate, flat: np.ndarray, i: int, j0: float, h: float) -> float:
    """The standard deviation of the cost's round-off near the check point, measured.

    Evaluates the cost at ``NOISE_POINTS`` equally spaced points around
    coordinate ``i``, so close together that the smooth part of the cost
    vanishes from its third and higher differences, which then hold only the
    noise (Moré & Wild, "Estimating computational noise", 2011). Each k-th
    difference of independent noise of deviation σ has mean square
    ``σ² (2k)! / (k!)²``; the median of the estimates for k = 3..6 is returned.
    """
    half = _policy.NOISE_POINTS // 2
    s = h * _policy.NOISE_SPACING
    x0 = flat[i]
    values = []
    try:
        for j in range(-half, half + 1):
            if j == 0:
                values.append(j0)
                continue
            flat[i] = x0 + j * s
            values.append(float(np.real(evaluate())))
    finally:
        flat[i] = x0
    diffs = np.asarray(values)
    estimates = []
    for k in range(1, 7):
        diffs = np.diff(diffs)
        if k >= 3:
            gamma = math.factorial(k) ** 2 / math.factorial(2 * k)
            estimates.append(math.sqrt(gamma * float(np.mean(diffs**2))))
    return float(np.median(estimates))
