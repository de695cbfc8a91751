"""gradproof.jax.check against jax.test_util.check_grads on ~90 functions of JAX itself.

A curated list of functions from ``jax.numpy``, ``jax.nn`` and
``jax.scipy.special``, each with seeded inputs inside its domain (some close to
its edge: arctanh up to ±0.99, erfinv likewise, logit near 0 and 1). Both tools
check the same scalar function, the sum over every floating output of
``output * w`` with fixed random weights ``w`` drawn once per case:

- ``gradproof.jax.check(lambda p: f(p["x0"], p["x1"], ...), params)``, defaults;
- ``check_grads(f, args, order=1, modes=("rev",))`` in float64, defaults.

JAX's derivative rules are taken to be right, so a case that check_grads passes
and gradproof fails is a gradproof false alarm. The bug suite wraps each
function in a ``jax.custom_vjp`` whose backward returns the true gradient,
mutated (x1.5, sign flip, one element off by 1e-3 relative, zeroed, swapped
between two same-shape inputs or transposed) and records who notices.

    python benchmarks/jax_funcs.py                       # a few minutes
    python benchmarks/jax_funcs.py --funcs tan,erfinv --samples 1 --bugs 0
    python benchmarks/jax_funcs.py --json rows.json      # one row per case, for diffs

``--suite`` picks the derivatives under test, the same on both sides:

    rev     check_grads(order=1, modes=("rev",))        the bugs: a wrong custom_vjp
    fwd     check_grads(order=1, modes=("fwd",))        a wrong custom_jvp rule
    order2  check_grads(order=2, modes=("fwd", "rev"))  a custom_jvp right at first order
                                                        whose own derivative is wrong

A planted bug counts as named when gradproof fails the right argument in the
row of the derivative at fault: ``x1 [fwd]``, ``x1 [order 2]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import time
import traceback
import warnings
import zlib
from collections import Counter
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import jax.scipy.special as jss
import numpy as np

# a sibling script: the summary both conformance benchmarks print
from conformance_report import (
    DECLINED,
    Tool,
    bug_outcomes,
    declined,
    gp_outcome,
    spread,
    summary,
)
from jax.test_util import check_grads

import gradproof
import gradproof.jax as gpj

CLASSES = (
    "both pass",
    "gradproof false alarm",
    "gradproof exception",
    "gradproof refusal",
    DECLINED,
    "check_grads-only failure",
    "both fail",
)
MUTATIONS = ("scale 1.5", "sign flip", "one element 1e-3", "zeroed", "swap/transpose")
# How the framework's own checker is named in the summary (conformance_report.py).
TOOL = Tool(key="func", things="functions", name="check_grads", short="cg")


@dataclasses.dataclass(frozen=True)
class Suite:
    """The derivatives both tools check (``check_grads``' order and modes) and the bug
    planted: ``rule`` is the custom rule that carries it."""

    name: str
    order: int
    modes: tuple[str, ...]
    rule: str  # "vjp" (a wrong backward), "jvp" (a wrong jvp rule), "jvp2" (wrong 2nd order)
    row: str  # the suffix of gradproof's report rows that hold the derivative at fault


SUITES = {
    s.name: s
    for s in (
        Suite("rev", 1, ("rev",), "vjp", ""),
        Suite("fwd", 1, ("fwd",), "jvp", " [fwd]"),
        Suite("order2", 2, ("fwd", "rev"), "jvp2", " [order 2]"),
    )
}

# Below this a gradient is round-off: mutating it plants no bug a finite difference could see.
NEGLIGIBLE = 1e-8


def x64():
    """float64 inside, the caller's setting left alone (newer JAX: jax.enable_x64)."""
    if hasattr(jax, "enable_x64"):
        return jax.enable_x64(True)
    from jax.experimental import enable_x64

    return enable_x64()


# --------------------------------------------------------------------------- inputs


def _spd(rng, shape):
    a = rng.standard_normal(shape)
    return a @ a.T + shape[0] * np.eye(shape[0])


def _sym(rng, shape):
    # well-separated eigenvalues: eigenvector derivatives blow up as gaps close
    q, _ = np.linalg.qr(rng.standard_normal(shape))
    return q @ np.diag(np.arange(1.0, shape[0] + 1) * 1.5) @ q.T


# Domains: name -> sampler(rng, shape). Closed-form edges are kept away from by a margin
# that still leaves some inputs awkward (large derivatives), as real data would.
DOMAINS: dict[str, Callable[[np.random.Generator, tuple], np.ndarray]] = {
    "real": lambda rng, s: rng.standard_normal(s),
    "wide": lambda rng, s: rng.uniform(-4, 4, s),
    "pos": lambda rng, s: rng.uniform(0.2, 3.0, s),
    "unit": lambda rng, s: rng.uniform(-0.99, 0.99, s),
    "prob": lambda rng, s: rng.uniform(0.02, 0.98, s),
    "gt1": lambda rng, s: rng.uniform(1.1, 3.0, s),
    "tan": lambda rng, s: rng.uniform(-1.4, 1.4, s),  # up to ~0.17 from pi/2
    "spd": _spd,
    "sym": _sym,
    "mat": lambda rng, s: rng.standard_normal(s) + 2 * np.eye(s[0], s[1]),  # invertible
    # the edges, as torch's OpInfo samples probe them
    "wide9": lambda rng, s: rng.uniform(-9, 9, s),  # tan: some inputs next to a pole
    "unit999": lambda rng, s: rng.uniform(-0.999, 0.999, s),
    "wide9_zero": lambda rng, s: _with(rng.uniform(-9, 9, s), 0.0, 37),  # exact zeros
    "large": lambda rng, s: _with(rng.uniform(-1, 1, s), 1e4, 7),  # exp overflows naively
    "neginf": lambda rng, s: _neginf(rng, s),
}


def _with(x: np.ndarray, value: float, every: int) -> np.ndarray:
    """``x`` with ``value`` at every ``every``-th entry, the first one included."""
    x.reshape(-1)[::every] = value
    return x


def _neginf(rng, s):
    """Logits with -inf in some (never all) entries of each row, as masked attention gives."""
    x = rng.standard_normal(s)
    mask = rng.random(s) < 0.4
    mask[..., 0] = False
    x[mask] = -np.inf
    return x


M = (3, 4)
SQ = (4, 4)
V = (5,)


# name -> (function, [(domain, shape), ...]); every argument listed is differentiated.
FUNCS: dict[str, tuple[Callable, list[tuple[str, tuple]]]] = {
    # jax.numpy: elementwise
    "sin": (jnp.sin, [("real", M)]),
    "cos": (jnp.cos, [("real", M)]),
    "tan": (jnp.tan, [("tan", M)]),
    "arcsin": (jnp.arcsin, [("unit", M)]),
    "arccos": (jnp.arccos, [("unit", M)]),
    "arctan": (jnp.arctan, [("wide", M)]),
    "sinh": (jnp.sinh, [("real", M)]),
    "cosh": (jnp.cosh, [("real", M)]),
    "tanh": (jnp.tanh, [("wide", M)]),
    "arcsinh": (jnp.arcsinh, [("wide", M)]),
    "arccosh": (jnp.arccosh, [("gt1", M)]),
    "arctanh": (jnp.arctanh, [("unit", M)]),
    "exp": (jnp.exp, [("real", M)]),
    "expm1": (jnp.expm1, [("real", M)]),
    "log": (jnp.log, [("pos", M)]),
    "log1p": (jnp.log1p, [("pos", M)]),
    "sqrt": (jnp.sqrt, [("pos", M)]),
    "cbrt": (jnp.cbrt, [("pos", M)]),
    "reciprocal": (jnp.reciprocal, [("pos", M)]),
    "power": (jnp.power, [("pos", M), ("real", M)]),
    "arctan2": (jnp.arctan2, [("real", M), ("pos", M)]),
    "hypot": (jnp.hypot, [("real", M), ("real", M)]),
    "logaddexp": (jnp.logaddexp, [("real", M), ("real", M)]),
    "sinc": (jnp.sinc, [("real", M)]),
    "maximum": (jnp.maximum, [("real", M), ("real", M)]),
    "where": (lambda a, b: jnp.where(a > 0, a * b, jnp.sin(b)), [("real", M), ("real", M)]),
    # jax.numpy: reductions, scans, sorting
    "prod": (lambda x: jnp.prod(x, axis=1), [("pos", M)]),
    "var": (lambda x: jnp.var(x, axis=0), [("real", M)]),
    "std": (jnp.std, [("real", M)]),
    "norm": (jnp.linalg.norm, [("real", V)]),
    "cumsum": (lambda x: jnp.cumsum(x, axis=1), [("real", M)]),
    "cumprod": (lambda x: jnp.cumprod(x, axis=1), [("pos", M)]),
    "sort": (lambda x: jnp.sort(x, axis=1), [("real", M)]),
    "logsumexp": (lambda x: jss.logsumexp(x, axis=1), [("wide", M)]),
    # jax.numpy: linear algebra
    "matmul": (jnp.matmul, [("real", (3, 4)), ("real", (4, 2))]),
    "einsum": (lambda a, b: jnp.einsum("ij,jk->ik", a, b), [("real", SQ), ("real", SQ)]),
    "kron": (jnp.kron, [("real", (2, 2)), ("real", (2, 3))]),
    "det": (jnp.linalg.det, [("mat", SQ)]),
    "inv": (jnp.linalg.inv, [("mat", SQ)]),
    "solve": (jnp.linalg.solve, [("mat", SQ), ("real", (4, 2))]),
    "slogdet": (lambda a: jnp.linalg.slogdet(a)[1], [("mat", SQ)]),
    "cholesky": (lambda a: jnp.linalg.cholesky((a + a.T) / 2), [("spd", SQ)]),
    "eigvalsh": (lambda a: jnp.linalg.eigvalsh((a + a.T) / 2), [("sym", SQ)]),
    "svdvals": (lambda a: jnp.linalg.svd(a, compute_uv=False), [("real", M)]),
    "fft": (jnp.fft.fft, [("real", (6,))]),
    "convolve": (jnp.convolve, [("real", (6,)), ("real", (3,))]),
    # jax.nn
    "relu": (jax.nn.relu, [("real", M)]),
    "gelu": (jax.nn.gelu, [("wide", M)]),
    "silu": (jax.nn.silu, [("wide", M)]),
    "softplus": (jax.nn.softplus, [("wide", M)]),
    "sigmoid": (jax.nn.sigmoid, [("wide", M)]),
    "log_sigmoid": (jax.nn.log_sigmoid, [("wide", M)]),
    "elu": (jax.nn.elu, [("wide", M)]),
    "selu": (jax.nn.selu, [("wide", M)]),
    "softmax": (jax.nn.softmax, [("wide", M)]),
    "log_softmax": (jax.nn.log_softmax, [("wide", M)]),
    "glu": (jax.nn.glu, [("real", (3, 4))]),
    "standardize": (jax.nn.standardize, [("real", M)]),
    "masked_softmax": (
        lambda x: jax.nn.softmax(jnp.where(jnp.arange(4) < 3, x, -jnp.inf), axis=-1),
        [("real", M)],
    ),
    # jax.scipy.special
    "erf": (jss.erf, [("real", M)]),
    "erfc": (jss.erfc, [("wide", M)]),
    "erfinv": (jss.erfinv, [("unit", M)]),
    "gammaln": (jss.gammaln, [("pos", M)]),
    "digamma": (jss.digamma, [("pos", M)]),
    "polygamma1": (lambda x: jss.polygamma(1, x), [("pos", M)]),
    "logit": (jss.logit, [("prob", M)]),
    "xlogy": (jss.xlogy, [("real", M), ("pos", M)]),
    "xlog1py": (jss.xlog1py, [("real", M), ("pos", M)]),
    "entr": (jss.entr, [("pos", M)]),
    "i0e": (jss.i0e, [("wide", M)]),
    "i1e": (jss.i1e, [("wide", M)]),
    "ndtr": (jss.ndtr, [("wide", M)]),
    "ndtri": (jss.ndtri, [("prob", M)]),
    "log_ndtr": (jss.log_ndtr, [("wide", M)]),
    "betaln": (jss.betaln, [("pos", M), ("pos", M)]),
    "gammainc": (jss.gammainc, [("pos", M), ("pos", M)]),
    # edges: steep, degenerate, non-finite or empty, where a checker's own numerics show
    "tan_wide": (jnp.tan, [("wide9", (20, 20))]),
    "arctanh_edge": (jnp.arctanh, [("unit999", (20, 20))]),
    "erfinv_edge": (jss.erfinv, [("unit999", (20, 20))]),
    "i1e_zero": (jss.i1e, [("wide9_zero", (20, 20))]),
    "logsumexp_large": (lambda x: jss.logsumexp(x, axis=0), [("large", (5, 5))]),
    "softmax_neginf": (jax.nn.softmax, [("neginf", (3, 5))]),
    "sign": (jnp.sign, [("wide9", (20, 20))]),  # zero gradient
    "round_decimals3": (lambda x: jnp.round(x, 3), [("wide9", (20, 20))]),  # flat steps
    "corrcoef_two_obs": (jnp.corrcoef, [("real", (3, 2))]),  # all ±1: a constant
    "normalize_size1_axis": (
        lambda x: x / jnp.linalg.norm(x, axis=0, keepdims=True),  # sign(x): zero gradient
        [("real", (1, 4, 5))],
    ),
    "cos_empty": (jnp.cos, [("real", (1, 0, 3))]),
}


class Skip(Exception):
    """A function that cannot be set up at its inputs (the reason says why)."""


def _outputs(out: Any) -> list:
    return [
        jnp.asarray(t)
        for t in jax.tree_util.tree_leaves(out)
        if jnp.issubdtype(jnp.asarray(t).dtype, jnp.inexact)
    ]


def build_case(name: str, index: int):
    """``(scalar_fn, args)``: the weighted-sum cost of ``FUNCS[name]`` at seeded inputs.

    Sample ``index`` draws its inputs with seed ``crc32(name) + index``; the
    output weights are drawn once, from the output shapes at those inputs.
    """
    f, spec = FUNCS[name]
    seed = zlib.crc32(name.encode()) + index
    rng = np.random.default_rng(seed)
    args = [DOMAINS[dom](rng, shape) for dom, shape in spec]
    try:
        outs = _outputs(f(*args))
    except Exception as exc:
        raise Skip(f"forward raised {type(exc).__name__}") from exc
    if not outs:
        raise Skip("no floating output")
    wrng = np.random.default_rng(seed + 10_000)
    weights = [
        wrng.standard_normal((*t.shape, 2) if jnp.iscomplexobj(t) else t.shape) for t in outs
    ]

    def scalar_fn(*xs):
        total = 0.0
        for t, w in zip(_outputs(f(*xs)), weights, strict=True):
            # complex outputs enter through their real and imaginary parts
            t = jnp.stack([t.real, t.imag], axis=-1) if jnp.iscomplexobj(t) else t
            total = total + jnp.sum(t * w)
        return total

    return scalar_fn, args


# --------------------------------------------------------------------------- running tools


def first_line(text: Any, width: int = 200) -> str:
    lines = [ln for ln in str(text).splitlines() if ln.strip()]
    return lines[0][:width] if lines else ""


def exception_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {first_line(exc)}"


def _where(exc: BaseException) -> str:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "gradproof" in f.filename]
    if not frames:
        return ""
    f = frames[-1]
    return f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} in {f.name}"


def run_gradproof(fn: Callable, args: list, suite: Suite) -> dict:
    """gradproof.jax.check on params ``{"x0": ..., "x1": ...}``, the suite's order and
    modes, the rest default."""
    params = {f"x{i}": a for i, a in enumerate(args)}
    before = [a.copy() for a in args]
    row: dict[str, Any] = {}
    t = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            report = gpj.check(
                lambda p: fn(*[p[f"x{i}"] for i in range(len(args))]),
                params,
                progress=False,
                order=suite.order,
                modes=suite.modes,
            )
    except Exception as exc:
        refusal = isinstance(exc, gradproof.GradientSpecError) and not isinstance(
            exc, gradproof.CostError
        )
        row.update(
            gp="refusal" if refusal else "declined" if declined(exc) else "exception",
            gp_error=exception_text(exc),
            gp_where=_where(exc),
        )
    else:
        row.update(
            gp="passed" if report.passed else "failed",
            gp_headline=first_line(report),
            gp_difference=float(report.difference),
            gp_evaluations=int(report.evaluations),
            gp_failing=[n for n, tr in report.tensors.items() if not tr.passed],
            gp_diagnoses={
                n: tr.diagnosis
                for n, tr in report.tensors.items()
                if not tr.passed and tr.diagnosis
            },
            gp_warnings=[first_line(w) for w in report.warnings],
        )
    row["gp_time"] = time.perf_counter() - t
    # the contract says params are never modified: verified bit for bit
    row["gp_modified_inputs"] = [
        i for i, (b, a) in enumerate(zip(before, args, strict=True)) if b.tobytes() != a.tobytes()
    ]
    return row


def run_check_grads(fn: Callable, args: list, suite: Suite) -> dict:
    """check_grads with the suite's order and modes, its defaults otherwise, in float64,
    counting calls."""
    calls = [0]

    def counted(*xs):
        calls[0] += 1  # Python calls: traces for the VJP, plain calls for the differences
        return fn(*xs)

    t = time.perf_counter()
    try:
        with x64(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            check_grads(
                counted, tuple(jnp.asarray(a) for a in args), order=suite.order, modes=suite.modes
            )
        row = {"gc": "passed"}
    except AssertionError as exc:
        row = {"gc": "failed", "gc_error": first_line(exc)}
    except Exception as exc:
        row = {"gc": "exception", "gc_error": exception_text(exc)}
    row.update(gc_time=time.perf_counter() - t, gc_calls=calls[0])
    return row


def classify(row: dict) -> str:
    if row["gp"] == "refusal":
        return "gradproof refusal"
    if row["gp"] == "exception":
        return "gradproof exception"
    if row["gp"] == "declined":
        return DECLINED
    gp_ok, gc_ok = row["gp"] == "passed", row["gc"] == "passed"
    if gp_ok and gc_ok:
        return "both pass"
    if gc_ok:
        return "gradproof false alarm"
    if gp_ok:
        return "check_grads-only failure"
    return "both fail"


# --------------------------------------------------------------------------- planted bugs


def true_grads(fn: Callable, args: list) -> list[np.ndarray]:
    with x64():
        gs = jax.grad(fn, argnums=tuple(range(len(args))))(*[jnp.asarray(a) for a in args])
    return [np.asarray(g) for g in gs]


def second_order_reach(fn: Callable, args: list, kind: str, plan: dict) -> set[int]:
    """The inputs where a rule mutated by ``M`` is wrong in reverse over reverse mode:
    where ``H (M - I) v`` is not zero, for a fixed random ``v``."""
    rng = np.random.default_rng(7)
    with x64():
        xs = tuple(jnp.asarray(a) for a in args)
        vs = [jnp.asarray(rng.standard_normal(a.shape)) for a in args]
        dv = tuple(m - v for m, v in zip(mutate(kind, plan, vs), vs, strict=True))
        grad = jax.grad(fn, argnums=tuple(range(len(args))))
        _, err = jax.jvp(grad, xs, dv)
    size = [float(np.abs(np.asarray(e)).max()) if np.size(e) else 0.0 for e in err]
    return {i for i, s in enumerate(size) if s > 1e-6 * max(size, default=0.0) + NEGLIGIBLE}


def true_hvp(fn: Callable, args: list, seed: int) -> list[np.ndarray]:
    """The Hessian times a fixed random direction: where a second-order bug can be seen."""
    rng = np.random.default_rng(seed)
    with x64():
        xs = tuple(jnp.asarray(a) for a in args)
        vs = tuple(jnp.asarray(rng.standard_normal(a.shape)) for a in args)
        grad = jax.grad(fn, argnums=tuple(range(len(args))))
        _, hv = jax.jvp(grad, xs, vs)
    return [np.asarray(h) for h in hv]


def plan_mutation(kind: str, grads: list[np.ndarray]) -> dict | None:
    """Which input(s) a mutation hits (the one with the largest gradient entry), or None."""
    peaks = [float(np.abs(g).max()) if g.size else 0.0 for g in grads]
    if max(peaks, default=0.0) < NEGLIGIBLE:
        return None
    target = int(np.argmax(peaks))
    if kind in ("scale 1.5", "sign flip", "zeroed"):
        return {"targets": [target]}
    if kind == "one element 1e-3":
        return {"targets": [target], "index": int(np.abs(grads[target]).argmax())}
    for i, j in itertools.combinations(range(len(grads)), 2):
        if grads[i].shape == grads[j].shape and _differ(grads[i], grads[j]):
            return {"targets": [i, j], "how": "swap"}
    for i, g in enumerate(grads):
        if g.ndim == 2 and g.shape[0] == g.shape[1] and _differ(g, g.T):
            return {"targets": [i], "how": "transpose"}
    return None


def _differ(a: np.ndarray, b: np.ndarray) -> bool:
    """More than round-off apart: swapping gradients equal up to 1e-16 plants no bug."""
    norm = np.linalg.norm
    return float(norm(a - b)) > 1e-6 * (float(norm(a)) + float(norm(b))) + NEGLIGIBLE


def mutate(kind: str, plan: dict, grads: list) -> list:
    out = list(grads)
    t = plan["targets"][0]
    if kind == "scale 1.5":
        out[t] = 1.5 * grads[t]
    elif kind == "sign flip":
        out[t] = -grads[t]
    elif kind == "zeroed":
        out[t] = jnp.zeros_like(grads[t])
    elif kind == "one element 1e-3":
        flat = grads[t].reshape(-1)
        out[t] = flat.at[plan["index"]].multiply(1 + 1e-3).reshape(grads[t].shape)
    elif plan["how"] == "swap":
        i, j = plan["targets"]
        out[i], out[j] = grads[j], grads[i]
    else:
        out[t] = grads[t].T
    return out


def mutated_fn(fn: Callable, kind: str, plan: dict, n: int, suite: Suite) -> Callable:
    """``fn`` behind a custom rule whose derivative under test is the true one, mutated:
    a ``custom_vjp`` backward (rev), a ``custom_jvp`` rule (fwd; reverse mode, JAX's
    transpose of it, is wrong too), or a ``custom_jvp`` rule that is right but built on a
    gradient function whose own rule, the Hessian, is wrong (order2)."""
    argnums = tuple(range(n))
    grad = jax.grad(fn, argnums=argnums)

    if suite.rule == "vjp":

        @jax.custom_vjp
        def bad(*xs):
            return fn(*xs)

        def fwd(*xs):
            return fn(*xs), xs

        def bwd(xs, ct):
            return tuple(ct * g for g in mutate(kind, plan, list(grad(*xs))))

        bad.defvjp(fwd, bwd)
        return bad

    @jax.custom_jvp
    def first(*xs):
        return grad(*xs)

    @first.defjvp
    def first_jvp(xs, ts):
        gs, hv = jax.jvp(grad, xs, ts)
        return gs, tuple(mutate(kind, plan, list(hv)))

    @jax.custom_jvp
    def bad(*xs):
        return fn(*xs)

    @bad.defjvp
    def bad_jvp(xs, ts):
        # order2: the first derivative is right, through ``first`` and its wrong rule
        gs = mutate(kind, plan, list(grad(*xs))) if suite.rule == "jvp" else list(first(*xs))
        return fn(*xs), sum(jnp.sum(g * t) for g, t in zip(gs, ts, strict=True))

    return bad


def run_bug(fn: Callable, args: list, kind: str, plan: dict, suite: Suite) -> dict:
    bad = mutated_fn(fn, kind, plan, len(args), suite)
    row: dict[str, Any] = {"mutation": kind, "targets": plan["targets"], "how": plan.get("how")}
    row.update(run_gradproof(bad, args, suite))
    row.update(run_check_grads(bad, args, suite))
    if row["gp"] in ("passed", "failed"):
        targets = plan["targets"]
        if suite.rule == "jvp2":
            # gradproof's order-2 row is reverse over reverse: the transpose of the wrong
            # rule, H (M - I) w, lands on the inputs the Hessian couples to the target
            targets = sorted(set(targets) | second_order_reach(fn, args, kind, plan))
            row["right"] = targets
        names = {f"x{i}{suite.row}" for i in targets}
        row["gp_detected"] = row["gp"] == "failed"
        row["gp_named"] = bool(names & set(row["gp_failing"]))
        row["gp_blamed_other"] = sorted(set(row["gp_failing"]) - names)
    else:
        row["gp_detected"] = None
    row["gc_detected"] = None if row["gc"] == "exception" else row["gc"] == "failed"
    return row


def plant_bugs(fn: Callable, args: list, case: dict, suite: Suite) -> list[dict]:
    if case["gc"] != "passed":
        return []  # check_grads does not accept the function itself: a bug proves nothing
    try:
        if suite.rule == "jvp2":
            # zero for a linear function: no second-order bug to plant
            grads = true_hvp(fn, args, zlib.crc32(case["func"].encode()) + 20_000)
        else:
            grads = true_grads(fn, args)
    except Exception:
        return []
    out = []
    for kind in MUTATIONS:
        plan = plan_mutation(kind, grads)
        if plan is None:
            continue
        row = {"func": case["func"], "sample": case["sample"], "coords": case["coords"]}
        row.update(run_bug(fn, args, kind, plan, suite))
        out.append(row)
        gc_news = not row["gc_detected"] and kind != "one element 1e-3"
        if not (row["gp_detected"] and row["gp_named"]) or gc_news:
            print(f"    bug {describe_bug(row)}", flush=True)
    return out


# --------------------------------------------------------------------------- reporting


def gc_outcome(row: dict) -> str:
    return row["gc"] + (f" ({row['gc_error']})" if row.get("gc_error") else "")


def describe(row: dict) -> str:
    return (
        f"{row['class']}: {row['func']} sample {row['sample']} {row['shapes']}\n"
        f"      gradproof:   {gp_outcome(row)}\n"
        f"      check_grads: {gc_outcome(row)}"
    )


def describe_bug(row: dict) -> str:
    gp, gc = bug_outcomes(row, gc_outcome(row))
    return (
        f"{row['func']} [{row['mutation']}] on x{row['targets']}: gradproof {gp}; check_grads {gc}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--suite",
        choices=list(SUITES),
        default="rev",
        help="the derivatives under test (default rev: first order, reverse mode)",
    )
    parser.add_argument("--limit", type=int, default=0, help="first N functions only")
    parser.add_argument("--funcs", default="", help="comma-separated function names")
    parser.add_argument("--samples", type=int, default=2, help="input draws per function")
    parser.add_argument("--json", default="", help="write every row to this JSON file")
    parser.add_argument(
        "--bugs",
        type=int,
        default=None,
        help="plant bugs in N functions spread over the list (default: all; 0: none)",
    )
    args = parser.parse_args()
    suite = SUITES[args.suite]

    t_start = time.perf_counter()
    names = list(FUNCS)
    if args.funcs:
        wanted = {s.strip() for s in args.funcs.split(",") if s.strip()}
        unknown = wanted - set(names)
        if unknown:
            parser.error(f"unknown functions: {', '.join(sorted(unknown))}")
        names = [n for n in names if n in wanted]
    if args.limit:
        names = names[: args.limit]
    with_bugs = spread(names, args.bugs)
    print(
        f"jax {jax.__version__}, gradproof from {gradproof.__file__}\n"
        f"suite {suite.name}: order={suite.order}, modes={suite.modes} on both sides\n"
        f"{len(names)} functions, {args.samples} samples each, "
        f"bug suite on {len(with_bugs)}\n",
        flush=True,
    )
    rows: list[dict] = []
    bug_rows: list[dict] = []
    skipped: Counter = Counter()
    for n, name in enumerate(names, start=1):
        for index in range(args.samples):
            with x64():
                try:
                    fn, xs = build_case(name, index)
                except Skip as exc:
                    skipped[f"{name}: {exc}"] += 1
                    continue
            row = {
                "func": name,
                "sample": index,
                "shapes": [list(a.shape) for a in xs],
                "coords": int(sum(a.size for a in xs)),
            }
            row.update(run_gradproof(fn, xs, suite))
            row.update(run_check_grads(fn, xs, suite))
            row["class"] = classify(row)
            rows.append(row)
            if row["gp_modified_inputs"]:
                print(f"    gradproof MODIFIED inputs {row['gp_modified_inputs']}", flush=True)
            if row["class"] != "both pass":
                print(f"[{n}/{len(names)}] {describe(row)}", flush=True)
            if name in with_bugs and not any(b["func"] == name for b in bug_rows):
                bug_rows.extend(plant_bugs(fn, xs, row, suite))
    total = time.perf_counter() - t_start
    summary(rows, bug_rows, skipped, total, tool=TOOL, classes=CLASSES, mutations=MUTATIONS)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {
                    "jax": jax.__version__,
                    "suite": suite.name,
                    "cases": rows,
                    "bugs": bug_rows,
                    "skipped": dict(skipped),
                    "seconds": total,
                },
                fh,
                indent=1,
                default=str,
            )
        print(f"\nrows written to {args.json}")


if __name__ == "__main__":
    main()
