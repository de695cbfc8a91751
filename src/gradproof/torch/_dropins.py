"""The drop-ins `gradcheck` and `gradgradcheck`: torch's semantics (the inputs and
outputs that require grad), its options, its exception, and the probe that reads a
function's outputs before the check."""

from __future__ import annotations

import dataclasses
import functools
import importlib
from collections.abc import Callable
from typing import Any

from .. import _adapter, _policy
from .._errors import GradientSpecError
from .._options import Options, options
from .._report import GradientError, Report
from ._check import check_all
from ._intake import Call, Probe, cuda_devices, load_torch, projection


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
    torch = load_torch()
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
    opts = dropin_options(eps, atol, rtol, fast_mode)
    inputs = _as_tuple(torch, inputs)
    request = _adapter.Request(opts, modes, 1)
    report = dropin_report(torch, Call(func, inputs), request, nondet_tol, unchecked)
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
    torch = load_torch()
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
    opts = dropin_options(eps, atol, rtol, fast_mode)
    inputs = _as_tuple(torch, inputs)
    request = _adapter.Request(opts, modes, 2)
    report = dropin_report(
        torch, Call(func, inputs, weights=weights), request, nondet_tol, unchecked
    )
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


def dropin_options(eps, atol, rtol, fast_mode: bool) -> Options:
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


def dropin_report(
    torch: Any, call: Call, request: _adapter.Request, nondet_tol: float, unchecked: list[str]
) -> Report:
    """What a drop-in call found: gradproof's check of what gradcheck checks, the backward's
    re-entrancy (one forward, two backwards) and the options it does not check included."""
    probe = _probe(torch, call.fn, call.inputs, call.weights, nondet_tol, request.opts.seed)
    report = check_all(torch, dataclasses.replace(call, dropin=probe), request)
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
        raise gradcheck_error(torch)(report)
    return False


def _probe(torch, func, inputs, weights, nondet_tol: float, seed: int) -> Probe:
    """The outputs gradcheck checks (those requiring grad), and whether the backward is
    re-entrant: the same graph, back-propagated twice, agrees within ``nondet_tol``.

    With one real output requiring grad and no ``weights``, the backward is weighted as
    `Checker.forward` weighs that output: a check of it reuses the gradient
    instead of running the forward and backward again.
    """
    leaves = [x for x in inputs if torch.is_tensor(x) and x.requires_grad]
    try:
        with torch.random.fork_rng(devices=cuda_devices(torch, func, inputs)):
            out = func(*inputs)
    except Exception:  # the check itself says what the function raised, and where
        return Probe(None, None)
    tensors = [o for o in (out if isinstance(out, (tuple, list)) else [out]) if torch.is_tensor(o)]
    differentiable = [i for i, o in enumerate(tensors) if o.requires_grad]
    outs = [tensors[i] for i in differentiable]
    probed = functools.partial(Probe, differentiable, count=len(tensors))
    if not outs or not leaves:
        return probed(None)
    reusable = (
        weights is None and len(outs) == 1 and outs[0].is_floating_point() and _plain(torch, inputs)
    )
    if reusable:
        cot = [projection(torch, seed, outs[0]).to(outs[0].dtype)]
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


def gradcheck_error(torch) -> type:
    """An error that is both torch's GradcheckError and gradproof's GradientError."""
    global GradcheckError
    if GradcheckError is None:
        # torch.autograd.gradcheck is also the name of the function: import the module
        base = importlib.import_module("torch.autograd.gradcheck").GradcheckError

        class _GradcheckError(GradientError, base):  # type: ignore[misc, valid-type]
            """A failed gradcheck: torch's GradcheckError whose message is gradproof's report."""

        _GradcheckError.__name__ = _GradcheckError.__qualname__ = "GradcheckError"
        _GradcheckError.__module__ = "gradproof.torch"  # (where users name it)
        GradcheckError = _GradcheckError
    return GradcheckError


# Made on first use (it subclasses torch's own, and torch is imported lazily).
GradcheckError: Any = None
