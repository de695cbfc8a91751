"""Correct code nobody here wrote passes; each awkward case is handled and said plainly."""

from __future__ import annotations

import numpy as np
import pytest

import gradproof as gp


def test_a_difference_above_tol_that_is_only_round_off_passes_but_not_strictly():
    x = np.linspace(0.5, 2.0, 6)
    report = gp.check(lambda p: np.sum(p**3) + 1e6, x, 3 * x**2, eps=1e-7)
    assert report.passed and report.failing == []
    assert report.difference > report.tol and not report.strict
    head = str(report).splitlines()[0]
    assert "only through the finite differences' own error at eps=1e-07" in head
    assert "eps=None (automatic steps) gives a smaller one" in head


def test_the_hint_never_names_the_setting_in_use():
    x = np.linspace(0.5, 2.0, 6)
    report = gp.check(lambda p: np.sum(p**3) + 1e9, x, 3 * x**2)
    head = str(report).splitlines()[0]
    assert report.passed and "eps=None" not in head
    assert "method='richardson' gives a smaller one" in head


def test_assert_gradients_raises_only_when_a_parameter_is_wrong():
    x = np.linspace(0.5, 2.0, 6)
    report = gp.assert_gradients(lambda p: np.sum(p**3) + 1e6, x, 3 * x**2, eps=1e-7)
    assert not report.strict
    with pytest.raises(gp.GradientError, match="1 of 1 parameter wrong"):
        gp.assert_gradients(lambda p: np.sum(p**3), x, 3.5 * x**2)


def test_round_off_level_gradients_are_zero_within_round_off_not_a_difference_of_one():
    # Flat in w: both sides are noise (analytic 1e-17, numeric round-off of a cost near 1).
    w = np.array([0.3, -0.2, 0.1])
    cost = lambda p: 1.0 + 1e-17 * np.sum(p["w"]) + np.sum(p["v"] ** 2)  # noqa: E731
    v = np.array([1.0, 2.0])
    report = gp.check(cost, {"w": w, "v": v}, {"w": np.full(3, 1e-17), "v": 2 * v})
    assert report.passed and report.tensors["w"].difference == 0.0
    assert report.tensors["w"].pattern == "roundoff"
    assert "zero within round-off" in report.tensors["w"].diagnosis
    assert not any("did not change" in w for w in report.warnings)


def test_a_cost_that_ignores_its_argument_says_so_in_the_headline():
    fixed = {"W": np.array([1.0, 2.0])}
    report = gp.check(
        lambda p: float(np.sum(fixed["W"] ** 2)), {"W": fixed["W"].copy()}, {"W": 2 * fixed["W"]}
    )
    assert not report.passed and report.cost_flat
    assert str(report).startswith("Gradient check failed: the cost ignores params")
    assert report.tensors["W"].pattern == "flat"
    assert "mask" not in str(report)


def test_a_factor_close_to_one_is_a_small_systematic_error_not_a_stray_factor():
    w = np.linspace(-1, 1, 20)
    report = gp.check(lambda p: np.sum(np.sin(p)), w, np.cos(w) * (1 + 1e-6))
    t = report.tensors["theta"]
    assert not t.passed and t.pattern == "scale"
    assert "analytic = 1.0000010 × numeric" in t.finding
    assert "small systematic error" in t.cause and "stray" not in t.cause


def test_grads_from_another_dropout_draw_are_diagnosed_as_such():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 8))
    W = {"W": rng.standard_normal((8, 6))}

    def forward_backward(p):
        mask = (np.random.rand(40, 6) < 0.5) / 0.5
        H = (X @ p["W"]) * mask
        return 0.5 * np.sum(H**2), {"dW": X.T @ (H * mask)}

    np.random.seed(1)
    grads = forward_backward(W)[1]  # one draw...
    np.random.seed(2)  # ...and the check replays another
    report = gp.check(lambda p: forward_backward(p)[0], W, grads)
    t = report.tensors["W"]
    assert not t.passed and t.pattern in ("masks", "other")
    assert "draws from np.random" in t.cause and "grads(params)" in t.cause
    np.random.seed(2)
    assert gp.check(lambda p: forward_backward(p)[0], W, lambda p: forward_backward(p)[1]).passed


def test_non_finite_inputs_are_left_out_with_a_note():
    x = np.array([0.3, -np.inf, 1.2, -np.inf])

    def masked_logsumexp(p):
        finite = np.isfinite(p)
        return np.log(np.sum(np.exp(p[finite])))

    def grad(p):
        e = np.where(np.isfinite(p), np.exp(np.where(np.isfinite(p), p, 0.0)), 0.0)
        g = e / e.sum()
        g[~np.isfinite(p)] = np.nan  # undefined there, and not checked
        return g

    for mode in ("full", "sample", "directional"):
        report = gp.check(masked_logsumexp, x, grad, mode=mode)
        assert report.passed, str(report)
        assert any("2 elements are not finite (-inf)" in w for w in report.warnings)


def test_near_a_domain_edge_the_step_shrinks_instead_of_failing():
    x = np.array([1e-9, 0.5, 2.0])
    with np.errstate(invalid="ignore"):  # sqrt(-h) is NaN, as in a user's session
        report = gp.check(lambda p: np.sum(np.sqrt(p)), x, 0.5 / np.sqrt(x), method="richardson")
    assert report.passed, str(report)
    assert any("near the edge of the cost's domain" in w for w in report.warnings)


def test_directional_reports_count_directions():
    w = np.linspace(-1, 1, 50)
    report = gp.check(lambda p: np.sum(np.sin(p)), w, np.cos(w), mode="directional", k=4)
    assert str(report).startswith("Gradient check passed: 1 parameter, 4 directions checked")


def test_report_json_keeps_strict_and_cost_flat():
    x = np.linspace(0.5, 2.0, 6)
    report = gp.check(lambda p: np.sum(p**3) + 1e6, x, 3 * x**2, eps=1e-7)
    back = gp.Report.from_json(report.to_json())
    assert back.passed and not back.strict and back.cost_flat is False


def test_a_smooth_ill_conditioned_inverse_shows_no_kinks_but_a_real_kink_is_kept():
    rng = np.random.default_rng(0)
    U, _ = np.linalg.qr(rng.standard_normal((4, 4)))
    A = U @ np.diag([1, 1e-2, 1e-4, 1e-6]) @ U.T
    B = rng.standard_normal((4, 4))
    Ainv = np.linalg.inv(A)
    report = gp.check(lambda p: np.sum(np.linalg.inv(p) * B), A, -(Ainv.T @ B @ Ainv.T))
    assert report.passed and report.tensors["theta"].kinks == ()
    x = np.array([-1.0, 0.0, 2.0, 0.5])
    kinked = gp.check(lambda p: np.sum(np.abs(p) * 3), x, 3 * np.sign(x))
    assert kinked.passed and kinked.tensors["theta"].kinks == ((1,),)


def test_auto_estimates_a_full_check_within_a_factor_two(monkeypatch):
    import time

    from gradproof import _policy

    monkeypatch.setattr(_policy, "AUTO_FULL_SECONDS", 1e9)

    def slow(p):
        time.sleep(0.01)
        return float(np.sum(np.sin(p)))

    w = np.linspace(-1, 1, 30)
    report = gp.check(slow, w, np.cos(w), mode="auto", progress=False)
    assert report.mode == "full"
    ratio = report.policy["auto_full_seconds"] / report.seconds
    assert 0.5 <= ratio <= 2.0, ratio


def test_progress_shows_about_two_seconds_into_a_slow_check(monkeypatch):
    import time

    from gradproof import _progress

    drawn = []
    monkeypatch.setattr(_progress, "_on_terminal", lambda stream: True)
    original = _progress.Progress.line
    monkeypatch.setattr(
        _progress.Progress,
        "line",
        lambda self, elapsed: drawn.append(elapsed) or original(self, elapsed),
    )

    def slow(p):
        time.sleep(0.004)
        return float(np.sum(np.sin(p)))

    w = np.linspace(-1, 1, 400)  # 800 evaluations, over 3 s
    report = gp.check(slow, w, np.cos(w))
    assert report.seconds > 3.0 and drawn
    assert 2.0 <= drawn[0] < 3.0  # the first draw, not the end of the first 512 coordinates


def test_a_few_ulps_of_jitter_between_evaluations_is_not_non_determinism():
    calls = iter(range(10**6))
    w = np.linspace(-1, 1, 8)

    def jittery(p):  # as threaded or GPU reductions give: a few ulps either way
        k = next(calls) % 5 - 2
        return (100 + 1e-2 * float(np.sum(np.sin(p)))) * (1 + k * 2.2e-16)

    report = gp.check(jittery, w, 1e-2 * np.cos(w))
    assert report.passed and report.deterministic, str(report)


def test_auto_with_a_one_sided_method_samples_when_full_is_too_slow(monkeypatch):
    from gradproof import _policy

    monkeypatch.setattr(_policy, "AUTO_FULL_SECONDS", 0.0)
    w = np.linspace(-1, 1, 50)
    report = gp.check(lambda p: np.sum(np.sin(p)), w, np.cos(w), mode="auto", method="forward")
    assert report.mode == "sample" and report.passed


def test_directional_mode_at_a_domain_edge_is_a_cost_error_not_a_crash():
    x = np.array([1e-14, 0.5])
    with np.errstate(invalid="ignore"), pytest.raises(gp.CostError, match="mode='full'"):
        gp.check(lambda p: np.sum(np.log(p)), x, 1 / x, mode="directional")


def test_a_thread_pool_with_a_cost_that_draws_from_np_random_is_refused():
    import concurrent.futures as cf

    w = np.linspace(-1, 1, 8)

    def dropout_cost(p):
        return float(np.sum(np.sin(p) * (np.random.rand(8) < 0.5)))

    with cf.ThreadPoolExecutor(2) as pool, pytest.raises(gp.GradientSpecError, match="race"):
        gp.check(dropout_cost, w, lambda p: np.cos(p), executor=pool)


@pytest.mark.parametrize("method", ["central", "richardson"])
@pytest.mark.parametrize("x0", [1e-7, 2e-5, 1e-4], ids=["1e-7", "2e-5", "1e-4"])
def test_near_a_pole_a_right_gradient_passes_and_a_wrong_one_fails(x0, method):
    x = np.array([x0, 0.5, 2.0])
    right = gp.check(lambda p: np.sum(1 / p), x, -1 / x**2, method=method)
    assert right.passed and right.tensors["theta"].kinks == (), str(right)
    wrong = gp.check(lambda p: np.sum(1 / p), x, -1.5 / x**2, method=method)
    assert not wrong.passed, str(wrong)


def test_a_one_element_slip_hidden_in_a_noisy_costs_roundoff_is_found_at_a_larger_step():
    # The cost carries an offset of 3e7 through float64 (as a gradient of a gradient or a
    # float32 computation carries its round-off): at the automatic step a 1e-3 error in
    # one element is within the finite differences' round-off. A larger step finds it,
    # and the correct gradient still passes.
    rng = np.random.default_rng(0)
    theta, w = rng.uniform(-1, 1, 12), rng.standard_normal(12)

    def cost(t):
        return float((3e7 + np.sum(w * np.sin(t))) - 3e7)

    right = w * np.cos(theta)
    assert gp.check(cost, theta, right).passed
    slipped = right.copy()
    slipped[5] *= 1 + 1e-3
    report = gp.check(cost, theta, slipped)
    assert not report.passed and report.tensors["theta"].wrong_indices == ((5,),)


def test_a_float32_backward_with_cancellation_passes_and_says_why():
    # Computed in float32, an element that cancels to near 0 is off by about u times the
    # larger elements, not by u times itself: no false alarm, and the headline blames the
    # float32 round-off, not the finite differences. A 1% slip in a large element is found.
    rng = np.random.default_rng(0)
    W = rng.standard_normal((30, 20)).astype(np.float32)
    x = rng.standard_normal((20, 16)).astype(np.float32)

    def cost(p):
        return float(np.sum(np.tanh(p["W"] @ x) ** 2) / 16)

    a = np.tanh(W @ x)
    dW = ((2 * a * (1 - a**2)) @ x.T) / 16
    report = gp.check(cost, {"W": W}, {"dW": dW})
    assert report.passed, report
    assert "float32 analytic gradient's own round-off" in str(report).splitlines()[0]
    slipped = dW.copy()
    slipped[20, 4] *= 1.01
    report = gp.check(cost, {"W": W}, {"dW": slipped})
    assert not report.passed and report.tensors["W"].wrong_indices == ((20, 4),)


def test_a_float32_cost_that_cannot_resolve_a_gradient_leaves_it_undecided():
    # The cost casts to float32 inside: its values are float32 numbers, and float32's
    # round-off, not float64's, bounds what its finite differences resolve. A gradient
    # below that at every admissible step is undecided: neither "the cost ignores
    # params" nor passed "zero within round-off" (a wrong one would pass the same way);
    # a wrong one the cost does resolve still fails.
    rng = np.random.default_rng(3)
    theta, w = rng.uniform(-1, 1, 8), rng.standard_normal(8)
    f32 = np.float32

    def flat(t):  # 100 + 1e-7 * ...: the gradient is far below float32's resolution
        return float(f32(100.0) + f32(1e-7) * np.sum(w.astype(f32) * t.astype(f32) ** 3))

    for scale in (1.0, 3.0):
        report = gp.check(flat, theta, scale * 1e-7 * 3 * w * theta**2)
        assert not report.passed and not report.cost_flat, report
        assert report.tensors["theta"].undecided, report
        assert report.tensors["theta"].pattern == "undecided", report

    def resolved(t):
        return float(np.sum(w.astype(f32) * np.sin(f32(3.0) * t.astype(f32))))

    right = 3 * w * np.cos(3 * theta)
    assert gp.check(resolved, theta, right).passed
    assert not gp.check(resolved, theta, 1.5 * right).passed


def test_a_cost_flat_even_at_a_larger_step_is_no_evidence_either_way():
    # saturated tanh in float32: the gradients (~1e-10) move the cost at no step tried,
    # so they are neither wrong ("the cost ignores params") nor shown to be right
    t = np.array([2.5, -2.6, 2.7])
    report = gp.check(
        lambda t: float(np.sum(np.tanh(5 * t.astype(np.float32)))), t, 5 / np.cosh(5 * t) ** 2
    )
    assert not report.passed and not report.cost_flat, report
    assert [r.name for r in report.undecided] == ["theta"], report


def test_a_float64_cost_is_not_taken_for_float32_by_short_or_unmoved_values():
    # Parameters that do not move the cost, and a linear cost of dyadic data at a
    # power-of-two step, give cost values that float32 happens to represent: the
    # cost is still float64's, and a 1% error is still found.
    x = np.arange(1.0, 5.0)
    params = {"a": np.zeros(4), "b": np.zeros(4), "x": x}
    grads = {"a": np.zeros(4), "b": np.zeros(4), "x": 2 * x * 1.01}
    report = gp.check(
        lambda p: float(np.sum(p["x"] ** 2) + 0 * np.sum(p["a"] + p["b"])), params, grads
    )
    assert not report.tensors["x"].passed
    c = np.array([3.0, -1.0, 2.0, 5.0])
    theta = np.array([1.0, 2.0, 0.5, -1.5])
    report = gp.check(lambda t: float(np.sum(c * t) + 1000.0), theta, c * 1.01, eps=2.0**-10)
    assert not report.passed


# A cost that varies on a scale finer than the automatic step (sin(w·θ) for large w, or a
# parameter of size 1e-6 whose effect oscillates at that scale): the step is taken down
# until the partial settles, and judged there, neither failed on aliasing nor passed on
# an error bound as wide as a bug.
@pytest.mark.parametrize("w", [1e4, 1e6, 3e6, 1e7])
def test_a_cost_varying_faster_than_the_step_is_judged_where_it_settles(w):
    x = np.array([0.3, -0.7, 1.1])
    cost = lambda p: float(np.sum(np.sin(w * p)))  # noqa: E731
    right = w * np.cos(w * x)
    assert gp.check(cost, x, right).passed
    for factor in (1.0001, 1.01, 2.0):
        report = gp.check(cost, x, factor * right)
        assert not report.passed, factor
        # the difference shown is the one at the step the verdict rests on (within the
        # truncation error there, a few % where the gap is 16 times larger)
        expected = (factor - 1) / (factor + 1)
        assert report.difference == pytest.approx(expected, rel=0.1), factor


def test_a_parameter_at_a_fine_scale_is_not_taken_for_noise_in_the_others():
    rng = np.random.default_rng(0)
    p = {"a": rng.standard_normal(4) * 1e-6, "b": rng.standard_normal(3) * 1e3}

    def cost(p):
        return float(np.sum(np.sin(p["a"] * 1e6)) + np.sum(np.cos(p["b"] / 1e3) * 1e3))

    def grads(fa=1.0, fb=1.0):
        return {"a": fa * np.cos(p["a"] * 1e6) * 1e6, "b": -fb * np.sin(p["b"] / 1e3)}

    report = gp.check(cost, p, grads())
    assert report.passed and not report.undecided
    # b's cost is exact float64: judged to tol, not "to the accuracy of" a noise that was
    # a's own oscillation within the noise measurement's spacing
    assert report.tensors["b"].accuracy is None
    assert report.tensors["b"].difference < 1e-9
    for fa, fb in ((1.0001, 1.0), (1.0, 1.001)):
        report = gp.check(cost, p, grads(fa, fb))
        wrong = [n for n, t in report.tensors.items() if not t.passed]
        assert wrong == (["a"] if fa != 1.0 else ["b"]), (fa, fb)


def test_a_cost_that_seeds_its_own_draw_is_not_blamed_on_another_draw():
    # a reparameterized sample from a fixed seed moves np.random's state, but its value
    # does not depend on the state it was called in: no grads dict came from another draw
    rng = np.random.default_rng(0)
    p = {"mu": rng.standard_normal(3), "log_sigma": rng.standard_normal(3) * 0.1}

    def sample():
        np.random.seed(42)
        return np.random.standard_normal((16, 3))

    def cost(p):
        z = p["mu"] + np.exp(p["log_sigma"]) * sample()
        return float(np.mean(np.sum(z**2, axis=1)) / 2 - np.sum(p["log_sigma"]))

    eps = sample()
    z = p["mu"] + np.exp(p["log_sigma"]) * eps
    right = {"mu": z.mean(0), "log_sigma": (z * eps * np.exp(p["log_sigma"])).mean(0) - 1}
    assert gp.check(cost, p, right).passed
    wrong = dict(right, log_sigma=(z * eps).mean(0) - 1)  # the chain rule's exp forgotten
    np.random.seed(7)  # (the caller's state is not the one the cost leaves)
    report = gp.check(cost, p, wrong)
    assert not report.passed and "draw" not in str(report)


def test_a_clipped_gradient_is_named_as_a_clip():
    rng = np.random.default_rng(1)
    W, X = rng.standard_normal((4, 5)) * 3, rng.standard_normal((5, 8))
    g = (W @ X) @ X.T
    report = gp.check(lambda W: float(np.sum((W @ X) ** 2) / 2), W, np.clip(g, -5, 5))
    t = report.tensors["theta"]
    assert t.pattern == "clip" and "±5" in t.finding
    assert t.wrong == int(np.sum(np.abs(g) > 5))


def test_a_one_element_slip_in_a_noisy_cost_is_not_passed_at_a_noisier_smaller_step():
    # a cost with deterministic noise of 3e-11 (a solver's tolerance): a 3e-4 slip is
    # wrong at the automatic step, and a smaller step, noisier, does not overturn that
    import hashlib

    def noise(p):
        digest = hashlib.blake2b(np.ascontiguousarray(p).tobytes(), digest_size=8).digest()
        return 3e-11 * np.random.default_rng(int.from_bytes(digest, "little")).standard_normal()

    rng = np.random.default_rng(11)
    for _ in range(10):
        x = rng.uniform(-2, 2, 4)
        cost = lambda p: float(np.sum(np.sin(p)) + noise(p))  # noqa: E731
        assert gp.check(cost, x, np.cos(x)).passed
        for slip in (1e-4, 3e-4, 1e-3):
            assert not gp.check(cost, x, np.cos(x) * (1 + slip)).passed, slip


def test_a_finer_noise_measurement_that_sees_round_off_is_not_discarded():
    # where no coordinate looks smooth, the noise is measured again 16 times finer; a
    # finer measurement that saw the cost change, at round-off, is the noise (only one
    # that saw no change at all is discarded): sin(3e6·x)'s oscillation is not noise
    w, x = 3e6, np.array([-1.74912831e-06])
    assert gp.check(lambda p: float(np.sum(np.sin(w * p))), x, w * np.cos(w * x)).passed


def test_a_scalar_with_a_missing_term_is_not_called_a_stray_factor():
    # d/db of (b + 1)^2 + 3b is 2(b + 1) + 3; the 3 forgotten reads as a factor on one number
    b = 0.5
    report = gp.check(lambda p: (p + 1) ** 2 + 3 * p, b, 2 * (b + 1))
    t = report.tensors["theta"]
    assert t.pattern == "scale" and "stray constant factor" not in t.cause
    assert "cannot tell them apart" in t.cause


def test_a_factor_is_counted_over_the_elements_that_are_not_zero_on_both_sides():
    w = np.array([0.5, -1.0, 2.0, 0.0, 0.0, 0.0])
    mask = np.array([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])
    report = gp.check(lambda p: float(np.sum((mask * p) ** 2)), w, 2 * 2 * mask * w)
    finding = report.tensors["theta"].finding
    assert "all 3 non-zero elements (3 are zero on both sides)" in finding, finding


def test_one_whole_short_row_wrong_is_that_row_not_a_few_elements():
    W = np.random.default_rng(0).standard_normal((10, 4))
    g = 2 * W
    g[3] *= 1.5
    t = gp.check(lambda p: float(np.sum(p**2)), W, g).tensors["theta"]
    assert t.pattern == "row" and "row 3" in t.finding
    g = 2 * W
    g[3, :2] *= 1.5  # part of a row: a few elements, listed
    assert gp.check(lambda p: float(np.sum(p**2)), W, g).tensors["theta"].pattern == "few"


def test_the_transpose_hint_fits_row_major_and_column_major_code():
    A = np.arange(16.0).reshape(4, 4) / 10  # not symmetric: dW = A
    W = np.random.default_rng(1).standard_normal((4, 4))
    t = gp.check(lambda p: float(np.sum(A * p)), W, A.T).tensors["theta"]
    assert t.pattern == "transpose"
    assert "dZ · Aᵀ" in t.cause and "Aᵀ · dZ" in t.cause


def test_a_cost_even_about_the_point_is_not_a_cost_that_ignores_its_params():
    # |θ| at θ = 0: every central difference is zero, yet the cost moves (a kink at
    # each element); it does not ignore its params, and the kinks are said as such
    report = gp.check(lambda p: float(np.sum(np.abs(p))), np.zeros(3), np.ones(3))
    assert not report.cost_flat, report
    assert "did not change" not in str(report) and "ignores" not in str(report)
    assert len(report.tensors["theta"].kinks) == 3
    # in directional mode too: the elements bisection finds sit on kinks their analytic
    # partial is a one-sided slope of, and are left out (a subgradient is not an error)
    report = gp.check(
        lambda p: float(np.sum(np.abs(p))), np.zeros(8), np.ones(8), mode="directional"
    )
    assert report.passed and not report.cost_flat and "ignores" not in str(report), report
    assert "nothing judged: every direction crossed a kink" in str(report).splitlines()[0]
    assert report.tensors["theta"].kinks
    # an analytic partial outside the one-sided slopes at a kink is still wrong
    w = np.linspace(-1, 1, 20)
    w[5] = 0.0
    g = np.sign(w)
    g[5] = 3.0
    report = gp.check(lambda p: float(np.sum(np.abs(p))), w, g, mode="directional")
    assert not report.passed and report.tensors["theta"].wrong_indices == ((5,),), report
    fixed = np.ones(8)
    report = gp.check(
        lambda p: float(np.sum(fixed**2)), fixed.copy(), 2 * fixed, mode="directional"
    )
    assert report.cost_flat and str(report).startswith("Gradient check failed: the cost ignores")
