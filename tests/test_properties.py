"""Property tests: random structures and smooth functions with known gradients."""

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import gradproof as gp
from helpers import snapshot

shapes = st.lists(st.integers(1, 4), min_size=0, max_size=3).map(tuple)
# Each leaf gets cost term sum(a * sin(b * x) + c * x**2): smooth, gradient known.
FUNCS = {
    "sin": (lambda x: np.sin(1.3 * x), lambda x: 1.3 * np.cos(1.3 * x)),
    "exp": (lambda x: np.exp(0.5 * x), lambda x: 0.5 * np.exp(0.5 * x)),
    "quad": (lambda x: 0.7 * x**2 + x, lambda x: 1.4 * x + 1),
    "tanh": (lambda x: np.tanh(x) * 2, lambda x: 2 * (1 - np.tanh(x) ** 2)),
}


@st.composite
def problems(draw):
    n_leaves = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    leaves = {}
    funcs = {}
    for i in range(n_leaves):
        shape = draw(shapes)
        leaves[f"p{i}"] = rng.uniform(-1.5, 1.5, size=shape)
        funcs[f"p{i}"] = draw(st.sampled_from(sorted(FUNCS)))
    layout = draw(st.sampled_from(["dict", "nested", "list"]))
    if layout == "dict":
        params = leaves
        get = lambda p: p  # noqa: E731
    elif layout == "nested":
        params = {"layers": [{k: v} for k, v in leaves.items()]}
        get = lambda p: {k: d[k] for d in p["layers"] for k in d}  # noqa: E731
    else:
        params = list(leaves.values())
        get = lambda p: {f"p{i}": v for i, v in enumerate(p)}  # noqa: E731

    def cost(p):
        flat = get(p)
        return sum(float(np.sum(FUNCS[funcs[k]][0](flat[k]))) for k in flat)

    def grads_for(p):
        flat = get(p)
        g = {k: FUNCS[funcs[k]][1](flat[k]) for k in flat}
        if layout == "dict":
            return g
        if layout == "nested":
            return {"layers": [{k: g[k]} for k in g]}
        return [g[f"p{i}"] for i in range(len(g))]

    def path_of(name):
        i = int(name[1:])
        return {"dict": name, "nested": f"layers.{i}.{name}", "list": str(i)}[layout]

    return params, cost, grads_for, get, path_of


@settings(max_examples=60, deadline=None)
@given(problems())
def test_true_gradient_passes_and_params_are_untouched(problem):
    params, cost, grads_for, *_ = problem
    before = snapshot(params)
    report = gp.check(cost, params, grads_for(params))
    assert report.passed, str(report)
    assert snapshot(params) == before


@settings(max_examples=60, deadline=None)
@given(problems(), st.data())
def test_one_element_off_by_relative_1e_5_fails_and_is_named(problem, data):
    params, cost, grads_for, get, path_of = problem
    grads = grads_for(params)
    flat_grads = (
        get(grads) if not isinstance(grads, list) else {f"p{i}": g for i, g in enumerate(grads)}
    )
    name = data.draw(st.sampled_from(sorted(flat_grads)))
    g = flat_grads[name]
    idx = np.unravel_index(int(np.argmax(np.abs(g))), g.shape) if g.ndim else ()
    # A vanishing partial: a relative error there is below any finite difference.
    assume(abs(g[idx]) >= 1e-2)
    if g.ndim:
        g[idx] *= 1 + 1e-5
    else:
        flat_grads[name] = g * (1 + 1e-5)
        grads = _replace_leaf(grads, name, flat_grads[name])
    before = snapshot(params)
    report = gp.check(cost, params, grads)
    assert not report.passed
    assert [t.name for t in report.failing] == [path_of(name)]
    assert snapshot(params) == before


def _replace_leaf(grads, name, value):
    if isinstance(grads, list):
        grads[int(name[1:])] = value
        return grads
    if "layers" in grads:
        for d in grads["layers"]:
            if name in d:
                d[name] = value
        return grads
    grads[name] = value
    return grads


@settings(max_examples=40, deadline=None)
@given(problems())
def test_flatten_then_unflatten_round_trips_exactly(problem):
    params, *_ = problem
    vector, unflatten = gp.flatten(params)
    assert vector.ndim == 1
    back = unflatten(vector)
    assert snapshot(back) == snapshot(params)
