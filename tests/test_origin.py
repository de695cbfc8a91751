"""One bug, one cause: where an error enters the backward pass, from the layer order."""

from __future__ import annotations

import json

import numpy as np
import pytest

import gradproof as gp
from gradproof.examples import backward_propagation_n, forward_propagation_n, seed_case
from helpers import beside, tanh_function

X, Y, PARAMS = seed_case()
_, CACHE = forward_propagation_n(X, Y, PARAMS)


def cost(p):
    return forward_propagation_n(X, Y, p)


def backward(slip: str | None = None, intermediates: bool = False) -> dict[str, np.ndarray]:
    """The seeds' backward pass, with one slip in the line named ``slip``; with
    ``intermediates``, returned as theirs is (``dZ3``, ``dA2``, ... beside ``dW3``)."""
    (Z1, A1, _, _, Z2, A2, W2, _, _, A3, W3, _) = CACHE
    m = X.shape[1]

    def s(name: str, value: np.ndarray) -> np.ndarray:
        return value * 1.1 if name == slip else value

    dZ3 = s("dZ3", A3 - Y)
    dW3 = s("dW3", 1.0 / m * np.dot(dZ3, A2.T))
    db3 = s("db3", 1.0 / m * np.sum(dZ3, axis=1, keepdims=True))
    dA2 = s("dA2", np.dot(W3.T, dZ3))
    dZ2 = np.multiply(dA2, np.int64((Z2 > 0.5) if slip == "relu2" else (A2 > 0)))
    dW2 = s("dW2", 1.0 / m * np.dot(dZ2, A1.T))
    db2 = s("db2", 1.0 / m * np.sum(dZ2, axis=1, keepdims=True))
    dA1 = s("dA1", np.dot(W2.T, dZ2))
    dZ1 = np.multiply(dA1, np.int64((Z1 > 0.5) if slip == "relu1" else (A1 > 0)))
    dW1 = s("dW1", 1.0 / m * np.dot(dZ1, X.T))
    db1 = s("db1", 1.0 / m * np.sum(dZ1, axis=1, keepdims=True))
    grads = {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2, "W3": dW3, "b3": db3}
    if intermediates:
        grads = {f"d{k}": v for k, v in grads.items()}
        grads.update(dZ3=dZ3, dA2=dA2, dZ2=dZ2, dA1=dA1, dZ1=dZ1)
    return grads


def test_the_seeds_backward_written_here_is_theirs():
    theirs = backward_propagation_n(X, Y, CACHE)
    ours = backward()
    assert all(np.array_equal(ours[k], theirs["d" + k]) for k in ours)
    assert gp.check(cost, PARAMS, ours).passed


# slip -> (layer it enters at, parameters wrong there, parameters inheriting it)
PROPAGATED = {
    "dZ3": ("3", ("W3", "b3"), ("W1", "b1", "W2", "b2")),
    "dA2": ("2", ("W2", "b2"), ("W1", "b1")),
    "relu2": ("2", ("W2", "b2"), ("W1", "b1")),
    "dA1": ("1", ("W1", "b1"), ()),
    "relu1": ("1", ("W1", "b1"), ()),
}


@pytest.mark.parametrize("slip", list(PROPAGATED))
def test_a_slip_that_propagates_is_named_once_where_it_enters(slip):
    report = gp.check(cost, PARAMS, backward(slip))
    layer, there, inherited = PROPAGATED[slip]
    assert not report.passed and report.origin is not None
    assert report.origin.layer == layer
    assert set(report.origin.there) == set(there)
    assert set(report.origin.inherited) == set(inherited)
    assert {t.name for t in report.tensors.values() if t.inherited} == set(inherited)
    # one headline, and no row sends the reader to a line of its own
    text = str(report)
    assert "the error enters at" in text.splitlines()[0]
    for name in there:
        assert report.tensors[name].cause.startswith("the error enters at")
        assert "stray constant factor" not in report.tensors[name].cause
    for name in inherited:
        assert "inherited from layer" in report.tensors[name].cause
        assert "WRONG (inherited)" in text


@pytest.mark.parametrize("slip", ["dW3", "db3", "dW2", "db2", "dW1", "db1"])
def test_a_slip_local_to_one_gradient_is_left_to_its_own_diagnosis(slip):
    report = gp.check(cost, PARAMS, backward(slip))
    assert [t.name for t in report.failing] == [slip[1:]]
    assert report.origin is None
    assert report.tensors[slip[1:]].pattern == "scale"  # "analytic = 1.10 × numeric"


def test_the_seeds_two_separate_bugs_are_two_causes():
    report = gp.check(cost, PARAMS, backward_propagation_n(X, Y, CACHE, buggy=True))
    assert report.origin is None
    assert report.tensors["W2"].pattern == report.tensors["b1"].pattern == "scale"


# slip -> the line where it enters, read from the cache and the intermediates
LINES = {
    "dZ3": "dZ3, the last layer's",  # (what dZ3 should be depends on the labels: not narrowed)
    "dA2": "dA2 = W3.T @ dZ3 (the gradient layer 3 passes down to layer 2)",
    "relu2": "layer 2's ReLU derivative, dZ2 = dA2 * (Z2 > 0)",
    "dA1": "dA1 = W2.T @ dZ2 (the gradient layer 2 passes down to layer 1)",
    "relu1": "layer 1's ReLU derivative, dZ1 = dA1 * (Z1 > 0)",
}


@pytest.mark.parametrize("slip", list(LINES))
def test_the_cache_and_the_intermediates_narrow_it_to_the_line(slip):
    report = gp.check(cost, PARAMS, backward(slip, intermediates=True))
    layer, there, inherited = PROPAGATED[slip]
    origin = report.origin
    assert origin is not None and origin.layer == layer
    assert set(origin.there) == set(there) and set(origin.inherited) == set(inherited)
    assert origin.where.startswith(LINES[slip])
    if slip != "dZ3":
        assert "narrowed with the forward's cache" in origin.evidence
        assert f"dZ{int(layer) + 1} makes the right dW{int(layer) + 1}" in origin.evidence
        for name in there:
            assert LINES[slip] in report.tensors[name].cause
    # without the intermediates, the layer order alone: between two dZs
    plain = gp.check(cost, PARAMS, backward(slip))
    assert plain.origin is not None and "narrowed" not in plain.origin.evidence


def test_a_cache_from_elsewhere_or_of_another_shape_narrows_nothing():
    grads = backward("relu2", intermediates=True)
    other = {k: v * 1.5 for k, v in PARAMS.items()}
    _, elsewhere = forward_propagation_n(X, Y, other)
    for aside in (elsewhere, ("not", "a", "cache"), {"Z2": "x"}, CACHE[:-1]):
        report = gp.check(lambda p, aside=aside: (cost(p)[0], aside), PARAMS, grads)
        assert report.origin is not None and report.origin.layer == "2"
        assert "narrowed" not in report.origin.evidence


def test_the_l_layer_layout_with_only_the_das_is_narrowed_after_da():
    # the seeds' L-layer network caches ((A_prev, W, b), Z) per layer, and its backward
    # returns dA{l-1}, dW{l}, db{l}: no dZ to compare, dA checked and the rest after it
    rng = np.random.default_rng(0)
    dims = [4, 5, 5, 3, 1]
    L = len(dims) - 1
    params = {}
    for layer in range(1, L + 1):
        params[f"W{layer}"] = rng.normal(size=(dims[layer], dims[layer - 1])) * 0.7
        params[f"b{layer}"] = rng.normal(size=(dims[layer], 1)) * 0.1
    x, y = rng.normal(size=(4, 7)), (rng.random((1, 7)) > 0.5).astype(float)

    def forward(p):
        a, caches = x, []
        for layer in range(1, L + 1):
            z = p[f"W{layer}"] @ a + p[f"b{layer}"]
            caches.append(((a, p[f"W{layer}"], p[f"b{layer}"]), z))
            a = np.tanh(z) if layer < L else 1 / (1 + np.exp(-z))
        return -np.mean(y * np.log(a) + (1 - y) * np.log(1 - a)), caches

    def backward_l(p, slip):
        _, caches = forward(p)
        grads, dz = {}, 1 / (1 + np.exp(-caches[-1][1])) - y
        for layer in range(L, 0, -1):
            (a_prev, w, _), _ = caches[layer - 1]
            grads[f"dW{layer}"] = dz @ a_prev.T / x.shape[1]
            grads[f"db{layer}"] = dz.sum(1, keepdims=True) / x.shape[1]
            grads[f"dA{layer - 1}"] = da = w.T @ dz
            if layer > 1:
                power = 3 if slip == layer - 1 else 2  # the slip: (1 - A**3)
                dz = da * (1 - np.tanh(caches[layer - 2][1]) ** power)
        return grads

    for slip in (1, 2):
        report = gp.check(forward, params, lambda p, slip=slip: backward_l(p, slip))
        where = f"layer {slip}'s tanh derivative (dZ{slip} = dA{slip} * (1 - A{slip}**2))"
        assert report.origin is not None and report.origin.where.startswith(where)
        assert f"dA{slip} = W{slip + 1}.T @ dZ{slip + 1} holds" in report.origin.evidence


def test_a_cache_as_a_dict_is_read_by_name():
    grads = backward("dA2", intermediates=True)

    def by_name(p):
        value, (z1, a1, _, _, z2, a2, _, _, z3, a3, _, _) = cost(p)
        return value, {"Z1": z1, "A1": a1, "Z2": z2, "A2": a2, "Z3": z3, "A3": a3}

    report = gp.check(by_name, PARAMS, grads)
    assert report.origin.where.startswith("dA2 = W3.T @ dZ3")


def test_the_origin_travels_in_json_and_matches_the_schema():
    jsonschema = pytest.importorskip("jsonschema")
    from importlib import resources

    report = gp.check(cost, PARAMS, backward("dA2"))
    data = report.to_dict()
    schema = json.loads(resources.files("gradproof").joinpath("report.schema.json").read_text())
    jsonschema.validate(data, schema)
    again = gp.Report.from_dict(data)
    assert again.origin == report.origin
    assert again.tensors["W1"].inherited and not again.tensors["W2"].inherited


@pytest.mark.parametrize(
    "names",
    [
        ["layers.0.W", "layers.0.b", "layers.1.W", "layers.1.b", "layers.2.W", "layers.2.b"],
        ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"],
    ],
)
def test_paths_with_a_layer_number_are_read_as_layers(names):
    from gradproof._origin import infer

    failed = dict(zip(names, [True, True, True, True, False, False], strict=True))
    origin = infer(failed, set())
    assert origin is not None and origin.inherited == tuple(names[:2])
    assert origin.there == tuple(names[2:4]) and origin.right == tuple(names[4:])
    # a failure outside one block from the top down explains nothing by the layer order
    failed = dict(zip(names, [True, False, True, True, False, False], strict=True))
    assert infer(failed, set()) is None
    assert infer(dict.fromkeys(names, True), {names[0]}) is None  # undecided: no story


def test_a_torch_sequential_with_one_wrong_function_names_where_it_enters():
    torch = pytest.importorskip("torch")
    import gradproof.torch as gpt

    model, x = _sequential_with_a_wrong_backward(torch)
    report = gpt.check(model, x, loss=lambda out: out.pow(2).sum())
    # the activation module whose Function's backward is wrong, checked on its own (the
    # layer order alone would say "layer 2", the last one with wrong parameters)
    origin = report.origin
    # (and inside it, down to the custom Function it applies)
    assert origin is not None and origin.layer == "3.BadTanh" and origin.there == ()
    assert origin.called == "BadTanh in layer 3 (autograd.Function)"
    assert origin.inherited == ("0.weight", "0.bias", "2.weight", "2.bias")
    assert origin.right == ("4.weight", "4.bias")
    assert origin.evidence.startswith(
        "BadTanh in layer 3 (autograd.Function), checked on its own at the inputs it received"
    )
    assert "the model checked apart from it" in origin.evidence
    headline = str(report).splitlines()[0]
    assert "the error enters at BadTanh in layer 3 (autograd.Function)'s backward" in headline
    assert all(report.tensors[n].inherited for n in origin.inherited)
    # 4 (right), 3 (wrong), its Function (wrong), then the model apart from the Function:
    # up to its input, from its output on
    assert report.policy["isolation"]["checks"] == 5


def _sequential_with_a_wrong_backward(torch):
    """Linear, tanh, Linear, a tanh whose backward is wrong (1 - y, not 1 - y**2) and
    whose jvp is right, Linear; float64, with an input batch."""

    class BadTanh(torch.autograd.Function):
        @staticmethod
        def forward(x):
            return torch.tanh(x)

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.save_for_backward(output)
            ctx.save_for_forward(output)

        @staticmethod
        def backward(ctx, g):
            (y,) = ctx.saved_tensors
            return g * (1 - y)  # the slip: 1 - y**2

        @staticmethod
        def jvp(ctx, t):
            (y,) = ctx.saved_tensors
            return t * (1 - y**2)

    class Act(torch.nn.Module):
        def forward(self, x):
            return BadTanh.apply(x)

    torch.manual_seed(0)
    layers = [torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 5), Act()]
    model = torch.nn.Sequential(*layers, torch.nn.Linear(5, 1)).double()
    return model, torch.randn(8, 4, dtype=torch.float64)


def test_names_that_only_end_in_a_number_are_not_layers():
    # Rosenbrock's x1, x2 (and a front-end's input0, input1) are no layer sequence
    def cost(p):
        return float((1 - p["x1"]) ** 2 + 100 * (p["x2"] - p["x1"] ** 2) ** 2)

    p = {"x1": np.array(0.3), "x2": np.array(-0.4)}
    grads = {"x1": np.array(2.0), "x2": np.array(3.0)}  # both wrong
    report = gp.check(cost, p, grads)
    assert not report.passed and report.origin is None


def test_two_factors_in_the_entry_layer_are_two_slips_not_one_error():
    g = backward()
    g = {**g, "W1": 2 * g["W1"], "b1": 4 * g["b1"]}  # the seeds' kind of bug, in one layer
    report = gp.check(cost, PARAMS, g)
    assert report.origin is None
    assert report.tensors["W1"].cause == "a stray constant factor in dW1"


def test_a_layer_without_a_bias_is_no_evidence_of_where_an_error_enters():
    weights_only = {k: v for k, v in PARAMS.items() if k.startswith("W")}
    grads = {k: 1.1 * v for k, v in backward().items() if k.startswith("W")}

    def no_bias_cost(p):
        return cost({**PARAMS, **p})

    report = gp.check(no_bias_cost, weights_only, grads)
    assert not report.passed and report.origin is None


def test_forward_mode_rows_are_not_said_to_inherit_a_backward_error():
    torch = pytest.importorskip("torch")
    import gradproof.torch as gpt

    model, x = _sequential_with_a_wrong_backward(torch)
    report = gpt.check(model, x, loss=lambda out: out.pow(2).sum(), modes=("rev", "fwd"))
    assert report.origin is not None and report.origin.layer == "3.BadTanh"  # the backward's
    forward_rows = [t for name, t in report.tensors.items() if "[fwd]" in name]
    assert forward_rows  # (the loop below has rows to look at)
    for t in forward_rows:  # forward mode has no backward pass to inherit from
        assert not t.inherited and "inherited" not in (t.cause or ""), t.name


def _torch_catalogue(torch):
    """Modules for the isolation tests: a tanh whose backward is wrong, a linear layer
    whose weight gradient is doubled (its input gradient right), and a block of both."""

    WrongTanh = tanh_function(torch, "WrongTanh", slip=True)  # backward: 1 - y, not 1 - y**2

    class WrongWeight(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, w):
            ctx.save_for_backward(x, w)
            return x @ w.T

        @staticmethod
        def backward(ctx, g):
            x, w = ctx.saved_tensors
            return g @ w, 2 * g.T @ x  # the slip: g.T @ x

    class Act(torch.nn.Module):
        def forward(self, x):
            return WrongTanh.apply(x)

    class Dense(torch.nn.Module):
        def __init__(self, n_in, n_out):
            super().__init__()
            self.weight = torch.nn.Parameter(0.5 * torch.randn(n_out, n_in))

        def forward(self, x):
            return WrongWeight.apply(x, self.weight)

    class Block(torch.nn.Module):
        def __init__(self, act):
            super().__init__()
            self.lin = torch.nn.Linear(5, 5)
            self.act = act

        def forward(self, x):
            return self.act(self.lin(x))

    return Act, Dense, Block


def test_a_wrong_module_inside_a_block_is_named_down_to_the_module():
    torch = pytest.importorskip("torch")
    import gradproof.torch as gpt

    Act, _, Block = _torch_catalogue(torch)
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(4, 5), Block(Act()), Block(torch.nn.Tanh()), torch.nn.Linear(5, 2)
    ).double()
    report = gpt.check(model, torch.randn(6, 4, dtype=torch.float64))
    origin = report.origin
    assert origin is not None and origin.layer == "1.act.WrongTanh", report
    assert set(origin.right) == {"2.lin.weight", "2.lin.bias", "3.weight", "3.bias"}
    # the model up to act's input (Block.forward's own code included) and from its output
    # on, checked apart from act, is right: everything upstream inherits the error
    assert origin.inherited == ("0.weight", "0.bias", "1.lin.weight", "1.lin.bias")


def test_a_module_whose_own_weight_gradient_is_wrong_is_where_it_enters():
    torch = pytest.importorskip("torch")
    import gradproof.torch as gpt

    _, Dense, _ = _torch_catalogue(torch)
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(4, 5), torch.nn.Tanh(), Dense(5, 5), torch.nn.Linear(5, 2)
    ).double()
    report = gpt.check(model, torch.randn(6, 4, dtype=torch.float64))
    assert report.origin is not None and report.origin.layer == "2.WrongWeight"
    # its input gradient is right: nothing upstream inherits anything (the parameter
    # handed to the Function is held by it)
    assert report.origin.there == ("2.weight",) and report.origin.inherited == ()
    assert [t.name for t in report.failing] == ["2.weight"]
    # one wrong gradient and nothing more: its own diagnosis stays beside the place
    assert "a stray constant factor" in report.tensors["2.weight"].cause
    footer = str(report).splitlines()[-1]
    assert "checks of where the error enters" in footer  # the search's cost is said


def test_two_modules_wrong_on_their_own_are_two_slips_not_one_origin():
    torch = pytest.importorskip("torch")
    import gradproof.torch as gpt

    Act, Dense, _ = _torch_catalogue(torch)
    torch.manual_seed(0)
    model = torch.nn.Sequential(Dense(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 5), Act())
    model = torch.nn.Sequential(*model, torch.nn.Linear(5, 2)).double()
    report = gpt.check(model, torch.randn(6, 4, dtype=torch.float64))
    # 3 (Act) is wrong on its own, and so is 0 (Dense) upstream of it: 0.weight does not
    # merely inherit, so no one origin is claimed and each row keeps its own diagnosis
    assert not report.passed and report.origin is None
    assert not any(t.inherited for t in report.tensors.values())


def test_a_function_called_in_the_models_own_forward_is_where_it_enters():
    torch = pytest.importorskip("torch")
    import gradproof.torch as gpt

    Act, _, _ = _torch_catalogue(torch)

    class Glue(torch.nn.Module):  # the wrong Function is called in the model's own forward
        def __init__(self):
            super().__init__()
            self.first, self.last = torch.nn.Linear(4, 5), torch.nn.Linear(5, 2)

        def forward(self, x):
            return self.last(Act()(self.first(x)))

    torch.manual_seed(0)
    report = gpt.check(Glue().double(), torch.randn(6, 4, dtype=torch.float64))
    # (Act() is made inside forward: no submodule of the model) its Function is checked
    # on its own all the same, and the model apart from it is right
    origin = report.origin
    assert not report.passed and origin is not None, report
    assert origin.layer == "WrongTanh" and origin.called == "WrongTanh (autograd.Function)"
    assert origin.inherited == ("first.weight", "first.bias")
    assert origin.right == ("last.weight", "last.bias")


def test_an_error_outside_every_submodule_is_in_the_models_own_code():
    torch = pytest.importorskip("torch")
    import gradproof.torch as gpt

    class Glue(torch.nn.Module):  # a hook in the model's own forward doubles a gradient
        def __init__(self):
            super().__init__()
            self.first, self.last = torch.nn.Linear(4, 5), torch.nn.Linear(5, 2)

        def forward(self, x):
            h = torch.tanh(self.first(x))
            if h.requires_grad:
                h.register_hook(lambda g: 2 * g)  # the slip
            return self.last(h)

    torch.manual_seed(0)
    model = Glue().double()
    report = gpt.check(model, torch.randn(6, 4, dtype=torch.float64))
    # first and last are right on their own: the error is in Glue.forward's own code,
    # which every row inherits
    origin = report.origin
    assert not report.passed and origin is not None, report
    assert origin.where == "Glue.forward's own code, between its submodules"
    assert origin.there == () and set(origin.inherited) == {t.name for t in report.failing}
    assert "last, first, each checked on its own" not in origin.evidence
    assert origin.evidence.startswith("first, last, each checked on its own")
    assert report.policy["isolation"]["checks"] == 2


def test_a_wrong_backward_hook_is_found_in_the_module_that_holds_it():
    torch = pytest.importorskip("torch")
    import gradproof.torch as gpt

    def doubled(module, grad_input, grad_output):
        return tuple(None if g is None else 2 * g for g in grad_input)

    for depth in (1, 3):  # a module hook at each depth: the second layer, the fourth
        torch.manual_seed(0)
        layers = [torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 5)]
        model = torch.nn.Sequential(*layers, torch.nn.Tanh(), torch.nn.Linear(5, 2)).double()
        model[depth].register_full_backward_hook(doubled)  # the slip
        report = gpt.check(model, torch.randn(6, 4, dtype=torch.float64))
        origin = report.origin
        assert origin is not None and origin.layer == str(depth), report
        upstream = {n for n, _ in model.named_parameters() if int(n.split(".")[0]) < depth}
        assert set(origin.inherited) == upstream


def test_a_right_model_runs_no_isolation():
    torch = pytest.importorskip("torch")
    import gradproof.torch as gpt

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh()).double()
    report = gpt.check(model, torch.randn(6, 4, dtype=torch.float64))
    assert report.passed and report.origin is None and "isolation" not in report.policy


def test_the_plot_marks_where_the_error_enters_and_what_inherits_it():
    plt = pytest.importorskip("matplotlib.pyplot")
    report = gp.check(cost, PARAMS, backward("relu2"))
    fig = report.plot()
    try:
        bars, heat = fig.axes[0], fig.axes[1]
        assert bars.get_title() == "gradient check failed: the error enters at layer 2"
        bars_ = bars.patches[: len(report.tensors)]
        hatched = [n for n, bar in zip(report.tensors, bars_, strict=True) if bar.get_hatch()]
        assert hatched == ["W1", "b1"]  # inherited
        legend = [t.get_text() for t in bars.get_legend().get_texts()]
        assert legend[:2] == ["wrong where the error enters", "inherited"]
        assert heat.get_title().startswith("W2:")  # where it enters, not W1 which inherits
    finally:
        plt.close(fig)


# --- gradproof.nn: the layers checked on their own ------------------------------------


def _nn_catalogue():
    from gradproof import nn

    class WrongTanh(nn.Tanh):
        def backward(self, dy):
            return dy * (1.0 - self.y)  # the slip: 1 - y**2

    class WrongPool(nn.MaxPool2D):
        def backward(self, dy):  # every window's gradient to its first element
            s = self.stride
            dx = np.zeros(self.x_shape)
            ho, wo = dy.shape[2:]
            dx[:, :, 0 : s * ho : s, 0 : s * wo : s] += dy
            return dx

    class WrongRNN(nn.RNN):
        def backward(self, dy):
            dx = super().backward(dy)
            self.grads["W_hh"] = 2 * self.grads["W_hh"]  # the slip
            return dx

    return nn, WrongTanh, WrongPool, WrongRNN


def _mlp_data():
    """Eight examples of 4 features and their labels among 3 classes."""
    rng = np.random.default_rng(0)
    return rng.standard_normal((8, 4)), rng.integers(0, 3, 8)


def _check_keeps_params(model, X, y, loss):
    before = {k: v.copy() for k, v in model.params().items()}
    report = model.gradient_check(X, y, loss)
    assert all(np.array_equal(before[k], v) for k, v in model.params().items())
    return report


def test_an_nn_mlp_with_a_wrong_activation_names_that_layer():
    nn, WrongTanh, _, _ = _nn_catalogue()
    X, y = _mlp_data()
    model = nn.Sequential(
        nn.Dense(4, 6, seed=0),
        nn.Tanh(),
        nn.Dense(6, 5, seed=1),
        WrongTanh(),
        nn.Dense(5, 3, seed=2),
    )
    report = _check_keeps_params(model, X, y, nn.SoftmaxCrossEntropy())
    origin = report.origin
    assert origin is not None and origin.layer == "3" and origin.there == ()
    assert origin.inherited == ("0.W", "0.b", "2.W", "2.b")
    assert origin.right == ("4.W", "4.b")
    assert "3 (WrongTanh) is wrong" in origin.evidence
    # the loss and 4 (right), 3 (wrong), then 0, 1 and 2, between the failing parameters
    # and it
    assert report.policy["isolation"]["checks"] == 6
    assert "0, 1, 2, before it, are right" in origin.evidence


def test_an_nn_cnn_with_a_wrong_pooling_backward_names_the_pooling_layer():
    nn, _, WrongPool, _ = _nn_catalogue()
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((3, 1, 6, 6)), rng.integers(0, 2, 3)
    model = nn.Sequential(
        nn.Conv2D(1, 2, 3, seed=0), nn.ReLU(), WrongPool(2), nn.Flatten(), nn.Dense(8, 2, seed=1)
    )
    report = _check_keeps_params(model, X, y, nn.SoftmaxCrossEntropy())
    assert report.origin is not None and report.origin.layer == "2", report
    assert report.origin.inherited == ("0.W", "0.b")
    assert report.origin.right == ("4.W", "4.b")


def test_an_nn_rnn_whose_own_weight_gradient_is_wrong_is_where_it_enters():
    nn, _, _, WrongRNN = _nn_catalogue()
    rng = np.random.default_rng(2)
    X, y = rng.standard_normal((4, 3, 2)), rng.integers(0, 2, 4)
    model = nn.Sequential(WrongRNN(2, 3, seed=0), nn.Flatten(), nn.Dense(9, 2, seed=1))
    report = _check_keeps_params(model, X, y, nn.SoftmaxCrossEntropy())
    assert [t.name for t in report.failing] == ["0.W_hh"]
    assert report.origin is not None and report.origin.layer == "0"
    assert report.origin.there == ("0.W_hh",) and report.origin.inherited == ()


def test_two_nn_layers_wrong_on_their_own_claim_no_origin():
    nn, WrongTanh, _, _ = _nn_catalogue()
    X, y = _mlp_data()
    model = nn.Sequential(
        nn.Dense(4, 6, seed=0),
        WrongTanh(),
        nn.Dense(6, 5, seed=1),
        WrongTanh(),
        nn.Dense(5, 3, seed=2),
    )
    report = _check_keeps_params(model, X, y, nn.SoftmaxCrossEntropy())
    # the layer order alone would name layer 3 for all four failures; checked on their
    # own, layers 3 and 1 are both wrong: two slips, each row its own diagnosis
    assert not report.passed and report.origin is None
    assert not any(t.inherited for t in report.tensors.values())


def test_what_no_check_covers_is_not_vouched_for():
    torch = pytest.importorskip("torch")
    import gradproof.torch as gpt

    Act, _, _ = _torch_catalogue(torch)

    class Scaled(torch.nn.Module):  # wrong, called with a keyword argument
        def forward(self, x, scale=1.0):
            return Act()(x) * scale

    class KwSlip(torch.nn.Module):  # two slips: act, and Scaled called by keyword after it
        def __init__(self):
            super().__init__()
            self.lin, self.act, self.kw = torch.nn.Linear(4, 5), Act(), Scaled()

        def forward(self, x):
            return self.kw(self.act(self.lin(x)), scale=2.0)

    class Shared(torch.nn.Module):  # two slips: act, and shared, called before and after
        def __init__(self):
            super().__init__()
            self.lin, self.shared, self.act = torch.nn.Linear(4, 5), Act(), Act()

        def forward(self, x):
            return self.shared(self.act(self.shared(self.lin(x))))

    class Listed(torch.nn.Module):  # one slip, in a ModuleList run by a loop
        def __init__(self):
            super().__init__()
            layers = [torch.nn.Linear(4, 5), torch.nn.Tanh(), Act(), torch.nn.Linear(5, 2)]
            self.layers = torch.nn.ModuleList(layers)

        def forward(self, x):
            for layer in self.layers:
                x = layer(x)
            return x

    torch.manual_seed(0)
    x = torch.randn(6, 4, dtype=torch.float64)
    models = [KwSlip().double(), Shared().double(), Listed().double()]
    rng = torch.get_rng_state()
    for model in models[:2]:
        report = gpt.check(model, x)
        assert not report.passed and report.origin is None, report
    listed = gpt.check(models[2], x)
    assert torch.equal(rng, torch.get_rng_state())  # the search draws nothing of the caller's
    origin = listed.origin
    assert origin is not None and origin.layer == "layers.2.WrongTanh", listed
    assert origin.inherited == ("layers.0.weight", "layers.0.bias")

    class Between(torch.nn.Module):  # two slips: act, and a wrong Function called in forward
        def __init__(self):
            super().__init__()
            self.lin, self.act = torch.nn.Linear(4, 5), Act()

        def forward(self, x):
            return self.act(Act()(self.lin(x)).tan())

    report = gpt.check(Between().double(), x)
    # act is wrong on its own, and so is the model up to its input (the other slip)
    assert not report.passed and report.origin is None, report


def test_a_wrong_nn_loss_is_where_the_error_enters():
    from gradproof import nn

    class WrongCE(nn.SoftmaxCrossEntropy):
        def backward(self):
            return 2 * super().backward()  # the slip

    X, y = _mlp_data()
    model = nn.Sequential(nn.Dense(4, 5, seed=0), nn.Tanh(), nn.Dense(5, 3, seed=1))
    report = _check_keeps_params(model, X, y, WrongCE())
    origin = report.origin
    assert origin is not None and origin.layer == "loss" and origin.there == ()
    assert origin.inherited == ("0.W", "0.b", "2.W", "2.b")


def test_a_slip_reaching_the_entry_by_keyword_or_in_a_tuple_is_a_second_cause():
    torch = pytest.importorskip("torch")
    import gradproof.torch as gpt

    Act, Dense, _ = _torch_catalogue(torch)

    class Scaled(Dense):  # its own weight gradient is wrong (Dense's slip)
        def forward(self, h, scale=None, pair=None):
            out = super().forward(h)
            for extra in (scale, *(pair or ())):
                if extra is not None:
                    out = out * extra
            return out

    class ByKeyword(torch.nn.Module):  # a wrong act feeds the entry by keyword
        def __init__(self):
            super().__init__()
            self.a, self.g, self.e = torch.nn.Linear(4, 5), Act(), Scaled(5, 5)

        def forward(self, x):
            h = self.a(x)
            return self.e(h, scale=self.g(h))

    class InTuple(ByKeyword):  # ... or inside a tuple
        def forward(self, x):
            h = self.a(x)
            return self.e(h, pair=(self.g(h), h))

    torch.manual_seed(0)
    x = torch.randn(6, 4, dtype=torch.float64)
    for model in (ByKeyword(), InTuple()):
        report = gpt.check(model.double(), x)
        assert not report.passed and report.origin is None, report


def test_a_backward_that_raises_is_not_read_by_the_layer_order():
    torch = pytest.importorskip("torch")
    import gradproof.torch as gpt

    torch.manual_seed(0)
    layers = [torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.ReLU(inplace=True)]
    model = torch.nn.Sequential(*layers, torch.nn.Linear(5, 2)).double()
    report = gpt.check(model, torch.randn(6, 4, dtype=torch.float64))
    # the in-place ReLU breaks tanh's saved output: autograd raises, which is no layer's
    assert not report.passed and report.origin is None, report


def test_a_layer_whose_output_is_not_its_activation_is_not_narrowed():
    # dropout after layer 2's ReLU: A2 = relu(Z2) * D2 / keep, and the backward scales
    # dA2 by the mask before the ReLU's; the mask's backward is not one gradproof knows
    keep = 0.8
    D2 = (np.random.default_rng(3).random(CACHE[5].shape) < keep).astype(float)

    def dropped(p):
        Z1 = p["W1"] @ X + p["b1"]
        A1 = np.maximum(Z1, 0)
        Z2 = p["W2"] @ A1 + p["b2"]
        A2 = np.maximum(Z2, 0) * D2 / keep
        Z3 = p["W3"] @ A2 + p["b3"]
        A3 = 1 / (1 + np.exp(-Z3))
        cost = -np.mean(Y * np.log(A3) + (1 - Y) * np.log(1 - A3))
        return cost, (Z1, A1, p["W1"], p["b1"], Z2, A2, p["W2"], p["b2"], Z3, A3, p["W3"], p["b3"])

    _, (_, A1, _, _, Z2, A2, W2, _, _, A3, W3, _) = dropped(PARAMS)
    m = X.shape[1]
    dZ3 = A3 - Y
    dA2 = W3.T @ dZ3 * D2 / keep
    dZ2 = dA2 * (Z2 > 0.5)  # the slip
    dA1 = W2.T @ dZ2
    dZ1 = dA1 * (A1 > 0)
    grads = {
        "dZ3": dZ3, "dW3": dZ3 @ A2.T / m, "db3": dZ3.sum(1, keepdims=True) / m,
        "dA2": dA2, "dZ2": dZ2, "dW2": dZ2 @ A1.T / m, "db2": dZ2.sum(1, keepdims=True) / m,
        "dA1": dA1, "dZ1": dZ1, "dW1": dZ1 @ X.T / m, "db1": dZ1.sum(1, keepdims=True) / m,
    }  # fmt: skip
    report = gp.check(dropped, PARAMS, grads)
    assert report.origin is not None and report.origin.layer == "2"
    assert "narrowed" not in report.origin.evidence  # (not "dA2 = W3.T @ dZ3")


def test_a_right_function_with_a_constant_argument_is_right_on_its_own():
    torch = pytest.importorskip("torch")
    import gradproof.torch as gpt

    Act, _, _ = _torch_catalogue(torch)

    class Masked(torch.autograd.Function):  # right: no gradient for the constant mask
        @staticmethod
        def forward(ctx, x, mask):
            ctx.save_for_backward(mask)
            return x * mask

        @staticmethod
        def backward(ctx, g):
            (mask,) = ctx.saved_tensors
            return g * mask, None

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.l0, self.act = torch.nn.Linear(4, 5), Act()
            self.l2, self.l4 = torch.nn.Linear(5, 5), torch.nn.Linear(5, 2)
            self.register_buffer("mask", (torch.arange(5) % 3 != 0).double())

        def forward(self, x):
            return self.l4(Masked.apply(self.l2(self.act(self.l0(x))), self.mask))

    torch.manual_seed(0)
    report = gpt.check(Net().double(), torch.randn(6, 4, dtype=torch.float64))
    assert report.origin is not None and report.origin.layer == "act.WrongTanh", report
    assert report.origin.inherited == ("l0.weight", "l0.bias")


def test_a_plain_functions_own_code_is_named_as_a_functions():
    torch = pytest.importorskip("torch")
    import gradproof.torch as gpt

    Tanh = tanh_function(torch)  # (right)

    def f2(x, w):
        h = Tanh.apply(x @ w)
        return Tanh.apply(h + h.detach()).sum(1)  # the slip: half of h's gradient dropped

    torch.manual_seed(0)
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    report = gpt.check(f2, x, w)
    origin = report.origin
    assert origin is not None, report
    assert origin.where == "f2's own code, between the custom Functions it applies"
    assert "forward" not in origin.where and "submodules" not in origin.where


def test_checks_in_threads_leave_functions_and_other_threads_alone():
    torch = pytest.importorskip("torch")
    import gradproof.torch as gpt

    Act, _, _ = _torch_catalogue(torch)
    original = torch.autograd.Function.__dict__["apply"]
    z = torch.linspace(-1, 1, 5, dtype=torch.float64)
    seen: list[bool] = []

    def use():  # another thread applies the same Function while the checks run
        seen.append(torch.equal(Act()(z), torch.tanh(z)))

    def run(i):
        torch.manual_seed(i)
        model = torch.nn.Sequential(torch.nn.Linear(4, 5), Act(), torch.nn.Linear(5, 2))
        for _ in range(2):
            report = gpt.check(model.double(), torch.randn(6, 4, dtype=torch.float64))
            assert report.origin is not None

    beside(use, run, 3)
    assert torch.autograd.Function.__dict__["apply"] is original
    assert seen and all(seen)  # (never stopped, nor its output replaced)


def test_a_search_that_raises_leaves_the_verdict_and_says_so(monkeypatch):
    from gradproof import _narrow

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in the search")

    monkeypatch.setattr(_narrow, "narrow", broken)
    report = gp.check(cost, PARAMS, backward("relu2", intermediates=True))
    assert not report.passed and report.origin is not None  # (the layer order's)
    assert report.origin.layer == "2" and "narrowed" not in report.origin.evidence
    assert any("was not searched: the search raised RuntimeError" in w for w in report.warnings)

    torch = pytest.importorskip("torch")
    import gradproof.torch as gpt
    from gradproof.torch import _origin as torch_origin

    monkeypatch.setattr(torch_origin, "locate", broken)
    model, x = _sequential_with_a_wrong_backward(torch)
    report = gpt.check(model, x)
    assert not report.passed and "isolation" not in report.policy
    assert any("a bug in the search" in w for w in report.warnings)


def test_an_intercepted_method_is_restored_however_the_block_ends():
    from gradproof._intercept import intercepted

    class Rule:
        def __call__(self, x):
            return x + 1

        @classmethod
        def apply(cls, x):
            return x * 2

    original = Rule.__dict__["__call__"], Rule.__dict__["apply"]

    def doubled(owner, proceed, args, kwargs):
        return 2 * proceed(*args, **kwargs)

    with (
        pytest.raises(KeyboardInterrupt),
        intercepted(Rule, "__call__", doubled),
        intercepted(Rule, "apply", doubled),
    ):
        assert Rule()(1) == 4 and Rule.apply(3) == 12
        with intercepted(Rule, "__call__", doubled):  # (nested: the inner one answers)
            assert Rule()(1) == 4
        assert Rule()(1) == 4
        raise KeyboardInterrupt
    assert (Rule.__dict__["__call__"], Rule.__dict__["apply"]) == original
    assert Rule()(1) == 2 and Rule.apply(3) == 6
