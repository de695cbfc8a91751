"""Complex inputs and outputs, in each framework's convention; conjugation bugs named."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import gradproof.torch as gpt  # noqa: E402


def z64(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, generator=g, dtype=torch.complex128).requires_grad_(True)


def square(conjugated: bool):
    class Square(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            right = g * 2 * x.conj()  # torch: grad_in = conj(d out / d in) * grad_out
            return right.conj() if conjugated else right

    return Square


def test_torch_complex_inputs_and_outputs_pass_in_both_modes_and_order_two():
    w = torch.randn(4, dtype=torch.complex128, generator=torch.Generator().manual_seed(1))
    report = gpt.check(lambda t: t * w + t.exp(), z64(), modes=("fwd", "rev"), order=2)
    assert report.passed, str(report)
    assert {"input0.real", "input0.imag"} <= set(report.tensors)


def test_torch_conjugation_bug_is_diagnosed():
    z = z64()
    assert torch.autograd.gradcheck(square(False).apply, (z,))
    assert gpt.check(square(False).apply, z).passed
    report = gpt.check(square(True).apply, z)
    assert [t.name for t in report.failing] == ["input0.imag"]
    assert report.tensors["input0.imag"].pattern == "conjugate"
    assert "conjugation bug" in report.tensors["input0.imag"].cause


jax = pytest.importorskip("jax")


def test_jax_complex_leaves_and_conjugation_bug():
    import jax.numpy as jnp

    import gradproof.jax as gpj

    z = {"z": np.array([1 + 2j, -0.5 + 0.3j, 0.2 - 1j])}
    assert gpj.check(lambda p: jnp.sum(jnp.abs(p["z"] ** 2 + 1j)), z, order=2).passed

    @jax.custom_vjp
    def sq(x):
        return x * x

    sq.defvjp(lambda x: (x * x, x), lambda x, g: ((g * 2 * x).conj(),))  # JAX: g * 2 * x
    report = gpj.check(lambda p: jnp.sum(jnp.abs(sq(p["z"]))), z)
    assert [t.name for t in report.failing] == ["z.imag"]
    assert report.tensors["z.imag"].pattern == "conjugate"


def test_a_zero_dimensional_complex_input_keeps_its_shape_and_a_view_its_storage():
    z = torch.tensor(1.5 - 0.5j, dtype=torch.complex128, requires_grad=True)
    report = gpt.check(lambda t, x: x.expand_as(t).abs().sum(), torch.ones(3, 2), z)
    assert report.passed, report
    base = torch.randn(12, dtype=torch.complex128)
    view = base[2:6].detach().requires_grad_(True)  # a view into a larger storage
    report = gpt.check(lambda t: torch.as_strided(t, (2, 2), (1, 2), 3).abs().sum(), view)
    assert report.passed, report
