"""The exceptions raised while a check is set up or run.

Two different things go wrong: the *input* is malformed (``GradientSpecError``,
a ``ValueError``: fix the call), or the *cost itself* fails (``CostError``: fix the
function). The verdict on a gradient, ``gradproof.GradientError``, lives with the report
it carries.
"""

from __future__ import annotations


class GradientSpecError(ValueError):
    """The inputs to a check are malformed: params, grads or options.

    The message names the parameter or argument, the value received and what
    is accepted instead.
    """


class CostError(Exception):
    """The cost function raised, or returned something that is not a finite scalar.

    Not a [`GradientSpecError`][gradproof.GradientSpecError]: the call was well formed, the user's
    function failed. When the cost itself raised, the original exception is
    chained as ``__cause__``; the message says which coordinate and step it was
    evaluating.
    """


class WorkerError(RuntimeError):
    """Worker processes could not run the cost (params are intact).

    Raised when a worker cannot start or unpack the cost, or when one dies
    twice on the same chunk of evaluations.
    """


class DerivativeRaised(Exception):
    """The framework raised while it computed the derivative under check.

    Not raised to the user: a front-end turns it into a finding of the check
    (the backward, jvp or double backward named, with the exception), just as
    an infinite derivative is one.
    """

    def __init__(self, what: str, exc: BaseException) -> None:
        lines = [ln for ln in str(exc).splitlines() if ln.strip()]
        self.what = what  # "the backward", "forward-mode AD (the jvp)", "the double backward"
        self.error = f"{type(exc).__name__}: {lines[0] if lines else ''}".rstrip(": ")
        super().__init__(f"{what} raised {self.error}")
