"""The engine's shape: gradproof's modules import each other without any cycle.

Every import counts, including those inside functions and under
``TYPE_CHECKING``: a lower module never imports a higher one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np

import gradproof

PACKAGE = Path(gradproof.__file__).parent


def _module_name(path: Path) -> str:
    parts = ["gradproof", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The gradproof modules that ``path`` imports, anywhere in the file."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            # "from . import _policy" imports the module gradproof._policy; "from . import
            # __version__" imports a name from the package gradproof itself.
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                for alias in node.names
            ]
        else:
            continue
        found |= {t for t in targets if t in modules and t != name}
    return found


def _graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {_module_name(p) for p in paths}
    return {_module_name(p): _imports(p, modules) for p in paths}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_module_of_gradproof_imports_back_into_a_cycle():
    cycle = _cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycle(graph) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_function_level_and_type_checking_imports_are_counted(tmp_path, monkeypatch):
    pkg = tmp_path / "gradproof"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "_low.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ._high import X\n"
    )
    (pkg / "_high.py").write_text("def f():\n    from . import _low\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", pkg)
    assert _cycle(_graph()) is not None


def test_private_names_stay_in_their_module():
    """No module reaches into another's underscore names (``_check._options``)."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level:
                offenders += [
                    f"{path.name}: from {'.' * node.level}{node.module or ''} import {a.name}"
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__") and node.module
                ]
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id.startswith("_")
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                offenders.append(f"{path.name}: {node.value.id}.{node.attr}")
    assert offenders == []


# --- size: a ratchet ----------------------------------------------------------------
# A function over FUNCTION_LINES lines or FUNCTION_PARAMETERS parameters, or a module over
# MODULE_LINES lines, needs an entry below with its reason. A public signature mirrors
# what users call (torch's gradcheck, JAX's check_grads, the seeds' functions); an
# engine function stays whole only where splitting it would hide its reading order (the
# demo's story, the diagnoses in order of evidence) or cost speed (the hot loop). The
# list only shrinks.
FUNCTION_LINES = 60
FUNCTION_PARAMETERS = 6
MODULE_LINES = 600

PUBLIC = "a public signature: the options users pass"
ALLOWED = {
    # functions over FUNCTION_LINES lines
    ("_check.py", "check", "lines"): PUBLIC + ", and their docstring",
    ("_demo.py", "tell", "lines"): "the demo's story, told in order",
    ("_diagnose.py", "diagnose", "lines"): "one pattern after another, in order of evidence",
    ("_finite.py", "cost_values", "lines"): "the hot loop, kept in one frame",
    ("_format.py", "headline", "lines"): "one sentence per kind of verdict",
    ("jax/_dropin.py", "check_grads", "lines"): PUBLIC + " (jax.test_util.check_grads')",
    # functions over FUNCTION_PARAMETERS parameters
    ("_check.py", "check", "parameters"): PUBLIC,
    ("_check.py", "assert_gradients", "parameters"): PUBLIC + " (check's)",
    ("jax/_dropin.py", "check_grads", "parameters"): PUBLIC + " (jax.test_util.check_grads')",
    ("torch/_dropins.py", "gradcheck", "parameters"): PUBLIC + " (torch.autograd.gradcheck's)",
    ("torch/_dropins.py", "gradgradcheck", "parameters"): PUBLIC
    + " (torch.autograd.gradgradcheck's)",
    ("nn/_functional.py", "L_layer_model", "parameters"): PUBLIC + " (the seeds')",
    ("nn/_model.py", "fit", "parameters"): PUBLIC,
    ("_finite.py", "probe", "parameters"): "the hot path: no record built per probe",
}


def _sizes() -> set[tuple[str, str, str]]:
    """Every (module, function, measure) over its limit, functions by name."""
    over = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        where = path.relative_to(PACKAGE).as_posix()
        source = path.read_text(encoding="utf-8")
        if len(source.splitlines()) > MODULE_LINES:
            over.add((where, "", "module"))
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            a = node.args
            named = [x.arg for x in [*a.posonlyargs, *a.args, *a.kwonlyargs]]
            count = len([n for n in named if n not in ("self", "cls")])
            count += (a.vararg is not None) + (a.kwarg is not None)
            if node.end_lineno - node.lineno + 1 > FUNCTION_LINES:
                over.add((where, node.name, "lines"))
            if count > FUNCTION_PARAMETERS:
                over.add((where, node.name, "parameters"))
    return over


def test_long_functions_and_modules_have_a_reason_written_down():
    over = _sizes()
    unexplained = sorted(over - ALLOWED.keys())
    assert not unexplained, (
        f"over the size limits ({FUNCTION_LINES} lines or {FUNCTION_PARAMETERS} parameters a "
        f"function, {MODULE_LINES} lines a module), with no reason in ALLOWED: {unexplained}. "
        "Split it (a record for its arguments, a stage of its own), or add it with the reason"
    )
    # an entry that no longer applies is removed, so the list only shrinks
    stale = sorted(ALLOWED.keys() - over)
    assert not stale, f"ALLOWED entries now within the limits, to remove: {stale}"


def test_a_coordinate_status_is_an_enum_that_says_whether_it_fails():
    from gradproof._compare import Judgement, Status

    assert [s.failed for s in Status] == [False, False, False, True, True]
    codes = np.array([Status.AGREES, Status.KINK, Status.WRONG, Status.SUSPECT], dtype=np.int8)
    assert Status.failing(codes).tolist() == [False, False, True, True]
    judgement = Judgement(codes, 0, np.zeros(4, dtype=bool), 0.0)
    assert judgement.failed and judgement.wrong.tolist() == [2, 3]
    assert Status(int(codes[1])) is Status.KINK  # a stored code reads back as its name
