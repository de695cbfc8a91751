"""Sweeping one parameter's coordinates through a finite-difference scheme."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _policy, _tree
from ._cost import CostRaised
from ._errors import CostError
from ._finite import SweepInterrupted, estimate, make_steps, points_for, probe, sweep
from ._report import index_tuple

# Coordinates whose perturbed values are materialized at once: bounds the
# memory of a sweep to a small multiple of one parameter.
CHUNK = 1 << 13


def at_point(fn: Callable[[], Any], where: str):
    try:
        return fn()
    except CostRaised as exc:
        original = exc.__cause__
        raise CostError(
            f"the cost raised {type(original).__name__} {where}: {original}"
        ) from original


@dataclass
class LeafSweep:
    flat: np.ndarray
    coords: np.ndarray  # flat indices checked; the arrays below are aligned with them
    steps: Any
    js: list[np.ndarray]
    numeric: np.ndarray
    second_difference: np.ndarray | None
    method: str

    def prober(self, evaluate, j0: float):
        names = {
            "central": ("plus", "minus"),
            "forward": ("plus",),
            "backward": ("minus",),
            "richardson": ("plus", "minus", "half_plus", "half_minus"),
        }[self.method]

        def probe_at(j: int):
            known = {name: float(js[j]) for name, js in zip(names, self.js, strict=True)}
            i = int(self.coords[j])
            try:
                return probe(evaluate, self.flat, i, j, j0, self.steps, known)
            except CostRaised as exc:
                raise CostError(
                    f"the cost raised {type(exc.__cause__).__name__} while probing coordinate "
                    f"{i} at a second step: {exc.__cause__}"
                ) from exc.__cause__

        return probe_at


def _dtype(opts: Any):
    return np.complex128 if opts.method == "complex" else np.float64


def sweep_leaves(
    evaluate, arrays, leaves, coords, j0, opts: Any, tick, workers=None, payload=None, batched=None
):
    """Sweep every parameter's checked coordinates: here, on ``workers``, or ``batched``.

    ``batched(name, flat, coords, values)`` evaluates a whole chunk at once (a
    framework's vmap) and returns one array of cost values per point set.
    Returns a :class:`LeafSweep` per parameter name. On workers the cost values
    are the same, bit for bit, as here.
    """
    n_points = _policy.EVALS_PER_COORDINATE[opts.method]
    plans = {}
    for leaf in leaves:
        flat = arrays[leaf.name].reshape(-1)  # a view: the working array is C-contiguous
        c = coords[leaf.name]
        steps = make_steps(opts.method, flat.real[c], opts.eps)
        js = [np.empty(c.size, dtype=_dtype(opts)) for _ in range(n_points)]
        plans[leaf.name] = (leaf, flat, c, steps, js)

    def chunks(size: int):
        for name, (_, _, c, steps, _) in plans.items():
            for start in range(0, c.size, size):
                part = slice(start, start + size)
                points = points_for(opts.method, steps.theta[part], steps.h[part])
                yield name, start, c[part].tolist(), [p.tolist() for p in points]

    def store(name: str, start: int, part: list[np.ndarray]) -> None:
        js = plans[name][4]
        if opts.method == "complex" and part[0].dtype.kind != "c":
            js[0] = js[0].real  # the cost dropped the imaginary part: refused below
        for k in range(n_points):
            js[k][start : start + len(part[k])] = part[k]

    if batched is not None:
        for name, start, idx, values in chunks(CHUNK):
            flat = plans[name][1]
            store(name, start, [np.asarray(v) for v in batched(name, flat, idx, values)])
            if tick is not None:
                tick(len(idx))
            evaluate.count += len(idx) * len(values)
    elif workers is None:
        for name, start, idx, values in chunks(CHUNK):
            try:
                store(name, start, sweep(evaluate, plans[name][1], values, idx, tick))
            except SweepInterrupted as exc:
                raise _located(exc, plans[name][0], opts) from _user_cause(exc)
    else:
        _sweep_on(workers, payload, chunks, store, evaluate, plans, opts, tick)
    return {
        name: _finish(leaf, flat, c, steps, js, j0, opts)
        for name, (leaf, flat, c, steps, js) in plans.items()
    }


def _sweep_on(workers, payload, chunks, store, evaluate, plans, opts, tick) -> None:
    from ._parallel import Chunk

    total = sum(plan[2].size for plan in plans.values())
    size = int(np.clip(total // (4 * workers.n), 64, CHUNK))
    work = [Chunk(name, start, idx, values) for name, start, idx, values in chunks(size)]

    def done(chunk: Chunk, result: tuple) -> None:
        evaluate.count += result[-1]
        if result[0] == "raised":
            _, index, point, exc, _ = result
            located = _located(SweepInterrupted(index, point), plans[chunk.leaf][0], opts, exc)
            raise located from exc
        store(chunk.leaf, chunk.start, result[1])
        if tick is not None:
            tick(len(chunk.coords))

    try:
        workers.run(payload, work, done)
    except BaseException:
        workers.close(cancel=True)
        raise
    workers.close()


def _finish(leaf, flat, coords, steps, js, j0, opts: Any) -> LeafSweep:
    if opts.method == "complex" and js[0].dtype.kind != "c":
        raise CostError(
            "method='complex' needs a cost that carries complex input through to its output, "
            "but it returned a real value (np.real, np.abs or a float() cast drops the imaginary "
            "part); make the cost complex-safe, or use method='central'"
        )
    for k, values_k in enumerate(js):
        bad = ~np.isfinite(values_k)
        if np.any(bad):
            j = int(np.flatnonzero(bad)[0])
            raise CostError(
                f"the cost is {values_k[j]} at {location(leaf, int(coords[j]), k, opts)}; "
                "the step leaves the cost's domain there (log(0), overflow?). Pass a smaller "
                "eps, or check the parameter's value"
            )
    numeric = estimate(opts.method, j0, js, steps.h)
    second = None
    if opts.method in ("central", "richardson"):
        second = np.abs(js[0] - 2 * j0 + js[1]) / steps.h
    return LeafSweep(flat, coords, steps, js, numeric, second, opts.method)


def location(leaf: _tree.Leaf, i: int, k: int, opts: Any) -> str:
    offset = {
        "central": ("+ h", "- h"),
        "forward": ("+ h",),
        "backward": ("- h",),
        "richardson": ("+ h", "- h", "+ h/2", "- h/2"),
        "complex": ("+ ih",),
    }[opts.method]
    index = index_tuple(i, leaf.shape)
    at = f"{leaf.name}[{', '.join(map(str, index))}]" if index else leaf.name
    return f"{at} {offset[min(k, len(offset) - 1)]}"


def _user_cause(exc: SweepInterrupted) -> BaseException | None:
    cause = exc.__cause__
    return cause.__cause__ if isinstance(cause, CostRaised) else cause


def _located(exc: SweepInterrupted, leaf: _tree.Leaf, opts: Any, cause=None) -> CostError:
    cause = _user_cause(exc) if cause is None else cause
    at = location(leaf, exc.index, exc.point, opts)
    if isinstance(cause, CostError):
        return CostError(f"{cause} (at {at})")
    return CostError(f"the cost raised {type(cause).__name__} at {at}: {cause}")
