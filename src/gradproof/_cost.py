"""Calling the user's cost: scalar extraction, RNG replay, errors with context."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast

import numpy as np

from ._errors import CostError

# The global NumPy RNG's state as np.random.get_state() gives it (legacy form).
RngState = tuple[Any, ...]


class CostFailed(Exception):
    """Internal: the cost failed, where one evaluation of many was made (``index``: the
    coordinate, or the output of a batch; ``point``: which of its points, ``x + h`` or
    ``x - h``; ``None``: one evaluation) and why (``cause``: what the cost raised, chained
    or, from a worker process, carried). The one failure of the cost the engine passes
    on; `error` is the one message the user gets for it."""

    def __init__(
        self, index: int | None = None, point: int | None = None, cause: BaseException | None = None
    ) -> None:
        super().__init__(index, point, cause)  # (as a worker pickles it)
        self.index, self.point, self.carried = index, point, cause

    @property
    def cause(self) -> BaseException | None:
        return self.carried if self.carried is not None else self.__cause__

    def at(self, index: int, point: int | None = None) -> CostFailed:
        """The same failure, placed (a batch's output ``index`` is a coordinate)."""
        point = self.point if point is None else point
        return CostFailed(index, point, self.cause)

    def error(self, where: str) -> CostError:
        """The user-facing error: what the cost raised, and ``where`` (what it was
        evaluating: ``"at the check point"``, ``"at W1[2, 0] - h"``)."""
        cause = self.cause
        if isinstance(cause, CostError):
            return CostError(f"{cause} ({where})")
        return CostError(f"the cost raised {type(cause).__name__} {where}: {cause}")


@contextmanager
def blame(where: str) -> Iterator[None]:
    """Turn a failing cost inside the block into a ``CostError`` that says ``where``."""
    try:
        yield
    except CostFailed as exc:
        raise exc.error(where) from exc.cause


def to_scalar(out: Any, allow_complex: bool = False) -> float | complex:
    """The cost value from what ``cost`` returned (number, size-1 array, tuple)."""
    if type(out) is float:
        return out
    if isinstance(out, tuple):
        if not out:
            raise CostError("the cost returned an empty tuple; return the cost, or (cost, ...)")
        out = out[0]
    if isinstance(out, (bool, np.bool_)):
        raise CostError(f"the cost returned a boolean ({out}); return the scalar cost")
    if isinstance(out, np.ndarray):
        if out.size != 1:
            raise CostError(
                f"the cost must return a scalar, got an array of shape {out.shape}; "
                "reduce it (e.g. np.sum or np.mean) or return (cost, cache)"
            )
        out = out.reshape(()).item()
    elif hasattr(out, "item") and callable(out.item) and not isinstance(out, (int, float, complex)):
        # torch tensors count with numel(); JAX and other arrays have an int .size
        numel = getattr(out, "numel", None)
        size = numel() if callable(numel) else getattr(out, "size", 1)
        if size != 1:
            raise CostError(
                f"the cost must return a scalar, got {type(out).__name__} of size {size}"
            )
        out = out.item()
    if isinstance(out, complex):
        if allow_complex:
            return out
        raise CostError(
            f"the cost returned a complex value {out!r} for real input; "
            "return a real scalar (method='complex' is the only one that takes complex costs)"
        )
    if isinstance(out, (int, float)):
        return float(out)
    raise CostError(
        f"the cost must return a scalar (a float, a size-1 array, or a tuple whose first "
        f"item is the cost), got {type(out).__name__}"
    )


class Evaluator:
    """Calls ``cost(tree)``, replaying the global NumPy RNG state when the cost uses it.

    ``count`` is the number of calls made so far.
    """

    def __init__(
        self, cost: Callable[[Any], Any], tree: Any, rng_state: RngState, complex_ok: bool
    ):
        self.cost = cost
        self.tree = tree
        self.rng_state = rng_state
        self.complex_ok = complex_ok
        self.replay = True
        self.count = 0
        # The size of the terms the cost sums, where a front-end knows it (the gradient
        # along w that order=2 checks): its round-off is relative to them, not to the sum.
        self.magnitude = 0.0
        self.aside: tuple[Any, ...] = ()  # (set by `first`)

    def __call__(self) -> float | complex:
        return to_scalar(self._called(), self.complex_ok)

    def _called(self) -> Any:
        if self.replay:
            np.random.set_state(self.rng_state)
        try:
            return self.cost(self.tree)
        except Exception as exc:
            raise CostFailed() from exc
        finally:
            self.count += 1

    def bare(self) -> Callable[[], Any]:
        """The cost on the working copy, called as is: the RNG replayed when the cost
        draws from it, but no counting or conversion (see `scalars`)."""
        cost, tree = self.cost, self.tree
        if not self.replay:
            return lambda: cost(tree)
        state = self.rng_state

        def replayed() -> Any:
            np.random.set_state(state)
            return cost(tree)

        return replayed

    def scalars(self, outputs: list[Any]) -> np.ndarray:
        """What `bare` calls returned, as one array of cost values."""
        dtype = np.complex128 if self.complex_ok else np.float64
        out = np.empty(len(outputs), dtype=dtype)
        complex_seen = False
        for j, o in enumerate(outputs):
            try:
                value = o if type(o) is float else to_scalar(o, self.complex_ok)
            except CostError as exc:
                raise CostFailed(j) from exc
            complex_seen = complex_seen or isinstance(value, complex)
            out[j] = value
        # A complex-step cost that returned only reals dropped the imaginary part:
        # a real array says so to the caller, which refuses it.
        return out.real.copy() if self.complex_ok and not complex_seen else out

    def first(self) -> float | complex:
        """Evaluate once and find out whether the cost draws from ``np.random``.

        If it does not, later calls skip restoring the state (a measurable cost
        per evaluation); the state is restored when the check ends either way.
        """
        self.replay = True  # (so this call sets the state it starts from)
        out = self._called()
        value = to_scalar(out, self.complex_ok)
        self.replay = not _same_state(self.rng_state, rng_state())
        # what the cost returned beside it (the seeds' forward returns (cost, cache))
        self.aside = out[1:] if isinstance(out, tuple) else ()
        return value


def rng_state() -> RngState:
    """The global NumPy RNG's state, in its legacy (tuple) form."""
    return cast(RngState, np.random.get_state(legacy=True))


def _same_state(a: RngState, b: RngState) -> bool:
    return a[0] == b[0] and a[2:] == b[2:] and np.array_equal(a[1], b[1])


def check_finite(value: float | complex, where: str) -> None:
    if not (math.isfinite(value.real) and math.isfinite(value.imag)):
        raise CostError(
            f"the cost is {value} {where}; the check needs a finite cost at and around the "
            "check point (look for log(0), division by zero or overflow)"
        )
