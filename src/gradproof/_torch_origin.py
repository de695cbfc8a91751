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

    args: dict[str, tuple[Any, ...]] = field(default_factory=dict)  # called once, positional
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


class _Submodules:
    """A module's submodules as `_isolate.Parts`: named as ``named_modules()`` names them."""

    def __init__(self, torch: Any, modules: dict[str, Any], calls: _Calls, check: Check):
        self.torch = torch
        self.modules = modules
        self.calls = calls
        self.check = check

    def children(self, name: str) -> list[str]:
        prefix = f"{name}." if name else ""
        direct = [
            n
            for n in self.modules
            if n.startswith(prefix) and n != name and "." not in n[len(prefix) :]
        ]
        ran = [n for n in direct if n in self.calls.end]
        return sorted(ran, key=lambda n: self.calls.end[n], reverse=True)

    def own(self, name: str) -> Report | None:
        args = self.calls.args.get(name)
        module = self.modules[name]
        grads = any(self.torch.is_tensor(a) and a.requires_grad for a in args or ())
        if args is None or not (grads or any(p.requires_grad for p in module.parameters())):
            return None
        try:
            return self.check(module, *args)
        except Exception:  # (it raised alone: no verdict of its own to go by)
            return None

    def upstream(self, name: str, of: str) -> bool:
        end, start = self.calls.end, self.calls.start
        return name in end and of in start and end[name] < start[of]

    def owner(self, parameter: str) -> str | None:
        owner = parameter.rsplit(".", 1)[0] if "." in parameter else ""
        return owner if owner in self.modules else None

    def is_input(self, parameter: str) -> bool:
        return parameter.startswith("input") and parameter[5:].isdigit()

    def kind(self, name: str) -> str:
        return type(self.modules[name]).__name__
