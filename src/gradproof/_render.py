"""The report on a terminal: a coloured table through rich, plain text otherwise."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from ._report import Report


def wants_color(stream: TextIO) -> bool:
    """Colour only on a terminal, never with NO_COLOR set (https://no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    return bool(getattr(stream, "isatty", lambda: False)())


def rich_renderable(report: Report) -> Any:
    """The report as a rich renderable: headline, diagnoses, table, warnings, footer."""
    from rich.console import Group
    from rich.padding import Padding
    from rich.table import Table
    from rich.text import Text

    from ._report import _fmt_float, _fmt_scale, _fmt_shape, footer_lines, headline

    parts: list[Any] = [Text(headline(report), style="bold green" if report.passed else "bold red")]
    for t in report.failing:
        line = Text("  ")
        line.append(t.name, style="bold red")
        line.append(f"  {_fmt_shape(t.shape)}  difference {_fmt_float(t.difference)}  ")
        line.append(t.finding or "")
        parts.append(line)
        if t.cause:
            parts.append(Text(f"      likely cause: {t.cause}", style="yellow"))
    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
    for column in ("parameter", "shape", "difference", "max |error|", "worst index", "scale"):
        table.add_column(column, justify="left" if column in ("parameter", "shape") else "right")
    table.add_column("verdict")
    for t in report.failing + [t for t in report.tensors.values() if t.passed]:
        verdict = Text("ok", style="green") if t.passed else Text("WRONG", style="bold red")
        if t.kinks:
            verdict.append(f" ({len(t.kinks)} kink{'s' * (len(t.kinks) != 1)})", style="yellow")
        table.add_row(
            t.name,
            _fmt_shape(t.shape),
            _fmt_float(t.difference),
            _fmt_float(t.max_abs_error),
            _fmt_shape(t.worst_index),
            _fmt_scale(t.scale),
            verdict,
        )
    parts += [Text(""), Padding(table, (0, 0, 0, 2))]
    for t in report.tensors.values():
        if t.passed and t.diagnosis:
            parts.append(Text(f"  note: {t.name}: {t.diagnosis}", style="dim"))
    if report.warnings:
        parts.append(Text("\nwarnings:", style="bold yellow"))
        parts += [Text(f"  - {w}", style="yellow") for w in report.warnings]
    parts.append(Text(""))
    parts += [Text(line, style="dim") for line in footer_lines(report)]
    return Group(*parts)


def show(
    report: Report, file: TextIO | None = None, color: bool | None = None, indent: int = 0
) -> None:
    """Print the report: coloured on a terminal when rich is installed, plain otherwise."""
    stream = file if file is not None else sys.stdout
    color = wants_color(stream) if color is None else color
    if color:
        try:
            from rich.console import Console
        except ImportError:
            color = False
    if not color:
        pad = " " * indent
        stream.write("\n".join(pad + line if line else line for line in str(report).split("\n")))
        stream.write("\n")
        return
    from rich.padding import Padding

    Console(file=stream, force_terminal=True, highlight=False, soft_wrap=True).print(
        Padding(rich_renderable(report), (0, 0, 0, indent))
    )
