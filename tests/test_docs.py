"""The README, the documentation and the packaging say what is true, and keep saying it.

The Python blocks themselves run under ``pytest --markdown-docs`` (``.ci/run``);
these tests cover what that runner cannot: the shell examples, the files
they work on, and the places where two files must agree.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import gradproof

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)
# Pages whose shell examples run commands on files the page itself shows.
SHELL_PAGES = [README, DOCS / "guides" / "cli.md", DOCS / "guides" / "pytest.md"]


def fences(path: Path) -> list[tuple[str, str]]:
    """(info string, body) of every fenced block, outermost only, in order."""
    return [(m.group(1).strip(), m.group(2)) for m in FENCE.finditer(path.read_text("utf-8"))]


def language(info: str) -> str:
    return info.strip("{}").split()[0].lstrip(".") if info else ""


def test_readme_opens_with_the_demo_then_the_tests_that_ci_runs():
    text = README.read_text("utf-8")
    first_heading = text.index("\n## ")
    (demo_info, demo), (tests_info, tests) = fences(README)[:2]
    assert text.index("```") < first_heading  # the blocks open the README
    assert (language(demo_info), language(tests_info)) == ("bash", "bash")
    assert "pip install -e '.[demo]'" in demo and demo.strip().endswith("gradproof demo")
    install, test_command = tests.strip().splitlines()
    ci = (ROOT / ".ci" / "run").read_text("utf-8")
    assert test_command in ci.splitlines()  # CI runs exactly the README's test command
    for requirement in re.findall(r"pip install (?:-e )?(\S+)", install):
        assert f" {requirement}" in ci, requirement


def test_every_block_says_what_it_holds():
    pages = [README, *sorted(DOCS.rglob("*.md"))]
    unmarked = [(p.name, body[:40]) for p in pages for info, body in fences(p) if not info]
    assert unmarked == []  # output goes in ```text, never in a bare fence


def test_the_all_extra_names_every_feature_once():
    tomllib = pytest.importorskip("tomllib")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"][
        "optional-dependencies"
    ]
    features = sorted(set(extras) - {"all", "test", "docs", "dev"})
    (entry,) = extras["all"]
    named = re.fullmatch(r"gradproof\[([a-z0-9,]+)\]", entry)
    assert named and sorted(named.group(1).split(",")) == features


def test_the_version_is_written_in_one_place():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    assert "version" not in project and "version" in project["dynamic"]
    base = re.match(r"\d+\.\d+\.\d+", gradproof.__version__).group(0)
    assert f"## {base}" in (ROOT / "CHANGELOG.md").read_text("utf-8")


def test_the_api_reference_covers_every_public_name():
    reference = (DOCS / "reference" / "gradproof.md").read_text("utf-8")
    missing = [n for n in gradproof.__all__ if f"::: gradproof.{n}\n" not in reference]
    assert missing == []
    for module in ("torch", "jax", "nn", "examples"):
        page = (DOCS / "reference" / f"{module}.md").read_text("utf-8")
        assert f"::: gradproof.{module}\n" in page


def test_the_notebook_is_stored_without_outputs():
    notebook = json.loads((ROOT / "notebooks" / "gradient_checking.ipynb").read_text("utf-8"))
    code = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    assert code and all(not c["outputs"] and c["execution_count"] is None for c in code)


def shell_example(page: Path) -> tuple[dict[str, str], list[tuple[str, int]]]:
    """The files a page shows (a Python block opening with ``# name.py``) and its commands.

    Commands are the lines of its bash blocks that run gradproof or pytest on
    one of those files; ``# exit status N`` at the end of a line gives the
    status it must end with (0 otherwise).
    """
    files, lines = {}, []
    for info, body in fences(page):
        first = body.splitlines()[0] if body else ""
        if language(info) == "python" and re.fullmatch(r"# \w+\.py", first):
            files[first[2:]] = body
        elif language(info) == "bash":
            lines += body.splitlines()
    commands = []
    for line in lines:
        if line.startswith(("gradproof check", "python -m pytest")) and any(
            name in line for name in files
        ):
            status = re.search(r"# exit status (\d+)", line)
            commands.append((line, int(status.group(1)) if status else 0))
    return files, commands


@pytest.mark.parametrize("page", SHELL_PAGES, ids=lambda p: p.name)
def test_shell_examples_run_as_shown(page, tmp_path):
    files, commands = shell_example(page)
    assert files and commands
    for name, body in files.items():
        (tmp_path / name).write_text(body, encoding="utf-8")
    for line, status in commands:
        command = line.split("  #")[0].split()
        program = [sys.executable, "-m", "gradproof"] if command[0] == "gradproof" else []
        result = subprocess.run(
            (program or [sys.executable]) + command[1:],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "NO_COLOR": "1"},
        )
        assert result.returncode == status, f"{line}\n{result.stdout}\n{result.stderr}"
        if "--html" in command:
            assert (tmp_path / command[command.index("--html") + 1]).stat().st_size > 1000


SPHINX_ROLE = re.compile(r":(func|class|meth|attr|mod|data|exc):`")


def test_docstrings_are_markdown_not_restructured_text():
    # mkdocstrings renders Markdown: a Sphinx role or an RST literal block shows as is
    found = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in sorted((ROOT / "src" / "gradproof").rglob("*.py"))
        for n, line in enumerate(path.read_text("utf-8").splitlines(), 1)
        if SPHINX_ROLE.search(line) or line.rstrip().endswith(("Example::", "Examples::"))
    ]
    assert found == []


def test_the_api_reference_renders(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "--site-dir", str(site)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    for module in ("gradproof", "torch", "jax", "nn", "examples"):
        html = (site / "reference" / module / "index.html").read_text("utf-8")
        body = html[html.index("<article") : html.index("</article>")]
        assert not SPHINX_ROLE.search(body), module
        # a >>> example outside a code block renders as nested blockquotes
        assert "<blockquote" not in body, module
        assert "::" not in re.sub(r"<[^>]+>", "", body).replace("gradproof::", ""), module
        # cross-references all resolved (an unresolved one is left as [text][id])
        assert "][gradproof." not in body, module
        prose = re.sub(r"<pre.*?</pre>|<code.*?</code>", "", body, flags=re.DOTALL)
        assert "&gt;&gt;&gt;" not in prose, module
    rendered = (site / "reference" / "gradproof" / "index.html").read_text("utf-8")
    # the Attributes table has one row per attribute (no "method, eps, mode" row)
    assert ">method,<" not in rendered.replace(" ", "")


def test_python_examples_paste_into_a_plain_repl():
    # the interactive interpreter (before 3.13) ends a class or function at a blank line:
    # a block meant for pasting keeps its indented bodies free of them (files, whose
    # first line names them, are written out and run, not pasted)
    broken = []
    for page in [README, *sorted(DOCS.rglob("*.md"))]:
        for info, body in fences(page):
            lines = body.splitlines()
            if language(info) != "python" or (lines and re.fullmatch(r"# \w+\.py", lines[0])):
                continue
            broken += [
                f"{page.relative_to(ROOT)}: {lines[i + 1].strip()}"
                for i in range(len(lines) - 1)
                if not lines[i].strip() and lines[i + 1].startswith((" ", "\t"))
            ]
    assert broken == []
