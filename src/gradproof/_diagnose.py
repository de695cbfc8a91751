"""Saying why a parameter's gradient is wrong, from the pattern of its errors."""

from __future__ import annotations

import math

import numpy as np

from . import _policy
from ._compare import Judgement, Partials
from ._records import NO_DIAGNOSIS, Diagnosis
from ._tree import Index


def within_numerics(
    difference: float, tol: float, method: str, eps: float | None, dtype: str = "float64"
) -> Diagnosis:
    """The note for a parameter that passed: why a difference above tol is no bug."""
    if difference <= tol:
        return NO_DIAGNOSIS
    if dtype in _policy.LOW_PRECISION:
        return Diagnosis(
            "numerics",
            f"difference {difference:.1e} is above tol, but within the {dtype} analytic "
            "gradient's own round-off and the finite differences' error",
            "not a bug; a float64 backward gives a smaller difference",
        )
    better = _policy.smaller_difference(method, eps)
    return Diagnosis(
        "numerics",
        f"difference {difference:.1e} is above tol, but within the finite differences' own error",
        f"not a bug; {better} gives a smaller difference" if better else "not a bug",
    )


def steep(difference: float, where: list[list[int]]) -> Diagnosis:
    """The note for a parameter whose difference above tol comes from coordinates where
    the cost is too steep for the automatic step (near a pole or a domain edge, or varying
    faster than the step)."""
    shown = ", ".join(str(i) for i in where[: _policy.FEW_ELEMENTS])
    more = (
        f" and {len(where) - _policy.FEW_ELEMENTS} more"
        if len(where) > _policy.FEW_ELEMENTS
        else ""
    )
    return Diagnosis(
        "steep",
        f"difference {difference:.1e} is above tol where the cost is steep for the step (near "
        f"a pole or the edge of its domain, or varying faster than the step, at {shown}{more}): "
        "judged there at a smaller step, "
        "within the finite differences' error",
        "not a bug; a smaller eps gives a smaller difference (richardson, at the same step, "
        "does not)",
    )


def zero_within_roundoff(floor: float) -> Diagnosis:
    """The note for a parameter whose partials are all at the noise floor on both sides."""
    return Diagnosis(
        "roundoff",
        f"zero within round-off: analytic and numeric partials are all below {floor:.1e}, "
        "what the finite differences can resolve here",
        None,
    )


def coarse(accuracy: float, step: float, why: str, eps_given: bool = False) -> Diagnosis:
    """The note for a parameter checked through a coarse cost, to a stated accuracy."""
    chosen = "the step given" if eps_given else "chosen from the cost's noise"
    return Diagnosis(
        "coarse",
        f"checked to {accuracy:.1e} (at a step of {step:.2g}, {chosen}): {why}",
        "a difference smaller than that cannot be seen; compute the cost in float64 to check "
        "it finer",
    )


def undecided(accuracy: float, step: float, why: str, eps_given: bool) -> Diagnosis:
    """A parameter whose gradient no admissible step resolves through the cost's noise."""
    at = "the step given" if eps_given else "the best step"
    reach = f"{accuracy:.1e}" if math.isfinite(accuracy) else "nothing"
    remedy = (
        "pass eps=None, which chooses the step from the cost's noise, or compute the cost "
        "in float64"
        if eps_given
        else "compute the cost in float64 (no rounding, no float32 step inside), or check "
        "at a point where its gradient is larger"
    )
    return Diagnosis(
        "undecided",
        f"could not be judged: {why}, and at {at} ({step:.2g}) the finite differences "
        f"resolve a difference of {reach} at best, not enough to tell a right gradient "
        "from a wrong one",
        remedy,
    )


def too_coarse() -> Diagnosis:
    """A parameter no step taken could judge: the cost did not move at them, yet moves at
    a larger one (`_outcome.said`)."""
    return Diagnosis(
        "undecided",
        "could not be judged: the cost did not change at the steps taken, though it does "
        "at a larger one: its values are rounded to a grid coarser than the steps' change "
        "(float16, a fixed number of decimals), or it is piecewise constant here",
        "compute the cost in float64, without rounding; a piecewise constant cost has no "
        "derivative here to check",
    )


def noisy_directions(difference: float, none_judged: bool) -> Diagnosis:
    """A parameter directional mode cannot judge on a noisy cost (`_directional._unresolved`)."""
    seen = (
        "every random direction looked like a kink, as the cost's noise makes one-sided "
        "slopes disagree"
        if none_judged
        else f"the directions agree only within the finite differences' error, at a "
        f"difference of {difference:.2g}, as large as a 10% error would give"
    )
    return Diagnosis(
        "undecided",
        f"could not be judged: the cost's measured noise is well above float64 round-off, "
        f"and {seen}",
        "check it with mode='full', which sizes its steps from the cost's noise and says "
        "the accuracy it reached, or compute the cost in float64",
    )


def _clipped(aw: np.ndarray, nw: np.ndarray, analytic: np.ndarray, dname: str) -> Diagnosis | None:
    """Gradient clipping: at every wrong element (two or more) the analytic value is the
    same bound ``±c``, and the numeric one lies beyond it on the same side, while no
    analytic value anywhere exceeds ``c``."""
    if aw.size < 2:
        return None
    bound = float(np.abs(aw[0]))
    at_bound = np.abs(np.abs(aw) - bound) <= 1e-12 * bound
    beyond = (np.sign(nw) == np.sign(aw)) & (np.abs(nw) > bound * (1 + _policy.PATTERN_FIT))
    if bound == 0 or not (np.all(at_bound) and np.all(beyond)):
        return None
    if float(np.max(np.abs(analytic))) > bound * (1 + 1e-12):
        return None
    k = aw.size
    return Diagnosis(
        "clip",
        f"analytic is clipped at ±{bound:.4g}: at all {k} wrong elements it is exactly "
        f"±{bound:.4g} where the numeric one is larger (up to {float(np.max(np.abs(nw))):.4g})",
        f"{dname} is clipped (gradient clipping, or a clamp in the backward pass): the cost's "
        "derivative is not; check before clipping, or with the clipping off",
    )


def left_out(name: str, flat: np.ndarray) -> str | None:
    """The note for a parameter with inf or NaN elements, which no step can move."""
    bad = flat[~np.isfinite(flat)]
    if not bad.size:
        return None
    kinds = ", ".join(sorted({str(v) for v in bad}))
    return (
        f"{name}: {bad.size} element{'s' * (bad.size != 1)} {'are' if bad.size != 1 else 'is'} "
        f"not finite ({kinds}) and were left out of the check"
    )


def not_finite(name: str, shape: Index, flat_indices: np.ndarray) -> Diagnosis:
    """An analytic gradient (from a framework) with inf or NaN where the cost is finite."""
    return Diagnosis(
        "nonfinite",
        f"the analytic gradient is not finite at {flat_indices.size} element"
        f"{'s' * (flat_indices.size != 1)} (first: "
        f"{name}{_fmt_index(int(flat_indices[0]), shape)}), where the cost is finite",
        f"{_grad_name(name)} divides by zero or leaves a log/sqrt/pow domain in the backward pass",
    )


def ignored(name: str) -> Diagnosis:
    """The diagnosis when the cost did not move at all: it ignores its argument."""
    return Diagnosis(
        "flat",
        f"the cost did not change when {name} was perturbed, yet the analytic gradient is not zero",
        "the cost ignores params: make it use the params passed to it, not arrays it closes over",
    )


def fit_scale(analytic: np.ndarray, numerical: np.ndarray) -> float | None:
    """The ``s`` minimizing ``‖g − s·g̃‖``; ``None`` when the numeric side is all zero."""
    nn = float(np.dot(numerical, numerical))
    if nn == 0.0:
        return None
    return float(np.dot(analytic, numerical)) / nn


def _grad_name(name: str) -> str:
    return f"d{name}" if name.isidentifier() else f"the gradient of {name}"


def _fmt_index(flat_index: int, shape: Index) -> str:
    if not shape:
        return "()"
    idx = np.unravel_index(flat_index, shape)
    return "[" + ", ".join(str(int(i)) for i in idx) + "]"


def diagnose(
    name: str,
    shape: Index,
    p: Partials,
    judgement: Judgement,
    coords: np.ndarray | None,
    accuracy: float = 0.0,
) -> Diagnosis:
    """Say why a failed parameter is wrong, from the pattern of its errors.

    Args:
        p: the partials compared, flat and aligned.
        judgement: the verdict on each of them (kinks are left out).
        coords: the flat index in the parameter of each position, when only a
            sample was checked; ``None`` when the arrays cover every element.
        accuracy: how coarse the numeric partials are (a cost's noise allowed no finer
            check, see `_coarse`): a pattern fits to within that.
    """
    fits, explains = (
        max(_policy.PATTERN_FIT, 4 * accuracy),
        min(0.5, max(_policy.PATTERN_EXPLAINS, 4 * accuracy)),
    )
    analytic, numerical = p.analytic, p.numerical
    judged, wrong = judgement.judged, judgement.wrong

    def index_of(position: int) -> int:
        return int(position) if coords is None else int(coords[position])

    dname = _grad_name(name)
    g, gt = analytic[judged], numerical[judged]
    n, k = int(g.size), int(wrong.size)
    g_norm = float(np.linalg.norm(g))
    scale = fit_scale(g, gt)

    if n and not np.any(g) and np.any(gt):
        return Diagnosis(
            "zero",
            f"analytic gradient is zero for all {n} elements; the numeric one is not",
            f"a missing path: {dname} is never computed or never accumulated",
        )
    aw, nw = analytic[wrong], numerical[wrong]
    flat_cost = int(np.count_nonzero((nw == 0) & (aw != 0)))
    dropped = int(np.count_nonzero((aw == 0) & (nw != 0)))
    if k and min(flat_cost, dropped) >= _policy.MASK_SHARE * k / 2:
        return Diagnosis(
            "masks",
            f"analytic is non-zero at {flat_cost} elements where the cost does not change, and "
            f"zero at {dropped} where it does",
            f"{dname} was computed with another mask (a dropout draw, a ReLU pattern) than the "
            "forward pass the cost runs",
        )
    if k and flat_cost >= _policy.MASK_SHARE * k:
        rest = f" (and wrong at {k - flat_cost} others)" if flat_cost < k else ""
        return Diagnosis(
            "unmasked",
            f"analytic is non-zero at {flat_cost} of {n} elements where the cost does not "
            f"change at all{rest}",
            f"a mask forgotten in {dname}'s backward pass (dropout, ReLU or max-pool)",
        )
    disagreement = float(np.linalg.norm(g - gt))
    if scale is not None and n > 0:
        residual = float(np.linalg.norm(g - scale * gt))
        if residual <= fits * g_norm and residual <= explains * disagreement:
            # elements zero on both sides fit any factor: they are no evidence of one
            moved = int(np.count_nonzero((g != 0) | (gt != 0)))
            every = "the single element" if n == 1 else f"all {n} elements"
            if moved == 1 and n > 1:
                every = f"the one non-zero element ({n - 1} are zero on both sides)"
            elif moved < n:
                zero = f"{n - moved} {'is' if n - moved == 1 else 'are'} zero on both sides"
                every = f"all {moved} non-zero elements ({zero})"
            if abs(scale + 1) <= fits:
                return Diagnosis(
                    "sign",
                    f"analytic = -1.00 × numeric for {every}",
                    f"a flipped sign in {dname} (e.g. A - Y written as Y - A)",
                )
            return _scaled(scale, f"for {every}", dname, single=moved <= 1)
    square = coords is None and len(shape) == 2 and shape[0] == shape[1] > 1
    a2 = analytic.reshape(shape) if square else analytic
    n2 = numerical.reshape(shape) if square else numerical
    transposed = float(np.linalg.norm(a2 - n2.T)) if square else np.inf
    if transposed <= fits * max(g_norm, float(np.linalg.norm(n2))) and (
        transposed <= explains * disagreement
    ):
        return Diagnosis(
            "transpose",
            "analytic is the transpose of the numeric gradient",
            f"{dname} is transposed: swap the operands of its product, or its transposes "
            "(dW = dZ · Aᵀ where examples are columns, as in the seeds; dW = Aᵀ · dZ where "
            "they are rows)",
        )
    clipped = _clipped(aw, nw, analytic, dname)
    if clipped is not None:
        return clipped
    if k and np.all(aw == 0):
        return Diagnosis(
            "mask",
            f"analytic is zero at {k} of {n} elements where the numeric one is not",
            f"a missing term in {dname}: a path dropped, or a mask applied where it should not be",
        )
    line = _one_line(shape, [index_of(j) for j in wrong], dname) if k >= 2 else None
    # a whole row or column wrong, even a short one, is that row, not a few elements
    if line is not None and coords is None and k == shape[1 if line.pattern == "row" else 0]:
        return line
    if 0 < k <= _policy.FEW_ELEMENTS and k < n:
        items = [(index_of(i), analytic[i], numerical[i]) for i in wrong]
        return _few(name, shape, items, f"{k} of {n} elements wrong")
    offset = _offset(aw - nw, name, dname)
    if offset is not None:
        return offset
    if line is not None:
        return line
    fit = f" (best fit: analytic ≈ {scale:.3g} × numeric)" if scale is not None else ""
    return Diagnosis(
        "other",
        f"analytic and numeric disagree at {k} of {n} elements, with no simple pattern{fit}",
        f"{dname} is wrong: re-derive each of its terms from the forward pass",
    )


def _one_line(shape: Index, flat_indices: list[int], dname: str) -> Diagnosis | None:
    """The wrong elements of a matrix all in one row, or all in one column, else ``None``."""
    if len(shape) != 2 or not flat_indices:
        return None
    rows, cols = np.unravel_index(flat_indices, shape)
    k = len(flat_indices)
    if np.all(rows == rows[0]) and shape[0] > 1:
        return Diagnosis(
            "row",
            f"all {k} wrong elements lie in row {int(rows[0])}",
            f"one row of {dname} is wrong: look at how that row (unit) is indexed",
        )
    if np.all(cols == cols[0]) and shape[1] > 1:
        return Diagnosis(
            "column",
            f"all {k} wrong elements lie in column {int(cols[0])}",
            f"one column of {dname} is wrong: look at that input feature or example",
        )
    return None


def _scaled(scale: float, where: str, dname: str, single: bool = False) -> Diagnosis:
    """A gradient off by one factor: a stray constant, or (close to 1) a small systematic error.

    The factor is printed with enough digits to show how far it is from 1. One element
    (``single``) fits any factor: a missing term reads the same, and the cause says so.
    """
    off = abs(scale - 1)
    digits = 2 if off >= 0.01 or not off > 0 else min(12, 1 - math.floor(math.log10(off)))
    finding = f"analytic = {scale:.{digits}f} × numeric {where}"
    if single:
        return Diagnosis(
            "scale",
            finding,
            f"a wrong factor or a wrong term in {dname} (one element cannot tell them apart)",
        )
    if off >= 0.01:
        return Diagnosis("scale", finding, f"a stray constant factor in {dname}")
    return Diagnosis(
        "scale",
        finding,
        f"a small systematic error in {dname} (relative {scale - 1:+.1e}): an epsilon, a "
        "rounded constant or an approximation in its backward pass",
    )


def _few(name: str, shape: Index, items: list[tuple[int, float, float]], finding: str) -> Diagnosis:
    listed = "; ".join(
        f"{name}{_fmt_index(i, shape)}: analytic {a:.6g}, numeric {b:.6g}" for i, a, b in items
    )
    return Diagnosis(
        "few",
        f"{finding} ({listed})",
        "an error confined to these elements: an indexing, slicing or boundary mistake",
    )


def along_directions(
    name: str, analytic: np.ndarray, d: np.ndarray, dn: np.ndarray
) -> Diagnosis | None:
    """A whole-parameter pattern seen along random directions, or ``None`` to localize."""
    dname = _grad_name(name)
    k = d.size
    if not np.any(analytic) and np.any(dn):
        return Diagnosis(
            "zero",
            f"analytic gradient is zero; the numeric one is not along {k} random directions",
            f"a missing path: {dname} is never computed or never accumulated",
        )
    scale = fit_scale(d, dn)
    if scale is None or k < 2:
        return None
    residual = float(np.linalg.norm(d - scale * dn))
    if residual > _policy.PATTERN_FIT * float(
        np.linalg.norm(d)
    ) or residual > _policy.PATTERN_EXPLAINS * float(np.linalg.norm(d - dn)):
        return None
    if abs(scale + 1) <= _policy.PATTERN_FIT:
        return Diagnosis(
            "sign",
            f"analytic = -1.00 × numeric along all {k} random directions",
            f"a flipped sign in {dname} (e.g. A - Y written as Y - A)",
        )
    return _scaled(scale, f"along all {k} random directions", dname)


def _offset(gaps: np.ndarray, name: str, dname: str) -> Diagnosis | None:
    """Wrong elements off by one constant, or by one constant per group (a per-example or
    per-channel mean): a term constant across the elements, missing."""
    if gaps.size < _policy.OFFSET_ELEMENTS or not np.all(np.isfinite(gaps)):
        return None
    ordered = np.sort(gaps)
    width = _policy.OFFSET_SPREAD * float(np.max(np.abs(ordered)))
    groups = np.split(ordered, np.flatnonzero(np.diff(ordered) > width) + 1)
    if len(groups) > _policy.OFFSET_GROUPS or any(
        g.size < _policy.OFFSET_ELEMENTS
        or float(np.ptp(g)) > _policy.OFFSET_SPREAD * abs(float(np.mean(g)))
        for g in groups
    ):
        return None
    if len(groups) == 1:
        finding = f"the same {float(np.mean(gaps)):.3g} at each of the {gaps.size} wrong elements"
    else:
        values = ", ".join(f"{float(np.mean(g)):.3g} ({g.size} elements)" for g in groups)
        finding = f"one constant per group of the {gaps.size} wrong elements: {values}"
    return Diagnosis(
        "offset",
        f"analytic − numeric is {finding}",
        f"a term that is constant across {name}'s elements (or across each group of them) is "
        f"missing from {dname}, or extra: a mean or normalization whose dependence on it is "
        "detached or dropped, as x - x.mean().detach() does",
    )


def localized(
    name: str, shape: Index, analytic: np.ndarray, partials: dict[int, float], many: bool
) -> Diagnosis:
    """The elements that bisection found wrong, with their analytic and numeric values."""
    dname = _grad_name(name)
    if not partials:
        return Diagnosis(
            "other",
            "analytic and numeric disagree along random directions, with no simple pattern "
            "and no few elements to blame",
            f"{dname} is wrong throughout: re-derive each of its terms from the forward pass",
        )
    items = [(i, analytic[i], partials[i]) for i in sorted(partials)]
    if len(items) == analytic.size > 1:
        return Diagnosis(
            "other",
            f"all {analytic.size} elements wrong, with no simple pattern",
            f"{dname} is wrong throughout: re-derive each of its terms from the forward pass",
        )
    offset = _offset(np.array([a - b for _, a, b in items]), name, dname) if many else None
    if offset is not None:
        return offset
    if many:
        shown = items[: _policy.FEW_ELEMENTS]
        listed = "; ".join(
            f"{name}{_fmt_index(i, shape)}: analytic {a:.6g}, numeric {b:.6g}" for i, a, b in shown
        )
        return Diagnosis(
            "other",
            f"wrong at {len(items)} or more elements, found by bisection (first: {listed})",
            f"{dname} is wrong in many places: re-derive each of its terms from the forward pass",
        )
    return _few(
        name,
        shape,
        items,
        f"{len(items)} wrong element{'s' * (len(items) != 1)} found by bisection",
    )
