"""Where an error enters a PyTorch model's backward: its submodules as `_isolate.Parts`.

When ``gradproof.torch.check(model, ...)`` fails, one forward pass of a float64 copy
records what each submodule received at each call (forward hooks; up to ``_policy.ISOLATION_CALLS``
calls, keyword inputs held fixed) and in which order the submodules ran. Each can then
be checked on its own there (full mode for a small part, random directions for a large
one), and the model can be cut at one that ran once: checked up to its inputs (a
prefix that stops at its pre-hook) and from its output on (a suffix whose forward hook
puts an input in its output's place). `_isolate.locate` searches them.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .. import _policy
from .._intercept import intercepted
from .._isolate import Isolation
from .._isolate import locate as _locate
from .._origin import called
from .._report import Report


@dataclass
class _Calls:
    """One forward pass of the model, as its submodules saw it."""

    # each part's calls: positional and keyword inputs (at most ISOLATION_CALLS of them)
    args: dict[str, list[tuple[tuple[Any, ...], dict[str, Any]]]] = field(default_factory=dict)
    start: dict[str, int] = field(default_factory=dict)
    end: dict[str, int] = field(default_factory=dict)
    times: dict[str, int] = field(default_factory=dict)  # how often each was called
    ticks: int = 0
    inside: int = 0  # how deep inside a custom Function's call the pass is
    # custom autograd.Functions, as parts named "{module}.{class}" (the module that
    # called them; the class alone in the model's own code): the class, and the tensors
    # each was handed (by id: a parameter passed to it is held by it)
    functions: dict[str, type] = field(default_factory=dict)
    handed: dict[str, set[int]] = field(default_factory=dict)


Check = Callable[..., Report]


def locate(
    torch: Any, model: Any, inputs: tuple[Any, ...], loss: Any, report: Report, check: Check
) -> Isolation:
    """Where the error behind ``report`` (a failed check of ``model(*inputs)``, through
    ``loss``) enters.

    ``check(module, *inputs, loss=None)`` is the check of one part on its own.
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
    if getattr(copied, "function", False) is True and sum(calls.times.values()) < 2:
        return nothing  # (a function applying one custom Function once: its check is that one's)
    wide = tuple(_widened(torch, x) for x in inputs)
    parts = _Submodules(torch, dict(copied.named_modules()), calls, check, (copied, wide, loss))
    return _locate(parts, report)


def _record(torch: Any, model: Any, inputs: tuple[Any, ...]) -> _Calls | None:
    """Run ``model`` once in float64 (without grad), recording each part's call."""
    recorder = _Recorder(torch, dict(model.named_modules()))
    handles = []
    for name, module in model.named_modules():
        if name:
            handles.append(
                module.register_forward_pre_hook(recorder.before(name), with_kwargs=True)
            )
            handles.append(module.register_forward_hook(recorder.after(name)))
    # (with grad: what each part receives requires grad where it depends on what the
    # check differentiates, and is checked with respect to it; a buffer, a constant or a
    # detached value is held fixed, as the model's own backward holds it)
    wide = [_widened(torch, x) for x in inputs]
    try:
        with (
            torch.random.fork_rng(devices=_devices(torch, wide)),
            _functions_seen(torch, recorder),
        ):
            model(*wide)
    except Exception:  # the check itself has said what the model raised
        return None
    finally:
        for handle in handles:
            handle.remove()
    calls = recorder.calls
    for name, times in calls.times.items():
        if times > _policy.ISOLATION_CALLS:  # (a recurrent cell over a sequence: too many to check)
            calls.args.pop(name, None)
    return calls


class _Recorder:
    """What one forward pass tells of its parts: submodules by their hooks, custom
    Functions by ``apply`` (`_functions_seen`)."""

    def __init__(self, torch: Any, modules: dict[str, Any]):
        self.torch, self.modules = torch, modules
        self.calls = _Calls()
        self.running: list[str] = []  # the submodules running, innermost last

    def began(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        torch, calls = self.torch, self.calls
        calls.times[name] = calls.times.get(name, 0) + 1
        calls.start.setdefault(name, calls.ticks)
        calls.ticks += 1
        if calls.times[name] <= _policy.ISOLATION_CALLS:
            kept = tuple(_kept(torch, a) for a in args)
            fixed = {k: v.detach() if torch.is_tensor(v) else v for k, v in kwargs.items()}
            calls.args.setdefault(name, []).append((kept, fixed))

    def ended(self, name: str) -> None:
        self.calls.end[name] = self.calls.ticks
        self.calls.ticks += 1

    def before(self, name: str) -> Callable[..., None]:
        def hook(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            self.began(name, args, kwargs)
            self.running.append(name)

        return hook

    def after(self, name: str) -> Callable[..., None]:
        def hook(module: Any, args: tuple[Any, ...], output: Any) -> None:
            if self.running and self.running[-1] == name:
                self.running.pop()
            self.ended(name)

        return hook

    def applied(self, cls: type, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
        """A custom Function's call begins: its part's name (``None``: not one)."""
        calls = self.calls
        if cls.__module__.split(".")[0] == "torch" or calls.inside:
            return None  # (PyTorch's own Functions; one called inside a Function's forward)
        parent = self.running[-1] if self.running else ""
        name = f"{parent}.{cls.__name__}" if parent else cls.__name__
        if name in self.modules or calls.functions.get(name, cls) is not cls:
            return None  # (a name taken: no part to be said unambiguously)
        calls.functions[name] = cls
        self.began(name, args, kwargs)
        tensors = [*args, *kwargs.values()]
        handed = {id(t) for t in tensors if self.torch.is_tensor(t)}
        calls.handed.setdefault(name, set()).update(handed)
        return name


def _functions_seen(torch: Any, recorder: _Recorder) -> contextlib.AbstractContextManager[None]:
    """Every ``autograd.Function.apply`` call in this thread told to the recorder as it
    begins (which names its part, or not) and as it ends."""
    calls = recorder.calls

    def apply(cls: type, proceed: Callable[..., Any], args: tuple[Any, ...], kwargs: Any) -> Any:
        name = recorder.applied(cls, args, kwargs)
        calls.inside += 1
        try:
            return proceed(*args, **kwargs)
        finally:
            calls.inside -= 1
            if name is not None:
                recorder.ended(name)

    return intercepted(torch.autograd.Function, "apply", apply)


@contextlib.contextmanager
def _tapped(
    torch: Any,
    model: Any,
    name: str,
    function: type | None,
    before: Callable[[tuple[Any, ...], dict[str, Any]], None] | None = None,
    after: Callable[[Any], Any] | None = None,
) -> Iterator[None]:
    """Part ``name`` of ``model`` tapped while the block runs: ``before(args, kwargs)``
    as it is called, and its output replaced by ``after(output)`` (where not ``None``).
    A submodule by its hooks; a custom Function (``function``) by ``apply``, in this
    thread only."""
    if function is None:
        target = model.get_submodule(name)
        handles = []
        if before is not None:
            handles.append(
                target.register_forward_pre_hook(
                    lambda module, args, kwargs: before(args, kwargs), with_kwargs=True
                )
            )
        if after is not None:
            handles.append(target.register_forward_hook(lambda module, args, out: after(out)))
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()
        return

    def apply(cls: type, proceed: Callable[..., Any], args: tuple[Any, ...], kwargs: Any) -> Any:
        if cls is not function:
            return proceed(*args, **kwargs)
        if before is not None:
            before(args, kwargs)
        out = proceed(*args, **kwargs)
        replaced = after(out) if after is not None else None
        return out if replaced is None else replaced

    with intercepted(torch.autograd.Function, "apply", apply):
        yield


class _Stop(Exception):
    """Internal: a prefix's forward pass stops where the part it ends at begins."""


def _prefix(torch: Any, model: Any, name: str, function: type | None = None) -> Any:
    """``model`` run up to part ``name``, returning ``name``'s float inputs."""

    class Prefix(torch.nn.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, *inputs: Any) -> Any:
            seen: list[tuple[Any, ...]] = []

            def stop(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
                seen.append((args, kwargs))
                raise _Stop

            # (looked up on each call: a check runs a private copy of this module)
            try:
                with _tapped(torch, self.inner, name, function, before=stop):
                    self.inner(*inputs)
            except _Stop:
                pass
            floats = _floats(torch, seen[0])
            return floats[0] if len(floats) == 1 else tuple(floats)

    return Prefix()


def _floats(torch: Any, inputs: Any) -> list[Any]:
    """The float tensors among a call's inputs, nested in tuples, lists and dicts
    (keyword inputs included): all that flows into the part from before it."""
    if torch.is_tensor(inputs):
        return [inputs] if inputs.is_floating_point() else []
    if isinstance(inputs, dict):
        inputs = list(inputs.values())
    if isinstance(inputs, (tuple, list)):
        return [t for x in inputs for t in _floats(torch, x)]
    return []


def _suffix(torch: Any, model: Any, name: str, function: type | None = None) -> Any:
    """``model`` with part ``name``'s output replaced by its first input."""

    class Suffix(torch.nn.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, replaced: Any, *inputs: Any) -> Any:
            with _tapped(torch, self.inner, name, function, after=lambda out: replaced):
                return self.inner(*inputs)

    return Suffix()


def _output_of(
    torch: Any, model: Any, name: str, inputs: tuple[Any, ...], function: type | None = None
) -> Any:
    """What part ``name`` returns in a forward pass at ``inputs`` (a float tensor,
    requiring grad for its check), or ``None``."""
    seen: list[Any] = []
    try:
        with (
            torch.no_grad(),
            torch.random.fork_rng(devices=_devices(torch, list(inputs))),
            _tapped(torch, model, name, function, after=seen.append),
        ):
            model(*inputs)
    except Exception:
        return None
    out: Any = seen[0] if len(seen) == 1 else None
    if not (torch.is_tensor(out) and out.is_floating_point()):
        return None
    return out.detach().clone().requires_grad_(True)


def _widened(torch: Any, x: Any) -> Any:
    """A model input as the parts' checks take it: float64, requiring grad as it did."""
    if not (torch.is_tensor(x) and x.is_floating_point()):
        return x
    return x.detach().to(torch.float64).requires_grad_(x.requires_grad)


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
    """A part's input as its own check takes it: a copy, requiring grad where it did in
    the recorded forward (it depends on the model's parameters or differentiated inputs)."""
    if not torch.is_tensor(x):
        return x
    differentiated = x.requires_grad and (x.is_floating_point() or x.is_complex())
    return x.detach().clone().requires_grad_(differentiated)


class _Submodules:
    """A module's submodules as `_isolate.Parts`: named as ``named_modules()`` names them."""

    def __init__(
        self,
        torch: Any,
        modules: dict[str, Any],
        calls: _Calls,
        check: Check,
        model: tuple[Any, tuple[Any, ...], Any],
    ):
        self.torch = torch
        self.modules = modules
        self.calls = calls
        self.check = check
        self.model, self.inputs, self.loss = model  # the float64 copy, its inputs, the loss
        self.parameters = dict(self.model.named_parameters())  # (tied ones under one name)
        self.spans: dict[str, tuple[int, int] | None] = {}

    def around(self, name: str) -> list[Report] | None:
        """The model checked apart from ``name``: up to ``name``'s inputs (what feeds
        it, code between submodules included) and from ``name``'s output on (what it
        feeds, skip connections included, its output replaced by an input). ``None``
        where ``name`` ran more than once or its output is not one tensor."""
        torch = self.torch
        if self.calls.times.get(name) != 1 or not self.calls.args.get(name):
            return None
        (call,) = self.calls.args[name]
        floats = _floats(torch, call)
        function = self.calls.functions.get(name)
        output = _output_of(torch, self.model, name, self.inputs, function)
        if output is None or not floats:
            return None  # (what reaches it, if anything, comes another way: an attribute)
        reports = []
        try:
            prefix = _prefix(torch, self.model, name, function)
            reports.append(self.check(prefix, *self.inputs, whole=True))
            suffix = _suffix(torch, self.model, name, function)
            reports.append(self.check(suffix, output, *self.inputs, loss=self.loss, whole=True))
        except Exception:  # (a part that cannot run apart: no verdict to go by)
            return None
        return reports

    def children(self, name: str) -> list[str]:
        """Direct submodules that ran; a container that never runs itself (a ModuleList,
        a ModuleDict) stands for its own submodules."""
        if name in self.calls.functions:
            return []
        prefix = f"{name}." if name else ""
        direct = [
            n
            for n in [*self.modules, *self.calls.functions]
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
        if name not in self.spans:  # (asked for each pair of siblings: scanned once)
            inside = [n for n in self.calls.end if n.startswith(f"{name}.")]
            starts, ends = (
                [self.calls.start[n] for n in inside],
                [self.calls.end[n] for n in inside],
            )
            self.spans[name] = (min(starts), max(ends)) if inside else None
        return self.spans[name]

    def own(self, name: str) -> list[Report] | None:
        """``name`` checked at each of its calls (keyword inputs held fixed)."""
        calls = self.calls.args.get(name)
        if not calls:
            return None
        module = self._module(name)
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

    def _module(self, name: str) -> Any:
        """Part ``name`` as a module: a custom Function as one that applies it."""
        function: Any = self.calls.functions.get(name)
        if function is None:
            return self.modules[name]
        base: Any = self.torch.nn.Module

        class Applied(base):  # type: ignore[misc]
            def forward(self, *args: Any, **kwargs: Any) -> Any:
                return function.apply(*args, **kwargs)

        return Applied()

    def upstream(self, name: str, of: str) -> bool:
        first, second = self._span(name), self._span(of)
        return first is not None and second is not None and first[1] < second[0]

    def owner(self, parameter: str) -> str | None:
        owner = parameter.rsplit(".", 1)[0] if "." in parameter else ""
        return owner if owner in self.modules else None

    def is_input(self, parameter: str) -> bool:
        return parameter.startswith("input") and parameter[5:].isdigit()

    def holds(self, part: str, parameter: str) -> bool:
        tensor = self.parameters.get(parameter)
        if tensor is None:
            return False
        if part in self.calls.functions:  # (a parameter handed to the Function)
            return id(tensor) in self.calls.handed[part]
        return any(p is tensor for p in self.modules[part].parameters())

    def kind(self, name: str) -> str:
        if name in self.calls.functions:
            return "autograd.Function"
        return type(self.modules[name]).__name__

    def called(self, name: str) -> str:
        if not name:
            function = getattr(self.model, "function", False) is True
            return self.kind("") if function else f"{self.kind('')}.forward"
        if name in self.calls.functions:
            parent, _, cls = name.rpartition(".")
            return f"{cls} in {called(parent)}" if parent else cls
        return called(name)

    def apart(self, name: str) -> str:
        model = "function" if getattr(self.model, "function", False) is True else "model"
        return f"the {model} checked apart from it (up to its inputs, and from its output on)"

    def last(self) -> str | None:
        return None if self.loss is None else "the loss"

    def unchecked(self, name: str) -> str | None:
        if name in self.calls.functions:
            return None  # (its forward and backward are what its own check covers)
        if name and name not in self.calls.end:
            return None  # a container that never runs itself (a ModuleList)
        if type(self.modules[name]).forward is self.torch.nn.Sequential.forward:
            return None  # it only chains its submodules
        if not name and getattr(self.model, "function", False) is True:
            return f"{self.kind('')}'s own code, between the custom Functions it applies"
        return f"{self.kind(name)}.forward's own code, between its submodules"
