"""Reports people look at: terminal, HTML, plots, JSON, the command line, pytest."""

import io
import json
import os
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

import gradproof as gp
from gradproof._cli import main
from gradproof._format import wants_color
from gradproof.examples import backward_propagation_n, forward_propagation_n, seed_case

pytest_plugins = ["pytester"]


@pytest.fixture(scope="module")
def seed_reports():
    X, Y, parameters = seed_case()
    _, cache = forward_propagation_n(X, Y, parameters)
    cost = lambda p: forward_propagation_n(X, Y, p)  # noqa: E731
    buggy = gp.check(cost, parameters, backward_propagation_n(X, Y, cache, buggy=True))
    fixed = gp.check(cost, parameters, backward_propagation_n(X, Y, cache))
    return cost, parameters, X, Y, cache, buggy, fixed


@pytest.fixture
def artifacts(tmp_path):
    """Where pictures go: GRADPROOF_ARTIFACTS if set (to look at them), else a temp dir."""
    where = Path(os.environ.get("GRADPROOF_ARTIFACTS", tmp_path))
    where.mkdir(parents=True, exist_ok=True)
    return where


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_report_is_coloured_on_a_terminal_and_plain_otherwise(seed_reports, monkeypatch):
    *_, buggy, _ = seed_reports
    monkeypatch.delenv("NO_COLOR", raising=False)
    tty = Tty()
    buggy.show(tty)
    assert "\x1b[" in tty.getvalue() and "WRONG" in tty.getvalue()
    pipe = io.StringIO()
    buggy.show(pipe)
    assert pipe.getvalue() == str(buggy) + "\n"
    monkeypatch.setenv("NO_COLOR", "1")
    assert not wants_color(Tty())


def test_notebook_html_names_the_likely_cause(seed_reports):
    *_, buggy, _ = seed_reports
    page = buggy._repr_html_()
    assert "<table>" in page and "stray constant factor in dW2" in page


def test_plot_marks_failures_and_maps_element_errors(seed_reports, artifacts):
    plt = pytest.importorskip("matplotlib.pyplot")
    *_, buggy, fixed = seed_reports
    fig = buggy.plot()
    bars, heat = fig.axes[:2]
    assert bars.get_yscale() == "log" and "W2" in heat.get_title()
    red = [p for p in bars.patches if p.get_facecolor()[0] > 0.8]
    assert len(red) == 2  # b1 and W2
    fig.savefig(artifacts / "report.png")
    assert len(fixed.plot().axes) == 1  # nothing failing: no heat map
    plt.close("all")
    image = plt.imread(artifacts / "report.png")
    assert image.std() > 0.05


def test_step_sweep_reads_the_convergence_order(seed_reports, artifacts):
    plt = pytest.importorskip("matplotlib.pyplot")
    w = np.array([0.4, -1.1, 2.0])
    good = gp.step_sweep(lambda p: np.sum(np.exp(np.sin(p))), w, np.cos(w) * np.exp(np.sin(w)))
    # Fitted where truncation dominates (1e-4 <= h <= 0.1): the h^4 term tilts the slope by
    # about (f⁽⁵⁾/f⁽³⁾)·h^2/10, ~1e-3 at h = 0.1, round-off by less (measured 1.99995).
    assert good.order == pytest.approx(2.0, abs=0.05)
    assert "consistent with a correct gradient" in good.reading
    assert good.steps[int(np.argmin(good.differences))] > 1e-7  # eps=1e-7 is not the best step
    bad = gp.step_sweep(lambda p: np.sum(np.sin(p)), w, 1.5 * np.cos(w))
    assert bad.order == 0.0 and "a bug rather than a step-size problem" in bad.reading
    ax = good.plot()
    assert ax.get_xscale() == "log"
    ax.figure.savefig(artifacts / "step_sweep.png")
    plt.close("all")
    with pytest.raises(gp.GradientSpecError, match="at least 3 positive"):
        gp.step_sweep(lambda p: np.sum(p), w, np.ones(3), steps=[1e-3])


def test_json_round_trips_and_matches_the_schema(seed_reports):
    jsonschema = pytest.importorskip("jsonschema")
    *_, buggy, fixed = seed_reports
    schema = json.loads(resources.files("gradproof").joinpath("report.schema.json").read_text())
    for report in (buggy, fixed):
        data = json.loads(report.to_json())
        jsonschema.validate(data, schema)
        again = gp.Report.from_json(report.to_json())
        assert again.to_dict() == report.to_dict()
        assert again.tensors == report.tensors and str(again) == str(report)


def test_every_pattern_a_report_can_carry_is_in_the_schema():
    import re
    from pathlib import Path

    import gradproof

    source = Path(gradproof.__file__).parent
    made = set()
    for path in source.rglob("*.py"):  # Diagnosis("key", ...) and Diagnosis(\n "key", ...)
        made |= set(re.findall(r'Diagnosis\(\s*"([a-z]+)"', path.read_text()))
    schema = json.loads(resources.files("gradproof").joinpath("report.schema.json").read_text())
    allowed = set(schema["$defs"]["tensor"]["properties"]["pattern"]["enum"]) - {None}
    assert len(made) > 15 and made <= allowed, made - allowed
    # the schema lists exactly the patterns the engine declares, and a typo raises
    from gradproof._records import PATTERNS, Diagnosis

    assert allowed == set(PATTERNS), allowed ^ set(PATTERNS)
    with pytest.raises(ValueError, match="unknown diagnosis pattern"):
        Diagnosis("scaled", "a finding", "a cause")


def test_a_report_carrying_each_pattern_validates_against_the_schema(seed_reports):
    import dataclasses

    jsonschema = pytest.importorskip("jsonschema")
    from gradproof._records import PATTERNS, Diagnosis

    schema = json.loads(resources.files("gradproof").joinpath("report.schema.json").read_text())
    report = seed_reports[5]  # the buggy seeds' report
    name, tensor = next(iter(report.tensors.items()))
    for pattern in PATTERNS:
        marked = dataclasses.replace(tensor, explanation=Diagnosis(pattern, "finding", "cause"))
        data = dataclasses.replace(report, tensors={**report.tensors, name: marked}).to_dict()
        jsonschema.validate(data, schema)


def test_html_page_without_matplotlib_says_what_to_install(seed_reports, tmp_path, monkeypatch):
    *_, buggy, _ = seed_reports
    for module in ("matplotlib", "matplotlib.pyplot"):
        monkeypatch.setitem(sys.modules, module, None)  # importing it now raises ImportError
    path = tmp_path / "report.html"
    buggy.save_html(path)
    page = path.read_text()
    assert "Install matplotlib (pip install 'gradproof[plot]') for plots." in page
    assert "<img" not in page
    assert "http://" not in page and "https://" not in page


def test_html_page_embeds_its_plot_and_renders(seed_reports, artifacts, tmp_path):
    pytest.importorskip("matplotlib")
    *_, buggy, _ = seed_reports
    path = artifacts / "report.html"
    buggy.save_html(path)
    page = path.read_text()
    assert "data:image/png;base64," in page and "Install matplotlib" not in page
    assert "http://" not in page and "https://" not in page
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no headless browser installed (Debian: apt-get install chromium)")
    shot = artifacts / "report_html.png"
    result = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--enable-logging=stderr",
            "--window-size=1100,900",
            f"--screenshot={shot}",
            path.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shot.exists(), result.stderr[-2000:]
    assert "CONSOLE" not in result.stderr  # no console messages: no script errors, nothing missing
    plt = pytest.importorskip("matplotlib.pyplot")
    image = plt.imread(shot)
    assert image.std() > 0.05  # not blank


MODULE = """
import numpy as np
W = np.array([[0.5, -1.0], [2.0, 0.25]])
x = np.array([1.5, -0.5])
def cost(p):
    return float(np.sum(np.tanh(p["W"] @ x)))
params = {"W": W}
def grads(p):
    return {"dW": np.outer(1 - np.tanh(p["W"] @ x) ** 2, x)}
def wrong(p):
    return {"dW": 2 * grads(p)["dW"]}
"""


@pytest.fixture
def user_module(tmp_path):
    path = tmp_path / "model.py"
    path.write_text(MODULE)
    return path


def test_check_command_passes_fails_and_writes_files(user_module, tmp_path, capsys):
    assert main(["check", f"{user_module}:cost", "--no-color"]) == 0
    assert "Gradient check passed" in capsys.readouterr().out
    out_json, out_html = tmp_path / "r.json", tmp_path / "r.html"
    code = main(
        [
            "check",
            f"{user_module}:cost",
            "--grads",
            ":wrong",
            "--json",
            str(out_json),
            "--html",
            str(out_html),
            "--no-color",
        ]
    )
    assert code == 1
    assert "analytic = 2.00 × numeric" in capsys.readouterr().out
    assert json.loads(out_json.read_text())["passed"] is False
    assert "<table>" in out_html.read_text()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["check", "model.py"], "must be FILE.py:FUNCTION"),
        (["check", "{m}:nothing"], "has no 'nothing'; it has: W, cost, grads"),
        (["check", "{m}:cost", "--params", ":x"], "the gradient function grads raised IndexError"),
        (["check", "{m}:cost", "--mode", "fast"], "unknown mode 'fast'"),
        (["check", "missing.py:cost"], "no file 'missing.py'"),
    ],
    ids=["no-function", "unknown-name", "wrong-params", "bad-mode", "no-file"],
)
def test_check_command_bad_usage_exits_2_and_says_what_to_write(user_module, capsys, argv, message):
    argv = [a.format(m=user_module) for a in argv]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_check_command_as_a_program_exits_1_and_prints_the_table(user_module):
    result = subprocess.run(
        [sys.executable, "-m", "gradproof", "check", f"{user_module}:cost", "--grads", ":wrong"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1 and "W  (2, 2)" in result.stdout


def test_pytest_plugin_fixture_shows_the_table(pytester):
    pytester.makepyfile(
        """
        import numpy as np

        def cost(p):
            return float(np.sum(p["w"] ** 3))

        def test_right(check_gradients):
            w = np.array([1.0, -2.0])
            assert check_gradients(cost, {"w": w}, {"dw": 3 * w ** 2}).passed

        def test_wrong(check_gradients):
            w = np.array([1.0, -2.0])
            check_gradients(cost, {"w": w}, {"dw": -3 * w ** 2})

        def test_the_first_name_still_works(gradcheck):
            w = np.array([1.0, -2.0])
            assert gradcheck(cost, {"w": w}, {"dw": 3 * w ** 2}).passed
        """
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        ["*Gradient check failed: 1 of 1 parameter wrong*", "*w  (2,)*analytic = -1.00 × numeric*"]
    )


def test_rich_print_renders_the_report(seed_reports):
    rich_console = pytest.importorskip("rich.console")
    *_, buggy, _ = seed_reports
    console = rich_console.Console(record=True, width=140)
    console.print(buggy)
    text = console.export_text()
    assert "Gradient check failed: 2 of 6 parameters wrong" in text
    assert "likely cause: a stray constant factor in dW2" in text and "WRONG" in text


def test_repr_is_one_line_and_str_is_the_table(seed_reports):
    *_, buggy, fixed = seed_reports
    for report in (buggy, fixed):
        line = repr(report)
        assert "\n" not in line and len(line) < 200, line
        assert line.startswith("<gradproof.Report: Gradient check")
        assert str(report).splitlines()[0] in _format_headline(report)
    assert "2 of 6 parameters wrong" in repr(buggy)


def _format_headline(report):
    from gradproof._format import headline

    return headline(report)


def test_the_scale_column_is_shown_only_where_it_says_something():
    # beside a wrong row whose diagnosis is no factor, a fitted "1" reads as "right"
    w = np.linspace(-1.0, 1.0, 100)
    g = 2 * w
    g[[3, 50, 97]] += 1.0
    text = str(gp.check(lambda p: float(np.sum(p**2)), w, g))
    row = next(
        line
        for line in text.splitlines()
        if line.split()[:2] == ["theta", "(100,)"] and line.split()[-1] == "WRONG"
    )
    assert row.split()[-2] == "-" and row.split()[-1] == "WRONG"
