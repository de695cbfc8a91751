"""Checking what JAX's ``jax.grad`` computes, custom ``custom_vjp``/``custom_jvp`` rules included.

```python
import jax.numpy as jnp, gradproof.jax as gpj
params = {"w": jnp.array([0.5, -1.0]), "b": jnp.array(0.1)}
print(gpj.check(lambda p: jnp.sum(jnp.tanh(p["w"]) + p["b"]), params))
```

The check runs in float64 (inside ``jax.enable_x64``, so the caller's
setting is left alone) on copies of the parameters; evaluations are jitted
and batched with ``jax.vmap``. JAX is imported only when this module is used.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _adapter, _policy
from ._adapter import BATCH_ELEMENTS
from ._errors import CostError, GradientSpecError
from ._options import Options, options, user_options
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
    from jax.experimental import enable_x64  # type: ignore[attr-defined]  # (older JAX)

    return enable_x64()


@contextlib.contextmanager
def _checking(jax, x64: bool = True):
    """The configuration gradproof's programs are built in: float64 (``x64``), and
    ``jax_enable_checks`` off. JAX's own test suites switch those checks on; they verify
    JAX's tracing (each jaxpr typed again), not a gradient, and took a sixth of a
    drop-in's time there. The function still runs once as called, checks and all.

    Where the caller computes in float32 (x64 off), JAX's caches are cleared on the way
    out: a NumPy array the function closes over (or is passed) is held there as the
    float64 constant it was traced as inside, and the caller's next ``jax.grad`` of the
    same function would be handed it, and fail (``RuntimeProgramInputMismatch``)."""
    switched = x64 and not jax.config.jax_enable_x64
    try:
        with contextlib.ExitStack() as stack:
            if x64:
                stack.enter_context(_x64(jax))
            if hasattr(jax, "enable_checks"):
                stack.enter_context(jax.enable_checks(False))
            yield
    finally:
        if switched:
            jax.clear_caches()


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
        check_options: as for [`gradproof.check`][gradproof.check].

    Returns:
        A [`gradproof.Report`][gradproof.Report], by leaf name.
    """
    jax, _ = _jax()
    modes = _adapter.validate_modes("gradproof.jax.check", modes, order)
    opts = user_options("gradproof.jax.check", **check_options)
    with _checking(jax):
        report = _check_all(jax, fn, params, args, opts, modes, order)
        if not report.passed:
            whole = functools.partial(_check_all, jax, fn, params, args, modes=modes, order=order)
            report = _isolated(jax, (fn, params, args), whole, opts, report)
    return report


def _isolated(
    jax, call: tuple[Any, Any, tuple], whole: Callable[..., Report], opts: Options, report: Report
) -> Report:
    """``report`` with where its error enters, where the function's custom rules, each
    checked on its own at the arguments it received, show it (``Report.origin``)."""
    from . import _jax_origin, _trace

    alone = dataclasses.replace(opts, progress=False, k=None, executor=None)

    def check_alone(rule: Callable[[Any], Any], values: Any) -> Report:
        size = sum(np.size(x) for x in jax.tree_util.tree_leaves(values))
        mode: _policy.Mode = "full" if size <= _policy.ISOLATION_FULL else "directional"
        return _check_all(jax, lambda p: rule(p), values, (), alone.with_mode(mode), ("rev",), 1)

    def again() -> Report:  # (as closely as the function's own check looked)
        mode: _policy.Mode = "full" if report.mode == "full" else "directional"
        return whole(opts=alone.with_mode(mode))

    started = time.perf_counter()
    fn, params, args = call
    point = jax.tree_util.tree_map(_float64, params)
    paths, _ = jax.tree_util.tree_flatten_with_path(point)
    named = {".".join(_key_name(k) for k in path) or "theta": leaf for path, leaf in paths}
    subject = _jax_origin.Subject(fn, point, args, named)
    found = _jax_origin.locate(jax, subject, report, check_alone, again)
    policy = {**report.policy, "isolation": found.record()}
    seconds = report.seconds + time.perf_counter() - started  # (the search's time counts)
    origin, tensors = found.origin, report.tensors
    if origin is not None:
        origin, tensors = _trace.traced(tensors, origin)
    return dataclasses.replace(
        report, origin=origin, tensors=tensors, policy=policy, seconds=seconds
    )


def _float64(x: Any) -> Any:
    """A leaf as the check point holds it: float64 (complex128), a JAX array."""
    import jax.numpy as jnp

    value = np.asarray(x)
    return jnp.asarray(value.astype(np.complex128 if np.iscomplexobj(value) else np.float64))


@dataclass
class _Shared:
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
    batching: bool = False  # the check evaluates coordinates in batches (full or sample mode)
    # The function's outputs are finite at the check point, as called (check_grads looked):
    # no float64 evaluation outside a program is needed to find the outputs left out.
    finite: bool = False
    programs: dict[tuple, Any] = field(default_factory=dict)
    values: dict[tuple, list[np.ndarray]] = field(default_factory=dict)
    derivatives: dict[Any, dict[tuple[int, bool], list[Any]]] = field(default_factory=dict)
    # by (output, depth): why jax.vmap could not batch that objective
    unbatched: dict[tuple[int | None, int], str] = field(default_factory=dict)


def _check_all(
    jax, fn, params, args, opts, modes, order, native=False, dropin=False, shared=None
) -> Report:
    """Every requested check (outputs × modes × orders) of one function, as one report.

    ``native``: the function runs in its arguments' own precision (the caller's JAX
    configuration), not on float64 copies. ``dropin``: ``check_grads``' semantics for
    outputs that are nan or infinite at the check point (left out, as nan matches nan).
    ``shared``: programs and values from an earlier check of the same function.
    """
    forward_only = tuple(modes) == ("fwd",)
    shared = _Shared(tuple(modes), order) if shared is None else shared
    shared.batching = opts.mode in ("full", "sample")

    def make(output: int | None, kind: str, depth: int = 1) -> _Checker:
        return _Checker(
            jax,
            fn,
            params,
            args,
            opts.seed,
            output,
            kind,
            depth,
            native,
            forward_only,
            dropin,
            shared,
        )

    return _adapter.check_all(make, opts, modes, order, JAX_CONVENTION)


def check_grads(
    f: Callable[..., Any],
    args: Sequence[Any],
    order: int,
    modes: Sequence[str] = ("fwd", "rev"),
    atol: float | dict | None = None,
    rtol: float | dict | None = None,
    eps: float | None = None,
) -> None:
    """A drop-in for ``jax.test_util.check_grads``: the same call, gradproof's verdict.

    ``f(*args)``'s derivatives up to ``order`` (any depth, as JAX recurses) in
    ``modes`` (``"fwd"``, ``"rev"``; ``"lin"`` is checked as forward mode) are
    checked against finite differences. ``eps``, ``atol`` and ``rtol``, when
    given, are honoured: ``eps`` as the step, the tolerances (a number, or a
    dict keyed by dtype as JAX's test utilities pass them) as an extra bound
    below which a disagreement is accepted.

    The check runs on float64 copies of the arguments when the function
    computes the same there; a function that cannot (a constant of a fixed
    dtype, ``jax_numpy_dtype_promotion='strict'``, a value that is not finite
    in float64) is checked in its arguments' own precision, with steps and
    round-off sized for it and ``check_grads``' own tolerances for that dtype,
    and the report says so.

    Arguments of at most ``_policy.FULL_CHECK_ELEMENTS`` elements in all are checked
    element by element; larger ones along one random direction each (as
    ``check_grads`` does, at gradproof's accuracy), and element by element where
    that fails. ``atol`` bounds, as in ``check_grads``, a projection over the n
    elements: each element is allowed ``atol / sqrt(n)``. Outputs that are nan
    or infinite at the check point are left out, with the derivatives that are
    not finite with them.

    Raises:
        gradproof.GradientError: (an ``AssertionError``, as ``check_grads``
            raises) whose message is gradproof's report: which argument,
            which element, which mode and order, and why.
    """
    jax, _ = _jax()
    if isinstance(modes, str):
        modes = (modes,)
    # "lin" (jax.linearize) is forward mode, checked as such
    modes = tuple(dict.fromkeys("fwd" if m == "lin" else m for m in modes))
    modes = _adapter.validate_modes("gradproof.jax.check_grads", modes, order)
    args = tuple(args)
    named = {f"arg{i}": a for i, a in enumerate(args)}  # named as check_grads' arguments
    try:
        value = f(*args)
    except Exception:  # the check itself reports what f raises, and where
        value = None
    if value is not None and _nowhere_finite(jax, f, args, value):
        return  # nan derivatives of a nan value, as check_grads accepts: nothing to compare
    dtypes = _output_dtypes(jax, f, args)
    # check_grads bounds a projection along one random direction, a sum over the n
    # elements of the arguments: per element, atol / sqrt(n) is the same bound
    size = sum(int(np.size(a)) for a in args if _inexact(a))
    per_element = 1 / np.sqrt(max(size, 1))
    why = _own_precision_needed(jax, f, args)
    if why is None:
        given = _tolerance(atol, dtypes)
        opts = options(
            "gradproof.jax.check_grads",
            eps=eps,
            atol=None if given is None else given * per_element,
            rtol=_tolerance(rtol, dtypes),
            mode="directional",
            k=1,
        )
        opts = dataclasses.replace(opts, normwise_floor=True)  # (as gradproof.torch.gradcheck)
        if size <= _policy.FULL_CHECK_ELEMENTS or (value is not None and not _all_finite(value)):
            opts = dataclasses.replace(opts, mode="full", k=None)  # every element
        try:
            with _checking(jax):
                # One random direction per argument, as check_grads takes, at gradproof's
                # accuracy, for large arguments; where it fails, every element is checked.
                cost = lambda p: f(*p.values())  # noqa: E731
                # (the full check reuses the directional one's programs and values)
                shared = _Shared(modes, order, finite=value is not None and _all_finite(value))
                report = _check_all(
                    jax, cost, named, (), opts, modes, order, dropin=True, shared=shared
                )
                if not report.passed and opts.mode != "full":
                    opts = dataclasses.replace(opts, mode="full", k=None)
                    report = _check_all(
                        jax, cost, named, (), opts, modes, order, dropin=True, shared=shared
                    )
        except CostError:
            why = _not_finite_in_float64(jax, f, args, value)
            if why is None:
                raise
    if why is not None:
        report = _check_own_precision(
            jax, f, named, dtypes, why, modes, order, (atol, rtol, eps), per_element
        )
    if not report.passed:
        raise GradientError(report)


def _nowhere_finite(jax, f, args: tuple, value: Any) -> bool:
    """Whether ``f``'s ``value`` at ``args`` is nowhere finite (a nan or infinite argument)
    and JAX's derivatives there are not finite either: nothing finite differences could
    compare, and ``check_grads`` passes (nan matches nan). A finite derivative of a value
    that is nowhere finite is an error that says so."""
    if not _flat_outputs(value) or _finite_anywhere(value):
        return False
    tangents = tuple(
        np.ones(np.shape(a), np.asarray(a).dtype) if _inexact(a) else np.zeros(np.shape(a))
        for a in args
    )
    _, derivative = jax.jvp(f, args, tangents)
    if not _finite_anywhere(derivative):
        return True
    raise GradientSpecError(
        "check_grads: the function's value is nowhere finite at this point (nan or inf), yet "
        "JAX's derivative there is finite: no finite difference can check it. Check it at a "
        "point where the function is finite"
    )


def _finite(x: Any) -> np.ndarray:
    """Where an array (real or complex, of any float dtype) is finite."""
    return np.isfinite(np.asarray(x).astype(np.complex128))


def _finite_anywhere(out: Any) -> bool:
    return any(np.any(_finite(x)) for x in _flat_outputs(out))


def _check_own_precision(
    jax, f, named, dtypes, why, modes, order, given, per_element: float
) -> Report:
    """``check_grads`` in the arguments' own precision: steps sized for it, and the
    original's tolerances for it (``given`` (atol, rtol, eps), or ``check_grads``'
    defaults) as the bound, ``atol`` shared out over the elements (``per_element``)."""
    atol, rtol, eps = given
    bits = min(_significand_bits(jax, np.asarray(a).dtype) for a in named.values() if _inexact(a))
    atol, rtol = _own_tolerance(atol, dtypes), _own_tolerance(rtol, dtypes)
    opts = dataclasses.replace(
        options("gradproof.jax.check_grads", eps=eps, atol=atol * per_element, rtol=rtol),
        precision_bits=bits,
        normwise_floor=True,
    )
    with _checking(jax, x64=False):
        report = _check_all(
            jax, lambda p: f(*p.values()), named, (), opts, modes, order, native=True, dropin=True
        )
    kinds = "/".join(sorted({str(np.asarray(a).dtype) for a in named.values() if _inexact(a)}))
    note = (
        f"checked in the arguments' own precision ({kinds}), not on float64 copies: {why}. "
        f"Steps and round-off are sized for {bits} significand bits, and a disagreement "
        f"within check_grads' tolerances (atol {atol:g}, rtol {rtol:g}) is accepted"
    )
    return dataclasses.replace(report, warnings=[note, *report.warnings])


def _first_line(exc: BaseException) -> str:
    first = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {first[:160]}"


def _inexact(x: Any) -> bool:
    dtype = getattr(x, "dtype", None)
    if dtype is None:
        dtype = np.asarray(x).dtype
    return bool(np.issubdtype(dtype, np.inexact) or np.dtype(dtype).name == "bfloat16")


def _significand_bits(jax, dtype: Any) -> int:
    """Significand bits of ``dtype`` as JAX computes in it (float64 is float32 without x64)."""
    canonical = jax.dtypes.canonicalize_dtype(dtype)
    return _policy.significand_bits(canonical)


def _own_precision_needed(jax, f, args: tuple) -> str | None:
    """Why ``f`` cannot be checked on float64 copies of ``args`` (None: it can).

    It can when it traces there (dtypes and promotion are checked when tracing, with
    nothing compiled; `_not_finite_in_float64` looks at values, when needed).
    """
    wide = (np.dtype(np.float64), np.dtype(np.complex128))
    if jax.config.jax_enable_x64 and all(np.asarray(a).dtype in wide for a in args if _inexact(a)):
        return None  # nothing is widened
    try:
        with _x64(jax):
            jax.eval_shape(f, *_widened(args))
    except Exception as exc:  # any error of f's own in float64: it works as called
        return f"in float64 the function raises {_first_line(exc)}"
    return None


def _widened(args: tuple) -> list[Any]:
    return [
        np.asarray(a).astype(_wide_dtype(np.asarray(a).dtype)) if _inexact(a) else a for a in args
    ]


def _not_finite_in_float64(jax, f, args: tuple, value: Any) -> str | None:
    """Why a float64 check that found the cost not finite should run in the arguments'
    own precision instead: the ``value`` is finite as called, and not in float64."""
    if value is None or not _all_finite(value):
        return None
    with _x64(jax):
        if _all_finite(f(*_widened(args))):
            return None
    return "in float64 the function's value is not finite where, as called, it is"


def _wide_dtype(dtype: np.dtype) -> Any:
    return np.complex128 if np.issubdtype(dtype, np.complexfloating) else np.float64


def _all_finite(out: Any) -> bool:
    return all(np.all(_finite(x)) for x in _flat_outputs(out))


def _flat_outputs(out: Any) -> list[Any]:
    import jax

    return [x for x in jax.tree_util.tree_leaves(out) if hasattr(x, "dtype") and _inexact(x)]


def _output_dtypes(jax, f, args: tuple) -> list[np.dtype]:
    """The dtypes of ``f``'s floating outputs as called (the original judges by them)."""
    try:
        shapes = jax.eval_shape(f, *args)
        found = [np.dtype(s.dtype) for s in jax.tree_util.tree_leaves(shapes) if _inexact(s)]
    except Exception:  # the check itself reports what f raises
        found = []
    return found or [np.asarray(a).dtype for a in args if _inexact(a)]


# A check of at most SMALL_PARAMS float64 elements in all is evaluated by one batched
# program over all of them, its single evaluations included while a batch takes at most
# ROWS_SECONDS (a row of a batch is cheaper than a compilation); a batch holds at most
# MAX_BATCH rows.
SMALL_PARAMS = 512
ROWS_SECONDS = 0.01
MAX_BATCH = 512


# check_grads' own tolerance by dtype where the caller gives none for it (JAX's
# default_gradient_tolerance): used when a check must run in that precision.
_DEFAULT_TOLERANCE = {
    "bfloat16": 1e-1,
    "float16": 1e-2,
    "float32": 2e-3,
    "float64": 1e-5,
    "complex64": 1e-3,
    "complex128": 1e-5,
}


def _tolerance(tol: Any, dtypes: list[np.dtype], default: bool = False) -> float | None:
    """A tolerance as one number: a dict keyed by dtype (or NumPy scalar type) is read at
    the outputs' dtypes, the loosest that applies, as ``check_grads`` reads it per output.

    With ``default``, a dtype the caller gives no tolerance for takes ``check_grads``'
    default; without, it is left to gradproof's own verdict (``None``).
    """
    if tol is not None and not isinstance(tol, dict):
        return tol
    if default and not dtypes:  # no floating output or argument: float64's
        return _DEFAULT_TOLERANCE["float64"]
    given = {} if tol is None else {np.dtype(k).name: v for k, v in tol.items()}
    values = []
    for dtype in dtypes:
        name = np.dtype(dtype).name
        if name in given:
            values.append(given[name])
        elif default:
            values.append(_DEFAULT_TOLERANCE.get(name, 1e-1))
    return float(max(values)) if values else None


def _own_tolerance(tol: Any, dtypes: list[np.dtype]) -> float:
    """``check_grads``' tolerance at ``dtypes``: the caller's, or its default, for each."""
    found = _tolerance(tol, dtypes, default=True)
    assert found is not None  # (with default, every dtype has one)
    return found


JAX_CONVENTION = (
    "for a real loss L of complex z, jax.grad gives dL/dRe(z) - i dL/dIm(z) (the conjugate "
    "of PyTorch's convention): conjugate what the rule returns"
)


def _arrays(outputs: tuple | list) -> list[Any]:
    """The numeric arrays among a function's outputs (auxiliary data such as dicts left out)."""
    return [o for o in outputs if hasattr(o, "dtype") and _inexact(o)]


def _key_name(key: Any) -> str:
    for attr in ("key", "idx", "name"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


class _Checker:
    """Float64 copies of the leaves, the cost over NumPy arrays, JAX's derivative, and vmap.

    ``kind`` is the derivative under check: ``"rev"``, ``"fwd"``, or ``"order"``, the
    gradient of ``x -> <grad g(x), w>`` where ``g`` is the objective one ``depth`` lower
    (depth 2: the Hessian times ``w``; depth 3: the third derivative along two ``w``).
    ``native``: the function runs in its leaves' own dtypes (the caller's JAX config);
    ``forward_only``: derivatives inside the objective are taken in forward mode.
    """

    def __init__(
        self,
        jax,
        fn,
        params,
        args,
        seed,
        output=None,
        kind="rev",
        depth=1,
        native=False,
        forward_only=False,
        dropin=False,
        shared=None,
    ):
        import jax.numpy as jnp

        self.jax, self.jnp, self.fn, self.args, self.seed = jax, jnp, fn, args, seed
        self.output = output  # which output of a tuple is checked
        self.kind = kind
        self.depth = depth if kind == "order" else 1
        self.native = native
        self.forward_only = forward_only
        self.last_analytic: dict[str, np.ndarray] = {}
        self.magnitude = 0.0  # order >= 2: the size of the terms of <grad g, w> (by analytic)
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
            dtype = leaf.dtype if hasattr(leaf, "dtype") else np.asarray(leaf).dtype
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
        self.dtypes: dict[str, Any] = {}  # native: the dtype each checked part is passed in
        for n, x in zip(self.names, leaves, strict=True):
            value = np.asarray(x)
            if n in self.complex:
                part = _policy.real_dtype(value.dtype)
                self.params[f"{n}.real"] = np.array(value.real, dtype=np.float64)
                self.params[f"{n}.imag"] = np.array(value.imag, dtype=np.float64)
                self.dtypes[f"{n}.real"] = self.dtypes[f"{n}.imag"] = part
            else:
                self.params[n] = np.array(value, dtype=np.float64)
                self.dtypes[n] = value.dtype
        self.names = list(self.params)
        self.shapes = {n: a.shape for n, a in self.params.items()}
        # A small check: float64 parts of SMALL_PARAMS elements in all, evaluated by one
        # batched program over all of them (_rows), its single evaluations included.
        self.small = not native and sum(a.size for a in self.params.values()) <= SMALL_PARAMS
        self.projection = None
        self.shared = _Shared() if shared is None else shared
        out = None
        if not dropin or self.shared.finite:  # only the outputs' shapes are needed

            def arrays_of(leaves):
                # (eval_shape would turn a Python number beside the outputs into an array:
                # it is not one of them, as it is not when the function runs)
                out = fn(jax.tree_util.tree_unflatten(self.treedef, leaves), *args)
                return _arrays(out) if isinstance(out, (tuple, list)) else out

            try:
                out = jax.eval_shape(arrays_of, self._assemble(self._leaves(self.params)))
            except Exception:  # (what fn raises is reported where it is evaluated)
                out = None
        if out is None:
            leaves = self._assemble([jnp.asarray(x) for x in self._leaves(self.params)])
            out = fn(jax.tree_util.tree_unflatten(self.treedef, leaves), *args)
        count = len(_arrays(out)) if isinstance(out, (tuple, list)) else 1
        self.output_indices: list[int | None] = [None] if count == 1 else [*range(count)]
        # check_grads' outputs that are nan or infinite at the check point are left out
        # (nan matches nan there), and so are the derivatives that are not finite with them
        self.finite_mask = None
        self.left_out: dict[str, np.ndarray] = {}  # by part: derivatives left out with them
        if dropin and not self.shared.finite:
            checked = _arrays(out)[output or 0] if isinstance(out, (tuple, list)) else out
            finite = _finite(checked)
            if not finite.all():
                self.finite_mask = finite
        # order k checks x -> <grad g(x), w>: its gradient is the k-th derivative along ws.
        # (Level 1's weights keep stream 1, so order-2 checks draw what they always drew.)
        # (up to the call's highest order: one program computes every order's derivative)
        self.level_weights = [
            [w[n] for n in self.names]
            for w in _adapter.level_weights(seed, self.shapes, max(self.depth, self.shared.order))
        ]
        self.compiled = self.shared.programs  # XLA compiles each program once per call
        self.found_unbatched = False  # this checker found that vmap cannot batch the cost
        self.rows_seconds = 0.0  # how long the last batch of a small check took to run

    @property
    def vmap_failed(self) -> str | None:
        """Why ``jax.vmap`` could not batch this objective (shared by the call's checkers:
        each mode evaluates the same one), or ``None``."""
        return self.shared.unbatched.get((self.output, self.depth))

    def _unbatched(self, exc: BaseException) -> None:
        self.shared.unbatched[(self.output, self.depth)] = _first_line(exc)
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
            out = _arrays(out)[self.output or 0]
        return self._reduce(out)

    def _gradient(self, g, forward: bool | None = None):
        """``x -> grad g(x)`` over the list of parts: reverse mode, or forward mode
        (``forward``; by default where only forward mode is checked)."""
        forward = self.forward_only if forward is None else forward
        return self.jax.jacfwd(g) if forward else self.jax.grad(g)

    def _level(self, depth: int):
        """The objective at ``depth``: the cost, then ``x -> <grad g(x), w>`` per level."""
        if depth == 1:
            return self._scalar_of
        lower, weights = self._level(depth - 1), self.level_weights[depth - 2]

        def along(leaves):
            grads = [self._wide(g) for g in self._gradient(lower)(leaves)]
            if self.finite_mask is not None:  # the derivatives of outputs left out, too
                grads = [self.jnp.where(self.jnp.isfinite(g), g, 0) for g in grads]
            return sum(self.jnp.sum(g * w) for g, w in zip(grads, weights, strict=True))

        return along

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
        if self.kind == "fwd":
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
                instead = f": check it with order={self.depth - 1}" if self.kind == "order" else ""
                which = {1: "derivative", 2: "second derivative"}.get(
                    self.depth, f"derivative of order {self.depth}"
                )
                raise GradientSpecError(
                    f"JAX does not implement this function's {which} ({exc}){instead}"
                ) from exc
        if self.kind == "order":  # <grad g, w> may cancel, its terms do not
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
