"""Full mode on worker processes against in-process, with the machine's default settings.

No thread variables are set: in-process, BLAS uses every core; each worker is
held (threadpoolctl) to cores / workers threads, so workers never
oversubscribe the machine. Two costs, timed side by side in one run (medians
of --repeats):

- the seeds' L-layer network [12288, 5, 5, 1] on one example: many cheap
  evaluations, where 2 workers should be >= 1.7x in-process;
- a BLAS-heavy MLP [64, 64, 10] on a batch of 256: where in-process BLAS
  threads already use the cores, and workers must not be slower.

    python benchmarks/workers.py
    python benchmarks/workers.py --quick      # smaller first network
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

import gradproof as gp
from gradproof import nn


def seeds_network(n_x: int):
    rng = np.random.default_rng(0)
    x = rng.random((n_x, 1))
    y = np.array([[1.0]])
    params = nn.initialize_parameters([n_x, 5, 5, 1], method="random", seed=0)
    AL, caches = nn.L_model_forward(x, params, "tanh")
    grads = nn.L_model_backward(AL, y, caches, "tanh")

    def cost(p):
        return nn.compute_cost(nn.L_model_forward(x, p, "tanh")[0], y)

    return f"seeds' network [{n_x}, 5, 5, 1], one example", cost, params, grads


def blas_heavy_mlp():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((64, 256))
    Y = (rng.random((1, 256)) > 0.5).astype(float)
    params = nn.initialize_parameters([64, 64, 10, 1], method="he", seed=1)
    AL, caches = nn.L_model_forward(X, params, "tanh")
    grads = nn.L_model_backward(AL, Y, caches, "tanh")

    def cost(p):
        return nn.compute_cost(nn.L_model_forward(X, p, "tanh")[0], Y)

    return "BLAS-heavy MLP [64, 64, 10, 1], batch 256", cost, params, grads


def compare(title, cost, params, grads, repeats: int) -> None:
    n = sum(v.size for v in params.values())
    print(f"{title}: {n:,} parameters, {os.cpu_count()} cores, medians of {repeats}")
    times: dict[str, list[float]] = {"in-process": [], "2 workers": []}
    reports = {}
    for _ in range(repeats):
        for label, executor in (("in-process", None), ("2 workers", 2)):
            t = time.perf_counter()
            reports[label] = gp.check(cost, params, grads, executor=executor, progress=False)
            times[label].append(time.perf_counter() - t)
    same = all(
        np.array_equal(reports["2 workers"].numerical[k], reports["in-process"].numerical[k])
        for k in params
    )
    med = {k: statistics.median(v) for k, v in times.items()}
    for label, seconds in med.items():
        print(f"  {label:11s} {seconds:7.2f} s")
    print(
        f"  2 workers: {med['in-process'] / med['2 workers']:.2f}x in-process; "
        f"numbers identical: {same}\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a 2048-input seeds' network")
    args = parser.parse_args()
    compare(*seeds_network(2048 if args.quick else 12288), repeats=args.repeats)
    compare(*blas_heavy_mlp(), repeats=args.repeats)


if __name__ == "__main__":
    main()
