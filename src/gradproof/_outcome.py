"""What both modes make of their rows: the rows no comparison decides, and the outcome.

Full mode (`_full`) and directional mode (`_directional`) judge elements differently,
but some rows are the same in both: a parameter without elements passes, an analytic
gradient with inf or NaN in it is wrong there as it is, and where the cost never moved
although the analytic gradient is not zero, every failing row says the cost ignores
its parameters (`said`, on what either mode found).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from . import _diagnose, _policy
from ._records import Outcome, TensorReport
from ._tree import index_tuple


def empty(name: str, shape: tuple[int, ...]) -> TensorReport:
    """A row with nothing to judge (no elements, or every one left out): it passes."""
    return TensorReport(name, shape, True, 0.0, 0.0, (), None, 0)


def not_finite(row: TensorReport, bad: np.ndarray) -> TensorReport:
    """``row`` failed by its analytic gradient's non-finite elements ``bad`` (flat
    indices): a framework's derivative with inf or NaN is wrong there as it is."""
    return dataclasses.replace(
        row,
        passed=False,
        explanation=_diagnose.not_finite(row.name, row.shape, bad),
        wrong=row.wrong + int(bad.size),
        wrong_indices=tuple(index_tuple(int(i), row.shape) for i in bad[: _policy.WRONG_SHOWN]),
    )


def said(found: Outcome) -> Outcome:
    """What a mode found, as the verdict takes it: where the cost is flat, every failing
    row says the cost ignores its parameters."""
    if not found.cost_flat:
        return found
    tensors = {
        name: row if row.passed else dataclasses.replace(row, explanation=_diagnose.ignored(name))
        for name, row in found.tensors.items()
    }
    return dataclasses.replace(found, tensors=tensors)
