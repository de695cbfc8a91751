"""One random direction judged, as directional mode judges each (`_directional`), and the
records its stages share: the check's `Context`, the `Parameter` under check.

Along a direction the analytic side is ``vᵀg`` and the numeric side one central
difference (`_mover.Mover.central`); in doubt, the evidence is taken cheapest first
(`judge_along`), against the cost's round-off as modelled, then as measured (`CostNoise`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import _compare, _judge, _policy
from ._cost import Evaluator
from ._finite import Probe, Tick
from ._mover import Mover
from ._options import Options
from ._tree import Leaf

CENTRAL = _policy.SCHEMES["central"]


@dataclass(frozen=True)
class Along:
    """One direction's verdict: its two sides at the step it was judged at, and its status."""

    analytic: float  # vᵀg along the displacement actually taken
    numerical: float
    step: float
    status: _compare.Status


def step_along(noise: CostNoise, tol: float, vg: float, eps: float | None) -> float:
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


class CostNoise:
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


@dataclass(frozen=True)
class Context:
    """What every parameter's check shares: the cost and its value at the point, the
    cost's round-off (measured once for all, where a direction first needs it), the
    options, the one generator the directions' seeds are drawn from, in parameter
    order, and the progress bar's tick."""

    evaluate: Evaluator
    j0: float
    noise: CostNoise
    opts: Options
    rng: np.random.Generator
    tick: Tick | None

    @property
    def k(self) -> int:
        """The random directions each parameter starts with."""
        assert self.opts.k is not None  # resolved by Options for mode="directional"
        return self.opts.k


@dataclass(frozen=True)
class Parameter:
    """One parameter as checked: its leaf, its working values (a flat view, moved in
    place), its analytic gradient (flat, float64), the round-off of that gradient's
    own dtype (``rel``, relative) and the dtype's name, for its report."""

    leaf: Leaf
    flat: np.ndarray
    g: np.ndarray
    rel: float
    dtype: str


def judge_along(mover: Mover, v: np.ndarray, param: Parameter, ctx: Context) -> tuple[Along, int]:
    """Judge one direction ``v`` of ``param``; returns it and the number of probes spent.

    In doubt, the cheapest evidence comes first: the same difference at a
    smaller step (a crossed kink, or truncation error, fades there), then the
    cost's measured round-off, then a probe at half the step that tells a
    kink, numerical error and a wrong gradient apart.
    """
    # (read once per direction, not once per pass: the loop is the hot path)
    g, rel, j0, noise = param.g, param.rel, ctx.j0, ctx.noise
    tol, eps, accepted = ctx.opts.tol, ctx.opts.eps, ctx.opts.accepted
    probes = 0
    vg = float(v @ g)
    t = step_along(noise, tol, vg, eps)
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
            return Along(d, dn, t, _compare.Status.AGREES), probes
        if not looked_closer:
            t /= _policy.KINK_RETRY_SHRINK
            looked_closer = True
            continue
        if not noise.measured:  # still in doubt at the modelled round-off: measure it
            noise.measure()
            t, looked_closer = step_along(noise, tol, vg, eps), False
            continue
        probe = _half_step(mover, v, g, t, j0, (jp, jm))
        probes += 1
        status = _judge.classify(CENTRAL, probe, gap=gap, roundoff=roundoff, noise=noise.value, h=t)
        # A kink crossed off-centre reads as large truncation error rather than
        # as a kink: either way, a smaller step makes crossing one unlikely.
        if (
            status in (_compare.Status.KINK, _compare.Status.NUMERICS)
            and attempt < _policy.KINK_RETRIES
        ):
            t /= _policy.KINK_RETRY_SHRINK
            attempt += 1
            continue
        return Along(d, dn, t, status), probes


def _half_step(
    mover: Mover, v: np.ndarray, g: np.ndarray, t: float, j0: float, sides: tuple[float, float]
) -> Probe:
    """The one-sided slopes about θ along ``v``: at ``t`` from ``sides`` (the cost at
    θ + t·v and θ − t·v, already paid for), at t/2 from 2 more evaluations; what
    `_judge.classify` tells a kink, numerical error and a wrong gradient apart by."""
    jp, jm = sides
    jp2, jm2, _ = mover.central(v, t / 2, g)
    return Probe(
        forward=(jp - j0) / t,
        backward=(j0 - jm) / t,
        forward_half=(jp2 - j0) / (t / 2),
        backward_half=(j0 - jm2) / (t / 2),
    )
