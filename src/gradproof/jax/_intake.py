"""What a JAX check takes in: the jax module, the configuration its programs are built in
(float64, checks off), float64 leaves, and the names of a pytree's leaves."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class Call:
    """One call of a check, shared by the checks of its outputs, modes and orders:
    ``fn(params, *args)``, ``params`` checked and ``args`` held fixed. ``native``: the
    function runs in its leaves' own dtypes (the caller's JAX configuration), not on
    float64 copies; ``dropin``: ``check_grads``' semantics for outputs that are nan or
    infinite at the check point (left out, as nan matches nan there)."""

    fn: Callable[..., Any]
    params: Any  # a pytree of arrays
    args: tuple[Any, ...] = ()
    native: bool = False
    dropin: bool = False


def load_jax() -> tuple[Any, Any]:
    try:
        import jax
        import jax.numpy as jnp
    except ImportError as exc:
        raise ImportError("gradproof.jax needs JAX: pip install 'gradproof[jax]'") from exc
    return jax, jnp


def float64_mode(jax: Any) -> Any:
    if hasattr(jax, "enable_x64"):
        return jax.enable_x64(True)
    from jax.experimental import enable_x64  # type: ignore[attr-defined]  # (older JAX)

    return enable_x64()


@contextlib.contextmanager
def checking(jax: Any, x64: bool = True) -> Iterator[None]:
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
                stack.enter_context(float64_mode(jax))
            if hasattr(jax, "enable_checks"):
                stack.enter_context(jax.enable_checks(False))
            yield
    finally:
        if switched:
            jax.clear_caches()


def float64_leaf(x: Any) -> Any:
    """A leaf as the check point holds it: float64 (complex128), a JAX array."""
    import jax.numpy as jnp

    value = np.asarray(x)
    return jnp.asarray(value.astype(np.complex128 if np.iscomplexobj(value) else np.float64))


def first_line(exc: BaseException) -> str:
    first = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {first[:160]}"


def inexact(x: Any) -> bool:
    dtype = getattr(x, "dtype", None)
    if dtype is None:
        dtype = np.asarray(x).dtype
    return bool(np.issubdtype(dtype, np.inexact) or np.dtype(dtype).name == "bfloat16")


def finite_mask(x: Any) -> np.ndarray:
    """Where an array (real or complex, of any float dtype) is finite."""
    return np.isfinite(np.asarray(x).astype(np.complex128))


JAX_CONVENTION = (
    "for a real loss L of complex z, jax.grad gives dL/dRe(z) - i dL/dIm(z) (the conjugate "
    "of PyTorch's convention): conjugate what the rule returns"
)


def arrays_of(outputs: tuple[Any, ...] | list[Any]) -> list[Any]:
    """The numeric arrays among a function's outputs (auxiliary data such as dicts left out)."""
    return [o for o in outputs if hasattr(o, "dtype") and inexact(o)]


def path_name(path: Any) -> str:
    """A pytree leaf's name, as reports name it: its path's keys joined by dots
    (``"layers.0.W"``); ``"theta"`` for a bare array."""
    return ".".join(_key_name(k) for k in path) or "theta"


def _key_name(key: Any) -> str:
    for attr in ("key", "idx", "name"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)
