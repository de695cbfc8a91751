"""Comparing analytic and numeric partials, knowing how wrong the numeric ones can be.

A coordinate is in doubt when analytic and numeric disagree by more than the
tolerance (relative to their size) and by more than round-off alone could
explain (`in_doubt`). The records a comparison works on and hands on are here:
`Partials`, `Allowance`, `Judgement` and the coordinate `Status`; each doubtful
coordinate is then probed and judged by `_judge`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from . import _policy
from ._finite import Probe
from ._policy import Scheme


class Status(enum.IntEnum):
    """A coordinate's verdict. Stored as ``int8`` codes in `Judgement.status`; ordered so
    that the codes from ``WRONG`` on fail their parameter (`failed`, `failing`)."""

    AGREES = 0  # within tol, or within round-off without further evidence
    NUMERICS = 1  # disagreement within the numeric partial's estimated error
    KINK = 2  # one-sided slopes inconsistent: a non-differentiable point
    WRONG = 3  # probed, and the disagreement is real
    SUSPECT = 4  # in doubt, not probed (the parameter already had enough confirmed errors)

    @property
    def failed(self) -> bool:
        """Whether a coordinate with this status fails its parameter."""
        return self >= Status.WRONG

    @staticmethod
    def failing(codes: np.ndarray) -> np.ndarray:
        """Which of an array of status codes fail their parameter."""
        return np.asarray(codes) >= Status.WRONG


def flat64(a: np.ndarray) -> np.ndarray:
    """A float64, one-dimensional view (or copy) of an array."""
    return np.asarray(a, dtype=np.float64).reshape(-1)


def difference(analytic: np.ndarray, numerical: np.ndarray) -> float:
    """``‖g − g̃‖₂ / (‖g‖₂ + ‖g̃‖₂)``, and 0.0 when both are zero; scaled first by the
    largest magnitude, so that gradients near float64's range do not overflow the norms
    (an inf over inf would read as no difference at all)."""
    analytic, numerical = np.asarray(analytic, np.float64), np.asarray(numerical, np.float64)
    largest = max(
        float(np.max(np.abs(analytic), initial=0.0)), float(np.max(np.abs(numerical), initial=0.0))
    )
    if largest == 0.0:
        return 0.0
    if not np.isfinite(largest):
        return 1.0 if np.any(analytic != numerical) else 0.0
    a, n = analytic / largest, numerical / largest
    return float(np.linalg.norm(a - n)) / float(np.linalg.norm(a) + np.linalg.norm(n))


@dataclass(frozen=True)
class Judgement:
    """The verdict on each coordinate of one parameter (flat arrays)."""

    status: np.ndarray  # int8 `Status` codes, by coordinate
    probed: int  # coordinates probed with extra evaluations
    # Coordinates where analytic and numeric partials are both zero within round-off.
    negligible: np.ndarray
    floor: float  # the largest round-off bound among the coordinates, for messages
    # Kinks whose finite differences do not settle as the step shrinks: by position,
    # the numeric partial at each step tried, ((step, value), ...), the evidence.
    unsettled: dict[int, tuple[tuple[float, float], ...]] = field(default_factory=dict)
    # Coordinates judged from a smaller step (near a pole or a domain edge): by position,
    # the numeric partial there, which replaces the coarser one in the report.
    refined: dict[int, float] = field(default_factory=dict)
    # Positions beyond tol and round-off accepted below an inexact cost's floor.
    floored: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def judged(self) -> np.ndarray:
        """The coordinates that count: all but the kinks."""
        return self.status != Status.KINK

    @property
    def wrong(self) -> np.ndarray:
        """Positions judged wrong or suspected."""
        return np.flatnonzero(Status.failing(self.status))

    @property
    def failed(self) -> bool:
        return bool(np.any(Status.failing(self.status)))

    def indices(self, code: int) -> np.ndarray:
        return np.flatnonzero(self.status == code)


# accepted(gap, numeric): where a caller's own tolerances accept a disagreement.
Accepted = Callable[[np.ndarray, np.ndarray], np.ndarray]


class Prober(Protocol):
    """``probe_at(j, shrink)``: the cost around coordinate ``j`` at steps ``h/shrink``."""

    def __call__(self, j: int, shrink: float = 1.0) -> Probe: ...


@dataclass(frozen=True)
class Partials:
    """One parameter's partials at the coordinates checked (flat float64, aligned).

    ``second_difference`` is ``|J(θ+h) − 2 J0 + J(θ−h)| / h``, a free kink
    screen where the scheme evaluated both sides (``None`` otherwise).
    """

    analytic: np.ndarray
    numerical: np.ndarray
    h: np.ndarray
    second_difference: np.ndarray | None
    theta: np.ndarray | None = None  # the coordinates' values, to keep a smaller step inside

    def closer(self, j: int) -> float:
        """How many times smaller a step looks closer at coordinate ``j``: 16, or enough to
        stay within a quarter of |θ| (a pole or a domain edge is often at 0)."""
        shrink = _policy.KINK_CONFIRM
        if self.theta is not None and self.theta[j] != 0:
            shrink = max(shrink, 4 * float(self.h[j]) / abs(float(self.theta[j])))
        return shrink


@dataclass(frozen=True)
class Doubt:
    gap: np.ndarray  # |analytic − numeric|
    differences_error: np.ndarray  # the finite differences' round-off (shrinks as h grows)
    analytic_error: np.ndarray  # the analytic gradient's own round-off (no step changes it)
    hidden: np.ndarray  # above tol but within round-off: to be judged at a larger step
    grow: np.ndarray  # how many times larger a step each of ``hidden`` is judged at
    doubtful: np.ndarray  # disagreements beyond tol and round-off: to be probed
    screen: np.ndarray  # positions that agree but look like kinks: to be probed too
    floored: np.ndarray  # beyond tol and round-off, accepted below the inexact cost's floor
    roundoff: np.ndarray  # the error round-off alone can put in each comparison (the sum)


@dataclass(frozen=True)
class Allowance:
    """What one parameter's disagreements are measured against.

    Attributes:
        scheme: the finite-difference scheme that made the numeric partials.
        noise: the absolute error of one cost value (round-off and any observed
            non-determinism).
        analytic_rel: relative accuracy of the analytic gradient's dtype.
        tol: the check's tolerance.
        accepted: a caller's own tolerances (a drop-in's ``atol``/``rtol``), if any.
        inexact: the cost was measured noisier than round-off, or a drop-in checks
            it: an element's disagreement below ``ELEMENT_FLOOR · tol`` of the
            parameter's gradient norm is accepted.
    """

    scheme: Scheme
    noise: float
    analytic_rel: float
    tol: float
    accepted: Accepted | None = None
    inexact: bool = False


def analytic_error(analytic: np.ndarray, rel: float) -> np.ndarray:
    """The round-off of each element of an analytic gradient of relative accuracy ``rel``.

    An analytic gradient computed in low precision errs relative to the sums it is made
    of, not to each element: an element that cancels to near 0 in float32 is off by
    about u times the parameter's larger elements.
    """
    magnitude = np.abs(analytic)
    return rel * np.maximum(magnitude, magnitude.max(initial=0.0))


def _roundoff(p: Partials, allow: Allowance) -> tuple[np.ndarray, np.ndarray]:
    """The finite differences' round-off (it shrinks as h grows) and the analytic
    gradient's own (no step changes it), for each coordinate of ``p``."""
    if allow.scheme.is_complex:
        differences = _policy.COST_ROUNDOFF * _policy.UNIT_ROUNDOFF * np.abs(p.numerical)
    else:
        differences = allow.scheme.roundoff_gain * allow.noise / p.h
    return differences, analytic_error(p.analytic, allow.analytic_rel)


def in_doubt(p: Partials, allow: Allowance) -> Doubt:
    scheme, noise, tol, accepted = allow.scheme, allow.noise, allow.tol, allow.accepted
    gap = np.abs(p.analytic - p.numerical)
    size = np.abs(p.analytic) + np.abs(p.numerical)
    differences_error, analytic_error = _roundoff(p, allow)
    roundoff = differences_error + analytic_error
    beyond = gap > tol * size
    floored = np.zeros(0, dtype=np.int64)
    if allow.inexact:
        # A cost measured to be inexact (noisier than round-off: an iterative solver's
        # tolerance), or a drop-in's: below a share of tol of the parameter's gradient
        # norm, an element's disagreement is that inexactness, not a finding.
        norm = float(np.linalg.norm(p.analytic) + np.linalg.norm(p.numerical))
        below = gap <= _policy.ELEMENT_FLOOR * tol * norm
        floored = np.flatnonzero(beyond & below & (gap > _policy.ERROR_SAFETY * roundoff))
        beyond &= ~below
    doubtful = beyond & (gap > _policy.ERROR_SAFETY * roundoff)
    if accepted is not None:
        doubtful &= ~accepted(gap, p.numerical)
    screen = np.zeros(0, dtype=np.int64)
    if p.second_difference is not None and not scheme.is_complex:
        kinkish = (p.second_difference > _policy.KINK_SCREEN * size) & (
            p.second_difference > _policy.KINK_NOISE * noise / p.h
        )
        screen = np.flatnonzero(kinkish & ~doubtful)
    hidden, grow = np.zeros(0, dtype=np.int64), np.zeros(0)
    if scheme.two_sided:
        hidden, grow = _hidden(gap, beyond, differences_error, analytic_error, doubtful)
        if accepted is not None:
            kept = ~accepted(gap[hidden], p.numerical[hidden])
            hidden, grow = hidden[kept], grow[kept]
    return Doubt(
        gap=gap,
        differences_error=differences_error,
        analytic_error=analytic_error,
        hidden=hidden,
        grow=grow,
        doubtful=doubtful,
        screen=screen,
        floored=floored,
        roundoff=roundoff,
    )


def _hidden(
    gap: np.ndarray,
    beyond: np.ndarray,
    differences_error: np.ndarray,
    analytic_error: np.ndarray,
    doubtful: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Positions ``beyond`` tol that round-off clears, which a step at most ``_policy.LOOK_WIDEST``
    times larger could resolve (see `_look_wider`), the least explained first, and
    the step factor each is judged at.

    The step grows until ERROR_SAFETY times the finite differences' round-off at its
    half step, ``2 e / G``, is within half the room the analytic round-off leaves:
    ``G = 4 · ERROR_SAFETY · e / room``, rounded up to a power of two, at least
    ``_policy.LOOK_WIDER``."""
    room = gap - 2 * _policy.ERROR_SAFETY * analytic_error
    need = 4 * _policy.ERROR_SAFETY * differences_error / np.maximum(room, 1e-300)
    hidden = ~doubtful & beyond & (room > 0) & (need <= _policy.LOOK_WIDEST)
    order = np.flatnonzero(hidden)
    order = order[np.argsort(need[order], kind="stable")]
    grow = np.clip(
        2.0 ** np.ceil(np.log2(np.maximum(need[order], 1.0))),
        _policy.LOOK_WIDER,
        _policy.LOOK_WIDEST,
    )
    return order, grow


def numerical_error(p: Partials, allow: Allowance) -> np.ndarray:
    """The error round-off alone can put in each comparison of ``p`` (finite differences'
    and the analytic gradient's own)."""
    differences, analytic = _roundoff(p, allow)
    return differences + analytic


def settled(p: Partials, allow: Allowance) -> bool:
    """Whether every coordinate agrees at this noise level, with nothing to probe.

    A larger noise only shrinks what is in doubt, so a parameter settled at
    the modelled round-off needs no measurement of the real one.
    """
    doubt = in_doubt(p, allow)
    return not doubt.doubtful.any() and not doubt.screen.size and not doubt.hidden.size
