"""What the framework front-ends share: running a check over an adapter.

An adapter (``gradproof.torch``'s or ``gradproof.jax``'s) turns a framework's
function into what the engine checks: float64 parameter arrays by name, a
cost over such arrays, the framework's own gradient, and a batched
evaluation of many perturbed copies at once (vmap).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from . import _check
from ._options import Options
from ._report import Report

# Elements of perturbed copies that one batched (vmap) evaluation may hold.
BATCH_ELEMENTS = 1 << 23


class Adapter(Protocol):
    params: dict[str, np.ndarray]

    def cost(self, arrays: dict[str, np.ndarray]) -> float: ...

    def analytic(self) -> dict[str, np.ndarray]: ...

    def batched(
        self, name: str, flat: np.ndarray, coords: list[int], values: list[list[float]]
    ) -> Sequence[np.ndarray]: ...

    def notes(self) -> list[str]: ...


def run(adapter: Adapter, opts: Options) -> Report:
    """Check the adapter's gradient; its notes (set while it ran) lead the warnings."""
    batched = opts.mode in ("full", "sample")
    report = _check.run(
        adapter.cost,
        adapter.params,
        adapter.analytic(),
        opts,
        batched=adapter.batched if batched else None,
    )
    notes = adapter.notes()
    return dataclasses.replace(report, warnings=notes + report.warnings) if notes else report
