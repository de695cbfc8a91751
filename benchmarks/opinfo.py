"""gradproof.torch.check against torch.autograd.gradcheck on PyTorch's own operator database.

Every operator in ``torch.testing._internal.common_methods_invocations.op_db``
that autograd differentiates in float64 is checked on up to ``--samples`` of
its own sample inputs, by both tools, on the same function: the differentiable
tensors of the sample (``sample.input`` and tensor args/kwargs that require
grad, tensor lists flattened) in, and a scalar out, the sum over every
floating (or complex, as real and imaginary parts) output of ``output * w``
with fixed random weights ``w`` drawn once per sample.

Autograd's backward for these operators is taken to be right, so a case that
gradcheck passes and gradproof fails is a gradproof false alarm. The bug suite
then plants wrong backwards (a ``torch.autograd.Function`` that returns the
true gradient, mutated) and records which tool notices and whether gradproof
names the right input.

    python benchmarks/opinfo.py                          # everything: ~20 min, one core
    python benchmarks/opinfo.py --limit 40 --bugs 10     # a quick look
    python benchmarks/opinfo.py --ops atanh,tan,erfinv --json rows.json

``--suite`` picks the derivative under test, each side by side with torch's own
check of the same derivative:

    rev       backward (VJP), float64           gradcheck
    fwd       forward-mode AD (JVP), float64    gradcheck(check_forward_ad=True,
              ops with supports_forward_ad        check_backward_ad=False)
    gradgrad  second order (double backward),   gradgradcheck
              ops with supports_gradgrad
    complex   backward, complex128 samples      gradcheck (Wirtinger)

and plants its own bugs: a mutated backward (rev, complex; complex adds a
conjugated gradient), a mutated ``jvp`` (fwd), or a right backward whose own
backward (the Hessian-vector product) is mutated (gradgrad). A planted bug
counts as named when gradproof fails the right input in the right row:
``input1 [fwd]``, ``input1 [order 2]``, ``input1.imag``.

    python benchmarks/opinfo.py --suite fwd --samples 1

``--json`` writes one row per case (and per planted bug) so that two runs,
before and after a change, can be diffed. ``--dropin`` runs gradproof's side as
the drop-in does (``gradproof.torch.gradcheck``/``gradgradcheck`` with their
defaults), its report kept:

    python benchmarks/opinfo.py --samples 1 --dropin
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import json
import resource
import signal
import time
import traceback
import warnings
import zlib
from collections import Counter
from collections.abc import Callable
from typing import Any

import torch
import torch.autograd.forward_ad as fwad

# a sibling script: the summary both conformance benchmarks print
from conformance_report import (
    DECLINED,
    Tool,
    bug_outcomes,
    declined,
    gp_outcome,
    spread,
    summary,
)

import gradproof
import gradproof.torch as gpt
from gradproof._adapter import Request
from gradproof.torch import _dropins
from gradproof.torch._intake import Call

MUTATIONS = ("scale 1.5", "sign flip", "one element 1e-3", "zeroed", "swap/transpose")


@dataclasses.dataclass(frozen=True)
class Suite:
    """One derivative under test: which ops, which dtype, and how each tool checks it."""

    name: str
    reference: str  # torch's own check of the same derivative, as the summary names it
    dtype: torch.dtype
    gp_options: dict  # gradproof.torch.check's options for this derivative
    row: str  # the suffix of gradproof's report rows that hold it: "", " [fwd]", " [order 2]"
    mutations: tuple[str, ...]
    # gradproof's order=2 checks the first derivatives too; gradgradcheck checks only the
    # second: the verdict compared is that of the rows of this derivative alone
    rows_only: bool = False
    test: str = "test_fn_grad"  # torch's own test of it in test_ops_gradients / _fwd_gradients
    needs: str = ""  # the OpInfo flag an op must set: supports_forward_ad, supports_gradgrad
    gc_options: dict = dataclasses.field(default_factory=dict)
    dropin: bool = False  # gradproof's side as gpt.gradcheck/gradgradcheck run it

    @property
    def classes(self) -> tuple[str, ...]:
        """Classes of a case, in the order the summary prints them."""
        return (
            "both pass",
            "gradproof false alarm",
            "gradproof exception",
            "gradproof refusal",
            DECLINED,
            f"{self.reference}-only failure",
            "both fail",
        )

    @property
    def tool(self) -> Tool:
        """How the framework's own checker is named in the summary (conformance_report.py)."""
        return Tool(key="op", things="ops", name=self.reference, short="gc")

    def supports(self, op) -> bool:
        """Autograd support, the suite's dtype among the forward or backward dtypes on the
        CPU, and the suite's OpInfo flag."""
        if not op.supports_autograd or (self.needs and not getattr(op, self.needs)):
            return False
        return self.dtype in op.supported_dtypes("cpu") or self.dtype in (
            op.supported_backward_dtypes("cpu")
        )

    def reference_check(self, fn: Callable, leaves: list) -> bool:
        if self.name == "gradgrad":
            return torch.autograd.gradgradcheck(fn, tuple(leaves), raise_exception=False)
        return torch.autograd.gradcheck(fn, tuple(leaves), raise_exception=False, **self.gc_options)


SUITES = {
    s.name: s
    for s in (
        Suite("rev", "gradcheck", torch.float64, {}, "", MUTATIONS),
        Suite(
            "fwd",
            "gradcheck fwd",
            torch.float64,
            {"modes": ("fwd",)},
            " [fwd]",
            MUTATIONS,
            test="test_forward_mode_AD",
            needs="supports_forward_ad",
            gc_options={"check_forward_ad": True, "check_backward_ad": False},
        ),
        Suite(
            "gradgrad",
            "gradgradcheck",
            torch.float64,
            {"order": 2},
            " [order 2]",
            MUTATIONS,
            rows_only=True,
            test="test_fn_gradgrad",
            needs="supports_gradgrad",
        ),
        Suite("complex", "gradcheck", torch.complex128, {}, "", (*MUTATIONS, "conjugate")),
    )
}


# Below this, a gradient is round-off (corrcoef of one variable is the constant 1, yet
# autograd returns ~1e-17): mutating it plants no bug any finite difference could see.
NEGLIGIBLE = 1e-8


class Skip(Exception):
    """A sample that cannot be turned into a function of float64 tensors (the reason says why)."""


class Timeout(BaseException):
    """One tool ran past ``--timeout`` seconds on one case.

    A ``BaseException``, as ``KeyboardInterrupt`` is: code under test that catches
    ``Exception`` (gradproof turning a raising backward into a finding, a fallback
    from vmap to one by one) must not swallow it.
    """


# --------------------------------------------------------------------------- building cases


def op_label(op) -> str:
    """``name`` or ``name.variant``: op_db holds several entries per name (polygamma_n_0, ...)."""
    return f"{op.name}.{op.variant_test_name}" if op.variant_test_name else op.name


def torch_fn_grad_mark(op, suite: Suite) -> str | None:
    """How op_db itself marks torch's own test of this derivative of this op on the CPU.

    ``"xfail"`` or ``"skip"`` when the suite's test (``test_fn_grad``,
    ``test_forward_mode_AD``, ``test_fn_gradgrad``, or its whole test class) is
    decorated as an expected failure or a skip (as_strided_scatter, normal, the
    dtype conversions) for the suite's dtype: a failure there is torch's, known.
    """
    classes = ("TestBwdGradients", "TestFwdGradients", "TestGradients")
    for d in getattr(op, "decorators", ()):
        test, cls = getattr(d, "test_name", None), getattr(d, "cls_name", None)
        whole_class = test is None and cls in classes
        if not (test == suite.test or whole_class) or not getattr(d, "active_if", True):
            continue
        if getattr(d, "device_type", None) not in (None, "cpu"):
            continue
        dtypes = getattr(d, "dtypes", None)
        if dtypes is not None and suite.dtype not in dtypes:
            continue
        names = [getattr(x, "__name__", "") for x in getattr(d, "decorators", ())]
        return "xfail" if "expectedFailure" in names else "skip"
    return None


def _is_leaf(x: Any, dtype: torch.dtype) -> bool:
    return torch.is_tensor(x) and x.requires_grad and x.dtype == dtype


def _split(tree: Any, leaves: list, dtype: torch.dtype) -> Any:
    """Replace each differentiable tensor in ``tree`` by its index in ``leaves`` (appended)."""
    if _is_leaf(tree, dtype):
        if tree.layout != torch.strided:
            raise Skip(f"{tree.layout} input")
        leaves.append(tree)
        return _Slot(len(leaves) - 1)
    if isinstance(tree, (list, tuple)):
        return type(tree)(_split(x, leaves, dtype) for x in tree)
    if isinstance(tree, dict):
        return {k: _split(v, leaves, dtype) for k, v in tree.items()}
    if torch.is_tensor(tree) and tree.layout != torch.strided:
        raise Skip(f"{tree.layout} input")
    return tree


class _Slot:
    """Where a differentiable tensor sat in the sample's (input, args, kwargs)."""

    __slots__ = ("i",)

    def __init__(self, i: int) -> None:
        self.i = i


def _fill(tree: Any, leaves: tuple) -> Any:
    if isinstance(tree, _Slot):
        return leaves[tree.i]
    if isinstance(tree, (list, tuple)):
        return type(tree)(_fill(x, leaves) for x in tree)
    if isinstance(tree, dict):
        return {k: _fill(v, leaves) for k, v in tree.items()}
    return tree


def _outputs(out: Any) -> list:
    """The floating and complex tensors of an output (tuples, namedtuples, lists flattened)."""
    if torch.is_tensor(out):
        return [out] if (out.is_floating_point() or out.is_complex()) else []
    if isinstance(out, (list, tuple)):
        return [t for x in out for t in _outputs(x)]
    return []


def case_seed(label: str, index: int) -> int:
    """A seed that depends on the op and sample only, so that reruns draw the same weights."""
    return zlib.crc32(f"{label}/{index}".encode())


def build_case(op, sample, label: str, index: int, dtype: torch.dtype):
    """``(scalar_fn, leaves)`` for one sample, or raise :class:`Skip`.

    ``scalar_fn(*leaves)`` runs the op as torch's own test_ops gradcheck does
    (through ``op.gradcheck_wrapper``, e.g. symmetrizing the input of eigh, and
    ``sample.output_process_fn_grad``, e.g. fixing eigenvector signs), then
    reduces every output with weights drawn here, once, from the output shapes.
    """
    leaves: list = []
    template = _split((sample.input, tuple(sample.args), dict(sample.kwargs)), leaves, dtype)
    if not leaves:
        raise Skip(f"no {str(dtype).removeprefix('torch.')} tensor input requires grad")
    variant = op.get_op()
    post = sample.output_process_fn_grad or (lambda out: out)

    def run(*ls):
        inp, args, kwargs = _fill(template, ls)
        return post(op.gradcheck_wrapper(variant, inp, *args, **kwargs))

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            outs = _outputs(run(*leaves))
    except Exception as exc:
        raise Skip(f"forward raised {type(exc).__name__}") from exc
    # Only the outputs autograd differentiates enter the cost, as in gradcheck: the saved
    # mean and rstd of native_layer_norm, say, have no derivative formula. The choice is
    # made here, by position, because evaluations under no_grad require grad nowhere.
    keep = [i for i, t in enumerate(outs) if t.requires_grad]
    if not keep:
        raise Skip("no differentiable floating output")
    gen = torch.Generator().manual_seed(case_seed(label, index))
    weights = [
        torch.randn(
            (*t.shape, 2) if t.is_complex() else t.shape, generator=gen, dtype=torch.float64
        )
        for t in (outs[i] for i in keep)
    ]

    def scalar_fn(*ls):
        total = torch.zeros((), dtype=torch.float64)
        outs = _outputs(run(*ls))
        for t, w in zip((outs[i] for i in keep), weights, strict=True):
            # complex outputs enter through their real and imaginary parts
            t = torch.view_as_real(t.resolve_conj()) if t.is_complex() else t
            total = total + (t.to(torch.float64) * w).sum()
        return total

    return scalar_fn, leaves


# --------------------------------------------------------------------------- running tools


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise :class:`Timeout` in the main thread after ``seconds`` (0: no limit)."""
    if not seconds:
        yield
        return

    def handler(signum, frame):
        raise Timeout(f"ran past {seconds:g} s")

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def first_line(text: Any, width: int = 200) -> str:
    lines = [ln for ln in str(text).splitlines() if ln.strip()]
    return lines[0][:width] if lines else ""


def exception_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {first_line(exc)}"


def run_gradproof(fn: Callable, leaves: list, timeout: float, suite: Suite) -> dict:
    """gradproof.torch.check with the suite's options, the rest default (no progress bar:
    output goes to a log)."""
    row: dict[str, Any] = {"gp_time": 0.0}
    # the contract says inputs are never modified, whatever happens: verified bit for bit
    before = [x.detach().clone() for x in leaves]
    t = time.perf_counter()
    try:
        with warnings.catch_warnings(), time_limit(timeout):
            warnings.simplefilter("ignore")
            if suite.dropin:
                report = dropin_report(fn, leaves, suite)
            else:
                report = gpt.check(fn, *leaves, progress=False, **suite.gp_options)
    except (Exception, Timeout) as exc:
        row["gp_time"] = time.perf_counter() - t
        row["gp_modified_inputs"] = _modified(before, leaves)
        # A GradientSpecError (but not a CostError, which means the cost failed while
        # being evaluated) is gradproof declining the input before any checking.
        refusal = isinstance(exc, gradproof.GradientSpecError) and not isinstance(
            exc, gradproof.CostError
        )
        row.update(
            gp="refusal" if refusal else "declined" if declined(exc) else "exception",
            gp_error=exception_text(exc),
            gp_where=_where(exc),
        )
        return row
    row["gp_time"] = time.perf_counter() - t
    row["gp_modified_inputs"] = _modified(before, leaves)
    passed = report.passed
    if suite.rows_only:
        failing = [n for n, tr in report.tensors.items() if not tr.passed]
        passed = not [n for n in failing if n.endswith(suite.row)]
        # first derivatives gradproof found wrong, which the reference does not look at
        row["gp_other_failing"] = [n for n in failing if not n.endswith(suite.row)]
    row.update(
        gp="passed" if passed else "failed",
        gp_headline=first_line(report),
        gp_difference=float(report.difference),
        gp_evaluations=int(report.evaluations),
        gp_failing=[n for n, tr in report.tensors.items() if not tr.passed],
        gp_diagnoses={
            n: tr.diagnosis for n, tr in report.tensors.items() if not tr.passed and tr.diagnosis
        },
        gp_worst={n: list(tr.worst_index) for n, tr in report.tensors.items() if not tr.passed},
        gp_warnings=[first_line(w) for w in report.warnings],
    )
    return row


def dropin_report(fn: Callable, leaves: list, suite: Suite) -> gradproof.Report:
    """The report behind ``gpt.gradcheck(fn, leaves)`` (``gradgradcheck`` for the gradgrad
    suite, ``check_forward_ad=True, check_backward_ad=False`` for fwd), all else default."""
    opts = _dropins.dropin_options(None, None, None, fast_mode=False)
    modes = ("fwd",) if suite.name == "fwd" else ("rev",)
    order = 2 if suite.name == "gradgrad" else 1
    request = Request(opts, modes, order)
    return _dropins.dropin_report(torch, Call(fn, tuple(leaves)), request, 0.0, [])


def _modified(before: list, leaves: list) -> list[int]:
    """Positions of inputs whose bits changed (NaNs compared as bits, not values)."""
    return [
        i
        for i, (b, x) in enumerate(zip(before, leaves, strict=True))
        if not torch.equal(_bits(b), _bits(x))
    ]


def _bits(t: Any) -> Any:
    t = t.detach().resolve_conj().contiguous()
    return (torch.view_as_real(t) if t.is_complex() else t).contiguous().view(torch.int64)


def _where(exc: BaseException) -> str:
    """The innermost gradproof frame of a traceback, to group exceptions by cause."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "gradproof" in f.filename]
    if not frames:
        return ""
    f = frames[-1]
    return f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} in {f.name}"


def run_gradcheck(fn: Callable, leaves: list, timeout: float, suite: Suite) -> dict:
    """Torch's own check of the suite's derivative with its default settings, counting
    calls to ``fn``."""
    calls = [0]

    def counted(*ls):
        calls[0] += 1
        return fn(*ls)

    t = time.perf_counter()
    try:
        with warnings.catch_warnings(), time_limit(timeout):
            warnings.simplefilter("ignore")
            ok = suite.reference_check(counted, leaves)
        row = {"gc": "passed" if ok else "failed"}
    except (Exception, Timeout) as exc:
        row = {"gc": "exception", "gc_error": exception_text(exc)}
    row.update(gc_time=time.perf_counter() - t, gc_calls=calls[0])
    return row


def classify(row: dict, suite: Suite) -> str:
    if row["gp"] == "refusal":
        return "gradproof refusal"
    if row["gp"] == "exception":
        return "gradproof exception"
    if row["gp"] == "declined":
        return DECLINED
    gp_ok, gc_ok = row["gp"] == "passed", row["gc"] == "passed"
    if gp_ok and gc_ok:
        return "both pass"
    if gc_ok:
        return "gradproof false alarm"
    if gp_ok:
        return f"{suite.reference}-only failure"
    return "both fail"


# --------------------------------------------------------------------------- planted bugs


def _fresh(leaves: list) -> list:
    """Leaves of a new graph at the same point (the primal of a dual tensor in a ``jvp``)."""
    return [fwad.unpack_dual(x).primal.detach().clone().requires_grad_(True) for x in leaves]


def _dense(xs: list, gs: Any) -> list:
    return [torch.zeros_like(x) if g is None else g.detach() for x, g in zip(xs, gs, strict=True)]


def true_grads(fn: Callable, leaves: list) -> list:
    """Autograd's gradient of the original op at this point."""
    xs = _fresh(leaves)
    with torch.enable_grad():
        gs = torch.autograd.grad(fn(*xs), xs, allow_unused=True)
    return _dense(xs, gs)


def true_hvp(fn: Callable, leaves: list, vs: Any) -> list:
    """Autograd's Hessian times ``vs`` (one cotangent per input's gradient)."""
    xs = _fresh(leaves)
    with torch.enable_grad():
        gs = torch.autograd.grad(fn(*xs), xs, create_graph=True, allow_unused=True)
        total = sum(
            (g * v).sum().real
            for g, v in zip(gs, vs, strict=True)
            if g is not None and v is not None and g.requires_grad
        )
        if not torch.is_tensor(total) or not total.requires_grad:
            return [torch.zeros_like(x) for x in xs]  # a linear op: its Hessian is zero
        hs = torch.autograd.grad(total, xs, allow_unused=True)
    return _dense(xs, hs)


def forward_agrees(fn: Callable, leaves: list, grads: list, seed: int) -> bool:
    """Whether forward AD along a random tangent gives <grad, tangent> (to 1e-8)."""
    tangents = hvp_direction(leaves, seed)
    with fwad.dual_level():
        duals = [fwad.make_dual(x.detach(), t) for x, t in zip(leaves, tangents, strict=True)]
        jvp = fwad.unpack_dual(fn(*duals)).tangent
    jvp = 0.0 if jvp is None else float(jvp)
    pairs = list(zip(grads, tangents, strict=True))
    dot = sum(float((g.conj() * t).sum().real) for g, t in pairs)
    scale = sum(float(g.abs().sum()) * float(t.abs().max()) for g, t in pairs)
    return abs(jvp - dot) <= 1e-8 * scale + NEGLIGIBLE


def hvp_direction(leaves: list, seed: int) -> list:
    """A fixed random direction: the Hessian times it shows which inputs a planted
    second-order bug can be seen in."""
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(x.shape, generator=gen, dtype=torch.float64).to(x.dtype) for x in leaves]


def plan_mutation(kind: str, grads: list) -> dict | None:
    """Which input(s) a mutation hits, or ``None`` where it would change nothing.

    The single-input mutations hit the input with the largest gradient entry, so
    that the planted error is as visible as the op allows; one element is the
    largest |grad| of that input.
    """
    peaks = [float(g.abs().max()) if g.numel() else 0.0 for g in grads]
    if max(peaks, default=0.0) < NEGLIGIBLE:
        return None  # a (numerically) zero gradient scaled, flipped or zeroed is still right
    target = max(range(len(grads)), key=lambda i: peaks[i])
    if kind in ("scale 1.5", "sign flip", "zeroed"):
        return {"targets": [target]}
    if kind == "one element 1e-3":
        return {"targets": [target], "index": int(grads[target].abs().argmax())}
    if kind == "conjugate":
        # conjugating a (nearly) real gradient changes nothing: take the most imaginary
        imag = [float(g.imag.abs().max()) if g.is_complex() and g.numel() else 0.0 for g in grads]
        best = max(range(len(grads)), key=lambda i: imag[i])
        return {"targets": [best]} if imag[best] > 1e-6 * max(peaks) + NEGLIGIBLE else None
    # swap two same-shape inputs whose gradients differ, else transpose a square matrix
    for i, j in itertools.combinations(range(len(grads)), 2):
        gi, gj = grads[i], grads[j]
        if gi.shape == gj.shape and _differ(gi, gj):
            return {"targets": [i, j], "how": "swap"}
    for i, g in enumerate(grads):
        if g.dim() == 2 and g.shape[0] == g.shape[1] and _differ(g, g.T):
            return {"targets": [i], "how": "transpose"}
    return None


def _differ(a, b) -> bool:
    """More than round-off apart: swapping the gradients of a self-attention's query and
    key, equal up to 1e-16, plants no bug."""
    return float((a - b).norm()) > 1e-6 * (float(a.norm()) + float(b.norm())) + NEGLIGIBLE


def mutate(kind: str, plan: dict, grads: list) -> list:
    out = list(grads)
    targets = plan["targets"]
    t = targets[0]
    if kind == "scale 1.5":
        out[t] = 1.5 * grads[t]
    elif kind == "sign flip":
        out[t] = -grads[t]
    elif kind == "zeroed":
        out[t] = torch.zeros_like(grads[t])
    elif kind == "conjugate":
        out[t] = grads[t].conj().resolve_conj()
    elif kind == "one element 1e-3":
        g = grads[t].clone().reshape(-1)
        g[plan["index"]] *= 1 + 1e-3
        out[t] = g.reshape(grads[t].shape)
    elif plan["how"] == "swap":
        i, j = targets
        out[i], out[j] = grads[j], grads[i]
    else:
        out[t] = grads[t].T.contiguous()
    return out


def mutated_fn(fn: Callable, kind: str, plan: dict, suite: Suite) -> Callable:
    """``fn`` behind an autograd.Function whose derivative under test is mutated: the
    backward (rev, complex), the ``jvp`` (fwd), or the backward's own backward (gradgrad).
    Every other derivative is autograd's own, at the point where it is asked for."""

    class FirstDerivative(torch.autograd.Function):
        """The gradient of ``fn`` as a function, whose backward is the mutated Hessian
        times the cotangent: a right backward, wrong only in its own derivative."""

        generate_vmap_rule = True

        @staticmethod
        def forward(*ls):
            return tuple(true_grads(fn, list(ls)))

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.save_for_backward(*inputs)

        @staticmethod
        def backward(ctx, *vs):
            return tuple(mutate(kind, plan, true_hvp(fn, list(ctx.saved_tensors), vs)))

    class Mutated(torch.autograd.Function):
        # setup_context + generate_vmap_rule: gradproof can still batch its evaluations
        generate_vmap_rule = True

        @staticmethod
        def forward(*ls):
            return fn(*ls)

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.save_for_backward(*inputs)
            ctx.save_for_forward(*inputs)

        @staticmethod
        def backward(ctx, g):
            if suite.name == "gradgrad":
                grads = FirstDerivative.apply(*ctx.saved_tensors)
            else:
                grads = true_grads(fn, list(ctx.saved_tensors))
                if suite.name != "fwd":
                    grads = mutate(kind, plan, grads)
            return tuple(g * m for m in grads)

        @staticmethod
        def jvp(ctx, *tangents):
            # fn's output is a real scalar: its JVP is the sum of <grad, tangent>
            grads = true_grads(fn, list(ctx.saved_tensors))
            if suite.name == "fwd":
                grads = mutate(kind, plan, grads)
            total = torch.zeros((), dtype=torch.float64)
            for g, t in zip(grads, tangents, strict=True):
                if t is not None:
                    total = total + (g.conj() * t).sum().real
            return total

    return Mutated.apply


def run_bug(
    fn: Callable, leaves: list, kind: str, plan: dict, timeout: float, suite: Suite
) -> dict:
    bad = mutated_fn(fn, kind, plan, suite)
    row: dict[str, Any] = {"mutation": kind, "targets": plan["targets"], "how": plan.get("how")}
    gp = run_gradproof(bad, leaves, timeout, suite)
    gc = run_gradcheck(bad, leaves, timeout, suite)
    row.update(gp)
    row.update(gc)
    if gp["gp"] in ("passed", "failed"):
        # the right input, in the row of the derivative under test (a complex input's
        # real or imaginary part)
        right = {f"input{i}{part}{suite.row}" for i in plan["targets"] for part in PARTS}
        row["gp_detected"] = gp["gp"] == "failed"
        row["gp_named"] = bool(right & set(gp["gp_failing"]))
        row["gp_blamed_other"] = sorted(set(gp["gp_failing"]) - right)
    else:
        row["gp_detected"] = None  # raised
    row["gc_detected"] = None if gc["gc"] == "exception" else gc["gc"] == "failed"
    return row


# How gradproof names a complex input's parts (a real input is named bare).
PARTS = ("", ".real", ".imag")


# --------------------------------------------------------------------------- the run


def select_ops(args) -> list:
    from torch.testing._internal.common_methods_invocations import op_db

    ops = [op for op in op_db if args.suite.supports(op)]
    if args.ops:
        wanted = {s.strip() for s in args.ops.split(",") if s.strip()}
        ops = [op for op in ops if op.name in wanted or op_label(op) in wanted]
    if args.limit:
        ops = ops[: args.limit]
    return ops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--suite",
        choices=list(SUITES),
        default="rev",
        help="the derivative under test (default rev: the backward)",
    )
    parser.add_argument("--limit", type=int, default=0, help="first N ops only")
    parser.add_argument(
        "--dropin",
        action="store_true",
        help="gradproof's side through the drop-in (gpt.gradcheck/gradgradcheck)",
    )
    parser.add_argument("--ops", default="", help="comma-separated op names (or name.variant)")
    parser.add_argument("--samples", type=int, default=3, help="samples per op (default 3)")
    parser.add_argument("--json", default="", help="write every row to this JSON file")
    parser.add_argument(
        "--bugs",
        type=int,
        default=None,
        help="plant bugs in the first sample of N ops spread over the list "
        "(default: every op; 0: no bug suite)",
    )
    parser.add_argument("--timeout", type=float, default=300, help="seconds per tool and case")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument(
        "--max-coords",
        type=int,
        default=20_000,
        help="skip samples with more coordinates (default 20000: gradcheck alone takes ~25 s)",
    )
    parser.add_argument(
        "--max-memory-gb",
        type=float,
        default=8,
        help="address-space limit of this process (default 8; 0: none)",
    )
    args = parser.parse_args()
    suite = args.suite = dataclasses.replace(SUITES[args.suite], dropin=args.dropin)
    torch.set_num_threads(args.threads)
    if args.max_memory_gb:
        # A runaway sample (grid_sampler_3d's has 5 million coordinates) then fails with
        # an allocation error, caught as that case's exception, instead of drawing the
        # kernel's OOM killer onto whatever else runs on the machine.
        limit = int(args.max_memory_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    t_start = time.perf_counter()
    ops = select_ops(args)
    labels = [op_label(op) for op in ops]
    with_bugs = spread(labels, args.bugs)
    print(
        f"torch {torch.__version__}, gradproof from {gradproof.__file__}\n"
        f"suite {suite.name}: {suite.reference} against "
        + (
            f"the drop-in gradproof.torch.{suite.reference.split()[0]}\n"
            if suite.dropin
            else f"gradproof.torch.check"
            f"({', '.join(f'{k}={v!r}' for k, v in suite.gp_options.items())})\n"
        )
        + f"{len(ops)} op entries differentiable in {suite.dtype}"
        f"{' with ' + suite.needs if suite.needs else ''}, up to {args.samples} samples each, "
        f"bug suite on {len(with_bugs)} ops\n",
        flush=True,
    )
    rows: list[dict] = []
    bug_rows: list[dict] = []
    skipped: Counter = Counter()
    for n_op, (op, label) in enumerate(zip(ops, labels, strict=True), start=1):
        # op_db draws samples from the global RNG: seed it so that reruns (before/after a
        # change) check the very same inputs
        torch.manual_seed(case_seed(label, -1))
        try:
            samples = list(
                itertools.islice(
                    op.sample_inputs("cpu", suite.dtype, requires_grad=True), args.samples
                )
            )
        except Exception as exc:
            skipped[f"sample_inputs raised {type(exc).__name__}"] += 1
            continue
        if not samples:
            skipped["no samples"] += 1
            continue
        for index, sample in enumerate(samples):
            try:
                fn, leaves = build_case(op, sample, label, index, suite.dtype)
                coords = sum(x.numel() for x in leaves)
                if coords > args.max_coords:
                    raise Skip(f"more than --max-coords={args.max_coords} coordinates")
            except Skip as exc:
                skipped[str(exc)] += 1
                continue
            row = {
                "op": label,
                "sample": index,
                "shapes": [list(x.shape) for x in leaves],
                "coords": sum(x.numel() for x in leaves),
                "torch_mark": torch_fn_grad_mark(op, suite),
            }
            row.update(run_gradproof(fn, leaves, args.timeout, suite))
            row.update(run_gradcheck(fn, leaves, args.timeout, suite))
            row["class"] = classify(row, suite)
            rows.append(row)
            if row["gp_modified_inputs"]:
                print(f"    gradproof MODIFIED inputs {row['gp_modified_inputs']}", flush=True)
            if row["class"] != "both pass":
                print(f"[{n_op}/{len(ops)}] {describe(row, suite)}", flush=True)
            if label in with_bugs and not any(b["op"] == label for b in bug_rows):
                bug_rows.extend(plant_bugs(fn, leaves, row, args.timeout, suite))
    total = time.perf_counter() - t_start
    summary(
        rows,
        bug_rows,
        skipped,
        total,
        tool=suite.tool,
        classes=suite.classes,
        mutations=suite.mutations,
    )
    if suite.rows_only:
        other = sorted({r["op"] for r in rows if r.get("gp_other_failing")})
        print(
            f"first derivatives gradproof also found wrong (not compared: {suite.reference} "
            f"does not check them): {len(other)} ops {', '.join(other)}"
        )
    conjugated = [b for b in bug_rows if b["mutation"] == "conjugate" and b["gp_detected"]]
    if conjugated:
        said = sum(any("conjugat" in d for d in b["gp_diagnoses"].values()) for b in conjugated)
        print(f"conjugated gradients diagnosed as a conjugation bug: {said} of {len(conjugated)}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {
                    "torch": torch.__version__,
                    "suite": suite.name,
                    "cases": rows,
                    "bugs": bug_rows,
                    "skipped": dict(skipped),
                    "seconds": total,
                },
                fh,
                indent=1,
                default=str,
            )
        print(f"\nrows written to {args.json}")


def plant_bugs(fn: Callable, leaves: list, case: dict, timeout: float, suite: Suite) -> list[dict]:
    """The bug suite on one case whose correct derivative torch's own check accepts."""
    if case["gc"] != "passed":
        return []  # torch does not accept the op itself: a planted bug proves nothing
    try:
        if suite.name == "gradgrad":
            # where the Hessian (times a fixed direction) is largest; zero for a linear op
            grads = true_hvp(fn, leaves, hvp_direction(leaves, case_seed(case["op"], -2)))
        else:
            grads = true_grads(fn, leaves)
        if suite.name == "fwd" and not forward_agrees(fn, leaves, grads, case_seed(case["op"], -3)):
            # the mutated jvp is built from the backward's gradient: where torch's own
            # backward and forward AD disagree (as_strided_scatter), it plants no known bug
            print(f"    no bugs planted in {case['op']}: its backward and jvp disagree", flush=True)
            return []
    except Exception:
        return []
    out = []
    for kind in suite.mutations:
        plan = plan_mutation(kind, grads)
        if plan is None:
            continue
        row = {"op": case["op"], "sample": case["sample"], "coords": case["coords"]}
        row.update(run_bug(fn, leaves, kind, plan, timeout, suite))
        out.append(row)
        # gradcheck's rtol=1e-3 lets a 1e-3 relative error through by design: not news
        gc_news = not row["gc_detected"] and kind != "one element 1e-3"
        if not (row["gp_detected"] and row["gp_named"]) or gc_news:
            print(f"    bug {describe_bug(row, suite)}", flush=True)
    return out


def gc_outcome(row: dict) -> str:
    if row["gc"] == "exception":
        return f"exception: {row['gc_error']}"
    return row["gc"]


def describe(row: dict, suite: Suite) -> str:
    mark = f" (op_db marks {suite.test} {row['torch_mark']})" if row["torch_mark"] else ""
    return (
        f"{row['class']}: {row['op']} sample {row['sample']} {row['shapes']}{mark}\n"
        f"      gradproof: {gp_outcome(row)}\n"
        f"      {suite.reference}: {gc_outcome(row)}"
    )


def describe_bug(row: dict, suite: Suite) -> str:
    gp, gc = bug_outcomes(row, gc_outcome(row))
    return (
        f"{row['op']} [{row['mutation']}] on input{row['targets']}: gradproof {gp}; "
        f"{suite.reference} {gc}"
    )


if __name__ == "__main__":
    main()
