"""Judging one parameter's coordinates in doubt: each probed at a second step, which
tells a kink, a disagreement within the numeric partial's own error, and a real error
apart; a suspected kink is confirmed at a step 16 times smaller, and a partial that
never settles as the step shrinks is left out with its evidence. Besides measuring the
cost's round-off, these probes are the only extra evaluations a check spends.

What is in doubt, and the records judged (`Partials`, `Allowance`, `Judgement`), are
`_compare`'s.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from . import _policy
from ._compare import Allowance, Doubt, Judgement, Partials, Prober, Status, in_doubt
from ._errors import CostError
from ._finite import Probe
from ._policy import Scheme


def judge(p: Partials, allow: Allowance, probe_at: Prober | None) -> Judgement:
    """Classify each coordinate of one parameter.

    Args:
        p: the partials.
        allow: what their disagreements are measured against.
        probe_at: evaluates the cost around one coordinate (by position in
            ``p``); ``None`` when the scheme cannot be probed (complex step).
    """
    n = p.analytic.size
    doubt = in_doubt(p, allow)
    bound = _policy.ERROR_SAFETY * doubt.roundoff
    negligible = (np.abs(p.analytic) <= bound) & (np.abs(p.numerical) <= bound)
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
    allowance, the probe, and what is in doubt (`_compare.in_doubt`)."""

    p: Partials
    allow: Allowance
    probe_at: Prober
    doubt: Doubt

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
        numerical, roundoff = self.p.numerical[i], doubt.roundoff[i]
        refined = None
        if (status == Status.NUMERICS and shrink > _policy.KINK_CONFIRM) or (
            status == Status.WRONG and _apart(scheme, small, numerical, roundoff, shrink)
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
                scheme, small, at_h, float(self.p.numerical[i]), float(roundoff), shrink
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
        """The coordinates screened for a kink (`Doubt.screen`), probed: those whose kink
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
    p: Partials, doubt: Doubt, status: np.ndarray, allow: Allowance, probe_at: Prober
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
        # (no wider than full mode's largest step: beyond it, at a step given as eps
        # already large, the partials are no longer in the regime truncation is estimated in)
        theta = 0.0 if p.theta is None else float(abs(p.theta[i]))
        grow = min(float(grow), _policy.COARSE_STEP_MAX * max(1.0, theta) / float(p.h[i]))
        if grow <= 1.0:
            continue
        try:
            wide = probe_at(int(i), 1 / grow)
        except CostError:
            continue  # the larger step leaves the cost's domain: the verdict stands
        probes += 1
        slopes = (wide.forward, wide.backward, wide.forward_half, wide.backward_half)
        if not all(np.isfinite(slopes)) or not any(slopes):
            continue  # not moved even there: below what the cost resolves, no evidence
        numerical = wide.fine(scheme)
        wide_gap = abs(float(p.analytic[i]) - numerical)
        # the round-off at the half of the larger step, and the truncation estimated there
        error = (
            wide.truncation(scheme)
            + 2 * float(doubt.differences_error[i]) / grow
            + float(doubt.analytic_error[i])
        )
        if (
            wide_gap > tol * (abs(float(p.analytic[i])) + abs(numerical))
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


def _beyond_tol(analytic: float, numerical: float, tol: float) -> bool:
    return abs(analytic - numerical) > tol * (abs(analytic) + abs(numerical))


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
        numerical = small.fine(scheme)
        gap = abs(analytic - numerical)
        truncation = small.truncation(scheme)
        rounding = _rounding(roundoff, shrink)
        if gap <= tol * (abs(analytic) + abs(numerical)):
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
    scheme: Scheme,
    small: Probe,
    numerical: float,
    roundoff: float,
    shrink: float,
    at_h: float = 0.0,
) -> bool:
    """Whether the partial at the smaller step ``small`` differs from ``numerical`` by more
    than its own error, plus ``at_h`` (the error of ``numerical`` itself, where it counts)."""
    error = small.truncation(scheme) + _rounding(roundoff, shrink) + at_h
    return abs(small.fine(scheme) - numerical) > _policy.ERROR_SAFETY * error


def _refutes(
    scheme: Scheme, small: Probe, at_h: Probe, numerical: float, roundoff: float, shrink: float
) -> bool:
    """Whether the partial at the smaller step ``small`` lies outside the error bound of
    the one at h (``numerical``, its truncation estimated from ``at_h``), beyond its own."""
    error_h = at_h.truncation(scheme) + roundoff
    return _beyond(scheme, small, numerical, roundoff, shrink, at_h=error_h)


def _apart(scheme: Scheme, small: Probe, numerical: float, roundoff: float, shrink: float) -> bool:
    """Whether the partial at the smaller step ``small`` differs from the one at h by
    more than its own error: the one at h is then not the one to show (elsewhere it is,
    as a within-error verdict at a caller's ``eps`` and the seeds' figures show it)."""
    return _beyond(scheme, small, numerical, roundoff, shrink)


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
