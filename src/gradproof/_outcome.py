"""What both modes make of their rows: the rows no comparison decides, and the outcome.

Full mode (`_full`) and directional mode (`_directional`) judge elements differently,
but some rows are the same in both: a parameter without elements passes, an analytic
gradient with inf or NaN in it is wrong there as it is, and where the cost never moved
although the analytic gradient is not zero, every failing row says the cost ignores
its parameters, or, where it moves at a larger step, is undecided (`said`, on what
either mode found).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

from . import _diagnose, _policy
from ._finite import moves
from ._records import Outcome, TensorReport
from ._tree import index_tuple

if TYPE_CHECKING:
    from ._sweep import Point


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


def said(found: Outcome, point: Point) -> Outcome:
    """What a mode found, as the verdict takes it: where the cost is flat, every failing
    row says the cost ignores its parameters, unless the cost moves at full mode's
    largest step (`_policy.COARSE_STEP_MAX`): then it is rounded to a grid coarser than
    the steps' change (float16, a fixed number of decimals) or piecewise constant here,
    and its failing rows are undecided, no evidence either way."""
    if not found.cost_flat:
        return found
    at = (point.evaluate, point.arrays, point.leaves, point.j0)
    if moves(*at, _policy.COARSE_STEP_MAX):
        tensors = {
            name: row
            if row.passed or not row.checked
            else dataclasses.replace(row, undecided=True, explanation=_diagnose.too_coarse())
            for name, row in found.tensors.items()
        }
        return dataclasses.replace(found, tensors=tensors, cost_flat=False)
    tensors = {
        name: row if row.passed else dataclasses.replace(row, explanation=_diagnose.ignored(name))
        for name, row in found.tensors.items()
    }
    return dataclasses.replace(found, tensors=tensors)
