"""`gradproof check` run as a program: sibling imports with workers, unwritable outputs,
a closed pipe and a user file that raises all end in one clear line and the right status."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

# The installed console script, as users run it: unlike `python -m gradproof` it does not
# put the current folder on sys.path, so it shows what the command itself makes importable.
# PYTHONPATH, if set, reaches it and its worker processes.
_SCRIPT = Path(sysconfig.get_path("scripts")) / "gradproof"
GRADPROOF = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-m", "gradproof"]

SIBLING = """
import numpy as np
W = np.array([[0.5, -1.0], [2.0, 0.25]])
x = np.array([1.5, -0.5])
def forward(p):
    return float(np.sum(np.tanh(p["W"] @ x)))
def backward(p):
    return {"dW": np.outer(1 - np.tanh(p["W"] @ x) ** 2, x)}
"""

MODEL = """
import os
import mynet
params = {"W": mynet.W}
def cost(p):
    open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "ran"), "a").close()
    return mynet.forward(p)
def grads(p):
    return mynet.backward(p)
"""


def gradproof(*args: str, cwd=None, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("stdout", subprocess.PIPE)
    return subprocess.run(
        [*GRADPROOF, *args],
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        timeout=timeout,
        check=False,
        **kw,
    )


def raising_cost(folder: Path, statement: str) -> None:
    """``user.py`` in ``folder``: params W, a right ``grads``, and a cost that runs
    ``statement`` (a raise) instead of computing anything."""
    (folder / "user.py").write_text(
        "import numpy as np\nparams = {'W': np.ones(3)}\n"
        f"def cost(p):\n    {statement}\n"
        "def grads(p):\n    return {'dW': np.ones(3)}\n"
    )


def one_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("gradproof check: "), stderr
    return lines[0]


@pytest.fixture
def model(tmp_path):
    """model.py imports mynet.py from its own folder; calling the cost leaves a marker file."""
    (tmp_path / "mynet.py").write_text(SIBLING)
    (tmp_path / "model.py").write_text(MODEL)
    return tmp_path


def test_sibling_import_works_with_workers_from_another_folder(model, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    result = gradproof(
        "check", str(model / "model.py:cost"), "--workers", "2", "--no-color", cwd=elsewhere
    )
    assert result.returncode == 0, result.stderr
    assert "Gradient check passed" in result.stdout
    assert "Traceback" not in result.stderr


def test_worker_processes_import_the_sibling_when_they_evaluate(tmp_path):
    # The cost imports mynet only when called and notes which process called it.
    (tmp_path / "mynet.py").write_text(SIBLING)
    (tmp_path / "model.py").write_text(
        textwrap.dedent(
            """
            import os
            import numpy as np
            PARENT = os.getpid()  # sent to the workers with the cost, by value
            params = {"W": np.arange(1.0, 401.0).reshape(20, 20) / 400}
            def cost(p):
                import mynet
                with open(os.path.join(os.path.dirname(mynet.__file__), "in_worker"), "a") as f:
                    f.write(f"{os.getpid() != PARENT}\\n")
                return float(np.sum(np.tanh(p["W"]) * mynet.x[0]))
            def grads(p):
                import mynet
                return {"dW": (1 - np.tanh(p["W"]) ** 2) * mynet.x[0]}
            """
        )
    )
    result = gradproof("check", "model.py:cost", "--workers", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "True" in (tmp_path / "in_worker").read_text().split()  # a worker ran the cost


@pytest.mark.parametrize("option", ["--html", "--json"])
@pytest.mark.parametrize("where", ["missing-folder", "a-folder", "under-a-file"])
def test_unwritable_output_exits_2_before_the_check_runs(model, option, where):
    (model / "reports").mkdir()
    path = {
        "missing-folder": model / "no" / "such" / "report.out",
        "a-folder": model / "reports",
        "under-a-file": model / "mynet.py" / "report.out",
    }[where]
    result = gradproof("check", "model.py:cost", option, str(path), cwd=model)
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert f"cannot write {option} {path}: " in line
    assert ";" in line.split(f"{path}: ", 1)[1]  # the problem, then the fix
    assert not (model / "ran").exists(), "the check ran although its report could not be saved"
    assert result.stdout == ""


def test_writable_outputs_are_written_and_no_probe_file_is_left(model):
    result = gradproof("check", "model.py:cost", "--json", "r.json", "--html", "r.html", cwd=model)
    assert result.returncode == 0, result.stderr
    assert json.loads((model / "r.json").read_text())["passed"] is True
    assert (model / "r.html").stat().st_size > 0


def test_validating_an_output_path_leaves_no_file_behind(model):
    (model / "broken.py").write_text("params = {}\ndef grads(p):\n    return {}\n")
    result = gradproof("check", "broken.py:cost", "--json", "r.json", cwd=model)
    assert result.returncode == 2
    assert "has no 'cost'" in one_line(result.stderr)
    assert not (model / "r.json").exists()


def closed_pipe_run(*args: str, cwd) -> subprocess.CompletedProcess:
    """Run with stdout a pipe whose reading end is already closed (what `| head -1` leaves)."""
    read, write = os.pipe()
    os.close(read)
    try:
        return gradproof(*args, cwd=cwd, stdout=write)
    finally:
        os.close(write)


def test_closed_pipe_ends_check_quietly_keeps_status_and_writes_files(model):
    result = closed_pipe_run("check", "model.py:cost", "--json", "r.json", cwd=model)
    assert result.stderr == ""
    assert result.returncode == 0  # the verdict, not the pipe
    assert json.loads((model / "r.json").read_text())["passed"] is True


def test_closed_pipe_keeps_a_failing_verdict(model):
    (model / "wrong.py").write_text(
        "from model import *\ndef bad(p):\n    return {'dW': 2 * grads(p)['dW']}\n"
    )
    result = closed_pipe_run("check", "model.py:cost", "--grads", "wrong.py:bad", cwd=model)
    assert result.stderr == ""
    assert result.returncode == 1


def test_closed_pipe_ends_demo_quietly(tmp_path):
    result = closed_pipe_run("demo", cwd=tmp_path)
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr
    assert result.returncode in (0, 1)


def test_head_reads_one_line_and_nothing_complains(model):
    shell = f"set -o pipefail; {shlex.join(GRADPROOF)} check model.py:cost --no-color | head -1"
    result = subprocess.run(
        ["bash", "-c", shell], cwd=model, capture_output=True, text=True, timeout=60
    )
    assert result.stdout.startswith("Gradient check passed")
    assert result.stdout.count("\n") == 1
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr
    assert result.returncode == 0


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import numpy as np\nparams = {}\nx = 1 / 0\n", "ZeroDivisionError: division by zero"),
        ("import mynet_missing\n", "No module named 'mynet_missing'"),
        ("def cost(p:\n    return 0\n", "SyntaxError"),
        ("import sys\nsys.exit(3)\n", "sys.exit(3)"),
    ],
    ids=["raises", "missing-import", "syntax-error", "sys-exit"],
)
def test_a_user_file_that_fails_to_load_exits_2_naming_file_and_error(tmp_path, source, expected):
    (tmp_path / "user.py").write_text(source)
    result = gradproof("check", "user.py:cost", cwd=tmp_path)
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert "user.py" in line and expected in line


def test_an_error_in_a_sibling_names_its_file_and_line(tmp_path):
    (tmp_path / "helper.py").write_text("x = [1, 2]\ny = x[5]\n")
    (tmp_path / "user.py").write_text("import helper\n")
    result = gradproof("check", "user.py:cost", cwd=tmp_path)
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert "IndexError" in line and "helper.py, line 2" in line


def test_a_cost_that_raises_exits_2_in_one_line(tmp_path):
    raising_cost(tmp_path, "raise ValueError('boom\\nand more')")
    result = gradproof("check", "user.py:cost", cwd=tmp_path)
    assert result.returncode == 2
    assert "boom and more" in one_line(result.stderr)


def test_workers_that_die_exit_2_with_the_worker_error(tmp_path):
    (tmp_path / "user.py").write_text(
        textwrap.dedent(
            """
            import os
            import numpy as np
            PARENT = os.getpid()
            params = {"W": np.ones((3, 3))}
            def cost(p):
                if os.getpid() != PARENT:
                    os._exit(3)  # a worker dies: every evaluation sent away fails
                return float(np.sum(p["W"] ** 2))
            def grads(p):
                return {"dW": 2 * p["W"]}
            """
        )
    )
    result = gradproof("check", "user.py:cost", "--workers", "2", cwd=tmp_path)
    assert result.returncode == 2
    assert "worker" in one_line(result.stderr)


def test_module_target_imports_from_the_current_folder(model):
    result = gradproof("check", "model:cost", "--workers", "2", cwd=model)
    assert result.returncode == 0, result.stderr


def test_json_to_stdout_with_a_dash_and_the_table_on_stderr(model):
    result = gradproof("check", "model.py:cost", "--json", "-", cwd=model)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["passed"] is True and data["tensors"][0]["name"] == "W"
    assert "Gradient check passed" in result.stderr
    assert not (model / "-").exists()


def test_ctrl_c_ends_in_one_line_and_status_130(tmp_path):
    raising_cost(tmp_path, "raise KeyboardInterrupt")  # as Ctrl-C does, mid-check
    result = gradproof("check", "user.py:cost", cwd=tmp_path)
    assert result.returncode == 130
    assert result.stderr.strip() == "gradproof: interrupted"


def test_the_cli_defaults_to_auto_and_says_which_mode_it_chose(model):
    result = gradproof("check", "model.py:cost", cwd=model)
    assert result.returncode == 0, result.stderr
    assert "auto: chose full" in result.stdout
    helped = " ".join(gradproof("check", "--help").stdout.split())
    for says in ("central (default)", "bound on the relative difference", "seed of the sampled"):
        assert says in helped, says


def test_html_to_a_dash_is_refused_with_the_fix(model):
    result = gradproof("check", "model.py:cost", "--html", "-", cwd=model)
    assert result.returncode == 2
    assert "--html needs a file path" in one_line(result.stderr)


def test_the_html_page_says_what_was_checked(model):
    result = gradproof("check", "model.py:cost", "--html", "page.html", cwd=model)
    assert result.returncode == 0, result.stderr
    page = (model / "page.html").read_text()
    assert "<h1>gradproof check model.py:cost (params :params, grads :grads), " in page
