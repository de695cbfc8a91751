"""gradproof.jax: jax.grad and custom rules, checked in float64 without touching the caller's config."""

import numpy as np
import pytest

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402

import gradproof.jax as gpj  # noqa: E402


def make_rule(factor):
    @jax.custom_vjp
    def f(x, y):
        return jnp.sin(x) * y

    def fwd(x, y):
        return f(x, y), (x, y)

    def bwd(res, g):
        x, y = res
        return (factor * g * jnp.cos(x) * y, g * jnp.sin(x))

    f.defvjp(fwd, bwd)
    return f


@pytest.fixture
def params():
    return {"x": jnp.array([0.3, 1.2, -0.7]), "y": jnp.array([1.5, -0.5, 2.0])}


def test_correct_custom_vjp_passes(params):
    f = make_rule(1.0)
    report = gpj.check(lambda p: jnp.sum(f(p["x"], p["y"])), params)
    assert report.passed, str(report)


def test_buggy_custom_vjp_is_named_with_its_factor(params):
    f = make_rule(2.0)
    report = gpj.check(lambda p: jnp.sum(f(p["x"], p["y"])), params)
    assert [t.name for t in report.failing] == ["x"]
    assert "2.00 × numeric" in report.tensors["x"].diagnosis


def test_caller_precision_is_left_alone(params):
    gpj.check(lambda p: jnp.sum(p["x"] ** 2), params)
    assert jnp.asarray(1.0).dtype == jnp.float32


def test_the_callers_float32_derivative_of_the_same_function_still_runs_after_a_check():
    # Inside the check a NumPy array the function closes over (or is passed) is traced
    # as a float64 constant; JAX kept it, and the caller's next jax.grad in float32 was
    # handed it and failed (RuntimeProgramInputMismatch).
    X = np.linspace(-1.0, 1.0, 15).reshape(5, 3)
    W = np.full((3, 4), 0.5)

    def closes_over(w):
        return jnp.sum(jnp.tanh(X @ w))

    def is_passed(w, x):
        return jnp.sum(jnp.tanh(x @ w))

    assert not jax.config.jax_enable_x64
    assert gpj.check(closes_over, W).passed
    assert gpj.check(jax.jit(is_passed), W, X).passed
    assert jax.grad(closes_over)(W).dtype == jnp.float32
    assert jax.grad(jax.jit(is_passed))(W, X).dtype == jnp.float32
    assert jax.jit(jax.grad(closes_over))(W).dtype == jnp.float32


def test_pytree_leaves_are_named_by_path_and_fixed_key_dropout_passes():
    key = jax.random.PRNGKey(0)
    rng = np.random.default_rng(0)
    p = {
        "layers": [
            {"W": jnp.asarray(rng.standard_normal((4, 3)))},
            {"W": jnp.asarray(rng.standard_normal((2, 4)))},
        ]
    }
    x = jnp.asarray(rng.standard_normal((3, 5)))

    def net(p, x):
        h = jnp.tanh(p["layers"][0]["W"] @ x)
        keep = jax.random.bernoulli(key, 0.7, h.shape)
        h = jnp.where(keep, h / 0.7, 0.0)
        return p["layers"][1]["W"] @ h  # non-scalar: projected

    report = gpj.check(net, p, x)
    assert report.passed, str(report)
    assert list(report.tensors) == ["layers.0.W", "layers.1.W"]


def test_directional_mode_passes_a_correct_gradient(params):
    report = gpj.check(lambda p: jnp.sum(jnp.exp(p["x"]) * p["y"]), params, mode="directional")
    assert report.passed and report.mode == "directional"


def test_a_cost_with_auxiliary_output_and_zero_gradients_in_both_modes():
    import gradproof.jax as gpj
    from gradproof.jax import check_grads

    x = np.linspace(0.0, 1.0, 4)
    assert gpj.check(lambda a: (jnp.sum(jnp.sin(a)), {"aux": 1}), x).passed
    # b's gradient is zero wherever tanh(w) is: forward and reverse agree on round-off
    assert check_grads(lambda w, b: jnp.sum(jnp.tanh(w) * b), (np.zeros(3), np.ones(3)), 1) is None
