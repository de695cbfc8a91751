"""Comparing analytic and numeric partials, knowing how wrong the numeric ones can be.

A coordinate is in doubt when analytic and numeric disagree by more than the
tolerance (relative to their size) and by more than round-off alone could
explain. Each doubtful coordinate is probed at a second step, which tells a
kink, a disagreement within the numeric partial's own error, and a real error
apart; a suspected kink is confirmed at a step 16 times smaller. Besides
measuring the cost's round-off, these are the only extra evaluations a check
spends.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from . import _policy
from ._errors import CostError
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


def difference(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """``‖g − g̃‖₂ / (‖g‖₂ + ‖g̃‖₂)``, and 0.0 when both are zero; scaled first by the
    largest magnitude, so that gradients near float64's range do not overflow the norms
    (an inf over inf would read as no difference at all)."""
    analytic, numeric = np.asarray(analytic, np.float64), np.asarray(numeric, np.float64)
    largest = max(
        float(np.max(np.abs(analytic), initial=0.0)), float(np.max(np.abs(numeric), initial=0.0))
    )
    if largest == 0.0:
        return 0.0
    if not np.isfinite(largest):
        return 1.0 if np.any(analytic != numeric) else 0.0
    a, n = analytic / largest, numeric / largest
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
    numeric: np.ndarray
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
class _Doubt:
    gap: np.ndarray  # |analytic − numeric|
    differences_error: np.ndarray  # the finite differences' round-off (shrinks as h grows)
    analytic_error: np.ndarray  # the analytic gradient's own round-off (no step changes it)
    hidden: np.ndarray  # above tol but within round-off: to be judged at a larger step
    grow: np.ndarray  # how many times larger a step each of ``hidden`` is judged at
    doubtful: np.ndarray  # disagreements beyond tol and round-off: to be probed
    screen: np.ndarray  # positions that agree but look like kinks: to be probed too
    floored: np.ndarray  # beyond tol and round-off, accepted below the inexact cost's floor

    @property
    def roundoff(self) -> np.ndarray:
        """The error round-off alone can put in each comparison."""
        return self.differences_error + self.analytic_error


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
        differences = _policy.COST_ROUNDOFF * _policy.UNIT_ROUNDOFF * np.abs(p.numeric)
    else:
        differences = allow.scheme.roundoff_gain * allow.noise / p.h
    return differences, analytic_error(p.analytic, allow.analytic_rel)


def _doubt(p: Partials, allow: Allowance) -> _Doubt:
    scheme, noise, tol, accepted = allow.scheme, allow.noise, allow.tol, allow.accepted
    gap = np.abs(p.analytic - p.numeric)
    size = np.abs(p.analytic) + np.abs(p.numeric)
    differences_error, analytic_error = _roundoff(p, allow)
    roundoff = differences_error + analytic_error
    beyond = gap > tol * size
    floored = np.zeros(0, dtype=np.int64)
    if allow.inexact:
        # A cost measured to be inexact (noisier than round-off: an iterative solver's
        # tolerance), or a drop-in's: below a share of tol of the parameter's gradient
        # norm, an element's disagreement is that inexactness, not a finding.
        norm = float(np.linalg.norm(p.analytic) + np.linalg.norm(p.numeric))
        below = gap <= _policy.ELEMENT_FLOOR * tol * norm
        floored = np.flatnonzero(beyond & below & (gap > _policy.ERROR_SAFETY * roundoff))
        beyond &= ~below
    doubtful = beyond & (gap > _policy.ERROR_SAFETY * roundoff)
    if accepted is not None:
        doubtful &= ~accepted(gap, p.numeric)
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
            kept = ~accepted(gap[hidden], p.numeric[hidden])
            hidden, grow = hidden[kept], grow[kept]
    return _Doubt(
        gap=gap,
        differences_error=differences_error,
        analytic_error=analytic_error,
        hidden=hidden,
        grow=grow,
        doubtful=doubtful,
        screen=screen,
        floored=floored,
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


def numeric_error(p: Partials, allow: Allowance) -> np.ndarray:
    """The error round-off alone can put in each comparison of ``p`` (finite differences'
    and the analytic gradient's own)."""
    differences, analytic = _roundoff(p, allow)
    return differences + analytic


def settled(p: Partials, allow: Allowance) -> bool:
    """Whether every coordinate agrees at this noise level, with nothing to probe.

    A larger noise only shrinks what is in doubt, so a parameter settled at
    the modelled round-off needs no measurement of the real one.
    """
    doubt = _doubt(p, allow)
    return not doubt.doubtful.any() and not doubt.screen.size and not doubt.hidden.size


def judge(p: Partials, allow: Allowance, probe_at: Prober | None) -> Judgement:
    """Classify each coordinate of one parameter.

    Args:
        p: the partials.
        allow: what their disagreements are measured against.
        probe_at: evaluates the cost around one coordinate (by position in
            ``p``); ``None`` when the scheme cannot be probed (complex step).
    """
    n = p.analytic.size
    doubt = _doubt(p, allow)
    bound = _policy.ERROR_SAFETY * doubt.roundoff
    negligible = (np.abs(p.analytic) <= bound) & (np.abs(p.numeric) <= bound)
    floor = float(np.max(bound)) if n else 0.0

    status = np.zeros(n, dtype=np.int8)
    if probe_at is None:
        status[doubt.doubtful] = Status.WRONG
        return Judgement(status, 0, negligible, floor, floored=doubt.floored)

    # the largest disagreements first: after CONFIRMED_ENOUGH errors, the rest are SUSPECT
    order = np.flatnonzero(doubt.doubtful)
    order = order[np.argsort(-doubt.gap[order], kind="stable")]

    judging = _Judging(p, allow, probe_at, doubt)
    confirmed = 0
    probed = 0
    unsettled: dict[int, tuple[tuple[float, float], ...]] = {}
    refined: dict[int, float] = {}
    for i in order:
        if confirmed >= _policy.CONFIRMED_ENOUGH:
            status[i] = Status.SUSPECT
            continue
        found = judging.coordinate(int(i))
        status[i] = found.status
        if found.refined is not None:
            refined[int(i)] = found.refined
        if found.unsettled is not None:
            unsettled[int(i)] = found.unsettled
        probed += 1
        confirmed += status[i] == Status.WRONG
    probed += _look_wider(p, doubt, status, allow, probe_at)
    probed += judging.screened(status)
    return Judgement(status, probed, negligible, floor, unsettled, refined, doubt.floored)


@dataclass(frozen=True)
class _Found:
    """One coordinate in doubt, probed: its status, the partial the verdict rests on where
    a smaller step gave it (``refined``), and the steps at which its partial never
    settled (``unsettled``, status ``KINK``)."""

    status: Status
    refined: float | None = None
    unsettled: tuple[tuple[float, float], ...] | None = None


@dataclass(frozen=True)
class _Judging:
    """What judging one parameter's coordinates in doubt works from: the partials, the
    allowance, the probe, and what is in doubt (`_doubt`)."""

    p: Partials
    allow: Allowance
    probe_at: Prober
    doubt: _Doubt

    def coordinate(self, i: int) -> _Found:
        """Coordinate ``i``, probed at its step, judged again at a smaller one where that
        step cannot tell, and watched for a partial that never settles."""
        scheme, doubt = self.allow.scheme, self.doubt
        at_h = self.probe_at(i)
        status = classify(
            scheme,
            at_h,
            gap=doubt.gap[i],
            roundoff=doubt.roundoff[i],
            noise=self.allow.noise,
            h=self.p.h[i],
        )
        status, small, shrink = self._second_look(i, at_h, status)
        if small is None:
            return _Found(status)
        numeric, roundoff = self.p.numeric[i], doubt.roundoff[i]
        refined = None
        if (status == Status.NUMERICS and shrink > _policy.KINK_CONFIRM) or (
            status == Status.WRONG and _apart(scheme, small, numeric, roundoff, shrink)
        ):
            # near a pole or a domain edge, or where the cost varies faster than the step,
            # the partial at the smaller step is the one the verdict rests on: shown
            refined = _extrapolated(scheme, small)
        if status != Status.KINK:
            steps = self._never_settles(i, at_h, small, shrink)
            if steps is not None and _beyond_tol(self.p.analytic[i], steps[-1][1], self.allow.tol):
                # not differentiable here (a kink under a square root, a jump), or steeper
                # than any step resolves: no verdict, and the evidence kept for the report
                return _Found(Status.KINK, None, steps)
        return _Found(status, refined)

    def _second_look(
        self, i: int, at_h: Probe, status: Status
    ) -> tuple[Status, Probe | None, float]:
        """The coordinate's status after a look at a step ``shrink`` times smaller, where
        the first cannot be trusted, and the probe there (``None``: not needed)."""
        scheme, allow, probe_at = self.allow.scheme, self.allow, self.probe_at
        roundoff = self.doubt.roundoff[i]
        at = _Coordinate(i, self.p.analytic[i], roundoff)
        shrink = self.p.closer(i)
        if status == Status.KINK:
            small = probe_at(i, shrink)
            if not _kink_persists(at_h, small, allow.noise, self.p.h[i], shrink):
                # Smooth at a smaller step: large higher derivatives (a pole, a domain
                # edge) faked the kink. Judge the partial from the smaller step instead.
                return _judge_smaller(allow, probe_at, at, small, shrink)
            return status, small, shrink
        if status in (Status.NUMERICS, Status.WRONG) and (
            shrink
            > _policy.KINK_CONFIRM  # the step reaches 0: a pole or domain edge may lie inside it
            or _truncation_dominated(status, at_h.truncation(scheme), self.doubt.gap[i], roundoff)
        ):
            # Near a pole or a domain edge the step is too coarse to tell: judge the
            # partial where truncation is much smaller (and round-off larger).
            return _judge_smaller(allow, probe_at, at, probe_at(i, shrink), shrink)
        if status == Status.WRONG:
            # Confirmed at a smaller step: a cost that varies faster than the step aliases
            # at h (its partials at h and h/2 may agree by chance, and the error bound
            # made from them means nothing). Only where the partial at h is not settled (it
            # moves by a large share of itself from h to h/2), or the smaller step refutes
            # its bound, is the coordinate judged again, where it settles (overturned only
            # by agreement there, not by a noisier step's round-off); whether it ever
            # settles is asked after.
            small = probe_at(i, shrink)
            if _moving(scheme, at_h, float(roundoff)) or _refutes(
                scheme, small, at_h, float(self.p.numeric[i]), float(roundoff), shrink
            ):
                return _judge_smaller(allow, probe_at, at, small, shrink, strict=True)
            return status, small, shrink
        return status, None, shrink

    def _never_settles(
        self, i: int, at_h: Probe, small: Probe, shrink: float
    ) -> tuple[tuple[float, float], ...] | None:
        """The steps and partials at which coordinate ``i``'s partial keeps growing, a
        further ``KINK_CONFIRM`` times smaller too (aliasing of a fast oscillation at the
        larger steps settles there), or ``None`` where it settles."""
        scheme, h, roundoff = self.allow.scheme, float(self.p.h[i]), float(self.doubt.roundoff[i])
        steps = _unsettled(scheme, at_h, small, h, shrink, roundoff)
        if steps is None:
            return None
        finer = self.probe_at(i, shrink * _policy.KINK_CONFIRM)
        value = finer.fine(scheme)
        grows = np.sign(value) == np.sign(steps[-1][1]) and abs(value) >= (
            _policy.UNSETTLED_RATIO * abs(steps[-1][1])
        )
        step = h / (2 * shrink * _policy.KINK_CONFIRM)
        return (*steps, (step, value)) if grows else None

    def screened(self, status: np.ndarray) -> int:
        """The coordinates screened for a kink (`_Doubt.screen`), probed: those whose kink
        persists at a smaller step are ``KINK``. Returns the probes made."""
        scheme, noise, doubt, p = self.allow.scheme, self.allow.noise, self.doubt, self.p
        for i in doubt.screen:
            at_h = self.probe_at(int(i))
            shrink = p.closer(int(i))
            if is_kink(scheme, at_h, doubt.gap[i], noise, p.h[i]) and _kink_persists(
                at_h, self.probe_at(int(i), shrink), noise, p.h[i], shrink
            ):
                status[i] = Status.KINK
        return len(doubt.screen)


def _look_wider(
    p: Partials, doubt: _Doubt, status: np.ndarray, allow: Allowance, probe_at: Prober
) -> int:
    """Coordinates above tol but within round-off, judged again at a larger step.

    A cost whose round-off is large for its size (the gradient of a gradient, a
    float32 computation) hides a small error, a 1e-3 slip in one element, in
    its round-off at the automatic step; a step ``_policy.LOOK_WIDER`` to ``_policy.LOOK_WIDEST``
    times larger divides the round-off by as much, and truncation, estimated
    there, is added to the error. Only a smooth disagreement beyond both is
    wrong, and only where the cost moved at all. Returns the probes made.
    """
    scheme, noise, tol = allow.scheme, allow.noise, allow.tol
    probes = 0
    for i, grow in zip(
        doubt.hidden[: _policy.LOOK_WIDER_MAX], doubt.grow[: _policy.LOOK_WIDER_MAX], strict=True
    ):
        if status[i] != Status.AGREES:
            continue
        grow = float(grow)
        try:
            wide = probe_at(int(i), 1 / grow)
        except CostError:
            continue  # the larger step leaves the cost's domain: the verdict stands
        probes += 1
        slopes = (wide.forward, wide.backward, wide.forward_half, wide.backward_half)
        if not all(np.isfinite(slopes)) or not any(slopes):
            continue  # not moved even there: below what the cost resolves, no evidence
        numeric = wide.fine(scheme)
        wide_gap = abs(float(p.analytic[i]) - numeric)
        # the round-off at the half of the larger step, and the truncation estimated there
        error = (
            wide.truncation(scheme)
            + 2 * float(doubt.differences_error[i]) / grow
            + float(doubt.analytic_error[i])
        )
        if (
            wide_gap > tol * (abs(float(p.analytic[i])) + abs(numeric))
            and wide_gap > _policy.ERROR_SAFETY * error
            and not is_kink(scheme, wide, wide_gap, noise, float(p.h[i]) * grow)
        ):
            status[i] = Status.WRONG
    return probes


def _kink_persists(p: Probe, small: Probe, noise: float, h: float, shrink: float) -> bool:
    jump = small.nonsmoothness()
    return jump > _policy.KINK_SHARE * p.nonsmoothness() or jump <= (
        _policy.KINK_NOISE * noise * shrink / h
    )


def _unsettled(
    scheme: Scheme, at_h: Probe, small: Probe, h: float, shrink: float, roundoff: float
) -> tuple[tuple[float, float], ...] | None:
    """The numeric partial at steps h, h/2, h/shrink and h/(2 shrink), when it does not
    settle as the step shrinks (else ``None``).

    A differentiable cost's central differences settle: their change from one step to
    its half shrinks with the step (as h², so 256 times over a 16 times smaller step).
    Where the partial instead grows steadily as the step shrinks (like h^-1/2 beside a
    kink under a square root, h^-1 at a jump), by more than round-off, the cost is not
    differentiable at the point or steeper than any step resolves.
    """
    values = (
        at_h.coarse(scheme),
        at_h.fine(scheme),
        small.coarse(scheme),
        small.fine(scheme),
    )
    coarse, fine = abs(values[0] - values[1]), abs(values[2] - values[3])
    sizes = [abs(v) for v in values]
    diverging = all(np.sign(v) == np.sign(values[0]) for v in values) and all(
        b >= _policy.UNSETTLED_RATIO * a for a, b in itertools.pairwise(sizes)
    )
    if not (
        diverging
        and fine > _policy.UNSETTLED_GROWTH * coarse
        and _moving(scheme, small, shrink * roundoff)
    ):
        return None
    steps = (h, h / 2, h / shrink, h / (2 * shrink))
    return tuple(zip(steps, values, strict=True))


def _extrapolated(scheme: Scheme, p: Probe) -> float:
    """The partial from a probe: its steps h and h/2 combined to cancel the leading
    truncation term (Richardson), for a scheme whose order is known."""
    coarse, fine = p.coarse(scheme), p.fine(scheme)
    if scheme.order is None:
        return fine
    return fine + (fine - coarse) / (2**scheme.order - 1)


def _moving(scheme: Scheme, p: Probe, roundoff: float) -> bool:
    """Whether halving the step moves the partial by a large share of itself (beyond
    round-off): a smooth cost's partial barely moves once the step is small."""
    if scheme.order is None:
        return False
    coarse, fine = p.coarse(scheme), p.fine(scheme)
    change = abs(coarse - fine)
    return change > _policy.UNSETTLED_SHARE * max(abs(coarse), abs(fine)) and change > (
        _policy.ERROR_SAFETY * 2 * roundoff
    )


def _beyond_tol(analytic: float, numeric: float, tol: float) -> bool:
    return abs(analytic - numeric) > tol * (abs(analytic) + abs(numeric))


def _truncation_dominated(
    status: int | Status, truncation: float, gap: float, roundoff: float
) -> bool:
    """Whether a verdict at step h rests on a truncation error large enough to matter.

    Within numerical error mostly through truncation (a bug could hide in it), or
    wrong by a margin that truncation could nearly explain (a false alarm could).
    """
    if status == Status.NUMERICS:
        return truncation > roundoff
    return status == Status.WRONG and truncation > 0.1 * gap


@dataclass(frozen=True)
class _Coordinate:
    """One coordinate judged again: its position, analytic partial, and the round-off of
    its partial at the automatic step."""

    i: int
    analytic: float
    roundoff: float


def _judge_smaller(
    allow: Allowance,
    probe_at: Prober,
    at: _Coordinate,
    small: Probe,
    shrink: float,
    strict: bool = False,
) -> tuple[Status, Probe, float]:
    """A coordinate judged again from its partial at the step ``shrink`` times smaller
    (``small``, probed there), and smaller still while that partial is within the finite
    differences' error only through their truncation: a cost that varies on a scale
    finer than the step (``sin(1e6·θ)``) is judged where truncation is small, not passed
    on an error bound as wide as a bug. Each step down is ``_policy.KINK_CONFIRM`` times, while
    round-off (``roundoff · shrink``, growing as the step shrinks) stays below the gap;
    at most ``_policy.SMALLER_MAX`` times in all. ``strict``: a disagreement within the
    smaller step's round-off, not its truncation, stays wrong (a verdict already wrong at
    the larger step is not overturned by a noisier one). Returns the status, and the
    probe and shrink it rests on."""
    scheme, tol = allow.scheme, allow.tol
    i, analytic, roundoff = at.i, at.analytic, at.roundoff
    while True:
        numeric = small.fine(scheme)
        gap = abs(analytic - numeric)
        truncation = small.truncation(scheme)
        rounding = _rounding(roundoff, shrink)
        if gap <= tol * (abs(analytic) + abs(numeric)):
            return Status.NUMERICS, small, shrink
        finer = shrink * _policy.KINK_CONFIRM
        last = (
            truncation <= rounding
            or _policy.ERROR_SAFETY * _rounding(roundoff, finer) >= gap
            or finer > _policy.SMALLER_MAX
        )
        if gap > _policy.ERROR_SAFETY * (truncation + rounding):
            # wrong; looked at closer while truncation is a large share of the gap, for
            # the partial the report shows
            if last or not _truncation_dominated(Status.WRONG, truncation, gap, rounding):
                return Status.WRONG, small, shrink
        elif last:
            # strict: truncation overturns the verdict, not the smaller step's round-off
            within = not strict or gap <= _policy.ERROR_SAFETY * truncation
            return (Status.NUMERICS if within else Status.WRONG), small, shrink
        shrink = finer
        small = probe_at(i, shrink)


def _rounding(roundoff: float, shrink: float) -> float:
    """The round-off of a partial at a step ``shrink`` times smaller than h (at its half,
    the fine one): ``roundoff`` is the partial's at h, and grows as the step shrinks."""
    return float(roundoff) * shrink * 2  # (inf, not a warning)


def _beyond(
    scheme: Scheme, small: Probe, numeric: float, roundoff: float, shrink: float, at_h: float = 0.0
) -> bool:
    """Whether the partial at the smaller step ``small`` differs from ``numeric`` by more
    than its own error, plus ``at_h`` (the error of ``numeric`` itself, where it counts)."""
    error = small.truncation(scheme) + _rounding(roundoff, shrink) + at_h
    return abs(small.fine(scheme) - numeric) > _policy.ERROR_SAFETY * error


def _refutes(
    scheme: Scheme, small: Probe, at_h: Probe, numeric: float, roundoff: float, shrink: float
) -> bool:
    """Whether the partial at the smaller step ``small`` lies outside the error bound of
    the one at h (``numeric``, its truncation estimated from ``at_h``), beyond its own."""
    error_h = at_h.truncation(scheme) + roundoff
    return _beyond(scheme, small, numeric, roundoff, shrink, at_h=error_h)


def _apart(scheme: Scheme, small: Probe, numeric: float, roundoff: float, shrink: float) -> bool:
    """Whether the partial at the smaller step ``small`` differs from the one at h by
    more than its own error: the one at h is then not the one to show (elsewhere it is,
    as a within-error verdict at a caller's ``eps`` and the seeds' figures show it)."""
    return _beyond(scheme, small, numeric, roundoff, shrink)


def is_kink(scheme: Scheme, p: Probe, gap: float, noise: float, h: float) -> bool:
    jump = p.nonsmoothness()
    # A smooth cost's inconsistency is ~1.5x the truncation estimate; a kink's
    # is its jump in slope, which no step size makes small.
    return (
        jump > _policy.KINK_SHARE * gap
        and jump > 4 * p.truncation(scheme)
        and jump > _policy.KINK_NOISE * noise / h
    )


def classify(
    scheme: Scheme, p: Probe, *, gap: float, roundoff: float, noise: float, h: float
) -> Status:
    """Whether a probed disagreement is a kink, within numerical error, or wrong."""
    if is_kink(scheme, p, gap, noise, h):
        return Status.KINK
    if gap <= _policy.ERROR_SAFETY * (p.truncation(scheme) + roundoff):
        return Status.NUMERICS
    return Status.WRONG
