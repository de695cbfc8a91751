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

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import _adapter
from ._adapter import BATCH_ELEMENTS
from ._errors import GradientSpecError
from ._options import options
from ._report import GradientError, Report


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


def check(
    fn: Callable[..., Any],
    params: Any,
    *args: Any,
    modes: Sequence[str] = ("rev",),
    order: int = 1,
    **check_options: Any,
) -> Report:
    """Check what JAX computes for ``fn(params, *args)`` against finite differences.

    Args:
        fn: ``fn(params, *args)`` returning the cost. A non-scalar output ``y``
            is reduced to ``sum(y * r)`` with a fixed random ``r`` (seeded by
            ``seed``), which checks the backward pass for that cotangent; a
            tuple of outputs is checked one output at a time, each named.
        params: a pytree of arrays; leaves are named by path (``"layers.0.W"``).
        args: further arguments for ``fn``, held fixed.
        modes: ``"rev"`` checks ``jax.grad`` (VJPs, ``custom_vjp``); ``"fwd"``
            checks forward mode (``jax.jvp``, ``custom_jvp``); both also
            compare the two modes with each other.
        order: 2 checks second derivatives too (``jax.grad`` of the
            gradient against finite differences of the gradient), named
            ``"W [order 2]"``.
        check_options: as for :func:`gradproof.check`.

    Returns:
        A :class:`gradproof.Report`, by leaf name.
    """
    jax, _ = _jax()
    modes = _adapter.validate_modes("gradproof.jax.check", modes, order)
    opts = options("gradproof.jax.check", **check_options)
    with _x64(jax):
        return _check_all(jax, fn, params, args, opts, modes, order)


def _check_all(jax, fn, params, args, opts, modes, order) -> Report:
    """Every requested check (outputs × modes × orders) of one function, as one report."""

    def make(output: int | None, kind: str) -> _Checker:
        return _Checker(jax, fn, params, args, opts.seed, output, kind)

    return _adapter.check_all(make, opts, modes, order, JAX_CONVENTION)


def check_grads(
    f: Callable[..., Any],
    args: Sequence[Any],
    order: int,
    modes: Sequence[str] = ("fwd", "rev"),
    atol: float | None = None,
    rtol: float | None = None,
    eps: float | None = None,
) -> None:
    """A drop-in for ``jax.test_util.check_grads``: the same call, gradproof's verdict.

    ``f(*args)``'s derivatives up to ``order`` (1 or 2) in ``modes`` are
    checked against finite differences. ``eps``, ``atol`` and ``rtol``, when
    given, are honoured: ``eps`` as the step, the tolerances as an extra bound
    below which a disagreement is accepted.

    Raises:
        gradproof.GradientError: (an ``AssertionError``, as ``check_grads``
            raises) whose message is gradproof's report: which argument,
            which element, which mode and order, and why.
    """
    jax, _ = _jax()
    if order not in (1, 2):
        raise GradientSpecError(f"check_grads: order must be 1 or 2, got {order!r}")
    modes = _adapter.validate_modes("gradproof.jax.check_grads", modes, order)
    opts = options("gradproof.jax.check_grads", eps=eps, atol=atol, rtol=rtol)
    named = {f"arg{i}": a for i, a in enumerate(args)}  # named as check_grads' arguments
    with _x64(jax):
        report = _check_all(jax, lambda p: f(*p.values()), named, (), opts, modes, order)
    if not report.passed:
        raise GradientError(report)


JAX_CONVENTION = (
    "for a real loss L of complex z, jax.grad gives dL/dRe(z) - i dL/dIm(z) (the conjugate "
    "of PyTorch's convention): conjugate what the rule returns"
)


def _arrays(outputs: tuple | list) -> list[Any]:
    """The numeric arrays among a function's outputs (auxiliary data such as dicts left out)."""
    return [o for o in outputs if hasattr(o, "dtype") and np.dtype(o.dtype).kind in "fc"]


def _key_name(key: Any) -> str:
    for attr in ("key", "idx", "name"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


class _Checker:
    """Float64 copies of the leaves, the cost over NumPy arrays, JAX's derivative, and vmap."""

    def __init__(self, jax, fn, params, args, seed, output=None, kind="rev"):
        import jax.numpy as jnp

        self.jax, self.jnp, self.fn, self.args, self.seed = jax, jnp, fn, args, seed
        self.output = output  # which output of a tuple is checked
        self.kind = kind  # "rev", "fwd" or "order2": which derivative is the analytic side
        self.last_analytic: dict[str, np.ndarray] = {}
        self.magnitude = 0.0  # order 2: the size of the terms of <grad f, w> (set by analytic)
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
            dtype = jnp.asarray(leaf).dtype
            if not (
                jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.complexfloating)
            ):
                raise GradientSpecError(
                    f"leaf {name!r} has dtype {dtype}; only float and complex leaves have gradients"
                )
        wide = (np.float64, np.complex128)
        self.low = sorted(
            {str(np.asarray(x).dtype) for x in leaves if np.asarray(x).dtype not in wide}
        )
        # A complex leaf is checked as its real and imaginary parts ("z.real", "z.imag").
        self.leaf_names = self.names
        self.complex = {n for n, x in zip(self.names, leaves, strict=True) if np.iscomplexobj(x)}
        self.params = {}
        for n, x in zip(self.names, leaves, strict=True):
            value = np.asarray(x)
            if n in self.complex:
                self.params[f"{n}.real"] = np.array(value.real, dtype=np.float64)
                self.params[f"{n}.imag"] = np.array(value.imag, dtype=np.float64)
            else:
                self.params[n] = np.array(value, dtype=np.float64)
        self.names = list(self.params)
        self.shapes = {n: a.shape for n, a in self.params.items()}
        self.projection = None
        out = fn(
            jax.tree_util.tree_unflatten(self.treedef, self._assemble(self._leaves(self.params))),
            *args,
        )
        self.outputs = len(_arrays(out)) if isinstance(out, (tuple, list)) else 1
        # order 2 checks x -> <grad f(x), w>: its gradient is the Hessian times w.
        generator = np.random.default_rng(_adapter.weight_seed(seed, 1))
        self.hessian_weights = [generator.standard_normal(self.shapes[n]) for n in self.names]
        self._scalar = jax.jit(self._objective)
        self._vmapped: dict[tuple[str, int], Any] = {}

    def notes(self) -> list[str]:
        if not self.low:
            return []
        return [f"params are {'/'.join(self.low)}: the check ran in float64 on copies"]

    def _reduce(self, out):
        jnp = self.jnp
        out = jnp.asarray(out)
        if jnp.iscomplexobj(out):  # a complex output counts by its real and imaginary parts
            out = jnp.stack([out.real, out.imag], axis=-1)
        if out.size == 1:
            return out.reshape(())
        if self.projection is None or self.projection.shape != out.shape:
            generator = np.random.default_rng(_adapter.weight_seed(self.seed, 0))
            self.projection = generator.standard_normal(out.shape)
        return jnp.sum(out * self.projection)

    def _assemble(self, parts):
        """The pytree's leaves from the checked parts: complex leaves put back together."""
        by_name = dict(zip(self.names, parts, strict=True))
        return [
            self.jax.lax.complex(by_name[f"{n}.real"], by_name[f"{n}.imag"])
            if n in self.complex
            else by_name[n]
            for n in self.leaf_names
        ]

    def _scalar_of(self, parts):
        leaves = self._assemble(parts)
        out = self.fn(self.jax.tree_util.tree_unflatten(self.treedef, leaves), *self.args)
        if isinstance(out, (tuple, list)):  # e.g. (cost, aux): the arrays are the outputs
            out = _arrays(out)[self.output or 0]
        return self._reduce(out)

    def _objective(self, leaves):
        """The function whose gradient is checked: the cost, or ``<grad cost, w>`` (order 2)."""
        if self.kind != "order2":
            return self._scalar_of(leaves)
        grads = self.jax.grad(self._scalar_of)(leaves)
        return sum(self.jnp.sum(g * w) for g, w in zip(grads, self.hessian_weights, strict=True))

    def _leaves(self, arrays):
        return [self.jnp.asarray(arrays[n]) for n in self.names]

    def analytic(self) -> dict[str, np.ndarray]:
        """The derivative under check: reverse mode, forward mode, or the gradient's gradient."""
        leaves = self._leaves(self.params)
        if self.kind == "fwd":
            try:
                grads = self.jax.jacfwd(self._objective)(leaves)
            except (TypeError, NotImplementedError) as exc:  # a custom_vjp, a missing rule
                raise GradientSpecError(
                    f"JAX cannot differentiate this function in forward mode ({exc}); "
                    "check it with modes=('rev',)"
                ) from exc
        else:
            try:
                grads = self.jax.grad(self._objective)(leaves)
            except NotImplementedError as exc:  # e.g. igamma's derivative in its first argument
                instead = ": check it with order=1" if self.kind == "order2" else ""
                which = "second derivative" if self.kind == "order2" else "derivative"
                raise GradientSpecError(
                    f"JAX does not implement this function's {which} ({exc}){instead}"
                ) from exc
        if self.kind == "order2":  # <grad f, w> may cancel, its terms do not
            first = self.jax.grad(self._scalar_of)(leaves)
            pairs = zip(first, self.hessian_weights, strict=True)
            self.magnitude = float(sum(np.sum(np.abs(np.asarray(g) * w)) for g, w in pairs))
        result = {
            n: np.asarray(g, dtype=np.float64) for n, g in zip(self.names, grads, strict=True)
        }
        self.last_analytic = result
        return result

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
                return self._objective(leaves)

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
