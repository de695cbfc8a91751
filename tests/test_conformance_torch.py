"""Conformance on PyTorch's own operators: autograd is right, so gradproof must say so.

About seventy operators, the awkward ones included (steep: tan, atanh, erfinv near
their poles; special functions: polygamma, i1e, erfcx; zero or undefined
gradients: sgn, round; degenerate: corrcoef, normalize of a near-zero row,
softmax of -inf entries, empty tensors), each at seeded inputs like those of
torch's OpInfo samples. For every case:

- torch.autograd.gradcheck accepts autograd's backward (the premise), and
  gradproof.torch.check must pass it too: correct code never fails;
- the same operator behind an ``autograd.Function`` whose backward returns
  1.5x the true gradient of one input must fail, with that input (and only
  it) named, and a fitted scale of 1.5.

benchmarks/opinfo.py runs the same comparison over all of op_db.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pytest

torch = pytest.importorskip("torch")
gpt = pytest.importorskip("gradproof.torch")
F = torch.nn.functional

D = torch.float64


def U(gen, shape, low=-1.0, high=1.0):
    """Uniform on [low, high), float64, from a seeded generator."""
    return low + (high - low) * torch.rand(shape, generator=gen, dtype=D)


def N(gen, shape):
    return torch.randn(shape, generator=gen, dtype=D)


def spd(gen, n):
    a = N(gen, (n, n))
    return a @ a.T + n * torch.eye(n, dtype=D)


def with_inf(gen, shape):
    """Logits with -inf in some (never all) entries of each row, as masked attention gives."""
    x = N(gen, shape)
    mask = torch.rand(shape, generator=gen) < 0.4
    mask[..., 0] = False
    return x.masked_fill(mask, -math.inf)


def with_zero(x):
    """An exact zero among the entries, where i1e and friends change formula."""
    x.view(-1)[0] = 0.0
    return x


def with_large(x):
    """A few entries of 1e4, as in op_db's logcumsumexp samples: exp overflows naively."""
    x.view(-1)[::17] = 1e4
    return x


@dataclass(frozen=True)
class Case:
    """An operator ``fn(*inputs)``; ``make(gen)`` draws its inputs (all differentiated)."""

    name: str
    fn: Callable
    make: Callable
    bug: bool = True  # False where no gradient is nonzero, so a scaled one is still right


def sym(a):
    return (a + a.mT) / 2


CASES = [
    # elementwise, steep or special
    Case("sin", torch.sin, lambda g: [U(g, (4, 5), -9, 9)]),
    Case("tan", torch.tan, lambda g: [U(g, (20, 20), -9, 9)]),
    Case("atanh", torch.atanh, lambda g: [U(g, (20, 20), -0.999, 0.999)]),
    Case("asin", torch.asin, lambda g: [U(g, (20, 20), -0.999, 0.999)]),
    Case("acosh", torch.acosh, lambda g: [U(g, (5, 5), 1.001, 9)]),
    Case("erfinv", torch.erfinv, lambda g: [U(g, (20, 20), -0.999, 0.999)]),
    Case("erfc", torch.erfc, lambda g: [U(g, (20, 20), -9, 9)]),
    Case("special.erfcx", torch.special.erfcx, lambda g: [U(g, (5, 5), -3, 9)]),
    Case("special.ndtri", torch.special.ndtri, lambda g: [U(g, (5, 5), 0.001, 0.999)]),
    Case("exp", torch.exp, lambda g: [U(g, (5, 5), -9, 9)]),
    Case("log", torch.log, lambda g: [U(g, (5, 5), 1e-3, 9)]),
    Case("sqrt", torch.sqrt, lambda g: [U(g, (5, 5), 1e-3, 9)]),
    Case("rsqrt", torch.rsqrt, lambda g: [U(g, (5, 5), 1e-2, 9)]),
    Case("reciprocal", torch.reciprocal, lambda g: [U(g, (5, 5), 0.05, 9)]),
    Case("logit", torch.logit, lambda g: [U(g, (5, 5), 0.001, 0.999)]),
    Case("lgamma", torch.lgamma, lambda g: [U(g, (5, 5), 0.05, 9)]),
    Case("digamma", torch.digamma, lambda g: [U(g, (5, 5), 0.05, 9)]),
    # negative inputs too, between polygamma's poles, as in op_db's samples
    Case("polygamma_n1", lambda x: torch.polygamma(1, x), lambda g: [U(g, (5, 5), -9, 9)]),
    Case("polygamma_n3", lambda x: torch.polygamma(3, x), lambda g: [U(g, (5, 5), -9, 9)]),
    Case("special.i1e", torch.special.i1e, lambda g: [with_zero(U(g, (20, 20), -9, 9))]),
    Case("special.i0e", torch.special.i0e, lambda g: [U(g, (20, 20), -9, 9)]),
    Case("sigmoid", torch.sigmoid, lambda g: [U(g, (5, 5), -9, 9)]),
    Case("sinc", torch.sinc, lambda g: [U(g, (5, 5), -3, 3)]),
    # zero gradient everywhere: sgn's backward is a ZeroTensor, round is piecewise flat
    Case("sgn", torch.sgn, lambda g: [U(g, (20, 20), -9, 9)], bug=False),
    Case(
        "round_decimals3",
        lambda x: torch.round(x, decimals=3),
        lambda g: [U(g, (20, 20), -9, 9)],
        bug=False,
    ),
    Case("abs", torch.abs, lambda g: [U(g, (5, 5), -9, 9)]),
    # binary and ternary
    Case("pow", torch.pow, lambda g: [U(g, (5, 5), 0.1, 3), U(g, (5, 5), -2, 2)]),
    Case("atan2", torch.atan2, lambda g: [N(g, (5, 5)), N(g, (5, 5))]),
    Case("hypot", torch.hypot, lambda g: [N(g, (5, 5)), N(g, (5, 5))]),
    Case("xlogy", torch.xlogy, lambda g: [N(g, (5, 5)), U(g, (5, 5), 0.1, 3)]),
    Case("lerp", torch.lerp, lambda g: [N(g, (5, 5)), N(g, (5, 5)), U(g, (5, 5))]),
    Case("addcmul", torch.addcmul, lambda g: [N(g, (3, 4)), N(g, (3, 4)), N(g, (3, 4))]),
    Case("maximum", torch.maximum, lambda g: [N(g, (5, 5)), N(g, (5, 5))]),
    # reductions and scans
    Case("prod", lambda x: torch.prod(x, dim=1), lambda g: [N(g, (4, 5))]),
    Case("std", lambda x: torch.std(x, dim=0), lambda g: [N(g, (5, 4))]),
    Case("linalg.vector_norm", torch.linalg.vector_norm, lambda g: [N(g, (5, 5))]),
    Case("logsumexp", lambda x: torch.logsumexp(x, dim=1), lambda g: [U(g, (5, 5), -9, 9)]),
    Case(
        "logcumsumexp",
        lambda x: torch.logcumsumexp(x, dim=0),
        lambda g: [with_large(U(g, (5, 5, 5), -9, 9))],
    ),
    Case("cumprod", lambda x: torch.cumprod(x, dim=1), lambda g: [N(g, (4, 5))]),
    Case("amax", lambda x: torch.amax(x, dim=1), lambda g: [N(g, (4, 5))]),
    Case("topk", lambda x: torch.topk(x, 2, dim=1).values, lambda g: [N(g, (4, 5))]),
    # linear algebra
    Case("matmul", torch.matmul, lambda g: [N(g, (3, 4)), N(g, (4, 2))]),
    Case("bmm", torch.bmm, lambda g: [N(g, (2, 3, 3)), N(g, (2, 3, 3))]),
    Case("linalg.det", torch.linalg.det, lambda g: [N(g, (2, 4, 4))]),
    Case("linalg.inv", torch.linalg.inv, lambda g: [N(g, (4, 4)) + 3 * torch.eye(4, dtype=D)]),
    Case(
        "linalg.solve",
        torch.linalg.solve,
        lambda g: [N(g, (4, 4)) + 3 * torch.eye(4, dtype=D), N(g, (4, 2))],
    ),
    Case("linalg.cholesky", lambda a: torch.linalg.cholesky(sym(a)), lambda g: [spd(g, 4)]),
    Case("linalg.eigvalsh", lambda a: torch.linalg.eigvalsh(sym(a)), lambda g: [N(g, (4, 4))]),
    Case("linalg.svdvals", torch.linalg.svdvals, lambda g: [N(g, (3, 5))]),
    Case("corrcoef", torch.corrcoef, lambda g: [N(g, (3, 5))]),
    # two observations: every correlation is ±1, a constant; the gradient is round-off
    Case("corrcoef_two_obs", torch.corrcoef, lambda g: [N(g, (3, 2))], bug=False),
    Case("cdist", torch.cdist, lambda g: [N(g, (3, 4)), N(g, (2, 4))]),
    Case("fft.rfft", torch.fft.rfft, lambda g: [N(g, (8,))]),
    # neural-network functions
    Case("softmax", lambda x: torch.softmax(x, dim=-1), lambda g: [U(g, (3, 5), -9, 9)]),
    Case("log_softmax", lambda x: F.log_softmax(x, dim=-1), lambda g: [U(g, (3, 5), -9, 9)]),
    Case("softmax_neg_inf", lambda x: torch.softmax(x, dim=-1), lambda g: [with_inf(g, (3, 5))]),
    Case(
        "masked.softmax",
        lambda x: torch.masked.softmax(x, 1, mask=torch.tensor([True, False, True, True])),
        lambda g: [N(g, (3, 4))],
    ),
    Case("nn.functional.normalize", lambda x: F.normalize(x, dim=1), lambda g: [N(g, (2, 3, 4))]),
    # along a dimension of size 1 the output is sign(x): zero gradient, as in op_db's sample
    Case(
        "normalize_size1_dim",
        lambda x: F.normalize(x, p=0.5, dim=0),
        lambda g: [U(g, (1, 2, 4, 5))],
        bug=False,
    ),
    Case("conv2d", F.conv2d, lambda g: [N(g, (1, 2, 5, 5)), N(g, (3, 2, 3, 3)), N(g, (3,))]),
    Case(
        "layer_norm",
        lambda x, w, b: F.layer_norm(x, (4,), w, b),
        lambda g: [N(g, (3, 4)), N(g, (4,)), N(g, (4,))],
    ),
    Case("group_norm", lambda x: F.group_norm(x, 2), lambda g: [N(g, (2, 4, 3))]),
    Case("gelu", F.gelu, lambda g: [U(g, (5, 5), -9, 9)]),
    Case("softplus", F.softplus, lambda g: [U(g, (5, 5), -9, 9)]),
    Case("max_pool2d", lambda x: F.max_pool2d(x, 2), lambda g: [N(g, (1, 2, 4, 4))]),
    Case(
        "interpolate_bilinear",
        lambda x: F.interpolate(x, scale_factor=2, mode="bilinear"),
        lambda g: [N(g, (1, 1, 3, 3))],
    ),
    Case(
        "scaled_dot_product_attention",
        F.scaled_dot_product_attention,
        lambda g: [N(g, (1, 3, 4)), N(g, (1, 3, 4)), N(g, (1, 3, 4))],
    ),
    Case(
        "cross_entropy",
        lambda x: F.cross_entropy(x, torch.tensor([0, 2, 1])),
        lambda g: [N(g, (3, 4))],
    ),
    # empty tensors: nothing to check, which is not a failure
    Case("cos_empty", torch.cos, lambda g: [N(g, (1, 0, 3))], bug=False),
    Case("cat_with_empty", lambda a, b: torch.cat([a, b]), lambda g: [N(g, (0, 3)), N(g, (2, 3))]),
]


def _seed(name: str) -> int:
    return sum(ord(c) * 31**i for i, c in enumerate(name)) % (2**31)


def build(case: Case):
    """``(scalar_fn, inputs)``: the weighted sum of the op's outputs, weights drawn once."""
    gen = torch.Generator().manual_seed(_seed(case.name))
    inputs = [t.requires_grad_(True) for t in case.make(gen)]
    out = case.fn(*inputs)
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    weights = [
        torch.randn((*t.shape, 2) if t.is_complex() else t.shape, generator=gen, dtype=D)
        for t in outs
    ]

    def scalar_fn(*xs):
        res = case.fn(*xs)
        res = list(res) if isinstance(res, (tuple, list)) else [res]
        # complex outputs enter through their real and imaginary parts
        return sum(
            ((torch.view_as_real(t.resolve_conj()) if t.is_complex() else t) * w).sum()
            for t, w in zip(res, weights, strict=True)
        )

    return scalar_fn, inputs


def true_grads(fn, inputs):
    xs = [x.detach().clone().requires_grad_(True) for x in inputs]
    with torch.enable_grad():
        gs = torch.autograd.grad(fn(*xs), xs, allow_unused=True)
    return [torch.zeros_like(x) if g is None else g for x, g in zip(xs, gs, strict=True)]


def scaled_backward(fn, target: int, factor: float = 1.5):
    """``fn`` whose backward is autograd's own, except input ``target``'s, times ``factor``."""

    class Scaled(torch.autograd.Function):
        generate_vmap_rule = True  # lets gradproof batch its evaluations

        @staticmethod
        def forward(*xs):
            return fn(*xs)

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.save_for_backward(*inputs)

        @staticmethod
        def backward(ctx, g):
            grads = true_grads(fn, ctx.saved_tensors)
            return tuple(g * (factor * t if i == target else t) for i, t in enumerate(grads))

    return Scaled.apply


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in CASES])
def test_autograd_backward_passes(case):
    fn, inputs = build(case)
    assert torch.autograd.gradcheck(fn, inputs, raise_exception=False), (
        "premise: torch's gradcheck accepts autograd here (else the case is ill-posed)"
    )
    report = gpt.check(fn, *inputs, progress=False)
    assert report.passed, str(report)


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in CASES if c.bug])
def test_scaled_backward_fails_naming_the_input(case):
    fn, inputs = build(case)
    grads = true_grads(fn, inputs)
    # the input with the largest gradient entry: its scaled gradient is the most visible
    peaks = [float(g.abs().max()) if g.numel() else 0.0 for g in grads]
    target = peaks.index(max(peaks))
    report = gpt.check(scaled_backward(fn, target), *inputs, progress=False)
    assert not report.passed, str(report)
    for i in range(len(inputs)):
        name = f"input{i}"
        if inputs[i].numel() == 0:
            continue
        assert report.tensors[name].passed is (i != target), f"{name}:\n{report}"
    assert report.tensors[f"input{target}"].scale == pytest.approx(1.5, rel=1e-2), str(report)
