"""Pictures of a check: per-parameter errors, element heat maps, and the step-size sweep.

matplotlib is optional (``pip install 'gradproof[plot]'``) and imported only here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _policy, _tree
from ._errors import GradientSpecError

if TYPE_CHECKING:
    from ._report import Report

PASS_COLOR, FAIL_COLOR, TOL_COLOR = "#2a9d8f", "#e63946", "#555555"
FLOOR = 1e-17  # a difference of exactly zero is drawn here on the log scale


def pyplot():
    try:
        import matplotlib

        if matplotlib.get_backend().lower() not in (
            "agg",
            "module://matplotlib_inline.backend_inline",
        ):
            import os

            if not os.environ.get("DISPLAY"):
                matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("plots need matplotlib: pip install 'gradproof[plot]'") from exc
    return plt


def by_name(tree: Any) -> dict[str, np.ndarray]:
    return {_tree.path_name(p): np.asarray(v) for p, v in _tree.iter_items(tree)}


def plot_report(report: Report, ax: Any = None) -> Any:
    """Each parameter's difference on a log scale, the tolerance line, failing bars red.

    With no ``ax`` and a failing 2-D parameter in a full check, a second panel
    shows that parameter's element errors as a heat map. Returns the figure.
    """
    plt = pyplot()
    heat = None
    if ax is None and report.numerical is not None and report.analytic is not None:
        matrices = [t for t in report.failing if len(t.shape) == 2]
        heat = max(matrices, key=lambda t: min(t.shape), default=None)
    if ax is None:
        width = max(4.5, 0.55 * len(report.tensors) + 2.5)
        if heat is not None:
            fig, (ax, ax_heat) = plt.subplots(1, 2, figsize=(width + 4.5, 3.6))
        else:
            fig, ax = plt.subplots(figsize=(width, 3.6))
    else:
        fig = ax.figure
    names = list(report.tensors)
    values = [max(t.difference, FLOOR) for t in report.tensors.values()]
    colors = [PASS_COLOR if t.passed else FAIL_COLOR for t in report.tensors.values()]
    ax.bar(names, values, color=colors)
    ax.axhline(
        report.tol, color=TOL_COLOR, linestyle="--", linewidth=1, label=f"tol {report.tol:g}"
    )
    ax.set_yscale("log")
    ax.set_ylabel("relative difference")
    ax.set_title("gradient check " + ("passed" if report.passed else "failed"))
    ax.legend(loc="best", fontsize="small")
    ax.tick_params(axis="x", rotation=45 if len(names) > 6 else 0)
    if heat is not None:
        _heat_map(report, heat, ax_heat, fig)
    fig.tight_layout()
    return fig


def _heat_map(report: Report, tensor, ax, fig) -> None:
    g = by_name(report.analytic)[tensor.name]
    gn = by_name(report.numerical)[tensor.name]
    error = np.abs(g - gn)
    image = ax.imshow(np.log10(error + FLOOR), cmap="magma", aspect="auto", interpolation="nearest")
    ax.set_title(f"{tensor.name}: log10 |analytic − numeric|")
    ax.set_xlabel("column")
    ax.set_ylabel("row")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    fig.colorbar(image, ax=ax)
    for r, c in tensor.wrong_indices[:10]:
        ax.add_patch(_box(r, c))


def _box(r: int, c: int):
    from matplotlib.patches import Rectangle

    return Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, edgecolor="#00e5ff", linewidth=1.5)


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
    method: str = "central",
) -> StepSweep:
    """How the difference changes with the step: the picture behind ``eps=None``.

    Args:
        cost, params, grads: as for :func:`gradproof.check`.
        steps: the steps to try (default: 23 steps from 1e-12 to 1e-1).
        method: ``"central"``, ``"forward"`` or ``"backward"``.

    Returns:
        A :class:`StepSweep`; ``sweep.plot()`` draws it and ``sweep.reading``
        says whether the error falls as it should for a correct gradient.

    Example:
        >>> import numpy as np, gradproof as gp
        >>> w = np.array([0.3, -1.2])
        >>> sweep = gp.step_sweep(lambda p: np.sum(np.sin(p)), w, np.cos(w))
        >>> round(sweep.order)
        2
    """
    from ._check import check
    from ._numerical import numerical_gradient

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
    differences = []
    for h in steps:
        numeric = numerical_gradient(cost, params, method=method, eps=float(h))
        flat = np.concatenate([np.ravel(v) for v in by_name(numeric).values()])
        den = np.linalg.norm(analytic) + np.linalg.norm(flat)
        differences.append(float(np.linalg.norm(analytic - flat) / den) if den else 0.0)
    differences = np.asarray(differences)
    theta = np.concatenate([np.ravel(np.asarray(v, float)) for _, v in _tree.iter_items(params)])
    auto_step = float(np.median(_policy.default_step(method, theta)))
    order, reading = _read_order(steps, differences, method)
    return StepSweep(steps, differences, auto_step, auto.difference, order, reading, method)


def _read_order(steps: np.ndarray, differences: np.ndarray, method: str):
    expected = _policy.ORDER[method]
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
