"""Bisection of a direction's support down to the wrong elements (directional mode).

Along ``v`` the analytic side is ``vᵀg`` and the numeric side a central difference;
both are linear in ``v``, so the error on one half of ``v``'s support is the parent's
minus the other half's: each level costs 2 evaluations (the half's own central
difference), and a wrong element is found in about ``2 log2(n)``. A half is followed
only while its error is beyond ``tol`` and beyond what the cost's noise can make of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _policy
from ._mover import Mover


@dataclass(frozen=True)
class Bisected:
    """A direction that failed: ``v``, the analytic gradient ``g``, the step ``t`` taken
    along it, and the two sides found there."""

    v: np.ndarray
    g: np.ndarray
    step: float
    analytic: float
    numerical: float


def localize(mover: Mover, along: Bisected, noise: float, tol: float) -> list[int]:
    """Flat indices of wrong elements, by bisection of ``v``'s support (at most
    ``LOCALIZE_MAX``); ``noise``: the absolute error of one cost value."""
    v, g, t = along.v, along.g, along.step
    n = g.size
    found: list[int] = []
    threshold_noise = 4 * _policy.ERROR_SAFETY * noise / t

    def significant(e: float, d: float, dn: float) -> bool:
        return abs(e) > max(tol * (abs(d) + abs(dn)), threshold_noise)

    stack = [(0, n, along.analytic - along.numerical, along.analytic, along.numerical)]
    while stack and len(found) < _policy.LOCALIZE_MAX:
        lo, hi, e, d, dn = stack.pop()
        if hi - lo == 1:
            found.append(lo)
            continue
        mid = (lo + hi) // 2
        jp, jm, d_a = mover.central(v, t, g, lo, mid)
        dn_a = (jp - jm) / (2 * t)
        halves = ((mid, hi, e - (d_a - dn_a), d - d_a, dn - dn_a), (lo, mid, d_a - dn_a, d_a, dn_a))
        stack.extend(h for h in halves if significant(*h[2:]))
    return sorted(found)
