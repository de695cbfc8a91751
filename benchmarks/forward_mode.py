"""Forward mode in batches (torch.func.vmap over one-hot tangents) against one tangent at a time.

The same check, ``gradproof.torch.check(model, x, modes=("fwd",))``, on a small
MLP with dropout: once as shipped, once with batching turned off, each timed as
the median of --repeats runs in this one process. Both must give the same
derivative to the last bit the check reports.

    python benchmarks/forward_mode.py
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import gradproof.torch as gpt
from gradproof.torch import _checker


def timed(model, x, repeats: int):
    times, report = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        report = gpt.check(model, x, modes=("fwd",), progress=False)
        times.append(time.perf_counter() - t)
    return statistics.median(times), report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(20, 30), torch.nn.Tanh(), torch.nn.Dropout(0.3), torch.nn.Linear(30, 3)
    ).double()
    x = torch.randn(40, 20, dtype=torch.float64, requires_grad=True)
    n = sum(p.numel() for p in model.parameters()) + x.numel()
    print(f"MLP 20-30-3 with dropout, batch 40: {n:,} coordinates, medians of {args.repeats}")

    batched, report_b = timed(model, x, args.repeats)
    original = _checker.Checker._forward_mode_batched
    _checker.Checker._forward_mode_batched = lambda self, name, size: None  # one by one
    try:
        alone, report_a = timed(model, x, args.repeats)
    finally:
        _checker.Checker._forward_mode_batched = original
    same = all(
        report_b.tensors[k].max_abs_error == report_a.tensors[k].max_abs_error
        for k in report_b.tensors
    )
    print(f"  batched (vmap)        {batched:7.2f} s   passed={report_b.passed}")
    print(f"  one tangent at a time {alone:7.2f} s   passed={report_a.passed}")
    print(f"  speed-up {alone / batched:.1f}x; same errors in every row: {same}")


if __name__ == "__main__":
    main()
