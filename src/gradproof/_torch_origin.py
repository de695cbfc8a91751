"""Where an error enters a PyTorch model's backward: its submodules as `_isolate.Parts`.

When ``gradproof.torch.check(model, ...)`` fails, one forward pass of a float64 copy
records what each submodule received (forward hooks) and in which order the submodules
ran; each submodule called once, with positional inputs, can then be checked on its own
there (directional mode: a few random directions per tensor, noise aware as every
check is, on the submodule's forward alone). `_isolate.locate` searches them.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ._isolate import Isolation
from ._isolate import locate as _locate
from ._report import Report


@dataclass
class _Calls:
    """One forward pass of the model, as its submodules saw it."""

    # each submodule's calls: positional and keyword inputs (at most MAX_CALLS of them)
    args: dict[str, list[tuple[tuple[Any, ...], dict[str, Any]]]] = field(default_factory=dict)
    start: dict[str, int] = field(default_factory=dict)
    end: dict[str, int] = field(default_factory=dict)
    times: dict[str, int] = field(default_factory=dict)  # how often each was called
    ticks: int = 0


Check = Callable[..., Report]


def locate(
    torch: Any, model: Any, inputs: tuple[Any, ...], report: Report, check: Check
) -> Isolation:
    """Where the error behind ``report`` (a failed check of ``model(*inputs)``) enters.

    ``check(module, *inputs)`` is the check of one submodule on its own.
    """
    nothing = Isolation(None, None, 0, 0)
    if report.passed or not report.deterministic:
        return nothing
    try:
        copied = copy.deepcopy(model).to(torch.float64)
    except (RuntimeError, TypeError):  # a tensor attribute computed with grad
        return nothing
    calls = _record(torch, copied, inputs)
    if calls is None:
        return nothing
    return _locate(_Submodules(torch, dict(copied.named_modules()), calls, check), report)


def _record(torch: Any, model: Any, inputs: tuple[Any, ...]) -> _Calls | None:
    """Run ``model`` once in float64 (without grad), recording each submodule's call."""
    calls = _Calls()
    handles = []

    def before(name: str) -> Callable[..., None]:
        def hook(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            calls.times[name] = calls.times.get(name, 0) + 1
            calls.start.setdefault(name, calls.ticks)
            calls.ticks += 1
            if calls.times[name] <= MAX_CALLS:
                kept = tuple(_kept(torch, a) for a in args)
                fixed = {k: v.detach() if torch.is_tensor(v) else v for k, v in kwargs.items()}
                calls.args.setdefault(name, []).append((kept, fixed))

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
        with torch.no_grad(), torch.random.fork_rng(devices=_devices(torch, wide)):
            model(*wide)
    except Exception:  # the check itself has said what the model raised
        return None
    finally:
        for handle in handles:
            handle.remove()
    for name, times in calls.times.items():
        if times > MAX_CALLS:  # (a recurrent cell over a sequence: too many to check)
            calls.args.pop(name, None)
    return calls


# A submodule called more often than this in one forward pass is not checked on its own.
MAX_CALLS = 4


def _bound(torch: Any, module: Any, kwargs: dict[str, Any]) -> Any:
    """``module`` with its keyword inputs fixed, as a module of its positional ones."""

    class Bound(torch.nn.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.inner = module

        def forward(self, *args: Any) -> Any:
            return self.inner(*args, **kwargs)

    return Bound()


def _devices(torch: Any, inputs: list[Any]) -> list[int]:
    """The CUDA devices the inputs are on (their RNG states are kept too)."""
    return sorted({x.device.index or 0 for x in inputs if torch.is_tensor(x) and x.is_cuda})


def _kept(torch: Any, x: Any) -> Any:
    """A submodule's input as its own check takes it: a float tensor requires grad."""
    if not torch.is_tensor(x):
        return x
    x = x.detach().clone()
    return x.requires_grad_(True) if x.is_floating_point() or x.is_complex() else x


class _Submodules:
    """A module's submodules as `_isolate.Parts`: named as ``named_modules()`` names them."""

    def __init__(self, torch: Any, modules: dict[str, Any], calls: _Calls, check: Check):
        self.torch = torch
        self.modules = modules
        self.calls = calls
        self.check = check

    def children(self, name: str) -> list[str]:
        """Direct submodules that ran; a container that never runs itself (a ModuleList,
        a ModuleDict) stands for its own submodules."""
        prefix = f"{name}." if name else ""
        direct = [
            n
            for n in self.modules
            if n.startswith(prefix) and n != name and "." not in n[len(prefix) :]
        ]
        ran = []
        for n in direct:
            ran += [n] if n in self.calls.end else self.children(n)
        return sorted(ran, key=lambda n: self.calls.end[n], reverse=True)

    def _span(self, name: str) -> tuple[int, int] | None:
        """When ``name`` started and finished, or its submodules did (a ModuleList)."""
        if name in self.calls.end:
            return self.calls.start[name], self.calls.end[name]
        inside = [n for n in self.calls.end if n.startswith(f"{name}.")]
        if not inside:
            return None
        return min(self.calls.start[n] for n in inside), max(self.calls.end[n] for n in inside)

    def own(self, name: str) -> list[Report] | None:
        """``name`` checked at each of its calls (keyword inputs held fixed)."""
        calls = self.calls.args.get(name)
        module = self.modules[name]
        if not calls:
            return None
        reports = []
        for args, kwargs in calls:
            grads = any(self.torch.is_tensor(a) and a.requires_grad for a in args)
            if not (grads or any(p.requires_grad for p in module.parameters())):
                return None
            called = _bound(self.torch, module, kwargs) if kwargs else module
            try:
                reports.append(self.check(called, *args))
            except Exception:  # (it raised alone: no verdict of its own to go by)
                return None
        return reports

    def upstream(self, name: str, of: str) -> bool:
        first, second = self._span(name), self._span(of)
        return first is not None and second is not None and first[1] < second[0]

    def owner(self, parameter: str) -> str | None:
        owner = parameter.rsplit(".", 1)[0] if "." in parameter else ""
        return owner if owner in self.modules else None

    def is_input(self, parameter: str) -> bool:
        return parameter.startswith("input") and parameter[5:].isdigit()

    def kind(self, name: str) -> str:
        return type(self.modules[name]).__name__

    def unchecked(self, name: str) -> str | None:
        if name and name not in self.calls.end:
            return None  # a container that never runs itself (a ModuleList)
        if type(self.modules[name]).forward is self.torch.nn.Sequential.forward:
            return None  # it only chains its submodules
        return f"{self.kind(name)}.forward's own code between its submodules"
