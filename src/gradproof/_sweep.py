"""Sweeping parameters' coordinates through a scheme: here, on workers, or in batches.

The sweep is the bulk of a check: each coordinate at each of the scheme's
points. It runs in this process, on worker processes (`_parallel`), or
through a framework's batched evaluation (vmap), and gives the same cost
values, bit for bit, wherever it ran.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _policy
from ._compare import Partials, Prober
from ._cost import CostFailed, Evaluator, blame
from ._errors import CostError, GradientSpecError
from ._finite import (
    NoiseSite,
    Probe,
    Steps,
    Tick,
    automatic_step,
    cost_values,
    make_steps,
    probe,
    rounded_near,
    spacings,
)
from ._options import Options
from ._parallel import Chunk, ChunkResult, Workers
from ._policy import Scheme, offset_label
from ._tree import Leaf, index_tuple

# Coordinates whose perturbed values are materialized at once: bounds the
# memory of a sweep to a small multiple of one parameter.
CHUNK = 1 << 13

# batched(name, flat, coords, values) -> one array of cost values per point set
Batched = Callable[[str, np.ndarray, list[int], list[list[float]]], Sequence[np.ndarray]]


@dataclass(frozen=True)
class Point:
    """Where a mode checks, and how the cost is evaluated there: what `_full.run` and
    `_directional.run` take besides the analytic gradient and the options.

    ``leaves`` and ``arrays`` are the parameters' leaves and the private float64 working
    copy (perturbed in place, put back); ``params`` the caller's structure (a worker
    process rebuilds the cost's argument from it); ``evaluate`` the cost on the working
    copy, ``j0`` its value at the point and ``spread`` how far another evaluation there
    moved; ``seconds`` one evaluation's time (0: not timed); ``batched`` a front-end's
    evaluator of many points at once (vmap), if any; ``left_out`` by parameter, the
    elements a front-end leaves out of the check.
    """

    leaves: list[Leaf]
    arrays: dict[str, np.ndarray]
    params: Any
    evaluate: Evaluator
    j0: float
    spread: float = 0.0
    seconds: float = 0.0
    batched: Batched | None = None
    left_out: dict[str, np.ndarray] | None = None


@dataclass(frozen=True)
class LeafSweep:
    """One parameter's swept coordinates: where, the steps, the cost values and the partials."""

    leaf: Leaf
    flat: np.ndarray  # the working array, flat (a view)
    coords: np.ndarray  # flat indices checked; the arrays below are aligned with them
    steps: Steps
    values: list[np.ndarray]  # cost values at each of the scheme's offsets
    numerical: np.ndarray
    shrunk: int = 0  # coordinates whose step was made smaller to stay in the cost's domain

    def partials(self, scheme: Scheme, j0: float, analytic: np.ndarray) -> Partials:
        """These numeric partials beside the analytic ones (flat, at the same coordinates)."""
        second = None
        if scheme.two_sided:
            jp, jm = self.values[0], self.values[1]
            second = np.abs(jp - 2 * j0 + jm) / self.steps.h
        theta = self.steps.theta.real
        return Partials(analytic[self.coords], self.numerical, self.steps.h, second, theta)

    def prober(self, scheme: Scheme, evaluate: Evaluator, j0: float) -> Prober:
        """Probes coordinate ``coords[j]`` at ±h and ±h/2 (reusing the values swept), or
        at ``±h/shrink`` and ``±h/(2 shrink)``."""

        def probe_at(j: int, shrink: float = 1.0) -> Probe:
            known: dict[float, float] = {}
            if shrink == 1.0:  # (a real scheme's offsets)
                known = {
                    o.real: float(v[j]) for o, v in zip(scheme.offsets, self.values, strict=True)
                }
            i = int(self.coords[j])
            with blame(f"while probing coordinate {i} at a second step"):
                theta, h = float(self.steps.theta[j]), float(self.steps.h[j]) / shrink
                return probe(evaluate, self.flat, i, theta, h, j0, known)

        return probe_at


@dataclass(frozen=True)
class LeafPlan:
    """One parameter's share of a sweep: its coordinates, their steps, and the arrays
    their cost values are stored in (filled in place, chunk by chunk, wherever the
    chunks are evaluated)."""

    leaf: Leaf
    flat: np.ndarray  # the working array, flat (a view)
    coords: np.ndarray  # flat indices checked; ``steps`` and ``values`` are aligned with them
    steps: Steps
    values: list[np.ndarray]  # one array per scheme offset


@dataclass(frozen=True)
class Sweep:
    """What a sweep needs: the cost on the working copy, its value at the point, the
    scheme, and each parameter's `LeafPlan` (by name, in the leaves' order)."""

    evaluate: Evaluator
    j0: float
    scheme: Scheme
    plans: dict[str, LeafPlan]

    def chunks(self, size: int) -> Iterator[Chunk]:
        """The checked coordinates, ``size`` at a time, with the values each takes."""
        for name, plan in self.plans.items():
            c, steps = plan.coords, plan.steps
            for start in range(0, c.size, size):
                part = slice(start, start + size)
                points = self.scheme.points(steps.theta[part], steps.h[part])
                yield Chunk(name, start, c[part].tolist(), [p.tolist() for p in points])

    def store(self, chunk: Chunk, part: Sequence[np.ndarray]) -> None:
        """A chunk's cost values, one array per offset, into its parameter's plan."""
        values = self.plans[chunk.leaf].values
        for k, v in enumerate(part):
            if self.scheme.is_complex and np.asarray(v).dtype.kind != "c":
                _refuse_real()
            values[k][chunk.start : chunk.start + len(v)] = v

    def located(self, failed: CostFailed, name: str) -> CostError:
        """The user's error for a failure at one of parameter ``name``'s points."""
        return _located(failed, self.plans[name].leaf, self.scheme)


def sweep_at(
    point: Point,
    coords: dict[str, np.ndarray],
    opts: Options,
    tick: Tick | None = None,
    workers: Workers | None = None,
) -> dict[str, LeafSweep]:
    """Sweep every parameter's checked coordinates ``coords`` at ``point``: on
    ``workers`` if given, else through the point's batched evaluator (vmap) if it has
    one, else here. Returns a `LeafSweep` per parameter name.

    ``tick(n)`` reports coordinates done (here, about every ``PROGRESS_INTERVAL``
    seconds given the point's time per evaluation).
    """
    sweep = _planned(point.evaluate, point.arrays, point.leaves, coords, point.j0, opts)
    if workers is not None:
        _sweep_on_workers(sweep, workers, tick)
    elif point.batched is not None:
        _sweep_batched(sweep, point.batched, tick)
    else:
        _sweep_here(sweep, tick, point.seconds)
    return _finished(sweep)


def _planned(
    evaluate: Evaluator,
    arrays: dict[str, np.ndarray],
    leaves: list[Leaf],
    coords: dict[str, np.ndarray],
    j0: float,
    opts: Options,
) -> Sweep:
    """The `Sweep` of ``coords``: each parameter's steps, and empty arrays for the cost
    values at them (the sweep fills those)."""
    scheme = opts.scheme
    dtype = np.complex128 if scheme.is_complex else np.float64
    plans = {}
    for leaf in leaves:
        flat = arrays[leaf.name].reshape(-1)  # a view: the working array is C-contiguous
        c = coords[leaf.name]
        steps = make_steps(scheme, flat.real[c], opts.eps, opts.precision_bits)
        values = [np.empty(c.size, dtype=dtype) for _ in scheme.offsets]
        plans[leaf.name] = LeafPlan(leaf, flat, c, steps, values)
    return Sweep(evaluate, j0, scheme, plans)


def _sweep_here(sweep: Sweep, tick: Tick | None, seconds_per_eval: float) -> None:
    """Fill ``sweep``'s values in this process (`_finite.cost_values`, the hot loop),
    ``tick`` called about every ``PROGRESS_INTERVAL`` seconds given ``seconds_per_eval``
    (0: not timed)."""
    per_coordinate = max(seconds_per_eval * sweep.scheme.evaluations, 1e-9)
    stride = int(np.clip(_policy.PROGRESS_INTERVAL / per_coordinate, 1, 512))
    for chunk in sweep.chunks(CHUNK):
        flat = sweep.plans[chunk.leaf].flat
        try:
            got = cost_values(sweep.evaluate, flat, chunk.values, chunk.coords, tick, stride)
            sweep.store(chunk, got)
        except CostFailed as exc:
            raise sweep.located(exc, chunk.leaf) from exc.cause


def _sweep_batched(sweep: Sweep, batched: Batched, tick: Tick | None) -> None:
    """Fill ``sweep``'s values through a front-end's evaluator of many points at once;
    the cost's own errors reach the user as a `CostError` naming the batch."""
    for chunk in sweep.chunks(CHUNK):
        flat = sweep.plans[chunk.leaf].flat
        try:
            part = batched(chunk.leaf, flat, chunk.coords, chunk.values)
        except (CostError, GradientSpecError):
            raise
        except Exception as exc:
            raise CostError(
                f"the cost raised {type(exc).__name__} while a batch of {chunk.leaf} "
                f"coordinates was evaluated: {exc}"
            ) from exc
        sweep.store(chunk, [np.asarray(v) for v in part])
        sweep.evaluate.count += len(chunk.coords) * len(chunk.values)
        if tick is not None:
            tick(len(chunk.coords))


def _sweep_on_workers(sweep: Sweep, workers: Workers, tick: Tick | None) -> None:
    """Fill ``sweep``'s values on worker processes, in chunks sized to give each worker
    about four; a worker's failure is told as this process's would be."""
    total = sum(plan.coords.size for plan in sweep.plans.values())
    size = int(np.clip(total // (4 * workers.n), 64, CHUNK))

    def done(chunk: Chunk, result: ChunkResult) -> None:
        sweep.evaluate.count += result.evaluations
        if result.failed is not None:
            failed = result.failed
            raise sweep.located(failed, chunk.leaf) from failed.cause
        sweep.store(chunk, result.values or [])
        if tick is not None:
            tick(len(chunk.coords))

    workers.run(list(sweep.chunks(size)), done)


def _finished(sweep: Sweep) -> dict[str, LeafSweep]:
    """Each parameter's `LeafSweep`, from the values the sweep stored."""
    return {name: _finish(sweep, plan) for name, plan in sweep.plans.items()}


def _refuse_real() -> None:
    raise CostError(
        "method='complex' needs a cost that carries complex input through to its output, "
        "but it returned a real value (np.real, np.abs or a float() cast drops the imaginary "
        "part); make the cost complex-safe, or use method='central'"
    )


def _finish(sweep: Sweep, plan: LeafPlan) -> LeafSweep:
    """The partials, once every cost value is finite: near the edge of the cost's domain
    (log, sqrt close to 0) the step is made smaller until the points stay inside it."""
    values, steps = plan.values, plan.steps
    bad = np.flatnonzero(~np.all([np.isfinite(v) for v in values], axis=0))
    h = steps.h
    if bad.size:
        h = h.copy()
    for j in bad:
        _shrink_into_domain(sweep, plan, int(j), h)
    final = Steps(steps.theta, h)
    numerical = sweep.scheme.estimate(sweep.j0, values, final.h)
    return LeafSweep(plan.leaf, plan.flat, plan.coords, final, values, numerical, int(bad.size))


def _shrink_into_domain(sweep: Sweep, plan: LeafPlan, j: int, h: np.ndarray) -> None:
    """Coordinate ``j``'s step ``h[j]`` made smaller until the cost is finite at each of
    its points (``h`` and ``plan.values`` updated in place); a `CostError` saying where
    if it never is."""
    i, scheme, values, thetas = int(plan.coords[j]), sweep.scheme, plan.values, plan.steps.theta
    for _ in range(_policy.DOMAIN_RETRIES):
        h[j] /= _policy.DOMAIN_SHRINK
        theta = abs(float(thetas[j].real))
        if theta > 0:  # the edge is often at 0 (log, sqrt): stay well inside it
            h[j] = min(h[j], theta / 2)
        points = [p.tolist() for p in scheme.points(thetas[j : j + 1], h[j : j + 1])]
        try:
            got = cost_values(sweep.evaluate, plan.flat, points, [i])
        except CostFailed as exc:
            raise sweep.located(exc, plan.leaf.name) from exc.cause
        for k, v in enumerate(got):
            values[k][j] = v[0]
        if all(np.isfinite(v[j]) for v in values):
            return
    k = next(k for k, v in enumerate(values) if not np.isfinite(v[j]))
    raise CostError(
        f"the cost is {values[k][j]} at {location(plan.leaf, i, k, scheme)} even at a step "
        f"of {h[j]:.1e}; the step leaves the cost's domain there (log(0), overflow?). "
        "Check the parameter's value, or pass a smaller eps"
    )


def location(leaf: Leaf, i: int, k: int, scheme: Scheme) -> str:
    """Where the ``k``-th point of coordinate ``i`` is, e.g. ``"W1[2, 0] - h"``."""
    index = index_tuple(i, leaf.shape)
    at = f"{leaf.name}[{', '.join(map(str, index))}]" if index else leaf.name
    return f"{at} {offset_label(scheme.offsets[min(k, len(scheme.offsets) - 1)])}"


def _located(failed: CostFailed, leaf: Leaf, scheme: Scheme) -> CostError:
    """The user's error for a failure at one of a sweep's points."""
    return failed.error(f"at {location(leaf, failed.index or 0, failed.point or 0, scheme)}")


def grid_of(
    sweeps: list[LeafSweep], evaluate: Evaluator, j0: float, roundoff: float, complex_step: bool
) -> float:
    """The spacing of the grid the cost's values are rounded to (float16, integers), as
    the sweeps show it (`_finite.quantum`), 0 for none. ``roundoff``: the error of one
    value the check already allows for (its precision's).

    Values of few bits that do not repeat, on a grid wider than ``roundoff`` allows for,
    are a coarse cost's at a step many grid spacings wide (a step given as ``eps``), or
    an exact cost's of short binary fractions; the automatic step tells them apart
    (`_finite.rounded_near`: 6 evaluations, at the coordinates the cost moved most with
    where it is smooth: a kink or a clip crossed by the wide step, not by the automatic
    one, would leave an exact cost unmoved there). Not for the ``complex_step``: no cost
    evaluated at complex points is rounded to a grid."""
    values = np.concatenate([v for s in sweeps for v in s.values]) if sweeps else np.empty(0)
    short, grid, repeats = spacings(j0, values)
    if grid or complex_step or repeats or short / 2 <= roundoff:
        return grid
    smooth = []  # each sweep's largest smooth partials, the largest of them looked at
    for s in sweeps:
        if len(s.values) != 2:  # (the central scheme's ±h only: the second difference
            continue  # tells a kink there; one-sided schemes and Richardson are not looked at)
        second = np.abs(np.real(s.values[0] - 2 * j0 + s.values[1])) / s.steps.h
        size = np.abs(s.numerical)
        kept = np.flatnonzero((second <= _policy.KINK_SCREEN * size) & (size > 0))
        top = kept[np.argsort(-size[kept], kind="stable")][: _policy.NOISE_COORDINATES]
        smooth += [(float(size[j]), s, int(j)) for j in top]
    smooth.sort(key=lambda c: -c[0])
    sites = [
        NoiseSite(
            s.leaf.name,
            s.flat,
            int(s.coords[j]),
            automatic_step(float(np.real(s.flat[s.coords[j]]))),
        )
        for _, s, j in smooth[: _policy.NOISE_COORDINATES]
    ]
    return short if sites and rounded_near(evaluate, sites, j0) else 0.0
