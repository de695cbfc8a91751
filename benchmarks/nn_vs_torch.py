"""One epoch of training the same MLP with gradproof.nn and with PyTorch (CPU), side by side.

784-256-128-10 ReLU MLP, softmax cross-entropy, plain SGD, batch 64, 10,000
synthetic examples; float64 and float32. Both use the same threads (the
machine's default). Medians of --repeats epochs.

    python benchmarks/nn_vs_torch.py
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from gradproof import nn

DIMS = [784, 256, 128, 10]


def ours(X, y, dtype, repeats):
    model = nn.Sequential(
        nn.Dense(784, 256, seed=0),
        nn.ReLU(),
        nn.Dense(256, 128, seed=1),
        nn.ReLU(),
        nn.Dense(128, 10, seed=2),
    )
    model.load({k: v.astype(dtype) for k, v in model.params().items()})
    X = X.astype(dtype)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        nn.fit(
            model,
            X,
            y,
            nn.SoftmaxCrossEntropy(),
            nn.SGD(0.05),
            epochs=1,
            batch_size=64,
            progress=False,
        )
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def theirs(X, y, dtype, repeats):
    torch_dtype = torch.float64 if dtype == np.float64 else torch.float32
    model = torch.nn.Sequential(
        torch.nn.Linear(784, 256),
        torch.nn.ReLU(),
        torch.nn.Linear(256, 128),
        torch.nn.ReLU(),
        torch.nn.Linear(128, 10),
    ).to(torch_dtype)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    Xt, yt = torch.tensor(X, dtype=torch_dtype), torch.tensor(y)
    gen = torch.Generator().manual_seed(0)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        order = torch.randperm(len(Xt), generator=gen)
        for i in range(0, len(Xt), 64):
            batch = order[i : i + 64]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(Xt[batch]), yt[batch]).backward()
            opt.step()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    X = rng.standard_normal((10_000, 784))
    y = rng.integers(0, 10, 10_000)
    print(
        f"MLP {DIMS}, 10,000 examples, batch 64, SGD; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; medians of {args.repeats} epochs"
    )
    for dtype in (np.float64, np.float32):
        a, b = ours(X, y, dtype, args.repeats), theirs(X, y, dtype, args.repeats)
        print(
            f"  {np.dtype(dtype).name}:  gradproof.nn {a:6.3f} s   PyTorch {b:6.3f} s   "
            f"ratio {a / b:.2f}x (target <= 2x)"
        )


if __name__ == "__main__":
    main()
