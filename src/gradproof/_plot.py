"""Pictures of a report: per-parameter differences against tol, and element heat maps.

matplotlib is optional (``pip install 'gradproof[plot]'``) and imported only here.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from . import _tree
from ._records import ReportRecord, TensorReport

PASS_COLOR, FAIL_COLOR, TOL_COLOR = "#2a9d8f", "#e63946", "#555555"
INHERITED_COLOR = "#f4a3a8"  # wrong only through an error entering elsewhere (hatched)
FLOOR = 1e-17  # a difference of exactly zero is drawn here on the log scale


def pyplot() -> Any:
    """matplotlib.pyplot, on a non-interactive backend when there is no display."""
    try:
        import matplotlib

        if matplotlib.get_backend().lower() not in (
            "agg",
            "module://matplotlib_inline.backend_inline",
        ) and not os.environ.get("DISPLAY"):
            matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("plots need matplotlib: pip install 'gradproof[plot]'") from exc
    return plt


def by_name(tree: Any) -> dict[str, np.ndarray]:
    """A structure's leaves as arrays by path name."""
    return {_tree.path_name(p): np.asarray(v) for p, v in _tree.iter_items(tree)}


def plot_report(report: ReportRecord, ax: Any = None) -> Any:
    """Each parameter's difference on a log scale, the tolerance line, failing bars red.

    Where one error enters the backward (``report.origin``), the title names the place
    and the bars of the parameters that only inherit it are pale and hatched. With no
    ``ax`` and a failing 2-D parameter in a full check, a second panel shows that
    parameter's element errors as a heat map (one wrong where the error enters, before
    one that inherits it). Returns the figure.
    """
    plt = pyplot()
    heat = None
    if ax is None and report.numerical is not None and report.analytic is not None:
        matrices = [t for t in report.failing if len(t.shape) == 2]
        own = [t for t in matrices if not t.inherited] or matrices
        heat = max(own, key=lambda t: min(t.shape), default=None)
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
    tensors = list(report.tensors.values())
    colors = [
        PASS_COLOR if t.passed else INHERITED_COLOR if t.inherited else FAIL_COLOR for t in tensors
    ]
    bars = ax.bar(names, values, color=colors)
    for bar, t in zip(bars, tensors, strict=True):
        if t.inherited:
            bar.set_hatch("//")
            bar.set_edgecolor(FAIL_COLOR)
    tol_line = ax.axhline(
        report.tol, color=TOL_COLOR, linestyle="--", linewidth=1, label=f"tol {report.tol:g}"
    )
    ax.set_yscale("log")
    ax.set_ylabel("relative difference")
    title = "gradient check " + ("passed" if report.passed else "failed")
    if report.origin is not None:
        title += f": the error enters at {report.origin.called}"
    ax.set_title(title)
    if any(t.inherited for t in tensors):
        from matplotlib.patches import Patch

        handles = [
            Patch(color=FAIL_COLOR, label="wrong where the error enters"),
            Patch(facecolor=INHERITED_COLOR, edgecolor=FAIL_COLOR, hatch="//", label="inherited"),
            tol_line,
        ]
        # beside the axes: above the bars it would hide their tops
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")
    else:
        ax.legend(loc="best", fontsize="small")
    ax.tick_params(axis="x", rotation=45 if len(names) > 6 else 0)
    if heat is not None:
        _heat_map(report, heat, ax_heat, fig)
    fig.tight_layout()
    return fig


def _heat_map(report: ReportRecord, tensor: TensorReport, ax: Any, fig: Any) -> None:
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
    for r, c in tensor.wrong_indices:  # (at most _policy.WRONG_SHOWN)
        ax.add_patch(_box(r, c))


def _box(r: int, c: int) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, edgecolor="#00e5ff", linewidth=1.5)
