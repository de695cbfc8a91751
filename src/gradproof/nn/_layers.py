"""Layers with a hand-written backward pass, every one proven by gradproof in the tests.

Row-major, like PyTorch: dense inputs are ``(N, features)``, images
``(N, C, H, W)``, sequences ``(N, T, features)``. Each layer has the same three
parts: ``forward(x, training)``, ``backward(dy) -> dx`` (which fills
``grads``), and ``params``, a dict of named arrays.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ._ops import init_scale, sigmoid


class Layer:
    """A differentiable step. ``params``/``grads`` map names to arrays of the same shapes."""

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        raise NotImplementedError

    def backward(self, dy: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        return self.forward(x, training)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}{tuple(v.shape)}" for k, v in self.params.items())
        return f"{type(self).__name__}({shapes})"


def _rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _expect(x: np.ndarray, ndim: int, what: str, layer: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != ndim:
        raise ValueError(f"{layer} expects {what}, got an array of shape {x.shape}")
    return x


class Dense(Layer):
    """``y = x Wᵀ + b``. W: (n_out, n_in), b: (n_out,); x: (N, n_in) -> y: (N, n_out)."""

    def __init__(self, n_in: int, n_out: int, init: str = "he", seed=None):
        super().__init__()
        scale = init_scale(init, n_in)
        self.params = {
            "W": _rng(seed).standard_normal((n_out, n_in)) * scale,
            "b": np.zeros(n_out),
        }

    def forward(self, x, training=True):
        x = _expect(x, 2, f"(N, {self.params['W'].shape[1]})", "Dense")
        if x.shape[1] != self.params["W"].shape[1]:
            raise ValueError(
                f"Dense expects (N, {self.params['W'].shape[1]}) inputs, got {x.shape}"
            )
        self.x = x
        return x @ self.params["W"].T + self.params["b"]

    def backward(self, dy):
        self.grads = {"W": dy.T @ self.x, "b": dy.sum(axis=0)}
        return dy @ self.params["W"]


class ReLU(Layer):
    def forward(self, x, training=True):
        self.positive = x > 0
        return np.where(self.positive, x, 0.0)

    def backward(self, dy):
        return dy * self.positive


class LeakyReLU(Layer):
    def __init__(self, slope: float = 0.01):
        super().__init__()
        self.slope = slope

    def forward(self, x, training=True):
        self.positive = x > 0
        return np.where(self.positive, x, self.slope * x)

    def backward(self, dy):
        return dy * np.where(self.positive, 1.0, self.slope)


class Tanh(Layer):
    def forward(self, x, training=True):
        self.y = np.tanh(x)
        return self.y

    def backward(self, dy):
        return dy * (1.0 - self.y**2)


class Sigmoid(Layer):
    def forward(self, x, training=True):
        self.y = sigmoid(x)
        return self.y

    def backward(self, dy):
        return dy * self.y * (1.0 - self.y)


class Dropout(Layer):
    """Inverted dropout: keeps each unit with probability ``keep_prob`` and scales by 1/keep_prob.

    Masks are drawn from the global ``np.random`` state, which gradproof replays,
    so a check sees one mask. At evaluation (``training=False``) it is the identity.
    """

    def __init__(self, keep_prob: float = 0.5):
        super().__init__()
        if not (isinstance(keep_prob, (int, float)) and 0 < keep_prob <= 1):
            raise ValueError(f"keep_prob must be in (0, 1], got {keep_prob!r}")
        self.keep_prob = float(keep_prob)

    def forward(self, x, training=True):
        if not training or self.keep_prob == 1.0:
            self.mask = None
            return x
        self.mask = (np.random.rand(*x.shape) < self.keep_prob) / self.keep_prob
        return x * self.mask

    def backward(self, dy):
        return dy if self.mask is None else dy * self.mask


class BatchNorm(Layer):
    """Batch normalisation over the batch (and, for images, spatial) axes.

    gamma, beta: (features,) or (channels,). Training uses the batch's
    statistics and updates running ones (unless ``update_stats`` is False);
    evaluation uses the running ones.
    """

    def __init__(self, n_features: int, momentum: float = 0.9, eps: float = 1e-5):
        super().__init__()
        self.params = {"gamma": np.ones(n_features), "beta": np.zeros(n_features)}
        self.running_mean = np.zeros(n_features)
        self.running_var = np.ones(n_features)
        self.momentum, self.eps = momentum, eps
        self.update_stats = True

    def _axes_shape(self, x):
        if x.ndim == 2:
            return (0,), (1, -1)
        if x.ndim == 4:
            return (0, 2, 3), (1, -1, 1, 1)
        raise ValueError(f"BatchNorm expects (N, F) or (N, C, H, W) inputs, got {x.shape}")

    def forward(self, x, training=True):
        axes, shape = self._axes_shape(x)
        gamma = self.params["gamma"].reshape(shape)
        beta = self.params["beta"].reshape(shape)
        if not training:
            mean = self.running_mean.reshape(shape)
            var = self.running_var.reshape(shape)
            return gamma * (x - mean) / np.sqrt(var + self.eps) + beta
        mean = x.mean(axis=axes, keepdims=True)
        var = x.var(axis=axes, keepdims=True)
        self.inv_std = 1.0 / np.sqrt(var + self.eps)
        self.x_hat = (x - mean) * self.inv_std
        self.axes, self.shape = axes, shape
        if self.update_stats:
            m = self.momentum
            self.running_mean = m * self.running_mean + (1 - m) * mean.reshape(-1)
            self.running_var = m * self.running_var + (1 - m) * var.reshape(-1)
        return gamma * self.x_hat + beta

    def backward(self, dy):
        axes, shape = self.axes, self.shape
        self.grads = {
            "gamma": (dy * self.x_hat).sum(axis=axes),
            "beta": dy.sum(axis=axes),
        }
        dx_hat = dy * self.params["gamma"].reshape(shape)
        mean_dx_hat = dx_hat.mean(axis=axes, keepdims=True)
        mean_dx_hat_xhat = (dx_hat * self.x_hat).mean(axis=axes, keepdims=True)
        return self.inv_std * (dx_hat - mean_dx_hat - self.x_hat * mean_dx_hat_xhat)


class Flatten(Layer):
    """(N, ...) -> (N, prod(...))."""

    def forward(self, x, training=True):
        self.shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dy):
        return dy.reshape(self.shape)


class Conv2D(Layer):
    """2-D convolution (cross-correlation, as in PyTorch) by im2col.

    W: (out_channels, in_channels, k, k), b: (out_channels,);
    x: (N, C, H, W) -> y: (N, out_channels, H', W') with
    H' = (H + 2·padding − k) // stride + 1.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, seed=None):
        super().__init__()
        k = kernel_size
        fan_in = in_channels * k * k
        self.params = {
            "W": _rng(seed).standard_normal((out_channels, in_channels, k, k))
            * init_scale("he", fan_in),
            "b": np.zeros(out_channels),
        }
        self.k, self.stride, self.padding = k, stride, padding

    def forward(self, x, training=True):
        x = _expect(x, 4, "(N, C, H, W) images", "Conv2D")
        c = self.params["W"].shape[1]
        if x.shape[1] != c:
            raise ValueError(f"Conv2D expects {c} input channels, got shape {x.shape}")
        p, s, k = self.padding, self.stride, self.k
        xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p))) if p else x
        if xp.shape[2] < k or xp.shape[3] < k:
            raise ValueError(f"Conv2D: a {k}x{k} kernel does not fit images of shape {x.shape}")
        windows = sliding_window_view(xp, (k, k), axis=(2, 3))[:, :, ::s, ::s]
        n, _, ho, wo = windows.shape[:4]
        self.cols = windows.transpose(0, 2, 3, 1, 4, 5).reshape(n, ho, wo, -1)
        self.x_shape, self.xp_shape = x.shape, xp.shape
        w = self.params["W"].reshape(self.params["W"].shape[0], -1)
        y = self.cols @ w.T + self.params["b"]
        return y.transpose(0, 3, 1, 2)

    def backward(self, dy):
        w = self.params["W"]
        out = w.shape[0]
        dy_r = dy.transpose(0, 2, 3, 1)  # (N, H', W', out)
        self.grads = {
            "W": (dy_r.reshape(-1, out).T @ self.cols.reshape(-1, self.cols.shape[-1])).reshape(
                w.shape
            ),
            "b": dy_r.sum(axis=(0, 1, 2)),
        }
        n, ho, wo = dy_r.shape[:3]
        dcols = (dy_r @ w.reshape(out, -1)).reshape(n, ho, wo, w.shape[1], self.k, self.k)
        dxp = np.zeros(self.xp_shape)
        s = self.stride
        for i in range(self.k):
            for j in range(self.k):
                dxp[:, :, i : i + s * ho : s, j : j + s * wo : s] += dcols[..., i, j].transpose(
                    0, 3, 1, 2
                )
        p = self.padding
        return dxp[:, :, p : p + self.x_shape[2], p : p + self.x_shape[3]] if p else dxp


class MaxPool2D(Layer):
    """Max pooling over size×size windows (stride = size by default); ties go to the first."""

    def __init__(self, size: int = 2, stride: int | None = None):
        super().__init__()
        self.size, self.stride = size, stride or size

    def forward(self, x, training=True):
        x = _expect(x, 4, "(N, C, H, W) images", "MaxPool2D")
        k, s = self.size, self.stride
        windows = sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::s, ::s]
        flat = windows.reshape(*windows.shape[:4], k * k)
        self.argmax = flat.argmax(axis=-1)
        self.x_shape = x.shape
        return np.take_along_axis(flat, self.argmax[..., None], axis=-1)[..., 0]

    def backward(self, dy):
        k, s = self.size, self.stride
        dx = np.zeros(self.x_shape)
        ho, wo = dy.shape[2:]
        for i in range(k):
            for j in range(k):
                hit = self.argmax == i * k + j
                dx[:, :, i : i + s * ho : s, j : j + s * wo : s] += dy * hit
        return dx


class RNN(Layer):
    """A vanilla RNN unrolled over time: ``h_t = tanh(x_t W_ihᵀ + h_{t-1} W_hhᵀ + b)``, h_0 = 0.

    W_ih: (hidden, n_in), W_hh: (hidden, hidden), b: (hidden,);
    x: (N, T, n_in) -> all hidden states (N, T, hidden). Backward is BPTT.
    """

    def __init__(self, n_in: int, hidden: int, seed=None):
        super().__init__()
        rng = _rng(seed)
        self.params = {
            "W_ih": rng.standard_normal((hidden, n_in)) / np.sqrt(n_in),
            "W_hh": rng.standard_normal((hidden, hidden)) / np.sqrt(hidden),
            "b": np.zeros(hidden),
        }

    def forward(self, x, training=True):
        x = _expect(x, 3, "(N, T, features) sequences", "RNN")
        n, t_len, _ = x.shape
        hidden = self.params["W_hh"].shape[0]
        h = np.zeros((n, hidden))
        self.x, self.hs = x, np.zeros((n, t_len, hidden))
        for t in range(t_len):
            h = np.tanh(
                x[:, t] @ self.params["W_ih"].T + h @ self.params["W_hh"].T + self.params["b"]
            )
            self.hs[:, t] = h
        return self.hs

    def backward(self, dy):
        n, t_len, hidden = self.hs.shape
        g = {k: np.zeros_like(v) for k, v in self.params.items()}
        dx = np.zeros_like(self.x)
        dh_next = np.zeros((n, hidden))
        for t in reversed(range(t_len)):
            dz = (dy[:, t] + dh_next) * (1.0 - self.hs[:, t] ** 2)
            h_prev = self.hs[:, t - 1] if t > 0 else np.zeros((n, hidden))
            g["W_ih"] += dz.T @ self.x[:, t]
            g["W_hh"] += dz.T @ h_prev
            g["b"] += dz.sum(axis=0)
            dx[:, t] = dz @ self.params["W_ih"]
            dh_next = dz @ self.params["W_hh"]
        self.grads = g
        return dx
