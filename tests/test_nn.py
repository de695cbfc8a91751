"""gradproof.nn's L-layer network: every backward proven, and it learns real data."""

import numpy as np
import pytest

import gradproof as gp
from gradproof import nn


@pytest.mark.parametrize("activation", ["relu", "tanh", "leaky_relu"])
@pytest.mark.parametrize(
    "dims", [[4, 1], [4, 5, 1], [6, 5, 3, 1]], ids=["1 layer", "2 layers", "3 layers"]
)
def test_l_layer_backward_passes_the_check(activation, dims):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((dims[0], 7))
    Y = (rng.random((1, 7)) > 0.5).astype(float)
    params = nn.initialize_parameters(dims, seed=1)
    AL, caches = nn.L_model_forward(X, params, activation)
    grads = nn.L_model_backward(AL, Y, caches, activation)
    cost = lambda p: nn.compute_cost(nn.L_model_forward(X, p, activation)[0], Y)  # noqa: E731
    report = gp.check(cost, params, grads)
    assert report.passed, str(report)


def test_l_layer_model_learns_breast_cancer_above_95_percent():
    pytest.importorskip("sklearn")
    X_train, Y_train, X_test, Y_test = nn.load_breast_cancer()
    params, costs = nn.L_layer_model(X_train, Y_train, [30, 5, 5, 1], "relu", 0.1, 1500)
    assert costs[-1] < costs[0] / 10
    assert nn.accuracy(X_test, Y_test, params, "relu") >= 0.95


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (
            lambda p: nn.L_model_forward(np.ones((3, 2)), p),
            r"X must have shape \(n_x, m\) = \(4, m\)",
        ),
        (
            lambda p: nn.L_model_forward(np.ones((4, 2)), p, "swish"),
            "unknown hidden activation 'swish'",
        ),
        (
            lambda p: nn.compute_cost(np.full((1, 2), 0.5), np.ones(2)),
            r"Y must have the shape of AL",
        ),
        (lambda p: nn.compute_cost(np.full((1, 2), 0.5), np.array([[0, 2]])), "binary labels"),
        (lambda p: nn.initialize_parameters([4]), "at least two positive sizes"),
    ],
    ids=["X shape", "activation", "Y shape", "Y values", "layers"],
)
def test_bad_input_is_refused_with_a_clear_message(call, match):
    params = nn.initialize_parameters([4, 3, 1])
    with pytest.raises(ValueError, match=match):
        call(params)
