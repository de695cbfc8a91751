"""What the framework front-ends share: running a check over an adapter.

An adapter (``gradproof.torch``'s or ``gradproof.jax``'s) turns a framework's
function into what the engine checks: float64 parameter arrays by name, a
cost over such arrays, the framework's own gradient, and a batched
evaluation of many perturbed copies at once (vmap).
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from . import _check, _policy
from ._compare import Accepted
from ._errors import DerivativeRaised, GradientSpecError
from ._options import Options
from ._policy import UNIT_ROUNDOFF
from ._records import NO_DIAGNOSIS, Diagnosis, TensorReport
from ._report import Report
from ._tree import index_tuple

# Elements of perturbed copies that one batched (vmap) evaluation may hold.
BATCH_ELEMENTS = 1 << 23


def weight_seed(seed: int, stream: int) -> int:
    """The seed of the random output weights (stream 0) and Hessian directions (stream 1).

    Kept apart from ``seed`` itself: a user's inputs drawn with the same small
    seed (``manual_seed(0)``) would otherwise be aligned with the weights.
    """
    return (seed * 1_000_003 + 0x5EED_0000 + stream) % 2**63


class Adapter(Protocol):
    params: dict[str, np.ndarray]
    magnitude: float  # the size of the terms the cost sums (0: its value is the measure)

    def cost(self, arrays: dict[str, np.ndarray]) -> float: ...

    def analytic(self) -> dict[str, np.ndarray]: ...

    def batched(
        self, name: str, flat: np.ndarray, coords: list[int], values: list[list[float]]
    ) -> Sequence[np.ndarray]: ...

    def notes(self) -> list[str]: ...


def check_one(adapter: Adapter, opts: Options, dropin: bool = False) -> Report:
    """Check the adapter's gradient; its notes (set while it ran) lead the warnings.

    A derivative the framework raised on is this check's finding: every
    parameter fails with the exception named, and no finite difference is taken.
    A ``dropin`` check takes no second evaluation at the check point before it
    starts (its determinism is judged from the final one). An adapter whose
    ``trace_origin`` is false leaves where an error enters to its front-end.
    """
    batched = opts.mode in ("full", "sample")
    try:
        analytic = adapter.analytic()
    except DerivativeRaised as raised:
        return _raised(adapter.params, opts, raised)
    front = _check.FrontEnd(
        batched=adapter.batched if batched else None,
        framework=True,
        cost_magnitude=adapter.magnitude,
        spread_first=not dropin,
        left_out=getattr(adapter, "left_out", None) or None,
        trace_origin=getattr(adapter, "kind", Derivative.REV) is Derivative.REV
        and getattr(adapter, "trace_origin", True),
    )
    report = _check.check_with(adapter.cost, adapter.params, analytic, opts, front)
    notes = adapter.notes()
    # how the evaluations ran, for the record (a front-end's own keys in policy)
    record: dict[str, Any] = getattr(adapter, "record", dict)()
    if record:
        report = dataclasses.replace(report, policy={**report.policy, **record})
    return dataclasses.replace(report, warnings=notes + report.warnings) if notes else report


def _raised(params: dict[str, np.ndarray], opts: Options, raised: DerivativeRaised) -> Report:
    explanation = Diagnosis(
        "raised",
        f"{raised.what} raised {raised.error}",
        f"{raised.what} cannot be computed at this point: a bug in a custom rule (a Function's "
        "backward or jvp), or a derivative the framework itself gets wrong; call it alone to "
        "see the traceback",
    )
    tensors = {
        name: TensorReport(
            name=name,
            shape=a.shape,
            passed=False,
            difference=1.0,
            max_abs_error=float("nan"),
            worst_index=(),
            scale=None,
            checked=0,
            explanation=explanation,
        )
        for name, a in params.items()
    }
    return Report(
        passed=False,
        difference=1.0,
        tol=opts.tol,
        tensors=tensors,
        evaluations=0,
        numerical=None,
        warnings=[],
        method=opts.method,
        eps=opts.eps,
        mode=opts.mode,
        policy=opts.policy(),
    )


MODES = ("rev", "fwd")


class Derivative(str, enum.Enum):
    """The derivative a checker checks: ``REV``, reverse mode (the gradient, VJPs);
    ``FWD``, forward mode (JVPs); ``ORDER``, one order up: the gradient of
    ``x -> <grad g(x), w>``, ``g`` the objective one order lower. Its values are the
    ``modes`` a caller names (``"rev"``, ``"fwd"``)."""

    REV = "rev"
    FWD = "fwd"
    ORDER = "order"


class Checker(Adapter, Protocol):
    """An adapter for one output and one `Derivative` (``ORDER`` at a depth of 2 or more)."""

    # The outputs checked, each in turn: [None] for a single one, else their positions
    # among the function's array outputs.
    output_indices: list[int | None]
    complex: set[str]  # complex inputs, checked as their real and imaginary parts
    last_analytic: dict[str, np.ndarray]  # the derivative the last run checked


@dataclass(frozen=True)
class Request:
    """What a front-end is asked to check of one function: with which options, which
    derivatives (``modes``: ``"rev"``, ``"fwd"``), and up to which ``order``."""

    opts: Options
    modes: tuple[str, ...] = ("rev",)
    order: int = 1

    def using(self, opts: Options) -> Request:
        """The same derivatives, checked with other options."""
        return dataclasses.replace(self, opts=opts)


def check_all(
    make: Callable[..., Checker], request: Request, convention: str, dropin: bool = False
) -> Report:
    """Every requested check of one function (outputs × modes × orders), as one report.

    ``make(output, kind, depth)`` builds the checker for one output of a tuple
    (``None`` for a single output) and one kind of derivative (``depth``: the order
    of an ``"order"`` check). ``dropin``: a drop-in's check (see `check_one`).
    """
    opts, modes, order = request.opts, request.modes, request.order
    first = make(None, Derivative.REV)
    outputs = first.output_indices
    parts, extra = [], []
    for output in outputs:
        where = "" if output is None else f"[output {output}]"
        analytic: dict[str, dict[str, np.ndarray]] = {}
        mode_reports: list[Report] = []
        left_out: dict[str, np.ndarray] = {}
        for kind in map(Derivative, modes):
            # the first checker serves the first check, when it is the same one
            reuse = output is None and kind is Derivative.REV
            checker = first if reuse else make(output, kind)
            report = conjugation(
                check_one(checker, opts, dropin), sorted(checker.complex), convention
            )
            analytic[kind] = checker.last_analytic
            mode_reports.append(report)
            for name, mask in (getattr(checker, "left_out", None) or {}).items():
                left_out[name] = left_out.get(name, False) | mask
            parts.append(
                (
                    " ".join(x for x in (where, "[fwd]" if kind is Derivative.FWD else "") if x),
                    report,
                )
            )
        if len(analytic) == 2 and all(analytic.values()):  # (a mode that raised has none)
            floors = _roundoff_gradients(checker)
            # both modes carry the round-off of the precision the cost was found to run in
            unit = max(r.policy.get("cost_unit", UNIT_ROUNDOFF) for r in mode_reports)
            agreement = min(
                max(_policy.MODES_AGREEMENT, _policy.MODES_AGREEMENT_LOW * unit),
                _policy.MODES_AGREEMENT_MAX,
            )
            allowed = ModesAllowance(agreement, opts.accepted, floors, left_out)
            extra += consistencies(analytic["fwd"], analytic["rev"], where, allowed)
        for depth in range(2, order + 1):
            label = " ".join(x for x in (where, f"[order {depth}]") if x)
            parts.append((label, check_one(make(output, Derivative.ORDER, depth), opts, dropin)))
    return combine(parts, extra)


def level_weights(
    seed: int, shapes: dict[str, tuple[int, ...]], depth: int
) -> list[dict[str, np.ndarray]]:
    """The directions ``w`` of an order-``depth`` check, one set per level below it:
    level k's ``x -> <grad g(x), w_k>`` (level 1 keeps stream 1, as order 2 always drew)."""
    out = []
    for level in range(1, depth):
        generator = np.random.default_rng(weight_seed(seed, level))
        out.append({n: generator.standard_normal(shape) for n, shape in shapes.items()})
    return out


def real_parts(values: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], set[str]]:
    """The arrays a front-end checks, as float64 copies by name, and which were complex:
    a complex array is checked as its real and imaginary parts, ``"z.real"`` and
    ``"z.imag"`` (each framework's gradient of a real cost, in its own convention, is
    then read back by `conjugation`)."""
    complex_ = {n for n, v in values.items() if np.iscomplexobj(v)}
    params = {}
    for n, v in values.items():
        if n in complex_:
            # np.array, not np.ascontiguousarray: that makes a 0-d array 1-d
            params[f"{n}.real"] = np.array(v.real, dtype=np.float64, order="C")
            params[f"{n}.imag"] = np.array(v.imag, dtype=np.float64, order="C")
        else:
            params[n] = np.array(v, dtype=np.float64)
    return params, complex_


def lifted(
    cost: Callable[[Any], Any],
    gradient: Callable[[Callable[[Any], Any], int], Callable[[Any], Any]],
    inner: Callable[[Any, Any, int], Any],
    weights: Sequence[Any],
    depth: int,
) -> Callable[[Any], Any]:
    """The objective an order-``depth`` check differentiates: ``cost``, lifted one order
    up per level, ``x -> <grad g(x), w>`` with ``g`` the objective a level lower and ``w``
    that level's directions (``weights[level - 2]``); its gradient is the ``depth``-th
    derivative along them (at depth 2, the Hessian times ``w``). Depth 1 is ``cost``.

    The framework supplies its two primitives: ``gradient(g, level)``, the function
    ``x -> grad g(x)`` (``level`` says which objective it lifts into, for an eager
    framework that must know whether to record a graph for a derivative taken later),
    and ``inner(grads, w, level)``, the scalar ``<grad g(x), w>``. The same recursion
    gives every order's objective in both front-ends (as autograd's ``test_util`` checks
    higher orders); the derivative checked is then taken of it, in reverse mode, or in
    forward mode by JVPs (torch's one tangent per element; JAX's ``jacfwd``, which also
    lifts the orders below where only forward mode is checked)."""
    objective = cost
    for level in range(2, depth + 1):
        objective = _along(gradient(objective, level), inner, weights[level - 2], level)
    return objective


def _along(
    gradient: Callable[[Any], Any], inner: Callable[[Any, Any, int], Any], w: Any, level: int
) -> Callable[[Any], Any]:
    def objective(x: Any) -> Any:
        return inner(gradient(x), w, level)

    return objective


def one_by_one(
    adapter: Adapter, name: str, flat: np.ndarray, coords: list[int], values: list[float]
) -> np.ndarray:
    """The cost with ``name``'s coordinate ``coords[j]`` set to ``values[j]``, one at a
    time: an adapter's ``batched`` where its framework cannot batch the cost."""
    arrays = dict(adapter.params)
    work = flat.copy()
    arrays[name] = work.reshape(adapter.params[name].shape)
    out = np.empty(len(coords))
    for j, (i, v) in enumerate(zip(coords, values, strict=True)):
        work[i] = v
        out[j] = adapter.cost(arrays)
        work[i] = flat[i]
    return out


def runs_alone(
    adapter: Adapter, name: str, flat: np.ndarray, coords: list[int], values: list[list[float]]
) -> bool:
    """Whether a chunk's first evaluation succeeds one by one: an error seen only when
    batched is the batching's, not the cost's own."""
    try:
        one_by_one(adapter, name, flat, coords[:1], next(v[:1] for v in values))
    except Exception:
        return False
    return True


def validate_modes(caller: str, modes: Sequence[str], order: int) -> tuple[str, ...]:
    """``modes`` and ``order`` checked: which derivatives a front-end is asked to verify."""
    if isinstance(modes, str):
        modes = (modes,)
    modes = tuple(modes)
    bad = [m for m in modes if m not in MODES]
    if not modes or bad:
        raise GradientSpecError(
            f"{caller}: modes must name 'rev' (the backward, VJP) and/or 'fwd' (forward mode, "
            f"JVP), got {modes!r}"
        )
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or order < 1:
        raise GradientSpecError(
            f"{caller}: order must be a positive integer (1: first derivatives; 2: second "
            f"derivatives too; 3 and up: higher ones too), got {order!r}"
        )
    return modes


def _roundoff_gradients(checker: Checker) -> dict[str, np.ndarray]:
    """Per element, the gradient below which the cost cannot even represent its effect:
    ``_policy.ROUNDOFF_GRADIENT · |J| / max(1, |θ|)``, a change of J by 1e-13 of itself when θ
    doubles. Gradients that small are round-off in either mode (the gradient of a
    constant, corrcoef of two observations: round-off of terms larger than J), and
    differ as round-off does; no float64 computation through J can use them."""
    j0 = abs(float(checker.cost(checker.params)))
    level = _policy.ROUNDOFF_GRADIENT * max(j0, checker.magnitude)
    return {n: level / np.maximum(1.0, np.abs(a)) for n, a in checker.params.items()}


@dataclass(frozen=True)
class ModesAllowance:
    """What forward and reverse mode may differ by: ``agreement``, relative to both and
    to the whole gradient's scale (``MODES_AGREEMENT`` unless the cost runs in a lower
    precision); a caller's own tolerances (``accepted``), which accept a disagreement
    within them; and by parameter, the gradients the cost cannot represent (``floors``,
    see `_roundoff_gradients`) and the elements a front-end left out in either mode
    (``skip``)."""

    agreement: float = _policy.MODES_AGREEMENT
    accepted: Accepted | None = None
    floors: dict[str, np.ndarray] | None = None
    skip: dict[str, np.ndarray] | None = None


def consistencies(
    fwd: dict[str, np.ndarray],
    rev: dict[str, np.ndarray],
    where: str,
    allowed: ModesAllowance,
) -> list[TensorReport]:
    """Forward against reverse mode for every parameter, on the scale of the whole gradient
    (a gradient that is zero is round-off in both modes, and agrees)."""
    scale = max((float(np.max(np.abs(g))) for g in rev.values() if g.size), default=0.0)
    label = " ".join(x for x in (where, "[fwd vs rev]") if x)
    return [
        dataclasses.replace(
            consistency(f"{name} {label}", fwd[name], g, scale, allowed, name), check=label
        )
        for name, g in rev.items()
    ]


def consistency(
    name: str,
    fwd: np.ndarray,
    rev: np.ndarray,
    scale: float,
    allowed: ModesAllowance,
    parameter: str,
) -> TensorReport:
    """Forward and reverse mode compared with each other: no finite differences involved
    (``parameter``: whose floors and left-out elements in ``allowed`` apply)."""
    floor = None if allowed.floors is None else allowed.floors.get(parameter)
    skip = None if allowed.skip is None else allowed.skip.get(parameter)
    a, b = fwd.reshape(-1).astype(np.float64), rev.reshape(-1).astype(np.float64)
    gap = np.abs(a - b)
    bound = allowed.agreement * (np.abs(a) + np.abs(b) + scale) + np.finfo(np.float64).tiny
    if floor is not None:  # where both modes are below what the cost can represent
        tiny = np.maximum(np.abs(a), np.abs(b)) <= floor.reshape(-1)
        bound = np.where(tiny, np.maximum(bound, 2 * floor.reshape(-1)), bound)
    disagree = gap > bound
    if allowed.accepted is not None:
        disagree &= ~allowed.accepted(gap, b)
    if skip is not None:
        disagree &= ~skip.reshape(-1)
    wrong = np.flatnonzero(disagree)
    worst = int(np.argmax(gap)) if gap.size else 0
    explanation = NO_DIAGNOSIS
    if wrong.size:
        explanation = Diagnosis(
            "modes",
            f"forward mode (JVP) and reverse mode (VJP) disagree at {wrong.size} of {a.size} "
            "elements, with no finite difference involved",
            "one of the two rules is wrong (a Function's jvp against its backward, or a "
            "custom_jvp against a custom_vjp): the finite-difference checks above say which",
        )
    den = float(np.linalg.norm(a) + np.linalg.norm(b))
    return TensorReport(
        name=name,
        shape=fwd.shape,
        passed=not wrong.size,
        difference=float(np.linalg.norm(a - b)) / den if den else 0.0,
        max_abs_error=float(gap[worst]) if gap.size else 0.0,
        worst_index=index_tuple(worst, fwd.shape) if gap.size else (),
        scale=None,
        checked=int(a.size),
        explanation=explanation,
        wrong=int(wrong.size),
        wrong_indices=tuple(index_tuple(i, fwd.shape) for i in wrong[: _policy.WRONG_SHOWN]),
    )


def combine(parts: list[tuple[str, Report]], extra: Sequence[TensorReport] = ()) -> Report:
    """Several checks of one function (each mode, order and output) as one report.

    Each part's parameters are named with its label, ``"input0 [fwd]"``; its
    warnings are prefixed with it. The difference is the largest of the parts'.
    """
    if len(parts) == 1 and not extra and not parts[0][0]:
        return parts[0][1]
    tensors: dict[str, TensorReport] = {}
    warnings: list[str] = []
    for label, report in parts:
        for name, t in report.tensors.items():
            named = f"{name} {label}".rstrip()
            check = f"{t.check} {label}".strip() if t.check else label
            t = dataclasses.replace(t, name=named, check=check)
            order = re.search(r"\[order (\d+)\]", label)
            if order and t.pattern == "zero":
                lower = int(order.group(1)) - 1
                which = "first derivative" if lower == 1 else f"derivative of order {lower}"
                t = dataclasses.replace(
                    t,
                    explanation=dataclasses.replace(
                        t.explanation,
                        cause=f"the {which} is a constant to the framework: a backward that "
                        "detaches (.detach(), .data, NumPy) or a custom rule without a "
                        "derivative of its own",
                    ),
                )
            tensors[named] = t
        warnings += [f"{label}: {w}" if label else w for w in report.warnings]
    for t in extra:
        tensors[t.name] = t
    first = parts[0][1]
    reports = [r for _, r in parts]
    passed = all(r.passed for r in reports) and all(t.passed for t in extra)
    policy = dict(first.policy)
    policy["checks"] = [label or "rev" for label, _ in parts]
    return Report(
        passed=passed,
        difference=max(r.difference for r in reports),
        tol=first.tol,
        tensors=tensors,
        evaluations=sum(r.evaluations for r in reports),
        numerical=None,
        warnings=warnings,
        method=first.method,
        eps=first.eps,
        mode=first.mode,
        policy=policy,
        deterministic=all(r.deterministic for r in reports),
        seconds=sum(r.seconds for r in reports),
        strict=passed and all(r.strict for r in reports),
        # the unlabelled (reverse-mode) part's rows keep their names: its origin holds
        origin=first.origin if not parts[0][0] else None,
        cost_flat=any(r.cost_flat for r in reports),
    )


def conjugation(report: Report, complex_names: Sequence[str], convention: str) -> Report:
    """A complex input whose imaginary part alone is sign-flipped: a conjugation bug, said so."""
    tensors = dict(report.tensors)
    for n in complex_names:
        re, im = tensors.get(f"{n}.real"), tensors.get(f"{n}.imag")
        if re is None or im is None or im.passed or im.pattern != "sign" or not re.passed:
            continue
        tensors[im.name] = dataclasses.replace(
            im,
            explanation=Diagnosis(
                "conjugate",
                f"the gradient of {n} is the complex conjugate of the right one (its imaginary "
                "part alone has the wrong sign)",
                f"a conjugation bug: {convention}",
            ),
        )
    return dataclasses.replace(report, tensors=tensors)
