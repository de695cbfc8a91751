"""The public surface: grads forms, names, report records, helpers."""

import json

import numpy as np
import pytest

import gradproof as gp
from gradproof import nn


@pytest.fixture
def problem():
    rng = np.random.default_rng(2)
    params = {"W1": rng.standard_normal((3, 2)), "b1": rng.standard_normal((3, 1))}
    x = rng.standard_normal((2, 4))

    def cost(p):
        return float(np.sum(np.tanh(p["W1"] @ x + p["b1"])))

    def grads(p):
        d = 1 - np.tanh(p["W1"] @ x + p["b1"]) ** 2
        return {"W1": d @ x.T, "b1": d.sum(axis=1, keepdims=True)}

    return params, cost, grads


@pytest.mark.parametrize("module", [gp, nn], ids=["gradproof", "gradproof.nn"])
def test_every_name_in_all_exists(module):
    assert module.__all__, "__all__ is empty"
    assert len(set(module.__all__)) == len(module.__all__), "__all__ lists a name twice"
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert missing == []


def test_documented_names_are_public():
    # The names API.md promises; every other name is covered by the test above.
    documented = {
        "check",
        "Report",
        "TensorReport",
        "assert_gradients",
        "GradientError",
        "GradientSpecError",
        "numerical_gradient",
        "derivative",
        "flatten",
    }
    assert documented <= set(gp.__all__)


def test_gradient_error_is_an_assertion_error_and_spec_error_a_value_error():
    assert issubclass(gp.GradientError, AssertionError)
    assert issubclass(gp.GradientSpecError, ValueError)


@pytest.mark.parametrize("form", ["same structure", "d-prefixed", "callable"])
def test_each_form_of_grads_is_accepted(problem, form):
    params, cost, grads = problem
    g = grads(params)
    given = {
        "same structure": g,
        "d-prefixed": {"d" + k: v for k, v in g.items()},
        "callable": grads,
    }[form]
    assert gp.check(cost, params, given).passed


def test_cost_may_return_a_tuple_or_size_one_array(problem):
    params, cost, grads = problem
    assert gp.check(lambda p: (cost(p), "cache"), params, grads).passed
    assert gp.check(lambda p: np.array([[cost(p)]]), params, grads).passed


def test_nested_leaves_are_named_by_path():
    params = {"layers": [{"W": np.ones((2, 2)), "b": np.zeros(2)}, {"W": np.ones((1, 2))}]}
    cost = lambda p: sum(float(np.sum(layer["W"] ** 2)) for layer in p["layers"])  # noqa: E731
    grads = {"layers": [{"W": 2 * np.ones((2, 2)), "b": np.zeros(2)}, {"W": 2 * np.ones((1, 2))}]}
    report = gp.check(cost, params, grads)
    assert list(report.tensors) == ["layers.0.W", "layers.0.b", "layers.1.W"]
    assert report.passed


def test_tensor_report_describes_a_sign_flipped_parameter(problem):
    params, cost, grads = problem
    g = grads(params)
    g["W1"] = -g["W1"]
    t = gp.check(cost, params, g).tensors["W1"]
    assert (t.name, t.shape, t.passed, t.checked) == ("W1", (3, 2), False, 6)
    assert t.scale == pytest.approx(-1.0, rel=1e-6)
    assert t.pattern == "sign" and "flipped sign in dW1" in t.diagnosis
    assert len(t.worst_index) == 2 and t.max_abs_error > 0


def test_report_reads_failing_first_and_serializes(problem):
    params, cost, grads = problem
    g = grads(params)
    g["b1"] = 2 * g["b1"]
    report = gp.check(cost, params, g)
    text = str(report)
    lines = text.splitlines()
    assert lines[0].startswith("Gradient check failed: 1 of 2 parameters wrong")
    assert lines[1].lstrip().startswith("b1")
    assert "likely cause: a stray constant factor in db1" in text
    data = json.loads(report.to_json())
    assert data["passed"] is False and data["tensors"][1]["scale"] == pytest.approx(2.0)
    assert "<table>" in report._repr_html_() and "b1" in report._repr_html_()
    assert report.evaluations >= 2 * 9
    assert isinstance(report.numerical["W1"], np.ndarray) and report.numerical["W1"].shape == (3, 2)


def test_assert_gradients_raises_with_the_table(problem):
    params, cost, grads = problem
    assert gp.assert_gradients(cost, params, grads).passed
    g = grads(params)
    g["W1"] = g["W1"] * 0.5
    with pytest.raises(gp.GradientError) as info:
        gp.assert_gradients(cost, params, g)
    assert "W1" in str(info.value) and "0.50 × numeric" in str(info.value)
    assert info.value.report.failing[0].name == "W1"


def test_derivative_refuses_arrays():
    with pytest.raises(gp.GradientSpecError, match="numerical_gradient"):
        gp.derivative(lambda x: x, np.ones(3))


def test_flatten_orders_leaves_and_unflatten_restores_shapes():
    params = {"W": np.arange(6.0).reshape(2, 3), "b": np.array([7.0]), "s": 8.0}
    v, unflatten = gp.flatten(params)
    np.testing.assert_array_equal(v, [0, 1, 2, 3, 4, 5, 7, 8])
    back = unflatten(v * 2)
    assert back["W"].shape == (2, 3) and back["s"] == 16.0
    with pytest.raises(gp.GradientSpecError, match="1-d vector of 8 elements"):
        unflatten(np.ones(3))


@pytest.mark.parametrize(
    "bad", [0, -2, True, "four", object()], ids=["zero", "negative", "bool", "str", "object"]
)
def test_bad_executor_is_refused_with_the_accepted_values(problem, bad):
    params, cost, grads = problem
    with pytest.raises(gp.GradientSpecError, match="executor must be None"):
        gp.check(cost, params, grads, executor=bad)


def test_progress_bar_draws_when_forced(problem, capsys):
    params, cost, grads = problem
    gp.check(cost, params, grads, progress=True)
    err = capsys.readouterr().err
    assert "gradproof [" in err and "9/9" in err


def test_sample_mode_checks_k_coordinates_reproducibly():
    rng = np.random.default_rng(5)
    w = {"A": rng.standard_normal((40, 30)), "v": rng.standard_normal(5)}
    cost = lambda p: float(np.sum(np.sin(p["A"])) + np.sum(p["v"] ** 2))  # noqa: E731
    grads = {"A": np.cos(w["A"]), "v": 2 * w["v"]}
    report = gp.check(cost, w, grads, mode="sample", k=20, seed=3)
    assert report.passed and report.mode == "sample" and report.numerical is None
    assert report.tensors["A"].checked == 20 and report.tensors["v"].checked == 5
    assert report.evaluations < 2 * 25 + 30
    again = gp.check(cost, w, grads, mode="sample", k=20, seed=3)
    assert again.difference == report.difference
    assert report.policy["k"] == 20 and report.policy["seed"] == 3


def test_sample_mode_locates_a_sampled_wrong_element():
    rng = np.random.default_rng(6)
    w = rng.standard_normal((30, 30))
    grads = np.cos(w)
    grads[:, 7] *= 3.0  # a whole column wrong: about 10 of 300 samples meet it
    report = gp.check(lambda p: float(np.sum(np.sin(p))), w, grads, mode="sample", k=300)
    t = report.tensors["theta"]
    assert not t.passed and t.pattern == "column" and "column 7" in t.diagnosis
    assert all(index[1] == 7 for index in t.wrong_indices)


def test_an_empty_parameter_beside_others_is_checked_as_nothing():
    params = {"W": np.ones((2, 2)), "unused": np.zeros((0, 3))}
    report = gp.check(
        lambda p: float(np.sum(p["W"] ** 2)),
        params,
        {"W": 2 * np.ones((2, 2)), "unused": np.zeros((0, 3))},
    )
    assert report.passed and report.tensors["unused"].checked == 0


def test_progress_bar_stays_off_in_ci_and_when_refused(problem, capsys, monkeypatch):
    params, cost, grads = problem
    monkeypatch.setenv("CI", "true")
    gp.check(cost, params, grads)  # progress=None: only on a terminal, never in CI
    gp.check(cost, params, grads, progress=False)
    assert capsys.readouterr().err == ""
