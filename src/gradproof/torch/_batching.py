"""Evaluations in `torch.func.vmap` batches, and how a batch that cannot run is told
from the cost's own error."""

from __future__ import annotations

# Rows of the first two batches; the second is timed against one-by-one evaluation.
PROBE_ROWS = 64


# The exceptions torch raises itself; only these may mean "cannot be batched".
TORCH_ERRORS = (RuntimeError, NotImplementedError, ValueError, TypeError, IndexError)


class SlowerBatched(Exception):
    """Internal: batching ran, but slower than evaluating one by one."""


def out_of_memory(exc: BaseException) -> bool:
    """torch's out-of-memory errors (a RuntimeError subclass, or its message)."""
    return type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower()


def cannot_batch(exc: BaseException) -> bool:
    """Whether an exception from vmap means "this function cannot be batched"."""
    text = f"{type(exc).__name__}: {exc}".lower()
    return any(word in text for word in ("vmap", "batch", "functorch"))
