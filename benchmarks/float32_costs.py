"""False alarms and misses on costs computed in float32, from float64 parameters.

Randomized costs that cast to float32 inside (``t.astype(np.float32)``): a sum
of sines, of squared tanh, or of cubes, scaled by 1e-9 to 1e-2, plus an offset
of 0, 1 or 100 that float32 carries. Many are too coarse to resolve their own
gradient at any step. Each is checked with its exact (float64) gradient, which
must pass, and with that gradient times 1.5, which must fail wherever the cost
resolves it at all.

    python benchmarks/float32_costs.py             # 3 seeds x 150 costs, a few seconds
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np

import gradproof as gp

f32 = np.float32


def case(rng: np.random.Generator, kind: int):
    """``(cost, exact gradient, theta)`` of one randomized float32 cost."""
    sc = float(10 ** rng.uniform(-9, -2))
    c = float(rng.choice([0.0, 1.0, 100.0]))
    k = float(10 ** rng.uniform(0, 1.5))
    theta = rng.uniform(-1, 1, 8)
    w = rng.standard_normal(8)
    if kind == 0:

        def cost(t):
            return float(f32(c) + np.sum(f32(sc) * w.astype(f32) * np.sin(f32(k) * t.astype(f32))))

        grad = sc * w * k * np.cos(k * theta)
    elif kind == 1:

        def cost(t):
            return float(f32(c) + f32(sc) * np.sum(np.tanh(f32(k) * t.astype(f32)) ** 2))

        grad = sc * 2 * np.tanh(k * theta) * k / np.cosh(k * theta) ** 2
    else:

        def cost(t):
            return float(f32(c) + f32(sc) * np.sum(w.astype(f32) * t.astype(f32) ** 3))

        grad = sc * 3 * w * theta**2
    return cost, grad, theta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--costs", type=int, default=150, help="costs per seed")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    alarms = caught = resolvable = total = 0
    for seed in range(5, 5 + args.seeds):
        rng = np.random.default_rng(seed)
        for n in range(args.costs):
            cost, grad, theta = case(rng, n % 3)
            right = gp.check(cost, theta, grad)
            wrong = gp.check(cost, theta, 1.5 * grad)
            total += 1
            alarms += not right.passed
            # resolvable: some partial stands out of what the finite differences resolve
            if any(t.pattern != "roundoff" for t in right.tensors.values()):
                resolvable += 1
                caught += not wrong.passed
    print(f"{total} correct float32 costs: {alarms} false alarms")
    print(f"{resolvable} of them resolve their gradient: x1.5 caught in {caught}")


if __name__ == "__main__":
    main()
