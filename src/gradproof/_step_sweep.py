"""The step-size sweep: the difference as a function of the step, the picture behind eps=None.

A correct gradient's difference falls as ``hᵖ`` (the scheme's order) until
round-off takes over; a wrong one stays flat at every step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _policy, _tree
from ._check import check, numerical_gradient
from ._errors import GradientSpecError
from ._plot import FAIL_COLOR, FLOOR, by_name, pyplot
from ._policy import Method


@dataclass(frozen=True)
class StepSweep:
    """The difference between analytic and numeric gradients as a function of the step.

    Attributes:
        steps: the steps tried, ascending.
        differences: the relative difference at each step.
        auto_step: the typical automatic step gradproof would take (median over
            coordinates), and ``auto_difference`` the difference it gives.
        order: the slope of log(difference) against log(step) where truncation
            error dominates: about 2 for a correct gradient with central
            differences, about 0 when the gradient is wrong.
        reading: that slope in words.
    """

    steps: np.ndarray
    differences: np.ndarray
    auto_step: float
    auto_difference: float
    order: float | None
    reading: str
    method: str

    def plot(self, ax: Any = None) -> Any:
        """The V-shaped curve: round-off on the left, truncation on the right. Returns the axes."""
        plt = pyplot()
        if ax is None:
            _, ax = plt.subplots(figsize=(6.0, 4.0))
        d = np.maximum(self.differences, FLOOR)
        ax.loglog(self.steps, d, "o-", color="#264653", markersize=4, label="difference")
        ax.loglog(
            [self.auto_step],
            [max(self.auto_difference, FLOOR)],
            "*",
            color=FAIL_COLOR,
            markersize=14,
            label=f"automatic step {self.auto_step:.1e}",
        )
        ax.axvline(1e-7, color="#999999", linestyle=":", linewidth=1, label="eps = 1e-7")
        lo = int(np.argmin(d))
        ax.annotate(
            "round-off ~ 1/h",
            (self.steps[0], d[0]),
            textcoords="offset points",
            xytext=(5, -12),
            fontsize="small",
        )
        ax.annotate(
            f"truncation ~ h^{self.order:.1f}" if self.order is not None else "",
            (self.steps[-1], d[-1]),
            textcoords="offset points",
            xytext=(-90, 5),
            fontsize="small",
        )
        ax.set_xlabel("step h")
        ax.set_ylabel("relative difference")
        ax.set_title(f"{self.method} differences: smallest at h = {self.steps[lo]:.0e}")
        ax.legend(loc="best", fontsize="small")
        ax.figure.tight_layout()
        return ax


def step_sweep(
    cost: Callable[[Any], Any],
    params: Any,
    grads: Any,
    *,
    steps: Any = None,
    method: Method = "central",
) -> StepSweep:
    """How the difference changes with the step: the picture behind ``eps=None``.

    Args:
        cost: as for [`gradproof.check`][gradproof.check].
        params: as for [`gradproof.check`][gradproof.check].
        grads: as for [`gradproof.check`][gradproof.check].
        steps: the steps to try (default: 23 steps from 1e-12 to 1e-1).
        method: ``"central"``, ``"forward"`` or ``"backward"``.

    Returns:
        A [`StepSweep`][gradproof.StepSweep]; ``sweep.plot()`` draws it and ``sweep.reading``
        says whether the error falls as it should for a correct gradient.

    Examples:
        >>> import numpy as np, gradproof as gp
        >>> w = np.array([0.3, -1.2])
        >>> sweep = gp.step_sweep(lambda p: np.sum(np.sin(p)), w, np.cos(w))
        >>> round(sweep.order)
        2
    """
    if method not in ("central", "forward", "backward"):
        raise GradientSpecError(
            f"step_sweep takes method 'central', 'forward' or 'backward', got {method!r}"
        )
    steps = np.logspace(-12, -1, 23) if steps is None else np.sort(np.asarray(steps, float))
    if steps.ndim != 1 or steps.size < 3 or np.any(steps <= 0):
        raise GradientSpecError(
            "steps must be at least 3 positive numbers, e.g. np.logspace(-12, -1, 23)"
        )
    auto = check(cost, params, grads, method=method, progress=False)
    analytic = np.concatenate([np.ravel(v) for v in by_name(auto.analytic).values()])
    found: list[float] = []
    for h in steps:
        numerical = numerical_gradient(cost, params, method=method, eps=float(h))
        flat = np.concatenate([np.ravel(v) for v in by_name(numerical).values()])
        den = np.linalg.norm(analytic) + np.linalg.norm(flat)
        found.append(float(np.linalg.norm(analytic - flat) / den) if den else 0.0)
    differences = np.asarray(found)
    theta = np.concatenate([np.ravel(np.asarray(v, float)) for _, v in _tree.iter_items(params)])
    auto_step = float(np.median(_policy.SCHEMES[method].default_step(theta)))
    order, reading = _read_order(steps, differences, method)
    return StepSweep(steps, differences, auto_step, auto.difference, order, reading, method)


def _read_order(
    steps: np.ndarray, differences: np.ndarray, method: str
) -> tuple[float | None, str]:
    expected = _policy.SCHEMES[method].order
    assert expected is not None  # (step_sweep takes the one-sided and central methods)
    d = np.maximum(differences, FLOOR)
    lo = int(np.argmin(d))
    right = slice(lo, None)
    x, y = np.log10(steps[right]), np.log10(d[right])
    keep = y > y[0] + 1  # well above the minimum: truncation, not round-off
    if np.count_nonzero(keep) < 2:
        flat = float(np.ptp(np.log10(d))) < 1
        if flat:
            return 0.0, (
                "the difference does not fall with the step (slope 0): the analytic gradient "
                "disagrees at every step, a bug rather than a step-size problem"
            )
        return None, "too few steps in the truncation regime to read an order; try larger steps"
    slope = float(np.polyfit(x[keep], y[keep], 1)[0])
    if slope > expected - 0.5:
        return slope, (
            f"the difference falls as h^{slope:.1f} (expected h^{expected} for {method} "
            f"differences) until round-off takes over near h = {steps[lo]:.0e}: consistent "
            "with a correct gradient"
        )
    if math.isclose(slope, 0.0, abs_tol=0.3):
        return slope, (
            "the difference does not fall with the step (slope 0): the analytic gradient "
            "disagrees at every step, a bug rather than a step-size problem"
        )
    return slope, (
        f"the difference falls as h^{slope:.1f}, slower than the h^{expected} a correct gradient "
        "gives: part of the gradient is wrong"
    )
