"""The Sequential model and its training loop."""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np

from .._origin import called
from ._layers import BatchNorm, Layer
from ._losses import Loss


class Sequential:
    """Layers applied in order; parameters named ``"<index>.<name>"`` (``"0.W"``, ``"3.gamma"``)."""

    def __init__(self, *layers: Layer):
        self.layers = list(layers)

    def forward(self, x, training: bool = True):
        for layer in self.layers:
            x = layer.forward(x, training)
        return x

    __call__ = forward

    def backward(self, dy):
        for layer in reversed(self.layers):
            dy = layer.backward(dy)
        return dy

    def params(self) -> dict[str, np.ndarray]:
        """The live parameter arrays, in the dict form gradproof.check takes."""
        return {
            f"{i}.{k}": v for i, layer in enumerate(self.layers) for k, v in layer.params.items()
        }

    def grads(self) -> dict[str, np.ndarray]:
        """The gradients of the last backward pass, keyed like
        [`params`][gradproof.nn.Sequential.params]."""
        return {
            f"{i}.{k}": v for i, layer in enumerate(self.layers) for k, v in layer.grads.items()
        }

    def load(self, params: dict[str, np.ndarray]) -> None:
        """Use these arrays as the parameters (no copy)."""
        for name, value in params.items():
            i, key = name.split(".", 1)
            self.layers[int(i)].params[key] = value

    def cost(self, X, y, loss: Loss, lambd: float = 0.0, training: bool = True) -> float:
        """The loss plus the L2 penalty ``lambd / (2 N) Σ ‖W‖²`` over weight matrices."""
        value = loss.forward(self.forward(X, training), y)
        if lambd:
            value += lambd / (2 * len(X)) * sum(float(np.sum(w**2)) for w in self._weights())
        return value

    def cost_and_grads(self, X, y, loss: Loss, lambd: float = 0.0):
        value = self.cost(X, y, loss, lambd)
        self.backward(loss.backward())
        grads = self.grads()
        if lambd:
            for name, w in self._named_weights():
                grads[name] = grads[name] + lambd / len(X) * w
        return value, grads

    def _named_weights(self):
        return [(n, v) for n, v in self.params().items() if n.split(".", 1)[1].startswith("W")]

    def _weights(self):
        return [v for _, v in self._named_weights()]

    def gradient_check(self, X, y, loss: Loss, lambd: float = 0.0, **check_options: Any):
        """Prove this model's backward on (X, y) with [`gradproof.check`][gradproof.check]
        and return its report.

        The model's parameters and batch-norm statistics are as they were afterwards.
        """
        from .. import _check
        from .._options import user_options

        opts = user_options("Sequential.gradient_check", **check_options)
        original = self.params()
        norms = [layer for layer in self.layers if isinstance(layer, BatchNorm)]
        saved = [(b.update_stats, b.running_mean.copy(), b.running_var.copy()) for b in norms]
        for b in norms:
            b.update_stats = False

        def cost(p):
            self.load(p)
            return self.cost(X, y, loss, lambd)

        def grads(p):
            self.load(p)
            return self.cost_and_grads(X, y, loss, lambd)[1]

        try:
            # where an error enters is found from the layers checked on their own
            front = _check.FrontEnd(trace_origin=False)
            report = _check.check_with(cost, original, grads, opts, front)
            if report.passed:
                return report
            self.load(original)  # (the layers run at the point itself, not a working copy)
            return self._traced(report, X, y, loss, lambd, opts)
        finally:
            self.load(original)
            for b, (update, mean, var) in zip(norms, saved, strict=True):
                b.update_stats, b.running_mean, b.running_var = update, mean, var

    def _traced(self, report: Any, X: Any, y: Any, loss: Loss, lambd: float, opts: Any) -> Any:
        """A failed ``report`` told where its error enters: the layers checked on their
        own at the inputs they received (`_isolate`), else the layer order."""
        import time

        from .. import _isolate, _trace

        state = np.random.get_state()  # (a dropout layer draws its mask)
        started = time.perf_counter()
        try:
            found = _isolate.locate(_Layers(self, X, y, loss, lambd, opts), report)
        finally:
            np.random.set_state(state)
        return _trace.searched(report, found, time.perf_counter() - started, layer_order=True)

    def predict(self, X) -> np.ndarray:
        """Class predictions: argmax of (N, C) outputs, or 0/1 for (N, 1) probabilities."""
        out = self.forward(X, training=False)
        if out.ndim == 2 and out.shape[1] > 1:
            return out.argmax(axis=1)
        return (out.reshape(-1) > 0.5).astype(np.int64)

    def accuracy(self, X, y) -> float:
        return float(np.mean(self.predict(X) == np.asarray(y).reshape(-1)))


def fit(
    model: Sequential,
    X,
    y,
    loss: Loss,
    optimizer: Any,
    epochs: int = 10,
    batch_size: int = 64,
    lambd: float = 0.0,
    seed: int = 0,
    check_gradients: bool = False,
    progress: bool | None = None,
) -> list[float]:
    """Mini-batch training; returns the mean cost of each epoch.

    With ``check_gradients=True`` the backward pass is first proven on a few
    examples (raising [`gradproof.GradientError`][gradproof.GradientError] if it is wrong).
    """
    from .._report import GradientError

    X, y = np.asarray(X), np.asarray(y)
    if len(X) != len(y):
        raise ValueError(f"X has {len(X)} examples but y has {len(y)}; give one label per row")
    if check_gradients:
        report = model.gradient_check(X[:4], y[:4], loss, lambd, progress=False)
        if not report.passed:
            raise GradientError(report)
    rng = np.random.default_rng(seed)
    history = []
    show = progress is True or (progress is None and sys.stderr.isatty())
    start = time.perf_counter()
    for epoch in range(epochs):
        order = rng.permutation(len(X))
        costs = []
        for i in range(0, len(X), batch_size):
            batch = order[i : i + batch_size]
            cost, grads = model.cost_and_grads(X[batch], y[batch], loss, lambd)
            optimizer.step(model.params(), grads)
            costs.append(cost)
        history.append(float(np.mean(costs)))
        if show:
            sys.stderr.write(
                f"\repoch {epoch + 1}/{epochs}  cost {history[-1]:.4f}  "
                f"{time.perf_counter() - start:.1f}s"
            )
    if show:
        sys.stderr.write("\n")
    return history


class _Layers:
    """A Sequential's layers as `_isolate.Parts` (layer i is ``"i"``, then ``"loss"``),
    each checked on its own at the input it received in one forward pass: its parameters
    and that input, its output weighted by fixed random cotangents (the loss: its value)."""

    def __init__(self, model: Sequential, X: Any, y: Any, loss: Loss, lambd: float, opts: Any):
        self.model, self.y, self.loss, self.lambd, self.opts = model, y, loss, lambd, opts
        self.inputs = []
        x = np.asarray(X, dtype=np.float64)
        for layer in model.layers:
            self.inputs.append(np.array(x, copy=True))
            x = layer.forward(x, training=True)
        self.inputs.append(np.array(x, copy=True))  # the loss's
        self.count = len(model.layers)

    def _index(self, name: str) -> int:
        return self.count if name == "loss" else int(name)

    def children(self, name: str) -> list[str]:
        if name:
            return []
        return ["loss", *(str(i) for i in reversed(range(self.count)))]

    def own(self, name: str) -> Any:
        report = self._own(name)
        return None if report is None else [report]

    def _own(self, name: str) -> Any:
        from .._check import check

        x = self.inputs[self._index(name)]
        if name == "loss":
            return self._own_loss(check, x)
        layer = self.model.layers[int(name)]
        saved = dict(layer.params)
        weights = np.random.default_rng(self.opts.seed).standard_normal(
            np.shape(layer.forward(x, training=True))
        )

        def load(p: dict[str, np.ndarray]) -> np.ndarray:
            layer.params.update({k: p[k] for k in saved})
            return np.asarray(layer.forward(p["input"], training=True))

        def cost(p: dict[str, np.ndarray]) -> float:
            return float(np.sum(load(p) * weights))

        def grads(p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            load(p)
            dx = layer.backward(weights)
            return {**{k: layer.grads[k] for k in saved}, "input": dx}

        try:
            return self._check_alone(check, cost, {**saved, "input": x}, grads)
        finally:
            layer.params.clear()
            layer.params.update(saved)

    def _own_loss(self, check: Any, x: np.ndarray) -> Any:
        """The loss checked on its own: its derivative with respect to the model's output."""

        def cost(p: dict[str, np.ndarray]) -> float:
            return float(self.loss.forward(p["input"], self.y))

        def grads(p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            self.loss.forward(p["input"], self.y)
            return {"input": self.loss.backward()}

        return self._check_alone(check, cost, {"input": x}, grads)

    def _check_alone(self, check: Any, cost: Any, params: dict[str, np.ndarray], grads: Any) -> Any:
        from .._policy import part_mode

        size = sum(np.size(v) for v in params.values())
        o = self.opts
        try:
            return check(
                cost,
                params,
                grads,
                tol=o.tol,
                eps=o.eps,
                mode=part_mode(size),
                seed=o.seed,
                progress=False,
            )
        except Exception:  # (it raised alone: no verdict of its own to go by)
            return None

    def upstream(self, name: str, of: str) -> bool:
        return self._index(name) < self._index(of)

    def owner(self, parameter: str) -> str | None:
        index = parameter.split(".", 1)[0]
        return index if index.isdigit() and int(index) < self.count else None

    def is_input(self, parameter: str) -> bool:
        return False

    def holds(self, part: str, parameter: str) -> bool:
        return parameter.split(".", 1)[0] == part

    def kind(self, name: str) -> str:
        if not name:
            return type(self.model).__name__
        part = self.loss if name == "loss" else self.model.layers[int(name)]
        return type(part).__name__

    def around(self, name: str) -> None:
        return None  # (its layers only chain: each is checked on its own instead)

    def called(self, name: str) -> str:
        return called(name)

    def apart(self, name: str) -> str:
        return "the model checked apart from it (up to its inputs, and from its output on)"

    def last(self) -> None:
        return None  # (the loss is a part, checked on its own)

    def unchecked(self, name: str) -> str | None:
        return None  # the layers are chained and nothing else (the L2 penalty is ours)
