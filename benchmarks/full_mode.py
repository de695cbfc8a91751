"""Full-mode speed on the seeds' L-layer network: gradproof against its floor and the seeds' loop.

The floor of a black-box central-difference check is 2n cost evaluations; the
seeds' loop copies the whole parameter vector and rebuilds the dict for each
of them. Everything is timed in this one run, as medians of --repeats runs.

    python benchmarks/full_mode.py            # [12288, 5, 5, 1], one example: 61,481 parameters
    python benchmarks/full_mode.py --quick    # [1024, 5, 5, 1], for a fast look

A second table holds the ratio to the floor for cheap and dearer costs (about
5 us, 20 us and 200 us per evaluation): the per-coordinate overhead of the
check shows most on the cheapest.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import gradproof as gp
from gradproof import nn


def seeds_gradient_check(parameters, gradients, cost, layers_dims, epsilon=1e-7):
    """The seed document's gradient_check, copy per coordinate (their code, condensed)."""
    keys = list(parameters)
    theta = np.concatenate([parameters[k].reshape(-1, 1) for k in keys])
    grad = np.concatenate([gradients["d" + k].reshape(-1, 1) for k in keys])

    def vector_to_dictionary(vector):
        out, k = {}, 0
        for layer in range(1, len(layers_dims)):
            w = layers_dims[layer] * layers_dims[layer - 1]
            b = layers_dims[layer]
            out[f"W{layer}"] = vector[k : k + w].reshape(layers_dims[layer], layers_dims[layer - 1])
            out[f"b{layer}"] = vector[k + w : k + w + b].reshape(b, 1)
            k += w + b
        return out

    approx = np.zeros_like(theta)
    for i in range(len(theta)):
        plus = np.copy(theta)
        plus[i] += epsilon
        j_plus = cost(vector_to_dictionary(plus))
        minus = np.copy(theta)
        minus[i] -= epsilon
        j_minus = cost(vector_to_dictionary(minus))
        approx[i] = (j_plus - j_minus) / (2 * epsilon)
    return np.linalg.norm(grad - approx) / (np.linalg.norm(grad) + np.linalg.norm(approx))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 1024-input network instead")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    n_x = 1024 if args.quick else 12288
    dims = [n_x, 5, 5, 1]
    rng = np.random.default_rng(0)
    x = rng.random((n_x, 1))  # one example, pixel-like values, as the seeds check
    y = np.array([[1.0]])
    params = nn.initialize_parameters(dims, method="random", seed=0)
    AL, caches = nn.L_model_forward(x, params, "tanh")
    grads = nn.L_model_backward(AL, y, caches, "tanh")

    def cost(p):
        return nn.compute_cost(nn.L_model_forward(x, p, "tanh")[0], y)

    n = sum(v.size for v in params.values())
    print(f"network {dims}, one example, {n:,} parameters, {args.repeats} repeats (medians)")

    floors, checks, seeds = [], [], []
    for _ in range(args.repeats):
        t = time.perf_counter()
        for _ in range(2 * n):  # the floor itself, not an extrapolation
            cost(params)
        floors.append(time.perf_counter() - t)

        t = time.perf_counter()
        report = gp.check(cost, params, grads, progress=False)
        checks.append(time.perf_counter() - t)
        assert report.passed, str(report)

        t = time.perf_counter()
        seeds_gradient_check(params, grads, cost, dims)
        seeds.append(time.perf_counter() - t)

    floor, check, seed = (statistics.median(v) for v in (floors, checks, seeds))
    print(f"  one cost evaluation        {floor / (2 * n) * 1e6:8.1f} us")
    print(f"  floor: 2n evaluations      {floor:8.2f} s")
    print(
        f"  gradproof full check       {check:8.2f} s   {check / floor:.3f}x the floor "
        f"(target <= 1.15x); {report.evaluations:,} evaluations"
    )
    print(f"  seeds' copy-per-coordinate {seed:8.2f} s   {seed / floor:.3f}x the floor")
    print(f"  speed-up over the seeds' loop: {seed / check:.2f}x (target >= 1.7x)")


def by_cost(repeats: int) -> None:
    """The check against its 2n floor on costs of about 5 us, 20 us and 200 us."""
    rng = np.random.default_rng(1)
    cases = []

    w, q = rng.standard_normal(4000), rng.standard_normal(4000)
    grad = q.copy()
    grad[:150] += np.cos(w[:150])
    cases.append(
        (
            "w.q + sum(sin(w[:150])), 4,000 w",
            lambda p: float(p @ q) + float(np.sum(np.sin(p[:150]))),
            w,
            grad,
        )
    )

    X = rng.standard_normal((256, 4))
    Y = (rng.random((1, 4)) > 0.5).astype(float)
    params = nn.initialize_parameters([256, 16, 1], seed=1)
    AL, caches = nn.L_model_forward(X, params, "tanh")
    cases.append(
        (
            "MLP [256, 16, 1], batch 4, 4,129 params",
            lambda p: nn.compute_cost(nn.L_model_forward(X, p, "tanh")[0], Y),
            params,
            nn.L_model_backward(AL, Y, caches, "tanh"),
        )
    )

    v = rng.standard_normal(1000)
    heavy = rng.standard_normal(80000)  # work the cost does that the parameters do not change
    cases.append(
        (
            "sum(sin(v)) + fixed work, 1,000 v",
            lambda p: float(np.sum(np.sin(p))) + 1e-3 * float(np.sum(np.tanh(heavy))),
            v,
            np.cos(v),
        )
    )

    print("\ncost per evaluation     floor      check     ratio (target <= 1.15x)")
    for label, cost, params, grads in cases:
        n = sum(np.size(x) for x in (params.values() if isinstance(params, dict) else [params]))
        floors, checks = [], []
        for _ in range(repeats):
            t = time.perf_counter()
            for _ in range(2 * n):
                cost(params)
            floors.append(time.perf_counter() - t)
            t = time.perf_counter()
            report = gp.check(cost, params, grads, progress=False)
            checks.append(time.perf_counter() - t)
            assert report.passed, str(report)
        floor, check = statistics.median(floors), statistics.median(checks)
        print(
            f"  {floor / (2 * n) * 1e6:6.1f} us  {floor:8.3f} s  {check:8.3f} s  "
            f"{check / floor:6.3f}x   {label}"
        )


if __name__ == "__main__":
    main()
    by_cost(repeats=5)
