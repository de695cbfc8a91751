"""Where an error enters a model's backward: its parts checked on their own.

A front-end that can run a model's parts alone (a PyTorch module's submodules, a
``gradproof.nn.Sequential``'s layers) describes them as `Parts`: which parts a part
holds, in the order the backward meets them; each part's check on its own, at the
inputs it received in one forward pass; which part ran before which; which part holds
a parameter. Searching from the output back, the first part wrong on its own holds the
error; its own parts are searched the same way, down to the smallest part wrong on its
own. The failing parameters outside it are said to inherit the error only where the
rest of the model is shown right without it: where the model can be cut at the part
(`Parts.around`: the model up to its inputs, and from its output on, each checked on
its own), by those two checks; else every part between a failing parameter and the
entry, and every part after the entry, checked on its own. A second slip anywhere, or a
part that cannot be checked, means no origin is claimed (each parameter keeps its own
diagnosis); code a part runs between its own parts is covered by the cut, and where
there is none the evidence says the parameters upstream only may inherit the error.
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

    def own(self, name: str) -> list[Report] | None:
        """``name`` checked on its own at the inputs it received, one report per call
        (``None``: it cannot be)."""
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

    def holds(self, part: str, parameter: str) -> bool:
        """Whether ``part`` holds ``parameter`` (also where it is tied: one tensor, two
        names, reported under the first)."""
        ...

    def kind(self, name: str) -> str:
        """What ``name`` is, for the report ("Linear", "Dense")."""
        ...

    def around(self, name: str) -> list[Report] | None:
        """The model checked apart from ``name``: up to its inputs, and from its output
        on (``None``: it cannot be so cut)."""
        ...

    def called(self, name: str) -> str:
        """``name`` as a sentence names it ("layer 2", "module encoder.mix", "softplus";
        the model itself, ``""``: "Block.forward", "loss")."""
        ...

    def apart(self, name: str) -> str:
        """What `around` checks, in words ("the model checked apart from it (up to its
        inputs, and from its output on)")."""
        ...

    def last(self) -> str | None:
        """Code that runs after every part and no part's check covers (a loss passed
        beside the model), in words (``None``: none)."""
        ...

    def unchecked(self, name: str) -> str | None:
        """The code ``name`` runs besides its parts, which no check covers, in words
        ("Block.forward's own code, between its submodules"; ``None``: none)."""
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
    if entry is None:
        origin = _between_parts(failing, report, parts, search)
    else:
        origin = _origin_at(entry, failing, report, parts, search)
    return Isolation(origin, entry, search.checks, search.evaluations)


def _between_parts(
    failing: list[str], report: Report, parts: Parts, search: _Search
) -> Origin | None:
    """Where every part the model ran is right on its own (and nothing comes after them
    unchecked), the error is in the model's own code between them."""
    own = parts.children("")
    if not own or parts.last() is not None or parts.unchecked("") is None:
        return None  # (no code of its own to be in: a plain sequence)
    if any(search.wrong(p) is not False for p in own):
        return None
    right = _right(report)
    names = ", ".join(reversed(own))
    verb = "is" if len(own) == 1 else "are"
    evidence = f"{names}, each checked on its own at the inputs it received, {verb} right"
    where, label = parts.unchecked(""), parts.called("")
    assert where is not None  # (as checked above)
    name = "" if label == called(label) else label
    return Origin(label, (), tuple(failing), tuple(right), where, evidence, name)


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
            reports = self.parts.own(name)
            if not reports:
                self.verdicts[name] = None
            else:
                self.count(reports)
                decided = [_decided(r) for r in reports]
                wrong = any(d and not r.passed for d, r in zip(decided, reports, strict=True))
                self.verdicts[name] = True if wrong else (False if all(decided) else None)
        return self.verdicts[name]

    def count(self, reports: list[Report]) -> None:
        """Count checks the search ran (of a part, or of the model apart from one)."""
        self.checks += len(reports)
        self.evaluations += sum(r.evaluations for r in reports)

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
    own, and so is every part between them and every part after it (a slip there would be
    a second cause). Where a part on the way runs code of its own between its parts,
    the failing parameters upstream are not said to inherit it: that code is not checked."""
    owners = {n: parts.owner(n) for n in failing if not parts.is_input(n)}
    inputs = [n for n in failing if parts.is_input(n)]
    around = parts.around(entry)
    if around is not None:
        return _cut_at(entry, failing, report, parts, search, around)

    def inside(owner: str | None, part: str) -> bool:
        return owner is not None and (owner == part or owner.startswith(f"{part}."))

    def feeds(part: str) -> bool:
        """A slip in ``part`` would reach some failing parameter (or input)."""
        return bool(inputs) or any(
            inside(o, part) or (o is not None and parts.upstream(o, part)) for o in owners.values()
        )

    if parts.last() is not None:
        return None  # (the loss is after the entry, and checked by nothing on its own)
    between = [s for s in _siblings(entry, parts, "before") if feeds(s)]
    after = _siblings(entry, parts, "after")
    beside = _siblings(entry, parts, "beside")  # (run before and after it: shared)
    if any(search.wrong(s) is not False for s in [*between, *after, *beside]):
        return None  # a second part wrong on its own, or one that cannot be checked
    there = [n for n in owners if parts.holds(entry, n)]
    upstream = [
        n
        for n in failing
        if n not in there and (n in inputs or any(inside(owners[n], s) for s in between))
    ]
    if len(there) + len(upstream) != len(failing):
        return None  # a failing parameter outside them: downstream, or the model's own
    right = _right(report)
    kind = parts.kind(entry)
    evidence = (
        "each checked on its own at the inputs it received: "
        f"{parts.called(entry)} ({kind}) is wrong"
    )
    for names, side in ((between, "before"), (after[::-1], "after")):
        if names:
            verb = "is" if len(names) == 1 else "are"
            evidence += f"; {', '.join(names)}, {side} it, {verb} right"
    path = entry.split(".")
    glue = [g for d in range(len(path)) if (g := parts.unchecked(".".join(path[:d])))]
    inherited = upstream
    if glue and upstream:
        evidence += (
            f"; {', '.join(upstream)} (upstream) may inherit it or have a cause of their own "
            f"in {' or '.join(glue)}, which is not checked on its own"
        )
        inherited = []
    return Origin(
        entry, tuple(there), tuple(inherited), tuple(right), *_named(entry, kind, parts, evidence)
    )


def _siblings(entry: str, parts: Parts, side: str) -> list[str]:
    """At each level of ``entry``'s path, the other parts that ran ``"before"`` it (their
    outputs feed it), ``"after"`` it (it feeds them), or ``"beside"`` it (before and
    after: a part called more than once)."""
    path = entry.split(".")
    found = []
    for depth in range(len(path)):
        parent, child = ".".join(path[:depth]), ".".join(path[: depth + 1])
        for s in parts.children(parent):
            if s == child or s.startswith(f"{child}."):
                continue
            before, after = parts.upstream(s, child), parts.upstream(child, s)
            if {"before": before, "after": after, "beside": not before and not after}[side]:
                found.append(s)
    # (children come last to run first: the parts before it are said in the order they ran)
    return found[::-1] if side == "before" else found


def _cut_at(
    entry: str,
    failing: list[str],
    report: Report,
    parts: Parts,
    search: _Search,
    around: list[Report],
) -> Origin | None:
    """The origin at ``entry`` where the model, checked apart from it (up to its inputs,
    and from its output on), is right: every failure outside it then comes through it."""
    search.count(around)
    if not all(r.passed and _decided(r) for r in around):
        return None  # wrong apart from it too (a second slip), or not to be told
    inside = [n for n in failing if not parts.is_input(n) and parts.holds(entry, n)]
    inherited = [n for n in failing if n not in inside]
    right = _right(report)
    kind = parts.kind(entry)
    evidence = (
        f"{parts.called(entry)} ({kind}), checked on its own at the inputs it received, is "
        f"wrong; {parts.apart(entry)} is right" + _own_parts(entry, parts, search)
    )
    return Origin(
        entry, tuple(inside), tuple(inherited), tuple(right), *_named(entry, kind, parts, evidence)
    )


def _named(entry: str, kind: str, parts: Parts, evidence: str) -> tuple[str, str, str]:
    """An origin's ``where``, ``evidence`` and ``name`` (where the part's name alone
    does not say what it is, as a layer number does)."""
    name = f"{parts.called(entry)} ({kind})"
    return f"{name}'s backward", evidence, "" if parts.called(entry) == called(entry) else name


def _own_parts(entry: str, parts: Parts, search: _Search) -> str:
    """Where the entry's own parts are each right on their own, that the error is in the
    code it runs between them, said so."""
    own = parts.children(entry)
    if not own or any(search.verdicts.get(p) is not False for p in own):
        return ""
    names = ", ".join(reversed(own))
    verb = "is" if len(own) == 1 else "are"
    return (
        f"; its own parts ({names}) {verb} right on their own: the error is in the code "
        f"{parts.kind(entry)}.forward runs between them"
    )


def _decided(report: Report) -> bool:
    """Whether a part's check has a verdict to go by (deterministic, no row undecided)."""
    return report.deterministic and not any(t.undecided for t in report.tensors.values())


def _right(report: Report) -> list[str]:
    """The backward's rows that passed (a forward-mode or higher-order row aside)."""
    return [name for name, t in report.tensors.items() if t.passed and not t.check]
