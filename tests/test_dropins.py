"""gradproof.torch.gradcheck / gradgradcheck and gradproof.jax.check_grads as drop-ins.

PyTorch's own gradcheck call patterns run through both tools: the same verdict
on correct code, and gradproof's named diagnosis on wrong code.
"""

from __future__ import annotations

import numpy as np
import pytest

import gradproof as gp

torch = pytest.importorskip("torch")
import gradproof.torch as gpt  # noqa: E402
from gradproof.torch import _checker  # noqa: E402
from helpers import old_style_exp  # noqa: E402

GradcheckError = __import__("importlib").import_module("torch.autograd.gradcheck").GradcheckError


def x64(*shape, seed=0, grad=True):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).requires_grad_(grad)


def scaled(factor: float = 1.0, second: bool = True):
    """x ↦ x³ as a custom Function; its backward off by ``factor``, or not differentiable."""

    class Cube(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, power):
            ctx.save_for_backward(x)
            ctx.save_for_forward(x)
            ctx.power = power
            return x**power

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            base = x if second else x.detach()
            return factor * ctx.power * base ** (ctx.power - 1) * g, None

        @staticmethod
        def jvp(ctx, t, _):
            (x,) = ctx.saved_tensors
            return ctx.power * x ** (ctx.power - 1) * t

    return Cube


PATTERNS = {
    "tuple of inputs": (lambda a, b: a @ b, (x64(3, 4), x64(4, 2, seed=1))),
    "non-tensor argument": (lambda a, dim: torch.softmax(a, dim), (x64(3, 5), 1)),
    "functional call": (
        lambda x, w, b: torch.nn.functional.linear(x, w, b).tanh(),
        (x64(4, 3), x64(2, 3, seed=1), x64(2, seed=2)),
    ),
    "custom Function": (lambda x: scaled().apply(x, 3), (x64(5),)),
    "tuple of outputs": (lambda x: (x.sin(), x.cos() * 2), (x64(4),)),
}


@pytest.mark.parametrize("pattern", PATTERNS, ids=list(PATTERNS))
def test_correct_code_passes_both_gradchecks(pattern):
    fn, inputs = PATTERNS[pattern]
    assert torch.autograd.gradcheck(fn, inputs)
    assert gpt.gradcheck(fn, inputs) is True


@pytest.mark.parametrize("pattern", PATTERNS, ids=list(PATTERNS))
def test_correct_code_passes_both_gradgradchecks(pattern):
    fn, inputs = PATTERNS[pattern]
    assert torch.autograd.gradgradcheck(fn, inputs)
    assert gpt.gradgradcheck(fn, inputs) is True


def test_a_wrong_backward_raises_torchs_error_with_gradproofs_report():
    fn = scaled(factor=1.5).apply
    x = x64(5)
    with pytest.raises(GradcheckError):
        torch.autograd.gradcheck(lambda t: fn(t, 3), (x,))
    with pytest.raises(GradcheckError) as info:
        gpt.gradcheck(lambda t: fn(t, 3), (x,))
    assert isinstance(info.value, gp.GradientError)
    assert "input0" in str(info.value) and "analytic = 1.50 × numeric" in str(info.value)
    assert gpt.gradcheck(lambda t: fn(t, 3), (x,), raise_exception=False) is False


def test_a_wrong_jvp_is_named_with_its_mode():
    class BadJvp(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_forward(x)
            ctx.save_for_backward(x)
            return x.exp()

        @staticmethod
        def backward(ctx, g):
            return ctx.saved_tensors[0].exp() * g

        @staticmethod
        def jvp(ctx, t):
            return 2 * ctx.saved_tensors[0].exp() * t

    x = x64(4)
    assert gpt.gradcheck(BadJvp.apply, (x,))  # the backward alone is right
    with pytest.raises(gp.GradientError) as info:
        gpt.gradcheck(BadJvp.apply, (x,), check_forward_ad=True)
    report = info.value.report
    assert not report.tensors["input0 [fwd]"].passed and report.tensors["input0"].passed
    assert report.tensors["input0 [fwd vs rev]"].pattern == "modes"


def test_forward_mode_is_batched_where_vmap_can_and_still_finds_a_wrong_jvp(monkeypatch):
    alone = []  # the tangents run one by one, each a forward pass of its own
    one_by_one = _checker.Checker._forward_mode_one_by_one

    def spy(self, name, elements):
        alone.append(len(elements))
        return one_by_one(self, name, elements)

    monkeypatch.setattr(_checker.Checker, "_forward_mode_one_by_one", spy)
    x = x64(300)
    assert gpt.check(lambda x: (x.sin() * x).sum(), x, modes=("fwd",)).passed
    assert alone == [1]  # only the first tangent, run alone to confirm the batched ones

    class OneElementOff(torch.autograd.Function):
        generate_vmap_rule = True  # batched under vmap, jvp included

        @staticmethod
        def forward(x):
            return x.exp()

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.save_for_forward(*inputs)
            ctx.save_for_backward(*inputs)

        @staticmethod
        def backward(ctx, g):
            return ctx.saved_tensors[0].exp() * g

        @staticmethod
        def jvp(ctx, t):
            scale = torch.ones(300, dtype=torch.float64)
            scale[7] = 1.01
            return ctx.saved_tensors[0].exp() * scale * t

    report = gpt.check(OneElementOff.apply, x, modes=("fwd", "rev"))
    wrong = report.tensors["input0 [fwd]"]
    assert not wrong.passed and wrong.wrong_indices == ((7,),)
    assert report.tensors["input0"].passed


def test_a_derivative_that_raises_is_a_finding_naming_it_and_its_order():
    class Boom(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x.exp()

        @staticmethod
        def backward(ctx, g):
            return Twice.apply(ctx.saved_tensors[0], g)

    class Twice(torch.autograd.Function):  # the backward's own backward raises
        @staticmethod
        def forward(ctx, x, g):
            return x.exp() * g

        @staticmethod
        def backward(ctx, h):
            raise RuntimeError("no second derivative here")

    x = x64(4)
    report = gpt.check(Boom.apply, x, order=2)
    assert report.tensors["input0"].passed
    second = report.tensors["input0 [order 2]"]
    assert not second.passed and second.pattern == "raised"
    assert "the double backward raised RuntimeError: no second derivative here" in str(report)
    assert not gpt.gradgradcheck(Boom.apply, (x,), raise_exception=False)

    class Broken(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.exp()

        @staticmethod
        def backward(ctx, g):
            raise ValueError("a bug in my backward")

    report = gpt.check(Broken.apply, x)
    assert not report.passed and report.tensors["input0"].pattern == "raised"
    assert "the backward raised ValueError: a bug in my backward" in str(report)


def test_a_derivative_torch_does_not_implement_says_what_to_check_instead():
    x = x64(3).abs() + 2
    with pytest.raises(gp.GradientSpecError, match=r"forward-mode AD .* modes=\('rev',\)"):
        gpt.check(torch.special.zeta, x, torch.tensor(2.0, dtype=torch.float64), modes=("fwd",))


def test_a_backward_that_is_not_differentiable_fails_at_order_two():
    fn = scaled(second=False).apply
    x = x64(5)
    assert gpt.gradcheck(lambda t: fn(t, 3), (x,))
    with pytest.raises(gp.GradientError) as info:
        gpt.gradgradcheck(lambda t: fn(t, 3), (x,))
    t = info.value.report.tensors["input0 [order 2]"]
    assert not t.passed and "first derivative is a constant" in t.cause


def test_gradgradcheck_uses_the_given_grad_outputs():
    x = x64(3)
    g = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    assert gpt.gradgradcheck(lambda t: t**3, (x,), (g,))


def test_explicit_tolerances_are_honoured_as_an_extra_bound():
    fn = scaled(factor=1.0 + 1e-4).apply
    x = x64(5)
    assert gpt.gradcheck(lambda t: fn(t, 3), (x,), raise_exception=False) is False
    assert gpt.gradcheck(lambda t: fn(t, 3), (x,), atol=1e-3, rtol=1e-3)


def test_a_non_reentrant_backward_is_reported_as_such():
    calls = {"n": 0}

    class Drifting(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            calls["n"] += 1
            return g * 2 * (1 + 1e-3 * (calls["n"] % 2))

    with pytest.raises(gp.GradientError, match="backward is non-deterministic"):
        gpt.gradcheck(Drifting.apply, (x64(3),), nondet_tol=1e-6)


def test_jax_check_grads_drop_in_passes_correct_and_names_wrong_rules():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    from gradproof.jax import check_grads

    x = np.linspace(0.2, 1.5, 5)
    assert check_grads(lambda a: jnp.sum(jnp.tanh(a) * a), (x,), order=2) is None

    @jax.custom_jvp
    def f(a):
        return jnp.sin(a)

    @f.defjvp
    def f_jvp(primals, tangents):
        (a,), (t,) = primals, tangents
        return jnp.sin(a), jnp.cos(a) * t * 1.5

    with pytest.raises(AssertionError) as info:
        check_grads(lambda a: jnp.sum(f(a)), (x,), order=1, modes=("fwd",))
    assert isinstance(info.value, gp.GradientError)
    assert "arg0 [fwd]" in str(info.value) and "analytic = 1.50 × numeric" in str(info.value)


def test_options_gradproof_does_not_check_are_said_so_in_the_report():
    fn = scaled(factor=1.5).apply
    with pytest.raises(gp.GradientError) as info:
        gpt.gradcheck(lambda t: fn(t, 3), (x64(4),), check_batched_grad=True)
    assert "check_batched_grad=True is torch's own check" in str(info.value)


def test_a_report_of_several_derivatives_counts_rows_not_parameters():
    x = x64(4)
    # the backward is off by 1.5; its own derivative, checked at order 2, is consistent with it
    report = gpt.check(lambda t: scaled(1.5).apply(t, 3).sum(), x, order=2)
    first = str(report).splitlines()[0]
    assert first.startswith("Gradient check failed: 1 of 2 rows wrong (1 input in rev, [order 2]")
    passed = gpt.check(torch.sin, x, modes=("fwd", "rev"))
    assert str(passed).startswith(
        "Gradient check passed: 3 rows (1 input in [fwd], rev, [fwd vs rev])"
    )


def test_a_jvp_that_raises_is_named_in_both_modes_and_running_out_of_memory_is_not_a_finding():
    class BadJvp(torch.autograd.Function):
        @staticmethod
        def forward(x):
            return (x**2).sum()

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.save_for_backward(*inputs)
            ctx.save_for_forward(*inputs)

        @staticmethod
        def backward(ctx, g):
            return 2 * ctx.saved_tensors[0] * g

        @staticmethod
        def jvp(ctx, t):
            return (2 * ctx.saved_tensors[0] * t[:2]).sum()  # a shape bug: raises

    report = gpt.check(BadJvp.apply, x64(4), modes=("fwd", "rev"))
    assert report.tensors["input0"].passed
    assert report.tensors["input0 [fwd]"].pattern == "raised"
    assert not any(name.endswith("[fwd vs rev]") for name in report.tensors)

    class Hungry(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.exp().sum()

        @staticmethod
        def backward(ctx, g):
            raise MemoryError

    with pytest.raises(MemoryError):
        gpt.check(Hungry.apply, x64(3))


def test_jax_modes_agree_where_both_are_round_off_and_a_missing_rule_says_what_to_check():
    jnp = pytest.importorskip("jax.numpy")
    jss = pytest.importorskip("jax.scipy.special")
    import gradproof.jax as gpj

    # corrcoef of two observations is ±1 whatever the input: both modes give round-off,
    # different round-off, and that is no disagreement between the rules
    x = np.random.default_rng(0).standard_normal((3, 2))
    report = gpj.check(lambda p: jnp.sum(jnp.corrcoef(p) * 0.7), x, modes=("fwd", "rev"))
    assert report.passed, report
    with pytest.raises(gp.GradientSpecError, match=r"second derivative .* order=1"):
        gpj.check(
            lambda p: jnp.sum(jss.gammainc(p["a"], p["x"])),
            {"a": np.array([1.5, 2.0]), "x": np.array([0.7, 1.1])},
            order=2,
        )


def test_a_wrong_jvp_is_found_by_the_mode_comparison_where_finite_differences_cannot_see():
    # A cost carrying an offset of 1e8 hides the gradient (1e-3) from finite differences:
    # both rows are zero within round-off. The [fwd vs rev] row needs none, and finds it.
    class Wrong(torch.autograd.Function):
        @staticmethod
        def forward(x):
            return 1e-3 * torch.sin(x)

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.save_for_forward(*inputs)
            ctx.save_for_backward(*inputs)

        @staticmethod
        def backward(ctx, g):
            return g * 1e-3 * torch.cos(ctx.saved_tensors[0])

        @staticmethod
        def jvp(ctx, t):
            return 3e-3 * torch.cos(ctx.saved_tensors[0]) * t  # 3x too large

    x = torch.tensor([0.3, -0.7, 1.1], dtype=torch.float64, requires_grad=True)
    report = gpt.check(lambda t: 1e8 + Wrong.apply(t).sum(), x, modes=("fwd", "rev"))
    assert not report.passed
    assert report.tensors["input0 [fwd vs rev]"].pattern == "modes"


def test_an_expanded_complex_input_is_checked_as_a_copy():
    z = torch.randn(1, 3, dtype=torch.complex128).expand(4, 3).detach().requires_grad_(True)
    assert gpt.check(lambda t: (t * t).abs().sum(), z).passed


def test_forward_ad_on_a_function_without_jvp_raises_as_torch_does():
    Old = old_style_exp(torch)

    x = x64(3)
    with pytest.raises(NotImplementedError):
        torch.autograd.gradcheck(Old.apply, (x,), check_forward_ad=True)
    with pytest.raises(NotImplementedError, match="check_forward_ad=False"):
        gpt.gradcheck(Old.apply, (x,), check_forward_ad=True)


def test_each_row_says_which_check_it_belongs_to_as_a_field():
    jsonschema = pytest.importorskip("jsonschema")
    import json
    from importlib import resources

    def f(x):
        return x.sin() * 2, x.cos()

    report = gpt.check(f, x64(3), modes=("rev", "fwd"), order=2)
    checks = {t.name: (t.parameter, t.check) for t in report.tensors.values()}
    assert checks["input0 [output 0]"] == ("input0", "[output 0]")
    assert checks["input0 [output 1] [fwd]"] == ("input0", "[output 1] [fwd]")
    assert checks["input0 [output 0] [order 2]"] == ("input0", "[output 0] [order 2]")
    assert checks["input0 [output 1] [fwd vs rev]"] == ("input0", "[output 1] [fwd vs rev]")
    one = gpt.check(lambda x: x.sin(), x64(3))  # one output, the backward: no label
    assert [(t.name, t.check) for t in one.tensors.values()] == [("input0", "")]
    assert all(t.name == f"{t.parameter} {t.check}".strip() for t in report.tensors.values())
    schema = json.loads(resources.files("gradproof").joinpath("report.schema.json").read_text())
    jsonschema.validate(json.loads(report.to_json()), schema)
    again = gp.Report.from_json(report.to_json())
    assert [t.check for t in again.tensors.values()] == [t.check for t in report.tensors.values()]


def test_the_drop_ins_error_can_be_named_before_any_check_fails():
    # ``except gpt.GradcheckError`` in a suite's code is evaluated before the first
    # failure: the class exists from the first access on, both torch's and gradproof's
    error = gpt.GradcheckError
    assert issubclass(error, GradcheckError) and issubclass(error, gp.GradientError)
    assert error.__module__ == "gradproof.torch" and error.__name__ == "GradcheckError"
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        gpt.Nope  # noqa: B018


def test_a_checker_told_a_derivative_by_its_name_checks_that_one():
    # (the modes callers name are strings; a checker reads them as the enum)
    from gradproof.torch import _intake

    x = torch.linspace(-1, 1, 3, dtype=torch.float64, requires_grad=True)
    call = _intake.Call(torch.tanh, (x,), rng=(torch.get_rng_state(), {}))
    checker = _checker.Checker(torch, call, None, "order", 2)
    assert checker.depth == 2 and checker.kind is _checker.Derivative.ORDER
    namespace: dict = {}
    exec("from gradproof.torch import *", namespace)
    assert {"check", "gradcheck", "gradgradcheck", "GradcheckError"} <= set(namespace)
