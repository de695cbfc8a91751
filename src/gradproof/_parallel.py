"""Spreading a sweep's evaluations over worker processes, or any ``concurrent.futures.Executor``.

Only the sweep — the 2n evaluations — is spread; everything that decides the
verdict (noise, probes, diagnosis) stays in the calling process, so a check
gives the same numbers, bit for bit, wherever its evaluations ran. The task
(cost, params, RNG state) is serialized once with cloudpickle, so lambdas and
closures work, and unpacked once per worker into a private working copy.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import pickle
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cloudpickle
import numpy as np

from . import _tree
from ._cost import CostRaised, Evaluator
from ._errors import GradientSpecError, WorkerError
from ._finite import SweepInterrupted, sweep

# In a worker: (task id, thread) -> (evaluate, working arrays). One task at a time.
_STATE: dict[tuple[str, int], tuple[Evaluator, dict[str, np.ndarray]]] = {}
_STATE_LOCK = threading.Lock()


def _worker_state(task_id: str, payload: bytes):
    key = (task_id, threading.get_ident())
    with _STATE_LOCK:
        state = _STATE.get(key)
        if state is None:
            for old in [k for k in _STATE if k[0] != task_id]:
                del _STATE[old]
    if state is None:
        cost, params, rng_state, dtype, replay, complex_ok = cloudpickle.loads(payload)
        tree, arrays = _tree.working_copy(params, dtype)
        evaluate = Evaluator(cost, tree, rng_state, complex_ok)
        evaluate.replay = replay
        state = (evaluate, arrays)
        with _STATE_LOCK:
            _STATE[key] = state
    return state


def _portable(exc: BaseException | None) -> BaseException:
    """The exception itself if it survives pickling, else a RuntimeError that names it."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc if exc is not None else RuntimeError("unknown error")
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def run_chunk(task_id: str, payload: bytes, leaf: str, coords: list[int], values: list[list]):
    """In a worker: evaluate the cost over one chunk of one parameter's coordinates.

    Returns ``("ok", js, evaluations)`` or, when the cost raised,
    ``("raised", index, point, exception, evaluations)``.
    """
    evaluate, arrays = _worker_state(task_id, payload)
    flat = arrays[leaf].reshape(-1)
    before = evaluate.count
    try:
        js = sweep(evaluate, flat, values, coords, None)
    except SweepInterrupted as exc:
        cause = exc.__cause__
        user = cause.__cause__ if isinstance(cause, CostRaised) else cause
        return ("raised", exc.index, exc.point, _portable(user), evaluate.count - before)
    return ("ok", js, evaluate.count - before)


@dataclass(frozen=True)
class Chunk:
    """Part of one parameter's sweep: coordinates and the values each takes."""

    leaf: str
    start: int  # position of the chunk in the parameter's checked coordinates
    coords: list[int]
    values: list[list]


@dataclass(frozen=True)
class Task:
    """What every worker needs to evaluate the cost, serialized once."""

    cost: Callable[[Any], Any]
    params: Any
    rng_state: tuple
    dtype: type
    replay: bool
    complex_ok: bool

    def payload(self) -> bytes:
        try:
            return cloudpickle.dumps(
                (self.cost, self.params, self.rng_state, self.dtype, self.replay, self.complex_ok)
            )
        except Exception as exc:
            raise GradientSpecError(
                f"the cost cannot be sent to worker processes ({type(exc).__name__}: {exc}); "
                "a cost that holds open files, locks or sockets must run with executor=None"
            ) from exc


class Workers:
    """An executor for one check: ours (``executor=n``) or the caller's.

    Use as a context manager: on leaving it, our own pool is shut down, and
    on an exception (Ctrl-C included) pending chunks are cancelled.
    """

    def __init__(self, executor: int | cf.Executor, task: Task):
        self.own = isinstance(executor, int)
        self.n = executor if isinstance(executor, int) else _size_of(executor)
        self.payload = task.payload()
        self.executor: cf.Executor = self._new_pool() if isinstance(executor, int) else executor

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if self.own:
            self.executor.shutdown(wait=exc_type is None, cancel_futures=True)

    def _new_pool(self) -> cf.Executor:
        return cf.ProcessPoolExecutor(
            max_workers=self.n, mp_context=multiprocessing.get_context("spawn")
        )

    def run(self, chunks: list[Chunk], done: Callable[[Chunk, tuple], None]) -> None:
        """Run every chunk; a chunk whose worker failed is retried once, then WorkerError."""
        task_id = uuid.uuid4().hex
        pending = {self._submit(task_id, c): c for c in chunks}
        retried: set[int] = set()
        while pending:
            finished, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for future in finished:
                if future not in pending:
                    continue  # from a pool since replaced: its chunk was resubmitted
                chunk = pending.pop(future)
                try:
                    result = future.result()
                except Exception as exc:
                    if id(chunk) in retried:
                        raise WorkerError(
                            f"a worker failed twice evaluating {chunk.leaf} coordinates "
                            f"{chunk.coords[0]}..{chunk.coords[-1]} ({type(exc).__name__}: "
                            f"{exc}); params are intact. Check that the workers can import "
                            "what the cost needs and have memory for it"
                        ) from exc
                    retried.add(id(chunk))
                    if self.own and isinstance(exc, cf.process.BrokenProcessPool):
                        pending = self._restart(task_id, pending)
                    pending[self._submit(task_id, chunk)] = chunk
                    continue
                done(chunk, result)

    def _submit(self, task_id: str, chunk: Chunk) -> cf.Future:
        return self.executor.submit(
            run_chunk, task_id, self.payload, chunk.leaf, chunk.coords, chunk.values
        )

    def _restart(self, task_id: str, pending: dict[cf.Future, Chunk]) -> dict[cf.Future, Chunk]:
        """A dead process breaks the whole pool: start a new one, resubmit what was pending."""
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.executor = self._new_pool()
        return {self._submit(task_id, c): c for c in pending.values()}


def _size_of(executor: Any) -> int:
    for attr in ("_max_workers", "max_workers"):
        n = getattr(executor, attr, None)
        if isinstance(n, int) and n > 0:
            return n
    return 4
