"""Peak memory of a check, in copies of the parameters, for every mode.

tracemalloc follows NumPy's allocations; the peak during gp.check, beyond what
existed before it, is divided by the parameters' own size. The cost's own
temporaries are included, so the figure is an upper bound on gradproof's.

    python benchmarks/memory.py
"""

from __future__ import annotations

import tracemalloc

import numpy as np
from directional import mlp  # benchmarks/directional.py

import gradproof as gp
from gradproof import nn


def peak_copies(cost, params, grads, **kw) -> tuple[float, gp.Report]:
    size = sum(v.nbytes for v in params.values())
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    report = gp.check(cost, params, grads, progress=False, **kw)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return (peak - base) / size, report


def main() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((12288, 1))
    y = np.array([[1.0]])
    params = nn.initialize_parameters([12288, 5, 5, 1], method="random", seed=0)
    AL, caches = nn.L_model_forward(x, params, "tanh")
    grads = nn.L_model_backward(AL, y, caches, "tanh")

    def cost(p):
        return nn.compute_cost(nn.L_model_forward(x, p, "tanh")[0], y)

    print("mode         model                         parameters  peak / parameters")
    copies, r = peak_copies(cost, params, grads, mode="full")
    print(f"full         seeds' [12288, 5, 5, 1]       {61481:>10,}  {copies:5.1f}x  ({r.passed=})")
    big, mlp_cost, mlp_grads = mlp([4096, 1024, 1024, 10], batch=8)
    g = mlp_grads(big)
    n = sum(v.size for v in big.values())
    for mode in ("sample", "directional"):
        copies, r = peak_copies(mlp_cost, big, g, mode=mode)
        print(f"{mode:12s} MLP [4096, 1024, 1024, 10]  {n:>10,}  {copies:5.1f}x  ({r.passed=})")


if __name__ == "__main__":
    main()
