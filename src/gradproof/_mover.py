"""One parameter moved along a direction, or one element of it, and put back bit for bit:
what `_directional` evaluates the cost at."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from . import _policy
from ._errors import CostError
from ._finite import Evaluate, automatic_step


class Mover:
    """Moves one parameter along a direction and puts back its exact bits."""

    def __init__(self, flat: np.ndarray, evaluate: Evaluate):
        self.flat = flat
        self.saved = flat.copy()
        # (a real cost: the complex step has no directional mode)
        self.evaluate: Callable[[], float] = lambda: evaluate().real
        self.step = np.empty_like(flat)  # scratch: t·v, then the displacement taken
        # Elements that are inf or NaN (a masked input) cannot move: they stay put.
        finite = np.isfinite(self.saved)
        self.frozen = None if finite.all() else ~finite

    def direction(self, seed: int) -> np.ndarray:
        """The random direction drawn from ``seed``, scaled by max(1, |θᵢ|)."""
        v = np.random.default_rng(seed).standard_normal(self.flat.size)
        np.abs(self.saved, out=self.step)
        np.maximum(self.step, 1.0, out=self.step)
        v *= self.step
        if self.frozen is not None:
            v[self.frozen] = 0.0
        return v

    def central(
        self, v: np.ndarray, t: float, g: np.ndarray, lo: int = 0, hi: int | None = None
    ) -> tuple[float, float, float]:
        """``J(θ + t·v)``, ``J(θ − t·v)`` on ``[lo, hi)``, and ``gᵀ·disp / t``.

        ``disp`` is half the displacement actually taken (the points are
        rounded), so the analytic side matches the numeric one exactly.
        """
        seg = slice(lo, self.flat.size if hi is None else hi)
        base, step, out = self.saved[seg], self.step[seg], self.flat[seg]
        np.multiply(v[seg], t, out=step)
        try:
            np.add(base, step, out=out)
            jp = self.evaluate()
            np.subtract(base, step, out=out)
            jm = self.evaluate()
            # (θ + tv) − (θ − tv), as rounded: out holds θ − tv; step becomes θ + tv first.
            np.add(base, step, out=step)
            with np.errstate(invalid="ignore"):  # inf - inf where an element is frozen
                np.subtract(step, out, out=step)
            if self.frozen is not None:
                step[self.frozen[seg]] = 0.0  # inf - inf: no displacement there
        finally:
            out[...] = base
        if not (math.isfinite(jp) and math.isfinite(jm)):
            raise CostError(
                f"the cost is {jp if not math.isfinite(jp) else jm} along a random direction at "
                f"a step of {t:.1e}: the direction leaves the cost's domain (log or sqrt near 0?). "
                "Use mode='full', which shrinks the step coordinate by coordinate"
            )
        return jp, jm, float(step @ g[seg]) / (2 * t)

    def coordinate(self, i: int) -> float:
        """The central difference of element ``i`` at the automatic step."""
        jp, jm, h = self.sides(i, automatic_step(float(self.saved[i])))
        return (jp - jm) / (2 * h)

    def sides(self, i: int, h: float) -> tuple[float, float, float]:
        """``J`` with element ``i`` moved by ``+h`` and by ``-h`` (as rounded), and ``h``."""
        x0 = float(self.saved[i])
        try:
            self.flat[i] = x0 + h
            h = float(self.flat[i]) - x0
            jp = self.evaluate()
            self.flat[i] = x0 - h
            jm = self.evaluate()
        finally:
            self.flat[i] = self.saved[i]
        return jp, jm, h

    def kink(self, i: int, analytic: float, j0: float, noise: float) -> bool:
        """Whether element ``i`` sits on a kink its analytic partial is a one-sided slope
        of: the one-sided slopes disagree, by as much at a step 16 times smaller (a
        curvature's disagreement shrinks with the step), and the analytic partial lies
        between them (a ReLU's tie in a max pool, |θ| at 0)."""
        h = automatic_step(float(self.saved[i]))
        spreads = []
        for step in (h, h / _policy.KINK_RETRY_SHRINK):
            jp, jm, taken = self.sides(i, step)
            forward, backward = (jp - j0) / taken, (j0 - jm) / taken
            spreads.append(
                (abs(forward - backward), min(forward, backward), max(forward, backward))
            )
            if abs(forward - backward) <= _policy.KINK_NOISE * noise / taken:
                return False  # one-sided slopes that agree within round-off: no kink
        (wide, low, high), (narrow, _, _) = spreads
        slack = _policy.KINK_SHARE * wide
        return narrow > _policy.KINK_SHARE * wide and low - slack <= analytic <= high + slack
