"""Coarse costs: right gradients passed, wrong ones never, and what is left undecided.

Randomized costs of float64 parameters whose values are coarse: computed in float32
inside (``t.astype(np.float32)``), rounded to float16, or rounded to an integer after
scaling. Each is a sum of sines, of squared tanh, or of cubes, scaled by 1e-9 to 1e-2
(the float32 family; 1e-3 to 1e1 for float16; 10 to 1e5 for integers), plus an offset
of 0, 1 or 100 that the cost carries. Many are too coarse to resolve their own
gradient at any step. Each is checked with its exact (float64) gradient, which must
pass or be undecided, and with that gradient times 1.5, which must fail or be
undecided: never pass.

Side by side on the same costs and gradients: ``torch.autograd.gradcheck`` (the cost
wrapped in an ``autograd.Function`` whose backward returns the gradient under test,
its default tolerances) and numdifftools' ``Gradient`` with its own error estimate (a
gradient passes when it is within 4 error estimates of numdifftools' everywhere).
Either is left out when not installed.

    python benchmarks/float32_costs.py             # 3 families x 3 seeds x 150 costs, ~1 min
"""

from __future__ import annotations

import argparse
import collections
import re
import warnings
from collections.abc import Callable

import numpy as np

import gradproof as gp

f32, f16 = np.float32, np.float16
FAMILIES = ("float32", "float16", "integer")


def case(rng: np.random.Generator, kind: int, family: str):
    """``(cost, exact gradient, theta)`` of one randomized coarse cost."""
    low, high = {"float32": (-9, -2), "float16": (-3, 1), "integer": (1, 5)}[family]
    sc = float(10 ** rng.uniform(low, high))
    c = float(rng.choice([0.0, 1.0, 100.0]))
    k = float(10 ** rng.uniform(0, 1.5))
    theta = rng.uniform(-1, 1, 8)
    w = rng.standard_normal(8)
    if kind == 0:
        smooth = lambda t: np.sum(w * np.sin(k * t))  # noqa: E731
        grad = sc * w * k * np.cos(k * theta)
    elif kind == 1:
        smooth = lambda t: np.sum(np.tanh(k * t) ** 2)  # noqa: E731
        grad = sc * 2 * np.tanh(k * theta) * k / np.cosh(k * theta) ** 2
    else:
        smooth = lambda t: np.sum(w * t**3)  # noqa: E731
        grad = sc * 3 * w * theta**2
    if family == "float32":
        wf = w.astype(f32)
        inner = [
            lambda t: np.sum(f32(sc) * wf * np.sin(f32(k) * t.astype(f32))),
            lambda t: f32(sc) * np.sum(np.tanh(f32(k) * t.astype(f32)) ** 2),
            lambda t: f32(sc) * np.sum(wf * t.astype(f32) ** 3),
        ][kind]

        def cost(t):
            return float(f32(c) + inner(t))
    elif family == "float16":

        def cost(t):
            return float(f16(c + sc * smooth(t)))
    else:

        def cost(t):
            return float(np.round(c + sc * smooth(t)))

    return cost, grad, theta


def verdict(report: gp.Report) -> str:
    if report.passed:
        return "passed"
    return "undecided" if len(report.undecided) == len(report.failing) else "failed"


def reason(report: gp.Report) -> str:
    """An undecided report's cause, with its numbers blanked, to count alike ones."""
    finding = report.undecided[0].finding or ""
    return re.sub(r"[-+]?\d[\d.e+-]*", "#", finding.split(", and at")[0])


def torch_gradcheck() -> Callable | None:
    try:
        import torch
    except ImportError:
        return None

    def check(cost: Callable, theta: np.ndarray, grad: np.ndarray) -> bool:
        class Cost(torch.autograd.Function):
            @staticmethod
            def forward(ctx, t):
                return torch.tensor(cost(t.detach().numpy()), dtype=torch.float64)

            @staticmethod
            def backward(ctx, out):
                return out * torch.from_numpy(grad)

        t = torch.tensor(theta, dtype=torch.float64, requires_grad=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                return bool(torch.autograd.gradcheck(Cost.apply, (t,), raise_exception=False))
            except Exception:
                return False

    return check


def numdifftools_check() -> Callable | None:
    try:
        import numdifftools as nd
    except ImportError:
        return None

    def check(cost: Callable, theta: np.ndarray, grad: np.ndarray) -> bool:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = nd.Gradient(cost, full_output=True)(theta)
        numerical = np.asarray(result[0]).reshape(-1)
        error = np.asarray(result[1]).reshape(-1)
        return bool(np.all(np.abs(grad - numerical) <= 4 * error + 1e-7 * np.abs(grad)))

    return check


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--costs", type=int, default=150, help="costs per seed and family")
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    others = {"torch gradcheck": torch_gradcheck(), "numdifftools": numdifftools_check()}
    others = {name: fn for name, fn in others.items() if fn is not None}
    header = (
        f"{'family':<9} {'costs':>5}  {'right: passed':>13} {'undecided':>9} {'FAILED':>6}  "
        f"{'x1.5: caught':>12} {'undecided':>9} {'PASSED':>6}"
    )
    header += "".join(f"  {name + ': right ok / x1.5 caught':>36}" for name in others)
    print(header)
    reasons: dict[str, collections.Counter] = {}
    for family in args.families:
        right, wrong = collections.Counter(), collections.Counter()
        theirs = {name: [0, 0] for name in others}
        reasons[family] = collections.Counter()
        total = 0
        for seed in range(5, 5 + args.seeds):
            rng = np.random.default_rng(seed)
            for n in range(args.costs):
                cost, grad, theta = case(rng, n % 3, family)
                total += 1
                r = gp.check(cost, theta, grad)
                w = gp.check(cost, theta, 1.5 * grad)
                right[verdict(r)] += 1
                wrong[verdict(w)] += 1
                for report in (r, w):
                    if verdict(report) == "undecided":
                        reasons[family][reason(report)] += 1
                for name, fn in others.items():
                    theirs[name][0] += fn(cost, theta, grad)
                    theirs[name][1] += not fn(cost, theta, 1.5 * grad)
        line = (
            f"{family:<9} {total:>5}  {right['passed']:>13} {right['undecided']:>9} "
            f"{right['failed']:>6}  {wrong['failed']:>12} {wrong['undecided']:>9} "
            f"{wrong['passed']:>6}"
        )
        line += "".join(f"  {f'{ok} / {caught}':>36}" for ok, caught in theirs.values())
        print(line, flush=True)
    print("\nundecided, by reason (right and x1.5 checks together):")
    for family, counter in reasons.items():
        for why, count in counter.most_common():
            print(f"  {family:<9} {count:>4}  {why}")


if __name__ == "__main__":
    main()
