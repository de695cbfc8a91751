"""Where in a layer's backward an error enters, from the intermediates a backward returns.

The layer order (`_origin.infer`) says an error enters between ``dZ{k+1}`` and ``dZk``:
in ``dAk = W{k+1}.T @ dZ{k+1}``, or in layer k's activation derivative,
``dZk = dAk * g'(Zk)``. The seeds' backward returns those intermediates beside the
parameters' gradients (``dA2``, ``dZ2``, ...), and their forward returns its cache
(``Z1, A1, W1, b1, ...``) beside the cost. With both, each of the two lines can be
recomputed from what the backward handed it and compared with what it made:

1. ``dZ{k+1}`` is vouched for: the right ``dW{k+1}`` and ``db{k+1}`` (the check found
   them right) are made from it (``dW = dZ @ A.T / m``, ``db = dZ.sum(1) / m``);
2. ``dAk`` against ``W{k+1}.T @ dZ{k+1}``: where it differs, the error is in that line;
3. ``dZk`` against ``dAk * g'(Zk)``, ``g`` the activation the cache shows
   (``Ak == g(Zk)``: ReLU, tanh, sigmoid): where it differs, the activation's
   derivative (the ReLU mask) is wrong.

A cache is read in the seeds' layouts: a flat tuple ``(Z1, A1, W1, b1, Z2, ...)``,
a list of ``((A_prev, W, b), Z)`` per layer, or a dict ``{"Z1": ..., "A1": ...}``; in
each, ``Z{k+1}`` must equal ``W{k+1} @ Ak + b{k+1}`` at the check point, or nothing is
narrowed. Anything else leaves the origin as the layer order found it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from . import _policy
from ._origin import Origin

Array = np.ndarray
# An activation: its name, the function, its derivative from (Z, A), and that in code.
_Activation = tuple[str, Callable[[Array], Array], Callable[[Array, Array], Array], str]


def _sigmoid(z: Array) -> Array:
    return 1.0 / (1.0 + np.exp(-z))


ACTIVATIONS: list[_Activation] = [
    ("ReLU", lambda z: np.maximum(z, 0.0), lambda z, a: (z > 0).astype(float), "({Z} > 0)"),
    ("tanh", np.tanh, lambda z, a: 1.0 - a**2, "(1 - {A}**2)"),
    ("sigmoid", _sigmoid, lambda z, a: a * (1.0 - a), "{A} * (1 - {A})"),
]


def narrow(
    origin: Origin,
    aside: tuple[Any, ...],
    grads: Any,
    params: Mapping[str, Array],
    analytic: Mapping[str, Array],
) -> Origin:
    """``origin`` (found from the layer order of seeds-named parameters) narrowed to the
    line of the backward where the error enters, where the cost returned its cache
    (``aside``) and ``grads`` (as given) holds the intermediates; else ``origin`` as it
    is. ``params``: the check point; ``analytic``: the gradients checked, by name."""
    if not origin.layer.isdigit() or not isinstance(grads, Mapping):
        return origin
    k = int(origin.layer)
    j = k + 1
    if f"W{j}" not in params or f"b{j}" not in params:
        return origin  # (the last layer: what its dZ should be depends on the labels)
    cache = next((c for a in aside if (c := _layers(a, params))), None)
    if cache is None or k not in cache or j not in cache:
        return origin
    d = {key: np.asarray(v, dtype=np.float64) for key, v in grads.items() if _named(key)}
    found = _lines(k, cache, d, params, analytic)
    if found is None:
        return origin
    where, evidence = found
    return dataclasses.replace(
        origin,
        where=where,
        evidence=f"{origin.evidence}; narrowed with the forward's cache and the "
        f"intermediates the backward returned: {evidence}",
    )


def _named(key: str) -> bool:
    return re.fullmatch(r"d[AZ]\d+", key) is not None


def _lines(
    k: int,
    cache: dict[int, dict[str, Array]],
    d: dict[str, Array],
    params: Mapping[str, Array],
    analytic: Mapping[str, Array],
) -> tuple[str, str] | None:
    """Where in layer ``k``'s backward the error enters, and the comparisons that show it."""
    j = k + 1
    below, above = cache[k], cache[j]
    W, b = np.asarray(params[f"W{j}"], float), np.asarray(params[f"b{j}"], float)
    A, Z = below.get("A"), above.get("Z")
    if A is None or Z is None or Z.shape != (W.shape[0], A.shape[1]):
        return None
    if not _equal(Z, W @ A + b):
        return None  # (not this network's cache, or not at the check point)
    found = _vouched(j, above, A, d, analytic)
    dA = d.get(f"dA{k}")
    if found is None or dA is None or dA.shape != A.shape:
        return None
    g = _activation(below)
    if g is None:
        return None  # (A is not g(Z): a dropout mask, a scale; its backward is not known)
    dZ_above, vouched = found
    expected = W.T @ dZ_above
    if not _equal(dA, expected):
        n = int(np.count_nonzero(~_close(dA, expected)))
        return (
            f"dA{k} = W{j}.T @ dZ{j} (the gradient layer {j} passes down to layer {k})",
            f"{vouched}; dA{k} differs from W{j}.T @ dZ{j} at {n} of {dA.size} elements",
        )
    shown = f"{vouched}; dA{k} = W{j}.T @ dZ{j}"
    return _activation_line(k, (below, g), dA, d.get(f"dZ{k}"), shown)


def _vouched(
    j: int, above: dict[str, Array], A: Array, d: dict[str, Array], analytic: Mapping[str, Array]
) -> tuple[Array, str] | None:
    """Layer ``j``'s ``dZ`` (returned, or made from its ``dA`` as its backward would),
    where it makes the right ``dWj`` and ``dbj`` (``A``: its input), and that in words."""
    dZ, made_from = d.get(f"dZ{j}"), f"dZ{j}"
    g = _activation(above)
    if dZ is None and f"dA{j}" in d and g is not None:
        # (a backward that returns only the dA's, as the seeds' L-layer one does)
        dZ = d[f"dA{j}"] * g[2](above["Z"], above["A"])
        made_from = f"dZ{j} = dA{j} * {g[3].format(Z=f'Z{j}', A=f'A{j}')}"
    if dZ is None or dZ.shape != above["Z"].shape:
        return None
    m = dZ.shape[1]
    dW, db = analytic.get(f"W{j}"), analytic.get(f"b{j}")
    if dW is None or db is None:
        return None
    if not (
        _equal(np.asarray(dW), dZ @ A.T / m)
        and _equal(np.asarray(db), dZ.sum(axis=1, keepdims=True) / m)
    ):
        return None
    return dZ, f"{made_from} makes the right dW{j} and db{j}"


def _activation_line(
    k: int, layer: tuple[dict[str, Array], _Activation], dA: Array, dZ: Array | None, shown: str
) -> tuple[str, str] | None:
    """Where ``dAk`` is right (``shown``): layer ``k``'s activation derivative, where
    ``dZk`` differs from ``dAk * g'(Zk)`` (or is not returned to compare); ``layer``: its
    cache and the activation the cache shows."""
    below, (name, _, derivative, code) = layer
    mask = code.format(Z=f"Z{k}", A=f"A{k}")
    line = f"dZ{k} = dA{k} * {mask}"
    if dZ is None or dZ.shape != dA.shape:
        return (
            f"layer {k}'s {name} derivative ({line}), after dA{k}",
            f"{shown} holds (dZ{k} is not returned to compare)",
        )
    Z = below["Z"]
    kinks = Z == 0 if name == "ReLU" else np.zeros(Z.shape, bool)  # (either slope is right)
    wrong = ~_close(dZ, dA * derivative(Z, below["A"])) & ~kinks
    if not wrong.any():
        return None
    return (
        f"layer {k}'s {name} derivative, {line}",
        f"{shown} holds; dZ{k} differs from dA{k} * {mask} at {int(wrong.sum())} of "
        f"{dZ.size} elements",
    )


def _close(x: Array, y: Array) -> Array:
    """Elementwise agreement to round-off, relative to the larger array's scale."""
    scale = max(float(np.max(np.abs(x), initial=0.0)), float(np.max(np.abs(y), initial=0.0)))
    return np.asarray(np.abs(x - y) <= _policy.RECOMPUTED_RTOL * max(scale, np.finfo(float).tiny))


def _equal(x: Array, y: Array) -> bool:
    return x.shape == y.shape and bool(_close(x, y).all())


def _activation(layer: dict[str, Array]) -> _Activation | None:
    """The activation the cache shows for a layer (``A == g(Z)``), or ``None``."""
    Z, A = layer.get("Z"), layer.get("A")
    if Z is None or A is None or Z.shape != A.shape:
        return None
    return next((g for g in ACTIVATIONS if _equal(A, g[1](Z))), None)


def _layers(cache: Any, params: Mapping[str, Array]) -> dict[int, dict[str, Array]]:
    """A cache in one of the seeds' layouts, as ``{layer: {"Z": ..., "A": ...}}`` (its
    ``A`` the layer's output; layer 0's the input, where the cache has it); empty where
    it is none of them."""
    if isinstance(cache, Mapping):
        out: dict[int, dict[str, Array]] = {}
        for key, value in cache.items():
            found = re.fullmatch(r"([ZA])(\d+)", str(key))
            if found and isinstance(value, np.ndarray):
                out.setdefault(int(found[2]), {})[found[1]] = np.asarray(value, float)
        return out
    if not isinstance(cache, (tuple, list)) or not cache:
        return {}
    if all(_linear_cache(item) for item in cache):  # [((A_prev, W, b), Z), ...]
        out = {}
        for layer, ((A_prev, _, _), Z) in enumerate(cache, start=1):
            out.setdefault(layer - 1, {})["A"] = np.asarray(A_prev, float)
            out.setdefault(layer, {})["Z"] = np.asarray(Z, float)
        return out
    if len(cache) % 4 == 0 and all(isinstance(x, np.ndarray) for x in cache):
        out = {}
        for layer in range(1, len(cache) // 4 + 1):  # (Z1, A1, W1, b1, Z2, ...)
            Z, A, W, _ = cache[4 * (layer - 1) : 4 * layer]
            weight = params.get(f"W{layer}")
            if weight is None or np.shape(weight) != W.shape or Z.shape != A.shape:
                return {}
            out[layer] = {"Z": np.asarray(Z, float), "A": np.asarray(A, float)}
        return out
    return {}


def _linear_cache(item: Any) -> bool:
    return (
        isinstance(item, (tuple, list))
        and len(item) == 2
        and isinstance(item[0], (tuple, list))
        and len(item[0]) == 3
        and isinstance(item[1], np.ndarray)
    )
