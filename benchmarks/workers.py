"""Full mode on worker processes: 2 workers against 1, on the seeds' L-layer network.

BLAS is held to one thread (before NumPy loads) so that the workers, not BLAS
threads, share the cores. Medians of --repeats runs; same numbers, bit for bit.

    python benchmarks/workers.py
"""

from __future__ import annotations

import os

for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

import gradproof as gp  # noqa: E402
from gradproof import nn  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a 2048-input network instead")
    args = parser.parse_args()
    n_x = 2048 if args.quick else 12288
    rng = np.random.default_rng(0)
    x = rng.random((n_x, 1))
    y = np.array([[1.0]])
    params = nn.initialize_parameters([n_x, 5, 5, 1], method="random", seed=0)
    AL, caches = nn.L_model_forward(x, params, "tanh")
    grads = nn.L_model_backward(AL, y, caches, "tanh")
    n = sum(v.size for v in params.values())
    print(
        f"network [{n_x}, 5, 5, 1], {n:,} parameters, {os.cpu_count()} cores, medians of "
        f"{args.repeats}"
    )

    times: dict[str, list[float]] = {"in-process": [], "1 worker": [], "2 workers": []}
    reports = {}
    for _ in range(args.repeats):
        for label, executor in (("in-process", None), ("1 worker", 1), ("2 workers", 2)):
            t = time.perf_counter()
            reports[label] = gp.check(
                lambda p: nn.compute_cost(nn.L_model_forward(x, p, "tanh")[0], y),
                params,
                grads,
                executor=executor,
                progress=False,
            )
            times[label].append(time.perf_counter() - t)
    same = all(
        np.array_equal(reports["2 workers"].numerical[k], reports["in-process"].numerical[k])
        for k in params
    )
    med = {k: statistics.median(v) for k, v in times.items()}
    for label, seconds in med.items():
        print(f"  {label:11s} {seconds:7.2f} s")
    print(
        f"  2 workers vs 1 worker: {med['1 worker'] / med['2 workers']:.2f}x faster "
        f"(target >= 1.7x); numbers identical to in-process: {same}"
    )


if __name__ == "__main__":
    main()
