"""The seeds' L-layer network, functional and column-major (features × examples).

LINEAR -> (RELU | TANH | LEAKY_RELU) × (L-1) -> LINEAR -> SIGMOID, binary
cross-entropy. Names and shapes follow the seed documents: ``W{l}`` is
``(n_l, n_{l-1})``, ``b{l}`` is ``(n_l, 1)``, ``X`` is ``(n_x, m)``, ``Y`` is
``(1, m)``. The gradient dict plugs straight into [`gradproof.check`][gradproof.check].
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._ops import LEAKY_SLOPE, PROBABILITY_FLOOR, init_scale, sigmoid

HIDDEN_ACTIVATIONS = ("relu", "tanh", "leaky_relu")


def _check_activation(name: str) -> None:
    if name not in HIDDEN_ACTIVATIONS:
        raise ValueError(
            f"unknown hidden activation {name!r}; "
            f"use one of {', '.join(map(repr, HIDDEN_ACTIVATIONS))}"
        )


def initialize_parameters(
    layers_dims: list[int], method: str = "he", seed: int | None = 0
) -> dict[str, np.ndarray]:
    """Weights ``W1..WL`` and zero biases ``b1..bL`` for ``layers_dims = [n_x, n_1, ..., n_L]``.

    Args:
        method: ``"he"`` (scaled by sqrt(2/n_in), for relu), ``"xavier"``
            (sqrt(1/n_in), for tanh) or ``"random"`` (×0.01, as in the seeds).
        seed: seeds a private generator; the global RNG is not touched.
    """
    dims = [int(d) for d in layers_dims]
    if len(dims) < 2 or any(d < 1 for d in dims):
        raise ValueError(
            "layers_dims must list at least two positive sizes [n_x, ..., n_L], "
            f"got {layers_dims!r}"
        )
    init_scale(method, 1)  # refuses an unknown method before any weight is drawn
    rng = np.random.default_rng(seed)
    parameters = {}
    for layer in range(1, len(dims)):
        n_in, n_out = dims[layer - 1], dims[layer]
        parameters[f"W{layer}"] = rng.standard_normal((n_out, n_in)) * init_scale(method, n_in)
        parameters[f"b{layer}"] = np.zeros((n_out, 1))
    return parameters


def _activate(Z: np.ndarray, name: str) -> np.ndarray:
    if name == "relu":
        return np.maximum(0.0, Z)
    if name == "tanh":
        return np.tanh(Z)
    if name == "leaky_relu":
        return np.where(Z > 0, Z, LEAKY_SLOPE * Z)
    return sigmoid(Z)


def _activation_backward(dA: np.ndarray, Z: np.ndarray, A: np.ndarray, name: str) -> np.ndarray:
    if name == "relu":
        return dA * (Z > 0)
    if name == "tanh":
        return dA * (1.0 - A**2)
    if name == "leaky_relu":
        return dA * np.where(Z > 0, 1.0, LEAKY_SLOPE)
    return dA * A * (1.0 - A)


def _num_layers(parameters: dict[str, Any]) -> int:
    L = 0
    while f"W{L + 1}" in parameters:
        L += 1
    if L == 0 or any(f"b{layer}" not in parameters for layer in range(1, L + 1)):
        raise ValueError(f"parameters must hold W1, b1, ..., WL, bL; got keys {sorted(parameters)}")
    return L


def L_model_forward(
    X: np.ndarray, parameters: dict[str, np.ndarray], hidden_activation: str = "relu"
) -> tuple[np.ndarray, list[tuple]]:
    """Forward pass; returns ``AL`` (1, m) and the caches the backward pass needs."""
    _check_activation(hidden_activation)
    L = _num_layers(parameters)
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[0] != parameters["W1"].shape[1]:
        raise ValueError(
            f"X must have shape (n_x, m) = ({parameters['W1'].shape[1]}, m), features × examples; "
            f"got {X.shape}. If your examples are rows, pass X.T"
        )
    A = X
    caches = []
    for layer in range(1, L + 1):
        W, b = parameters[f"W{layer}"], parameters[f"b{layer}"]
        Z = W @ A + b
        name = hidden_activation if layer < L else "sigmoid"
        A_next = _activate(Z, name)
        caches.append((A, W, Z, A_next, name))
        A = A_next
    return A, caches


def compute_cost(AL: np.ndarray, Y: np.ndarray) -> float:
    """Binary cross-entropy ``-1/m Σ [y log a + (1-y) log(1-a)]``."""
    AL, Y = np.asarray(AL), np.asarray(Y)
    _check_labels(AL, Y)
    m = Y.shape[1]
    A = np.clip(AL, PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
    return float(-(np.sum(Y * np.log(A)) + np.sum((1 - Y) * np.log1p(-A))) / m)


def _check_labels(AL: np.ndarray, Y: np.ndarray) -> None:
    if Y.shape != AL.shape:
        raise ValueError(
            f"Y must have the shape of AL, (1, m) = {AL.shape}; got {Y.shape}. "
            "Reshape labels with Y.reshape(1, -1)"
        )
    if not np.all((Y == 0) | (Y == 1)):
        bad = np.unique(Y[(Y != 0) & (Y != 1)])[:5]
        raise ValueError(f"Y must hold binary labels 0 and 1; found {bad.tolist()}")


def L_model_backward(
    AL: np.ndarray, Y: np.ndarray, caches: list[tuple], hidden_activation: str = "relu"
) -> dict[str, np.ndarray]:
    """Gradients of [`compute_cost`][gradproof.nn.compute_cost]: ``dW{l}``, ``db{l}``
    and ``dA{l}`` (as in the seeds)."""
    _check_activation(hidden_activation)
    Y = np.asarray(Y)
    _check_labels(AL, Y)
    m = Y.shape[1]
    grads: dict[str, np.ndarray] = {}
    L = len(caches)
    # Sigmoid and cross-entropy together: dZ_L = AL - Y.
    dZ = (AL - Y) / m
    for layer in range(L, 0, -1):
        A_prev, W, Z, A, name = caches[layer - 1]
        if layer < L:
            dZ = _activation_backward(grads[f"dA{layer}"], Z, A, name)
        grads[f"dW{layer}"] = dZ @ A_prev.T
        grads[f"db{layer}"] = np.sum(dZ, axis=1, keepdims=True)
        grads[f"dA{layer - 1}"] = W.T @ dZ
    return grads


def predict(X: np.ndarray, parameters: dict[str, np.ndarray], hidden_activation: str = "relu"):
    """0/1 predictions, shape (1, m)."""
    AL, _ = L_model_forward(X, parameters, hidden_activation)
    return (AL > 0.5).astype(np.int64)


def accuracy(X, Y, parameters, hidden_activation: str = "relu") -> float:
    """Fraction of examples predicted right."""
    return float(np.mean(predict(X, parameters, hidden_activation) == np.asarray(Y)))


def L_layer_model(
    X: np.ndarray,
    Y: np.ndarray,
    layers_dims: list[int],
    hidden_activation: str = "relu",
    learning_rate: float = 0.1,
    num_iterations: int = 1000,
    seed: int = 0,
) -> tuple[dict[str, np.ndarray], list[float]]:
    """Train by full-batch gradient descent; returns parameters and the cost history."""
    method = "xavier" if hidden_activation == "tanh" else "he"
    parameters = initialize_parameters(layers_dims, method=method, seed=seed)
    costs = []
    for _ in range(num_iterations):
        AL, caches = L_model_forward(X, parameters, hidden_activation)
        costs.append(compute_cost(AL, Y))
        grads = L_model_backward(AL, Y, caches, hidden_activation)
        for layer in range(1, len(layers_dims)):
            parameters[f"W{layer}"] -= learning_rate * grads[f"dW{layer}"]
            parameters[f"b{layer}"] -= learning_rate * grads[f"db{layer}"]
    return parameters, costs
