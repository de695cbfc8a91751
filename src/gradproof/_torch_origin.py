"""Where an error enters a PyTorch model's backward: its submodules checked on their own.

When ``gradproof.torch.check(model, ...)`` fails, one forward pass of a float64 copy
records what each submodule received (forward hooks) and in which order the submodules
ran. Searching from the output back, the first top-level submodule whose own derivative
is wrong, checked alone at the inputs it received, holds the error; its children are
searched the same way, down to the smallest module that is wrong on its own. A failing
parameter upstream of it is said to inherit the error only where its module, checked on
its own, is right: a second module wrong on its own is a second slip, and then no origin
is claimed (each parameter keeps its own diagnosis).

Each check alone runs in directional mode (a few random directions per tensor, noise
aware as every check is), on the submodule's forward alone: it costs a small part of the
model's full check, and runs only on failure.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ._origin import Origin
from ._report import Report


@dataclass
class _Calls:
    """One forward pass of the model, as its submodules saw it."""

    args: dict[str, tuple[Any, ...]] = field(default_factory=dict)  # called once, positional
    start: dict[str, int] = field(default_factory=dict)
    end: dict[str, int] = field(default_factory=dict)
    times: dict[str, int] = field(default_factory=dict)  # how often each was called
    ticks: int = 0

    def upstream(self, name: str, of: str) -> bool:
        """``name`` ran (and finished) before ``of`` started: its output fed ``of``."""
        return name in self.end and of in self.start and self.end[name] < self.start[of]


@dataclass
class Isolation:
    """What the search found, and what it cost."""

    origin: Origin | None
    entry: str | None  # the module wrong on its own where the search stopped (None: none)
    checks: int  # submodules checked on their own
    evaluations: int  # the evaluations of their forwards


Check = Callable[..., Report]


def locate(
    torch: Any, model: Any, inputs: tuple[Any, ...], report: Report, check: Check
) -> Isolation:
    """Where the error behind ``report`` (a failed check of ``model(*inputs)``) enters.

    ``check(module, *inputs)`` is the check of one submodule on its own.
    """
    # the backward's rows (a forward-mode or higher-order row has no backward to search)
    failing = [name for name, t in report.tensors.items() if not t.passed and " [" not in name]
    nothing = Isolation(None, None, 0, 0)
    if not failing or not report.deterministic:
        return nothing
    try:
        copied = copy.deepcopy(model).to(torch.float64)
    except (RuntimeError, TypeError):  # a tensor attribute computed with grad
        return nothing
    calls = _record(torch, copied, inputs)
    if calls is None:
        return nothing
    modules = dict(copied.named_modules())
    search = _Search(torch, modules, calls, check)
    entry = search.first_wrong("")
    if entry is None:
        return Isolation(None, None, search.checks, search.evaluations)
    origin = _origin_at(entry, failing, report, modules, calls, search)
    return Isolation(origin, entry, search.checks, search.evaluations)


def _record(torch: Any, model: Any, inputs: tuple[Any, ...]) -> _Calls | None:
    """Run ``model`` once in float64 (without grad), recording each submodule's call."""
    calls = _Calls()
    handles = []

    def before(name: str) -> Callable[..., None]:
        def hook(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            calls.times[name] = calls.times.get(name, 0) + 1
            calls.start.setdefault(name, calls.ticks)
            calls.ticks += 1
            if not kwargs:
                calls.args[name] = tuple(_kept(torch, a) for a in args)

        return hook

    def after(name: str) -> Callable[..., None]:
        def hook(module: Any, args: tuple[Any, ...], output: Any) -> None:
            calls.end[name] = calls.ticks
            calls.ticks += 1

        return hook

    for name, module in model.named_modules():
        if name:
            handles.append(module.register_forward_pre_hook(before(name), with_kwargs=True))
            handles.append(module.register_forward_hook(after(name)))
    wide = [
        x.detach().to(torch.float64) if torch.is_tensor(x) and x.is_floating_point() else x
        for x in inputs
    ]
    try:
        with torch.no_grad():
            model(*wide)
    except Exception:  # the check itself has said what the model raised
        return None
    finally:
        for handle in handles:
            handle.remove()
    for name, times in calls.times.items():
        if times != 1:  # run twice (shared, recurrent): no one input to check it at
            calls.args.pop(name, None)
    return calls


def _kept(torch: Any, x: Any) -> Any:
    """A submodule's input as its own check takes it: a float tensor requires grad."""
    if not torch.is_tensor(x):
        return x
    x = x.detach().clone()
    return x.requires_grad_(True) if x.is_floating_point() or x.is_complex() else x


class _Search:
    """Submodules checked on their own, each once, counted."""

    def __init__(self, torch: Any, modules: dict[str, Any], calls: _Calls, check: Check):
        self.torch = torch
        self.modules = modules
        self.calls = calls
        self.check = check
        self.checks = 0
        self.evaluations = 0
        self.verdicts: dict[str, bool | None] = {}

    def children(self, name: str) -> list[str]:
        """``name``'s direct submodules that ran, the last to run first (backward order)."""
        prefix = f"{name}." if name else ""
        direct = [
            n
            for n in self.modules
            if n.startswith(prefix) and n != name and "." not in n[len(prefix) :]
        ]
        ran = [n for n in direct if n in self.calls.end]
        return sorted(ran, key=lambda n: self.calls.end[n], reverse=True)

    def wrong(self, name: str) -> bool | None:
        """Whether ``name`` is wrong on its own (``None``: it cannot be checked alone)."""
        if name not in self.verdicts:
            self.verdicts[name] = self._own(name)
        return self.verdicts[name]

    def _own(self, name: str) -> bool | None:
        args = self.calls.args.get(name)
        module = self.modules[name]
        torch = self.torch
        grads = any(torch.is_tensor(a) and a.requires_grad for a in args or ())
        if args is None or not (grads or any(p.requires_grad for p in module.parameters())):
            return None
        try:
            report = self.check(module, *args)
        except Exception:  # (it raised alone: no verdict of its own to go by)
            return None
        self.checks += 1
        self.evaluations += report.evaluations
        if not report.deterministic or any(t.undecided for t in report.tensors.values()):
            return None
        return not report.passed

    def first_wrong(self, name: str) -> str | None:
        """The smallest module under ``name`` wrong on its own, searched from the output."""
        for child in self.children(name):
            if self.wrong(child):
                return self.first_wrong(child) or child
        return None


def _owner(name: str, modules: dict[str, Any]) -> str | None:
    """The submodule holding parameter ``name`` ("" for the model's own)."""
    owner = name.rsplit(".", 1)[0] if "." in name else ""
    return owner if owner in modules else None


def _origin_at(
    entry: str,
    failing: list[str],
    report: Report,
    modules: dict[str, Any],
    calls: _Calls,
    search: _Search,
) -> Origin | None:
    """The origin at ``entry`` (wrong on its own), if it explains every failure: each
    failing parameter is inside it, or upstream of it in a module right on its own."""
    there, inherited = [], []
    for name in failing:
        owner = "" if name.startswith("input") and name[5:].isdigit() else _owner(name, modules)
        if name.startswith("input") and name[5:].isdigit():
            inherited.append(name)  # the model's inputs come before everything
        elif owner is not None and (owner == entry or owner.startswith(f"{entry}.")):
            there.append(name)
        elif owner and calls.upstream(owner, entry) and search.wrong(owner) is False:
            inherited.append(name)
        else:  # downstream of it, unchecked, or wrong on its own too: not one story
            return None
    right = [name for name, t in report.tensors.items() if t.passed and " [" not in name]
    kind = type(modules[entry]).__name__
    before = sorted({_owner(n, modules) or "" for n in inherited if not n.startswith("input")})
    after = [
        n for n, wrong in search.verdicts.items() if wrong is False and calls.upstream(entry, n)
    ]
    evidence = f"each checked on its own at the inputs it received: {entry} ({kind}) is wrong"
    for names, side in ((before, "before"), (after, "after")):
        if names:
            verb = "is" if len(names) == 1 else "are"
            evidence += f"; {', '.join(names)}, {side} it, {verb} right"
    where = f"module {entry} ({kind})'s backward"
    return Origin(entry, tuple(there), tuple(inherited), tuple(right), where, evidence)
