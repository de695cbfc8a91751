"""Full and sampled checks: every coordinate, or k of them, perturbed in turn."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from . import _compare, _diagnose, _parallel, _policy, _tree
from ._compare import flat64
from ._cost import CostRaised
from ._errors import CostError
from ._finite import noise_level
from ._progress import Progress
from ._report import TensorReport, index_tuple
from ._sweep import LeafSweep, sweep_leaves

if TYPE_CHECKING:
    from ._check import Options


def run_phase(
    evaluate, arrays, params, leaves, analytic, j0, spread, opts, mode, executor=None, batched=None
):
    coords = _coordinates(leaves, opts, mode)
    total = sum(c.size for c in coords.values())
    bar = Progress(total, "gradproof", opts.progress)
    workers = payload = None
    if executor is not None:
        payload = _parallel.payload_for(
            evaluate.cost,
            params,
            evaluate.rng_state,
            np.float64 if opts.method != "complex" else np.complex128,
            evaluate.replay,
            evaluate.complex_ok,
        )
        workers = _parallel.Workers(executor)
    try:
        sweeps = sweep_leaves(
            evaluate, arrays, leaves, coords, j0, opts, bar.tick, workers, payload, batched
        )
    finally:
        bar.close()
    noise = _cost_noise(evaluate, leaves, sweeps, j0, opts) + spread

    tensors: dict[str, TensorReport] = {}
    judged_g, judged_n = [], []
    for leaf in leaves:
        s = sweeps[leaf.name]
        g = flat64(analytic[leaf.name])[s.coords]
        rel = _policy.ANALYTIC_ROUNDOFF.get(analytic[leaf.name].dtype, 0.0)
        judgement = _compare.judge(
            opts.method,
            g,
            s.numeric,
            s.steps.h,
            noise,
            rel,
            opts.tol,
            s.second_difference,
            s.prober(evaluate, j0) if opts.method != "complex" else None,
        )
        tensors[leaf.name] = _tensor_report(leaf, g, s, judgement, opts, analytic, mode)
        # Kinks are left out of the verdict, and so out of the difference too.
        judged = _compare.judged_mask(judgement)
        judged_g.append(g[judged])
        judged_n.append(s.numeric[judged])
    n_all = np.concatenate(judged_n)
    numerical = analytic_tree = None
    if mode == "full":
        by_path = {leaf.path: leaf for leaf in leaves}

        def shaped(path, _):
            leaf = by_path[path]
            values = sweeps[leaf.name].numeric
            return float(values[0]) if leaf.is_scalar else values.reshape(leaf.shape).copy()

        numerical = _tree.rebuild(params, shaped)

        def analytic_of(path, _):
            leaf = by_path[path]
            a = np.asarray(analytic[leaf.name], dtype=np.float64)
            return float(a.reshape(-1)[0]) if leaf.is_scalar else a.reshape(leaf.shape).copy()

        analytic_tree = _tree.rebuild(params, analytic_of)
    h_all = np.concatenate([s.steps.h for s in sweeps.values()])
    return _compare.Outcome(
        tensors=tensors,
        difference=_compare.difference(np.concatenate(judged_g), n_all),
        numeric_all_zero=not np.any(n_all),
        step=float(np.median(h_all)),
        numerical=numerical,
        analytic=analytic_tree,
    )


def _coordinates(leaves: list[_tree.Leaf], opts: Options, mode: str) -> dict[str, np.ndarray]:
    """The flat indices checked in each parameter: all of them, or a seeded sample."""
    if mode == "full":
        return {leaf.name: np.arange(leaf.size) for leaf in leaves}
    k = opts.k if opts.k is not None else _policy.SAMPLE_K
    rng = np.random.default_rng(opts.seed)
    return {
        leaf.name: np.sort(rng.choice(leaf.size, size=min(k, leaf.size), replace=False))
        for leaf in leaves
    }


def _cost_noise(evaluate, leaves, sweeps, j0: float, opts: Options) -> float:
    """The absolute error of one cost value: modelled, and measured where it can be."""
    model = _policy.COST_ROUNDOFF * _policy.UNIT_ROUNDOFF * abs(j0)
    if opts.method == "complex":
        return model
    # Sample the most sensitive coordinates that look smooth: a kink inside the
    # stencil would read as noise.
    candidates = []
    for leaf in leaves:
        s = sweeps[leaf.name]
        size = np.abs(s.numeric)
        smooth = size > 0
        if s.second_difference is not None:
            smooth &= s.second_difference <= _policy.KINK_SCREEN * size
        top = np.flatnonzero(smooth)
        top = top[np.argsort(-size[top], kind="stable")][: _policy.NOISE_COORDINATES]
        candidates += [(size[j], leaf.name, int(j)) for j in top]
    candidates.sort(key=lambda c: -c[0])
    measured = []
    for _, name, j in candidates[: _policy.NOISE_COORDINATES]:
        s = sweeps[name]
        i = int(s.coords[j])
        try:
            sigma = noise_level(evaluate, s.flat, i, j0, float(s.steps.h[j]))
        except CostRaised as exc:
            raise CostError(
                f"the cost raised {type(exc.__cause__).__name__} while its round-off was "
                f"measured near {name}: {exc.__cause__}"
            ) from exc.__cause__
        measured.append(sigma)
    sigma = float(np.median(measured)) if measured else 0.0
    return max(model, _policy.NOISE_MARGIN * sigma)


def _tensor_report(leaf, g, s: LeafSweep, judgement, opts: Options, analytic, mode) -> TensorReport:
    numeric, coords = s.numeric, s.coords
    judged = _compare.judged_mask(judgement)
    errors = np.abs(g - numeric)
    masked = np.where(judged, errors, -1.0)
    worst = int(np.argmax(masked)) if masked.size else 0
    wrong = np.flatnonzero(judgement.status >= _compare.WRONG)
    failed = judgement.failed
    diff = _compare.difference(g[judged], numeric[judged])
    diag = _diagnose.diagnose(
        leaf.name,
        leaf.shape,
        g,
        numeric,
        wrong,
        judged,
        failed,
        diff,
        opts.tol,
        coords=None if mode == "full" else coords,
    )
    return TensorReport(
        name=leaf.name,
        shape=leaf.shape,
        passed=not failed,
        difference=diff,
        max_abs_error=float(max(masked[worst], 0.0)) if masked.size else 0.0,
        worst_index=index_tuple(coords[worst], leaf.shape) if coords.size else (),
        scale=_diagnose.fit_scale(g[judged], numeric[judged]),
        diagnosis=diag.sentence,
        checked=int(g.size),
        pattern=diag.pattern,
        finding=diag.finding,
        cause=diag.cause,
        wrong=int(wrong.size),
        wrong_indices=tuple(index_tuple(coords[j], leaf.shape) for j in wrong[:10]),
        kinks=tuple(index_tuple(coords[j], leaf.shape) for j in judgement.indices(_compare.KINK)),
        probed=judgement.probed,
        dtype=str(analytic[leaf.name].dtype),
    )
