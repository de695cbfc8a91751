"""gradproof.torch: autograd's gradients, custom Functions and modules, checked."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import gradproof as gp  # noqa: E402
import gradproof.torch as gpt  # noqa: E402
from gradproof import _policy  # noqa: E402
from gradproof.torch import _checker  # noqa: E402
from helpers import old_style_exp, tanh_function  # noqa: E402


class MulSin(torch.autograd.Function):
    """y = a * b + sin(a), with an optional planted bug in db."""

    bug = False
    generate_vmap_rule = True

    @staticmethod
    def forward(a, b):
        return a * b + torch.sin(a)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        return g * (b + torch.cos(a)), (2 if MulSin.bug else 1) * g * a


@pytest.fixture
def ab():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(3, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    b = torch.randn(3, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    return a, b


@pytest.mark.parametrize("bug", [False, True], ids=["correct", "db doubled"])
def test_custom_function_verdict_names_the_wrong_input(ab, bug, monkeypatch):
    monkeypatch.setattr(MulSin, "bug", bug)
    report = gpt.check(MulSin.apply, *ab)
    assert report.passed is not bug
    if bug:
        assert [t.name for t in report.failing] == ["input1"]
        assert report.tensors["input1"].pattern == "scale"
        assert "2.00 × numeric" in report.tensors["input1"].diagnosis
    assert not any("one by one" in w for w in report.warnings)  # generate_vmap_rule: batched


def test_old_style_function_falls_back_to_one_by_one(ab):
    Old = old_style_exp(torch)

    report = gpt.check(Old.apply, ab[0])
    assert report.passed
    # quick one by one: no line about it in the report (a drop-in's every message had one),
    # but the record says so
    assert not any("evaluations ran one by one" in w for w in report.warnings)
    assert "autograd.Function" in report.policy["unbatched"]


def test_a_slow_one_by_one_check_says_why_it_ran_one_by_one(ab, monkeypatch):
    Old = old_style_exp(torch)

    monkeypatch.setattr(_policy, "UNBATCHED_NOTE_SECONDS", 0.0)  # as if it had taken long
    report = gpt.check(Old.apply, ab[0])
    assert any("evaluations ran one by one" in w and "setup_context" in w for w in report.warnings)


def test_module_parameters_are_named_and_module_and_rng_left_intact():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(5, 6), torch.nn.Tanh(), torch.nn.Dropout(0.4), torch.nn.Linear(6, 3)
    )
    x = torch.randn(7, 5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng_before = torch.get_rng_state()
    report = gpt.check(model, x, loss=lambda out: out.pow(2).mean())
    assert report.passed, str(report)
    assert list(report.tensors) == ["0.weight", "0.bias", "3.weight", "3.bias"]
    assert any("float32" in w and "float64 copies" in w for w in report.warnings)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]) and v.dtype == before[k].dtype
    assert torch.equal(torch.get_rng_state(), rng_before)


def test_bfloat16_inputs_and_parameters_are_checked_on_float64_copies():
    # (NumPy has no bfloat16: the copies are widened first; torch's own gradcheck runs
    # its finite differences in bfloat16, where a right sin fails)
    torch.manual_seed(0)
    x = torch.randn(4, dtype=torch.bfloat16, requires_grad=True)
    before = x.detach().clone()
    report = gpt.check(lambda t: torch.sin(t).sum(), x)
    assert report.passed, str(report)
    assert any("bfloat16" in w and "float64 copies" in w for w in report.warnings)
    assert torch.equal(x.detach(), before) and x.dtype == torch.bfloat16
    slip = tanh_function(torch, slip=True)  # its backward: 1 - y for 1 - y**2
    wrong = gpt.check(lambda t: slip.apply(t).sum(), x)
    assert not wrong.passed and not wrong.tensors["input0"].passed
    model = torch.nn.Linear(3, 2).to(torch.bfloat16)
    report = gpt.check(model, torch.randn(5, 3, dtype=torch.bfloat16))
    assert report.passed, str(report)
    assert model.weight.dtype == torch.bfloat16


def test_batch_norm_buffers_are_not_touched():
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.ReLU())
    x = torch.randn(8, 3, dtype=torch.float64)
    model = model.double()
    stats = model[1].running_mean.clone()
    report = gpt.check(model, x)  # non-scalar output: a fixed random projection
    assert report.passed, str(report)
    assert report.tensors["0.bias"].passed  # exactly zero gradient through batch norm
    assert torch.equal(model[1].running_mean, stats)


def test_a_wrong_backward_in_a_module_is_named():
    class Square(torch.autograd.Function):
        @staticmethod
        def forward(x):
            return x * x

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.save_for_backward(inputs[0])

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return -2 * x * g  # sign flipped

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 2).double()

        def forward(self, x):
            return Square.apply(self.lin(x)).sum()

    torch.manual_seed(2)
    report = gpt.check(Net(), torch.randn(4, 3, dtype=torch.float64))
    assert {t.name for t in report.failing} == {"lin.weight", "lin.bias"}
    assert all(t.pattern == "sign" for t in report.failing)


def test_directional_mode_passes_correct_input_gradients(ab):
    report = gpt.check(lambda a, b: (a.tanh() * b).sum(), *ab, mode="directional")
    assert report.passed and report.mode == "directional"


def test_nothing_requires_grad_is_a_clear_error():
    with pytest.raises(ValueError, match="nothing to check"):
        gpt.check(lambda x: x.sum(), torch.ones(3))


def test_batched_and_one_by_one_give_the_same_verdict(ab, monkeypatch):
    f = lambda a, b: (a.sin() * b.cos()).sum()  # noqa: E731
    vm = gpt.check(f, *ab)
    assert not any("one by one" in w for w in vm.warnings)

    def no_vmap(*args, **kwargs):
        raise RuntimeError("vmap unavailable")

    monkeypatch.setattr(_checker.Checker, "_vmapped", no_vmap)  # forces the one-by-one path
    seq = gpt.check(f, *ab)
    assert seq.policy.get("unbatched") and "unbatched" not in vm.policy
    assert vm.passed and seq.passed, str(seq)
    for name in vm.tensors:
        np.testing.assert_allclose(vm.numerical[name], seq.numerical[name], rtol=1e-9, atol=1e-12)
    # Both differences compare with the same analytic gradient g; with numeric n and n + δ the
    # numerator and the denominator each move by at most ‖δ‖, so the differences differ by at
    # most ‖δ‖(1 + d)/(‖g‖ + ‖n + δ‖).
    a, b = (x.detach().numpy() for x in ab)
    g = np.concatenate([np.ravel(np.cos(a) * np.cos(b)), np.ravel(-np.sin(a) * np.sin(b))])
    n_vm, n_seq = (np.concatenate([np.ravel(r.numerical[k]) for k in r.tensors]) for r in (vm, seq))
    bound = (
        np.linalg.norm(n_vm - n_seq)
        * (1 + vm.difference)
        / (np.linalg.norm(g) + np.linalg.norm(n_seq))
    )
    assert abs(vm.difference - seq.difference) <= bound + 1e-12 * vm.difference


def test_directional_mode_passes_a_correct_relu_mlp_whatever_the_seed():
    """Random directions cross ReLU kinks; a doubtful direction is retried at a smaller step."""
    gen = torch.Generator().manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(784, 256),
        torch.nn.ReLU(),
        torch.nn.Linear(256, 128),
        torch.nn.ReLU(),
        torch.nn.Linear(128, 10),
    ).double()
    x = torch.randn(32, 784, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 10, (32,), generator=gen)
    for seed in range(3):
        report = gpt.check(
            model,
            x,
            loss=lambda o: torch.nn.functional.cross_entropy(o, y),
            mode="directional",
            seed=seed,
        )
        assert report.passed, str(report)


def test_plain_check_accepts_a_cost_returning_a_torch_scalar():
    import gradproof as gp

    w = np.array([0.5, -1.5])
    report = gp.check(lambda p: torch.tensor(p, dtype=torch.float64).pow(2).sum(), w, 2 * w)
    assert report.passed
    with pytest.raises(gp.CostError, match="of size 2"):
        gp.check(lambda p: torch.tensor(p), w, 2 * w)


def test_a_list_of_inputs_or_a_numpy_input_gets_the_fix_not_nothing_to_check():
    a = torch.ones(3, dtype=torch.float64, requires_grad=True)
    b = torch.ones(3, dtype=torch.float64, requires_grad=True)
    with pytest.raises(gp.GradientSpecError, match=r"write gpt.check\(f, \*tensors\)"):
        gpt.check(lambda x, y: (x * y).sum(), [a, b])
    with pytest.raises(gp.GradientSpecError, match="is a NumPy array"):
        gpt.check(lambda x: x.sum(), np.ones(3))
