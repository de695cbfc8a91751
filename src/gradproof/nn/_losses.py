"""Losses for the layer API: ``forward(pred, y) -> float``, then ``backward() -> dpred``."""

from __future__ import annotations

import numpy as np

from ._ops import PROBABILITY_FLOOR


class Loss:
    """``forward(pred, y) -> float``, then ``backward() -> dpred``."""

    def __call__(self, pred, y) -> float:
        return self.forward(pred, y)

    def forward(self, pred, y) -> float:
        raise NotImplementedError

    def backward(self):
        raise NotImplementedError


class BinaryCrossEntropy(Loss):
    """``-mean(y log p + (1 - y) log(1 - p))`` for probabilities p: (N, 1) or (N,), y ∈ {0, 1}."""

    def forward(self, p, y):
        p, y = np.asarray(p), np.asarray(y, dtype=np.float64)
        if y.shape != p.shape:
            if y.size == p.size:
                y = y.reshape(p.shape)
            else:
                raise ValueError(
                    f"labels must have the shape of the predictions {p.shape}, got {y.shape}"
                )
        if not np.all((y == 0) | (y == 1)):
            raise ValueError(
                f"binary labels must be 0 or 1; found {np.unique(y[(y != 0) & (y != 1)])[:5]}"
            )
        # A saturated sigmoid gives p == 1.0 exactly: keep log() finite.
        p = np.clip(p, PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
        self.p, self.y = p, y
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))

    def backward(self):
        return (self.p - self.y) / (self.p * (1 - self.p)) / self.p.size


class SoftmaxCrossEntropy(Loss):
    """Cross-entropy of softmax(logits): logits (N, C), y integer labels (N,) in [0, C)."""

    def forward(self, logits, y):
        logits = np.asarray(logits)
        y = np.asarray(y)
        if logits.ndim != 2:
            raise ValueError(f"SoftmaxCrossEntropy expects logits (N, C), got shape {logits.shape}")
        n, c = logits.shape
        if y.shape != (n,) or y.dtype.kind not in "iu":
            raise ValueError(f"labels must be integers of shape ({n},), got {y.dtype} {y.shape}")
        if y.min(initial=0) < 0 or y.max(initial=0) >= c:
            raise ValueError(f"labels must lie in [0, {c}); got {y.min()}..{y.max()}")
        z = logits - logits.max(axis=1, keepdims=True)
        log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        self.p, self.y = np.exp(log_p), y
        return float(-log_p[np.arange(n), y].mean())

    def backward(self):
        d = self.p.copy()
        d[np.arange(len(self.y)), self.y] -= 1
        return d / len(self.y)


class MeanSquaredError(Loss):
    def forward(self, pred, y):
        pred, y = np.asarray(pred), np.asarray(y, dtype=np.float64)
        if pred.shape != y.shape:
            raise ValueError(
                f"targets must have the predictions' shape {pred.shape}, got {y.shape}"
            )
        self.diff = pred - y
        return float(np.mean(self.diff**2))

    def backward(self):
        return 2 * self.diff / self.diff.size


# ----------------------------------------------------------------------- model
