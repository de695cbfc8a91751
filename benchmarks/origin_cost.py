"""What saying where an error enters costs, on failure: evaluations and time, side by side.

Two models with one slip each in the middle of the backward pass:

- the seeds' 3-layer network (NumPy, 47 parameters) with layer 2's ReLU mask wrong
  (``dZ2 = dA2 * (Z2 > 0.5)``): the origin is inferred from the layer order of the
  parameters' verdicts, with no evaluation of its own, and narrowed to the line where
  the gradients carry the backward's intermediates (recomputed from the cache);
- a PyTorch MLP of about 100,000 parameters (64 -> 256 -> 256 -> 64 -> 10, tanh) whose
  third activation is a custom ``autograd.Function`` with a wrong backward: its
  submodules (and the Function) are checked on their own until the smallest part wrong
  on its own is found, and the model is checked apart from it; timed side by side with
  the check alone.

For each: the check's own evaluations and time, and those of the origin search, and the
origin it names. The PyTorch model is checked in ``mode="directional"`` (a full check of
100k parameters is 200k evaluations); the search's evaluations are of submodules, each
cheaper than the model's.

    python benchmarks/origin_cost.py      # about half a minute on 2 cores
"""

from __future__ import annotations

import itertools
import statistics
import time

import numpy as np

import gradproof as gp
from gradproof.examples import forward_propagation_n, seed_case


def seeds() -> None:
    X, Y, params = seed_case()
    _, cache = forward_propagation_n(X, Y, params)
    (_, A1, _, _, Z2, A2, W2, _, _, A3, W3, _) = cache
    m = X.shape[1]
    dZ3 = A3 - Y
    dA2 = W3.T @ dZ3
    dZ2 = dA2 * (Z2 > 0.5)  # the slip: (A2 > 0)
    dA1 = W2.T @ dZ2
    dZ1 = dA1 * (A1 > 0)
    grads = {
        "W1": dZ1 @ X.T / m,
        "b1": dZ1.sum(1, keepdims=True) / m,
        "W2": dZ2 @ A1.T / m,
        "b2": dZ2.sum(1, keepdims=True) / m,
        "W3": dZ3 @ A2.T / m,
        "b3": dZ3.sum(1, keepdims=True) / m,
    }
    # the same gradients with the intermediates the seeds' backward returns beside them:
    # the origin narrowed to one line (recomputed from the cache, no evaluation of its own)
    lined = {**grads, "dZ3": dZ3, "dA2": dA2, "dZ2": dZ2, "dA1": dA1, "dZ1": dZ1}
    times: dict[str, list[float]] = {"layer order": [], "narrowed to the line": []}
    reports = {}
    for _ in range(5):
        for label, given in (("layer order", grads), ("narrowed to the line", lined)):
            started = time.perf_counter()
            reports[label] = gp.check(lambda p: forward_propagation_n(X, Y, p), params, given)
            times[label].append(time.perf_counter() - started)
    print("seeds' network, layer 2's mask wrong (47 parameters, full mode)")
    for label, report in reports.items():
        print(
            f"  {label}: {report.evaluations} evaluations, "
            f"{statistics.median(times[label]) * 1e3:.1f} ms"
        )
        print(f"    origin: {report.origin.where if report.origin else None}")
        print(f"    evidence: {report.origin.evidence if report.origin else '-'}")
    print("  origin search: 0 evaluations (the layer order; the line from the cache)\n")


def torch_model() -> None:
    import torch

    import gradproof.torch as gpt

    class WrongTanh(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            y = torch.tanh(x)
            ctx.save_for_backward(y)
            return y

        @staticmethod
        def backward(ctx, g):
            (y,) = ctx.saved_tensors
            return g * (1 - y)  # the slip: 1 - y**2

    class Act(torch.nn.Module):
        def forward(self, x):
            return WrongTanh.apply(x)

    torch.manual_seed(0)
    sizes = [64, 256, 256, 64, 10]
    layers: list = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(torch.nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(Act() if i == 2 else torch.nn.Tanh())
    model = torch.nn.Sequential(*layers).double()
    n = sum(p.numel() for p in model.parameters())
    x = torch.randn(32, 64, dtype=torch.float64)
    from gradproof._adapter import Request
    from gradproof._options import user_options
    from gradproof.torch._check import check_all
    from gradproof.torch._intake import Call

    opts = user_options("benchmark", mode="directional")
    times, alone = [], []
    for _ in range(3):  # (side by side: the check with the search, and the check alone)
        started = time.perf_counter()
        report = gpt.check(model, x, mode="directional")
        times.append(time.perf_counter() - started)
        started = time.perf_counter()
        check_all(torch, Call(model, (x,)), Request(opts))
        alone.append(time.perf_counter() - started)
    total, check = statistics.median(times), statistics.median(alone)
    isolation = report.policy["isolation"]
    print(f"PyTorch MLP, activation 5's backward wrong ({n:,} parameters, directional mode)")
    print(f"  check alone: {report.evaluations} evaluations of the model, {check:.2f} s")
    print(
        f"  origin search: {isolation['checks']} submodules checked on their own, "
        f"{isolation['evaluations']} evaluations of them; with the search {total:.2f} s, "
        f"{total / check:.2f}x the check alone"
    )
    print(f"  origin: {report.origin.where if report.origin else None}")
    print(f"  evidence: {report.origin.evidence if report.origin else '-'}")


if __name__ == "__main__":
    np.seterr(all="ignore")
    seeds()
    torch_model()
