"""What a PyTorch check takes in: the torch module, a call's function and inputs, float64
copies on their device, and a module's private copy."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .. import _adapter


def load_torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise ImportError("gradproof.torch needs PyTorch: pip install 'gradproof[torch]'") from exc
    return torch


TORCH_CONVENTION = (
    "for a real loss L of complex z, PyTorch's gradient is dL/dRe(z) + i dL/dIm(z) (the "
    "conjugate Wirtinger derivative, doubled): conjugate what the backward returns"
)


def cuda_devices(torch: Any, fn: Any, inputs: tuple[Any, ...]) -> list[int]:
    """The CUDA devices whose RNG a check must fork and replay."""
    tensors = [x for x in inputs if torch.is_tensor(x)]
    if isinstance(fn, torch.nn.Module):
        tensors += list(fn.parameters())
    return sorted({t.device.index or 0 for t in tensors if t.device.type == "cuda"})


def nothing_to_check(torch: Any, inputs: Sequence[Any]) -> str:
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


def private_copy(module: Any) -> Any:
    """A deep copy of ``module``, or the module itself where it cannot be copied (it holds
    a tensor computed with grad as an attribute, which deepcopy refuses): functional_call
    then swaps the check's tensors in for each call and restores the module's own after."""
    try:
        return copy.deepcopy(module)
    except (RuntimeError, TypeError):  # (TypeError: an attribute such as a threading.Lock)
        return module


def float64_copy(torch: Any, x: Any) -> Any:
    """An input as the check sees it: float tensors in float64, complex in complex128."""
    if not torch.is_tensor(x):
        return x
    if x.is_complex():
        return x.detach().to(torch.complex128)
    return x.detach().to(torch.float64) if x.is_floating_point() else x.detach()


@dataclasses.dataclass(frozen=True)
class Call:
    """One call of a check, shared by the checks of its outputs, modes and orders.
    ``seed`` and ``rng`` are the run's, set by `_check.check_all` as it starts."""

    fn: Any  # the function or module
    inputs: tuple[Any, ...]
    loss: Callable[[Any], Any] | None = None
    weights: list[Any] | None = None  # output cotangents (grad_outputs), not random ones
    dropin: Probe | None = None  # a drop-in's probe: check what torch's gradcheck checks
    seed: int = 0  # the check's seed (its options')
    # torch's CPU and CUDA RNG states, replayed before each evaluation
    rng: tuple[Any, dict[int, Any]] | None = None


@dataclasses.dataclass(frozen=True)
class Probe:
    """What one forward and two backward passes, as gradcheck is called, tell a drop-in."""

    outputs: list[int] | None  # the tensor outputs that require grad (None: not known)
    unstable: str | None  # why the backward is not re-entrant, if it is not
    count: int | None = None  # how many tensor outputs there are (None: not known)
    # One output requires grad: its backward, weighted as a check weights it (gradient by
    # input requiring grad; None: not run, or not so weighted), which a check may reuse.
    gradient: tuple[Any, ...] | None = None


def projection(torch: Any, seed: int, out: Any) -> Any:
    """The fixed cotangent an output of a check is weighted by: 1 for a single element,
    else standard normal, drawn from the check's seed (float64, on the output's device)."""
    if out.numel() == 1:
        return torch.ones(tuple(out.shape), dtype=torch.float64, device=out.device)
    generator = torch.Generator(device="cpu").manual_seed(_adapter.weight_seed(seed, 0))
    return torch.randn(tuple(out.shape), generator=generator, dtype=torch.float64).to(out.device)
