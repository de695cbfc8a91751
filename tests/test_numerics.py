"""The verdict is not fooled by numerics: kinks, zero gradients, float32, noise."""

import numpy as np
import pytest

import gradproof as gp


def test_kink_is_reported_and_left_out_of_the_verdict():
    w = np.array([0.7, 0.0, -1.3, 2.0])  # relu's kink at w[1] = 0
    cost = lambda p: float(np.sum(np.maximum(p, 0.0) * 3.0))  # noqa: E731
    analytic = 3.0 * (w > 0)  # relu'(0) taken as 0: numeric sees the average, 1.5
    report = gp.check(cost, w, analytic)
    assert report.passed, str(report)
    assert report.tensors["theta"].kinks == ((1,),)
    assert any("kink" in msg and "[1]" in msg for msg in report.warnings)


def test_a_real_bug_next_to_a_kink_is_still_caught():
    w = {"a": np.array([0.0, 1.5, -0.4]), "b": np.array([0.3, -0.2])}
    cost = lambda p: float(np.sum(np.abs(p["a"])) + np.sum(p["b"] ** 2))  # noqa: E731
    grads = {"a": np.sign(w["a"]), "b": 2 * w["b"]}
    grads["a"][2] = 0.5  # wrong: should be -1
    report = gp.check(cost, w, grads)
    assert {t.name for t in report.failing} == {"a"}
    assert report.tensors["a"].kinks == ((0,),)
    assert report.tensors["a"].wrong_indices == ((2,),)


def _batchnorm_net(rng):
    X = rng.standard_normal((3, 16))
    params = {"W": rng.standard_normal((4, 3)), "b": rng.standard_normal((4, 1))}
    target = rng.standard_normal((4, 16))

    def cost(p):
        Z = p["W"] @ X + p["b"]
        Zn = (Z - Z.mean(axis=1, keepdims=True)) / np.sqrt(Z.var(axis=1, keepdims=True) + 1e-5)
        return 0.5 * np.mean((Zn - target) ** 2)

    def grads(p):
        Z = p["W"] @ X + p["b"]
        m = Z.shape[1]
        mu, var = Z.mean(axis=1, keepdims=True), Z.var(axis=1, keepdims=True) + 1e-5
        Zn = (Z - mu) / np.sqrt(var)
        dZn = (Zn - target) / Zn.size
        dZ = dZn - dZn.mean(axis=1, keepdims=True) - Zn * (dZn * Zn).mean(axis=1, keepdims=True)
        dZ = dZ / np.sqrt(var)
        assert dZ.shape[1] == m
        return {"W": dZ @ X.T, "b": np.zeros_like(p["b"])}  # exactly zero: BN removes the bias

    return cost, params, grads


def test_bias_before_batchnorm_with_exactly_zero_gradient_passes():
    cost, params, grads = _batchnorm_net(np.random.default_rng(0))
    report = gp.check(cost, params, grads)
    assert report.tensors["b"].passed
    assert report.passed, str(report)
    assert np.max(np.abs(report.numerical["b"])) > 0  # the numeric side saw only round-off


def test_float32_parameters_run_on_float64_copies():
    w = np.linspace(-1, 1, 5).astype(np.float32)
    report = gp.check(
        lambda p: float(np.sum(np.sin(p["w"]))), {"w": w}, {"w": np.cos(w.astype(np.float64))}
    )
    assert report.passed
    assert any("float32" in msg and "float64 copies" in msg for msg in report.warnings)
    assert w.dtype == np.float32


def test_non_deterministic_cost_is_reported_not_blamed_on_a_parameter():
    w = np.array([0.3, -0.8, 1.1])
    noise = np.random.default_rng()  # not replayable: a fresh generator the check cannot see
    report = gp.check(lambda p: float(np.sum(p**2) + 1e-6 * noise.standard_normal()), w, 2 * w)
    assert not report.passed
    assert not report.deterministic
    assert report.failing == []
    assert "non-deterministic" in str(report).splitlines()[0]


def test_cost_with_state_that_drifts_is_non_deterministic():
    calls = [0]

    def drifting(p):
        calls[0] += 1
        return float(np.sum(p**2)) + 1e-3 * calls[0]

    report = gp.check(drifting, np.ones(3), 2 * np.ones(3))
    assert not report.deterministic and not report.passed


def test_complex_step_is_exact_to_round_off():
    w = np.array([0.2, -1.7, 3.0])
    cost = lambda p: np.sum(np.exp(p) * np.sin(p))  # noqa: E731
    exact = np.exp(w) * (np.sin(w) + np.cos(w))
    report = gp.check(cost, w, exact, method="complex")
    assert report.passed
    assert report.difference < 1e-15
    assert report.evaluations <= w.size + 4


def test_complex_step_refuses_a_cost_that_drops_the_imaginary_part():
    with pytest.raises(gp.CostError, match="complex-safe"):
        gp.check(
            lambda p: float(np.sum(np.abs(p) ** 2)), np.ones(2), 2 * np.ones(2), method="complex"
        )


def test_richardson_is_more_accurate_than_central():
    w = np.array([0.5, 1.5, -2.5])
    cost = lambda p: float(np.sum(np.exp(p) / (1 + p**2)))  # noqa: E731
    exact = np.exp(w) / (1 + w**2) - 2 * w * np.exp(w) / (1 + w**2) ** 2
    central = gp.check(cost, w, exact, eps=1e-3)
    richardson = gp.check(cost, w, exact, method="richardson", eps=1e-3)
    # Richardson cancels central's h^2 error term, leaving O(h^4): the ratio is about
    # h^2 = 1e-6 times a ratio of Taylor coefficients (measured 6e-7); allow 100 for that.
    assert richardson.difference < central.difference * 1e-4
    assert richardson.passed


def test_one_wrong_element_in_a_large_tensor_is_caught():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((60, 50))
    grads = np.cos(w)
    worst = np.unravel_index(np.argmax(np.abs(grads)), grads.shape)
    grads[worst] *= 1 + 3e-6  # the tensor's difference stays below tol
    report = gp.check(lambda p: float(np.sum(np.sin(p))), w, grads)
    assert report.tensors["theta"].difference < 1e-7
    assert not report.passed
    assert report.tensors["theta"].wrong_indices == (tuple(int(i) for i in worst),)
    assert report.tensors["theta"].pattern == "few"


def test_a_large_eps_blames_its_truncation_error_on_no_parameter():
    w = np.array([0.5, -0.25, 1.0])
    cost = lambda p: float(np.sum(np.sin(3 * p)))  # noqa: E731
    report = gp.check(cost, w, 3 * np.cos(3 * w), eps=1e-3)
    # Central differences of sin(3x) give 3cos(3x)·s with s = sin(3h)/(3h): the difference is
    # exactly (1 - s)/(1 + s) = 7.5e-7, far above tol, all of it truncation error.
    s = np.sin(3e-3) / 3e-3
    assert report.difference == pytest.approx((1 - s) / (1 + s), rel=1e-5)
    assert report.failing == []


def test_numerical_gradient_has_params_structure():
    params = {"layers": [{"W": np.ones((2, 2))}, {"W": np.full(3, 2.0)}], "s": 1.5}
    g = gp.numerical_gradient(lambda p: np.sum(p["layers"][1]["W"] ** 2) + p["s"] ** 3, params)
    assert isinstance(g["layers"], list) and g["layers"][0]["W"].shape == (2, 2)
    np.testing.assert_allclose(g["layers"][1]["W"], 4.0, rtol=1e-9)
    assert g["s"] == pytest.approx(3 * 1.5**2, rel=1e-9)
    np.testing.assert_array_equal(g["layers"][0]["W"], 0.0)
