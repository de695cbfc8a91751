"""Checking what JAX's ``jax.grad`` computes, custom ``custom_vjp``/``custom_jvp`` rules included.

Example::

    import jax.numpy as jnp, gradproof.jax as gpj
    params = {"w": jnp.array([0.5, -1.0]), "b": jnp.array(0.1)}
    print(gpj.check(lambda p: jnp.sum(jnp.tanh(p["w"]) + p["b"]), params))

The check runs in float64 (inside ``jax.enable_x64``, so the caller's
setting is left alone) on copies of the parameters; evaluations are jitted
and batched with ``jax.vmap``. JAX is imported only when this module is used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from . import _adapter
from ._adapter import BATCH_ELEMENTS
from ._errors import GradientSpecError
from ._options import options
from ._report import Report


def _jax():
    try:
        import jax
        import jax.numpy as jnp
    except ImportError as exc:
        raise ImportError("gradproof.jax needs JAX: pip install 'gradproof[jax]'") from exc
    return jax, jnp


def _x64(jax):
    if hasattr(jax, "enable_x64"):
        return jax.enable_x64(True)
    from jax.experimental import enable_x64  # older JAX

    return enable_x64()


def check(fn: Callable[..., Any], params: Any, *args: Any, **check_options: Any) -> Report:
    """Check ``jax.grad(fn)`` at ``params`` (a pytree) against finite differences.

    Args:
        fn: ``fn(params, *args)`` returning the cost. A non-scalar output ``y``
            is reduced to ``sum(y * r)`` with a fixed random ``r`` (seeded by
            ``seed``), which checks the backward pass for that cotangent.
        params: a pytree of arrays; leaves are named by path (``"layers.0.W"``).
        args: further arguments for ``fn``, held fixed.
        check_options: as for :func:`gradproof.check`.

    Returns:
        A :class:`gradproof.Report`, by leaf name.
    """
    jax, _ = _jax()
    opts = options("gradproof.jax.check", **check_options)
    with _x64(jax):
        checker = _Checker(jax, fn, params, args, opts.seed)
        return _adapter.run(checker, opts)


def _key_name(key: Any) -> str:
    for attr in ("key", "idx", "name"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


class _Checker:
    def __init__(self, jax, fn, params, args, seed):
        import jax.numpy as jnp

        self.jax, self.jnp, self.fn, self.args, self.seed = jax, jnp, fn, args, seed
        paths_leaves, self.treedef = jax.tree_util.tree_flatten_with_path(params)
        if not paths_leaves:
            raise GradientSpecError("params holds no arrays to check")
        self.names = [".".join(_key_name(k) for k in path) or "theta" for path, _ in paths_leaves]
        if len(set(self.names)) != len(self.names):
            raise GradientSpecError(
                "two leaves of params have the same path name; use distinct keys"
            )
        leaves = [leaf for _, leaf in paths_leaves]
        for name, leaf in zip(self.names, leaves, strict=True):
            if not jnp.issubdtype(jnp.asarray(leaf).dtype, jnp.floating):
                raise GradientSpecError(
                    f"leaf {name!r} has dtype {jnp.asarray(leaf).dtype}; "
                    "only float leaves have gradients"
                )
        self.low = sorted(
            {str(np.asarray(x).dtype) for x in leaves if np.asarray(x).dtype != np.float64}
        )
        self.params = {
            n: np.array(x, dtype=np.float64) for n, x in zip(self.names, leaves, strict=True)
        }
        self.shapes = {n: a.shape for n, a in self.params.items()}
        self.projection = None
        self._scalar = jax.jit(self._scalar_of)
        self._vmapped: dict[tuple[str, int], Any] = {}

    def notes(self) -> list[str]:
        if not self.low:
            return []
        return [f"params are {'/'.join(self.low)}: the check ran in float64 on copies"]

    def _reduce(self, out):
        jnp = self.jnp
        out = jnp.asarray(out)
        if out.size == 1:
            return out.reshape(())
        if self.projection is None or self.projection.shape != out.shape:
            self.projection = np.random.default_rng(self.seed).standard_normal(out.shape)
        return jnp.sum(out * self.projection)

    def _scalar_of(self, leaves):
        return self._reduce(
            self.fn(self.jax.tree_util.tree_unflatten(self.treedef, leaves), *self.args)
        )

    def _leaves(self, arrays):
        return [self.jnp.asarray(arrays[n]) for n in self.names]

    def analytic(self) -> dict[str, np.ndarray]:
        grads = self.jax.grad(self._scalar_of)(self._leaves(self.params))
        return {n: np.asarray(g, dtype=np.float64) for n, g in zip(self.names, grads, strict=True)}

    def cost(self, arrays: dict[str, np.ndarray]) -> float:
        return float(self._scalar(self._leaves(arrays)))

    def batched(self, name: str, flat: np.ndarray, coords: list[int], values: list[list[float]]):
        size = max(1, min(len(coords), BATCH_ELEMENTS // max(flat.size, 1), 512))
        return [self._run(name, flat, coords, v, size) for v in values]

    def _run(self, name, flat, coords, values, size) -> np.ndarray:
        jax, jnp = self.jax, self.jnp
        position = self.names.index(name)
        key = (name, size)
        if key not in self._vmapped:

            def one(leaf, others):
                leaves = [*others[:position], leaf.reshape(self.shapes[name]), *others[position:]]
                return self._scalar_of(leaves)

            self._vmapped[key] = jax.jit(jax.vmap(one, in_axes=(0, None)))
        others = [jnp.asarray(self.params[n]) for n in self.names if n != name]
        out = []
        for start in range(0, len(coords), size):
            idx = np.asarray(coords[start : start + size])
            batch = np.broadcast_to(flat, (size, flat.size)).copy()
            rows = np.arange(idx.size)
            batch[rows, idx] = values[start : start + size]
            # a short last chunk is padded to the compiled batch size
            out.append(np.asarray(self._vmapped[key](jnp.asarray(batch), others))[: idx.size])
        return np.concatenate(out)
