"""The options of a check: one validated, keyword-only record, defaults resolved once.

Every entry point (``gp.check``, ``gp.assert_gradients``, ``gp.numerical_gradient``,
the PyTorch and JAX front-ends) builds its `Options` through
`options`, so a misspelt or out-of-range option reads the same
everywhere and names the function it was passed to.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import difflib
import math
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np

from . import _policy
from ._errors import GradientSpecError
from ._policy import Method, Mode, Scheme

Executor = int | concurrent.futures.Executor


@dataclass(frozen=True, kw_only=True)
class Options:
    """How a check runs. See [`gradproof.check`][gradproof.check] for each option's meaning."""

    method: Method = "central"
    eps: float | None = None
    tol: float = 1e-7
    mode: Mode = "full"
    k: int | None = None  # resolved: set for "sample" and "directional", None for "full"
    seed: int = 0
    executor: Executor | None = None
    progress: bool | None = None
    # Tolerances a caller of a drop-in passed (torch's gradcheck, JAX's check_grads):
    # a disagreement within atol + rtol·|numeric| is accepted as well.
    atol: float | None = None
    rtol: float | None = None
    # Set by a front-end, not a user: the significand bits with which the cost takes its
    # inputs (53: float64). A front-end that checks a function in its arguments' own
    # lower precision sets it, so steps and the cost's round-off are sized for it.
    precision_bits: int = _policy.FLOAT64_BITS
    # Set by a drop-in, not a user: an element's disagreement below ELEMENT_FLOOR * tol of
    # its parameter's gradient norm is accepted (far inside the original's tolerances).
    normwise_floor: bool = False

    def accepted(self, gap: np.ndarray, numerical: np.ndarray) -> np.ndarray:
        """Where the caller's own tolerances, if any, accept a disagreement."""
        if self.atol is None and self.rtol is None:
            return np.zeros(np.shape(gap), dtype=bool)
        return gap <= (self.atol or 0.0) + (self.rtol or 0.0) * np.abs(numerical)

    @property
    def scheme(self) -> Scheme:
        return _policy.SCHEMES[self.method]

    def with_mode(self, mode: Mode) -> Options:
        """These options with ``mode`` chosen (by ``mode="auto"``) and its ``k`` resolved."""
        k = self.k if self.k is not None else _policy.default_k(mode)
        return dataclasses.replace(self, mode=mode, k=k)

    def policy(self) -> dict[str, Any]:
        """The numerical policy in force, JSON-serializable, for the report."""
        record = _policy.as_record(self.method, self.eps, self.tol, self.mode, self.k, self.seed)
        record.update(
            {n: getattr(self, n) for n in ("atol", "rtol") if getattr(self, n) is not None}
        )
        if self.precision_bits != _policy.FLOAT64_BITS:
            record["precision_bits"] = self.precision_bits
        if self.normwise_floor:
            record["element_floor"] = _policy.ELEMENT_FLOOR
        return record


# The options a user may pass (``precision_bits`` and ``normwise_floor`` are front-ends').
FRONT_END_OPTIONS = ("precision_bits", "normwise_floor")
NAMES = tuple(f.name for f in dataclasses.fields(Options) if f.name not in FRONT_END_OPTIONS)
# A drop-in's own tolerances (gradcheck's, check_grads'): set by the drop-ins, not taken
# by gradproof's own checks, whose bound is ``tol``.
DROP_IN_OPTIONS = ("atol", "rtol")
CHECK_NAMES = tuple(n for n in NAMES if n not in DROP_IN_OPTIONS)


def refuse(caller: str, name: str, names: tuple[str, ...]) -> NoReturn:
    """Raise the error for an option ``caller`` does not take, with the closest it does."""
    if name in DROP_IN_OPTIONS:
        raise GradientSpecError(
            f"{caller} got {name!r}: that is a drop-in's tolerance (gradcheck's, check_grads'); "
            "gradproof's checks take tol, the bound on the relative difference "
            "‖g − g̃‖ / (‖g‖ + ‖g̃‖)"
        )
    close = difflib.get_close_matches(name, names, n=1) or [
        n for n in names if name.startswith(n) or n.startswith(name)
    ]
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise GradientSpecError(
        f"{caller} got an unknown option {name!r}{hint}; it takes {', '.join(names)}"
    )


def user_options(caller: str, /, **given: Any) -> Options:
    """`options` for gradproof's own checks: everything but a drop-in's tolerances."""
    unknown = sorted(set(given) - set(CHECK_NAMES))
    if unknown:
        refuse(caller, unknown[0], CHECK_NAMES)
    return options(caller, **given)


def options(caller: str, /, **given: Any) -> Options:
    """Validated `Options` from keyword arguments given to ``caller``.

    Raises:
        GradientSpecError: an unknown option (with the closest known name) or a
            bad value, naming ``caller``.
    """
    unknown = sorted(set(given) - set(NAMES))
    if unknown:
        refuse(caller, unknown[0], NAMES)
    opts = Options(**given)
    _validate(opts)
    k = None if opts.k is None else int(opts.k)
    resolved = dataclasses.replace(
        opts,
        eps=None if opts.eps is None else float(opts.eps),
        tol=float(opts.tol),
        k=k,
        seed=int(opts.seed),
    )
    return resolved if resolved.mode == "auto" else resolved.with_mode(resolved.mode)


def _is_number(x: Any) -> bool:
    return not isinstance(x, bool) and isinstance(x, (int, float, np.integer, np.floating))


def _validate(o: Options) -> None:
    if o.method not in _policy.METHODS:
        raise GradientSpecError(
            f"unknown method {o.method!r}; use one of {', '.join(map(repr, _policy.METHODS))}"
        )
    if o.eps is not None:
        if not _is_number(o.eps):
            raise GradientSpecError(
                f"eps must be a positive float or None (automatic), got {o.eps!r}"
            )
        if not (math.isfinite(float(o.eps)) and float(o.eps) > 0):
            raise GradientSpecError(f"eps must be a positive finite step or None, got {o.eps!r}")
    if (
        not _is_number(o.tol)
        or isinstance(o.tol, np.integer)
        or not (math.isfinite(float(o.tol)) and float(o.tol) > 0)
    ):
        raise GradientSpecError(f"tol must be a positive finite number (e.g. 1e-7), got {o.tol!r}")
    if o.mode not in _policy.MODES:
        raise GradientSpecError(
            f"unknown mode {o.mode!r}; use one of {', '.join(map(repr, _policy.MODES))}"
        )
    if o.mode == "directional" and o.method != "central":
        raise GradientSpecError(
            f"mode='directional' uses central differences; got method={o.method!r}. "
            "Leave method at its default, or use mode='full' or 'sample' for other methods"
        )
    if o.k is not None and (
        isinstance(o.k, bool) or not isinstance(o.k, (int, np.integer)) or o.k < 1
    ):
        raise GradientSpecError(f"k must be a positive integer or None, got {o.k!r}")
    if not isinstance(o.seed, (int, np.integer)) or isinstance(o.seed, bool):
        raise GradientSpecError(f"seed must be an integer, got {o.seed!r}")
    _validate_executor(o.executor)
    if o.progress not in (None, True, False):
        raise GradientSpecError(f"progress must be None, True or False, got {o.progress!r}")
    for name in ("atol", "rtol"):
        value = getattr(o, name)
        if value is not None and not (_is_number(value) and math.isfinite(value) and value >= 0):
            raise GradientSpecError(f"{name} must be a non-negative number or None, got {value!r}")


def _validate_executor(executor: Any) -> None:
    if executor is None:
        return
    if isinstance(executor, bool) or (isinstance(executor, int) and executor < 1):
        raise GradientSpecError(
            f"executor must be None, a positive number of worker processes, or a "
            f"concurrent.futures.Executor; got {executor!r}"
        )
    if not isinstance(executor, int) and not callable(getattr(executor, "submit", None)):
        raise GradientSpecError(
            f"executor must be None, an int (worker processes) or an object with .submit() "
            f"such as a concurrent.futures.Executor or dask's client.get_executor(); "
            f"got {type(executor).__name__}"
        )
