"""Numerical policy: every default step, error model and threshold in one place.

Each report records the policy it was made under (``Report.policy``), so a
check can be reproduced and its verdict explained.
"""

from __future__ import annotations

from typing import Any

import numpy as np

UNIT_ROUNDOFF = float(np.finfo(np.float64).eps) / 2  # u = 2**-53

METHODS = ("central", "forward", "backward", "complex", "richardson")
MODES = ("full", "sample", "directional", "auto")

# Automatic step h_i = STEP_FACTOR[method] * max(1, |theta_i|): the step that
# balances truncation error against round-off for each scheme's order.
STEP_FACTOR = {
    "central": float(np.finfo(np.float64).eps ** (1 / 3)),  # ~6.1e-6, error O(h^2)
    "forward": float(np.finfo(np.float64).eps ** (1 / 2)),  # ~1.5e-8, error O(h)
    "backward": float(np.finfo(np.float64).eps ** (1 / 2)),
    "richardson": float(np.finfo(np.float64).eps ** (1 / 5)),  # ~7.4e-4, error O(h^4)
    "complex": 1e-20,  # no subtraction, so no round-off: the step can be tiny
}

# Order p of each scheme's truncation error, O(h^p), as estimated from the
# same scheme at h and h/2. Richardson's estimate is that of its h/2 part.
ORDER = {"central": 2, "forward": 1, "backward": 1, "richardson": 2}

# Evaluations of the cost per coordinate, and round-off amplification of each
# scheme: its round-off error is ROUNDOFF_GAIN * (error of one cost value) / h.
EVALS_PER_COORDINATE = {"central": 2, "forward": 1, "backward": 1, "richardson": 4, "complex": 1}
ROUNDOFF_GAIN = {"central": 1.0, "forward": 2.0, "backward": 2.0, "richardson": 3.0}

# The cost's absolute error is modelled as COST_ROUNDOFF * u * |J|: a cost is a
# long chain of float64 operations, each adding up to u of relative error.
COST_ROUNDOFF = 16.0

# The cost's round-off is also measured (Moré & Wild's noise estimate) on the
# NOISE_COORDINATES most sensitive coordinates, from NOISE_POINTS evaluations
# spaced NOISE_SPACING * h apart; the larger of model and measurement, times
# NOISE_MARGIN (a deviation turned into a bound), is the error of one cost value.
NOISE_COORDINATES = 3
NOISE_POINTS = 9
NOISE_SPACING = 1 / 16
NOISE_MARGIN = 3.0

# Relative accuracy taken for an analytic gradient of each dtype: its own
# round-off, allowed for when comparing.
ANALYTIC_ROUNDOFF = {
    np.dtype(np.float16): 16 * float(np.finfo(np.float16).eps),
    np.dtype(np.float32): 16 * float(np.finfo(np.float32).eps),
    np.dtype(np.float64): 16 * float(np.finfo(np.float64).eps),
}

# A disagreement is "within numerical error" when it is below ERROR_SAFETY
# times the estimated error of the numerical partial.
ERROR_SAFETY = 4.0

# A coordinate is a kink when its one-sided slopes are inconsistent by more
# than KINK_SHARE of the disagreement they must explain, and by more than
# KINK_NOISE times the round-off that could fake the inconsistency.
KINK_SHARE = 0.5
KINK_NOISE = 64.0
# Coordinates whose second difference is this large relative to the slope are
# examined for kinks even when analytic and numeric agree.
KINK_SCREEN = 0.1

# Stop examining a parameter's doubtful coordinates once this many are
# confirmed wrong: its verdict is settled, and the rest cost evaluations only.
CONFIRMED_ENOUGH = 16

# Coordinates per parameter that mode="sample" checks when k is not given.
SAMPLE_K = 32

# mode="directional": random directions per parameter when k is not given.
DIRECTIONS_K = 8
# The directional step makes the cost's round-off DIRECTION_SIGNAL times
# smaller than tol times the directional derivative: large enough for
# accuracy, small enough to cross few kinks (a ReLU MLP has thousands).
DIRECTION_SIGNAL = 10.0
# Bounds on that step, in units of the (scaled) direction.
DIRECTION_STEP_MAX = STEP_FACTOR["central"]
DIRECTION_STEP_MIN = 1e-12
# A direction that crosses a kink is tried again at a step this much smaller.
KINK_RETRY_SHRINK = 16.0
KINK_RETRIES = 2
# Localization stops after finding this many wrong elements (more: "many").
LOCALIZE_MAX = 8
# An error this many times tol is missed by all k directions with
# probability ((2/pi) atan(1/c))^k, which the report states.
CONFIDENCE_FACTOR = 10.0

# mode="auto" runs a full check when it would take at most this long.
AUTO_FULL_SECONDS = 30.0

# How many wrong elements a diagnosis names one by one.
FEW_ELEMENTS = 5


def default_step(method: str, theta: np.ndarray) -> np.ndarray:
    """The automatic step for each coordinate of ``theta`` (float64 array)."""
    return STEP_FACTOR[method] * np.maximum(1.0, np.abs(theta))


def as_record(
    method: str, eps: float | None, tol: float, mode: str, k: int | None = None, seed: int = 0
) -> dict[str, Any]:
    """The policy a check ran under, JSON-serializable."""
    return {
        "method": method,
        "k": k if k is not None else {"sample": SAMPLE_K, "directional": DIRECTIONS_K}.get(mode),
        "seed": seed,
        "eps": eps if eps is not None else f"auto: {STEP_FACTOR[method]:.3g} * max(1, |theta|)",
        "tol": tol,
        "mode": mode,
        "cost_roundoff": COST_ROUNDOFF,
        "error_safety": ERROR_SAFETY,
        "kink_share": KINK_SHARE,
        "kink_noise": KINK_NOISE,
    }
