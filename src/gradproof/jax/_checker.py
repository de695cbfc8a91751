"""`Checker`: the adapter `_adapter.check_all` runs: float64 copies of the leaves, the cost,
JAX's derivatives (reverse, forward, higher order), and evaluations batched by `jax.vmap`
in one program per order."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import _adapter, _policy
from .._adapter import BATCH_ELEMENTS, Derivative
from .._errors import GradientSpecError
from ._intake import Call, arrays_of, finite_mask, first_line, path_name


@dataclass
class Shared:
    """What the checkers of one call share: XLA programs by what they compute (reverse
    and forward mode evaluate the same cost; an order-k check needs the gradient an order
    lower), batches of cost values by a digest of the points (both modes are checked
    against the same finite differences of the same, pure, cost), and, by output, every
    derivative the call checks at the check point, from one program (``derivatives``).

    A compilation costs tens of milliseconds, far more than running a small function:
    a call that checks both modes to order 2 compiles one program for its derivatives
    and one per order for its cost values, not one per checker for each."""

    modes: tuple[str, ...] = ("rev",)
    order: int = 1
    seed: int = 0  # the check's seed (its options'): the output's weights, the directions
    batching: bool = False  # the check evaluates coordinates in batches (full or sample mode)
    # The function's outputs are finite at the check point, as called (check_grads looked):
    # no float64 evaluation outside a program is needed to find the outputs left out.
    finite: bool = False
    programs: dict[tuple, Any] = field(default_factory=dict)
    values: dict[tuple, list[np.ndarray]] = field(default_factory=dict)
    derivatives: dict[Any, dict[tuple[int, bool], list[Any]]] = field(default_factory=dict)
    # by (output, depth): why jax.vmap could not batch that objective
    unbatched: dict[tuple[int | None, int], str] = field(default_factory=dict)


# A check of at most SMALL_PARAMS float64 elements in all is evaluated by one batched
# program over all of them, its single evaluations included while a batch takes at most
# ROWS_SECONDS (a row of a batch is cheaper than a compilation); a batch holds at most
# MAX_BATCH rows.
SMALL_PARAMS = 512


ROWS_SECONDS = 0.01


MAX_BATCH = 512


class Checker:
    """Float64 copies of the leaves, the cost over NumPy arrays, JAX's derivative, and vmap.

    ``kind`` is the `Derivative` under check: ``REV``, ``FWD``, or ``ORDER``, the
    gradient of ``x -> <grad g(x), w>`` where ``g`` is the objective one ``depth`` lower
    (depth 2: the Hessian times ``w``; depth 3: the third derivative along two ``w``).
    ``native``: the function runs in its leaves' own dtypes (the caller's JAX config);
    ``forward_only``: derivatives inside the objective are taken in forward mode.
    """

    def __init__(
        self,
        jax: Any,
        call: Call,
        shared: Shared,
        output: int | None = None,
        kind: Derivative = Derivative.REV,
        depth: int = 1,
    ):
        import jax.numpy as jnp

        fn, params, native = call.fn, call.params, call.native
        self.jax, self.jnp, self.fn, self.args = jax, jnp, fn, call.args
        self.seed = shared.seed
        self.output = output  # which output of a tuple is checked
        self.kind = Derivative(kind)  # (a caller's "rev" is Derivative.REV)
        self.depth = depth if self.kind is Derivative.ORDER else 1
        self.native = native
        # derivatives inside the objective are taken in forward mode where only it is checked
        self.forward_only = tuple(shared.modes) == ("fwd",)
        self.last_analytic: dict[str, np.ndarray] = {}
        self.magnitude = 0.0  # order >= 2: the size of the terms of <grad g, w> (by analytic)
        self.treedef, values = _checked_leaves(jax, params)
        self.leaf_names = list(values)
        wide = (np.float64, np.complex128)
        self.low = sorted({str(v.dtype) for v in values.values() if v.dtype not in wide})
        # A complex leaf is checked as its real and imaginary parts ("z.real", "z.imag").
        self.params, self.complex = _adapter.real_parts(values)
        # native: the dtype each checked part is passed in (a complex leaf's parts: real)
        self.dtypes: dict[str, Any] = {
            part: _policy.real_dtype(v.dtype)
            for n, v in values.items()
            for part in ((f"{n}.real", f"{n}.imag") if n in self.complex else (n,))
        }
        self.names = list(self.params)
        self.shapes = {n: a.shape for n, a in self.params.items()}
        # A small check: float64 parts of SMALL_PARAMS elements in all, evaluated by one
        # batched program over all of them (_rows), its single evaluations included.
        self.small = not native and sum(a.size for a in self.params.values()) <= SMALL_PARAMS
        self.projection = None
        self.shared = shared
        out = self._outputs(shapes_only=not call.dropin or shared.finite)
        count = len(arrays_of(out)) if isinstance(out, (tuple, list)) else 1
        self.output_indices: list[int | None] = [None] if count == 1 else [*range(count)]
        # check_grads' outputs that are nan or infinite at the check point are left out
        # (nan matches nan there), and so are the derivatives that are not finite with them
        self.finite_mask = _left_out(out, output) if call.dropin and not shared.finite else None
        self.left_out: dict[str, np.ndarray] = {}  # by part: derivatives left out with them
        # order k checks x -> <grad g(x), w>: its gradient is the k-th derivative along ws.
        # (Level 1's weights keep stream 1, so order-2 checks draw what they always drew.)
        # (up to the call's highest order: one program computes every order's derivative)
        self.level_weights = [
            [w[n] for n in self.names]
            for w in _adapter.level_weights(self.seed, self.shapes, max(self.depth, shared.order))
        ]
        self.compiled = shared.programs  # XLA compiles each program once per call
        self.found_unbatched = False  # this checker found that vmap cannot batch the cost
        self.rows_seconds = 0.0  # how long the last batch of a small check took to run

    def _outputs(self, shapes_only: bool) -> Any:
        """The function's outputs at the check point: their shapes (``jax.eval_shape``),
        where that is all that is needed and can be found, else their values."""
        jax, fn, args = self.jax, self.fn, self.args
        if shapes_only:

            def outputs_of(leaves):
                # (eval_shape would turn a Python number beside the outputs into an array:
                # it is not one of them, as it is not when the function runs)
                out = fn(jax.tree_util.tree_unflatten(self.treedef, leaves), *args)
                return arrays_of(out) if isinstance(out, (tuple, list)) else out

            try:
                return jax.eval_shape(outputs_of, self._assemble(self._leaves(self.params)))
            except Exception:  # (what fn raises is reported where it is evaluated)
                pass
        leaves = self._assemble([self.jnp.asarray(x) for x in self._leaves(self.params)])
        return fn(jax.tree_util.tree_unflatten(self.treedef, leaves), *args)

    @property
    def vmap_failed(self) -> str | None:
        """Why ``jax.vmap`` could not batch this objective (shared by the call's checkers:
        each mode evaluates the same one), or ``None``."""
        return self.shared.unbatched.get((self.output, self.depth))

    def _unbatched(self, exc: BaseException) -> None:
        self.shared.unbatched[(self.output, self.depth)] = first_line(exc)
        self.found_unbatched = True

    def notes(self) -> list[str]:
        notes = []
        if self.low and not self.native:
            notes.append(f"params are {'/'.join(self.low)}: the check ran in float64 on copies")
        if self.finite_mask is not None:
            bad = int(self.finite_mask.size - np.count_nonzero(self.finite_mask))
            derivatives = "".join(
                f"; {int(m.sum())} of {n}'s elements, whose derivative is not finite with them"
                for n, m in self.left_out.items()
            )
            notes.append(
                f"{bad} output element{'s' * (bad != 1)} not finite at the check point (nan "
                f"or inf) left out, as check_grads leaves them{derivatives}"
            )
        if self.found_unbatched and self.vmap_failed:
            why = self.vmap_failed
            notes.append(f"evaluations ran one by one: jax.vmap could not batch the cost ({why})")
        return notes

    def _wide(self, x):
        """``x`` explicitly in the widest float the configuration computes in (allowed
        under any dtype promotion mode), for the reductions the check adds."""
        jnp = self.jnp
        wide = jnp.complex128 if jnp.iscomplexobj(x) else jnp.float64
        if not self.jax.config.jax_enable_x64:
            wide = jnp.complex64 if jnp.iscomplexobj(x) else jnp.float32
        return jnp.asarray(x).astype(wide)

    def _reduce(self, out):
        jnp = self.jnp
        out = self._wide(out)
        if self.finite_mask is not None and self.finite_mask.shape == out.shape:
            out = jnp.where(self.finite_mask, out, 0)
        if jnp.iscomplexobj(out):  # a complex output counts by its real and imaginary parts
            out = jnp.stack([out.real, out.imag], axis=-1)
        if out.size == 1:
            return out.reshape(())
        if self.projection is None or self.projection.shape != out.shape:
            generator = np.random.default_rng(_adapter.weight_seed(self.seed, 0))
            self.projection = generator.standard_normal(out.shape)
        return jnp.sum(out * jnp.asarray(self.projection, dtype=out.dtype))

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
            out = arrays_of(out)[self.output or 0]
        return self._reduce(out)

    def _gradient(self, g, forward: bool | None = None):
        """``x -> grad g(x)`` over the list of parts: reverse mode, or forward mode
        (``forward``; by default where only forward mode is checked)."""
        forward = self.forward_only if forward is None else forward
        return self.jax.jacfwd(g) if forward else self.jax.grad(g)

    def _level(self, depth: int):
        """The objective at ``depth`` (`_adapter.lifted`: the cost, then
        ``x -> <grad g(x), w>`` per level), its gradients taken in the widest float the
        configuration computes in, those of outputs left out set to 0."""
        jnp = self.jnp

        def gradient(g, level: int):
            grad = self._gradient(g)

            def wide(leaves):
                grads = [self._wide(x) for x in grad(leaves)]
                if self.finite_mask is not None:  # the derivatives of outputs left out, too
                    grads = [jnp.where(jnp.isfinite(x), x, 0) for x in grads]
                return grads

            return wide

        def inner(grads, weights, level: int):
            return sum(jnp.sum(g * w) for g, w in zip(grads, weights, strict=True))

        return _adapter.lifted(self._scalar_of, gradient, inner, self.level_weights, depth)

    def _objective(self, leaves):
        """The function whose gradient is checked: the cost, or ``<grad g, w>`` (order)."""
        return self._level(self.depth)(leaves)

    def _leaves(self, arrays) -> list[np.ndarray]:
        """The parts as a program takes them: NumPy arrays (a jitted program transfers
        them itself; ``jnp.asarray`` would compile a transfer of its own per shape), in
        their own dtypes where the check runs in them."""
        if not self.native:
            return [np.asarray(arrays[n]) for n in self.names]
        return [np.asarray(arrays[n]).astype(self.dtypes[n]) for n in self.names]

    def analytic(self) -> dict[str, np.ndarray]:
        """The derivative under check: reverse mode, forward mode, or of a higher order.

        Every derivative the call checks at the check point is computed by one XLA
        program, shared by the call's checkers (`_derivatives`); where that
        program cannot be built, each derivative is compiled on its own, and the one
        JAX cannot take raises for its own check."""
        if self.kind is Derivative.FWD:
            try:
                grads = self._derivative(self.depth, forward=True)
            except (TypeError, NotImplementedError) as exc:  # a custom_vjp, a missing rule
                raise GradientSpecError(
                    f"JAX cannot differentiate this function in forward mode ({exc}); "
                    "check it with modes=('rev',)"
                ) from exc
        else:
            try:
                grads = self._derivative(self.depth)
            except NotImplementedError as exc:  # e.g. igamma's derivative in its first argument
                instead = (
                    f": check it with order={self.depth - 1}"
                    if self.kind is Derivative.ORDER
                    else ""
                )
                which = {1: "derivative", 2: "second derivative"}.get(
                    self.depth, f"derivative of order {self.depth}"
                )
                raise GradientSpecError(
                    f"JAX does not implement this function's {which} ({exc}){instead}"
                ) from exc
        if self.kind is Derivative.ORDER:  # <grad g, w> may cancel, its terms do not
            first = self._derivative(self.depth - 1)
            pairs = zip(first, self.level_weights[self.depth - 2], strict=True)
            self.magnitude = float(
                sum(np.sum(np.abs(np.asarray(g, dtype=np.float64) * w)) for g, w in pairs)
            )
        result = {n: self._analytic_array(g) for n, g in zip(self.names, grads, strict=True)}
        if self.finite_mask is not None:  # derivatives of the outputs left out: left out
            for n, g in result.items():
                bad = ~np.isfinite(g.astype(np.float64))
                if bad.any():
                    self.left_out[n] = bad
                    result[n] = np.where(bad, 0, g).astype(g.dtype)
        self.last_analytic = result
        return result

    def _derivative(self, depth: int, forward: bool | None = None) -> list[Any]:
        """``grad g`` at the check point for the objective ``g`` at ``depth`` (in forward
        mode with ``forward``; by default where only forward mode is checked)."""
        forward = self.forward_only if forward is None else forward
        found = self._derivatives().get((depth, forward))
        if found is not None:
            return found
        key = ("gradient", self.output, depth, forward)
        if key not in self.compiled:
            self.compiled[key] = self.jax.jit(self._gradient(self._level(depth), forward))
        return self.compiled[key](self._leaves(self.params))

    def _derivatives(self) -> dict[tuple[int, bool], list[Any]]:
        """Every derivative the call checks for this output, by (depth, forward), from
        one program: reverse and forward mode's gradients and each higher order's.
        Empty where that program cannot be built or run (a custom_vjp in forward mode,
        a derivative JAX does not implement): each is then taken on its own."""
        key = (self.output, self.native)
        if key not in self.shared.derivatives:
            wanted = [(1, mode == "fwd") for mode in self.shared.modes]
            wanted += [(d, self.forward_only) for d in range(2, self.shared.order + 1)]
            wanted = list(dict.fromkeys(wanted))

            def every(leaves):
                return [self._gradient(self._level(d), fwd)(leaves) for d, fwd in wanted]

            try:
                values = self._jit(every)(self._leaves(self.params))
            except Exception:  # (each derivative, taken alone, raises for its own check)
                values = None
            found = {} if values is None else dict(zip(wanted, values, strict=True))
            self.shared.derivatives[key] = found
        return self.shared.derivatives[key]

    def _analytic_array(self, g) -> np.ndarray:
        """JAX's derivative as NumPy: float64, or its own dtype where it ran in a lower
        precision (its round-off is then allowed for)."""
        g = np.asarray(g)
        if self.native and g.dtype.itemsize < 8 and not np.iscomplexobj(g):
            return g
        return np.asarray(g, dtype=np.float64)

    def cost(self, arrays: dict[str, np.ndarray]) -> float:
        """The objective at ``arrays``: a small check's, as one row of the batched
        program its sweeps compile anyway (`_rows`), while a batch runs fast
        (a batch of rows costs less than compiling a program of its own)."""
        quick = self.rows_seconds <= ROWS_SECONDS
        if self.shared.batching and self.small and self.vmap_failed is None and quick:
            row = np.concatenate([np.ravel(arrays[n]) for n in self.names])
            try:
                return float(self._rows(row[None])[0])
            except Exception as exc:  # the cost's own error raises again, alone, below
                value = self._alone(arrays)
                self._unbatched(exc)
                return value
        return self._alone(arrays)

    def _alone(self, arrays: dict[str, np.ndarray]) -> float:
        """The objective at ``arrays``, by a program of its own."""
        key = ("cost", self.output, self.depth)
        if key not in self.compiled:
            self.compiled[key] = self.jax.jit(self._objective)
        return float(self.compiled[key](self._leaves(arrays)))

    def batched(self, name: str, flat: np.ndarray, coords: list[int], values: list[list[float]]):
        """Cost values for each point set, remembered for the call: reverse and forward mode
        are checked against the same finite differences of the same (pure) cost, which
        the second check then does not evaluate again."""
        points = hashlib.blake2b(np.ascontiguousarray(flat, dtype=np.float64).tobytes())
        points.update(np.asarray(coords, dtype=np.int64).tobytes())
        points.update(np.asarray(values, dtype=np.float64).tobytes())
        key = (self.output, self.depth, name, points.digest())
        if key not in self.shared.values:
            self.shared.values[key] = self._evaluated(name, flat, coords, values)
        return [v.copy() for v in self.shared.values[key]]

    def _evaluated(self, name, flat, coords, values) -> list[np.ndarray]:
        """Cost values for each point set: ``jax.vmap`` batches, or one by one where a
        primitive's batching rule fails on what runs unbatched (for the rest of the check)."""
        if self.vmap_failed is None:
            try:
                return [self._run(name, flat, coords, v) for v in values]
            except Exception as exc:
                if not _adapter.runs_alone(self, name, flat, coords, values):
                    raise  # the cost's own error, which one by one raises too
                self._unbatched(exc)
        return [_adapter.one_by_one(self, name, flat, coords, v) for v in values]

    def _jit(self, fn):
        """``jax.jit`` of ``fn``: for a small check, compiled with XLA's backend optimization
        off (a third less time compiling, where running takes microseconds)."""
        if self.small:
            return self.jax.jit(fn, compiler_options={"xla_backend_optimization_level": 0})
        return self.jax.jit(fn)

    def _rows(self, rows: np.ndarray) -> np.ndarray:
        """The objective at each row of ``rows``, every part's elements side by side (in
        ``names`` order): one program, whichever parts move, at a fixed batch size (a short
        batch padded); ``rows_seconds`` is how long its last batch took, once compiled."""
        jax = self.jax
        size = min(rows.shape[1], MAX_BATCH)
        key = ("rows", self.output, self.depth, size)
        first = key not in self.compiled
        if first:
            bounds = np.cumsum([0] + [self.params[n].size for n in self.names])

            def one(row):
                return self._objective(
                    [
                        row[a:b].reshape(self.shapes[n])
                        for n, a, b in zip(self.names, bounds[:-1], bounds[1:], strict=True)
                    ]
                )

            self.compiled[key] = self._jit(jax.vmap(one))
        out = []
        for start in range(0, len(rows), size):
            chunk = rows[start : start + size]
            batch = np.concatenate(
                [chunk, np.broadcast_to(chunk[:1], (size - len(chunk), rows.shape[1]))]
            )
            began = time.perf_counter()
            out.append(np.asarray(self.compiled[key](batch))[: len(chunk)])
            if not first:
                self.rows_seconds = time.perf_counter() - began
            first = False
        return np.concatenate(out)

    def _run(self, name, flat, coords, values) -> np.ndarray:
        if self.small:
            base = np.concatenate(
                [flat if n == name else self.params[n].ravel() for n in self.names]
            )
            offset = sum(self.params[n].size for n in self.names[: self.names.index(name)])
            rows = np.broadcast_to(base, (len(coords), base.size)).copy()
            rows[np.arange(len(coords)), offset + np.asarray(coords, dtype=int)] = values
            return self._rows(rows)
        jax = self.jax
        position = self.names.index(name)
        size = max(1, min(len(coords), BATCH_ELEMENTS // max(flat.size, 1), MAX_BATCH))
        key = ("batched", self.output, self.depth, name, size)
        if key not in self.compiled:

            def one(leaf, others):
                leaves = [*others[:position], leaf.reshape(self.shapes[name]), *others[position:]]
                return self._objective(leaves)

            self.compiled[key] = jax.jit(jax.vmap(one, in_axes=(0, None)))
        others = [
            x for n, x in zip(self.names, self._leaves(self.params), strict=True) if n != name
        ]
        out = []
        for start in range(0, len(coords), size):
            idx = np.asarray(coords[start : start + size])
            batch = np.broadcast_to(flat, (size, flat.size)).copy()
            rows = np.arange(idx.size)
            batch[rows, idx] = values[start : start + size]
            if self.native:
                batch = batch.astype(self.dtypes[name])
            # a short last chunk is padded to the compiled batch size
            out.append(np.asarray(self.compiled[key](batch, others))[: idx.size])
        return np.concatenate(out)


def _checked_leaves(jax: Any, params: Any) -> tuple[Any, dict[str, np.ndarray]]:
    """``params``' tree structure and its leaves by path name (``"layers.0.W"``), as NumPy
    arrays; every leaf float or complex, every name distinct."""
    import jax.numpy as jnp

    paths_leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    if not paths_leaves:
        raise GradientSpecError("params holds no arrays to check")
    names = [path_name(path) for path, _ in paths_leaves]
    if len(set(names)) != len(names):
        raise GradientSpecError("two leaves of params have the same path name; use distinct keys")
    for name, (_, leaf) in zip(names, paths_leaves, strict=True):
        dtype = leaf.dtype if hasattr(leaf, "dtype") else np.asarray(leaf).dtype
        if not (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.complexfloating)):
            raise GradientSpecError(
                f"leaf {name!r} has dtype {dtype}; only float and complex leaves have gradients"
            )
    return treedef, {n: np.asarray(leaf) for n, (_, leaf) in zip(names, paths_leaves, strict=True)}


def _left_out(out: Any, output: int | None) -> np.ndarray | None:
    """Where the output checked (of ``out``, the function's outputs at the check point) is
    finite, or ``None`` where it is finite everywhere: ``check_grads`` leaves the other
    elements out (nan matches nan there)."""
    checked = arrays_of(out)[output or 0] if isinstance(out, (tuple, list)) else out
    finite = finite_mask(checked)
    return None if finite.all() else finite
