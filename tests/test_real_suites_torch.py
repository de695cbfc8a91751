"""The call patterns of other projects' test suites, as the PyTorch drop-ins meet them.

Each pattern comes from a real suite run under ``benchmarks/suites.py`` (kornia's
gradcheck tests and smaller suites): the call torch's ``gradcheck`` accepts is
accepted, a right gradient passes, and a wrong one in the same setting still fails.
(The JAX patterns and the counterexamples that need neither framework are in
``test_real_suites.py``.)
"""

from __future__ import annotations

import pytest

import gradproof as gp

torch = pytest.importorskip("torch")
import gradproof.torch as gpt  # noqa: E402

# --- PyTorch: torch.autograd.gradcheck ---------------------------------------------


def x64(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).requires_grad_(True)


def test_an_output_that_does_not_require_grad_is_not_checked():
    x = x64(4)
    f = lambda x: (x * 2, x.detach().sum())  # noqa: E731  (a threshold returned beside)
    assert torch.autograd.gradcheck(f, (x,))
    assert gpt.gradcheck(f, (x,))
    assert gpt.gradcheck(f, (x,), fast_mode=True)
    assert not gpt.check(f, x).passed  # gpt.check checks every output: a missing path


class Scale(torch.nn.Module):
    """y = x * w, whose backward for its own weight is wrong (doubled), not for x."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.tensor([1.5, -0.5, 2.0], dtype=torch.float64))

    def forward(self, x):
        class Mul(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, w):
                ctx.save_for_backward(x, w)
                return x * w

            @staticmethod
            def backward(ctx, g):
                x, w = ctx.saved_tensors
                return g * w, 2 * (g * x).sum(0)

        return Mul.apply(x, self.weight)


def test_a_module_is_a_function_of_its_inputs_for_gradcheck():
    m = Scale()
    x = x64(4, 3)
    before = m.weight.detach().clone()
    assert torch.autograd.gradcheck(m, (x,))  # torch checks the inputs only
    assert gpt.gradcheck(m, (x,))
    assert gpt.gradcheck(m, (x,), fast_mode=True)
    report = gpt.check(m, x)  # gpt.check goes on checking the module's parameters
    assert not report.passed and [t.name for t in report.failing] == ["weight"]
    assert torch.equal(before, m.weight)


def jacobi_solve(slip: float = 0.0):
    """x = A⁻¹ b by Jacobi iteration to a relative residual of 1e-8; the backward exact
    (implicit), with one element of dA off by ``slip`` (relative)."""

    class Solve(torch.autograd.Function):
        @staticmethod
        def forward(ctx, A, b):
            x, d = torch.zeros_like(b), torch.diagonal(A)
            for _ in range(10_000):
                r = b - A @ x
                if r.norm() <= 1e-8 * b.norm():
                    break
                x = x + r / d
            ctx.save_for_backward(A, x)
            return x

        @staticmethod
        def backward(ctx, g):
            A, x = ctx.saved_tensors
            lam = torch.linalg.solve(A.T, g)
            dA = -torch.outer(lam, x)
            dA[3, 5] *= 1 + slip
            return dA, lam

    return Solve


def solver_inputs(n=20):
    g = torch.Generator().manual_seed(0)
    m = torch.randn(n, n, generator=g, dtype=torch.float64)
    A = (m @ m.T + 3 * n * torch.eye(n, dtype=torch.float64)).requires_grad_(True)
    return A, torch.randn(n, generator=g, dtype=torch.float64).requires_grad_(True)


def test_an_iterative_solver_passes_the_drop_in_and_a_slip_is_still_found():
    A, b = solver_inputs()
    # The forward stops at its tolerance, the backward is exact: small elements of dA
    # disagree by ~1e-9 of its norm. gradcheck (torch's and the drop-in) accepts that...
    assert torch.autograd.gradcheck(jacobi_solve().apply, (A, b))
    report = _dropin_report(jacobi_solve().apply, (A, b))
    assert any("accepted, as the checker it replaces would" in w for w in report.warnings)
    assert report.passed
    # ...gp.check on a cost it cannot see noise in reports it, as a real mismatch would be
    assert not gpt.check(jacobi_solve().apply, A, b).passed
    # and a 1e-3 slip in one element is found by both
    with pytest.raises(gp.GradientError) as info:
        gpt.gradcheck(jacobi_solve(1e-3).apply, (A, b))
    assert info.value.report.tensors["input0"].wrong_indices == ((3, 5),)


def _dropin_report(fn, inputs):
    """The report behind a passing drop-in call (gradcheck returns only True): what
    gradcheck's defaults ask for, through the same path, its re-entrancy probe included."""
    from gradproof._adapter import Request
    from gradproof.torch._dropins import dropin_options as _dropin_options
    from gradproof.torch._dropins import dropin_report as report
    from gradproof.torch._intake import Call

    opts = _dropin_options(None, None, None, False)
    return report(torch, Call(fn, inputs), Request(opts), 0.0, [])


def test_fast_mode_costs_a_handful_of_evaluations_whatever_the_size():
    calls = []

    def f(a):
        calls.append(1)
        return (a.sin() * 2).sum(-1)

    for n in (3, 300):
        calls.clear()
        assert gpt.gradcheck(f, (x64(n, 4),), fast_mode=True)
        # torch's fast mode takes 4 here; gradproof one forward for the outputs,
        # re-entrancy and the backward, the check point, one direction, a final one
        assert len(calls) <= 5, len(calls)


def test_a_drop_in_runs_the_forward_with_grad_once_and_the_check_point_twice():
    # torch's slow mode evaluates 2n + 2 times; the probe's backward is the analytic
    # gradient (no second forward with grad), and the check point is evaluated once
    # before the sweep and once after it (no third time in between)
    calls = {True: 0, False: 0}

    class Cube(torch.autograd.Function):  # old style: vmap cannot batch it
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x**3

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return 3 * x**2 * g

    def f(x):
        calls[torch.is_grad_enabled()] += 1
        return Cube.apply(x).sum()

    n = 6
    assert gpt.gradcheck(f, (x64(n),))
    assert calls[True] == 1, calls  # the probe
    # the check point, a failed vmap attempt, 2n, the final evaluation
    assert calls[False] <= 2 * n + 3, calls


def test_a_drop_in_in_full_mode_tells_jitter_from_non_determinism():
    # the drop-in does not evaluate the check point a second time before the sweep:
    # jitter of a few ulps still passes, and noise that moves the partials still fails
    x = x64(6)
    count = iter(range(10**6))

    def jittery(t):
        k = next(count) % 5 - 2
        return (100 + 1e-2 * t.sin().sum()) * (1 + k * 2.2e-16)

    assert gpt.gradcheck(jittery, (x,))
    generator = torch.Generator().manual_seed(1)

    def noisy(t):
        return t.sin().sum() + 1e-7 * torch.randn((), generator=generator, dtype=t.dtype)

    assert torch.autograd.gradcheck(noisy, (x,), raise_exception=False) is False
    with pytest.raises(gp.GradientError, match="non-deterministic"):
        gpt.gradcheck(noisy, (x,))


def test_a_detached_mean_is_named_as_a_missing_constant_term():
    # kornia's HardNet standardizes each patch with x - mean.detach(): a real mismatch,
    # which gradproof reports with what it shows
    def standardized(x):
        return torch.tanh((x - x.mean(dim=(-2, -1), keepdim=True).detach()) * 1.5)

    x = x64(2, 4, 4)
    for fast_mode in (False, True):
        with pytest.raises(gp.GradientError) as info:
            gpt.gradcheck(standardized, (x,), fast_mode=fast_mode)
        t = info.value.report.tensors["input0"]
        assert t.pattern == "offset" and "detached" in t.cause


def test_gradgradcheck_grad_outputs_cover_the_outputs_that_require_grad():
    x = x64(4)
    g = x64(4, seed=1).detach()
    f = lambda x: (x.detach() * 3, (x**3).sin())  # noqa: E731
    assert torch.autograd.gradgradcheck(f, (x,), (g,))
    assert gpt.gradgradcheck(f, (x,), (g,))


def test_the_probe_is_reused_only_where_it_is_what_the_check_computes():
    # the probe runs the function on the caller's tensors; the check on float64 copies
    # of each input, perturbed apart: the same tensor passed twice has one gradient to
    # autograd (the total) and two partials to the check, and an input in float32 that
    # does not require grad is widened by the check, not by the probe
    x = x64(5)
    y32 = torch.rand(5, dtype=torch.float32, generator=torch.Generator().manual_seed(1))
    cases = {
        "same tensor twice": (lambda a, b: (a * b).sin(), (x, x)),
        "float32 beside": (lambda a, b: a * (30 * b).softmax(0), (x, y32)),
        "float32 beside, steep": (lambda a, b: a * (1000 * b).sin(), (x, y32)),
    }
    for name, (f, inputs) in cases.items():
        assert torch.autograd.gradcheck(f, inputs), name
        assert gpt.gradcheck(f, inputs), name
        assert gpt.gradcheck(f, inputs, fast_mode=True), name


def test_a_loss_sees_every_output_of_a_model_that_returns_a_tuple():
    # a wrong backward in the second output must fail a check whose loss uses both
    class Halve(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x / 2

        @staticmethod
        def backward(ctx, g):
            return g  # the slip: g / 2

    class Two(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 3).double()

        def forward(self, x):
            y = self.lin(x)
            return y.tanh(), Halve.apply(y)

    def loss(out):
        return out[0].sum() + (out[1] ** 2).sum()

    torch.manual_seed(0)
    report = gpt.check(Two(), x64(4, 3), loss=loss)
    assert not report.passed and "lin.weight" in [t.name for t in report.failing], report


def test_a_module_that_cannot_be_deep_copied_is_still_checked():
    import threading

    model = torch.nn.Sequential(torch.nn.Linear(3, 2)).double()
    model.lock = threading.Lock()  # deepcopy refuses it
    assert gpt.check(model, x64(4, 3)).passed
