"""Shared fixtures; the helpers they build on live in helpers.py."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import TwoLayerNet


@pytest.fixture
def global_rng():
    """Seed the global NumPy RNG for one test, and put its state back afterwards."""
    state = np.random.get_state()
    np.random.seed(1234)
    yield
    np.random.set_state(state)


@pytest.fixture
def net():
    return TwoLayerNet()
