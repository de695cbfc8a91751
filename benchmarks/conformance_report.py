"""The summary both conformance benchmarks print (opinfo.py for PyTorch, jax_funcs.py for JAX).

Each row is one case (or one planted bug) checked by gradproof and by the
framework's own checker (``gc_*`` keys); ``key`` names the operator field.
"""

from __future__ import annotations

import re
import statistics
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Tool:
    """How the framework's own checker and the checked things are named in the summary."""

    key: str  # the row field naming the operator: "op" or "func"
    things: str  # "ops" or "functions"
    name: str  # "gradcheck" or "check_grads"
    short: str  # its column prefix in the bug table: "gc" or "cg"


# gradproof declining a case whose function is NaN (or infinite) at the sample itself,
# with a CostError that says so: there is no derivative to judge there.
DECLINED = "gradproof declined: function not finite at the sample"


def declined(exc: BaseException) -> bool:
    """Whether an exception is gradproof's "the cost is nan at the check point"."""
    return type(exc).__name__ == "CostError" and bool(
        re.search(r"the cost is \S+ at the check point", str(exc))
    )


def spread(names: Sequence[str], n: int | None) -> set[str]:
    """Where the bug suite runs: every name (``n`` None), or ``n`` names spread evenly
    over the list, deterministically."""
    if n is None or n >= len(names):
        return set(names)
    if n <= 0:
        return set()
    step = len(names) / n
    return {names[int(i * step)] for i in range(n)}


def gp_outcome(row: dict) -> str:
    if row["gp"] in ("refusal", "exception", "declined"):
        return f"{row['gp']}: {row['gp_error']}"
    return row["gp_headline"]


def bug_outcomes(row: dict, gc_outcome: str) -> tuple[str, str]:
    """What each tool made of one planted bug, in words."""
    if row["gp_detected"] is None:
        gp = gp_outcome(row)
    elif row["gp_detected"]:
        gp = "detected" + ("" if row["gp_named"] else f", but named {row['gp_failing']}")
    else:
        gp = f"MISSED ({row['gp_headline']})"
    gc = {True: "detected", False: "missed", None: gc_outcome}[row["gc_detected"]]
    return gp, gc


def _median(xs: list[float]) -> str:
    return f"{statistics.median(xs):.4g}" if xs else "-"


def summary(
    rows: list[dict],
    bug_rows: list[dict],
    skipped: Counter,
    total: float,
    *,
    tool: Tool,
    classes: Sequence[str],
    mutations: Sequence[str],
) -> None:
    name = f"{tool.name:15s}"
    print("\n" + "=" * 100)
    things = len({r[tool.key] for r in rows})
    print(f"{len(rows)} cases from {things} {tool.things}; skipped:")
    for reason, n in skipped.most_common():
        print(f"  {n:5d}  {reason}")
    counts = Counter(r["class"] for r in rows)
    print("\nclass                         cases")
    for c in classes:
        print(f"  {c:28s}{counts[c]:6d}")
    gp = Counter(r["gp"] for r in rows)
    gc = Counter(r["gc"] for r in rows)
    print("\nper tool          passed  failed  exception  refusal  declined")
    print(
        f"  gradproof      {gp['passed']:6d}  {gp['failed']:6d}  {gp['exception']:9d}  "
        f"{gp['refusal']:7d}  {gp['declined']:8d}"
    )
    print(f"  {name}{gc['passed']:6d}  {gc['failed']:6d}  {gc['exception']:9d}        -         -")
    # a failed verdict whose table names no parameter wrong contradicts itself: count it
    unnamed = sum(r["gp"] == "failed" and not r["gp_failing"] for r in rows)
    print(f"  gradproof failed with no parameter named wrong: {unnamed}")
    done = [r for r in rows if "gp_evaluations" in r]
    print(
        "\ncost                      median/case  median/coordinate  total time (s)\n"
        f"  gradproof evaluations   {_median([r['gp_evaluations'] for r in done]):>11}  "
        f"{_median([r['gp_evaluations'] / max(r['coords'], 1) for r in done]):>17}  "
        f"{sum(r['gp_time'] for r in rows):14.1f}\n"
        f"  {tool.name + ' calls':22s}  {_median([r['gc_calls'] for r in rows]):>11}  "
        f"{_median([r['gc_calls'] / max(r['coords'], 1) for r in rows]):>17}  "
        f"{sum(r['gc_time'] for r in rows):14.1f}"
    )
    if bug_rows:
        planted_in = len({b[tool.key] for b in bug_rows})
        print(f"\nbug suite: {len(bug_rows)} planted bugs in {planted_in} {tool.things}")
        print(
            "  mutation            planted  gp detected  gp named right  gp raised  "
            f"{tool.short} detected  {tool.short} raised"
        )
        for kind in mutations:
            bs = [b for b in bug_rows if b["mutation"] == kind]
            print(
                f"  {kind:18s}  {len(bs):7d}  {sum(b['gp_detected'] is True for b in bs):11d}  "
                f"{sum(bool(b['gp_detected'] and b['gp_named']) for b in bs):14d}  "
                f"{sum(b['gp_detected'] is None for b in bs):9d}  "
                f"{sum(b['gc_detected'] is True for b in bs):11d}  "
                f"{sum(b['gc_detected'] is None for b in bs):9d}"
            )
        print(
            f"  time (s): gradproof {sum(b['gp_time'] for b in bug_rows):.1f}, "
            f"{tool.name} {sum(b['gc_time'] for b in bug_rows):.1f}"
        )
    print(f"\ntotal wall time {total:.0f} s")
    sys.stdout.flush()
