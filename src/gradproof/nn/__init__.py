"""A small NumPy deep-learning kit from scratch, every backward proven by gradproof.

Two APIs:

- the seed documents' functional L-layer network, column-major (features ×
  examples):
  [`initialize_parameters`][gradproof.nn.initialize_parameters],
  [`L_model_forward`][gradproof.nn.L_model_forward],
  [`L_model_backward`][gradproof.nn.L_model_backward],
  [`compute_cost`][gradproof.nn.compute_cost],
  [`L_layer_model`][gradproof.nn.L_layer_model];
- layers, row-major like PyTorch ((N, features), (N, C, H, W), (N, T, features)):
  [`Dense`][gradproof.nn.Dense], [`ReLU`][gradproof.nn.ReLU],
  [`LeakyReLU`][gradproof.nn.LeakyReLU], [`Tanh`][gradproof.nn.Tanh],
  [`Sigmoid`][gradproof.nn.Sigmoid], [`Dropout`][gradproof.nn.Dropout],
  [`BatchNorm`][gradproof.nn.BatchNorm], [`Conv2D`][gradproof.nn.Conv2D],
  [`MaxPool2D`][gradproof.nn.MaxPool2D], [`Flatten`][gradproof.nn.Flatten],
  [`RNN`][gradproof.nn.RNN], in a [`Sequential`][gradproof.nn.Sequential] with
  losses, [`SGD`][gradproof.nn.SGD]/[`Adam`][gradproof.nn.Adam] and
  [`fit`][gradproof.nn.fit].

Examples:
    >>> import numpy as np, gradproof as gp
    >>> from gradproof import nn
    >>> X = np.random.default_rng(0).standard_normal((4, 3)); Y = np.array([[1, 0, 1]])
    >>> params = nn.initialize_parameters([4, 5, 1], seed=0)
    >>> cost = lambda p: nn.compute_cost(nn.L_model_forward(X, p, "tanh")[0], Y)
    >>> AL, caches = nn.L_model_forward(X, params, "tanh")
    >>> gp.check(cost, params, nn.L_model_backward(AL, Y, caches, "tanh")).passed
    True
    >>> model = nn.Sequential(nn.Dense(3, 4, seed=0), nn.Tanh(), nn.Dense(4, 2, seed=1))
    >>> model.gradient_check(X, np.array([0, 1, 1, 0]), nn.SoftmaxCrossEntropy()).passed
    True
"""

from ._data import load_breast_cancer as load_breast_cancer
from ._data import load_digits as load_digits
from ._data import load_h5 as load_h5
from ._functional import HIDDEN_ACTIVATIONS as HIDDEN_ACTIVATIONS
from ._functional import L_layer_model as L_layer_model
from ._functional import L_model_backward as L_model_backward
from ._functional import L_model_forward as L_model_forward
from ._functional import accuracy as accuracy
from ._functional import compute_cost as compute_cost
from ._functional import initialize_parameters as initialize_parameters
from ._functional import predict as predict
from ._layers import RNN as RNN
from ._layers import BatchNorm as BatchNorm
from ._layers import Conv2D as Conv2D
from ._layers import Dense as Dense
from ._layers import Dropout as Dropout
from ._layers import Flatten as Flatten
from ._layers import Layer as Layer
from ._layers import LeakyReLU as LeakyReLU
from ._layers import MaxPool2D as MaxPool2D
from ._layers import ReLU as ReLU
from ._layers import Sigmoid as Sigmoid
from ._layers import Tanh as Tanh
from ._losses import BinaryCrossEntropy as BinaryCrossEntropy
from ._losses import Loss as Loss
from ._losses import MeanSquaredError as MeanSquaredError
from ._losses import SoftmaxCrossEntropy as SoftmaxCrossEntropy
from ._model import Sequential as Sequential
from ._model import fit as fit
from ._optim import SGD as SGD
from ._optim import Adam as Adam

__all__ = [
    "HIDDEN_ACTIVATIONS",
    "RNN",
    "SGD",
    "Adam",
    "BatchNorm",
    "BinaryCrossEntropy",
    "Conv2D",
    "Dense",
    "Dropout",
    "Flatten",
    "L_layer_model",
    "L_model_backward",
    "L_model_forward",
    "Layer",
    "LeakyReLU",
    "Loss",
    "MaxPool2D",
    "MeanSquaredError",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "SoftmaxCrossEntropy",
    "Tanh",
    "accuracy",
    "compute_cost",
    "fit",
    "initialize_parameters",
    "load_breast_cancer",
    "load_digits",
    "load_h5",
    "predict",
]
