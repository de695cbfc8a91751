"""`gradproof.torch.check`: every requested check of a function or module, and where
its error enters (`_origin`)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

from .. import _adapter, _policy, _trace
from .._adapter import Derivative
from .._options import Options, user_options
from .._report import Report
from ._checker import Checker
from ._intake import TORCH_CONVENTION, Call, cuda_devices, load_torch


def check(
    fn_or_module: Any,
    *inputs: Any,
    loss: Callable[[Any], Any] | None = None,
    modes: Sequence[str] = ("rev",),
    order: int = 1,
    **check_options: Any,
) -> Report:
    """Check what autograd computes for ``fn_or_module(*inputs)`` against finite differences.

    Checked: the module's parameters that require grad (named as in
    ``named_parameters()``, e.g. ``"0.weight"``) and the inputs that require
    grad (``"input0"``, ``"input1"``, ...).

    Args:
        fn_or_module: an ``nn.Module`` or a function of tensors (custom
            ``autograd.Function.apply`` included). It may return a tuple of
            tensors: each output is checked in turn, and named in the report
            (``"input0 [output 1]"``).
        inputs: its positional inputs.
        loss: turns the output, all of it as returned (a tuple stays a tuple),
            into the scalar cost. Without it, a scalar
            output is the cost, and any other output ``y`` is reduced to
            ``sum(y * r)`` with a fixed random ``r`` (seeded by ``seed``),
            which checks the backward pass for that cotangent.
        modes: ``"rev"`` checks the backward (VJP); ``"fwd"`` checks
            forward-mode AD (``torch.func.jvp``, a Function's ``jvp``); both
            also compare the two modes with each other.
        order: 2 checks second derivatives too: the double backward (a custom
            Function's backward must itself be differentiable) against finite
            differences of the first derivative, named ``"input0 [order 2]"``.
        check_options: as for [`gradproof.check`][gradproof.check] (``method``, ``eps``,
            ``tol``, ``mode``, ``k``, ``seed``, ``progress``).

    Returns:
        A [`gradproof.Report`][gradproof.Report], by parameter and input name.
    """
    torch = load_torch()
    modes = _adapter.validate_modes("gradproof.torch.check", modes, order)
    opts = user_options("gradproof.torch.check", **check_options)
    request = _adapter.Request(opts, modes, order)
    report = check_all(torch, Call(fn_or_module, inputs, loss), request)
    if not report.passed:
        model = fn_or_module
        if not isinstance(model, torch.nn.Module):  # (its parts: the custom Functions it applies)
            model = _Applying(torch, fn_or_module)
        try:
            report = _isolated(torch, model, inputs, loss, opts, report)
        except Exception as exc:  # (the verdict stands without it)
            report = _trace.unsearched(report, exc)
    return report


def _Applying(torch: Any, fn: Callable[..., Any]) -> Any:
    """A function of tensors as a module without parameters, whose parts the search
    for where an error enters can see (the custom Functions it applies)."""

    class Applying(torch.nn.Module):  # type: ignore[misc]
        function = True  # (said "the function", not "the model")

        def forward(self, *inputs: Any) -> Any:
            return fn(*inputs)

    Applying.__name__ = getattr(fn, "__name__", "function")
    return Applying()


def _isolated(
    torch: Any, model: Any, inputs: tuple[Any, ...], loss: Any, opts: Options, report: Report
) -> Report:
    """``report`` with where its error enters the backward, where the model's submodules,
    each checked on its own at the inputs it received, show it (``Report.origin``)."""
    from . import _origin as _torch_origin

    alone = dataclasses.replace(opts, progress=False, k=None, executor=None)

    def check_alone(module: Any, *args: Any, loss: Any = None, whole: bool = False) -> Report:
        grads = [a for a in args if torch.is_tensor(a) and a.requires_grad]
        size = sum(t.numel() for t in [*grads, *module.parameters()] if t.requires_grad)
        mode = _policy.part_mode(size, full=whole and report.mode == "full")
        return check_all(torch, Call(module, args, loss), _adapter.Request(alone.with_mode(mode)))

    started = time.perf_counter()
    found = _torch_origin.locate(torch, model, inputs, loss, report, check_alone)
    return _trace.searched(report, found, time.perf_counter() - started, layer_order=True)


def check_all(torch: Any, call: Call, request: _adapter.Request) -> Report:
    """Every requested check (outputs × modes × orders) of one call, as one report.

    A drop-in's call (its `Probe`, ``call.dropin``) checks what torch's gradcheck
    checks: the inputs that require grad (a module is a function of its inputs, its
    parameters held fixed) and the outputs that require grad.
    """
    devices = cuda_devices(torch, call.fn, call.inputs)
    with torch.random.fork_rng(devices=devices):
        # One RNG state for every check of this call, so all replay the same draws.
        rng = (torch.get_rng_state(), {d: torch.cuda.get_rng_state(d) for d in devices})
        call = dataclasses.replace(call, seed=request.opts.seed, rng=rng)

        def make(output: int | None, kind: Derivative, depth: int = 1) -> Checker:
            return Checker(torch, call, output, kind, depth)

        return _adapter.check_all(make, request, TORCH_CONVENTION, dropin=call.dropin is not None)
