"""gradproof.torch.check against torch.autograd.gradcheck on PyTorch's own operator database.

Every operator in ``torch.testing._internal.common_methods_invocations.op_db``
that autograd differentiates in float64 is checked on up to ``--samples`` of
its own sample inputs, by both tools, on the same function: the differentiable
tensors of the sample (``sample.input`` and tensor args/kwargs that require
grad, tensor lists flattened) in, and a scalar out, the sum over every
floating (or complex, as real and imaginary parts) output of ``output * w``
with fixed random weights ``w`` drawn once per sample.

Autograd's backward for these operators is taken to be right, so a case that
gradcheck passes and gradproof fails is a gradproof false alarm. The bug suite
then plants wrong backwards (a ``torch.autograd.Function`` that returns the
true gradient, mutated) and records which tool notices and whether gradproof
names the right input.

    python benchmarks/opinfo.py                          # everything: ~20 min, one core
    python benchmarks/opinfo.py --limit 40 --bugs 10     # a quick look
    python benchmarks/opinfo.py --ops atanh,tan,erfinv --json rows.json

``--json`` writes one row per case (and per planted bug) so that two runs,
before and after a change, can be diffed.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import resource
import signal
import time
import traceback
import warnings
import zlib
from collections import Counter
from collections.abc import Callable
from typing import Any

import torch

# a sibling script: the summary both conformance benchmarks print
from conformance_report import Tool, bug_outcomes, gp_outcome, summary

import gradproof
import gradproof.torch as gpt

# Classes of a case, in the order the summary prints them.
CLASSES = (
    "both pass",
    "gradproof false alarm",
    "gradproof exception",
    "gradproof refusal",
    "gradcheck-only failure",
    "both fail",
)
MUTATIONS = ("scale 1.5", "sign flip", "one element 1e-3", "zeroed", "swap/transpose")
# How the framework's own checker is named in the summary (conformance_report.py).
TOOL = Tool(key="op", things="ops", name="gradcheck", short="gc")


# Below this, a gradient is round-off (corrcoef of one variable is the constant 1, yet
# autograd returns ~1e-17): mutating it plants no bug any finite difference could see.
NEGLIGIBLE = 1e-8


class Skip(Exception):
    """A sample that cannot be turned into a function of float64 tensors (the reason says why)."""


class Timeout(Exception):
    """One tool ran past ``--timeout`` seconds on one case."""


# --------------------------------------------------------------------------- building cases


def op_label(op) -> str:
    """``name`` or ``name.variant``: op_db holds several entries per name (polygamma_n_0, ...)."""
    return f"{op.name}.{op.variant_test_name}" if op.variant_test_name else op.name


def torch_fn_grad_mark(op) -> str | None:
    """How op_db itself marks torch's own float64 gradcheck test of this op on the CPU.

    ``"xfail"`` or ``"skip"`` when ``test_fn_grad`` (or its whole test class) is
    decorated as an expected failure or a skip (as_strided_scatter, normal, the
    dtype conversions): a failure there is torch's, known.
    """
    for d in getattr(op, "decorators", ()):
        test, cls = getattr(d, "test_name", None), getattr(d, "cls_name", None)
        whole_class = test is None and cls in ("TestBwdGradients", "TestGradients")
        if not (test == "test_fn_grad" or whole_class) or not getattr(d, "active_if", True):
            continue
        if getattr(d, "device_type", None) not in (None, "cpu"):
            continue
        dtypes = getattr(d, "dtypes", None)
        if dtypes is not None and torch.float64 not in dtypes:
            continue
        names = [getattr(x, "__name__", "") for x in getattr(d, "decorators", ())]
        return "xfail" if "expectedFailure" in names else "skip"
    return None


def float64_differentiable(op) -> bool:
    """Autograd support and float64 among the forward or the backward dtypes on the CPU."""
    if not op.supports_autograd:
        return False
    return torch.float64 in op.supported_dtypes("cpu") or torch.float64 in (
        op.supported_backward_dtypes("cpu")
    )


def _is_leaf(x: Any) -> bool:
    return torch.is_tensor(x) and x.requires_grad and x.dtype == torch.float64


def _split(tree: Any, leaves: list) -> Any:
    """Replace each differentiable tensor in ``tree`` by its index in ``leaves`` (appended)."""
    if _is_leaf(tree):
        if tree.layout != torch.strided:
            raise Skip(f"{tree.layout} input")
        leaves.append(tree)
        return _Slot(len(leaves) - 1)
    if isinstance(tree, (list, tuple)):
        return type(tree)(_split(x, leaves) for x in tree)
    if isinstance(tree, dict):
        return {k: _split(v, leaves) for k, v in tree.items()}
    if torch.is_tensor(tree) and tree.layout != torch.strided:
        raise Skip(f"{tree.layout} input")
    return tree


class _Slot:
    """Where a differentiable tensor sat in the sample's (input, args, kwargs)."""

    __slots__ = ("i",)

    def __init__(self, i: int) -> None:
        self.i = i


def _fill(tree: Any, leaves: tuple) -> Any:
    if isinstance(tree, _Slot):
        return leaves[tree.i]
    if isinstance(tree, (list, tuple)):
        return type(tree)(_fill(x, leaves) for x in tree)
    if isinstance(tree, dict):
        return {k: _fill(v, leaves) for k, v in tree.items()}
    return tree


def _outputs(out: Any) -> list:
    """The floating and complex tensors of an output (tuples, namedtuples, lists flattened)."""
    if torch.is_tensor(out):
        return [out] if (out.is_floating_point() or out.is_complex()) else []
    if isinstance(out, (list, tuple)):
        return [t for x in out for t in _outputs(x)]
    return []


def case_seed(label: str, index: int) -> int:
    """A seed that depends on the op and sample only, so that reruns draw the same weights."""
    return zlib.crc32(f"{label}/{index}".encode())


def build_case(op, sample, label: str, index: int):
    """``(scalar_fn, leaves)`` for one sample, or raise :class:`Skip`.

    ``scalar_fn(*leaves)`` runs the op as torch's own test_ops gradcheck does
    (through ``op.gradcheck_wrapper``, e.g. symmetrizing the input of eigh, and
    ``sample.output_process_fn_grad``, e.g. fixing eigenvector signs), then
    reduces every output with weights drawn here, once, from the output shapes.
    """
    leaves: list = []
    template = _split((sample.input, tuple(sample.args), dict(sample.kwargs)), leaves)
    if not leaves:
        raise Skip("no float64 tensor input requires grad")
    variant = op.get_op()
    post = sample.output_process_fn_grad or (lambda out: out)

    def run(*ls):
        inp, args, kwargs = _fill(template, ls)
        return post(op.gradcheck_wrapper(variant, inp, *args, **kwargs))

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            outs = _outputs(run(*leaves))
    except Exception as exc:
        raise Skip(f"forward raised {type(exc).__name__}") from exc
    # Only the outputs autograd differentiates enter the cost, as in gradcheck: the saved
    # mean and rstd of native_layer_norm, say, have no derivative formula. The choice is
    # made here, by position, because evaluations under no_grad require grad nowhere.
    keep = [i for i, t in enumerate(outs) if t.requires_grad]
    if not keep:
        raise Skip("no differentiable floating output")
    gen = torch.Generator().manual_seed(case_seed(label, index))
    weights = [
        torch.randn(
            (*t.shape, 2) if t.is_complex() else t.shape, generator=gen, dtype=torch.float64
        )
        for t in (outs[i] for i in keep)
    ]

    def scalar_fn(*ls):
        total = torch.zeros((), dtype=torch.float64)
        outs = _outputs(run(*ls))
        for t, w in zip((outs[i] for i in keep), weights, strict=True):
            # complex outputs enter through their real and imaginary parts
            t = torch.view_as_real(t.resolve_conj()) if t.is_complex() else t
            total = total + (t.to(torch.float64) * w).sum()
        return total

    return scalar_fn, leaves


# --------------------------------------------------------------------------- running tools


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise :class:`Timeout` in the main thread after ``seconds`` (0: no limit)."""
    if not seconds:
        yield
        return

    def handler(signum, frame):
        raise Timeout(f"ran past {seconds:g} s")

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def first_line(text: Any, width: int = 200) -> str:
    lines = [ln for ln in str(text).splitlines() if ln.strip()]
    return lines[0][:width] if lines else ""


def exception_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {first_line(exc)}"


def run_gradproof(fn: Callable, leaves: list, timeout: float) -> dict:
    """gradproof.torch.check with default options (no progress bar: output goes to a log)."""
    row: dict[str, Any] = {"gp_time": 0.0}
    # the contract says inputs are never modified, whatever happens: verified bit for bit
    before = [x.detach().clone() for x in leaves]
    t = time.perf_counter()
    try:
        with warnings.catch_warnings(), time_limit(timeout):
            warnings.simplefilter("ignore")
            report = gpt.check(fn, *leaves, progress=False)
    except Exception as exc:
        row["gp_time"] = time.perf_counter() - t
        row["gp_modified_inputs"] = _modified(before, leaves)
        # A GradientSpecError (but not a CostError, which means the cost failed while
        # being evaluated) is gradproof declining the input before any checking.
        refusal = isinstance(exc, gradproof.GradientSpecError) and not isinstance(
            exc, gradproof.CostError
        )
        row.update(
            gp="refusal" if refusal else "exception",
            gp_error=exception_text(exc),
            gp_where=_where(exc),
        )
        return row
    row["gp_time"] = time.perf_counter() - t
    row["gp_modified_inputs"] = _modified(before, leaves)
    row.update(
        gp="passed" if report.passed else "failed",
        gp_headline=first_line(report),
        gp_difference=float(report.difference),
        gp_evaluations=int(report.evaluations),
        gp_failing=[n for n, tr in report.tensors.items() if not tr.passed],
        gp_diagnoses={
            n: tr.diagnosis for n, tr in report.tensors.items() if not tr.passed and tr.diagnosis
        },
        gp_worst={n: list(tr.worst_index) for n, tr in report.tensors.items() if not tr.passed},
        gp_warnings=[first_line(w) for w in report.warnings],
    )
    return row


def _modified(before: list, leaves: list) -> list[int]:
    """Positions of inputs whose bits changed (NaNs compared as bits, not values)."""
    return [
        i
        for i, (b, x) in enumerate(zip(before, leaves, strict=True))
        if not torch.equal(
            b.contiguous().view(torch.int64), x.detach().contiguous().view(torch.int64)
        )
    ]


def _where(exc: BaseException) -> str:
    """The innermost gradproof frame of a traceback, to group exceptions by cause."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "gradproof" in f.filename]
    if not frames:
        return ""
    f = frames[-1]
    return f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} in {f.name}"


def run_gradcheck(fn: Callable, leaves: list, timeout: float) -> dict:
    """torch.autograd.gradcheck with its default settings, counting calls to ``fn``."""
    calls = [0]

    def counted(*ls):
        calls[0] += 1
        return fn(*ls)

    t = time.perf_counter()
    try:
        with warnings.catch_warnings(), time_limit(timeout):
            warnings.simplefilter("ignore")
            ok = torch.autograd.gradcheck(counted, tuple(leaves), raise_exception=False)
        row = {"gc": "passed" if ok else "failed"}
    except Exception as exc:
        row = {"gc": "exception", "gc_error": exception_text(exc)}
    row.update(gc_time=time.perf_counter() - t, gc_calls=calls[0])
    return row


def classify(row: dict) -> str:
    if row["gp"] == "refusal":
        return "gradproof refusal"
    if row["gp"] == "exception":
        return "gradproof exception"
    gp_ok, gc_ok = row["gp"] == "passed", row["gc"] == "passed"
    if gp_ok and gc_ok:
        return "both pass"
    if gc_ok:
        return "gradproof false alarm"
    if gp_ok:
        return "gradcheck-only failure"
    return "both fail"


# --------------------------------------------------------------------------- planted bugs


def true_grads(fn: Callable, leaves: list) -> list:
    xs = [x.detach().clone().requires_grad_(True) for x in leaves]
    with torch.enable_grad():
        gs = torch.autograd.grad(fn(*xs), xs, allow_unused=True)
    return [torch.zeros_like(x) if g is None else g.detach() for x, g in zip(xs, gs, strict=True)]


def plan_mutation(kind: str, grads: list) -> dict | None:
    """Which input(s) a mutation hits, or ``None`` where it would change nothing.

    The single-input mutations hit the input with the largest gradient entry, so
    that the planted error is as visible as the op allows; one element is the
    largest |grad| of that input.
    """
    peaks = [float(g.abs().max()) if g.numel() else 0.0 for g in grads]
    if max(peaks, default=0.0) < NEGLIGIBLE:
        return None  # a (numerically) zero gradient scaled, flipped or zeroed is still right
    target = max(range(len(grads)), key=lambda i: peaks[i])
    if kind in ("scale 1.5", "sign flip", "zeroed"):
        return {"targets": [target]}
    if kind == "one element 1e-3":
        return {"targets": [target], "index": int(grads[target].abs().argmax())}
    # swap two same-shape inputs whose gradients differ, else transpose a square matrix
    for i, j in itertools.combinations(range(len(grads)), 2):
        gi, gj = grads[i], grads[j]
        if gi.shape == gj.shape and _differ(gi, gj):
            return {"targets": [i, j], "how": "swap"}
    for i, g in enumerate(grads):
        if g.dim() == 2 and g.shape[0] == g.shape[1] and _differ(g, g.T):
            return {"targets": [i], "how": "transpose"}
    return None


def _differ(a, b) -> bool:
    """More than round-off apart: swapping the gradients of a self-attention's query and
    key, equal up to 1e-16, plants no bug."""
    return float((a - b).norm()) > 1e-6 * (float(a.norm()) + float(b.norm())) + NEGLIGIBLE


def mutate(kind: str, plan: dict, grads: list) -> list:
    out = list(grads)
    targets = plan["targets"]
    t = targets[0]
    if kind == "scale 1.5":
        out[t] = 1.5 * grads[t]
    elif kind == "sign flip":
        out[t] = -grads[t]
    elif kind == "zeroed":
        out[t] = torch.zeros_like(grads[t])
    elif kind == "one element 1e-3":
        g = grads[t].clone().reshape(-1)
        g[plan["index"]] *= 1 + 1e-3
        out[t] = g.reshape(grads[t].shape)
    elif plan["how"] == "swap":
        i, j = targets
        out[i], out[j] = grads[j], grads[i]
    else:
        out[t] = grads[t].T.contiguous()
    return out


def mutated_fn(fn: Callable, kind: str, plan: dict) -> Callable:
    """``fn`` behind an autograd.Function whose backward is the true gradient, mutated."""

    class Mutated(torch.autograd.Function):
        # setup_context + generate_vmap_rule: gradproof can still batch its evaluations
        generate_vmap_rule = True

        @staticmethod
        def forward(*ls):
            return fn(*ls)

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.save_for_backward(*inputs)

        @staticmethod
        def backward(ctx, g):
            # the true gradient, from autograd on the original op, at this point
            grads = true_grads(fn, list(ctx.saved_tensors))
            return tuple(g * m for m in mutate(kind, plan, grads))

    return Mutated.apply


def run_bug(fn: Callable, leaves: list, kind: str, plan: dict, timeout: float) -> dict:
    bad = mutated_fn(fn, kind, plan)
    row: dict[str, Any] = {"mutation": kind, "targets": plan["targets"], "how": plan.get("how")}
    gp = run_gradproof(bad, leaves, timeout)
    gc = run_gradcheck(bad, leaves, timeout)
    row.update(gp)
    row.update(gc)
    if gp["gp"] in ("passed", "failed"):
        row["gp_detected"] = gp["gp"] == "failed"
        row["gp_named"] = any(f"input{i}" in gp["gp_failing"] for i in plan["targets"])
        row["gp_blamed_other"] = sorted(
            set(gp["gp_failing"]) - {f"input{i}" for i in plan["targets"]}
        )
    else:
        row["gp_detected"] = None  # raised
    row["gc_detected"] = None if gc["gc"] == "exception" else gc["gc"] == "failed"
    return row


# --------------------------------------------------------------------------- the run


def select_ops(args) -> list:
    from torch.testing._internal.common_methods_invocations import op_db

    ops = [op for op in op_db if float64_differentiable(op)]
    if args.ops:
        wanted = {s.strip() for s in args.ops.split(",") if s.strip()}
        ops = [op for op in ops if op.name in wanted or op_label(op) in wanted]
    if args.limit:
        ops = ops[: args.limit]
    return ops


def bug_ops(labels: list[str], n: int | None) -> set[str]:
    """Every op (``n`` None) or ``n`` ops spread evenly over the list, deterministically."""
    if n is None or n >= len(labels):
        return set(labels)
    if n <= 0:
        return set()
    step = len(labels) / n
    return {labels[int(i * step)] for i in range(n)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=0, help="first N ops only")
    parser.add_argument("--ops", default="", help="comma-separated op names (or name.variant)")
    parser.add_argument("--samples", type=int, default=3, help="samples per op (default 3)")
    parser.add_argument("--json", default="", help="write every row to this JSON file")
    parser.add_argument(
        "--bugs",
        type=int,
        default=None,
        help="plant bugs in the first sample of N ops spread over the list "
        "(default: every op; 0: no bug suite)",
    )
    parser.add_argument("--timeout", type=float, default=300, help="seconds per tool and case")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument(
        "--max-coords",
        type=int,
        default=20_000,
        help="skip samples with more coordinates (default 20000: gradcheck alone takes ~25 s)",
    )
    parser.add_argument(
        "--max-memory-gb",
        type=float,
        default=8,
        help="address-space limit of this process (default 8; 0: none)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.max_memory_gb:
        # A runaway sample (grid_sampler_3d's has 5 million coordinates) then fails with
        # an allocation error, caught as that case's exception, instead of drawing the
        # kernel's OOM killer onto whatever else runs on the machine.
        limit = int(args.max_memory_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    t_start = time.perf_counter()
    ops = select_ops(args)
    labels = [op_label(op) for op in ops]
    with_bugs = bug_ops(labels, args.bugs)
    print(
        f"torch {torch.__version__}, gradproof from {gradproof.__file__}\n"
        f"{len(ops)} float64-differentiable op entries, up to {args.samples} samples each, "
        f"bug suite on {len(with_bugs)} ops\n",
        flush=True,
    )
    rows: list[dict] = []
    bug_rows: list[dict] = []
    skipped: Counter = Counter()
    for n_op, (op, label) in enumerate(zip(ops, labels, strict=True), start=1):
        # op_db draws samples from the global RNG: seed it so that reruns (before/after a
        # change) check the very same inputs
        torch.manual_seed(case_seed(label, -1))
        try:
            samples = list(
                itertools.islice(
                    op.sample_inputs("cpu", torch.float64, requires_grad=True), args.samples
                )
            )
        except Exception as exc:
            skipped[f"sample_inputs raised {type(exc).__name__}"] += 1
            continue
        if not samples:
            skipped["no samples"] += 1
            continue
        for index, sample in enumerate(samples):
            try:
                fn, leaves = build_case(op, sample, label, index)
                coords = sum(x.numel() for x in leaves)
                if coords > args.max_coords:
                    raise Skip(f"more than --max-coords={args.max_coords} coordinates")
            except Skip as exc:
                skipped[str(exc)] += 1
                continue
            row = {
                "op": label,
                "sample": index,
                "shapes": [list(x.shape) for x in leaves],
                "coords": sum(x.numel() for x in leaves),
                "torch_mark": torch_fn_grad_mark(op),
            }
            row.update(run_gradproof(fn, leaves, args.timeout))
            row.update(run_gradcheck(fn, leaves, args.timeout))
            row["class"] = classify(row)
            rows.append(row)
            if row["gp_modified_inputs"]:
                print(f"    gradproof MODIFIED inputs {row['gp_modified_inputs']}", flush=True)
            if row["class"] != "both pass":
                print(f"[{n_op}/{len(ops)}] {describe(row)}", flush=True)
            if label in with_bugs and not any(b["op"] == label for b in bug_rows):
                bug_rows.extend(plant_bugs(fn, leaves, row, args.timeout))
    total = time.perf_counter() - t_start
    summary(rows, bug_rows, skipped, total, tool=TOOL, classes=CLASSES, mutations=MUTATIONS)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {
                    "torch": torch.__version__,
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


def plant_bugs(fn: Callable, leaves: list, case: dict, timeout: float) -> list[dict]:
    """The bug suite on one case whose correct backward gradcheck accepts."""
    if case["gc"] != "passed":
        return []  # gradcheck does not accept the op itself: a planted bug proves nothing
    try:
        grads = true_grads(fn, leaves)
    except Exception:
        return []
    out = []
    for kind in MUTATIONS:
        plan = plan_mutation(kind, grads)
        if plan is None:
            continue
        row = {"op": case["op"], "sample": case["sample"], "coords": case["coords"]}
        row.update(run_bug(fn, leaves, kind, plan, timeout))
        out.append(row)
        # gradcheck's rtol=1e-3 lets a 1e-3 relative error through by design: not news
        gc_news = not row["gc_detected"] and kind != "one element 1e-3"
        if not (row["gp_detected"] and row["gp_named"]) or gc_news:
            print(f"    bug {describe_bug(row)}", flush=True)
    return out


def gc_outcome(row: dict) -> str:
    if row["gc"] == "exception":
        return f"exception: {row['gc_error']}"
    return row["gc"]


def describe(row: dict) -> str:
    mark = f" (op_db marks test_fn_grad {row['torch_mark']})" if row["torch_mark"] else ""
    return (
        f"{row['class']}: {row['op']} sample {row['sample']} {row['shapes']}{mark}\n"
        f"      gradproof: {gp_outcome(row)}\n"
        f"      gradcheck: {gc_outcome(row)}"
    )


def describe_bug(row: dict) -> str:
    gp, gc = bug_outcomes(row, gc_outcome(row))
    return (
        f"{row['op']} [{row['mutation']}] on input{row['targets']}: gradproof {gp}; gradcheck {gc}"
    )


if __name__ == "__main__":
    main()
