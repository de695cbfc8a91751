"""A digest of every report a fixed set of checks makes: to show a refactor changes no verdict.

Runs the planted-bug catalogue (``tests/helpers.py``) in full and directional mode, the
seeds' network (right, with their two bugs, with one slip in each backward line, with and
without the intermediates), coarse costs (rounded to float16, computed in float32), the
paths inside the modes (bisection, kinks, frozen entries, a non-finite gradient refused,
workers, the other schemes, sample mode, a domain edge), and, where installed, PyTorch and
JAX checks (higher orders, complex, float32, several outputs, the drop-ins, digested by
the reports they made); prints one line per check: its name and a digest of
``report.to_dict()`` without the time it took (``seconds``) and without
``policy["thresholds"]`` (the numbers it ran under, which a change to the policy's table
adds to). Two runs of the same verdicts print the same lines::

    python benchmarks/report_digest.py > /tmp/after.txt
    git worktree add /tmp/gp_before <commit>
    PYTHONPATH=/tmp/gp_before/src python benchmarks/report_digest.py > /tmp/before.txt
    diff /tmp/before.txt /tmp/after.txt && echo identical

``--show NAME`` prints that check's report as JSON instead, to see what differs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import gradproof as gp
from gradproof.examples import backward_propagation_n, forward_propagation_n, seed_case
from helpers import CATALOGUE, TwoLayerNet

Case = tuple[str, Callable[[], Any]]
DROPINS = "gradproof.torch._dropins"


def _numpy() -> Iterator[Case]:
    net = TwoLayerNet()
    for bug, *_ in CATALOGUE:
        for mode in ("full", "directional"):
            grads = net.backward(net.params, bug=bug)
            yield (
                f"catalogue {bug} {mode}",
                lambda g=grads, m=mode: gp.check(net.cost, net.params, g, mode=m),
            )
    yield "catalogue right", lambda: gp.check(net.cost, net.params, net.backward(net.params))
    X, Y, params = seed_case()
    _, cache = forward_propagation_n(X, Y, params)

    def cost(p: dict[str, np.ndarray]) -> Any:
        return forward_propagation_n(X, Y, p)

    for buggy in (False, True):
        grads = backward_propagation_n(X, Y, cache, buggy=buggy)
        yield f"seeds buggy={buggy}", lambda g=grads: gp.check(cost, params, g)
        yield f"seeds buggy={buggy} eps=1e-7", lambda g=grads: gp.check(cost, params, g, eps=1e-7)
    (_, A1, _, _, _, A2, W2, _, _, A3, W3, _) = cache
    m = X.shape[1]
    for key in ("dZ3", "dA2", "dZ2", "dA1", "dZ1"):
        # the seeds' backward with the line that makes ``key`` off by 1.1

        def s(name: str, value: np.ndarray, key: str = key) -> np.ndarray:
            return value * 1.1 if name == key else value

        dZ3 = s("dZ3", A3 - Y)
        dA2 = s("dA2", W3.T @ dZ3)
        dZ2 = s("dZ2", dA2 * (A2 > 0))
        dA1 = s("dA1", W2.T @ dZ2)
        dZ1 = s("dZ1", dA1 * (A1 > 0))
        made = {
            "dZ3": dZ3, "dW3": dZ3 @ A2.T / m, "db3": dZ3.sum(1, keepdims=True) / m,
            "dA2": dA2, "dZ2": dZ2, "dW2": dZ2 @ A1.T / m, "db2": dZ2.sum(1, keepdims=True) / m,
            "dA1": dA1, "dZ1": dZ1, "dW1": dZ1 @ X.T / m, "db1": dZ1.sum(1, keepdims=True) / m,
        }  # fmt: skip
        plain = {k: v for k, v in made.items() if k[1] in "Wb"}
        yield f"seeds slip {key}", lambda g=plain: gp.check(cost, params, g)
        yield f"seeds slip {key} lined", lambda g=made: gp.check(cost, params, g)
    flat_grads = {"w": np.ones(3)}
    for mode in ("full", "directional"):  # a cost that ignores its parameters
        yield (
            f"flat cost {mode}",
            lambda m=mode: gp.check(lambda p: 0.123456789, {"w": np.zeros(3)}, flat_grads, mode=m),
        )
    yield (
        "cost raises",
        lambda: gp.check(
            lambda p: 1 / 0 if p["w"][1] > 0.5 else float(p["w"] @ p["w"]),
            {"w": np.array([0.1, 0.5, 0.2])},
            {"w": np.array([0.2, 1.0, 0.4])},
            eps=1e-3,
        ),
    )
    # costs that make the comparison look again: faster than the step, near a pole, a kink
    x = np.linspace(0.1, 0.9, 8)
    w = np.linspace(0.3, 1.1, 8)
    for name, f, g in (
        ("fast", lambda p: float(np.sum(np.sin(1e6 * p * x))), 1e6 * x * np.cos(1e6 * w * x)),
        ("pole", lambda p: float(np.sum(1 / (p - 0.2999))), -1 / (w - 0.2999) ** 2),
        ("kink", lambda p: float(np.sum(np.abs(p - w[3]))), np.sign(w - w[3])),
    ):
        for factor in (1.0, 1.001):
            yield f"{name} cost x{factor}", lambda f=f, g=g * factor: gp.check(f, w, g)
    rng = np.random.default_rng(0)
    A = rng.standard_normal((6, 6))
    theta = rng.standard_normal(6)
    for dtype in ("float16", "float32"):

        def rounded(t: np.ndarray, d: str = dtype) -> float:
            return float(np.asarray(0.5 * t @ A @ t, dtype=d))

        g_right = 0.5 * (A + A.T) @ theta
        yield f"coarse {dtype} right", lambda r=rounded, g=g_right: gp.check(r, theta, g)
        yield f"coarse {dtype} wrong", lambda r=rounded, g=g_right: gp.check(r, theta, 1.3 * g)


def _paths() -> Iterator[Case]:
    """Paths inside the modes the cases above do not reach: bisection to several
    elements, kinks at 0, frozen and empty entries, a non-finite gradient, a noisy cost, float32
    and float16 costs, worker processes, the other schemes, sample mode, a domain edge."""
    rng = np.random.default_rng(3)
    w = {"W": rng.standard_normal((200, 300)), "b": rng.standard_normal(7)}

    def waves(p: dict[str, np.ndarray]) -> float:
        return float(np.sum(np.sin(p["W"])) + np.sum(p["b"] ** 2))

    for wrong in (1, 3, 40):
        grads = {"W": np.cos(w["W"]), "b": 2 * w["b"]}
        grads["W"].reshape(-1)[rng.choice(w["W"].size, wrong, replace=False)] += 1e-3
        yield f"bisect {wrong}", lambda g=grads: gp.check(waves, w, g, mode="directional")
    v = np.random.default_rng(0).standard_normal(200)

    def tanh32(p: np.ndarray) -> float:
        return float(np.sum(np.tanh(p.astype(np.float32))))

    for factor in (1.0, 1.0001):
        g32 = factor * (1 - np.tanh(v) ** 2)
        yield (
            f"float32 x{factor} directional",
            lambda g=g32: gp.check(tanh32, v, g, mode="directional"),
        )
    z = np.zeros(5)
    z[::2] = [0.3, -0.2, 0.7]
    for label, g in (("sign", np.sign(z)), ("wrong", 2 * np.sign(z))):
        for mode in ("full", "directional"):
            yield (
                f"abs kink {label} {mode}",
                lambda g=g, m=mode: gp.check(lambda p: float(np.sum(np.abs(p))), z, g, mode=m),
            )
    finite = np.array([0.1, np.nan, 0.3, np.inf])
    yield (
        "frozen some",
        lambda: gp.check(
            lambda p: float(np.sum(np.where(np.isfinite(p), p, 0) ** 2)),
            finite,
            np.where(np.isfinite(finite), 2 * finite, 0),
            mode="directional",
        ),
    )
    yield (
        "empty",
        lambda: gp.check(
            lambda p: float(np.sum(p["b"] ** 2)),
            {"a": np.zeros(0), "b": np.array([1.0, 2.0])},
            {"a": np.zeros(0), "b": np.array([2.0, 4.0])},
            mode="directional",
        ),
    )
    squares = np.arange(5.0)  # (refused before any mode runs: one case, not one per mode)
    yield (
        "nan grad refused",
        lambda: gp.check(
            lambda p: float(np.sum(p**2)), squares, np.array([0, 2, np.nan, 6, np.inf])
        ),
    )

    def noisy(p: np.ndarray) -> float:
        return float(np.sum(p**2) + 1e-9 * np.random.standard_normal())

    yield "noisy", lambda: np.random.seed(0) or gp.check(noisy, np.arange(6.0), 2 * np.arange(6.0))
    q = {"a": rng.standard_normal(6), "b": rng.standard_normal((3, 2))}
    right = {"a": np.cos(q["a"]), "b": 3 * q["b"] ** 2}
    slipped = {"a": np.cos(q["a"]), "b": 2.9 * q["b"] ** 2}

    def smooth(p: dict[str, Any]) -> Any:
        return np.sum(np.sin(p["a"])) + np.sum(p["b"] ** 3)

    def half(p: dict[str, Any]) -> float:
        return float(np.float16(smooth(p)))

    yield "workers", lambda: gp.check(lambda p: float(smooth(p)), q, slipped, executor=2)
    yield "complex step", lambda: gp.check(smooth, q, slipped, method="complex")
    yield (
        "forward scheme",
        lambda: gp.check(lambda p: float(smooth(p)), q, slipped, method="forward"),
    )
    yield "sample", lambda: gp.check(lambda p: float(smooth(p)), q, slipped, mode="sample", k=3)
    yield "float16 right", lambda: gp.check(half, q, right)
    yield "float16 eps", lambda: gp.check(half, q, slipped, eps=1e-2)
    edge = {"x": np.array([1e-9, 2.0, 3.0])}
    yield (
        "domain edge",
        lambda: gp.check(lambda p: float(np.sum(np.log(p["x"]))), edge, {"x": 1 / edge["x"]}),
    )


def _torch() -> Iterator[Case]:
    try:
        import torch

        import gradproof.torch as gpt
    except ImportError:
        return

    class WrongTanh(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Any) -> Any:
            y = torch.tanh(x)
            ctx.save_for_backward(y)
            return y

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            (y,) = ctx.saved_tensors
            return g * (1 - y)

    class Act(torch.nn.Module):
        def forward(self, x: Any) -> Any:
            return WrongTanh.apply(x)

    def model(act: Any) -> Any:
        torch.manual_seed(0)
        layers = [torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 5), act]
        return torch.nn.Sequential(*layers, torch.nn.Linear(5, 2)).double()

    class InfGrad(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Any) -> Any:
            return x * 2

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            return g * float("inf")

    x = torch.randn(6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for mode in ("full", "directional"):  # a derivative with inf: wrong as it is
        yield (
            f"torch inf gradient {mode}",
            lambda m=mode: gpt.check(
                lambda t: InfGrad.apply(t).sum(), x.clone().requires_grad_(True), mode=m
            ),
        )
    yield "torch right", lambda: gpt.check(model(torch.nn.Tanh()), x)
    yield "torch wrong Function", lambda: gpt.check(model(Act()), x)
    xs = x.clone().requires_grad_(True)
    yield "torch gradcheck", _reports_of(DROPINS, lambda: gp.torch.gradcheck(torch.sin, (xs,)))
    yield "torch modes", lambda: gpt.check(model(Act()), x, modes=("rev", "fwd"))
    ties = torch.relu(
        torch.randn(4, 1, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    )
    yield (
        "torch max-pool ties directional",
        lambda: gpt.check(torch.nn.MaxPool1d(2), ties.requires_grad_(True), mode="directional"),
    )
    # what the front-ends' adapters compose: higher orders, complex inputs and outputs,
    # lower precisions, several outputs, a drop-in's second order
    yield "torch order 3", lambda: gpt.check(model(torch.nn.Tanh()), x[:2], order=3)
    z = torch.randn(3, dtype=torch.complex128, generator=torch.Generator().manual_seed(2))
    zs = z.clone().requires_grad_(True)
    yield (
        "torch complex",
        _reports_of(DROPINS, lambda: gp.torch.gradcheck(lambda t: (t * t.conj() + t).exp(), (zs,))),
    )
    yield (
        "torch complex order 2",
        _reports_of(DROPINS, lambda: gp.torch.gradgradcheck(torch.sin, (zs,))),
    )
    x32 = x.float().requires_grad_(True)
    yield (
        "torch float32 two outputs",
        lambda: gpt.check(
            lambda t: (torch.tanh(t), t.sum(0) ** 2), x32, modes=("rev", "fwd"), order=2
        ),
    )


def _jax() -> Iterator[Case]:
    try:
        import jax
        import jax.numpy as jnp

        import gradproof.jax as gpj
    except ImportError:
        return

    @jax.custom_vjp
    def softplus(x: Any) -> Any:
        return jnp.logaddexp(x, 0.0)

    softplus.defvjp(lambda x: (softplus(x), x), lambda x, g: (2 * g * jax.nn.sigmoid(x),))
    rng = np.random.default_rng(0)
    p = {"W": rng.standard_normal((3, 4)), "v": rng.standard_normal(4)}
    X = rng.standard_normal((5, 3))

    def right(p: Any) -> Any:
        return jnp.sum(jnp.tanh(X @ p["W"]) @ p["v"])

    def wrong(p: Any) -> Any:
        return jnp.sum(softplus(X @ p["W"]) @ p["v"])

    yield "jax right", lambda: gpj.check(right, p)
    yield "jax wrong rule", lambda: gpj.check(wrong, p)
    yield "jax order 2", lambda: gpj.check(right, p, order=2, modes=("rev", "fwd"))
    yield "jax order 3 fwd", lambda: gpj.check(right, p, order=3, modes=("fwd",))
    yield "jax wrong rule order 2", lambda: gpj.check(wrong, p, order=2)
    zc = {"z": (rng.standard_normal(3) + 1j * rng.standard_normal(3)).astype(np.complex128)}
    yield "jax complex", lambda: gpj.check(lambda q: jnp.sum(jnp.abs(jnp.sin(q["z"])) ** 2), zc)
    p32 = {k: v.astype(np.float32) for k, v in p.items()}
    yield (
        "jax float32 two outputs",
        lambda: gpj.check(lambda q: (jnp.tanh(X @ q["W"]), jnp.sum(q["v"] ** 3)), p32, order=2),
    )

    from jax.test_util import check_grads as _  # noqa: F401  (the drop-in's reference)

    def log_of(a: Any) -> Any:  # nan at the negative elements: left out, as JAX does
        return jnp.log(a) * 2.0

    a = np.array([0.5, -1.0, 2.0, 3.0])
    yield (
        "jax check_grads nan outputs",
        _reports_of(
            "gradproof.jax._dropin",
            lambda: gpj.check_grads(log_of, (a,), order=2, modes=("fwd", "rev")),
        ),
    )


def _reports_of(module: str, call: Callable[[], Any]) -> Callable[[], Any]:
    """A drop-in's call, giving the reports it made (its ``check_all`` calls) and what it
    returned, instead of the bool or ``None`` its own convention returns."""

    def run() -> Any:
        import importlib

        where = importlib.import_module(module)
        original, made = where.check_all, []

        def recorded(*args: Any, **kwargs: Any) -> Any:
            made.append(original(*args, **kwargs))
            return made[-1]

        where.check_all = recorded
        try:
            returned = call()
        except Exception as exc:  # (a failed drop-in raises: its reports are the record)
            returned = type(exc).__name__
        finally:
            where.check_all = original
        return _Several([*made, returned])

    return run


class _Several:
    def __init__(self, items: list[Any]):
        self.items = items

    def to_dict(self) -> dict[str, Any]:
        return {str(i): _stable(x) for i, x in enumerate(self.items)}


def _stable(report: Any) -> dict[str, Any]:
    data = report.to_dict() if hasattr(report, "to_dict") else {"returned": repr(report)}
    data.pop("seconds", None)
    data.get("policy", {}).pop("thresholds", None)
    return data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--show", help="print this check's report (JSON) instead")
    args = parser.parse_args()
    np.seterr(all="ignore")
    for name, run in [*_numpy(), *_paths(), *_torch(), *_jax()]:
        try:
            data = _stable(run())
        except Exception as exc:  # (a check that raises is a result too)
            data = {"raised": f"{type(exc).__name__}: {exc}"}
        text = json.dumps(data, sort_keys=True, default=str)
        if args.show:
            if name == args.show:
                print(json.dumps(data, sort_keys=True, indent=1, default=str))
            continue
        print(f"{name:40s} {hashlib.sha256(text.encode()).hexdigest()[:16]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
