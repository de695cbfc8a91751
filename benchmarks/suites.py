"""Other projects' own test suites, their checker calls run by the original and by gradproof.

Every ``torch.autograd.gradcheck``/``gradgradcheck`` or JAX ``check_grads``
call a project's tests make runs twice (``_suites_plugin.py``, a pytest
plugin): the original decides the test's course, gradproof's drop-in
(``gradproof.torch.gradcheck``/``gradgradcheck``, ``gradproof.jax.check_grads``)
runs beside it on copies of the same inputs. Each test gets two outcomes, its
real one and the one it would have had with gradproof as the checker. Not
part of CI.

Usage::

    python benchmarks/suites.py run SUITE --source DIR [--out FILE]
        [--gradproof-src PATH] [-k EXPR] [--timeout S]
    python benchmarks/suites.py table RESULTS.jsonl...

``run`` runs pytest in a subprocess in ``DIR`` (the project's checkout) on
the suite's test paths and appends one JSON record per test to ``--out``
(default ``SUITE.jsonl``; pytest's own output goes to ``FILE.log``).
``--gradproof-src`` puts a gradproof source tree first on ``PYTHONPATH`` (to
measure another version: ``git worktree add /tmp/gp_before HEAD`` then
``--gradproof-src /tmp/gp_before/src``). ``--timeout`` bounds each test (the
time in gradproof not counted) and each gradproof call. ``table`` prints, per
suite, the tests green and red under each checker, gradproof's crashes and
refusals, every test red under gradproof but green under the original with
gradproof's reason, and the time each side spent in the checker.

The suites and their sources (each checkout at the installed version):

``jax-lax-autodiff``, ``jax-nn``: JAX's ``tests/lax_autodiff_test.py`` and
``tests/nn_test.py`` at the installed jax's tag::

    git clone --depth 1 --branch jax-v0.10.2 https://github.com/jax-ml/jax /tmp/src_jax

Run with JAX's defaults (x64 off, ``JAX_NUM_GENERATED_CASES`` 10), as its
pytest CI does unless told otherwise.

``kornia``: kornia's tests whose name contains ``gradcheck`` (its
``BaseTester.gradcheck`` passes ``fast_mode=True``; kept), against the
installed kornia (``pip install --no-deps kornia kornia_rs``)::

    git clone --depth 1 --branch v0.9.0 https://github.com/kornia/kornia /tmp/src_kornia

``entmax``: entmax's tests (inside the package; the checkout is imported)::

    git clone --depth 1 https://github.com/deep-spin/entmax /tmp/src_entmax
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
# gradproof declining to check where the function is nan or infinite (CostError).
NOT_FINITE = re.compile(r"the cost is \S+ at the check point")


@dataclass(frozen=True)
class Suite:
    framework: str  # "torch" or "jax": imported before the checkers are patched
    paths: tuple[str, ...]  # test files or directories inside the checkout
    keyword: str | None = None  # a -k expression choosing the subset run
    every: int = 1  # then every n-th test only, in collection order (to bound the time)
    packages: tuple[str, ...] = ()  # the project's packages, whose globals are patched too
    import_checkout: bool = False  # put the checkout on PYTHONPATH (the package is tested there)
    note: str = ""  # what the table says of the subset and settings


SUITES = {
    "jax-lax-autodiff": Suite(
        "jax",
        ("tests/lax_autodiff_test.py",),
        every=3,
        note="every 3rd test (227 of 681); x64 off (JAX's default)",
    ),
    "jax-nn": Suite(
        "jax",
        ("tests/nn_test.py",),
        keyword="Grad or grad",
        note="tests named *Grad* (29 of 409, those calling check_grads); x64 off (JAX's default)",
    ),
    "kornia": Suite(
        "torch",
        ("tests",),
        keyword="gradcheck",
        packages=("kornia", "testing"),
        note="tests named *gradcheck* (-k gradcheck); kornia's fast_mode=True kept",
    ),
    "entmax": Suite("torch", ("entmax",), packages=("entmax",), import_checkout=True),
}


def run(args: argparse.Namespace) -> int:
    suite = SUITES[args.suite]
    source = Path(args.source).resolve()
    out = Path(args.out or f"{args.suite}.jsonl").resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    path = [str(HERE)]
    if args.gradproof_src:
        path.insert(0, str(Path(args.gradproof_src).resolve()))
    if suite.import_checkout:
        path.append(str(source))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([*path, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "GRADPROOF_SUITES_RESULTS": str(out),
        "GRADPROOF_SUITES_FRAMEWORK": suite.framework,
        "GRADPROOF_SUITES_PACKAGES": ",".join(suite.packages),
        "GRADPROOF_SUITES_TIMEOUT": str(args.timeout),
        "GRADPROOF_SUITES_EVERY": str(args.every or suite.every),
    }
    keyword = args.keyword or suite.keyword
    command = [
        sys.executable, "-m", "pytest", *suite.paths,
        "-p", "_suites_plugin", "-p", "no:gradproof", "-p", "no:cacheprovider",
        "-q", "-rN", "--color=no",
        *(["-k", keyword] if keyword else []),
    ]  # fmt: skip
    header = {"suite": args.suite, "source": str(source), "keyword": keyword, "note": suite.note}
    if args.keyword or args.every:
        header["note"] = f"-k {keyword!r}, every {args.every or suite.every}"
    out.write_text(json.dumps(header) + "\n")
    start = time.perf_counter()
    with open(f"{out}.log", "w") as log:
        rc = subprocess.call(command, cwd=source, env=env, stdout=log, stderr=subprocess.STDOUT)
    with out.open("a") as f:
        f.write(json.dumps({"finished": True, "rc": rc, "seconds": time.perf_counter() - start}))
        f.write("\n")
    print(f"{args.suite}: pytest exited {rc}; results in {out}, its output in {out}.log")
    return 0


def _load(path: str) -> dict:
    """One results file: its header, its tests and its session and run records."""
    suite: dict = {"tests": [], "session": {}, "finished": {}}
    for line in Path(path).read_text().splitlines():
        record = json.loads(line)
        if "suite" in record:
            suite["header"] = record
        elif "session" in record:
            suite["session"] = record
        elif "finished" in record:
            suite["finished"] = record
        else:
            suite["tests"].append(record)
    return suite


def _green(outcome: str) -> bool:
    return outcome in ("passed", "xfailed")


def _indent(text: str) -> str:
    return "\n".join(f"      {line}" for line in text.splitlines())


def _pattern(message: str) -> str:
    """A message's first line with its numbers, shapes and dtypes masked: one kind of failure."""
    line = (message or "").strip().split("\n")[0]
    line = re.sub(r"\{.*\}", "{...}", line)
    line = re.sub(r"\b(b?float|u?int|complex)\d+\b", "<dtype>", line)
    line = re.sub(r"\([\d, ]*\)", "(...)", line)
    return re.sub(r"\d+(\.\d+)?(e[-+]?\d+)?", "N", line)[:200]


def _kind(call: dict) -> str:
    """How gradproof's outcome of one call compares with the original's."""
    original, gradproof = call["original"]["status"], call["gradproof"]["status"]
    if gradproof == "error":
        error = call["gradproof"]
        if error["type"] == "Timeout":
            return "timeout"
        if error["type"] == "CostError" and NOT_FINITE.search(error["message"]):
            return "declined (cost not finite)"
        return "refusal" if error.get("refusal") else "crash"
    if original == gradproof:
        return "same"
    if original == "error":
        return "original raised"
    return "fails, original passes" if gradproof == "fail" else "passes, original fails"


def _print_calls(suite: dict) -> None:
    """gradproof's calls that differ from the original's, grouped by kind and message."""
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for test in suite["tests"]:
        for call in test["calls"]:
            kind = _kind(call)
            if kind != "same":
                message = f"{call['gradproof'].get('type')}: {call['gradproof'].get('message')}"
                groups[kind, _pattern(message)].append(test["nodeid"])
    counts: Counter[str] = Counter()
    for (kind, _), nodeids in groups.items():
        counts[kind] += len(nodeids)
    summary = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))
    print(f"gradproof's calls unlike the original's: {summary or 'none'}")
    for (kind, pattern), nodeids in sorted(groups.items(), key=lambda g: (g[0][0], -len(g[1]))):
        tests = list(dict.fromkeys(nodeids))
        print(f"- {kind}, {len(nodeids)} calls in {len(tests)} tests: `{pattern}`")
        for nodeid in tests[:3]:
            print(f"    - `{nodeid}`")


def table(paths: list[str]) -> None:
    for path in paths:
        suite = _load(path)
        header, tests = suite["header"], suite["tests"]
        calls = [c for t in tests for c in t["calls"]]
        ran = [t for t in tests if t["original"] != "skipped"]
        print(f"## {header['suite']}\n")
        print(f"- source: `{header['source']}`; {header['note'] or 'all tests'}")
        print(f"- gradproof: `{suite['session'].get('gradproof', '?')}`")
        if suite["finished"]:
            finished = suite["finished"]
            print(f"- wall time {finished['seconds']:.0f} s, pytest exit status {finished['rc']}")
        else:
            print("- **incomplete**: the run did not finish")
        calling = sum(bool(t["calls"]) for t in tests)
        print(
            f"- tests: {len(tests)} ({len(tests) - len(ran)} skipped), "
            f"{calling} calling a checker, {len(calls)} checker calls\n"
        )
        print("| checker | green | red |\n|---|---|---|")
        for side in ("original", "gradproof"):
            green = sum(_green(t[side]) for t in ran)
            print(f"| {side} | {green} | {len(ran) - green} |")
        t_original = sum(c["original"]["seconds"] for c in calls)
        t_gradproof = sum(c["gradproof"]["seconds"] for c in calls)
        ratio = f" ({t_gradproof / t_original:.1f}x)" if t_original else ""
        both = [c for c in calls if c["original"]["status"] == c["gradproof"]["status"] == "pass"]
        b_original = sum(c["original"]["seconds"] for c in both)
        b_gradproof = sum(c["gradproof"]["seconds"] for c in both)
        b_ratio = f" ({b_gradproof / b_original:.1f}x)" if b_original else ""
        print(
            f"\ntime in the checker: original {t_original:.1f} s, "
            f"gradproof {t_gradproof:.1f} s{ratio}; over the {len(both)} calls both passed: "
            f"{b_original:.1f} s and {b_gradproof:.1f} s{b_ratio}\n"
        )
        _print_calls(suite)
        worse = [t for t in ran if _green(t["original"]) and not _green(t["gradproof"])]
        print(f"\nred under gradproof, green under the original: {len(worse)}")
        for t in worse:
            print(f"- `{t['nodeid']}`\n{_indent(t['reason'])}")
        better = [t for t in ran if not _green(t["original"]) and _green(t["gradproof"])]
        print(f"\ngreen under gradproof, red under the original: {len(better)}")
        for t in better:
            print(f"- `{t['nodeid']}`\n{_indent(t.get('failure', ''))}")
        print()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="run one suite")
    p_run.add_argument("suite", choices=sorted(SUITES))
    p_run.add_argument("--source", required=True, help="the project's checkout")
    p_run.add_argument("--out", help="the results file (default SUITE.jsonl)")
    p_run.add_argument("--gradproof-src", help="a gradproof source tree to use instead")
    p_run.add_argument("-k", dest="keyword", help="a pytest -k expression (replaces the suite's)")
    p_run.add_argument("--every", type=int, help="every n-th test only (replaces the suite's)")
    p_run.add_argument("--timeout", type=float, default=300, help="seconds per test and per call")
    p_table = sub.add_parser("table", help="print the summary of results files")
    p_table.add_argument("results", nargs="+")
    args = parser.parse_args()
    if args.command == "run":
        return run(args)
    table(args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
