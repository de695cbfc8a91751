"""Where an error enters a JAX function's derivative: its custom rules checked on their own."""

from __future__ import annotations

import json

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")
gpj = pytest.importorskip("gradproof.jax")

from helpers import beside  # noqa: E402


def _softplus(factor: float = 1.0):
    @jax.custom_vjp
    def softplus(x):
        return jnp.logaddexp(x, 0.0)

    softplus.defvjp(lambda x: (softplus(x), x), lambda x, g: (g * jax.nn.sigmoid(x) * factor,))
    return softplus


def _square(factor: float = 2.0):
    @jax.custom_vjp
    def square(x):
        return x * x

    square.defvjp(lambda x: (x * x, x), lambda x, g: (factor * x * g,))
    return square


def _mlp(first, second):
    """Two layers, a custom rule after each (``first`` after layer 1, ``second`` after 2),
    and a linear read-out."""

    def loss(p, X, y):
        h = first(X @ p["l1"]["W"] + p["l1"]["b"])
        h = second(h @ p["l2"]["W"] + p["l2"]["b"])
        out = h @ p["l3"]["W"] + p["l3"]["b"]
        return jnp.mean((out - y) ** 2)

    return loss


def _point():
    rng = np.random.default_rng(0)
    p = {
        f"l{i}": {"W": rng.normal(size=(m, n)) * 0.5, "b": rng.normal(size=n) * 0.1}
        for i, (m, n) in enumerate([(3, 4), (4, 4), (4, 1)], start=1)
    }
    return p, rng.normal(size=(5, 3)), rng.normal(size=(5, 1))


@pytest.mark.parametrize("depth", ["first", "second"])
def test_a_wrong_custom_vjp_is_named_where_it_enters_at_each_depth(depth):
    wrong, right = _softplus(2.0), _square()
    loss = _mlp(wrong, right) if depth == "first" else _mlp(right, wrong)
    p, X, y = _point()
    report = gpj.check(loss, p, X, y)
    assert not report.passed
    origin = report.origin
    assert origin is not None and origin.layer == "softplus"
    assert origin.called == "softplus (custom_vjp)"
    assert "replaced by JAX's derivative of softplus is right" in origin.evidence
    upstream = ["l1.W", "l1.b"] if depth == "first" else ["l1.W", "l1.b", "l2.W", "l2.b"]
    assert sorted(origin.inherited) == upstream
    for name in upstream:
        assert report.tensors[name].inherited
        assert "inherited from softplus (custom_vjp)" in report.tensors[name].cause
    assert report.tensors["l3.W"].passed
    assert "the error enters at softplus (custom_vjp)'s backward" in str(report).splitlines()[0]
    assert report.policy["isolation"]["checks"] >= 2


def test_a_custom_rule_over_the_parameters_themselves_holds_them():
    @jax.custom_vjp
    def dense(W, x):
        return x @ W

    dense.defvjp(lambda W, x: (x @ W, (W, x)), lambda res, g: (res[1].T @ g * 3, g @ res[0].T))

    def loss(p, x):
        return jnp.sum(jnp.tanh(dense(p["W"], x)) * p["v"])

    rng = np.random.default_rng(1)
    p = {"W": rng.normal(size=(3, 2)), "v": rng.normal(size=2)}
    report = gpj.check(loss, p, rng.normal(size=(4, 3)))
    assert report.origin is not None and report.origin.there == ("W",)
    assert report.tensors["v"].passed


def test_two_wrong_rules_are_two_slips_not_one_origin():
    p, X, y = _point()
    report = gpj.check(_mlp(_softplus(2.0), _square(3.0)), p, X, y)
    assert not report.passed
    assert report.origin is None
    assert not any(t.inherited for t in report.tensors.values())


def test_a_wrong_custom_jvp_is_named():
    @jax.custom_jvp
    def sine(x):
        return jnp.sin(x)

    sine.defjvp(lambda xs, ts: (jnp.sin(xs[0]), jnp.sin(xs[0]) * ts[0]))

    def loss(p):
        return jnp.sum(sine(p["a"] * 2.0) * p["b"])

    report = gpj.check(loss, {"a": np.full(3, 0.3), "b": np.arange(3.0)})
    assert report.origin is not None and report.origin.called == "sine (custom_jvp)"
    assert report.origin.inherited == ("a",)
    assert report.tensors["b"].passed


def test_a_right_function_runs_no_search_and_a_jitted_one_keeps_its_rule():
    p, X, y = _point()
    right = jax.jit(_mlp(_softplus(), _square()))
    report = gpj.check(right, p, X, y)
    assert report.passed and report.origin is None and "isolation" not in report.policy

    wrong = jax.jit(_mlp(_softplus(2.0), _square()))
    before = jax.grad(wrong)(p, X, y)
    report = gpj.check(wrong, p, X, y)
    assert report.origin is not None
    after = jax.grad(wrong)(p, X, y)  # (the cut replaced the rule: no trace of it kept)
    for a, b in zip(
        jax.tree_util.tree_leaves(before), jax.tree_util.tree_leaves(after), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_rule_whose_function_jax_cannot_differentiate_claims_no_origin():
    def halved(x):
        return np.asarray(x) * 0.5

    @jax.custom_vjp
    def halve(x):  # a callback JAX cannot differentiate: no cut at it to go by
        return jax.pure_callback(halved, jax.ShapeDtypeStruct(x.shape, x.dtype), x)

    halve.defvjp(lambda x: (halve(x), None), lambda _, g: (g,))  # wrong: 1 for 1/2

    def loss(p):
        return jnp.sum(jnp.tanh(halve(p["a"] * p["c"])) * p["b"])

    params = {"a": np.full(3, 0.3), "b": np.arange(1.0, 4.0), "c": np.full(3, 2.0)}
    report = gpj.check(loss, params)
    assert not report.tensors["a"].passed and not report.tensors["c"].passed
    # (the rule is wrong alone, but nothing vouches for the code around it)
    assert report.origin is None


def test_the_origin_of_a_rule_travels_in_json_and_matches_the_schema():
    jsonschema = pytest.importorskip("jsonschema")
    from importlib.resources import files

    import gradproof as gp

    p, X, y = _point()
    report = gpj.check(_mlp(_softplus(2.0), _square()), p, X, y)
    data = json.loads(report.to_json())
    schema = json.loads(files("gradproof").joinpath("report.schema.json").read_text())
    jsonschema.validate(data, schema)
    assert data["origin"]["called"] == "softplus (custom_vjp)"
    assert gp.Report.from_dict(data).origin == report.origin


def test_a_rule_made_anew_in_each_call_cannot_be_cut_at_and_nothing_breaks():
    # the rule is a new object in each call (defined inside the function): the check
    # with it replaced finds nothing to replace, and relu (a custom_jvp) runs first
    def loss(p, X):
        @jax.custom_vjp
        def softplus(x):
            return jnp.logaddexp(x, 0.0)

        softplus.defvjp(lambda x: (softplus(x), x), lambda x, g: (g * jnp.exp(x),))
        h = jax.nn.relu(X @ p["W1"])
        return jnp.sum(softplus(h @ p["W2"]) @ p["W3"])

    rng = np.random.default_rng(0)
    p = {"W1": rng.normal(size=(3, 4)), "W2": rng.normal(size=(4, 4)), "W3": rng.normal(size=4)}
    report = gpj.check(loss, p, rng.normal(size=(5, 3)))
    assert not report.passed
    assert not any(t.inherited for t in report.tensors.values())


def test_code_between_the_rules_is_not_vouched_for_without_a_cut():
    def host(W, x):
        return np.asarray(x) @ np.asarray(W)

    @jax.custom_vjp
    def dense(W, x):  # a callback: JAX cannot derive it, so no cut at it
        shape = jax.ShapeDtypeStruct((x.shape[0], W.shape[1]), W.dtype)
        return jax.pure_callback(host, shape, W, x)

    dense.defvjp(
        lambda W, x: (dense(W, x), (W, x)), lambda res, g: (res[1].T @ g * 3, g @ res[0].T)
    )  # dW's slip (dx is right)
    square = _square()

    def loss(p, x):
        h = square(p["a"]) * x
        h = h + jax.lax.stop_gradient(h)  # a second slip, in a's own path
        return jnp.sum(jnp.tanh(dense(p["W"], h)))

    rng = np.random.default_rng(1)
    p = {"a": rng.normal(size=(4, 3)), "W": rng.normal(size=(3, 2))}
    report = gpj.check(loss, p, rng.normal(size=(4, 3)))
    assert not report.tensors["a"].passed and not report.tensors["a"].inherited
    origin = report.origin
    if origin is not None:  # dense is wrong on its own; a only may inherit it
        assert "a" not in origin.inherited and "may inherit it" in origin.evidence


def test_every_rule_right_on_its_own_puts_the_error_in_the_functions_own_code():
    square, softplus = _square(), _softplus()

    def loss(p, x):
        h = softplus(x @ p["W"])
        h = h + jax.lax.stop_gradient(h)  # the slip: half of h's gradient dropped
        return jnp.sum(square(h) @ p["v"])

    rng = np.random.default_rng(2)
    p = {"W": rng.normal(size=(3, 4)), "v": rng.normal(size=4)}
    report = gpj.check(loss, p, rng.normal(size=(5, 3)))
    origin = report.origin
    assert origin is not None and origin.where == "loss's own code, between its custom rules"
    assert "softplus, square, each checked on its own" in origin.evidence
    assert origin.inherited == ("W",) and report.tensors["v"].passed


def test_checks_in_threads_leave_the_rules_and_other_threads_alone():
    originals = jax.custom_vjp.__call__, jax.custom_jvp.__call__
    rules = [_softplus(2.0), _softplus(3.0)]
    x = jnp.linspace(-1.0, 1.0, 4)
    grads: list[np.ndarray] = []

    def use():  # another thread differentiates through a rule while the checks run
        grads.append(np.asarray(jax.grad(lambda x: rules[0](x).sum())(x)))

    def run(i):
        rng = np.random.default_rng(i)
        p = {"W1": rng.normal(size=(3, 4)), "W2": rng.normal(size=4)}

        def loss(p, X):
            return jnp.sum(rules[i](X @ p["W1"]) @ p["W2"])

        for _ in range(2):
            assert gpj.check(loss, p, rng.normal(size=(5, 3))).origin is not None

    beside(use, run, 2)
    assert (jax.custom_vjp.__call__, jax.custom_jvp.__call__) == originals
    rule = np.asarray(2.0 * jax.nn.sigmoid(x))  # the rule's (wrong) derivative, every time
    assert grads and all(np.allclose(g, rule) for g in grads)


def test_a_rule_handed_an_argument_the_check_holds_fixed_holds_it_fixed_too():
    # masked's rule gives no cotangent for its mask (data, passed to the check in args):
    # checked on its own with the mask held fixed it is right, and the wrong softplus
    # upstream is still where the error enters
    @jax.custom_vjp
    def masked(x, mask):
        return x * mask

    masked.defvjp(lambda x, m: (x * m, m), lambda m, g: (g * m, jnp.zeros_like(m)))
    softplus = _softplus(2.0)

    def loss(p, X, mask):
        return jnp.sum(masked(softplus(X @ p["W1"]) @ p["W2"], mask) @ p["v"])

    rng = np.random.default_rng(0)
    p = {"W1": rng.normal(size=(3, 4)), "W2": rng.normal(size=(4, 4)), "v": rng.normal(size=4)}
    mask = (np.arange(4) % 2).astype(float)
    report = gpj.check(loss, p, rng.normal(size=(5, 3)), mask)
    assert report.origin is not None and report.origin.called == "softplus (custom_vjp)"
    assert report.origin.inherited == ("W1",)


def test_a_search_that_raises_leaves_the_jax_verdict_and_says_so(monkeypatch):
    from gradproof.jax import _origin

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in the search")

    monkeypatch.setattr(_origin, "locate", broken)
    p, X, y = _point()
    report = gpj.check(_mlp(_softplus(2.0), _square()), p, X, y)
    assert not report.passed and report.origin is None
    assert any("was not searched" in w for w in report.warnings)
