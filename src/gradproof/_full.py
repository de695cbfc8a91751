"""mode="full" and mode="sample": every coordinate, or k of them, perturbed in turn.

The sweep gives each coordinate's numeric partial; the cost's round-off is
measured at the most sensitive smooth coordinates; each parameter's partials
are judged (doubtful ones probed at a second step) and diagnosed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _compare, _diagnose, _policy, _tree
from ._compare import Judgement, Partials, flat64
from ._cost import Evaluator
from ._finite import NoiseSite, cost_noise
from ._options import Options
from ._parallel import Task, Workers
from ._progress import Progress
from ._records import Outcome, TensorReport
from ._sweep import Batched, LeafSweep, sweep_leaves
from ._tree import Leaf, index_tuple


def run(
    evaluate: Evaluator,
    arrays: dict[str, np.ndarray],
    params: Any,
    leaves: list[Leaf],
    analytic: dict[str, np.ndarray],
    *,
    j0: float,
    spread: float,
    opts: Options,
    batched: Batched | None = None,
) -> Outcome:
    """Check every coordinate (``opts.mode == "full"``) or a seeded sample of ``opts.k``."""
    coords = _coordinates(leaves, opts)
    bar = Progress(sum(c.size for c in coords.values()), "gradproof", opts.progress)
    try:
        if opts.executor is not None:
            task = Task(
                evaluate.cost,
                params,
                evaluate.rng_state,
                np.complex128 if opts.scheme.is_complex else np.float64,
                evaluate.replay,
                evaluate.complex_ok,
            )
            with Workers(opts.executor, task) as workers:
                sweeps = sweep_leaves(
                    evaluate, arrays, leaves, coords, j0, opts, tick=bar.tick, workers=workers
                )
        else:
            sweeps = sweep_leaves(
                evaluate, arrays, leaves, coords, j0, opts, tick=bar.tick, batched=batched
            )
    finally:
        bar.close()
    partials = {
        leaf.name: sweeps[leaf.name].partials(opts.scheme, j0, flat64(analytic[leaf.name]))
        for leaf in leaves
    }
    noise = _noise(evaluate, sweeps, partials, j0, opts) + spread

    tensors: dict[str, TensorReport] = {}
    judged_g, judged_n = [], []
    for leaf in leaves:
        s, p = sweeps[leaf.name], partials[leaf.name]
        judgement = _compare.judge(
            p,
            scheme=opts.scheme,
            noise=noise,
            analytic_rel=_policy.ANALYTIC_ROUNDOFF.get(analytic[leaf.name].dtype, 0.0),
            tol=opts.tol,
            probe_at=None if opts.scheme.is_complex else s.prober(opts.scheme, evaluate, j0),
        )
        dtype = str(analytic[leaf.name].dtype)
        tensors[leaf.name] = _tensor_report(leaf, s.coords, p, judgement, opts, dtype)
        # Kinks are left out of the verdict, and so out of the difference too.
        judged_g.append(p.analytic[judgement.judged])
        judged_n.append(p.numeric[judgement.judged])
    n_all = np.concatenate(judged_n)
    full = opts.mode == "full"
    return Outcome(
        tensors=tensors,
        difference=_compare.difference(np.concatenate(judged_g), n_all),
        numeric_all_zero=not np.any(n_all),
        step=float(np.median(np.concatenate([s.steps.h for s in sweeps.values()]))),
        numerical=_tree.from_flat(params, leaves, {n: s.numeric for n, s in sweeps.items()})
        if full
        else None,
        analytic=_tree.from_flat(params, leaves, analytic) if full else None,
    )


def _coordinates(leaves: list[Leaf], opts: Options) -> dict[str, np.ndarray]:
    """The flat indices checked in each parameter: all of them, or a seeded sample."""
    if opts.mode == "full":
        return {leaf.name: np.arange(leaf.size) for leaf in leaves}
    assert opts.k is not None  # resolved by Options for mode="sample"
    rng = np.random.default_rng(opts.seed)
    return {
        leaf.name: np.sort(rng.choice(leaf.size, size=min(opts.k, leaf.size), replace=False))
        for leaf in leaves
    }


def _noise(
    evaluate: Evaluator,
    sweeps: dict[str, LeafSweep],
    partials: dict[str, Partials],
    j0: float,
    opts: Options,
) -> float:
    """The absolute error of one cost value, measured at the most sensitive smooth coordinates."""
    if opts.scheme.is_complex:
        return cost_noise(evaluate, [], j0)
    # A kink inside the measuring stencil would read as noise: smooth coordinates only.
    candidates = []
    for name, p in partials.items():
        size = np.abs(p.numeric)
        smooth = size > 0
        if p.second_difference is not None:
            smooth &= p.second_difference <= _policy.KINK_SCREEN * size
        top = np.flatnonzero(smooth)
        top = top[np.argsort(-size[top], kind="stable")][: _policy.NOISE_COORDINATES]
        candidates += [(size[j], name, int(j)) for j in top]
    candidates.sort(key=lambda c: -c[0])
    sites = [
        NoiseSite(
            name, sweeps[name].flat, int(sweeps[name].coords[j]), float(sweeps[name].steps.h[j])
        )
        for _, name, j in candidates[: _policy.NOISE_COORDINATES]
    ]
    return cost_noise(evaluate, sites, j0)


def _tensor_report(
    leaf: Leaf, coords: np.ndarray, p: Partials, judgement: Judgement, opts: Options, dtype: str
) -> TensorReport:
    judged = judgement.judged
    errors = np.abs(p.analytic - p.numeric)
    masked = np.where(judged, errors, -1.0)
    worst = int(np.argmax(masked)) if masked.size else 0
    wrong = judgement.wrong
    diff = _compare.difference(p.analytic[judged], p.numeric[judged])
    if judgement.failed:
        sampled = None if opts.mode == "full" else coords
        explanation = _diagnose.diagnose(leaf.name, leaf.shape, p, judgement, sampled)
    else:
        explanation = _diagnose.within_numerics(diff, opts.tol)
    return TensorReport(
        name=leaf.name,
        shape=leaf.shape,
        passed=not judgement.failed,
        difference=diff,
        max_abs_error=float(max(masked[worst], 0.0)) if masked.size else 0.0,
        worst_index=index_tuple(coords[worst], leaf.shape) if coords.size else (),
        scale=_diagnose.fit_scale(p.analytic[judged], p.numeric[judged]),
        checked=int(p.analytic.size),
        explanation=explanation,
        wrong=int(wrong.size),
        wrong_indices=tuple(index_tuple(coords[j], leaf.shape) for j in wrong[:10]),
        kinks=tuple(index_tuple(coords[j], leaf.shape) for j in judgement.indices(_compare.KINK)),
        probed=judgement.probed,
        dtype=dtype,
    )
