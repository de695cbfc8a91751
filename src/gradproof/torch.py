"""Checking what PyTorch's autograd computes: modules, custom ``autograd.Function``\\ s, kernels.

Example::

    import torch, gradproof.torch as gpt
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh())
    x = torch.randn(8, 4)
    print(gpt.check(model, x, loss=lambda out: out.pow(2).mean()))

The module and the inputs are never modified: the gradient is taken, and the
cost evaluated, on float64 copies on the tensors' device. Torch's RNG is
replayed before every evaluation, so dropout is checked with one mask.
PyTorch is imported only when this module is used.
"""

from __future__ import annotations

import math
import textwrap
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from . import _adapter
from ._adapter import BATCH_ELEMENTS
from ._errors import GradientSpecError
from ._options import options
from ._report import Report


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
    **check_options: Any,
) -> Report:
    """Check autograd's gradient of ``fn_or_module(*inputs)`` against finite differences.

    Checked: the module's parameters that require grad (named as in
    ``named_parameters()``, e.g. ``"0.weight"``) and the inputs that require
    grad (``"input0"``, ``"input1"``, ...).

    Args:
        fn_or_module: an ``nn.Module`` or a function of tensors (custom
            ``autograd.Function.apply`` included).
        inputs: its positional inputs.
        loss: turns the output into the scalar cost. Without it, a scalar
            output is the cost, and any other output ``y`` is reduced to
            ``sum(y * r)`` with a fixed random ``r`` (seeded by ``seed``),
            which checks the backward pass for that cotangent.
        check_options: as for :func:`gradproof.check` (``method``, ``eps``,
            ``tol``, ``mode``, ``k``, ``seed``, ``progress``).

    Returns:
        A :class:`gradproof.Report`, by parameter and input name.
    """
    torch = _torch()
    opts = options("gradproof.torch.check", **check_options)
    checker = _Checker(torch, fn_or_module, inputs, loss, opts.seed)
    with torch.random.fork_rng(devices=checker.cuda_devices):
        return _adapter.run(checker, opts)


class _Checker:
    """The float64 copies, the cost over NumPy arrays, autograd's gradient, and vmap."""

    def __init__(self, torch, fn, inputs, loss, seed):
        self.torch = torch
        self.fn = fn
        self.loss = loss
        self.seed = seed
        self.module = fn if isinstance(fn, torch.nn.Module) else None
        named = {}
        if self.module is not None:
            named = {n: p for n, p in self.module.named_parameters() if p.requires_grad}
            self.buffers = {n: b.detach() for n, b in self.module.named_buffers()}
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
        if not named:
            raise GradientSpecError(
                "nothing to check: no module parameter and no input requires grad. Pass a module, "
                "or inputs created with requires_grad=True"
            )
        for name, t in named.items():
            if not t.is_floating_point():
                raise GradientSpecError(
                    f"{name} has dtype {t.dtype}; only float tensors have gradients"
                )
        self.names = list(named)
        self.shapes = {n: tuple(t.shape) for n, t in named.items()}
        self.low = sorted({str(t.dtype) for t in named.values() if t.dtype != torch.float64})
        self.device = next(iter(named.values())).device
        self.cuda_devices = [self.device.index or 0] if self.device.type == "cuda" else []
        self.inputs = [
            x.detach().to(torch.float64)
            if torch.is_tensor(x) and x.is_floating_point()
            else (x.detach() if torch.is_tensor(x) else x)
            for x in inputs
        ]
        self.params = {
            n: t.detach().to("cpu", torch.float64).numpy().copy() for n, t in named.items()
        }
        self.rng_state = torch.get_rng_state()
        self.cuda_state = [torch.cuda.get_rng_state(d) for d in self.cuda_devices]
        self.projection = None
        self.vmap_failed: str | None = None  # why torch.func.vmap could not batch the cost
        self.vmap_slower: str | None = None  # batching ran, but slower than one by one
        self.seconds_per_eval = math.inf  # the fastest one-by-one evaluation seen
        self.vmap_timed = False  # batching has been timed against one by one

    def notes(self) -> list[str]:
        notes = []
        if self.low:
            notes.append(
                f"the tensors checked are {'/'.join(self.low)}: the check ran on float64 copies "
                "(autograd's gradient included); the module and inputs were not changed"
            )
        if self.vmap_failed:
            notes.append(
                f"evaluations ran one by one: torch.func.vmap could not batch the cost "
                f"({self.vmap_failed}). A custom autograd.Function batches with "
                "setup_context and generate_vmap_rule = True"
            )
        if self.vmap_slower:
            notes.append(f"evaluations ran one by one: {self.vmap_slower}")
        return notes

    def replay(self) -> None:
        self.torch.set_rng_state(self.rng_state)
        for d, s in zip(self.cuda_devices, self.cuda_state, strict=True):
            self.torch.cuda.set_rng_state(s, d)

    def forward(self, tensors: dict[str, Any]):
        torch = self.torch
        args = [tensors.get(f"input{i}", x) for i, x in enumerate(self.inputs)]
        if self.module is not None:
            state = {n: t for n, t in tensors.items() if not n.startswith("input")}
            # Fresh float64 copies of the buffers each time: batch norm's running
            # statistics must neither change the module nor carry over.
            buffers = {
                n: b.to(torch.float64).clone() if b.is_floating_point() else b.clone()
                for n, b in self.buffers.items()
            }
            out = torch.func.functional_call(self.module, {**state, **buffers}, tuple(args))
        else:
            out = self.fn(*args)
        if self.loss is not None:
            out = self.loss(out)
        if not torch.is_tensor(out):
            raise GradientSpecError(
                f"the output (after loss) must be a tensor, got {type(out).__name__}"
            )
        if out.numel() == 1:
            return out.reshape(())
        if self.projection is None or self.projection.shape != out.shape:
            generator = torch.Generator(device="cpu").manual_seed(self.seed)
            self.projection = torch.randn(
                tuple(out.shape), generator=generator, dtype=torch.float64
            ).to(out.device)
        return (out * self.projection).sum()

    def _tensors(self, arrays: dict[str, np.ndarray], grad: bool = False) -> dict[str, Any]:
        torch = self.torch
        out = {}
        for n, a in arrays.items():
            t = torch.from_numpy(a).to(self.device)  # shares memory on the CPU
            out[n] = t.clone().requires_grad_(True) if grad else t
        return out

    def analytic(self) -> dict[str, np.ndarray]:
        torch = self.torch
        self.replay()
        tensors = self._tensors(self.params, grad=True)
        cost = self.forward(tensors)
        grads = torch.autograd.grad(cost, list(tensors.values()), allow_unused=True)
        return {n: self._dense(n, g) for n, g in zip(self.names, grads, strict=True)}

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
        with self.torch.no_grad():
            value = float(self.forward(self._tensors(arrays)))
        self.seconds_per_eval = min(self.seconds_per_eval, time.perf_counter() - started)
        return value

    def batched(self, name: str, flat: np.ndarray, coords: list[int], values: list[list[float]]):
        """Cost values for each point set, the perturbed copies evaluated in vmap batches.

        Falls back to one by one, for the rest of the check, when vmap cannot
        batch the cost or when batching turns out slower than one by one.
        """
        if self.vmap_failed is None and self.vmap_slower is None:
            try:
                return [self._vmapped(name, flat, coords, v) for v in values]
            except _SlowerBatched as slower:
                self.vmap_slower = str(slower)
            except (RuntimeError, NotImplementedError, ValueError) as exc:
                if not _cannot_batch(exc):
                    raise
                first = str(exc).splitlines()[0] if str(exc) else ""
                self.vmap_failed = textwrap.shorten(f"{type(exc).__name__}: {first}", 160)
        return [self._one_by_one(name, flat, coords, v) for v in values]

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

    def _one_by_one(self, name, flat, coords, values) -> np.ndarray:
        arrays = dict(self.params)
        work = flat.copy()
        arrays[name] = work.reshape(self.shapes[name])
        out = np.empty(len(coords))
        for j, (i, v) in enumerate(zip(coords, values, strict=True)):
            x0 = work[i]
            work[i] = v
            out[j] = self.cost(arrays)
            work[i] = x0
        return out


# Rows of the first two batches; the second is timed against one-by-one evaluation.
PROBE_ROWS = 64


class _SlowerBatched(Exception):
    """Internal: batching ran, but slower than evaluating one by one."""


def _cannot_batch(exc: BaseException) -> bool:
    """Whether an exception from vmap means "this function cannot be batched"."""
    text = f"{type(exc).__name__}: {exc}".lower()
    return any(word in text for word in ("vmap", "batch", "functorch"))
