"""Deliberately broken gradients: each fails, names the right parameter, and says why."""

import numpy as np
import pytest

import gradproof as gp
from helpers import CATALOGUE, TwoLayerNet


@pytest.mark.parametrize(
    ("bug", "wrong", "pattern", "words"), CATALOGUE, ids=[c[0] for c in CATALOGUE]
)
def test_planted_bug_is_caught_and_diagnosed(net, bug, wrong, pattern, words):
    report = gp.check(net.cost, net.params, net.backward(net.params, bug=bug))
    assert not report.passed
    assert {t.name for t in report.failing} == wrong
    for name in wrong:
        tensor = report.tensors[name]
        assert tensor.pattern == pattern, tensor.diagnosis
        assert words in tensor.diagnosis
        assert name in str(report).splitlines()[1]


def test_one_element_wrong_is_located(net):
    report = gp.check(net.cost, net.params, net.backward(net.params, bug="one element wrong"))
    w1 = report.tensors["W1"]
    assert w1.worst_index == (2, 1)
    assert w1.wrong == 1 and w1.wrong_indices == ((2, 1),)


def test_wrong_activation_derivative_blames_first_layer(net):
    report = gp.check(
        net.cost, net.params, net.backward(net.params, bug="wrong activation derivative")
    )
    assert {t.name for t in report.failing} == {"W1", "b1"}
    assert all(t.diagnosis for t in report.failing)


def test_forgotten_dropout_mask_is_diagnosed(global_rng):
    net = TwoLayerNet(keep_prob=0.5, seed=3, m=1)
    state = np.random.get_state()
    grads = net.backward(net.params, bug="dropout mask forgotten")
    np.random.set_state(state)  # the check replays this state for cost and grads alike
    report = gp.check(net.cost, net.params, grads)
    assert {t.name for t in report.failing} == {"W1", "b1"}
    assert report.tensors["W1"].pattern == "unmasked"
    assert "mask forgotten" in report.tensors["W1"].diagnosis


def test_correct_dropout_passes_because_masks_are_replayed(global_rng):
    net = TwoLayerNet(keep_prob=0.5, seed=3)
    report = gp.check(net.cost, net.params, lambda p: net.backward(p))
    assert report.passed, str(report)
    assert report.deterministic


def test_correct_network_passes_at_defaults(net):
    report = gp.check(net.cost, net.params, net.backward(net.params))
    assert report.passed, str(report)
    assert report.difference < 1e-8
    assert report.warnings == []


@pytest.mark.parametrize("method", ["central", "forward", "backward", "richardson"])
def test_each_method_passes_correct_code_and_fails_a_stray_factor(net, method):
    # At its default step a one-sided difference is good to about sqrt(machine eps) ~ 1.5e-8
    # (measured: 2.0e-8 on this network), so every method passes at the default tol of 1e-7.
    good = gp.check(net.cost, net.params, net.backward(net.params), method=method)
    assert good.passed, str(good)
    bad = gp.check(net.cost, net.params, net.backward(net.params, "stray factor"), method=method)
    assert {t.name for t in bad.failing} == {"W1"}
