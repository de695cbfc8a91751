"""How a report reads: one layout built from the record, drawn as text, with rich, or as HTML.

`layout` decides what is said (headline, the failing parameters with
their diagnoses, the table, notes, warnings, footer); `text`,
`rich_renderable` and `html` only draw it.
"""

from __future__ import annotations

import html as _html
import os
import re
import sys
from dataclasses import dataclass
from typing import Any, TextIO

from ._policy import LOW_PRECISION, smaller_difference
from ._records import ReportRecord, TensorReport

COLUMNS = ("parameter", "shape", "difference", "max |error|", "worst index", "scale", "verdict")


@dataclass(frozen=True)
class Row:
    """One parameter's line of the table, every cell already formatted."""

    tensor: TensorReport
    cells: tuple[str, ...]  # aligned with COLUMNS, verdict last

    @property
    def kinks(self) -> str:
        n = len(self.tensor.kinks)
        return f" ({n} kink{'s' * (n != 1)})" if n else ""


@dataclass(frozen=True)
class Layout:
    headline: str
    passed: bool
    failing: tuple[TensorReport, ...]  # listed first, each with its finding and cause
    rows: tuple[Row, ...]  # failing parameters first
    notes: tuple[str, ...]  # diagnoses of parameters that passed ("within numerical error")
    warnings: tuple[str, ...]
    footer: tuple[str, ...]


def fmt_shape(shape: tuple[int, ...]) -> str:
    if not shape:
        return "()"
    return "(" + ", ".join(str(s) for s in shape) + (",)" if len(shape) == 1 else ")")


def fmt_float(x: float | None) -> str:
    if x is None or x != x:  # nothing measured (NaN: a derivative that raised)
        return "-"
    return f"{x:.1e}" if x != 0 else "0"


def fmt_scale(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}"


def _rows(report: ReportRecord) -> tuple[str, str]:
    """How the table's rows are counted: ``("6 parameters", "")``, or for a framework
    check of several derivatives ``("4 rows", "2 parameters in rev, [order 2]")``."""
    n = len(report.tensors)
    checks = list(report.policy.get("checks") or []) if isinstance(report.policy, dict) else []
    if any(t.check.endswith("[fwd vs rev]") for t in report.tensors.values()):
        checks.append("[fwd vs rev]")
    # "input0.real [fwd]" and "input0.imag [fwd]" are one (complex) parameter
    bases = {
        t.parameter.removesuffix(".real").removesuffix(".imag") for t in report.tensors.values()
    }
    # a framework function's inputs ("input0", "arg1") are its inputs, not parameters
    word = (
        "input"
        if bases and all(re.fullmatch(r"(input|arg)\d+", b) for b in bases)
        else ("parameter")
    )
    if len(checks) <= 1:
        return f"{n} {word}{'s' * (n != 1)}", ""
    k = len(bases)
    return f"{n} rows", f"{k} {word}{'s' * (k != 1)} in {', '.join(checks)}"


def first_clause(text: str) -> str:
    """``text`` up to its first ``"; "`` outside parentheses."""
    depth = 0
    for i, ch in enumerate(text):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth == 0 and text.startswith("; ", i):
            return text[:i]
    return text


def _shown_scale(t: TensorReport) -> float | None:
    """The best-fit scale, where it says something: on a passing row (about 1), or where
    the diagnosis is a factor; beside any other wrong row a fitted "1" reads as "right"."""
    if t.passed or t.pattern in ("scale", "sign"):
        return t.scale
    return None


def _verdict(t: TensorReport) -> str:
    if t.passed:
        return "ok"
    if t.undecided:
        return "undecided"
    return "WRONG (inherited)" if t.inherited else "WRONG"


def headline(report: ReportRecord) -> str:
    r = report
    rows, where = _rows(r)
    params = f"{rows} ({where})" if where else rows
    cmp = "<=" if r.difference <= r.tol else ">"
    diff = f"difference {r.difference:.3g} {cmp} tol {r.tol:g}"
    if r.passed:
        checked = sum(t.checked for t in r.tensors.values())
        unit = "directions" if r.mode == "directional" else "coordinates"
        kinks = sum(len(t.kinks) for t in r.tensors.values())
        if checked == 0 and kinks:
            return (
                f"Gradient check passed: {params}, nothing judged: every direction crossed a "
                f"kink ({kinks} element{'s' * (kinks != 1)} on one, left out); move the check "
                "point off the kinks to check the gradient"
            )
        if checked == 0:
            return f"Gradient check passed: nothing to check, {params} with no elements"
        if checked == 1:
            unit = unit[:-1]
        head = f"Gradient check passed: {params}, {checked} {unit} checked"
        coarse = [t.accuracy for t in r.tensors.values() if t.accuracy and t.accuracy > r.tol]
        if coarse:
            return (
                f"{head} to an accuracy of {max(coarse):.1e} ({diff}): the cost's values are "
                "coarse, and no finer check is possible; compute the cost in float64 to check "
                f"to tol {r.tol:g}"
            )
        if r.difference <= r.tol:
            return f"{head} ({diff})"
        above = [t for t in r.tensors.values() if t.difference > r.tol]
        low = sorted({t.dtype for t in above if t.dtype in LOW_PRECISION})
        if low:
            return (
                f"{head}; difference {r.difference:.3g} is above tol {r.tol:g} only through the "
                f"{'/'.join(low)} analytic gradient's own round-off and the finite differences' "
                "error; a float64 backward gives a smaller one"
            )
        if any(t.pattern == "steep" for t in above):
            return (
                f"{head}; difference {r.difference:.3g} is above tol {r.tol:g} only through the "
                "finite differences' own error where the cost is steep for the step (near a "
                "pole or a domain edge, or varying faster than the step); a smaller eps gives a "
                "smaller one"
            )
        at = f" at eps={r.eps:g}" if r.eps is not None else ""
        return (
            f"{head}; difference {r.difference:.3g} is above tol {r.tol:g} only through the "
            f"finite differences' own error{at}{_smaller_figure(r)}"
        )
    if not r.deterministic:
        return (
            "Gradient check failed: the cost is non-deterministic (it returns different values at "
            f"the same point), so no gradient can be judged ({diff})"
        )
    undecided = r.undecided
    if undecided and len(undecided) == len(r.failing):
        names = ", ".join(t.name for t in undecided[:5]) + (" ..." if len(undecided) > 5 else "")
        why = (
            "the cost's values are too coarse for any step to resolve the gradient; "
            "compute the cost in float64 to check it"
        )
        head = f"Gradient check undecided: {len(undecided)} of {rows} could not be judged"
        return f"{head} ({names}): {why}"
    if r.cost_flat:
        return (
            "Gradient check failed: the cost ignores params: it did not change when any "
            "parameter was perturbed, yet the analytic gradient is not zero (does the cost use "
            "the params passed to it, rather than arrays it closes over?)"
        )
    wrong = len(r.failing) - len(undecided)
    also = f", {len(undecided)} undecided" if undecided else ""
    origin = f"; {r.origin.sentence}" if r.origin is not None else ""
    if where:
        return f"Gradient check failed: {wrong} of {rows} wrong{also} ({where}; {diff}){origin}"
    return f"Gradient check failed: {wrong} of {rows} wrong{also} ({diff}){origin}"


def _smaller_figure(r: ReportRecord) -> str:
    better = smaller_difference(r.method, r.eps)
    return f"; {better} gives a smaller one" if better else ""


def footer(report: ReportRecord) -> tuple[str, ...]:
    """How the check ran: method, step, mode, cost, and any mode choice or confidence."""
    eps = "auto" if report.eps is None else f"{report.eps:g}"
    search = report.policy.get("isolation") if isinstance(report.policy, dict) else None
    parts = (
        f" (and {search['evaluations']} of its parts, in {search['checks']} checks of where "
        "the error enters)"
        if search and search.get("checks")
        else ""
    )
    lines = [
        f"method {report.method}, eps {eps}, mode {report.mode}, "
        f"{report.evaluations} cost evaluations{parts}, {report.seconds:.2f} s"
    ]
    lines += [
        f"{key}: {report.policy[key]}" for key in ("auto", "confidence") if report.policy.get(key)
    ]
    return tuple(lines)


def layout(report: ReportRecord) -> Layout:
    ordered = report.failing + [t for t in report.tensors.values() if t.passed]
    rows = tuple(
        Row(
            t,
            (
                t.name,
                fmt_shape(t.shape),
                fmt_float(t.difference),
                fmt_float(t.max_abs_error),
                fmt_shape(t.worst_index) if t.checked else "-",
                fmt_scale(_shown_scale(t)),
                _verdict(t),
            ),
        )
        for t in ordered
    )
    return Layout(
        headline=headline(report),
        passed=report.passed,
        failing=tuple(report.failing),
        rows=rows,
        notes=tuple(f"{t.name}: {t.diagnosis}" for t in ordered if t.passed and t.diagnosis),
        warnings=tuple(report.warnings),
        footer=footer(report),
    )


def _cause_label(t: TensorReport) -> str:
    return "to judge it" if t.undecided else "likely cause"


def _failure_line(t: TensorReport) -> str:
    return f"  {t.name}  {fmt_shape(t.shape)}  difference {fmt_float(t.difference)}  "


def text(report: ReportRecord) -> str:
    """The table a person reads at a glance, failing parameters first."""
    view = layout(report)
    lines = [view.headline]
    for t in view.failing:
        lines.append((_failure_line(t) + (t.finding or "")).rstrip())
        if t.cause:
            lines.append(f"      {_cause_label(t)}: {t.cause}")
    table = [COLUMNS] + [(*row.cells[:-1], row.cells[-1] + row.kinks) for row in view.rows]
    widths = [max(len(row[c]) for row in table) for c in range(len(COLUMNS))]
    lines.append("")
    for cells in table:
        padded = (cell.ljust(w) for cell, w in zip(cells, widths, strict=True))
        lines.append(("  " + "  ".join(padded)).rstrip())
    lines += [f"  note: {note}" for note in view.notes]
    if view.warnings:
        lines += ["", "warnings:", *(f"  - {w}" for w in view.warnings)]
    lines += ["", *view.footer]
    return "\n".join(lines)


def rich_renderable(report: ReportRecord) -> Any:
    """The report as a rich renderable (needs rich): the same layout, coloured."""
    from rich.console import Group
    from rich.padding import Padding
    from rich.table import Table
    from rich.text import Text

    view = layout(report)
    parts: list[Any] = [Text(view.headline, style="bold green" if view.passed else "bold red")]
    for t in view.failing:
        line = Text("  ")
        line.append(t.name, style="bold red")
        line.append(_failure_line(t)[2 + len(t.name) :] + (t.finding or ""))
        parts.append(line)
        if t.cause:
            parts.append(Text(f"      {_cause_label(t)}: {t.cause}", style="yellow"))
    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
    for column in COLUMNS:
        table.add_column(
            column, justify="left" if column in ("parameter", "shape", "verdict") else "right"
        )
    for row in view.rows:
        ok = row.tensor.passed
        verdict = Text(row.cells[-1], style="green" if ok else "bold red")
        verdict.append(row.kinks, style="yellow")
        table.add_row(*row.cells[:-1], verdict)
    parts += [Text(""), Padding(table, (0, 0, 0, 2))]
    parts += [Text(f"  note: {note}", style="dim") for note in view.notes]
    if view.warnings:
        parts.append(Text("\nwarnings:", style="bold yellow"))
        parts += [Text(f"  - {w}", style="yellow") for w in view.warnings]
    parts.append(Text(""))
    parts += [Text(line, style="dim") for line in view.footer]
    return Group(*parts)


def html(report: ReportRecord) -> str:
    """The same layout as an HTML fragment, for notebooks and pages."""
    esc = _html.escape
    view = layout(report)
    color = "#1b7f3b" if view.passed else "#b00020"
    head = "".join(f"<th>{esc(c)}</th>" for c in (*COLUMNS, "diagnosis"))
    out = [
        f'<div class="gradproof-report"><p style="color:{color};font-weight:bold">'
        f"{esc(view.headline)}</p>",
        f"<table><thead><tr>{head}</tr></thead><tbody>",
    ]
    for row in view.rows:
        style = "" if row.tensor.passed else ' style="color:#b00020"'
        cells = "".join(f"<td>{esc(c)}</td>" for c in (*row.cells, row.tensor.diagnosis or ""))
        out.append(f"<tr{style}>{cells}</tr>")
    out.append("</tbody></table>")
    if view.warnings:
        out.append("<ul>" + "".join(f"<li>{esc(w)}</li>" for w in view.warnings) + "</ul>")
    out.append("</div>")
    return "".join(out)


def wants_color(stream: TextIO) -> bool:
    """Colour only on a terminal, never with NO_COLOR set (https://no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    return bool(getattr(stream, "isatty", lambda: False)())


def show(
    report: ReportRecord, file: TextIO | None = None, color: bool | None = None, indent: int = 0
) -> None:
    """Print the report: coloured on a terminal when rich is installed, plain otherwise."""
    stream = file if file is not None else sys.stdout
    color = wants_color(stream) if color is None else color
    if color:
        try:
            from rich.console import Console
            from rich.padding import Padding
        except ImportError:
            color = False
    if not color:
        pad = " " * indent
        lines = text(report).split("\n")
        stream.write("\n".join(pad + line if line else line for line in lines) + "\n")
        return
    Console(file=stream, force_terminal=True, highlight=False, soft_wrap=True).print(
        Padding(rich_renderable(report), (0, 0, 0, indent))
    )
