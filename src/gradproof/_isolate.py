"""Where an error enters a model's backward: its parts checked on their own.

A front-end that can run a model's parts alone (a PyTorch module's submodules, a
``gradproof.nn.Sequential``'s layers) describes them as `Parts`: which parts a part
holds, in the order the backward meets them; each part's check on its own, at the
inputs it received in one forward pass; which part ran before which; which part holds
a parameter. Searching from the output back, the first part wrong on its own holds the
error; its own parts are searched the same way, down to the smallest part wrong on its
own. A failing parameter upstream of it is said to inherit the error only where its
part, checked on its own, is right: a second part wrong on its own is a second slip,
and then no origin is claimed (each parameter keeps its own diagnosis).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ._origin import Origin, called
from ._report import Report


class Parts(Protocol):
    """A model as the search sees it. Parts are named by path ("" is the model)."""

    def children(self, name: str) -> list[str]:
        """The direct parts of ``name`` that ran, the last to run first (backward order)."""
        ...

    def own(self, name: str) -> Report | None:
        """``name`` checked on its own at the inputs it received (``None``: it cannot be)."""
        ...

    def upstream(self, name: str, of: str) -> bool:
        """``name`` ran, and finished, before ``of`` started: its output fed ``of``."""
        ...

    def owner(self, parameter: str) -> str | None:
        """The part holding ``parameter`` ("" the model itself; ``None``: no part)."""
        ...

    def is_input(self, parameter: str) -> bool:
        """Whether ``parameter`` is one of the model's inputs (before every part)."""
        ...

    def kind(self, name: str) -> str:
        """What ``name`` is, for the report ("Linear", "Dense")."""
        ...


@dataclass(frozen=True)
class Isolation:
    """What the search found, and what it cost."""

    origin: Origin | None
    entry: str | None  # the part wrong on its own where the search stopped (None: none)
    checks: int  # parts checked on their own
    evaluations: int  # the evaluations of their forwards

    def record(self) -> dict[str, int]:
        """The search's cost, for ``report.policy["isolation"]``."""
        return {"checks": self.checks, "evaluations": self.evaluations}


def locate(parts: Parts, report: Report) -> Isolation:
    """Where the error behind ``report`` (a failed check of the whole model) enters."""
    # the backward's rows (a forward-mode or higher-order row has no backward to search)
    failing = [name for name, t in report.tensors.items() if not t.passed and not t.check]
    if not failing or not report.deterministic:
        return Isolation(None, None, 0, 0)
    search = _Search(parts)
    entry = search.first_wrong("")
    origin = None if entry is None else _origin_at(entry, failing, report, parts, search)
    return Isolation(origin, entry, search.checks, search.evaluations)


class _Search:
    """Parts checked on their own, each once, counted."""

    def __init__(self, parts: Parts):
        self.parts = parts
        self.checks = 0
        self.evaluations = 0
        self.verdicts: dict[str, bool | None] = {}

    def wrong(self, name: str) -> bool | None:
        """Whether ``name`` is wrong on its own (``None``: no verdict of its own)."""
        if name not in self.verdicts:
            report = self.parts.own(name)
            if report is None:
                self.verdicts[name] = None
            else:
                self.checks += 1
                self.evaluations += report.evaluations
                decided = report.deterministic and not any(
                    t.undecided for t in report.tensors.values()
                )
                self.verdicts[name] = (not report.passed) if decided else None
        return self.verdicts[name]

    def first_wrong(self, name: str) -> str | None:
        """The smallest part under ``name`` wrong on its own, searched from the output."""
        for child in self.parts.children(name):
            if self.wrong(child):
                return self.first_wrong(child) or child
        return None


def _origin_at(
    entry: str, failing: list[str], report: Report, parts: Parts, search: _Search
) -> Origin | None:
    """The origin at ``entry`` (wrong on its own), if it explains every failure: each
    failing parameter is inside it, or inside a part upstream of it that is right on its
    own, and so is every part between them (a slip there would be a second cause)."""
    owners = {n: parts.owner(n) for n in failing if not parts.is_input(n)}
    inputs = [n for n in failing if parts.is_input(n)]

    def inside(owner: str | None, part: str) -> bool:
        return owner is not None and (owner == part or owner.startswith(f"{part}."))

    def feeds(part: str) -> bool:
        """A slip in ``part`` would reach some failing parameter (or input)."""
        return bool(inputs) or any(
            inside(o, part) or (o is not None and parts.upstream(o, part)) for o in owners.values()
        )

    between = [s for s in _feeding(entry, parts) if feeds(s)]
    if any(search.wrong(s) is not False for s in between):
        return None  # a second part wrong on its own, or one that cannot be checked
    there = [n for n, o in owners.items() if inside(o, entry)]
    inherited = [n for n in failing if n in inputs or any(inside(owners[n], s) for s in between)]
    if len(there) + len(inherited) != len(failing):
        return None  # a failing parameter outside them: downstream, or the model's own
    right = [name for name, t in report.tensors.items() if t.passed and not t.check]
    kind = parts.kind(entry)
    after = [
        n for n, wrong in search.verdicts.items() if wrong is False and parts.upstream(entry, n)
    ]
    evidence = f"each checked on its own at the inputs it received: {entry} ({kind}) is wrong"
    for names, side in ((between, "before"), (after, "after")):
        if names:
            verb = "is" if len(names) == 1 else "are"
            evidence += f"; {', '.join(names)}, {side} it, {verb} right"
    where = f"{called(entry)} ({kind})'s backward"
    return Origin(entry, tuple(there), tuple(inherited), tuple(right), where, evidence)


def _feeding(entry: str, parts: Parts) -> list[str]:
    """The parts whose outputs feed ``entry``: at each level of its path, the siblings
    that ran before it (first to run first)."""
    path = entry.split(".")
    found = []
    for depth in range(len(path)):
        parent, child = ".".join(path[:depth]), ".".join(path[: depth + 1])
        found += [s for s in reversed(parts.children(parent)) if parts.upstream(s, child)]
    return found
