"""gradproof against torch.autograd.gradcheck and jax.test_util.check_grads, side by side.

The 784-256-128-10 MLP of the issue (ReLU, cross-entropy, batch 32, float64),
with the second layer written as a custom autograd.Function / jax.custom_vjp
so that a wrong backward (its weight gradient doubled) can be planted. For
each tool: time, cost evaluations, verdict on the correct and the buggy
gradient, and the first lines of what it prints.

    python benchmarks/frameworks.py            # full checks included: several minutes
    python benchmarks/frameworks.py --quick    # full checks of the last two layers only
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np
import torch

import gradproof.torch as gpt

DIMS = [784, 256, 128, 10]
BATCH = 32


class Linear2(torch.autograd.Function):
    """y = x Wᵀ + b with a backward that can double dW."""

    generate_vmap_rule = True
    bug = False

    @staticmethod
    def forward(x, w, b):
        return x @ w.T + b

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0], inputs[1])

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        return g @ w, (2 if Linear2.bug else 1) * g.T @ x, g.sum(0)


def torch_setup():
    gen = torch.Generator().manual_seed(0)
    ps = {}
    for i, (a, b) in enumerate(itertools.pairwise(DIMS), start=1):
        ps[f"W{i}"] = torch.randn(b, a, generator=gen, dtype=torch.float64) * (2 / a) ** 0.5
        ps[f"b{i}"] = torch.randn(b, generator=gen, dtype=torch.float64) * 0.1
    x = torch.randn(BATCH, DIMS[0], generator=gen, dtype=torch.float64)
    y = torch.randint(0, DIMS[-1], (BATCH,), generator=gen)
    names = list(ps)

    def loss(*tensors):
        p = dict(zip(names, tensors, strict=True))
        h = torch.relu(x @ p["W1"].T + p["b1"])
        h = torch.relu(Linear2.apply(h, p["W2"], p["b2"]))
        return torch.nn.functional.cross_entropy(h @ p["W3"].T + p["b3"], y)

    return names, ps, loss


def first_lines(text: str, n: int = 3, width: int = 110) -> str:
    lines = [ln[:width] for ln in str(text).strip().splitlines() if ln.strip()][:n]
    return "\n".join("      | " + ln for ln in lines)


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def run_gradcheck(loss, tensors, fast: bool):
    calls = [0]

    def counted(*t):
        calls[0] += 1
        return loss(*t)

    try:
        torch.autograd.gradcheck(counted, tuple(tensors), fast_mode=fast)
        return "passed", calls[0], "(prints nothing)"
    except Exception as exc:  # GradcheckError
        return "failed", calls[0], first_lines(exc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--cheap",
        action="store_true",
        help="only the cheap checks (no full checks, no gradcheck re-run on the buggy model)",
    )
    args = parser.parse_args()
    names, ps, loss = torch_setup()
    n = sum(p.numel() for p in ps.values())
    print(
        f"MLP {DIMS}, batch {BATCH}, float64: {n:,} parameters, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads\n"
    )

    if args.cheap:
        cheap_checks(names, ps, loss, gradcheck_on_bug=False)
        return
    subset = names if not args.quick else ["W2", "b2", "W3", "b3"]
    m = sum(ps[k].numel() for k in subset)
    print(f"== full checks of {', '.join(subset)} ({m:,} coordinates), correct gradient")
    fixed = [ps[k].detach().clone().requires_grad_(k in subset) for k in names]
    leaves = [t for k, t in zip(names, fixed, strict=True) if k in subset]

    def sub_loss(*checked):
        it = iter(checked)
        return loss(*[next(it) if k in subset else fixed[i] for i, k in enumerate(names)])

    Linear2.bug = False
    (verdict, calls, _), slow = timed(lambda: run_gradcheck(sub_loss, leaves, fast=False))
    print(f"  gradcheck (slow mode)  {slow:8.2f} s  {calls:>8,} calls   {verdict}")
    report, ours = timed(lambda: gpt.check(sub_loss, *leaves, progress=False))
    print(
        f"  gradproof (full mode)  {ours:8.2f} s  {report.evaluations:>8,} evals   "
        f"{'passed' if report.passed else 'failed'}"
    )
    print(f"  gradproof is {slow / ours:.1f}x faster (target >= 5x)\n")

    cheap_checks(names, ps, loss, gradcheck_on_bug=True)
    jax_part()


def cheap_checks(names, ps, loss, gradcheck_on_bug: bool) -> None:
    print("== cheap checks of the whole model: correct, then dW2 doubled")
    tensors = [ps[k].detach().clone().requires_grad_(True) for k in names]
    calls_correct = None
    for bug in (False, True):
        Linear2.bug = bug
        label = "dW2 doubled" if bug else "correct"
        if not bug or gradcheck_on_bug:
            (verdict, calls, text), t = timed(lambda: run_gradcheck(loss, tensors, fast=True))
            calls_correct = calls if not bug else calls_correct
            print(
                f"  [{label}] gradcheck (fast mode)       {t:6.2f} s  {calls:>5} calls  {verdict}"
            )
            if bug:
                print(text)
        report, t = timed(lambda: gpt.check(loss, *tensors, mode="directional", progress=False))
        verdict = "passed" if report.passed else "failed"
        print(
            f"  [{label}] gradproof (directional)     {t:6.2f} s  {report.evaluations:>5} evals  "
            f"{verdict}"
            + (
                f"  ({report.evaluations / calls_correct:.1f}x gradcheck's fast mode)"
                if not bug
                else ""
            )
        )
        if bug:
            print(first_lines(report, 3))
    Linear2.bug = False


def jax_part() -> None:
    try:
        import jax
        import jax.numpy as jnp
        from jax.test_util import check_grads
    except ImportError:
        print("\n(jax not installed: its comparison is skipped)")
        return
    import gradproof.jax as gpj

    print(f"\n== JAX {jax.__version__}: check_grads against gradproof.jax, same MLP")
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        p = {}
        for i, (a, b) in enumerate(itertools.pairwise(DIMS), start=1):
            p[f"W{i}"] = jnp.asarray(rng.standard_normal((b, a)) * (2 / a) ** 0.5)
            p[f"b{i}"] = jnp.asarray(rng.standard_normal(b) * 0.1)
        x = jnp.asarray(rng.standard_normal((BATCH, DIMS[0])))
        y = jnp.asarray(rng.integers(0, DIMS[-1], BATCH))
        for factor in (1.0, 2.0):

            @jax.custom_vjp
            def linear2(h, w, b):
                return h @ w.T + b

            def fwd(h, w, b):
                return linear2(h, w, b), (h, w)

            def bwd(res, g, factor=factor):
                h, w = res
                return g @ w, factor * g.T @ h, g.sum(0)

            linear2.defvjp(fwd, bwd)

            def loss(p):
                h = jax.nn.relu(x @ p["W1"].T + p["b1"])
                h = jax.nn.relu(linear2(h, p["W2"], p["b2"]))
                logits = h @ p["W3"].T + p["b3"]
                return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(BATCH), y])

            label = "dW2 doubled" if factor == 2 else "correct"
            t = time.perf_counter()
            try:
                check_grads(loss, (p,), order=1, modes=("rev",))
                verdict, text = "passed", ""
            except AssertionError as exc:
                verdict, text = "failed", first_lines(exc)
            t = time.perf_counter() - t
            print(f"  [{label}] check_grads (rev)            {t:6.2f} s  {verdict}")
            if text:
                print(text)
            report, t = timed(
                lambda loss=loss: gpj.check(loss, p, mode="directional", progress=False)
            )
            print(
                f"  [{label}] gradproof.jax (directional)  {t:6.2f} s  {report.evaluations:>5} "
                f"evals  {'passed' if report.passed else 'failed'}"
            )
            if factor == 2:
                print(first_lines(report, 3))


if __name__ == "__main__":
    main()
