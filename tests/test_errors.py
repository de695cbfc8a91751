"""Bad input gets a clear error naming the problem and the fix, and params come back intact."""

import numpy as np
import pytest

import gradproof as gp
from helpers import snapshot


@pytest.fixture
def params():
    rng = np.random.default_rng(0)
    return {"W": rng.standard_normal((3, 2)), "b": rng.standard_normal(3)}


def cost(p):
    return float(np.sum(np.tanh(p["W"]) ** 2) + np.sum(p["b"] ** 3))


def grads(p):
    return {"dW": 2 * np.tanh(p["W"]) * (1 - np.tanh(p["W"]) ** 2), "db": 3 * p["b"] ** 2}


def raises_intact(params, match, exc=gp.GradientSpecError, **kw):
    before = snapshot(params)
    with pytest.raises(exc, match=match) as info:
        gp.check(kw.pop("cost", cost), params, kw.pop("grads", grads), **kw)
    assert snapshot(params) == before
    return info


def test_cost_returning_a_vector_is_refused(params):
    raises_intact(
        params, r"scalar, got an array of shape \(3,\)", exc=gp.CostError, cost=lambda p: p["b"]
    )


def test_cost_nan_at_the_check_point_is_refused(params):
    raises_intact(params, r"nan at the check point", exc=gp.CostError, cost=lambda p: np.nan)


def test_cost_that_raises_is_chained(params):
    def broken(p):
        raise ZeroDivisionError("boom")

    info = raises_intact(
        params, r"raised ZeroDivisionError at the check point: boom", exc=gp.CostError, cost=broken
    )
    assert isinstance(info.value.__cause__, ZeroDivisionError)


def test_cost_that_raises_mid_check_names_the_coordinate(params):
    x0 = params["b"][1]

    def breaks_at(p):
        if p["b"][1] > x0:
            raise RuntimeError("out of range")
        return cost(p)

    info = raises_intact(params, r"at b\[1\] \+ h: out of range", exc=gp.CostError, cost=breaks_at)
    assert isinstance(info.value.__cause__, RuntimeError)
    assert isinstance(info.value, gp.CostError)


def test_cost_not_finite_at_a_perturbed_point_names_the_step(params):
    x0 = params["W"][2, 0]
    raises_intact(
        params,
        r"inf at W\[2, 0\] - h",
        exc=gp.CostError,
        cost=lambda p: np.inf if p["W"][2, 0] < x0 else 1.0,
    )


def test_missing_gradient_is_named(params):
    raises_intact(params, r"no gradient for parameter 'b'", grads={"dW": np.zeros((3, 2))})


def test_gradient_for_no_parameter_is_named(params):
    g = {**grads(params), "c": np.zeros(2)}
    raises_intact(params, r"gradient 'c' for which params has no parameter", grads=g)


def test_seed_style_intermediates_are_ignored(params):
    g = {**grads(params), "dA1": np.zeros(7), "dZ1": np.zeros(7)}
    assert gp.check(cost, params, g).passed


def test_shape_mismatch_names_both_shapes(params):
    g = {**grads(params), "db": np.zeros((3, 1))}
    raises_intact(params, r"'b' has shape \(3, 1\), but the parameter has shape \(3,\)", grads=g)


def test_non_finite_gradient_names_its_index(params):
    g = grads(params)
    g["dW"][1, 1] = np.nan
    raises_intact(params, r"'W' is not finite \(nan at index \(1, 1\)", grads=g)


def test_empty_params_are_refused():
    with pytest.raises(gp.GradientSpecError, match="no parameters to check"):
        gp.check(lambda p: 0.0, {}, {})


@pytest.mark.parametrize("mode", ["full", "sample", "directional"])
def test_parameters_with_no_elements_are_reported_as_zero_coordinates(mode):
    w = np.array([0.5, -1.0])
    params = {"W": np.zeros((0, 3)), "w": w}
    grads = {"W": np.zeros((0, 3)), "w": np.cos(w)}
    report = gp.check(lambda p: np.sum(np.sin(p["w"])) + np.sum(p["W"]), params, grads, mode=mode)
    assert report.passed and report.tensors["W"].checked == 0
    assert report.tensors["W"].shape == (0, 3)
    assert report.tensors["w"].checked == (3 if mode == "directional" else 2)
    nothing = gp.check(lambda p: 0.0, {"W": np.zeros((0, 3))}, {"W": np.zeros((0, 3))}, mode=mode)
    assert nothing.passed and str(nothing).startswith(
        "Gradient check passed: nothing to check, 1 parameter with no elements"
    )


@pytest.mark.parametrize(
    ("option", "value", "match"),
    [
        ("method", "five-point", r"unknown method 'five-point'; use one of 'central'"),
        ("mode", "random", r"unknown mode 'random'; use one of 'full'"),
        ("eps", 0.0, r"eps must be a positive finite step or None, got 0.0"),
        ("eps", -1e-6, r"eps must be a positive finite step"),
        ("tol", 0, r"tol must be a positive finite number"),
        ("tol", -1e-7, r"tol must be a positive finite number"),
    ],
    ids=["method", "mode", "eps-zero", "eps-negative", "tol-zero", "tol-negative"],
)
def test_bad_option_is_refused_with_the_accepted_values(params, option, value, match):
    raises_intact(params, match, **{option: value})


def test_integer_parameters_are_refused():
    with pytest.raises(
        gp.GradientSpecError, match=r"'W' is an integer array \(dtype int64\).*astype\(np.float64\)"
    ):
        gp.check(lambda p: 0.0, {"W": np.arange(3)}, {"W": np.zeros(3)})


def test_boolean_parameters_are_refused():
    with pytest.raises(gp.GradientSpecError, match="boolean"):
        gp.check(lambda p: 0.0, {"mask": np.ones(3, bool)}, {"mask": np.zeros(3)})


def test_non_array_leaf_is_refused():
    with pytest.raises(gp.GradientSpecError, match=r"'act' is a str"):
        gp.check(lambda p: 0.0, {"act": "relu", "W": np.ones(2)}, {"W": np.zeros(2)})


def test_keyboard_interrupt_mid_check_leaves_params_intact(params):
    calls = 0

    def interrupted(p):
        nonlocal calls
        calls += 1
        if calls == 7:
            raise KeyboardInterrupt
        return cost(p)

    raises_intact(params, None, exc=KeyboardInterrupt, cost=interrupted)


def test_cost_that_mutates_its_argument_cannot_touch_params(params):
    def vandal(p):
        value = cost(p)
        p["b"][:] = 0.0
        return value

    raises_intact(
        params,
        r"the cost changed the params passed to it: b is different",
        exc=gp.CostError,
        cost=vandal,
    )


def test_global_rng_state_is_left_as_found(params):
    np.random.seed(7)
    state = np.random.get_state()

    def draws(p):
        np.random.rand(3)
        return cost(p)

    gp.check(draws, params, grads)
    after = np.random.get_state()
    assert np.array_equal(state[1], after[1]) and state[2:] == after[2:]


def test_grads_callable_that_raises_propagates_with_params_intact(params):
    def bad_grads(p):
        raise ValueError("no backward yet")

    raises_intact(params, "no backward yet", exc=ValueError, grads=bad_grads)


def test_a_misspelt_option_names_the_function_it_was_passed_to_and_the_fix(params):
    with pytest.raises(
        gp.GradientSpecError,
        match=r"gp.assert_gradients got an unknown option "
        r"'tolerance' \(did you mean 'tol'\?\)",
    ):
        gp.assert_gradients(cost, params, grads, tolerance=1e-6)
    with pytest.raises(
        gp.GradientSpecError, match=r"unknown option 'methd' \(did you mean 'method'"
    ):
        gp.assert_gradients(cost, params, grads, methd="central")


def test_check_answers_a_misspelt_option_as_assert_gradients_does(params):
    # gp.check's signature is explicit: Python's bare TypeError is answered with the
    # closest option, as every other entry point answers it
    with pytest.raises(gp.GradientSpecError, match=r"gp.check got .*'mdoe' .*'mode'"):
        gp.check(cost, params, grads, mdoe="full")
    with pytest.raises(TypeError):  # a missing argument is still Python's own error
        gp.check(cost, params)


@pytest.mark.parametrize("name", ["atol", "rtol"])
def test_a_drop_ins_tolerance_is_refused_alike_by_every_check(params, name):
    for entry in (gp.check, gp.assert_gradients):
        with pytest.raises(gp.GradientSpecError, match=f"got '{name}'.*take tol"):
            entry(cost, params, grads, **{name: 1e-3})


def test_a_masked_array_is_refused_rather_than_silently_unmasked():
    w = np.ma.masked_array(np.ones(3), mask=[0, 1, 0])
    with pytest.raises(gp.GradientSpecError, match=r"masked array.*\.filled\(\.\.\.\)"):
        gp.check(lambda p: float(np.sum(p**2)), w, 2 * np.ones(3))
    assert np.array_equal(w.mask, [0, 1, 0])  # (and left as it was)


def test_a_cost_beyond_float32s_range_raises_no_overflow_warning():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = gp.check(lambda p: float(np.sum(p**2)) * 1e39, np.ones(2), 2e39 * np.ones(2))
    assert report.passed


def test_a_cost_near_float64s_limit_is_refused_not_passed_on_overflowing_norms():
    w = np.array([1.0, 2.0])
    with pytest.raises(gp.CostError, match="Divide the cost by a constant"):
        gp.check(lambda p: float(np.sum(p**2)) * 1e300, w, 1.5 * 2e300 * w)
    assert np.array_equal(w, [1.0, 2.0])


def test_a_misspelt_argument_name_is_answered_and_positional_mistakes_keep_pythons_message(
    params,
):
    with pytest.raises(gp.GradientSpecError, match=r"'gradients' \(did you mean 'grads'\?\)"):
        gp.check(cost, params, gradients=grads)
    with pytest.raises(TypeError, match=r"check\(\) takes 3 positional arguments"):
        gp.check(cost, params, grads, 1e-7)
