"""The report a check returns: frozen records, and how they read."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np


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
        diagnosis: what is wrong and its likely cause, or ``None``.
        checked: coordinates (or directions) checked.
        pattern: a short key for the diagnosis: ``"scale"``, ``"sign"``,
            ``"zero"``, ``"transpose"``, ``"mask"``, ``"unmasked"``, ``"few"``,
            ``"row"``, ``"column"``, ``"other"``, ``"numerics"``, or ``None``.
        wrong: how many elements are judged wrong.
        wrong_indices: the first of them (at most 10).
        kinks: coordinates left out of the verdict because the cost has a kink there.
        probed: coordinates that needed extra evaluations to judge.
    """

    name: str
    shape: tuple[int, ...]
    passed: bool
    difference: float
    max_abs_error: float
    worst_index: tuple[int, ...]
    scale: float | None
    diagnosis: str | None
    checked: int
    pattern: str | None = None
    finding: str | None = None
    cause: str | None = None
    wrong: int = 0
    wrong_indices: tuple[tuple[int, ...], ...] = ()
    kinks: tuple[tuple[int, ...], ...] = ()
    probed: int = 0
    dtype: str = "float64"

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
            "probed": self.probed,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TensorReport:
        """The inverse of :meth:`to_dict`."""
        return cls(
            name=d["name"],
            shape=tuple(d["shape"]),
            passed=d["passed"],
            difference=d["difference"],
            max_abs_error=d["max_abs_error"],
            worst_index=tuple(d["worst_index"]),
            scale=d["scale"],
            diagnosis=d["diagnosis"],
            checked=d["checked"],
            pattern=d.get("pattern"),
            finding=d.get("finding"),
            cause=d.get("cause"),
            wrong=d.get("wrong", 0),
            wrong_indices=tuple(tuple(i) for i in d.get("wrong_indices", ())),
            kinks=tuple(tuple(i) for i in d.get("kinks", ())),
            probed=d.get("probed", 0),
            dtype=d.get("dtype", "float64"),
        )


@dataclass(frozen=True)
class Report:
    """What :func:`gradproof.check` found.

    Attributes:
        passed: ``difference <= tol``, no parameter failed, and the cost is deterministic.
        difference: ``‖g − g̃‖₂ / (‖g‖₂ + ‖g̃‖₂)`` over everything checked.
        tol: the threshold used.
        tensors: parameter name → :class:`TensorReport`, in the order of params.
        evaluations: how many times the cost was called.
        numerical: the numerical gradient, same structure as params (full mode).
        analytic: the analytic gradient it was compared with, same structure (full mode).
        warnings: kinks crossed, float32 parameters, non-determinism, ...
        method, eps, mode: how the check ran (``eps=None``: automatic steps).
        policy: the numerical policy in force, for reproducing the verdict.
        deterministic: whether repeated evaluations at the check point agreed.
        seconds: wall time of the check.
    """

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

    @property
    def failing(self) -> list[TensorReport]:
        """The parameters that failed, in order of params."""
        return [t for t in self.tensors.values() if not t.passed]

    def __str__(self) -> str:
        return format_report(self)

    def __bool__(self) -> bool:
        return self.passed

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable summary (the numerical gradient itself is left out)."""
        return {
            "passed": self.passed,
            "difference": self.difference,
            "tol": self.tol,
            "evaluations": self.evaluations,
            "method": self.method,
            "eps": self.eps,
            "mode": self.mode,
            "deterministic": self.deterministic,
            "seconds": self.seconds,
            "warnings": list(self.warnings),
            "policy": dict(self.policy),
            "tensors": [t.to_dict() for t in self.tensors.values()],
        }

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Report:
        """A report from :meth:`to_dict`'s output (without the gradients themselves)."""
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
        )

    @classmethod
    def from_json(cls, text: str) -> Report:
        return cls.from_dict(json.loads(text))

    def _repr_html_(self) -> str:
        return format_html(self)

    def __rich__(self) -> Any:
        from ._render import rich_renderable

        return rich_renderable(self)

    def show(self, file: Any = None, color: bool | None = None) -> None:
        """Print the report, coloured on a terminal.

        Colour needs rich (``pip install 'gradproof[pretty]'``). Plain text when
        the stream is not a terminal, when ``NO_COLOR`` is set, or when rich is
        not installed.
        """
        from ._render import show

        show(self, file, color)

    def plot(self, ax: Any = None) -> Any:
        """Each parameter's difference on a log scale against tol; failing ones red.

        A failing 2-D parameter of a full check gets a heat map of its element
        errors beside it. Needs matplotlib (``pip install 'gradproof[plot]'``).
        Returns the figure.
        """
        from ._plot import plot_report

        return plot_report(self, ax)

    def save_html(self, path: Any) -> None:
        """Write one self-contained HTML page: the table, warnings and (with matplotlib) plots."""
        from ._html import save_html

        save_html(self, path)


def _fmt_shape(shape: tuple[int, ...]) -> str:
    return (
        "()"
        if not shape
        else "(" + ", ".join(str(s) for s in shape) + (",)" if len(shape) == 1 else ")")
    )


def _fmt_float(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.1e}" if x != 0 else "0"


def _fmt_scale(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}"


def headline(report: Report) -> str:
    r = report
    n = len(r.tensors)
    bad = r.failing
    cmp = "<=" if r.difference <= r.tol else ">"
    diff = f"difference {r.difference:.3g} {cmp} tol {r.tol:g}"
    if r.passed:
        coords = sum(t.checked for t in r.tensors.values())
        return (
            f"Gradient check passed: {n} parameter{'s' * (n != 1)}, "
            f"{coords} coordinates checked ({diff})"
        )
    if not r.deterministic:
        return (
            "Gradient check failed: the cost is non-deterministic (it returns different values at "
            f"the same point), so no gradient can be judged ({diff})"
        )
    if bad:
        return f"Gradient check failed: {len(bad)} of {n} parameter{'s' * (n != 1)} wrong ({diff})"
    return (
        f"Gradient check failed: {diff}, yet no parameter is wrong: every disagreement is within "
        "the numerical error of the finite differences (use eps=None)"
    )


def format_report(report: Report) -> str:
    """The table a person reads at a glance, failing parameters first."""
    lines = [headline(report)]
    for t in report.failing:
        lines.append(
            f"  {t.name}  {_fmt_shape(t.shape)}  difference {_fmt_float(t.difference)}  "
            f"{t.finding or ''}".rstrip()
        )
        if t.cause:
            lines.append(f"      likely cause: {t.cause}")
    rows = [("parameter", "shape", "difference", "max |error|", "worst index", "scale", "verdict")]
    ordered = report.failing + [t for t in report.tensors.values() if t.passed]
    for t in ordered:
        verdict = "ok" if t.passed else "WRONG"
        if t.kinks:
            verdict += f" ({len(t.kinks)} kink{'s' * (len(t.kinks) != 1)})"
        rows.append(
            (
                t.name,
                _fmt_shape(t.shape),
                _fmt_float(t.difference),
                _fmt_float(t.max_abs_error),
                _fmt_shape(t.worst_index) if t.worst_index else "()",
                _fmt_scale(t.scale),
                verdict,
            )
        )
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    lines.append("")
    for row in rows:
        cells = (cell.ljust(w) for cell, w in zip(row, widths, strict=True))
        lines.append(("  " + "  ".join(cells)).rstrip())
    extras = [t for t in report.tensors.values() if t.passed and t.diagnosis]
    for t in extras:
        lines.append(f"  note: {t.name}: {t.diagnosis}")
    if report.warnings:
        lines.append("")
        lines.append("warnings:")
        lines.extend(f"  - {w}" for w in report.warnings)
    lines.append("")
    lines += footer_lines(report)
    return "\n".join(lines)


def footer_lines(report: Report) -> list[str]:
    """How the check ran: method, step, mode, cost, and any mode choice or confidence."""
    eps = "auto" if report.eps is None else f"{report.eps:g}"
    lines = [
        f"method {report.method}, eps {eps}, mode {report.mode}, "
        f"{report.evaluations} cost evaluations, {report.seconds:.2f} s"
    ]
    for key in ("auto", "confidence"):
        if report.policy.get(key):
            lines.append(f"{key}: {report.policy[key]}")
    return lines


def format_html(report: Report) -> str:
    """The same table as HTML, for notebooks."""
    esc = html.escape
    color = "#1b7f3b" if report.passed else "#b00020"
    out = [
        f'<div class="gradproof-report"><p style="color:{color};font-weight:bold">'
        f"{esc(headline(report))}</p>",
        "<table><thead><tr><th>parameter</th><th>shape</th><th>difference</th>"
        "<th>max |error|</th><th>worst index</th><th>scale</th><th>verdict</th>"
        "<th>diagnosis</th></tr></thead><tbody>",
    ]
    for t in report.failing + [t for t in report.tensors.values() if t.passed]:
        style = "" if t.passed else ' style="color:#b00020"'
        out.append(
            f"<tr{style}><td>{esc(t.name)}</td><td>{esc(_fmt_shape(t.shape))}</td>"
            f"<td>{_fmt_float(t.difference)}</td><td>{_fmt_float(t.max_abs_error)}</td>"
            f"<td>{esc(_fmt_shape(t.worst_index))}</td><td>{_fmt_scale(t.scale)}</td>"
            f"<td>{'ok' if t.passed else 'WRONG'}</td><td>{esc(t.diagnosis or '')}</td></tr>"
        )
    out.append("</tbody></table>")
    if report.warnings:
        out.append("<ul>" + "".join(f"<li>{esc(w)}</li>" for w in report.warnings) + "</ul>")
    out.append("</div>")
    return "".join(out)


def index_tuple(flat_index: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(int(flat_index), shape)) if shape else ()
