"""The drop-in `check_grads`: `jax.test_util.check_grads`' semantics (its orders, modes and
tolerances by dtype), and the arguments' own precision where a function cannot run in
float64."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .. import _adapter, _policy
from .._adapter import Request
from .._errors import CostError, GradientSpecError
from .._options import options
from .._report import GradientError, Report
from ._check import check_all
from ._checker import Shared
from ._intake import Call, checking, finite_mask, first_line, float64_mode, inexact, load_jax


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
    jax, _ = load_jax()
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
    size = sum(int(np.size(a)) for a in args if inexact(a))
    per_element = 1 / np.sqrt(max(size, 1))
    why = _own_precision_needed(jax, f, args)
    if why is None:
        given = tolerance(atol, dtypes)
        opts = options(
            "gradproof.jax.check_grads",
            eps=eps,
            atol=None if given is None else given * per_element,
            rtol=tolerance(rtol, dtypes),
            mode="directional",
            k=1,
        )
        opts = dataclasses.replace(opts, normwise_floor=True)  # (as gradproof.torch.gradcheck)
        if size <= _policy.FULL_CHECK_ELEMENTS or (value is not None and not _all_finite(value)):
            opts = dataclasses.replace(opts, mode="full", k=None)  # every element
        try:
            with checking(jax):
                # One random direction per argument, as check_grads takes, at gradproof's
                # accuracy, for large arguments; where it fails, every element is checked.
                call = Call(lambda p: f(*p.values()), named, dropin=True)
                # (the full check reuses the directional one's programs and values)
                finite = value is not None and _all_finite(value)
                shared = Shared(modes, order, seed=opts.seed, finite=finite)
                report = check_all(jax, call, Request(opts, modes, order), shared)
                if not report.passed and opts.mode != "full":
                    opts = dataclasses.replace(opts, mode="full", k=None)
                    report = check_all(jax, call, Request(opts, modes, order), shared)
        except CostError:
            why = _not_finite_in_float64(jax, f, args, value)
            if why is None:
                raise
    if why is not None:
        asked = _Given(atol, rtol, eps, per_element, dtypes)
        report = check_own_precision(
            jax, Call(lambda p: f(*p.values()), named), modes, order, asked, why
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
        np.ones(np.shape(a), np.asarray(a).dtype) if inexact(a) else np.zeros(np.shape(a))
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


def _finite_anywhere(out: Any) -> bool:
    return any(np.any(finite_mask(x)) for x in _flat_outputs(out))


@dataclasses.dataclass(frozen=True)
class _Given:
    """``check_grads``' tolerances as given (``None``: its defaults for the dtypes), the
    share of ``atol`` each element gets, and the outputs' dtypes the defaults are for."""

    atol: Any
    rtol: Any
    eps: float | None
    per_element: float
    dtypes: list[np.dtype]


def check_own_precision(
    jax: Any, call: Call, modes: tuple[str, ...], order: int, given: _Given, why: str
) -> Report:
    """``check_grads`` in the arguments' own precision (``why``: float64 could not serve):
    steps sized for it, and the original's tolerances for it (``given``, or
    ``check_grads``' defaults) as the bound, ``atol`` shared out over the elements."""
    arguments = [a for a in call.params.values() if inexact(a)]
    bits = min(_significand_bits(jax, np.asarray(a).dtype) for a in arguments)
    atol, rtol = _own_tolerance(given.atol, given.dtypes), _own_tolerance(given.rtol, given.dtypes)
    opts = dataclasses.replace(
        options(
            "gradproof.jax.check_grads", eps=given.eps, atol=atol * given.per_element, rtol=rtol
        ),
        precision_bits=bits,
        normwise_floor=True,
    )
    with checking(jax, x64=False):
        native = dataclasses.replace(call, native=True, dropin=True)
        report = check_all(jax, native, Request(opts, modes, order))
    kinds = "/".join(sorted({str(np.asarray(a).dtype) for a in arguments}))
    note = (
        f"checked in the arguments' own precision ({kinds}), not on float64 copies: {why}. "
        f"Steps and round-off are sized for {bits} significand bits, and a disagreement "
        f"within check_grads' tolerances (atol {atol:g}, rtol {rtol:g}) is accepted"
    )
    return dataclasses.replace(report, warnings=[note, *report.warnings])


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
    if jax.config.jax_enable_x64 and all(np.asarray(a).dtype in wide for a in args if inexact(a)):
        return None  # nothing is widened
    try:
        with float64_mode(jax):
            jax.eval_shape(f, *_widened(args))
    except Exception as exc:  # any error of f's own in float64: it works as called
        return f"in float64 the function raises {first_line(exc)}"
    return None


def _widened(args: tuple) -> list[Any]:
    return [
        np.asarray(a).astype(_wide_dtype(np.asarray(a).dtype)) if inexact(a) else a for a in args
    ]


def _not_finite_in_float64(jax, f, args: tuple, value: Any) -> str | None:
    """Why a float64 check that found the cost not finite should run in the arguments'
    own precision instead: the ``value`` is finite as called, and not in float64."""
    if value is None or not _all_finite(value):
        return None
    with float64_mode(jax):
        if _all_finite(f(*_widened(args))):
            return None
    return "in float64 the function's value is not finite where, as called, it is"


def _wide_dtype(dtype: np.dtype) -> Any:
    return np.complex128 if np.issubdtype(dtype, np.complexfloating) else np.float64


def _all_finite(out: Any) -> bool:
    return all(np.all(finite_mask(x)) for x in _flat_outputs(out))


def _flat_outputs(out: Any) -> list[Any]:
    import jax

    return [x for x in jax.tree_util.tree_leaves(out) if hasattr(x, "dtype") and inexact(x)]


def _output_dtypes(jax, f, args: tuple) -> list[np.dtype]:
    """The dtypes of ``f``'s floating outputs as called (the original judges by them)."""
    try:
        shapes = jax.eval_shape(f, *args)
        found = [np.dtype(s.dtype) for s in jax.tree_util.tree_leaves(shapes) if inexact(s)]
    except Exception:  # the check itself reports what f raises
        found = []
    return found or [np.asarray(a).dtype for a in args if inexact(a)]


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


def tolerance(tol: Any, dtypes: list[np.dtype], default: bool = False) -> float | None:
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
    found = tolerance(tol, dtypes, default=True)
    assert found is not None  # (with default, every dtype has one)
    return found
