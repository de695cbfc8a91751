"""Numerical gradients and derivatives on their own, without a comparison."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from . import _tree
from ._check import _options
from ._cost import Evaluator, check_finite
from ._errors import GradientSpecError
from ._sweep import at_point, sweep_leaves


def numerical_gradient(
    cost: Callable[[Any], Any], params: Any, *, method: str = "central", eps: float | None = None
) -> Any:
    """The finite-difference gradient of ``cost`` at ``params``, same structure as ``params``.

    Example:
        >>> import numpy as np, gradproof as gp
        >>> g = gp.numerical_gradient(lambda p: np.sum(p["w"] ** 2), {"w": np.array([1.0, -2.0])})
        >>> np.round(g["w"], 6)
        array([ 2., -4.])
    """
    opts = _options(method, eps, 1e-7, "full", None, 0, None, False)
    leaves = _tree.parse(params)
    rng_state = np.random.get_state()
    try:
        dtype = np.complex128 if opts.method == "complex" else np.float64
        tree, arrays = _tree.working_copy(params, dtype)
        evaluate = Evaluator(cost, tree, rng_state, complex_ok=opts.method == "complex")
        j0 = at_point(evaluate.first, "at the check point")
        check_finite(j0, "at the check point")
        j0 = j0.real if isinstance(j0, complex) else j0
        coords = {leaf.name: np.arange(leaf.size) for leaf in leaves}
        sweeps = sweep_leaves(evaluate, arrays, leaves, coords, j0, opts, None)
        numeric = {name: s.numeric for name, s in sweeps.items()}
    finally:
        np.random.set_state(rng_state)
    by_path = {leaf.path: leaf for leaf in leaves}

    def shaped(path, _):
        leaf = by_path[path]
        values = numeric[leaf.name]
        return float(values[0]) if leaf.is_scalar else values.reshape(leaf.shape)

    return _tree.rebuild(params, shaped)


def derivative(
    f: Callable[[Any], Any], x: float, *, method: str = "central", eps: float | None = None
) -> float:
    """The derivative of a scalar function at the real number ``x``.

    Example:
        >>> import gradproof as gp
        >>> gp.derivative(lambda x: x ** 2, 3.0, eps=1e-2)
        5.999999999999872
        >>> gp.derivative(lambda x: x ** 2, 3.0, method="forward", eps=1e-2)
        6.009999999999849
    """
    if isinstance(x, np.ndarray):
        if x.size != 1:
            raise GradientSpecError(
                f"derivative takes a single number x, got an array of shape {x.shape}; "
                "use gp.numerical_gradient for arrays"
            )
        x = x.reshape(()).item()
    if isinstance(x, bool) or not isinstance(x, (int, float, np.floating, np.integer)):
        raise GradientSpecError(f"derivative takes a real number x, got {type(x).__name__}")
    return float(numerical_gradient(f, float(x), method=method, eps=eps))
