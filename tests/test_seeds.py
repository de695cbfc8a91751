"""The figures of the seed documents, reproduced."""

import numpy as np
import pytest

import gradproof as gp
from gradproof.examples import backward_propagation_n, forward_propagation_n, seed_case


@pytest.fixture
def seed():
    X, Y, parameters = seed_case()
    _, cache = forward_propagation_n(X, Y, parameters)
    cost = lambda p: forward_propagation_n(X, Y, p)  # noqa: E731  (seed-style (cost, cache))
    return X, Y, parameters, cache, cost


def test_derivatives_of_x_squared_reproduce_the_seed_figures():
    assert gp.derivative(lambda x: x**2, 3.0, eps=1e-2) == pytest.approx(
        5.999999999999872, rel=1e-14
    )
    forward = gp.derivative(lambda x: x**2, 3.0, method="forward", eps=1e-2)
    assert forward == pytest.approx(6.009999999999849, rel=1e-14)


def test_one_dimensional_check_passes_with_the_seed_difference():
    x = 2
    report = gp.check(lambda theta: theta * x, 4, lambda theta: x, eps=1e-7)
    assert report.passed
    # Plain float arithmetic, no BLAS: the seed's printed figure, to its 12 digits.
    assert report.difference == pytest.approx(2.91933588329e-10, rel=1e-9)


def test_planted_bug_is_found_with_its_factors(seed):
    X, Y, parameters, cache, cost = seed
    grads = backward_propagation_n(X, Y, cache, buggy=True)
    report = gp.check(cost, parameters, grads, eps=1e-7)
    assert not report.passed
    assert report.difference == pytest.approx(0.2850931567761623, rel=1e-9)
    assert {t.name for t in report.failing} == {"W2", "b1"}
    assert report.tensors["W2"].scale == pytest.approx(2.0, rel=1e-6)
    assert report.tensors["b1"].scale == pytest.approx(4.0, rel=1e-6)
    for name, factor in (("W2", "2.00"), ("b1", "4.00")):
        assert report.tensors[name].pattern == "scale"
        assert f"{factor} × numeric" in report.tensors[name].diagnosis
        assert "stray constant factor" in report.tensors[name].diagnosis


def test_round_off_at_the_seed_step_blames_no_parameter(seed):
    X, Y, parameters, cache, cost = seed
    buggy = gp.check(cost, parameters, backward_propagation_n(X, Y, cache, buggy=True), eps=1e-7)
    # W1 and b3 alone exceed 1e-7 from round-off at this step, yet are right.
    assert buggy.tensors["W1"].difference > 1e-7
    assert buggy.tensors["b3"].difference > 1e-7
    assert buggy.tensors["W1"].passed and buggy.tensors["b3"].passed


def test_fixed_backward_at_the_seed_step_reproduces_the_seed_difference(seed):
    X, Y, parameters, cache, cost = seed
    report = gp.check(cost, parameters, backward_propagation_n(X, Y, cache), eps=1e-7)
    # Pure round-off at this step: one ulp more or less in the cost moves it by about 0.5%,
    # so a BLAS that rounds differently may; the seeds' own check allows 8%.
    assert report.difference == pytest.approx(1.1890913024229996e-07, rel=1e-2)
    assert report.failing == [] and report.passed and not report.strict
    assert str(report).startswith(
        "Gradient check passed: 6 parameters, 47 coordinates checked; difference 1.19e-07 is "
        "above tol 1e-07 only through the finite differences' own error at eps=1e-07; "
        "eps=None (automatic steps) gives a smaller one"
    )


def test_fixed_backward_passes_at_default_settings(seed):
    X, Y, parameters, cache, cost = seed
    report = gp.check(cost, parameters, backward_propagation_n(X, Y, cache))
    assert report.passed
    assert report.difference <= 1e-8


def test_seed_case_leaves_global_rng_alone():
    state = np.random.get_state()
    seed_case()
    assert np.array_equal(np.random.get_state()[1], state[1])
