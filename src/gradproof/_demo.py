"""``gradproof demo``: the seed documents' story, end to end, in well under a minute."""

from __future__ import annotations

import time
from typing import Any, TextIO

import numpy as np

from . import _policy
from ._check import check, derivative
from ._format import show
from .examples import backward_propagation_n, forward_propagation_n, seed_case

DESCRIPTION = """\
Tells the story of the seed documents on gradient checking, end to end:
  1. numerical derivatives of x^2 at 3: two-sided against right-hand;
  2. the 1-D check of J(theta) = theta * x;
  3. the seeds' 3-layer network with their planted bug (dW2 doubled, db1
     quadrupled): gradproof names both parameters and the factors;
  4. the same network fixed, at the seeds' step eps = 1e-7 (difference 1.19e-7,
     above their 1e-7 threshold from round-off alone: gradproof passes it and
     says why) and at gradproof's automatic step (1.65e-9);
  5. one slip in the same backward (layer 2's ReLU mask written wrong): four
     gradients come out wrong, and gradproof says where the one error enters
     and which line to fix;
  6. the seeds' L-layer network ([n_x, 5, 5, 1], tanh and relu hidden layers,
     sigmoid output, cross-entropy) checked on one example of a real data set
     (breast cancer diagnosis, shipped with scikit-learn), then trained on it;
  7. a layer model (Dense, ReLU, Dropout) on handwritten digits: its backward
     proven, then trained to over 95% test accuracy.
"""


def _section(out: TextIO, title: str) -> None:
    out.write(f"\n== {title}\n")


def tell(out: TextIO) -> int:
    started = time.perf_counter()
    w = out.write
    w("gradproof demo: proving backpropagation right, or showing where it is wrong\n")

    _section(out, "1. Two ways to differentiate numerically: f(x) = x^2 at x = 3 (f'(3) = 6)")
    central = derivative(lambda x: x**2, 3.0, eps=1e-2)
    forward = derivative(lambda x: x**2, 3.0, method="forward", eps=1e-2)
    w(f"   two-sided  (f(3+e) - f(3-e)) / 2e = {central!r:<20} error {abs(central - 6):.1e}\n")
    w(f"   right-hand (f(3+e) - f(3)) / e    = {forward!r:<20} error {abs(forward - 6):.1e}\n")
    w("   with e = 1e-2. The two-sided form's error shrinks as e^2, the right-hand's as e:\n")
    w("   gradproof uses two-sided (central) differences by default.\n")

    _section(out, "2. A 1-D check: J(theta) = theta * x, x = 2, theta = 4, eps = 1e-7")
    x = 2.0
    one_d = check(lambda theta: theta * x, 4.0, lambda theta: x, eps=1e-7)
    w(f"   difference {one_d.difference:.3e}: {'passed' if one_d.passed else 'FAILED'}\n")
    w("   gp.check(lambda theta: theta * x, 4.0, lambda theta: x, eps=1e-7)\n")

    X, Y, parameters = seed_case()
    _, cache = forward_propagation_n(X, Y, parameters)

    def cost(p: dict[str, np.ndarray]) -> tuple[float, tuple[Any, ...]]:
        return forward_propagation_n(X, Y, p)

    _section(out, "3. The seeds' network, LINEAR-RELU-LINEAR-RELU-LINEAR-SIGMOID, with their bug")
    w("   backward_propagation_n doubles dW2 and quadruples db1. At the seeds' eps = 1e-7:\n\n")
    buggy = check(cost, parameters, backward_propagation_n(X, Y, cache, buggy=True), eps=1e-7)
    show(buggy, out, indent=3)
    w(
        "\n   The seeds' code prints one number (0.2850931567761623) and a hint to look at\n"
        "   dW2 and db1; gradproof finds both, with the factors, and clears the rest.\n"
    )

    _section(out, "4. Fixed: the step matters")
    fixed_grads = backward_propagation_n(X, Y, cache)
    seed_step = check(cost, parameters, fixed_grads, eps=1e-7)
    auto = check(cost, parameters, fixed_grads)
    w(
        f"   eps = 1e-7 (the seeds'):  difference {seed_step.difference:.3e}, above their own\n"
        "      threshold of 1e-7 although the code is right: at so small a step the cost's\n"
        "      round-off, divided by 2e-7, dominates. The seeds' literal rule would fail it\n"
        f"      (report.strict is {seed_step.strict}); gradproof measures that round-off, blames\n"
        f"      no parameter, and passes it (report.passed is {seed_step.passed}):\n\n"
    )
    show(seed_step, out, indent=3)
    w("\n")
    w(
        f"   eps = automatic:          difference {auto.difference:.3e}, "
        f"{'passed' if auto.passed else 'FAILED'}.\n"
        f"      The step {_policy.SCHEMES['central'].step_factor:.2g} * max(1, |theta|) balances "
        "truncation error (~h^2)\n      against round-off (~1/h) for each coordinate.\n\n"
    )
    show(auto, out, indent=3)
    one_cause = _one_slip(out, X, Y, parameters, cache, cost)

    _section(out, "6. The L-layer network on real data: breast cancer diagnosis")
    try:
        from .nn import load_breast_cancer
        from .nn._functional import (
            L_layer_model,
            L_model_backward,
            L_model_forward,
            accuracy,
            compute_cost,
            initialize_parameters,
        )

        X_train, Y_train, X_test, Y_test = load_breast_cancer()
    except ImportError as exc:
        w(f"   skipped: {exc}\n")
        ok = bool(buggy.failing) and seed_step.passed and auto.strict and one_cause
        return _done(out, started, ok=ok)

    n_x = X_train.shape[0]
    pick = int(np.random.default_rng(0).integers(X_train.shape[1]))
    x1, y1 = X_train[:, [pick]], Y_train[:, [pick]]
    w(
        f"   {X_train.shape[1]} training and {X_test.shape[1]} test tumours, {n_x} features each;"
        f" checking on\n   one example (#{pick}), as the seeds do, with layers [{n_x}, 5, 5, 1].\n"
    )
    all_passed = True
    for act in ("tanh", "relu"):
        params = initialize_parameters([n_x, 5, 5, 1], seed=1)
        AL, caches = L_model_forward(x1, params, act)
        grads = L_model_backward(AL, y1, caches, act)

        def network_cost(p: dict[str, np.ndarray], act: str = act) -> float:
            return float(compute_cost(L_model_forward(x1, p, act)[0], y1))

        report = check(network_cost, params, grads)
        all_passed &= report.passed
        n_coords = sum(t.checked for t in report.tensors.values())
        w(
            f"   {act:<5} hidden layers: {n_coords} parameters, difference "
            f"{report.difference:.2e}, {'passed' if report.passed else 'FAILED'} "
            f"({report.evaluations} cost evaluations, {report.seconds:.2f} s)\n"
        )
    w("   Backprop proven, the network is trained (full-batch gradient descent):\n")
    for act in ("tanh", "relu"):
        params, costs = L_layer_model(X_train, Y_train, [n_x, 5, 5, 1], act, 0.1, 1500)
        acc = accuracy(X_test, Y_test, params, act)
        w(
            f"   {act:<5}: cost {costs[0]:.3f} -> {costs[-1]:.3f} over 1500 steps, "
            f"test accuracy {acc:.1%}\n"
        )
    all_passed &= _digits(out)
    ok = bool(buggy.failing) and seed_step.passed and not seed_step.strict and auto.strict
    return _done(out, started, ok=ok and all_passed and one_cause)


def _one_slip(
    out: TextIO,
    X: np.ndarray,
    Y: np.ndarray,
    parameters: dict[str, np.ndarray],
    cache: tuple[Any, ...],
    cost: Any,
) -> bool:
    """Section 5: the seeds' backward with layer 2's ReLU mask written wrong, and where
    gradproof says the one error enters. Returns whether it named layer 2."""
    w = out.write
    _section(out, "5. One slip, one cause: layer 2's ReLU mask written wrong")
    w(
        "   In backward_propagation_n, dZ2 = np.multiply(dA2, np.int64(A2 > 0)) becomes\n"
        "   dZ2 = np.multiply(dA2, np.int64(Z2 > 0.5)). Every gradient made from dZ2 is wrong:\n\n"
    )
    (_, A1, _, _, Z2, A2, W2, _, _, A3, W3, _) = cache
    m = X.shape[1]
    dZ3 = A3 - Y
    dA2 = W3.T @ dZ3
    dZ2 = dA2 * (Z2 > 0.5)  # the slip
    dA1 = W2.T @ dZ2
    dZ1 = dA1 * (A1 > 0)
    grads = {  # (with the intermediates, as the seeds' backward returns them)
        "dZ3": dZ3,
        "dW3": dZ3 @ A2.T / m,
        "db3": dZ3.sum(axis=1, keepdims=True) / m,
        "dA2": dA2,
        "dZ2": dZ2,
        "dW2": dZ2 @ A1.T / m,
        "db2": dZ2.sum(axis=1, keepdims=True) / m,
        "dA1": dA1,
        "dZ1": dZ1,
        "dW1": dZ1 @ X.T / m,
        "db1": dZ1.sum(axis=1, keepdims=True) / m,
    }
    report = check(cost, parameters, grads)
    show(report, out, indent=3)
    origin = report.origin
    if origin is None:
        w("\n   (no single origin found)\n")
        return False
    w(
        f"\n   Four wrong parameters, one cause. {', '.join(origin.right)} are right; "
        f"{', '.join(origin.inherited)} only inherit the error.\n"
        "   The layer order puts it in layer 2's backward. The forward's cache (returned\n"
        "   beside the cost) and the intermediates the backward returns (dA2, dZ2) put it\n"
        "   on one line: each line is recomputed from what it was handed and compared with\n"
        f"   what it made. It enters at {origin.where}.\n   The line to fix:\n"
        "      dZ2 = np.multiply(dA2, np.int64(A2 > 0))   # not (Z2 > 0.5)\n"
    )
    return origin.layer == "2" and "dZ2 = dA2" in origin.where


def _digits(out: TextIO) -> bool:
    from .nn import load_digits

    _section(out, "7. Beyond the seeds: a layer model on handwritten digits (10 classes)")
    X_train, y_train, X_test, y_test = load_digits()
    state = np.random.get_state()  # dropout draws from np.random: fixed for a repeatable demo
    np.random.seed(0)
    try:
        return _train_digits(out, X_train, y_train, X_test, y_test)
    finally:
        np.random.set_state(state)


def _train_digits(
    out: TextIO, X_train: np.ndarray, y_train: np.ndarray, X_test: np.ndarray, y_test: np.ndarray
) -> bool:
    from .nn import Adam, Dense, Dropout, ReLU, Sequential, SoftmaxCrossEntropy, fit

    model = Sequential(Dense(64, 64, seed=0), ReLU(), Dropout(0.9), Dense(64, 10, seed=1))
    report = model.gradient_check(X_train[:8], y_train[:8], SoftmaxCrossEntropy())
    out.write(
        f"   Sequential(Dense(64, 64), ReLU, Dropout(0.9), Dense(64, 10)): backward "
        f"{'proven' if report.passed else 'WRONG'} on 8 images, dropout mask replayed "
        f"(difference {report.difference:.1e}, {report.evaluations} evaluations)\n"
    )
    history = fit(
        model,
        X_train,
        y_train,
        SoftmaxCrossEntropy(),
        Adam(0.01),
        epochs=30,
        batch_size=32,
        progress=False,
    )
    acc = model.accuracy(X_test, y_test)
    out.write(
        f"   trained with Adam for 30 epochs: cost {history[0]:.3f} -> {history[-1]:.3f}, "
        f"test accuracy {acc:.1%} on {len(y_test)} unseen digits\n"
    )
    return report.passed and acc >= 0.95


def _done(out: TextIO, started: float, ok: bool) -> int:
    out.write(f"\nDone in {time.perf_counter() - started:.1f} s.\n")
    if not ok:
        out.write("Something in the demo did not come out as expected: please report it.\n")
    return 0 if ok else 1
