"""The public report: the check's record, with the ways to read it.

[`Report`][gradproof.Report] adds views to `_records.ReportRecord` (text, rich,
HTML, plots); the views themselves live in `_format`, `_plot`
and `_html`, and take the record.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from . import _format
from ._html import page
from ._plot import plot_report
from ._records import ReportRecord


@dataclass(frozen=True)
class Report(ReportRecord):
    """What [`gradproof.check`][gradproof.check] found.

    Attributes:
        passed: no parameter is wrong: every element agrees within ``tol``, or
            its disagreement is explained by the measured error of the finite
            differences, or by a kink. A ``difference`` above ``tol`` that is
            wholly numerical passes (the headline says so). A non-deterministic
            cost cannot be judged and does not pass.
        strict: the seeds' literal rule, for teaching: ``difference <= tol`` and ``passed``.
        difference: ``‖g − g̃‖₂ / (‖g‖₂ + ‖g̃‖₂)`` over everything checked.
        tol: the threshold used.
        tensors: parameter name → [`TensorReport`][gradproof.TensorReport], in the order
            of params.
        evaluations: how many times the cost was called.
        numerical: the numerical gradient, same structure as params (full mode).
        analytic: the analytic gradient it was compared with, same structure (full mode).
        warnings: kinks crossed, float32 parameters, non-determinism, ...
        method: the finite differences: ``"central"``, ``"forward"``, ``"backward"``,
            ``"complex"`` (complex step) or ``"richardson"``.
        eps: the step asked for (``None``: automatic steps).
        mode: what was checked: ``"full"`` (every element), ``"sample"`` (a seeded
            sample of elements) or ``"directional"`` (random directions).
        policy: the numerical policy in force, for reproducing the verdict.
        deterministic: whether repeated evaluations at the check point agreed.
        seconds: wall time of the check.
        cost_flat: the cost did not change when any parameter was perturbed,
            although the analytic gradient is not zero: it ignores its argument.
        origin: where one error enters the backward pass (an ``Origin``: the layer,
            the parameters wrong there, those that inherit it, the evidence), when the
            parameters are named by layer and the failures form one block from some
            layer down; ``None`` otherwise.
    """

    def __str__(self) -> str:
        return _format.text(self)

    def __repr__(self) -> str:
        """One line: the headline's verdict (a REPL shows this; ``print`` shows the table)."""
        verdict = _format.first_clause(_format.headline(self))
        return f"<gradproof.Report: {verdict}; print(report) for the table>"

    def _repr_html_(self) -> str:
        return _format.html(self)

    def __rich__(self) -> Any:
        return _format.rich_renderable(self)

    def show(self, file: TextIO | None = None, color: bool | None = None) -> None:
        """Print the report, coloured on a terminal.

        Colour needs rich (``pip install 'gradproof[pretty]'``). Plain text when
        the stream is not a terminal, when ``NO_COLOR`` is set, or when rich is
        not installed.
        """
        _format.show(self, file, color)

    def plot(self, ax: Any = None) -> Any:
        """Each parameter's difference on a log scale against tol; failing ones red.

        A failing 2-D parameter of a full check gets a heat map of its element
        errors beside it. Needs matplotlib (``pip install 'gradproof[plot]'``).
        Returns the figure.
        """
        return plot_report(self, ax)

    def save_html(self, path: str | Path, what: str | None = None) -> None:
        """Write one self-contained HTML page: the table, warnings and (with matplotlib) plots.

        ``what``, when given, heads the page: what was checked ("gradproof check
        model.py:cost, 2026-12-03 18:30").
        """
        Path(path).write_text(page(self, what), encoding="utf-8")


class GradientError(AssertionError):
    """A gradient check failed. ``str(error)`` holds the report's table.

    Attributes:
        report: the [`gradproof.Report`][gradproof.Report] of the failing check.
    """

    def __init__(self, report: Report) -> None:
        super().__init__(str(report))
        self.report = report
