"""The call patterns of other projects' test suites, as the drop-ins meet them.

Each pattern comes from a real suite run under ``benchmarks/suites.py`` (JAX's
``lax_autodiff_test.py`` and ``nn_test.py``, kornia's gradcheck tests): the call
the original accepts is accepted, a right gradient passes, and a wrong one in the
same setting still fails.
"""

from __future__ import annotations

import numpy as np
import pytest

import gradproof as gp

# --- JAX: jax.test_util.check_grads ------------------------------------------------


@pytest.fixture
def jax_modules():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    import gradproof.jax as gpj

    return jax, jnp, gpj


def scaled_sin(jax, jnp, factor):
    """sin with a custom VJP off by ``factor`` (1: right)."""

    @jax.custom_vjp
    def f(x):
        return jnp.sin(x)

    f.defvjp(lambda x: (jnp.sin(x), x), lambda x, g: (factor * jnp.cos(x) * g,))
    return f


def test_tolerances_as_dicts_keyed_by_dtype_are_accepted(jax_modules):
    jax, jnp, gpj = jax_modules
    x = np.linspace(-1.0, 1.0, 6, dtype=np.float32)
    tol = {np.float32: 1e-2, np.float64: 1e-5}  # NumPy scalar types as keys, as JAX's tests
    gpj.check_grads(jnp.sin, (x,), 1, atol=tol, rtol={np.dtype("float32"): 1e-2})
    with pytest.raises(gp.GradientError, match="arg0"):
        gpj.check_grads(scaled_sin(jax, jnp, 1.1), (x,), 1, modes=("rev",), atol=tol, rtol=tol)


def test_a_tolerance_dict_is_read_at_the_outputs_dtype():
    from gradproof.jax import _tolerance

    dtypes = [np.dtype("float32")]
    assert _tolerance({np.float32: 1e-2, np.float64: 1e-5}, dtypes) == 1e-2
    assert _tolerance({np.float64: 1e-5}, dtypes) is None  # no entry: gradproof's own verdict
    assert _tolerance({np.float64: 1e-5}, dtypes, default=True) == 2e-3  # check_grads' own
    assert _tolerance(3e-4, dtypes) == 3e-4


def third_derivative_dropped(jax, jnp):
    """sin whose derivative rules are right to order 2 and wrong at order 3."""

    @jax.custom_jvp
    def cos_(x):
        return jnp.cos(x)

    # d/dx cos = -sin, but through a stop_gradient: its own derivative is lost
    cos_.defjvp(lambda p, t: (jnp.cos(p[0]), -jnp.sin(jax.lax.stop_gradient(p[0])) * t[0]))

    @jax.custom_jvp
    def sin_(x):
        return jnp.sin(x)

    sin_.defjvp(lambda p, t: (jnp.sin(p[0]), cos_(p[0]) * t[0]))
    return sin_


@pytest.mark.parametrize("modes", [("rev",), ("fwd",), ("fwd", "rev")])
def test_any_order_is_checked_recursively(jax_modules, modes):
    jax, jnp, gpj = jax_modules
    x = np.array([0.3, -0.7, 1.1])
    gpj.check_grads(jnp.sin, (x,), 4, modes=modes)
    f = third_derivative_dropped(jax, jnp)
    gpj.check_grads(f, (x,), 2, modes=modes)  # right up to order 2
    with pytest.raises(gp.GradientError) as info:
        gpj.check_grads(f, (x,), 3, modes=modes)
    report = info.value.report
    assert not report.tensors["arg0 [order 3]"].passed
    assert report.tensors["arg0 [order 2]"].passed


def test_lin_mode_is_forward_mode(jax_modules):
    _, jnp, gpj = jax_modules
    gpj.check_grads(jnp.tanh, (np.array([0.2, -0.4]),), 2, modes=("lin",))


def test_a_function_that_cannot_run_in_float64_is_checked_in_its_own_precision(jax_modules):
    jax, jnp, gpj = jax_modules
    x = np.linspace(-1.0, 1.0, 5).astype(jnp.bfloat16)
    y = np.float64(0.75)

    def padded(a, b):  # a bfloat16 constant: a float64 operand makes lax.pad raise
        out = jax.lax.pad(jnp.sin(a), jnp.bfloat16(0), [(1, 1, 0)])
        return out.astype(jnp.float32) * b.astype(jnp.float32)

    with jax.numpy_dtype_promotion("strict"):
        gpj.check_grads(padded, (x, y), 1, modes=("rev",))
    with pytest.raises(gp.GradientError) as info:

        @jax.custom_vjp
        def wrong(a):
            return jax.lax.pad(a, jnp.bfloat16(0), [(1, 1, 0)])

        wrong.defvjp(lambda a: (wrong(a), None), lambda _, g: (3 * g[1:-1],))
        gpj.check_grads(lambda a: jnp.sin(wrong(a)), (x,), 1, modes=("rev",))
    assert "own precision (bfloat16)" in str(info.value)


def test_a_value_not_finite_in_float64_only_is_checked_in_its_own_precision(jax_modules):
    _, jnp, gpj = jax_modules
    x = np.linspace(0.1, 1.0, 4, dtype=np.float32)

    def f(a):  # as a cost that overflows or cancels to nan in float64 alone would be
        return jnp.sin(a) * (jnp.nan if a.dtype == jnp.float64 else 1.0)

    gpj.check_grads(f, (x,), 1)


def test_strict_promotion_and_float32_arguments(jax_modules):
    jax, jnp, gpj = jax_modules
    x = np.linspace(0.1, 1.0, 4, dtype=np.float32)
    with jax.numpy_dtype_promotion("strict"):
        gpj.check_grads(lambda a: a * jnp.float32(2) + jnp.sin(a), (x,), 2)


def test_nan_in_nan_out_passes_as_check_grads_does(jax_modules):
    jax, _, gpj = jax_modules
    gpj.check_grads(jax.nn.softplus, (float("nan"),), order=1)
    gpj.check_grads(jax.nn.mish, (float("nan"),), order=1)


def test_outputs_outside_the_domain_are_left_out_as_check_grads_leaves_them(jax_modules):
    jax, jnp, gpj = jax_modules
    x = np.array([0.2, -0.03, -1.04, 1.19, 0.5], np.float32)  # asin is nan at two of them
    tol = {np.float32: 0.15}
    gpj.check_grads(jax.lax.asin, (x,), 2, ["fwd", "rev"], tol, tol)

    @jax.custom_vjp
    def doubled(a):
        return jnp.arcsin(a)

    doubled.defvjp(lambda a: (jnp.arcsin(a), a), lambda a, g: (2 * g / jnp.sqrt(1 - a * a),))
    with pytest.raises(gp.GradientError) as info:
        gpj.check_grads(doubled, (x,), 1, ["rev"])
    assert info.value.report.tensors["arg0"].pattern == "scale"
    assert any("2 output elements not finite" in w for w in info.value.report.warnings)


def test_a_primitive_vmap_cannot_batch_is_evaluated_one_by_one(jax_modules):
    jax, _, gpj = jax_modules
    o = np.asarray(0.3)  # scalar bounds batched against a scalar operand break lax.clamp
    gpj.check_grads(jax.lax.clamp, (o - 10, o + 10, o), 2, ["fwd", "rev"], eps=1e-2)


# --- PyTorch: torch.autograd.gradcheck ---------------------------------------------

torch = pytest.importorskip("torch")
import gradproof.torch as gpt  # noqa: E402


def x64(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).requires_grad_(True)


def test_an_output_that_does_not_require_grad_is_not_checked():
    x = x64(4)
    f = lambda x: (x * 2, x.detach().sum())  # noqa: E731  (a threshold returned beside)
    assert torch.autograd.gradcheck(f, (x,))
    assert gpt.gradcheck(f, (x,))
    assert gpt.gradcheck(f, (x,), fast_mode=True)
    assert not gpt.check(f, x).passed  # gpt.check checks every output: a missing path


class Scale(torch.nn.Module):
    """y = x * w, whose backward for its own weight is wrong (doubled), not for x."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.tensor([1.5, -0.5, 2.0], dtype=torch.float64))

    def forward(self, x):
        class Mul(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, w):
                ctx.save_for_backward(x, w)
                return x * w

            @staticmethod
            def backward(ctx, g):
                x, w = ctx.saved_tensors
                return g * w, 2 * (g * x).sum(0)

        return Mul.apply(x, self.weight)


def test_a_module_is_a_function_of_its_inputs_for_gradcheck():
    m = Scale()
    x = x64(4, 3)
    before = m.weight.detach().clone()
    assert torch.autograd.gradcheck(m, (x,))  # torch checks the inputs only
    assert gpt.gradcheck(m, (x,))
    assert gpt.gradcheck(m, (x,), fast_mode=True)
    report = gpt.check(m, x)  # gpt.check goes on checking the module's parameters
    assert not report.passed and [t.name for t in report.failing] == ["weight"]
    assert torch.equal(before, m.weight)


def test_finite_differences_that_do_not_settle_are_not_differentiable_here():
    x = np.array([2.0, 1.0, 3.0])
    w = np.array([[1.0, 0.5], [0.5, -0.5], [-1.0, 0.0]])
    w[0, 0] -= (x @ w[:, 0] - 1e-12 - 1e-14) / x[0]  # column 0 just inside the clamp

    def cost(p):
        return np.sum(np.sqrt(np.maximum(x @ p["w"], 1e-12)))

    def grad(p):
        z = x @ p["w"]
        g = np.where(z > 1e-12, 0.5 / np.sqrt(np.maximum(z, 1e-12)), 0.0)
        return {"w": np.outer(x, g)}

    report = gp.check(cost, {"w": w}, grad)
    assert report.passed
    t = report.tensors["w"]
    assert set(t.unsettled) == {(0, 0), (1, 0), (2, 0)} and set(t.unsettled) <= set(t.kinks)
    note = next(w for w in report.warnings if "not differentiable" in w)
    assert "do not settle as the step shrinks" in note and "at h=" in note


def jacobi_solve(slip: float = 0.0):
    """x = A⁻¹ b by Jacobi iteration to a relative residual of 1e-8; the backward exact
    (implicit), with one element of dA off by ``slip`` (relative)."""

    class Solve(torch.autograd.Function):
        @staticmethod
        def forward(ctx, A, b):
            x, d = torch.zeros_like(b), torch.diagonal(A)
            for _ in range(10_000):
                r = b - A @ x
                if r.norm() <= 1e-8 * b.norm():
                    break
                x = x + r / d
            ctx.save_for_backward(A, x)
            return x

        @staticmethod
        def backward(ctx, g):
            A, x = ctx.saved_tensors
            lam = torch.linalg.solve(A.T, g)
            dA = -torch.outer(lam, x)
            dA[3, 5] *= 1 + slip
            return dA, lam

    return Solve


def solver_inputs(n=20):
    g = torch.Generator().manual_seed(0)
    m = torch.randn(n, n, generator=g, dtype=torch.float64)
    A = (m @ m.T + 3 * n * torch.eye(n, dtype=torch.float64)).requires_grad_(True)
    return A, torch.randn(n, generator=g, dtype=torch.float64).requires_grad_(True)


def test_an_iterative_solver_passes_the_drop_in_and_a_slip_is_still_found():
    A, b = solver_inputs()
    # The forward stops at its tolerance, the backward is exact: small elements of dA
    # disagree by ~1e-9 of its norm. gradcheck (torch's and the drop-in) accepts that...
    assert torch.autograd.gradcheck(jacobi_solve().apply, (A, b))
    report = _dropin_report(jacobi_solve().apply, (A, b))
    assert any("accepted, as the checker it replaces would" in w for w in report.warnings)
    assert report.passed
    # ...gp.check on a cost it cannot see noise in reports it, as a real mismatch would be
    assert not gpt.check(jacobi_solve().apply, A, b).passed
    # and a 1e-3 slip in one element is found by both
    with pytest.raises(gp.GradientError) as info:
        gpt.gradcheck(jacobi_solve(1e-3).apply, (A, b))
    assert info.value.report.tensors["input0"].wrong_indices == ((3, 5),)


def _dropin_report(fn, inputs):
    """The report behind a passing drop-in call (gradcheck returns only True)."""
    from gradproof.torch import _check_all, _dropin_options, _probe

    opts = _dropin_options(None, None, None, False)
    probe = _probe(torch, fn, inputs, None, 0.0)
    return _check_all(torch, fn, inputs, None, opts, ("rev",), 1, dropin=probe)


def test_fast_mode_costs_a_handful_of_evaluations_whatever_the_size():
    calls = []

    def f(a):
        calls.append(1)
        return (a.sin() * 2).sum(-1)

    for n in (3, 300):
        calls.clear()
        assert gpt.gradcheck(f, (x64(n, 4),), fast_mode=True)
        # torch's fast mode takes 4 here; gradproof one forward for the outputs and
        # re-entrancy, one for the backward, the check point, one direction, a final one
        assert len(calls) <= 6, len(calls)


def test_a_detached_mean_is_named_as_a_missing_constant_term():
    # kornia's HardNet standardizes each patch with x - mean.detach(): a real mismatch,
    # which gradproof reports with what it shows
    def standardized(x):
        return torch.tanh((x - x.mean(dim=(-2, -1), keepdim=True).detach()) * 1.5)

    x = x64(2, 4, 4)
    for fast_mode in (False, True):
        with pytest.raises(gp.GradientError) as info:
            gpt.gradcheck(standardized, (x,), fast_mode=fast_mode)
        t = info.value.report.tensors["input0"]
        assert t.pattern == "offset" and "detached" in t.cause


# --- What the allowances above must not let through (a review's counterexamples) ----


def test_an_exact_cost_gets_no_allowance_for_its_small_elements():
    x = np.array([0.0, 1e-4, 2e-4, 0.3])  # one partial 1e6, the others 1e-4 .. 0.6

    def cost(x):
        return 1e6 * np.sin(x[0]) + np.sum(x[1:] ** 2)

    right = np.concatenate([[1e6 * np.cos(x[0])], 2 * x[1:]])
    assert gp.check(cost, x, right).passed
    for i, factor in ((2, 2.0), (2, -1.0), (3, 1.001)):
        wrong = right.copy()
        wrong[i] *= factor
        assert not gp.check(cost, x, wrong).passed, (i, factor)


@pytest.mark.parametrize("w", [2.5e6, 3.0e6, 4.4e6])
def test_a_fast_oscillation_is_not_taken_for_a_point_of_no_derivative(w):
    x = np.array([0.3])
    report = gp.check(lambda p: float(np.sin(w * p[0])), x, 2 * w * np.cos(w * x))
    assert not report.passed and not report.tensors["theta"].unsettled


def test_a_few_wrong_elements_are_not_called_an_offset():
    w = np.linspace(-1.0, 1.0, 100)
    g = 2 * w
    g[[3, 50, 97]] += 1.0
    t = gp.check(lambda p: float(np.sum(p**2)), w, g).tensors["theta"]
    assert t.pattern == "few"


def test_gradgradcheck_grad_outputs_cover_the_outputs_that_require_grad():
    x = x64(4)
    g = x64(4, seed=1).detach()
    f = lambda x: (x.detach() * 3, (x**3).sin())  # noqa: E731
    assert torch.autograd.gradgradcheck(f, (x,), (g,))
    assert gpt.gradgradcheck(f, (x,), (g,))


def test_outputs_left_out_do_not_fake_a_disagreement_between_modes(jax_modules):
    jax, jnp, gpj = jax_modules
    f = lambda x: jnp.stack([jnp.sqrt(x[0]), 2 * x[1], x[0] * x[1]])  # noqa: E731
    with jax.enable_x64(True):
        gpj.check_grads(f, (np.array([-1.0, 0.7]),), 1)  # sqrt(-1) is nan: left out


def test_own_precision_tolerances_are_shared_out_over_the_elements(jax_modules):
    jax, jnp, gpj = jax_modules

    @jax.custom_jvp
    def g(x):
        return jnp.sin(x)

    g.defjvp(lambda p, t: (jnp.sin(p[0]), 1.2 * jnp.cos(p[0]) * t[0]))  # 20% too large
    x = np.linspace(-1.0, 1.0, 400, dtype=np.float32)
    # lax.add with a float32 constant cannot run on float64 copies: own precision
    f = lambda a: 1e-2 * jnp.sum(g(jax.lax.add(a, np.float32(0))))  # noqa: E731
    with pytest.raises(gp.GradientError):
        gpj.check_grads(f, (x,), 1, modes=("fwd",))
