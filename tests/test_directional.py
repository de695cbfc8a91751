"""mode="directional" and mode="auto": random directions that still say what is wrong."""

import numpy as np
import pytest

import gradproof as gp
from gradproof import _policy
from helpers import CATALOGUE, snapshot

# bug (None: the correct backward) -> the parameters that must fail
WRONG = {
    None: set(),
    **{bug: wrong for bug, wrong, *_ in CATALOGUE},
    "wrong activation derivative": {"W1", "b1"},
}


@pytest.mark.parametrize("bug", list(WRONG), ids=[bug or "correct" for bug in WRONG])
def test_directional_agrees_with_full_mode_on_the_catalogue(net, bug):
    grads = net.backward(net.params, bug=bug)
    full = gp.check(net.cost, net.params, grads)
    directional = gp.check(net.cost, net.params, grads, mode="directional")
    assert full.passed is (bug is None), str(full)
    assert directional.passed is (bug is None), str(directional)
    assert {t.name for t in full.failing} == WRONG[bug]
    assert {t.name for t in directional.failing} == WRONG[bug]
    assert directional.numerical is None and directional.mode == "directional"


def test_stray_factor_is_diagnosed_along_directions(net):
    report = gp.check(
        net.cost, net.params, net.backward(net.params, "stray factor"), mode="directional"
    )
    w1 = report.tensors["W1"]
    assert w1.pattern == "scale" and w1.scale == pytest.approx(3.0, rel=1e-6)
    assert "3.00 × numeric along all 3 random directions" in w1.diagnosis
    assert w1.checked == 3  # the default: more only where a direction is in doubt


def test_single_wrong_element_is_localized_by_bisection():
    rng = np.random.default_rng(3)
    w = {"W": rng.standard_normal((200, 300)), "b": rng.standard_normal(7)}
    cost = lambda p: float(np.sum(np.sin(p["W"])) + np.sum(p["b"] ** 2))  # noqa: E731
    grads = {"W": np.cos(w["W"]), "b": 2 * w["b"]}
    grads["W"][123, 45] += 1e-3
    report = gp.check(cost, w, grads, mode="directional")
    t = report.tensors["W"]
    assert [x.name for x in report.failing] == ["W"]
    assert t.worst_index == (123, 45) and t.wrong_indices == ((123, 45),)
    assert t.pattern == "few" and "W[123, 45]" in t.diagnosis
    assert t.max_abs_error == pytest.approx(1e-3, rel=1e-3)
    # 2 per direction, and about 2 log2(60000) for the bisection
    assert report.evaluations < 2 * 8 * 2 + 2 * 40 + 60


def test_relu_network_with_many_kinks_passes():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 16))
    labels = rng.integers(10, size=16)
    p = {"W1": rng.standard_normal((128, 64)) / 8, "W2": rng.standard_normal((10, 128)) / 11}

    def forward(q):
        Z1 = q["W1"] @ X
        A1 = np.maximum(Z1, 0)
        Z2 = q["W2"] @ A1
        Z2 = Z2 - Z2.max(axis=0)
        P = np.exp(Z2) / np.exp(Z2).sum(axis=0)
        return -np.mean(np.log(P[labels, np.arange(16)])), (Z1, A1, P)

    _, (Z1, A1, P) = forward(p)
    dZ2 = P.copy()
    dZ2[labels, np.arange(16)] -= 1
    dZ2 /= 16
    grads = {"W2": dZ2 @ A1.T, "W1": ((p["W2"].T @ dZ2) * (Z1 > 0)) @ X.T}
    report = gp.check(lambda q: forward(q)[0], p, grads, mode="directional", k=16)
    assert report.passed, str(report)


def test_directional_is_reproducible_and_leaves_params_intact(net):
    grads = net.backward(net.params)
    before = snapshot(net.params)
    a = gp.check(net.cost, net.params, grads, mode="directional", seed=4)
    b = gp.check(net.cost, net.params, grads, mode="directional", seed=4)
    assert a.difference == b.difference and a.evaluations == b.evaluations
    assert snapshot(net.params) == before


def test_directional_refuses_one_sided_differences(net):
    with pytest.raises(gp.GradientSpecError, match="mode='directional' uses central differences"):
        gp.check(
            net.cost, net.params, net.backward(net.params), mode="directional", method="forward"
        )


def test_cost_raising_during_a_direction_names_the_parameter(net):
    x0 = net.params["W2"].copy()

    def fragile(p):
        if not np.array_equal(p["W2"], x0):
            raise FloatingPointError("overflow")
        return net.cost(p)

    before = snapshot(net.params)
    with pytest.raises(gp.CostError, match="while W2 was moved along a random direction") as info:
        gp.check(fragile, net.params, net.backward(net.params), mode="directional")
    assert isinstance(info.value.__cause__, FloatingPointError)
    assert snapshot(net.params) == before


def test_auto_picks_full_when_affordable_and_says_so(net):
    report = gp.check(net.cost, net.params, net.backward(net.params), mode="auto")
    assert report.mode == "full" and report.policy["auto"].startswith("chose full")


def test_auto_picks_directional_when_full_would_be_slow(net, monkeypatch):
    monkeypatch.setattr(_policy, "AUTO_FULL_SECONDS", 0.0)
    report = gp.check(net.cost, net.params, net.backward(net.params, "sign flip"), mode="auto")
    assert report.mode == "directional" and "chose directional" in report.policy["auto"]
    assert [t.name for t in report.failing] == ["b2"]


def test_directional_report_states_its_confidence(net):
    report = gp.check(net.cost, net.params, net.backward(net.params), mode="directional", k=4)
    assert "goes unseen with probability" in report.policy["confidence"]
    assert "confidence: 4 random directions" in str(report)
    assert report.warnings == []
    assert all(t.checked == 4 for t in report.tensors.values())


@pytest.mark.parametrize("seed", range(6))
def test_a_correct_relu_network_passes_whatever_kinks_its_directions_cross(seed):
    from gradproof import nn

    rng = np.random.default_rng(seed)
    X, Y = rng.standard_normal((40, 16)), (rng.random((1, 16)) > 0.5).astype(float)
    params = nn.initialize_parameters([40, 30, 20, 1], seed=seed)
    AL, caches = nn.L_model_forward(X, params, "relu")
    grads = nn.L_model_backward(AL, Y, caches, "relu")
    cost = lambda p: nn.compute_cost(nn.L_model_forward(X, p, "relu")[0], Y)  # noqa: E731
    report = gp.check(cost, params, grads, mode="directional", seed=seed)
    assert report.passed, str(report)


@pytest.mark.parametrize(("factor", "passes"), [(1.0, True), (1.5, False)], ids=["right", "x1.5"])
def test_a_cost_with_float32_inside_is_still_resolved_along_directions(factor, passes):
    w = np.random.default_rng(0).standard_normal(200)
    cost = lambda p: float(np.sum(np.tanh(p.astype(np.float32))))  # noqa: E731
    report = gp.check(cost, w, factor * (1 - np.tanh(w) ** 2), mode="directional")
    assert report.passed is passes, str(report)
