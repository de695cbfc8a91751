"""The records a check produces: frozen, plain data, knowing nothing of how they are shown.

[`TensorReport`][gradproof.TensorReport] is one parameter's verdict; `ReportRecord` the
whole check's (the public [`gradproof.Report`][gradproof.Report] adds its views on top);
`Outcome` is what a mode hands back to the check before the verdict.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ._origin import Origin
from ._tree import Index

# Every key a diagnosis can carry (TensorReport.pattern), with what it says; the
# report's JSON schema (report.schema.json) lists the same, which a test keeps so.
PATTERNS = {
    # wrong
    "scale": "analytic is a constant multiple of numeric (a stray factor)",
    "sign": "analytic is -1 times numeric (a flipped sign)",
    "zero": "analytic is zero everywhere, numeric is not (a missing path)",
    "transpose": "analytic is the transpose of numeric",
    "mask": "analytic is zero where numeric is not (a term dropped, a mask misapplied)",
    "unmasked": "analytic is non-zero where the cost does not change (a mask forgotten)",
    "masks": "both of the above: another mask than the forward pass's",
    "few": "a few elements wrong (an indexing or boundary mistake)",
    "row": "the wrong elements lie in one row",
    "column": "the wrong elements lie in one column",
    "offset": "analytic minus numeric is one constant (per group)",
    "clip": "analytic is clipped at a bound numeric exceeds",
    "other": "wrong with no simple pattern",
    "flat": "the cost did not change at all: it ignores params",
    "nonfinite": "the analytic gradient is inf or nan where the cost is finite",
    "raised": "the framework raised computing the derivative",
    "modes": "forward and reverse mode disagree",
    "conjugate": "a complex gradient in the other framework's convention",
    # not a bug
    "numerics": "above tol only through the finite differences' own error",
    "steep": "above tol where the cost is steep for the step",
    "roundoff": "zero within round-off on both sides",
    "coarse": "checked to the accuracy the cost's coarse values allow",
    # no verdict
    "undecided": "no step resolves the gradient in the cost's values",
}


@dataclass(frozen=True)
class Diagnosis:
    """Why a parameter's gradient is wrong (or why a difference above tol is not a bug)."""

    pattern: str | None = None  # a short key, one of PATTERNS (TensorReport.pattern)
    finding: str | None = None  # what the numbers show
    cause: str | None = None  # the likely cause, and where to look

    def __post_init__(self) -> None:
        if self.pattern is not None and self.pattern not in PATTERNS:
            raise ValueError(f"unknown diagnosis pattern {self.pattern!r}; add it to PATTERNS")

    @property
    def sentence(self) -> str | None:
        if self.finding is None:
            return None
        return f"{self.finding}: {self.cause}" if self.cause else self.finding


NO_DIAGNOSIS = Diagnosis()
R = TypeVar("R", bound="ReportRecord")


@dataclass(frozen=True)
class TensorReport:
    """The result for one parameter.

    Attributes:
        name: the parameter's path, e.g. ``"W1"`` or ``"layers.0.W"``.
        shape: its shape.
        passed: its verdict.
        difference: ``‖g − g̃‖₂ / (‖g‖₂ + ‖g̃‖₂)`` over this parameter.
        max_abs_error: the largest ``|g − g̃|`` over the coordinates judged.
        worst_index: where that largest error is.
        scale: the ``s`` that best fits ``g ≈ s·g̃`` (``None`` if ``g̃`` is zero).
        checked: coordinates (or directions) checked.
        explanation: the `Diagnosis` behind ``diagnosis``, ``pattern``,
            ``finding`` and ``cause``.
        wrong: how many elements are judged wrong.
        wrong_indices: the first of them (at most 10).
        kinks: coordinates left out of the verdict because the cost is not
            differentiable there: its one-sided slopes disagree, or (``unsettled``)
            its finite differences do not settle as the step shrinks.
        unsettled: those of ``kinks`` whose finite differences do not settle.
        probed: coordinates that needed extra evaluations to judge.
        dtype: the analytic gradient's dtype.
        accuracy: the smallest ``difference`` the check could resolve, where the
            cost's noise made it coarser than an exact cost's (``None`` otherwise):
            the parameter was checked at a step chosen from that noise.
        undecided: no step resolves the gradient through the cost's noise: the
            parameter could not be judged, and does not pass.
        inherited: wrong only because an error entered the backward pass above it
            ([`gradproof.Report.origin`][gradproof.Report]): fix that one first.
        check: which derivative of a framework check the row belongs to, as its name
            ends with it: ``""`` for the backward of the (one) output, ``"[fwd]"``
            (forward mode), ``"[order 2]"``, ``"[fwd vs rev]"`` (the two modes
            compared), ``"[output 1]"``, or several (``"[output 1] [fwd]"``).
    """

    name: str
    shape: Index
    passed: bool
    difference: float
    max_abs_error: float
    worst_index: Index
    scale: float | None
    checked: int
    explanation: Diagnosis = NO_DIAGNOSIS
    wrong: int = 0
    wrong_indices: tuple[Index, ...] = ()
    kinks: tuple[Index, ...] = ()
    probed: int = 0
    dtype: str = "float64"
    unsettled: tuple[Index, ...] = ()
    accuracy: float | None = None
    undecided: bool = False
    inherited: bool = False
    check: str = ""

    @property
    def parameter(self) -> str:
        """The parameter (or input) the row is about: ``name`` without its ``check``."""
        return self.name.removesuffix(f" {self.check}") if self.check else self.name

    @property
    def diagnosis(self) -> str | None:
        """What is wrong and its likely cause, as one sentence, or ``None``."""
        return self.explanation.sentence

    @property
    def pattern(self) -> str | None:
        """A short key for the diagnosis: ``"scale"``, ``"sign"``, ``"zero"``,
        ``"transpose"``, ``"mask"``, ``"unmasked"``, ``"masks"``, ``"few"``, ``"row"``,
        ``"column"``, ``"offset"``, ``"other"``, ``"flat"``, ``"nonfinite"``, ``"conjugate"``,
        ``"modes"``, ``"numerics"``, ``"steep"``, ``"roundoff"``, ``"coarse"``, ``"undecided"``,
        ``"clip"``, ``"raised"``, or ``None``."""
        return self.explanation.pattern

    @property
    def finding(self) -> str | None:
        return self.explanation.finding

    @property
    def cause(self) -> str | None:
        return self.explanation.cause

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "passed": self.passed,
            "difference": self.difference,
            "max_abs_error": self.max_abs_error,
            "worst_index": list(self.worst_index),
            "scale": self.scale,
            "diagnosis": self.diagnosis,
            "pattern": self.pattern,
            "finding": self.finding,
            "cause": self.cause,
            "checked": self.checked,
            "wrong": self.wrong,
            "wrong_indices": [list(i) for i in self.wrong_indices],
            "kinks": [list(i) for i in self.kinks],
            "unsettled": [list(i) for i in self.unsettled],
            "probed": self.probed,
            "accuracy": self.accuracy,
            "undecided": self.undecided,
            "inherited": self.inherited,
            "check": self.check,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TensorReport:
        """The inverse of `to_dict`."""
        return cls(
            name=d["name"],
            shape=tuple(d["shape"]),
            passed=d["passed"],
            difference=d["difference"],
            max_abs_error=d["max_abs_error"],
            worst_index=tuple(d["worst_index"]),
            scale=d["scale"],
            checked=d["checked"],
            explanation=Diagnosis(d.get("pattern"), d.get("finding"), d.get("cause")),
            wrong=d.get("wrong", 0),
            wrong_indices=tuple(tuple(i) for i in d.get("wrong_indices", ())),
            kinks=tuple(tuple(i) for i in d.get("kinks", ())),
            unsettled=tuple(tuple(i) for i in d.get("unsettled", ())),
            probed=d.get("probed", 0),
            dtype=d.get("dtype", "float64"),
            accuracy=d.get("accuracy"),
            undecided=d.get("undecided", False),
            inherited=d.get("inherited", False),
            check=d.get("check", ""),
        )


@dataclass(frozen=True)
class ReportRecord:
    """What a check found, as data; [`gradproof.Report`][gradproof.Report] documents each field."""

    passed: bool
    difference: float
    tol: float
    tensors: dict[str, TensorReport]
    evaluations: int
    numerical: Any
    warnings: list[str]
    method: str = "central"
    eps: float | None = None
    mode: str = "full"
    policy: dict[str, Any] = field(default_factory=dict)
    deterministic: bool = True
    seconds: float = 0.0
    analytic: Any = None
    strict: bool = False
    cost_flat: bool = False
    origin: Origin | None = None

    @property
    def failing(self) -> list[TensorReport]:
        """The parameters that did not pass (wrong or undecided), in order of params."""
        return [t for t in self.tensors.values() if not t.passed]

    @property
    def undecided(self) -> list[TensorReport]:
        """The parameters the cost's noise left undecided, in order of params."""
        return [t for t in self.tensors.values() if t.undecided]

    def __bool__(self) -> bool:
        return self.passed

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable summary (the gradients themselves are left out)."""
        return {
            "passed": self.passed,
            "difference": self.difference,
            "tol": self.tol,
            "evaluations": self.evaluations,
            "method": self.method,
            "eps": self.eps,
            "mode": self.mode,
            "deterministic": self.deterministic,
            "strict": self.strict,
            "cost_flat": self.cost_flat,
            "seconds": self.seconds,
            "warnings": list(self.warnings),
            "policy": dict(self.policy),
            "origin": None if self.origin is None else self.origin.to_dict(),
            "tensors": [t.to_dict() for t in self.tensors.values()],
        }

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls: type[R], d: dict[str, Any]) -> R:
        """A report from `to_dict`'s output (without the gradients themselves)."""
        tensors = [TensorReport.from_dict(t) for t in d["tensors"]]
        return cls(
            passed=d["passed"],
            difference=d["difference"],
            tol=d["tol"],
            tensors={t.name: t for t in tensors},
            evaluations=d["evaluations"],
            numerical=None,
            warnings=list(d["warnings"]),
            method=d["method"],
            eps=d["eps"],
            mode=d["mode"],
            policy=dict(d["policy"]),
            deterministic=d["deterministic"],
            seconds=d["seconds"],
            strict=d.get("strict", d["passed"] and d["difference"] <= d["tol"]),
            cost_flat=d.get("cost_flat", False),
            origin=None if d.get("origin") is None else Origin.from_dict(d["origin"]),
        )

    @classmethod
    def from_json(cls: type[R], text: str) -> R:
        return cls.from_dict(json.loads(text))


@dataclass(frozen=True)
class Outcome:
    """What a mode found, ready for the verdict: per-parameter reports and overall figures."""

    tensors: dict[str, TensorReport]
    difference: float
    cost_flat: bool  # the cost never changed, yet the analytic gradient is not zero
    step: float  # a typical step, to judge what non-determinism does to the partials
    numerical: Any = None  # the numerical gradient, in params' structure (full mode)
    analytic: Any = None  # the analytic gradient, in params' structure (full mode)
    notes: tuple[str, ...] = ()  # extra warnings from the mode
    # The unit round-off the cost's values were modelled with (float64's unless the cost
    # showed itself lower-precision, or a front-end ran it in its arguments' precision).
    cost_unit: float = 2.0**-53
