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
    from gradproof.jax._dropin import tolerance as _tolerance

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
    jax, jnp, gpj = jax_modules
    gpj.check_grads(jnp.tanh, (np.array([0.2, -0.4]),), 2, modes=("lin",))
    # a custom_vjp has no forward mode: checked as forward mode, "lin" says so (as
    # reverse mode it would be checked, and pass)
    f = scaled_sin(jax, jnp, 1.0)
    gpj.check_grads(f, (np.array([0.2, -0.4]),), 1, modes=("rev",))
    with pytest.raises(gp.GradientSpecError, match="forward mode"):
        gpj.check_grads(f, (np.array([0.2, -0.4]),), 1, modes=("lin",))


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


# --- NumPy: what the drop-ins' engine meets in those suites ---------------------------


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


def test_a_drop_in_call_compiles_one_program_for_its_derivatives_and_one_per_order(jax_modules):
    # JAX's own suites make hundreds of check_grads calls on tiny arrays: a compilation
    # (tens of ms) costs far more than running them, so a call compiles one program for
    # every derivative it checks and one for the cost values of each order (13 before)
    jax, jnp, gpj = jax_modules
    backend_compile = "/jax/core/compile/backend_compile_duration"
    compiled = []

    def listener(event, duration, **kwargs):
        if event == backend_compile:
            compiled.append(duration)

    x = np.linspace(-1.0, 1.0, 6).reshape(2, 3).astype(np.float32)
    f = lambda a, b: jnp.tanh(a) * b  # noqa: E731
    f(x, x + 1)  # the function as called is compiled by the caller's own use
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        gpj.check_grads(f, (x, x + 1), 2, ["fwd", "rev"])
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert len(compiled) == 3


def test_a_cost_vmap_cannot_batch_runs_one_by_one_and_says_so_once(jax_modules):
    jax, jnp, gpj = jax_modules

    def host_sin(a):  # a host callback with no batching rule
        return jax.pure_callback(np.sin, jax.ShapeDtypeStruct(a.shape, a.dtype), a)

    @jax.custom_jvp
    def f(a):
        return host_sin(a)

    f.defjvp(lambda p, t: (f(p[0]), factor * jnp.cos(p[0]) * t[0]))
    x = np.array([0.3, -1.2, 0.7])
    factor = 1.0
    report = gpj.check(lambda p: jnp.sum(f(p)), x, modes=("rev", "fwd"))
    assert report.passed
    assert sum("evaluations ran one by one" in w for w in report.warnings) == 1
    factor = 1.001
    assert not gpj.check(lambda p: jnp.sum(f(p)), x, modes=("rev", "fwd")).passed


def test_a_python_number_beside_the_outputs_is_not_an_output(jax_modules):
    _, jnp, gpj = jax_modules
    report = gpj.check(lambda p: (jnp.sum(p**2), 0.5), np.array([0.3, -1.2, 0.7]))
    assert report.passed and list(report.tensors) == ["theta"]
