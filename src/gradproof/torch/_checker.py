"""`Checker`: the adapter `_adapter.check_all` runs: float64 copies, the cost, autograd's
derivatives (reverse, forward and higher order), and batched evaluations (`_batching`)."""

from __future__ import annotations

import contextlib
import math
import textwrap
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import _adapter, _policy
from .._adapter import BATCH_ELEMENTS, Derivative
from .._errors import DerivativeRaised, GradientSpecError
from . import _batching
from ._batching import TORCH_ERRORS, SlowerBatched, cannot_batch, out_of_memory
from ._intake import Call, float64_copy, nothing_to_check, private_copy, projection


class Checker:
    """The float64 copies, the cost over NumPy arrays, autograd's gradient, and vmap."""

    def __init__(
        self,
        torch: Any,
        call: Call,
        output: int | None = None,
        kind: Derivative = Derivative.REV,
        depth: int = 1,
    ):
        fn, inputs, loss, seed = call.fn, call.inputs, call.loss, call.seed
        weights, rng, dropin = call.weights, call.rng, call.dropin
        self.torch = torch
        self.fn = fn
        self.loss = loss
        self.output = output  # which output of a tuple is checked
        # which derivative is the analytic side; an ORDER check at depth k differentiates
        # x -> <grad g(x), w>, g the objective of depth k - 1
        self.kind = Derivative(kind)  # (a caller's "rev" is Derivative.REV)
        self.depth = depth if self.kind is Derivative.ORDER else 1
        self.weights = weights  # output cotangents (grad_outputs) instead of random ones
        self.last_analytic: dict[str, np.ndarray] = {}
        self.magnitude = 0.0  # order >= 2: the size of the terms of <grad g, w> (by analytic)
        self.seed = seed
        # A private copy of a module: functional_call swaps parameters in and out, which a
        # module that registers one submodule twice (tied weights) does not survive intact.
        self.module = private_copy(fn) if isinstance(fn, torch.nn.Module) else None
        self.probe = dropin
        # A module's parameters: where an error enters is found by checking its submodules
        # on their own (gradproof.torch.check), not from the parameters' names alone.
        self.trace_origin = self.module is None or dropin is not None
        named = self._checked_tensors(inputs)
        # A complex tensor is checked as its real and imaginary parts ("input0.real",
        # "input0.imag"): autograd's gradient, in torch's convention, is d/dRe + i d/dIm.
        # (widened before NumPy sees them: NumPy has no bfloat16)
        self.params, self.complex = _adapter.real_parts(
            {n: float64_copy(torch, t).to("cpu").resolve_conj().numpy() for n, t in named.items()}
        )
        self.names = list(self.params)
        self.shapes = {n: a.shape for n, a in self.params.items()}
        wide = (torch.float64, torch.complex128)
        self.low = sorted({str(t.dtype) for t in named.values() if t.dtype not in wide})
        self.device = next(iter(named.values())).device
        self.cuda_devices = [self.device.index or 0] if self.device.type == "cuda" else []
        self.inputs = [float64_copy(torch, x) for x in inputs]
        self.layouts = _layouts(torch, named)
        if rng is None:  # (a Checker runs inside check_all, which forks and sets them)
            raise ValueError("Call.rng is not set: build checkers through _check.check_all")
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

    def _checked_tensors(self, inputs: Sequence[Any]) -> dict[str, Any]:
        """What is checked, by name: a module's parameters that require grad (held fixed
        when a drop-in checks the module as a function of its inputs), then the inputs
        that require grad (``input0``, ...); float or complex. Sets ``buffers``: what
        the module holds besides, frozen parameters included, run in float64 too."""
        torch, dropin = self.torch, self.probe
        named = {}
        self.buffers = {}
        if self.module is not None:
            checked = dropin is None
            named = {n: p for n, p in self.module.named_parameters() if p.requires_grad and checked}
            self.buffers = {n: b.detach() for n, b in self.module.named_buffers()}
            self.buffers.update(
                (n, p.detach()) for n, p in self.module.named_parameters() if n not in named
            )
        elif not callable(self.fn):
            raise GradientSpecError(
                "gradproof.torch.check takes an nn.Module or a function, "
                f"got {type(self.fn).__name__}"
            )
        for i, x in enumerate(inputs):
            if torch.is_tensor(x) and x.requires_grad:
                named[f"input{i}"] = x
        if not named and dropin is not None:
            raise GradientSpecError(
                "gradcheck: no input requires grad, so there is nothing to check. Create the "
                "inputs to check with requires_grad=True"
            )
        if not named:
            raise GradientSpecError(nothing_to_check(torch, inputs))
        for name, t in named.items():
            if not (t.is_floating_point() or t.is_complex()):
                raise GradientSpecError(
                    f"{name} has dtype {t.dtype}; only float and complex tensors have gradients"
                )
        return named

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
            self.projection = projection(torch, self.seed, out)
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
        elif self.kind is Derivative.FWD:
            with self._derivative():
                result = self._forward_mode()
        else:
            self.replay()
            tensors = self._tensors(self.params, grad=True)
            if self.depth > 1:
                with self._derivative("the backward"):  # the lower derivatives, made twice
                    cost = self._objective(differentiable=True)(tensors)
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
        if self.kind is not Derivative.REV or self.loss is not None or self.layouts:
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
                Derivative.REV: "the backward",
                Derivative.FWD: "forward-mode AD (the jvp)",
                Derivative.ORDER: "the double backward" if self.depth == 2 else "a higher backward",
            }[self.kind]
        )
        try:
            yield
        except Exception as exc:
            # bad input, and running out of memory, are not findings about the derivative
            if isinstance(exc, (GradientSpecError, MemoryError)) or out_of_memory(exc):
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
                if self.probe is not None and self.kind is Derivative.FWD:
                    # as torch's gradcheck raises it, in the drop-in's own terms
                    raise NotImplementedError(
                        f"{what} is not implemented for this function ({first}): "
                        "gradcheck with check_forward_ad=False checks the backward alone"
                    ) from exc
                raise GradientSpecError(
                    f"{what} is not implemented for this function ({first}){instead}"
                ) from exc
            raise DerivativeRaised(what, exc) from exc

    def _objective(self, differentiable: bool) -> Any:
        """The function of the tensors whose gradient this check takes (order ``depth``)
        (`_adapter.lifted`: the cost, then ``<grad g(x), w>`` per level above it).
        ``differentiable``: its own gradient will be taken (the derivative under check),
        so even the outermost level's backward records its graph; evaluated as a cost,
        only the levels below do. At the check point, the terms of the outermost
        ``<grad g, w>`` are the cost's magnitude (the sum may cancel, its terms do not)."""
        torch, depth = self.torch, self.depth

        def gradient(g: Any, level: int) -> Any:
            def grads(tensors: dict[str, Any]) -> Any:
                with torch.enable_grad():
                    f = g(tensors)
                    if not f.requires_grad:  # a constant to autograd: every gradient is zero
                        return [None] * len(self.names)
                    return torch.autograd.grad(
                        f,
                        list(tensors.values()),
                        create_graph=differentiable or level < depth,
                        allow_unused=True,
                    )

            return grads

        def inner(grads: Any, weights: dict[str, np.ndarray], level: int) -> Any:
            total = torch.zeros((), dtype=torch.float64, device=self.device)
            terms = 0.0
            for n, g in zip(self.names, grads, strict=True):
                if g is not None:
                    w = torch.from_numpy(weights[n]).to(self.device)
                    total = total + (g * w).sum()
                    if differentiable and level == depth:
                        terms += float((g * w).detach().abs().sum())
            if differentiable and level == depth:
                self.magnitude = terms
            return total

        return _adapter.lifted(self.forward, gradient, inner, self.level_weights, depth)

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
        if self.depth > 1:
            tensors = self._tensors(arrays, grad=True)
            value = float(self._objective(differentiable=False)(tensors))
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
        if self.vmap_failed is None and self.vmap_slower is None and self.depth == 1:
            try:
                return [self._vmapped(name, flat, coords, v) for v in values]
            except SlowerBatched as slower:
                self.vmap_slower = str(slower)
            except TORCH_ERRORS as exc:
                # torch's own errors under vmap: a batching limit if the same evaluation
                # runs one by one; anything else (a user's exception) is the cost's own.
                if not cannot_batch(exc) and not _adapter.runs_alone(
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
            rows = min(_batching.PROBE_ROWS, size) if timed else size
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
                    raise SlowerBatched(
                        f"batching with torch.func.vmap took {per_eval * 1e3:.3g} ms per "
                        f"evaluation against {self.seconds_per_eval * 1e3:.3g} ms one by one"
                    )
        return np.concatenate(out)


def _layouts(torch: Any, named: dict[str, Any]) -> dict[str, tuple[Any, ...]]:
    """Inputs that are views into a larger storage, by name: (a float64 copy of the
    storage, size, stride, offset), a layout every copy keeps (an operation such as
    ``as_strided`` reads the storage, not just the elements). An expanded input (a
    stride of 0) cannot be written through, and is copied whole like the rest."""
    layouts = {}
    for n, t in named.items():
        if not n.startswith("input") or 0 in t.stride():
            continue
        storage = t.untyped_storage()
        if t.storage_offset() == 0 and storage.nbytes() == t.numel() * t.element_size():
            continue
        base = torch.empty(0, dtype=t.dtype, device=t.device).set_(
            storage, 0, (storage.nbytes() // t.element_size(),)
        )
        wide = torch.complex128 if t.is_complex() else torch.float64
        copy = base.detach().to(wide).clone()
        layouts[n] = (copy, tuple(t.shape), tuple(t.stride()), t.storage_offset())
    return layouts
