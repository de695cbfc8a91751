"""Directional mode on a 5.3M-parameter MLP: correct, one matrix doubled, one element wrong.

[4096, 1024, 1024, 10] ReLU MLP, softmax cross-entropy, batch 8, float64. A
full check would need 2n = 10.6M evaluations; directional mode needs a few
hundred. Every case prints its verdict, what was named, evaluations and time.

    python benchmarks/directional.py
    python benchmarks/directional.py --small     # [512, 128, 128, 10], for a fast look
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import gradproof as gp


def mlp(dims: list[int], batch: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((dims[0], batch))
    labels = rng.integers(dims[-1], size=batch)
    params = {}
    for i in range(1, len(dims)):
        params[f"W{i}"] = rng.standard_normal((dims[i], dims[i - 1])) * np.sqrt(2 / dims[i - 1])
        params[f"b{i}"] = rng.standard_normal((dims[i], 1)) * 0.1
    L = len(dims) - 1

    def forward(p):
        A, cache = X, []
        for i in range(1, L + 1):
            Z = p[f"W{i}"] @ A + p[f"b{i}"]
            cache.append((A, Z))
            A = np.maximum(Z, 0.0) if i < L else Z
        Z = A - A.max(axis=0, keepdims=True)
        logp = Z - np.log(np.exp(Z).sum(axis=0, keepdims=True))
        cost = -logp[labels, np.arange(batch)].mean()
        return cost, (cache, np.exp(logp))

    def cost(p):
        return forward(p)[0]

    def grads(p):
        _, (cache, probs) = forward(p)
        dZ = probs.copy()
        dZ[labels, np.arange(batch)] -= 1
        dZ /= batch
        g = {}
        for i in range(L, 0, -1):
            A_prev, Z = cache[i - 1]
            if i < L:
                dZ = dZ * (Z > 0)
            g[f"dW{i}"] = dZ @ A_prev.T
            g[f"db{i}"] = dZ.sum(axis=1, keepdims=True)
            dZ = p[f"W{i}"].T @ dZ
        return g

    return params, cost, grads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true")
    args = parser.parse_args()
    dims = [512, 128, 128, 10] if args.small else [4096, 1024, 1024, 10]
    params, cost, grads = mlp(dims, batch=8)
    n = sum(v.size for v in params.values())
    t = time.perf_counter()
    for _ in range(5):
        cost(params)
    per_eval = (time.perf_counter() - t) / 5
    print(f"MLP {dims}, batch 8: {n:,} parameters, {per_eval * 1e3:.1f} ms per cost evaluation")
    print(
        f"a full check would take about {2 * n * per_eval / 3600:.1f} h ({2 * n:,} evaluations)\n"
    )

    correct = grads(params)
    doubled = dict(correct, dW2=2 * correct["dW2"])
    one = dict(correct, dW1=correct["dW1"].copy())
    where = (517 % dims[1], 3001 % dims[0])
    one["dW1"][where] += 1e-3
    cases = [
        ("correct gradient", correct, set(), None),
        ("dW2 doubled", doubled, {"W2"}, "2.00 × numeric"),
        (f"dW1{list(where)} off by 1e-3", one, {"W1"}, f"W1[{where[0]}, {where[1]}]"),
    ]
    for label, g, expect, words in cases:
        t = time.perf_counter()
        report = gp.check(cost, params, g, mode="directional", progress=False)
        seconds = time.perf_counter() - t
        named = {x.name for x in report.failing}
        ok = named == expect and (words is None or words in str(report))
        verdict = (
            "passed"
            if report.passed
            else "failed: " + ", ".join(f"{x.name} ({x.diagnosis})" for x in report.failing)
        )
        print(
            f"{label:26s} {seconds:6.2f} s  {report.evaluations:4d} evaluations  "
            f"{'as expected' if ok else 'UNEXPECTED'}\n    {verdict}"
        )


if __name__ == "__main__":
    main()
