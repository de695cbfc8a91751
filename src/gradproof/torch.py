"""Checking what PyTorch's autograd computes: modules, custom ``autograd.Function`` rules, kernels.

```python
import torch, gradproof.torch as gpt
model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh())
x = torch.randn(8, 4)
print(gpt.check(model, x, loss=lambda out: out.pow(2).mean()))
```

The module and the inputs are never modified: the gradient is taken, and the
cost evaluated, on float64 copies on the tensors' device. Torch's RNG is
replayed before every evaluation, so dropout is checked with one mask.
PyTorch is imported only when this module is used.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import importlib
import math
import textwrap
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import _adapter, _policy
from ._adapter import BATCH_ELEMENTS
from ._errors import DerivativeRaised, GradientSpecError
from ._options import Options, options, user_options
from ._report import GradientError, Report


def _torch():
    try:
        import torch
    except ImportError as exc:
        raise ImportError("gradproof.torch needs PyTorch: pip install 'gradproof[torch]'") from exc
    return torch


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
    torch = _torch()
    modes = _adapter.validate_modes("gradproof.torch.check", modes, order)
    opts = user_options("gradproof.torch.check", **check_options)
    report = _check_all(torch, fn_or_module, inputs, loss, opts, modes, order)
    if not report.passed:
        model = fn_or_module
        if not isinstance(model, torch.nn.Module):  # (its parts: the custom Functions it applies)
            model = _Applying(torch, fn_or_module)
        report = _isolated(torch, model, inputs, loss, opts, report)
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


def _isolated(torch, model, inputs, loss, opts: Options, report: Report) -> Report:
    """``report`` with where its error enters the backward, where the model's submodules,
    each checked on its own at the inputs it received, show it (``Report.origin``)."""
    from . import _torch_origin, _trace

    alone = dataclasses.replace(opts, progress=False, k=None, executor=None)

    def check_alone(module: Any, *args: Any, loss: Any = None, whole: bool = False) -> Report:
        grads = [a for a in args if torch.is_tensor(a) and a.requires_grad]
        size = sum(t.numel() for t in [*grads, *module.parameters()] if t.requires_grad)
        # every element where that is cheap (its kinks told apart, as a tie in a max
        # pool after a ReLU), random directions where it is not; the model around the
        # entry (``whole``) as closely as the model's own check looked
        small = size <= _policy.ISOLATION_FULL or (whole and report.mode == "full")
        mode: _policy.Mode = "full" if small else "directional"
        return _check_all(torch, module, args, loss, alone.with_mode(mode), ("rev",), 1)

    started = time.perf_counter()
    found = _torch_origin.locate(torch, model, inputs, loss, report, check_alone)
    policy = {**report.policy, "isolation": found.record()}
    seconds = report.seconds + time.perf_counter() - started  # (the search's time counts)
    origin, tensors = found.origin, report.tensors
    if origin is not None:
        origin, tensors = _trace.traced(tensors, origin)
    elif found.checks == 0 and _trace.layered(report):
        # no submodule could be checked: the layer order of the backward's rows may show it
        rows = {n: t for n, t in tensors.items() if not t.check}
        origin, traced = _trace.traced(rows)
        tensors = {n: traced.get(n, t) for n, t in tensors.items()}
    return dataclasses.replace(
        report, origin=origin, tensors=tensors, policy=policy, seconds=seconds
    )


def _check_all(
    torch, fn, inputs, loss, opts, modes, order, weights=None, dropin: _Probe | None = None
) -> Report:
    """Every requested check (outputs × modes × orders) of one function, as one report.

    ``dropin`` (a drop-in's `_Probe`): check what torch's gradcheck checks: the
    inputs that require grad (a module is a function of its inputs, its parameters
    held fixed) and the outputs that require grad.
    """
    devices = _cuda_devices(torch, fn, inputs)
    with torch.random.fork_rng(devices=devices):
        # One RNG state for every check of this call, so all replay the same draws.
        rng = (torch.get_rng_state(), {d: torch.cuda.get_rng_state(d) for d in devices})

        call = _Call(fn, inputs, loss, opts.seed, weights, rng, dropin)

        def make(output: int | None, kind: str, depth: int = 1) -> _Checker:
            return _Checker(torch, call, output, kind, depth)

        return _adapter.check_all(
            make, opts, modes, order, TORCH_CONVENTION, dropin=dropin is not None
        )


def gradcheck(
    func: Callable[..., Any],
    inputs: Any,
    *,
    eps: float | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    raise_exception: bool = True,
    nondet_tol: float = 0.0,
    check_undefined_grad: bool = True,
    check_grad_dtypes: bool = False,
    check_batched_grad: bool = False,
    check_batched_forward_grad: bool = False,
    check_forward_ad: bool = False,
    check_backward_ad: bool = True,
    fast_mode: bool = False,
    masked: bool | None = None,
) -> bool:
    """A drop-in for ``torch.autograd.gradcheck``: the same call, gradproof's verdict.

    ``func(*inputs)`` is checked for the inputs that require grad: its
    backward (``check_backward_ad``) and forward-mode AD
    (``check_forward_ad``), each output of a tuple in turn. ``fast_mode``
    asks for gradproof's directional mode. ``eps``, ``atol`` and ``rtol``,
    when given, are honoured: ``eps`` as the step, the tolerances as an extra
    bound below which a disagreement is accepted; left out, gradproof picks
    its steps and judges by the measured error of the finite differences.
    The backward is run twice and must agree with itself within ``nondet_tol``.

    Returns:
        ``True`` when every derivative checked is right; ``False`` on failure
        when ``raise_exception`` is false.

    Raises:
        gradproof.torch.GradcheckError: on failure (a subclass of torch's
            ``GradcheckError`` and of [`gradproof.GradientError`][gradproof.GradientError]), whose
            message is gradproof's report.
    """
    torch = _torch()
    modes = tuple(m for m, on in (("rev", check_backward_ad), ("fwd", check_forward_ad)) if on)
    if not modes:
        raise GradientSpecError(
            "gradcheck: check_backward_ad and check_forward_ad are both False: nothing to check"
        )
    unchecked = _unchecked_options(
        check_undefined_grad=(check_undefined_grad, True),
        check_grad_dtypes=(check_grad_dtypes, False),
        check_batched_grad=(check_batched_grad, False),
        check_batched_forward_grad=(check_batched_forward_grad, False),
        masked=(masked, None),
    )
    opts = _dropin_options(eps, atol, rtol, fast_mode)
    inputs = _as_tuple(torch, inputs)
    report = _dropin_report(torch, func, inputs, None, opts, modes, 1, nondet_tol, unchecked)
    return _dropin_verdict(torch, report, raise_exception)


def gradgradcheck(
    func: Callable[..., Any],
    inputs: Any,
    grad_outputs: Any = None,
    *,
    eps: float | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    gen_non_contig_grad_outputs: bool = False,
    raise_exception: bool = True,
    nondet_tol: float = 0.0,
    check_undefined_grad: bool = True,
    check_grad_dtypes: bool = False,
    check_batched_grad: bool = False,
    check_fwd_over_rev: bool = False,
    check_rev_over_rev: bool = True,
    fast_mode: bool = False,
    masked: bool = False,
) -> bool:
    """A drop-in for ``torch.autograd.gradgradcheck``: second derivatives, gradproof's verdict.

    The double backward of ``func(*inputs)`` (for each output, weighted by
    ``grad_outputs`` when given, else by fixed random cotangents) is checked
    against finite differences of the first derivative, and the first
    derivative itself too. Options as for [`gradcheck`][gradproof.torch.gradcheck].
    """
    torch = _torch()
    weights = None
    if grad_outputs is not None:
        weights = [grad_outputs] if torch.is_tensor(grad_outputs) else list(grad_outputs)
        weights = [w.detach().to(torch.float64) for w in weights]
    modes = ("rev", "fwd") if check_fwd_over_rev else ("rev",)
    unchecked = _unchecked_options(
        gen_non_contig_grad_outputs=(gen_non_contig_grad_outputs, False),
        check_undefined_grad=(check_undefined_grad, True),
        check_grad_dtypes=(check_grad_dtypes, False),
        check_batched_grad=(check_batched_grad, False),
        check_rev_over_rev=(check_rev_over_rev, True),
        masked=(masked, False),
    )
    opts = _dropin_options(eps, atol, rtol, fast_mode)
    inputs = _as_tuple(torch, inputs)
    report = _dropin_report(torch, func, inputs, weights, opts, modes, 2, nondet_tol, unchecked)
    return _dropin_verdict(torch, report, raise_exception)


def _unchecked_options(**given: tuple[Any, Any]) -> list[str]:
    """The torch options given a non-default value that gradproof does not check."""
    return [
        f"{name}={value!r} is torch's own check, not done by gradproof"
        for name, (value, default) in given.items()
        if value != default
    ]


def _as_tuple(torch, inputs: Any) -> tuple:
    return (inputs,) if torch.is_tensor(inputs) else tuple(inputs)


def _dropin_options(eps, atol, rtol, fast_mode: bool) -> Options:
    """gradcheck's arguments as gradproof's options: explicit ones honoured, defaults ours."""
    # fast_mode: one random direction per input (torch's fast mode takes one for all of
    # them), more only for a direction in doubt; a failing input is then localized.
    opts = options(
        "gradproof.torch.gradcheck",
        eps=eps,
        atol=atol,
        rtol=rtol,
        mode="directional" if fast_mode else "full",
        k=_policy.FAST_MODE_DIRECTIONS if fast_mode else None,
    )
    # an element off by less than 1e-9 of its input's gradient norm is far inside torch's
    # own tolerances (atol 1e-5): an inexact forward (an iterative solver) shows there
    return dataclasses.replace(opts, normwise_floor=True)


def _dropin_report(
    torch, func, inputs, weights, opts, modes, order: int, nondet_tol: float, unchecked
) -> Report:
    """What a drop-in call found: gradproof's check of what gradcheck checks, the backward's
    re-entrancy (one forward, two backwards) and the options it does not check included."""
    probe = _probe(torch, func, inputs, weights, nondet_tol, opts.seed)
    report = _check_all(torch, func, inputs, None, opts, modes, order, weights, dropin=probe)
    if unchecked:
        report = dataclasses.replace(report, warnings=[*unchecked, *report.warnings])
    if probe.unstable is not None:
        report = dataclasses.replace(
            report, passed=False, strict=False, warnings=[probe.unstable, *report.warnings]
        )
    return report


def _dropin_verdict(torch, report: Report, raise_exception: bool) -> bool:
    """gradcheck's return convention over gradproof's report."""
    if report.passed:
        return True
    if raise_exception:
        raise _gradcheck_error(torch)(report)
    return False


@dataclasses.dataclass(frozen=True)
class _Probe:
    """What one forward and two backward passes, as gradcheck is called, tell a drop-in."""

    outputs: list[int] | None  # the tensor outputs that require grad (None: not known)
    unstable: str | None  # why the backward is not re-entrant, if it is not
    count: int | None = None  # how many tensor outputs there are (None: not known)
    # One output requires grad: its backward, weighted as a check weights it (gradient by
    # input requiring grad; None: not run, or not so weighted), which a check may reuse.
    gradient: tuple[Any, ...] | None = None


def _probe(torch, func, inputs, weights, nondet_tol: float, seed: int) -> _Probe:
    """The outputs gradcheck checks (those requiring grad), and whether the backward is
    re-entrant: the same graph, back-propagated twice, agrees within ``nondet_tol``.

    With one real output requiring grad and no ``weights``, the backward is weighted as
    `_Checker.forward` weighs that output: a check of it reuses the gradient
    instead of running the forward and backward again.
    """
    leaves = [x for x in inputs if torch.is_tensor(x) and x.requires_grad]
    try:
        with torch.random.fork_rng(devices=_cuda_devices(torch, func, inputs)):
            out = func(*inputs)
    except Exception:  # the check itself says what the function raised, and where
        return _Probe(None, None)
    tensors = [o for o in (out if isinstance(out, (tuple, list)) else [out]) if torch.is_tensor(o)]
    differentiable = [i for i, o in enumerate(tensors) if o.requires_grad]
    outs = [tensors[i] for i in differentiable]
    probed = functools.partial(_Probe, differentiable, count=len(tensors))
    if not outs or not leaves:
        return probed(None)
    reusable = (
        weights is None and len(outs) == 1 and outs[0].is_floating_point() and _plain(torch, inputs)
    )
    if reusable:
        cot = [_projection(torch, seed, outs[0]).to(outs[0].dtype)]
    elif weights is None:
        gen = torch.Generator().manual_seed(0)
        cot = [torch.randn(o.shape, generator=gen, dtype=o.dtype).to(o.device) for o in outs]
    else:
        cot = [w.to(o.dtype) for w, o in zip(weights, outs, strict=False)]
    runs = []
    try:
        for _ in range(2):
            grads = torch.autograd.grad(
                outs, leaves, cot[: len(outs)], allow_unused=True, retain_graph=True
            )
            runs.append([None if g is None else g.detach().clone() for g in grads])
    except Exception:  # a backward that raises is the check's finding, with its evidence
        return probed(None)
    for i, (a, b) in enumerate(zip(*runs, strict=True)):
        if a is None or b is None:
            continue
        worst = float((a - b).abs().max()) if a.numel() else 0.0
        if worst > nondet_tol:
            return probed(
                f"the backward is non-deterministic: run twice with the same inputs and "
                f"grad_output, its gradient for input {i} differs by {worst:.3g} (nondet_tol "
                f"{nondet_tol:g}); not a wrong formula, but not re-entrant either",
            )
    return probed(None, gradient=tuple(runs[0]) if reusable else None)


def _plain(torch, inputs: tuple[Any, ...]) -> bool:
    """Whether ``func(*inputs)`` computes what a check's float64 copies compute: every
    float tensor already float64 (a check widens the rest), every input requiring grad
    a leaf, and no two tensors sharing storage (a check perturbs separate copies: the
    same tensor passed twice, ``(x, x)``, has one gradient to autograd and two to it)."""
    tensors = [x for x in inputs if torch.is_tensor(x)]
    if any((x.is_floating_point() or x.is_complex()) and x.dtype != torch.float64 for x in tensors):
        return False
    if any(x.requires_grad and not x.is_leaf for x in tensors):
        return False
    storages = [x.untyped_storage().data_ptr() for x in tensors if x.numel()]
    return len(storages) == len(set(storages))


def _projection(torch, seed: int, out: Any) -> Any:
    """The fixed cotangent an output of a check is weighted by: 1 for a single element,
    else standard normal, drawn from the check's seed (float64, on the output's device)."""
    if out.numel() == 1:
        return torch.ones(tuple(out.shape), dtype=torch.float64, device=out.device)
    generator = torch.Generator(device="cpu").manual_seed(_adapter.weight_seed(seed, 0))
    return torch.randn(tuple(out.shape), generator=generator, dtype=torch.float64).to(out.device)


def _gradcheck_error(torch) -> type:
    """An error that is both torch's GradcheckError and gradproof's GradientError."""
    global GradcheckError
    if GradcheckError is None:
        # torch.autograd.gradcheck is also the name of the function: import the module
        base = importlib.import_module("torch.autograd.gradcheck").GradcheckError

        class _GradcheckError(GradientError, base):  # type: ignore[misc, valid-type]
            """A failed gradcheck: torch's GradcheckError whose message is gradproof's report."""

        _GradcheckError.__name__ = _GradcheckError.__qualname__ = "GradcheckError"
        GradcheckError = _GradcheckError
    return GradcheckError


# Made on first use (it subclasses torch's own, and torch is imported lazily).
GradcheckError: Any = None


TORCH_CONVENTION = (
    "for a real loss L of complex z, PyTorch's gradient is dL/dRe(z) + i dL/dIm(z) (the "
    "conjugate Wirtinger derivative, doubled): conjugate what the backward returns"
)


def _cuda_devices(torch, fn: Any, inputs: tuple) -> list[int]:
    """The CUDA devices whose RNG a check must fork and replay."""
    tensors = [x for x in inputs if torch.is_tensor(x)]
    if isinstance(fn, torch.nn.Module):
        tensors += list(fn.parameters())
    return sorted({t.device.index or 0 for t in tensors if t.device.type == "cuda"})


def _nothing_to_check(torch: Any, inputs: Sequence[Any]) -> str:
    """Why a check found no tensor to check, and the likely fix."""
    for i, x in enumerate(inputs):
        if isinstance(x, (list, tuple)) and any(torch.is_tensor(t) for t in x):
            return (
                f"nothing to check: input {i} is a {type(x).__name__} of tensors, and inputs "
                "are passed one by one: write gpt.check(f, *tensors), not gpt.check(f, tensors)"
            )
        if isinstance(x, np.ndarray):
            return (
                f"nothing to check: input {i} is a NumPy array; pass a torch tensor created with "
                "requires_grad=True (torch.tensor(x, dtype=torch.float64, requires_grad=True)), "
                "or check NumPy code with gradproof.check"
            )
    return (
        "nothing to check: no module parameter and no input requires grad. Pass a module, "
        "or inputs created with requires_grad=True"
    )


def _private_copy(module: Any) -> Any:
    """A deep copy of ``module``, or the module itself where it cannot be copied (it holds
    a tensor computed with grad as an attribute, which deepcopy refuses): functional_call
    then swaps the check's tensors in for each call and restores the module's own after."""
    try:
        return copy.deepcopy(module)
    except (RuntimeError, TypeError):  # (TypeError: an attribute such as a threading.Lock)
        return module


def _wide(torch, x: Any) -> Any:
    """An input as the check sees it: float tensors in float64, complex in complex128."""
    if not torch.is_tensor(x):
        return x
    if x.is_complex():
        return x.detach().to(torch.complex128)
    return x.detach().to(torch.float64) if x.is_floating_point() else x.detach()


@dataclasses.dataclass(frozen=True)
class _Call:
    """One call of a check, shared by the checks of its outputs, modes and orders."""

    fn: Any  # the function or module
    inputs: tuple[Any, ...]
    loss: Callable[[Any], Any] | None
    seed: int
    weights: list[Any] | None  # output cotangents (grad_outputs) instead of random ones
    rng: tuple[Any, dict[int, Any]]  # torch's CPU and CUDA RNG states, replayed by each
    dropin: _Probe | None  # a drop-in's probe: check what torch's gradcheck checks


class _Checker:
    """The float64 copies, the cost over NumPy arrays, autograd's gradient, and vmap."""

    def __init__(
        self, torch: Any, call: _Call, output: int | None = None, kind: str = "rev", depth: int = 1
    ):
        fn, inputs, loss, seed = call.fn, call.inputs, call.loss, call.seed
        weights, rng, dropin = call.weights, call.rng, call.dropin
        self.torch = torch
        self.fn = fn
        self.loss = loss
        self.output = output  # which output of a tuple is checked
        # "rev", "fwd" or "order": which derivative is the analytic side; an "order" check
        # at depth k differentiates x -> <grad g(x), w>, g the objective of depth k - 1
        self.kind = kind
        self.depth = depth if kind == "order" else 1
        self.weights = weights  # output cotangents (grad_outputs) instead of random ones
        self.last_analytic: dict[str, np.ndarray] = {}
        self.magnitude = 0.0  # order >= 2: the size of the terms of <grad g, w> (by analytic)
        self.seed = seed
        # A private copy of a module: functional_call swaps parameters in and out, which a
        # module that registers one submodule twice (tied weights) does not survive intact.
        self.module = _private_copy(fn) if isinstance(fn, torch.nn.Module) else None
        self.probe = dropin
        # A module's parameters: where an error enters is found by checking its submodules
        # on their own (gradproof.torch.check), not from the parameters' names alone.
        self.trace_origin = self.module is None or dropin is not None
        named = {}
        if self.module is not None:
            # gradcheck's module is a function of its inputs: its parameters are held fixed
            checked = dropin is None
            named = {n: p for n, p in self.module.named_parameters() if p.requires_grad and checked}
            self.buffers = {n: b.detach() for n, b in self.module.named_buffers()}
            # Frozen parameters are not checked, but run in float64 like the rest.
            self.buffers.update(
                (n, p.detach()) for n, p in self.module.named_parameters() if n not in named
            )
        else:
            if not callable(fn):
                raise GradientSpecError(
                    "gradproof.torch.check takes an nn.Module or a function, "
                    f"got {type(fn).__name__}"
                )
            self.buffers = {}
        for i, x in enumerate(inputs):
            if torch.is_tensor(x) and x.requires_grad:
                named[f"input{i}"] = x
        if not named and dropin is not None:
            raise GradientSpecError(
                "gradcheck: no input requires grad, so there is nothing to check. Create the "
                "inputs to check with requires_grad=True"
            )
        if not named:
            raise GradientSpecError(_nothing_to_check(torch, inputs))
        for name, t in named.items():
            if not (t.is_floating_point() or t.is_complex()):
                raise GradientSpecError(
                    f"{name} has dtype {t.dtype}; only float and complex tensors have gradients"
                )
        # A complex tensor is checked as its real and imaginary parts ("input0.real",
        # "input0.imag"): autograd's gradient, in torch's convention, is d/dRe + i d/dIm.
        self.complex = {n for n, t in named.items() if t.is_complex()}
        self.params = {}
        for n, t in named.items():
            value = t.detach().to("cpu").resolve_conj().numpy()
            if n in self.complex:
                # np.array, not np.ascontiguousarray: that makes a 0-d input 1-d
                self.params[f"{n}.real"] = np.array(value.real, dtype=np.float64, order="C")
                self.params[f"{n}.imag"] = np.array(value.imag, dtype=np.float64, order="C")
            else:
                self.params[n] = value.astype(np.float64)
        self.names = list(self.params)
        self.shapes = {n: a.shape for n, a in self.params.items()}
        wide = (torch.float64, torch.complex128)
        self.low = sorted({str(t.dtype) for t in named.values() if t.dtype not in wide})
        self.device = next(iter(named.values())).device
        self.cuda_devices = [self.device.index or 0] if self.device.type == "cuda" else []
        self.inputs = [_wide(torch, x) for x in inputs]
        # Inputs that are views into a larger storage keep that layout in every copy:
        # an operation such as as_strided reads the storage, not just the elements.
        self.layouts = {}
        for n, t in named.items():
            if not n.startswith("input"):
                continue
            # (an expanded input, stride 0, cannot be written through: it is copied whole)
            if 0 not in t.stride() and (
                t.storage_offset() != 0
                or t.untyped_storage().nbytes() != t.numel() * t.element_size()
            ):
                base = torch.empty(0, dtype=t.dtype, device=t.device).set_(
                    t.untyped_storage(), 0, (t.untyped_storage().nbytes() // t.element_size(),)
                )
                wide = torch.complex128 if t.is_complex() else torch.float64
                storage = base.detach().to(wide).clone()
                self.layouts[n] = (storage, tuple(t.shape), tuple(t.stride()), t.storage_offset())
        self.rng_state, self.cuda_state = rng
        self.projection = None
        self.vmap_failed: str | None = None  # why torch.func.vmap could not batch the cost
        self.unbatched_seconds = 0.0  # time spent evaluating one by one since then
        self.vmap_slower: str | None = None  # batching ran, but slower than one by one
        self.seconds_per_eval = math.inf  # the fastest one-by-one evaluation seen
        self.vmap_timed = False  # batching has been timed against one by one
        self.output_indices = self._checked_outputs()
        # order k checks x -> <grad g(x), w>: its gradient is the k-th derivative along ws.
        # (Level 1's weights keep stream 1, so order-2 checks draw what they always drew.)
        self.level_weights = _adapter.level_weights(seed, self.shapes, self.depth)

    def notes(self) -> list[str]:
        notes = []
        if self.low:
            notes.append(
                f"the tensors checked are {'/'.join(self.low)}: the check ran on float64 copies "
                "(autograd's gradient included); the module and inputs were not changed"
            )
        if self.vmap_failed and self.unbatched_seconds >= _policy.UNBATCHED_NOTE_SECONDS:
            hint = (
                ". A custom autograd.Function batches with setup_context and "
                "generate_vmap_rule = True"
                if "autograd.Function" in self.vmap_failed
                else ""
            )
            notes.append(
                "evaluations ran one by one: torch.func.vmap could not batch the cost "
                f"({self.vmap_failed}){hint}"
            )
        if self.vmap_slower:
            notes.append(f"evaluations ran one by one: {self.vmap_slower}")
        return notes

    def record(self) -> dict[str, str]:
        """How the evaluations ran, for ``report.policy``: why one by one, if they did."""
        why = self.vmap_failed or self.vmap_slower
        return {"unbatched": why} if why else {}

    def replay(self) -> None:
        self.torch.set_rng_state(self.rng_state)
        for d, s in self.cuda_state.items():
            self.torch.cuda.set_rng_state(s, d)

    def _checked_outputs(self) -> list[int | None]:
        """The outputs checked, each in turn (a tuple's one by one; as a drop-in, those
        requiring grad, as torch's gradcheck does)."""
        if self.loss is not None:
            return [None]
        differentiable = None if self.probe is None else self.probe.outputs
        if differentiable is not None and len(differentiable) == 1:
            # one output requires grad: checked alone
            return [None] if differentiable == [0] else [*differentiable]
        count = None if self.probe is None else self.probe.count
        if count is None:  # (a drop-in's probe counted them already)
            self.replay()
            with self.torch.no_grad():
                out = self._call(self._assemble(self._tensors(self.params)))
            count = (
                sum(1 for o in out if self.torch.is_tensor(o))
                if isinstance(out, (tuple, list))
                else 1
            )
        if count <= 1:
            return [None]
        checked: list[int | None] = [*(differentiable or range(count))]
        return checked

    def _call(self, tensors: dict[str, Any]) -> Any:
        torch = self.torch
        args = [tensors.get(f"input{i}", x) for i, x in enumerate(self.inputs)]
        if self.module is not None:
            state = {n: t for n, t in tensors.items() if not n.startswith("input")}
            if not state and not self.buffers:  # nothing to swap in (a loss module)
                return self.module(*args)
            # Fresh float64 copies of the buffers each time: batch norm's running
            # statistics must neither change the module nor carry over.
            buffers = {
                n: b.to(torch.float64).clone() if b.is_floating_point() else b.clone()
                for n, b in self.buffers.items()
            }
            return torch.func.functional_call(self.module, {**state, **buffers}, tuple(args))
        return self.fn(*args)

    def _assemble(self, tensors: dict[str, Any]) -> dict[str, Any]:
        """Tensors by input name: complex inputs put back together from their parts."""
        if not self.complex:
            return tensors
        tensors = dict(tensors)
        for n in self.complex:
            re, im = tensors.pop(f"{n}.real"), tensors.pop(f"{n}.imag")
            z = self.torch.complex(re, im)
            layout = self.layouts.get(n)
            if layout is not None:  # a view into a larger storage: the layout is kept
                storage, size, stride, offset = layout
                view = storage.clone().as_strided(size, stride, offset)
                view.copy_(z)  # differentiable: gradients reach re and im through it
                z = view
            tensors[n] = z
        return tensors

    def forward(self, tensors: dict[str, Any]):
        """The scalar cost: ``loss`` of the whole output as the function returns it, or the
        output (the one checked, of a tuple) weighted by fixed cotangents. A complex output
        counts by its real and imaginary parts."""
        torch = self.torch
        out = self._call(self._assemble(tensors))
        if self.loss is not None:
            out = self.loss(out)  # (all of a tuple: a loss of one output would hide the rest)
        elif isinstance(out, (tuple, list)):
            tensors_out = [o for o in out if torch.is_tensor(o)]
            out = tensors_out[self.output or 0] if tensors_out else out
        if not torch.is_tensor(out):
            raise GradientSpecError(
                f"the output (after loss) must be a tensor, got {type(out).__name__}"
            )
        if self.weights is not None:
            # grad_outputs, as torch's, cover the outputs that require grad, in order
            position = self.output or 0
            probed = None if self.probe is None else self.probe.outputs
            if probed and position in probed:
                position = probed.index(position)
            w = self.weights[position].to(out.device)
            if out.is_complex():  # <out, w> as a real inner product of the parts
                return (torch.view_as_real(out) * torch.view_as_real(w.to(out.dtype))).sum()
            return (out * w.to(out.dtype)).sum()
        if out.is_complex():
            out = torch.view_as_real(out)
        if out.numel() == 1:
            return out.reshape(())
        if self.projection is None or self.projection.shape != out.shape:
            self.projection = _projection(torch, self.seed, out)
        return (out * self.projection).sum()

    def _tensors(self, arrays: dict[str, np.ndarray], grad: bool = False) -> dict[str, Any]:
        torch = self.torch
        out = {}
        for n, a in arrays.items():
            t = torch.from_numpy(a).to(self.device)  # shares memory on the CPU
            layout = self.layouts.get(n)
            if layout is not None:  # a view into a larger storage (as_strided reads it)
                storage, size, stride, offset = layout
                view = storage.clone().as_strided(size, stride, offset)
                view.copy_(t)
                out[n] = view.detach().requires_grad_(grad)  # a fresh copy, its layout kept
                continue
            out[n] = t.clone().requires_grad_(True) if grad else t
        return out

    def analytic(self) -> dict[str, np.ndarray]:
        """The derivative under check: the backward, forward mode, or the double backward."""
        probed = self._probed_gradient()
        if probed is not None:
            result = probed
        elif self.kind == "fwd":
            with self._derivative():
                result = self._forward_mode()
        else:
            self.replay()
            tensors = self._tensors(self.params, grad=True)
            if self.kind == "order":
                with self._derivative("the backward"):  # the lower derivatives, made twice
                    cost = self._level(tensors, self.depth, create_graph=True)
            else:
                cost = self.forward(tensors)
            if cost.requires_grad:
                with self._derivative():
                    grads = self.torch.autograd.grad(
                        cost, list(tensors.values()), allow_unused=True
                    )
            else:  # the first derivative is a constant to autograd: its backward is not
                grads = [None] * len(self.names)  # differentiable, and says 0
            result = {n: self._dense(n, g) for n, g in zip(self.names, grads, strict=True)}
        self.last_analytic = result
        return result

    def _probed_gradient(self) -> dict[str, np.ndarray] | None:
        """The drop-in probe's backward, where it is exactly the one this check would run:
        the same output, weighted alike, at the same float64 inputs, and a module holding
        nothing that the check would widen to float64. (The probe keeps a gradient only
        for plain float64 inputs and no ``weights``: `_plain`, `_probe`.)"""
        probe = self.probe
        if probe is None or probe.gradient is None or probe.outputs != [self.output or 0]:
            return None
        if self.kind != "rev" or self.loss is not None or self.layouts:
            return None
        tensors = [t for t in self.buffers.values() if t.is_floating_point() or t.is_complex()]
        if any(t.dtype != self.torch.float64 for t in tensors):
            return None
        return {n: self._dense(n, g) for n, g in zip(self.names, probe.gradient, strict=True)}

    @contextlib.contextmanager
    def _derivative(self, what: str | None = None):
        """Autograd raising on the derivative under check: a finding (``DerivativeRaised``),
        or, for a derivative torch does not implement, an error that says what to check."""
        what = (
            what
            or {
                "rev": "the backward",
                "fwd": "forward-mode AD (the jvp)",
                "order": "the double backward" if self.depth == 2 else "a higher backward",
            }[self.kind]
        )
        try:
            yield
        except Exception as exc:
            # bad input, and running out of memory, are not findings about the derivative
            if isinstance(exc, (GradientSpecError, MemoryError)) or _out_of_memory(exc):
                raise
            text = str(exc).lower()
            if isinstance(exc, NotImplementedError) or "not implemented" in text:
                instead = {
                    "the backward": "",
                    "forward-mode AD (the jvp)": ": check it with modes=('rev',)",
                    "the double backward": ": check it with order=1",
                    "a higher backward": f": check it with order={self.depth - 1}",
                }[what]
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                if self.probe is not None and self.kind == "fwd":
                    # as torch's gradcheck raises it, in the drop-in's own terms
                    raise NotImplementedError(
                        f"{what} is not implemented for this function ({first}): "
                        "gradcheck with check_forward_ad=False checks the backward alone"
                    ) from exc
                raise GradientSpecError(
                    f"{what} is not implemented for this function ({first}){instead}"
                ) from exc
            raise DerivativeRaised(what, exc) from exc

    def _level(self, tensors: dict[str, Any], depth: int, create_graph: bool):
        """The objective at ``depth``: the cost, then ``<grad g(x), w>`` per level above it
        (its gradient is the Hessian times ``w`` at depth 2)."""
        torch = self.torch
        if depth == 1:
            return self.forward(tensors)
        with torch.enable_grad():
            f = self._level(tensors, depth - 1, create_graph=True)
            if not f.requires_grad:  # a constant to autograd: every gradient is zero
                return torch.zeros((), dtype=torch.float64, device=self.device)
            grads = torch.autograd.grad(
                f, list(tensors.values()), create_graph=create_graph, allow_unused=True
            )
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        terms = 0.0
        for n, g in zip(self.names, grads, strict=True):
            if g is not None:
                w = torch.from_numpy(self.level_weights[depth - 2][n]).to(self.device)
                total = total + (g * w).sum()
                if create_graph:  # at the check point: <grad g, w> may cancel, its terms do not
                    terms += float((g * w).detach().abs().sum())
        if create_graph and depth == self.depth:
            self.magnitude = terms
        return total

    def _forward_mode(self) -> dict[str, np.ndarray]:
        """The gradient of the scalar cost by forward-mode AD, one tangent per element:
        batched with ``torch.func.vmap`` where it can, one by one where it cannot."""
        out = {}
        for name in self.names:
            size = int(np.prod(self.shapes[name], dtype=np.int64))
            g = self._forward_mode_batched(name, size)
            if g is None:
                g = self._forward_mode_one_by_one(name, range(size))
            out[name] = g.reshape(self.shapes[name])
        return out

    def _forward_mode_one_by_one(self, name: str, elements: Any) -> np.ndarray:
        import torch.autograd.forward_ad as fwad

        torch = self.torch
        g = np.zeros(len(elements))
        for j, i in enumerate(elements):
            tangent = torch.zeros(self.shapes[name], dtype=torch.float64, device=self.device)
            tangent.view(-1)[i] = 1.0
            self.replay()
            with fwad.dual_level(), torch.no_grad(), warnings.catch_warnings():
                # torch's forward AD scripts a helper on first use (its warning, not ours)
                warnings.filterwarnings("ignore", ".*torch.jit.script", DeprecationWarning)
                tensors = self._tensors(self.params)
                tensors[name] = fwad.make_dual(tensors[name], tangent)
                value = fwad.unpack_dual(self.forward(tensors)).tangent
            g[j] = 0.0 if value is None else float(value)
        return g

    def _forward_mode_batched(self, name: str, size: int) -> np.ndarray | None:
        """``torch.func.jvp`` under ``vmap`` over one-hot tangents, a batch at a time, or
        ``None`` where that cannot run (a Function without a vmap rule, an input that
        views a larger storage) or disagrees with one tangent run alone."""
        torch = self.torch
        if size < 2 or self.vmap_failed is not None or name in self.layouts:
            return None
        base = self._tensors(self.params)
        shape = self.shapes[name]

        def one(tangent):
            def cost(leaf):
                return self.forward({**base, name: leaf})

            return torch.func.jvp(cost, (base[name],), (tangent,))[1]

        batched = torch.func.vmap(one, randomness="same")
        rows = max(1, min(size, BATCH_ELEMENTS // size))
        g = np.empty(size)
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", ".*torch.jit.script", DeprecationWarning)
                for start in range(0, size, rows):
                    n = min(rows, size - start)
                    tangents = torch.zeros((n, size), dtype=torch.float64, device=self.device)
                    tangents[torch.arange(n), torch.arange(start, start + n)] = 1.0
                    self.replay()
                    values = batched(tangents.reshape((n, *shape)))
                    g[start : start + n] = values.detach().to("cpu", torch.float64).numpy()
        except Exception:  # one by one then raises whatever is the cost's own
            return None
        # Batching must not change a number: the largest element, run alone, agrees.
        largest = int(np.argmax(np.abs(g)))
        alone = self._forward_mode_one_by_one(name, [largest])[0]
        if abs(alone - g[largest]) > 1e-8 * (abs(g[largest]) + abs(alone)):
            return None
        return g

    def _dense(self, name: str, g: Any) -> np.ndarray:
        """Autograd's gradient as a float64 array: ``None`` (the input does not reach the
        output) and ZeroTensors are zeros; sparse gradients are made dense."""
        torch = self.torch
        if g is None or g._is_zerotensor():
            return np.zeros(self.shapes[name])
        try:
            if g.layout != torch.strided:
                g = g.to_dense()
            return g.detach().resolve_conj().resolve_neg().to("cpu", torch.float64).numpy()
        except (RuntimeError, TypeError) as exc:
            raise GradientSpecError(
                f"autograd's gradient for {name} is a {g.layout} tensor that cannot be made a "
                f"dense float64 array ({type(exc).__name__}: {exc})"
            ) from exc

    def cost(self, arrays: dict[str, np.ndarray]) -> float:
        started = time.perf_counter()
        self.replay()
        if self.kind == "order":
            tensors = self._tensors(arrays, grad=True)
            value = float(self._level(tensors, self.depth, create_graph=False))
            self.seconds_per_eval = min(self.seconds_per_eval, time.perf_counter() - started)
            return value
        with self.torch.no_grad():
            value = float(self.forward(self._tensors(arrays)))
        self.seconds_per_eval = min(self.seconds_per_eval, time.perf_counter() - started)
        return value

    def batched(self, name: str, flat: np.ndarray, coords: list[int], values: list[list[float]]):
        """Cost values for each point set, the perturbed copies evaluated in vmap batches.

        Falls back to one by one, for the rest of the check, when vmap cannot
        batch the cost or when batching turns out slower than one by one.
        """
        if self.vmap_failed is None and self.vmap_slower is None and self.kind != "order":
            try:
                return [self._vmapped(name, flat, coords, v) for v in values]
            except _SlowerBatched as slower:
                self.vmap_slower = str(slower)
            except _TORCH_ERRORS as exc:
                # torch's own errors under vmap: a batching limit if the same evaluation
                # runs one by one; anything else (a user's exception) is the cost's own.
                if not _cannot_batch(exc) and not _adapter.runs_alone(
                    self, name, flat, coords, values
                ):
                    raise
                first = str(exc).splitlines()[0] if str(exc) else ""
                self.vmap_failed = textwrap.shorten(f"{type(exc).__name__}: {first}", 160)
        began = time.perf_counter()
        out = [_adapter.one_by_one(self, name, flat, coords, v) for v in values]
        self.unbatched_seconds += time.perf_counter() - began
        return out

    def _vmapped(self, name, flat, coords, values) -> np.ndarray:
        torch = self.torch
        shape = self.shapes[name]
        others = self._tensors({n: self.params[n] for n in self.names if n != name})
        base = torch.from_numpy(flat).to(self.device)
        size = max(1, min(len(coords), BATCH_ELEMENTS // max(flat.size, 1)))
        out = []

        def one(leaf):
            return self.forward({**others, name: leaf})

        batched = torch.func.vmap(one, randomness="same")
        start, timed = 0, not self.vmap_timed
        while start < len(coords):
            # Two small batches first: the second, warm, is timed against one-by-one.
            rows = min(PROBE_ROWS, size) if timed else size
            idx = torch.as_tensor(coords[start : start + rows], device=self.device)
            leaf = base.expand(idx.numel(), flat.size).clone()
            leaf[torch.arange(idx.numel(), device=self.device), idx] = torch.as_tensor(
                values[start : start + rows], dtype=torch.float64, device=self.device
            )
            began = time.perf_counter()
            self.replay()
            with torch.no_grad():
                out.append(batched(leaf.reshape((idx.numel(), *shape))).cpu().numpy())
            start += idx.numel()
            if timed and len(out) == 2:
                timed = False
                self.vmap_timed = True
                per_eval = (time.perf_counter() - began) / idx.numel()
                if per_eval > self.seconds_per_eval:
                    raise _SlowerBatched(
                        f"batching with torch.func.vmap took {per_eval * 1e3:.3g} ms per "
                        f"evaluation against {self.seconds_per_eval * 1e3:.3g} ms one by one"
                    )
        return np.concatenate(out)


# Rows of the first two batches; the second is timed against one-by-one evaluation.
PROBE_ROWS = 64


# The exceptions torch raises itself; only these may mean "cannot be batched".
_TORCH_ERRORS = (RuntimeError, NotImplementedError, ValueError, TypeError, IndexError)


class _SlowerBatched(Exception):
    """Internal: batching ran, but slower than evaluating one by one."""


def _out_of_memory(exc: BaseException) -> bool:
    """torch's out-of-memory errors (a RuntimeError subclass, or its message)."""
    return type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower()


def _cannot_batch(exc: BaseException) -> bool:
    """Whether an exception from vmap means "this function cannot be batched"."""
    text = f"{type(exc).__name__}: {exc}".lower()
    return any(word in text for word in ("vmap", "batch", "functorch"))
