"""What both APIs of the kit share: a sigmoid that never overflows, initial scales, constants."""

from __future__ import annotations

import numpy as np

INIT_METHODS = ("he", "xavier", "random")
LEAKY_SLOPE = 0.01

# Probabilities are kept this far from 0 and 1 in the cross-entropy, so log()
# stays finite when a unit saturates.
PROBABILITY_FLOOR = 1e-15


def sigmoid(x: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-x))``, written so that no exponential overflows."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def init_scale(method: str, fan_in: int) -> float:
    """The standard deviation of initial weights: He (relu), Xavier (tanh), or the seeds' 0.01."""
    if method not in INIT_METHODS:
        raise ValueError(
            f"unknown init {method!r}; use one of {', '.join(map(repr, INIT_METHODS))}"
        )
    return {"he": np.sqrt(2.0 / fan_in), "xavier": np.sqrt(1.0 / fan_in), "random": 0.01}[method]
