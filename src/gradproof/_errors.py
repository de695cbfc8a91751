"""The exceptions gradproof raises."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._report import Report


class GradientSpecError(ValueError):
    """The inputs to a check are malformed: params, grads, options or the cost's output.

    The message names the parameter or argument, the value received and what
    is accepted instead.
    """


class CostError(GradientSpecError):
    """The cost function raised, or returned something that is not a finite scalar.

    When the cost itself raised, the original exception is chained as
    ``__cause__``.
    """


class GradientError(AssertionError):
    """A gradient check failed. ``str(error)`` holds the report's table.

    Attributes:
        report: the :class:`gradproof.Report` of the failing check.
    """

    def __init__(self, report: Report) -> None:
        super().__init__(str(report))
        self.report = report


class WorkerError(RuntimeError):
    """A worker process failed twice on the same chunk of evaluations (params are intact)."""
