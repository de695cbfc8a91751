"""Conformance on JAX's own functions: its derivative rules are right, so gradproof must agree.

About twenty functions of ``jax.numpy``, ``jax.nn`` and ``jax.scipy.special``,
the awkward ones included (tan, arctanh, erfinv near their poles; i1e at an
exact zero; logsumexp of 1e4; softmax with -inf logits; zero gradients of
sign and round; corrcoef of two observations; an empty array). For every case:

- JAX's own gradient is right, so gradproof.jax.check must pass it (where
  ``jax.test_util.check_grads`` fails some: benchmarks/jax_funcs.py compares);
- the function behind a ``jax.custom_vjp`` whose backward returns 1.5x the
  true gradient of one argument must fail, with that argument (and only it)
  named, and a fitted scale of 1.5.

benchmarks/jax_funcs.py runs the same comparison on ~80 functions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

jax = pytest.importorskip("jax")
gpj = pytest.importorskip("gradproof.jax")
jnp = jax.numpy
jss = pytest.importorskip("jax.scipy.special")


def x64():
    """float64 inside, the process-wide setting left alone."""
    if hasattr(jax, "enable_x64"):
        return jax.enable_x64(True)
    from jax.experimental import enable_x64  # older JAX

    return enable_x64()


def U(rng, shape, low=-1.0, high=1.0):
    return rng.uniform(low, high, shape)


def N(rng, shape):
    return rng.standard_normal(shape)


def with_zero(x):
    x.reshape(-1)[0] = 0.0
    return x


def with_large(x):
    x.reshape(-1)[::7] = 1e4
    return x


def with_inf(rng, shape):
    """Logits with -inf in some (never all) entries of each row, as masked attention gives."""
    x = rng.standard_normal(shape)
    mask = rng.random(shape) < 0.4
    mask[..., 0] = False
    x[mask] = -np.inf
    return x


def sym(a):
    return (a + a.T) / 2


@dataclass(frozen=True)
class Case:
    """``fn(*args)``; ``make(rng)`` draws its arguments (all differentiated)."""

    name: str
    fn: Callable
    make: Callable
    bug: bool = True  # False where no gradient is nonzero, so a scaled one is still right


CASES = [
    Case("tan", jnp.tan, lambda r: [U(r, (20, 20), -9, 9)]),
    Case("arctanh", jnp.arctanh, lambda r: [U(r, (20, 20), -0.999, 0.999)]),
    Case("erfinv", jss.erfinv, lambda r: [U(r, (20, 20), -0.999, 0.999)]),
    Case("polygamma_n1", lambda x: jss.polygamma(1, x), lambda r: [U(r, (5, 5), 0.05, 9)]),
    Case("i1e", jss.i1e, lambda r: [with_zero(U(r, (20, 20), -9, 9))]),
    Case("gammaln", jss.gammaln, lambda r: [U(r, (5, 5), 0.05, 9)]),
    Case("logsumexp", lambda x: jss.logsumexp(x, axis=0), lambda r: [with_large(U(r, (5, 5)))]),
    Case("softmax", jax.nn.softmax, lambda r: [U(r, (3, 5), -9, 9)]),
    Case("softmax_neg_inf", jax.nn.softmax, lambda r: [with_inf(r, (3, 5))]),
    Case("log_softmax", jax.nn.log_softmax, lambda r: [U(r, (3, 5), -9, 9)]),
    Case("xlogy", jss.xlogy, lambda r: [N(r, (4, 5)), U(r, (4, 5), 0.1, 3)]),
    Case("matmul", jnp.matmul, lambda r: [N(r, (3, 4)), N(r, (4, 2))]),
    Case("det", jnp.linalg.det, lambda r: [N(r, (4, 4)) + 3 * np.eye(4)]),
    Case(
        "cholesky",
        lambda a: jnp.linalg.cholesky(sym(a)),
        lambda r: [(lambda a: a @ a.T + 4 * np.eye(4))(N(r, (4, 4)))],
    ),
    Case("eigvalsh", lambda a: jnp.linalg.eigvalsh(sym(a)), lambda r: [N(r, (4, 4))]),
    Case("norm", jnp.linalg.norm, lambda r: [N(r, (7,))]),
    Case("sort", lambda x: jnp.sort(x, axis=1), lambda r: [N(r, (4, 5))]),
    # zero gradients everywhere
    Case("sign", jnp.sign, lambda r: [U(r, (20, 20), -9, 9)], bug=False),
    Case(
        "round_decimals3", lambda x: jnp.round(x, 3), lambda r: [U(r, (20, 20), -9, 9)], bug=False
    ),
    Case("corrcoef_two_obs", jnp.corrcoef, lambda r: [N(r, (3, 2))], bug=False),
    # nothing to check, which is not a failure
    Case("cos_empty", jnp.cos, lambda r: [N(r, (1, 0, 3))], bug=False),
]


def build(case: Case):
    """``(scalar_fn, args)``: the weighted sum of the function's outputs, weights drawn once."""
    rng = np.random.default_rng(sum(map(ord, case.name)))
    args = [np.asarray(a, dtype=np.float64) for a in case.make(rng)]
    with x64():
        outs = jax.tree_util.tree_leaves(case.fn(*args))
    weights = [rng.standard_normal(np.shape(t)) for t in outs]

    def scalar_fn(*xs):
        res = jax.tree_util.tree_leaves(case.fn(*xs))
        return sum(jnp.sum(t * w) for t, w in zip(res, weights, strict=True))

    return scalar_fn, args


def scaled_backward(fn, n: int, target: int, factor: float = 1.5):
    """``fn`` whose VJP is JAX's own, except argument ``target``'s, times ``factor``."""

    @jax.custom_vjp
    def scaled(*xs):
        return fn(*xs)

    def fwd(*xs):
        return fn(*xs), xs

    def bwd(xs, ct):
        grads = jax.grad(fn, argnums=tuple(range(n)))(*xs)
        return tuple(ct * (factor * g if i == target else g) for i, g in enumerate(grads))

    scaled.defvjp(fwd, bwd)
    return scaled


def gp_check(fn, args):
    params = {f"x{i}": a for i, a in enumerate(args)}
    return gpj.check(lambda p: fn(*[p[f"x{i}"] for i in range(len(args))]), params, progress=False)


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in CASES])
def test_jax_gradient_passes(case):
    fn, args = build(case)
    # JAX's own rules are right here (check_grads itself fails tan, arctanh, erfinv and
    # i1e at rtol 1e-5: benchmarks/jax_funcs.py lists each); gradproof must pass them.
    report = gp_check(fn, args)
    assert report.passed, str(report)


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in CASES if c.bug])
def test_scaled_vjp_fails_naming_the_argument(case):
    fn, args = build(case)
    with x64():
        grads = jax.grad(fn, argnums=tuple(range(len(args))))(*[jnp.asarray(a) for a in args])
        peaks = [float(np.abs(np.asarray(g)).max()) if g.size else 0.0 for g in grads]
    target = peaks.index(max(peaks))  # the most visible place for the planted factor
    report = gp_check(scaled_backward(fn, len(args), target), args)
    assert not report.passed, str(report)
    for i in range(len(args)):
        assert report.tensors[f"x{i}"].passed is (i != target), f"x{i}:\n{report}"
    assert report.tensors[f"x{target}"].scale == pytest.approx(1.5, rel=1e-2), str(report)
