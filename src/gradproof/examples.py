"""The seed documents' networks, written out so checks, tests and the demo can use them.

The 3-layer network LINEAR -> RELU -> LINEAR -> RELU -> LINEAR -> SIGMOID with a
cross-entropy cost, column-major (features × examples), and its backward pass
with the seeds' planted bug (``dW2`` doubled, ``db1`` quadrupled) or fixed.

Examples:
    >>> import gradproof as gp
    >>> from gradproof.examples import seed_case, forward_propagation_n, backward_propagation_n
    >>> X, Y, parameters = seed_case()
    >>> cost, cache = forward_propagation_n(X, Y, parameters)
    >>> gradients = backward_propagation_n(X, Y, cache, buggy=True)
    >>> report = gp.check(lambda p: forward_propagation_n(X, Y, p), parameters, gradients, eps=1e-7)
    >>> sorted(t.name for t in report.failing)
    ['W2', 'b1']
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "backward_propagation_n",
    "forward_propagation_n",
    "relu",
    "seed_case",
    "sigmoid",
]


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(0, x)


def seed_case(seed: int = 1) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """The course's own test case (the seed documents', not a random seed's): ``X`` (4, 3),
    ``Y`` (3,), parameters W1 (5, 4) ... b3 (1, 1).

    Drawn as the seeds draw them (``np.random.seed(1)`` then ``randn`` in
    order), from a private generator: the global RNG is left alone.
    """
    rng = np.random.RandomState(seed)
    X = rng.randn(4, 3)
    Y = np.array([1, 1, 0])
    shapes = {"W1": (5, 4), "b1": (5, 1), "W2": (3, 5), "b2": (3, 1), "W3": (1, 3), "b3": (1, 1)}
    parameters = {name: rng.randn(*shape) for name, shape in shapes.items()}
    return X, Y, parameters


def forward_propagation_n(
    X: np.ndarray, Y: np.ndarray, parameters: dict[str, np.ndarray]
) -> tuple[float, tuple[Any, ...]]:
    """The seeds' forward pass; returns ``(cost, cache)``."""
    m = X.shape[1]
    W1, b1 = parameters["W1"], parameters["b1"]
    W2, b2 = parameters["W2"], parameters["b2"]
    W3, b3 = parameters["W3"], parameters["b3"]
    Z1 = np.dot(W1, X) + b1
    A1 = relu(Z1)
    Z2 = np.dot(W2, A1) + b2
    A2 = relu(Z2)
    Z3 = np.dot(W3, A2) + b3
    A3 = sigmoid(Z3)
    log_probs = np.multiply(-np.log(A3), Y) + np.multiply(-np.log(1 - A3), 1 - Y)
    cost = 1.0 / m * np.sum(log_probs)
    cache = (Z1, A1, W1, b1, Z2, A2, W2, b2, Z3, A3, W3, b3)
    return cost, cache


def backward_propagation_n(
    X: np.ndarray, Y: np.ndarray, cache: tuple[Any, ...], buggy: bool = False
) -> dict[str, np.ndarray]:
    """The seeds' backward pass. ``buggy=True`` plants their bug: dW2 ×2, db1 ×4."""
    m = X.shape[1]
    (_, A1, _, _, _, A2, W2, _, _, A3, W3, _) = cache
    dZ3 = A3 - Y
    dW3 = 1.0 / m * np.dot(dZ3, A2.T)
    db3 = 1.0 / m * np.sum(dZ3, axis=1, keepdims=True)
    dA2 = np.dot(W3.T, dZ3)
    dZ2 = np.multiply(dA2, np.int64(A2 > 0))
    dW2 = 1.0 / m * np.dot(dZ2, A1.T) * (2 if buggy else 1)
    db2 = 1.0 / m * np.sum(dZ2, axis=1, keepdims=True)
    dA1 = np.dot(W2.T, dZ2)
    dZ1 = np.multiply(dA1, np.int64(A1 > 0))
    dW1 = 1.0 / m * np.dot(dZ1, X.T)
    db1 = (4.0 if buggy else 1.0) / m * np.sum(dZ1, axis=1, keepdims=True)
    return {
        "dZ3": dZ3,
        "dW3": dW3,
        "db3": db3,
        "dA2": dA2,
        "dZ2": dZ2,
        "dW2": dW2,
        "db2": db2,
        "dA1": dA1,
        "dZ1": dZ1,
        "dW1": dW1,
        "db1": db1,
    }
