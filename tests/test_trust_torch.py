"""PyTorch's own awkward gradients: ZeroTensors, -inf inputs, empty and unused inputs."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
import gradproof as gp  # noqa: E402
import gradproof.torch as gpt  # noqa: E402


def x64(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).requires_grad_(True)


def test_sgn_whose_gradient_is_a_zero_tensor_passes():
    report = gpt.check(torch.sgn, x64(5))
    assert report.passed, str(report)


def test_masked_softmax_with_minus_inf_inputs_passes_and_says_what_was_left_out():
    x = x64(4, 5).detach()
    x[:, 1] = -torch.inf
    report = gpt.check(lambda t: torch.softmax(t, dim=1), x.requires_grad_(True))
    assert report.passed, str(report)
    assert any("4 elements are not finite (-inf)" in w for w in report.warnings)


def test_an_input_with_no_elements_is_zero_coordinates():
    report = gpt.check(lambda a, b: a.sum() + (b**2).sum(), x64(0, 3), x64(4))
    assert report.passed and report.tensors["input0"].checked == 0


def test_an_input_that_does_not_reach_the_output_has_zero_gradient():
    report = gpt.check(lambda a, b: (a**2).sum(), x64(3), x64(2, seed=1))
    assert report.passed and report.tensors["input1"].max_abs_error == 0.0


def test_a_users_own_exception_is_not_mistaken_for_a_batching_failure():
    class Timeout(Exception):
        pass

    calls = {"n": 0}

    def fn(t):
        calls["n"] += 1
        if calls["n"] > 3:  # analytic gradient, and the two evaluations at the check point
            raise Timeout("budget spent")
        return (t**2).sum()

    with pytest.raises(gp.CostError, match=r"raised Timeout .*: budget spent") as info:
        gpt.check(fn, x64(4))
    assert isinstance(info.value.__cause__, Timeout)


def test_a_custom_function_without_vmap_support_runs_one_by_one_and_says_why():
    class Square(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x**2

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return 2 * x * g

    report = gpt.check(lambda t: Square.apply(t).sum(), x64(6))
    assert report.passed
    assert "autograd.Function" in report.policy["unbatched"]


@pytest.mark.parametrize("mode", ["full", "directional"])
def test_an_infinite_autograd_gradient_is_a_named_finding_not_a_refusal(mode):
    x = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64, requires_grad=True)
    e = torch.tensor([0.5, 1.5, 2.0], dtype=torch.float64)
    report = gpt.check(lambda b: torch.pow(b, e), x, mode=mode)
    t = report.tensors["input0"]
    assert not report.passed and t.pattern == "nonfinite" and t.wrong_indices[0] == (0,)
    assert "not finite at 1 element (first: input0[0])" in t.finding


def test_an_input_viewing_a_larger_storage_keeps_its_layout_for_as_strided():
    base = torch.randn(20, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    x = base.clone()[10:].requires_grad_(True)
    fn = lambda t: torch.as_strided(t, (2, 2), (1, 2), 10)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,))
    assert gpt.check(fn, x).passed


def test_a_torch_error_only_under_vmap_falls_back_one_by_one():
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64).requires_grad_(True)
    report = gpt.check(lambda t: t.to(memory_format=torch.channels_last).sin(), x)
    assert report.passed
    assert report.policy.get("unbatched")


def test_a_module_that_registers_one_submodule_twice_is_left_intact():
    lin = torch.nn.Linear(2, 2).double()
    model = torch.nn.Sequential(lin, torch.nn.Tanh(), lin)
    report = gpt.check(model, torch.randn(3, 2, dtype=torch.float64))
    assert report.passed
    assert isinstance(model[0].weight, torch.nn.Parameter) and model[0].weight.requires_grad


def test_frozen_parameters_run_in_float64_and_are_not_checked():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    model[0].requires_grad_(False)
    report = gpt.check(model, torch.randn(5, 3))
    assert report.passed and set(report.tensors) == {"2.weight", "2.bias"}


def test_forward_and_reverse_agree_on_gradients_that_are_zero_and_under_dropout():
    bn = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4)).double()
    assert gpt.check(bn, torch.randn(6, 3, dtype=torch.float64), modes=("rev", "fwd")).passed
    drop = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Dropout(0.5)).double()
    x = torch.randn(5, 3, dtype=torch.float64)
    state = torch.get_rng_state()
    assert gpt.check(drop, x, modes=("rev", "fwd")).passed
    assert torch.equal(state, torch.get_rng_state())


def test_second_order_of_a_constant_function_is_zero_within_roundoff():
    # corrcoef of one variable is the constant 1: autograd's gradient is round-off (~1e-17),
    # so the cost checked at order 2, <grad f, w>, is round-off through and through and
    # looks kinked at every coordinate. Its noise is measured all the same: no false alarm.
    # (PyTorch's own OpInfo sample, where this was a false alarm)
    x = torch.tensor(
        [-4.826984902407649, -7.582430495695129], dtype=torch.float64, requires_grad=True
    )
    report = gpt.check(lambda t: -0.40672114905200046 * torch.corrcoef(t), x, order=2)
    assert report.passed, report
    assert report.tensors["input0 [order 2]"].difference == 0


def test_second_order_of_a_saturated_logcumsumexp_is_not_a_false_alarm():
    # PyTorch's own OpInfo sample: a 1e4 leads each column, so later terms get weight
    # exp(-1e4) = 0 and the Hessian is 0; autograd's double backward returns round-off
    # of u * 1e4. The order-2 cost <grad f, w> sums terms of size 1, its round-off too.
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 4, 3, generator=g, dtype=torch.float64)
    x[0] = 1e4
    w = torch.randn(5, 4, 3, generator=g, dtype=torch.float64)
    report = gpt.check(lambda t: (torch.logcumsumexp(t, 0) * w).sum(), x.requires_grad_(), order=2)
    assert report.passed, report


def test_a_tie_in_a_max_pool_after_a_relu_is_a_kink_in_directional_mode_too():
    # exact zeros from a ReLU tie in a pooling window: the right backward picks one of
    # them, a one-sided slope; full mode calls that a kink, and so does directional mode
    torch.manual_seed(0)
    x = torch.relu(torch.randn(4, 1, 8, dtype=torch.float64)).requires_grad_(True)
    pool = torch.nn.MaxPool1d(2)
    assert gpt.check(pool, x).passed
    report = gpt.check(pool, x, mode="directional")
    assert report.passed and report.tensors["input0"].kinks, report
    assert gpt.gradcheck(pool, (x,), fast_mode=True)
