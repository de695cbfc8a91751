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
import os
import pickle
import signal
import sys
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cloudpickle
import numpy as np

from . import _tree
from ._cost import CostFailed, Evaluator, RngState
from ._errors import GradientSpecError, WorkerError
from ._finite import cost_values


@dataclass(frozen=True)
class ChunkResult:
    """What a worker returns for a chunk: the cost's values (one array per point of the
    scheme), or where and why the cost failed; and the evaluations it made either way."""

    values: list[np.ndarray] | None
    evaluations: int
    failed: CostFailed | None = None


# In a worker: (task id, thread) -> (evaluate, working arrays). One task at a time.
_STATE: dict[tuple[str, int], tuple[Evaluator, dict[str, np.ndarray]]] = {}
_STATE_LOCK = threading.Lock()
# In a worker of ours: the BLAS/OpenMP threads it may use (None: the machine's default),
# and the pool's shared count of chunks finished (tells start-up failures from later ones).
_THREADS: int | None = None
_FINISHED: Any = None


def _init_worker(threads: int, finished: Any) -> None:
    """Start-up of a worker of ours: Ctrl-C is the parent's to handle (it stops the
    workers), and BLAS/OpenMP pools are held so that workers × threads ≤ cores."""
    global _THREADS, _FINISHED
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _THREADS, _FINISHED = threads, finished
    _limit_threads()


def _limit_threads() -> None:
    """Hold every thread pool loaded so far (BLAS, OpenMP, torch) to ``_THREADS``."""
    if _THREADS is None:
        return
    from threadpoolctl import threadpool_limits

    threadpool_limits(_THREADS)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(_THREADS)


def _worker_state(task_id: str, payload: bytes) -> Any:
    key = (task_id, threading.get_ident())
    with _STATE_LOCK:
        state = _STATE.get(key)
        if state is None:
            for old in [k for k in _STATE if k[0] != task_id]:
                del _STATE[old]
    if state is None:
        cost, params, rng_state, dtype, replay, complex_ok = cloudpickle.loads(payload)
        _limit_threads()  # the cost's own libraries are loaded now
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


def run_chunk(
    task_id: str, payload: bytes, leaf: str, coords: list[int], values: list[list[float]]
) -> ChunkResult:
    """In a worker: evaluate the cost over one chunk of one parameter's coordinates.

    Returns the values, or where the cost failed (the cause made portable: a pickled
    exception keeps its arguments, not its chained cause).
    """
    evaluate, arrays = _worker_state(task_id, payload)
    flat = arrays[leaf].reshape(-1)
    before = evaluate.count
    try:
        js = cost_values(evaluate, flat, values, coords, None)
    except CostFailed as exc:
        # the sweep calls the cost bare: the cause is the cost's own exception
        failed = CostFailed(exc.index, exc.point, _portable(exc.cause))
        return ChunkResult(None, evaluate.count - before, failed)
    if _FINISHED is not None:
        with _FINISHED.get_lock():
            _FINISHED.value += 1
    return ChunkResult(js, evaluate.count - before)


@dataclass(frozen=True)
class Chunk:
    """Part of one parameter's sweep: coordinates and the values each takes."""

    leaf: str
    start: int  # position of the chunk in the parameter's checked coordinates
    coords: list[int]
    values: list[list[float]]


@dataclass(frozen=True)
class Task:
    """What every worker needs to evaluate the cost, serialized once."""

    cost: Callable[[Any], Any]
    params: Any
    rng_state: RngState
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

    Use as a context manager: on leaving it, our own pool is shut down; on an
    exception (Ctrl-C included) pending chunks are cancelled and our worker
    processes are terminated at once, so nothing keeps evaluating.
    """

    def __init__(self, executor: int | cf.Executor, task: Task):
        if isinstance(executor, int) and getattr(
            multiprocessing.current_process(), "_inheriting", False
        ):
            # This is a worker re-running the main script as it starts ('spawn'), which has
            # no main guard: starting workers here fails with a 40-line traceback per worker
            # before the main process can say why. One line here; the main process explains.
            raise SystemExit(
                "gradproof: a worker re-ran the main script, which starts a check with "
                'executor= outside an `if __name__ == "__main__":` guard'
            )
        self.own = isinstance(executor, int)
        self.n = executor if isinstance(executor, int) else _size_of(executor)
        self.payload = task.payload()
        self.context = multiprocessing.get_context("spawn")
        self.finished = self.context.Value("i", 0) if self.own else None
        self.executor: cf.Executor = self._new_pool() if isinstance(executor, int) else executor

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if not self.own:
            return
        if exc_type is None:
            self.executor.shutdown(wait=True)
        else:
            self._terminate()

    def _new_pool(self) -> cf.Executor:
        threads = max(1, (os.cpu_count() or 1) // self.n)
        return cf.ProcessPoolExecutor(
            max_workers=self.n,
            mp_context=self.context,
            initializer=_init_worker,
            initargs=(threads, self.finished),
        )

    def _terminate(self) -> None:
        processes = list(getattr(self.executor, "_processes", {}).values())
        self.executor.shutdown(wait=False, cancel_futures=True)
        for p in processes:
            p.terminate()
        for p in processes:
            p.join(timeout=1.0)

    def run(self, chunks: list[Chunk], done: Callable[[Chunk, ChunkResult], None]) -> None:
        """Run every chunk; a chunk whose worker failed mid-run is retried once.

        Workers that fail before finishing any chunk (they cannot start or
        cannot unpack the cost) raise [`WorkerError`][gradproof.WorkerError] at once, with the
        likely cause.
        """
        task_id = uuid.uuid4().hex
        pending = {self._submit(task_id, c): c for c in chunks}
        try:
            self._collect(task_id, pending, done)
        except BaseException:
            for future in pending:  # a caller's executor: leave it no work of ours
                future.cancel()
            raise

    def _collect(
        self,
        task_id: str,
        pending: dict[cf.Future[ChunkResult], Chunk],
        done: Callable[[Chunk, ChunkResult], None],
    ) -> None:
        retried: set[int] = set()
        started = False
        while pending:
            finished, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            # Results first: a chunk that finished counts before a failure seen alongside.
            for future in sorted(
                finished, key=lambda f: f.cancelled() or f.exception() is not None
            ):
                if future not in pending:
                    continue  # from a pool since replaced: its chunk was resubmitted
                chunk = pending.pop(future)
                try:
                    result = future.result()
                except Exception as exc:
                    if not (started or (self.finished is not None and self.finished.value)):
                        raise WorkerError(_startup_failure(exc)) from exc
                    if id(chunk) in retried:
                        raise WorkerError(
                            f"a worker failed twice evaluating {chunk.leaf} coordinates "
                            f"{chunk.coords[0]}..{chunk.coords[-1]} ({type(exc).__name__}: "
                            f"{exc}); params are intact. Workers that die mid-run are often "
                            "out of memory: use fewer workers, or executor=None"
                        ) from exc
                    retried.add(id(chunk))
                    if self.own and isinstance(exc, cf.process.BrokenProcessPool):
                        restarted = self._restart(task_id, pending)
                        pending.clear()  # in place: the caller cancels what is left on error
                        pending.update(restarted)
                    pending[self._submit(task_id, chunk)] = chunk
                    continue
                started = True
                done(chunk, result)

    def _submit(self, task_id: str, chunk: Chunk) -> cf.Future[ChunkResult]:
        return self.executor.submit(
            run_chunk, task_id, self.payload, chunk.leaf, chunk.coords, chunk.values
        )

    def _restart(
        self, task_id: str, pending: dict[cf.Future[ChunkResult], Chunk]
    ) -> dict[cf.Future[ChunkResult], Chunk]:
        """A dead process breaks the whole pool: start a new one, resubmit what was pending."""
        self._terminate()
        self.executor = self._new_pool()
        return {self._submit(task_id, c): c for c in pending.values()}


def _startup_failure(exc: BaseException) -> str:
    """Why workers failed before finishing any work, as far as can be told, and the fix."""
    what = f"{type(exc).__name__}: {exc}"
    if not isinstance(exc, cf.process.BrokenProcessPool):
        return (
            f"the workers could not unpack or run the cost ({what}). A worker is a fresh "
            "process: the modules the cost uses must be importable there (installed, or on "
            "PYTHONPATH). Params are intact; executor=None runs the check in this process"
        )
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if path is not None and not os.path.isfile(path):
        return (
            f"worker processes could not start ({what}): the script came from {path}, which "
            "a new process cannot re-run. Save it to a file, or use executor=None"
        )
    if path is not None and not _has_main_guard(path):
        return (
            f"worker processes could not start ({what}): each worker re-runs {path} when it "
            "starts (multiprocessing 'spawn'), and the script has no "
            '`if __name__ == "__main__":` guard, so every worker starts the check again. '
            "Put the code that calls gradproof under that guard, or use executor=None"
        )
    return (
        f"worker processes died before finishing any work ({what}); params are intact. "
        "executor=None runs the check in this process, where the error shows itself"
    )


def _has_main_guard(path: str) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            source = f.read()
    except OSError:
        return True
    return "__name__" in source and "__main__" in source


def _size_of(executor: Any) -> int:
    for attr in ("_max_workers", "max_workers"):
        n = getattr(executor, attr, None)
        if isinstance(n, int) and n > 0:
            return n
    return 4
