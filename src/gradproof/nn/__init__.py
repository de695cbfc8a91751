"""A small NumPy network from scratch: the seeds' L-layer model, every backward proven.

>>> import numpy as np, gradproof as gp
>>> from gradproof import nn
>>> X = np.random.default_rng(0).standard_normal((4, 3)); Y = np.array([[1, 0, 1]])
>>> params = nn.initialize_parameters([4, 5, 1], seed=0)
>>> cost = lambda p: nn.compute_cost(nn.L_model_forward(X, p, "tanh")[0], Y)
>>> AL, caches = nn.L_model_forward(X, params, "tanh")
>>> gp.check(cost, params, nn.L_model_backward(AL, Y, caches, "tanh")).passed
True
"""

from ._data import load_breast_cancer as load_breast_cancer
from ._functional import HIDDEN_ACTIVATIONS as HIDDEN_ACTIVATIONS
from ._functional import L_layer_model as L_layer_model
from ._functional import L_model_backward as L_model_backward
from ._functional import L_model_forward as L_model_forward
from ._functional import accuracy as accuracy
from ._functional import compute_cost as compute_cost
from ._functional import initialize_parameters as initialize_parameters
from ._functional import predict as predict

__all__ = [
    "HIDDEN_ACTIVATIONS",
    "L_layer_model",
    "L_model_backward",
    "L_model_forward",
    "accuracy",
    "compute_cost",
    "initialize_parameters",
    "load_breast_cancer",
    "predict",
]
