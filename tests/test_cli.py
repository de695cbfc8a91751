"""The command line: `gradproof demo` tells the seeds' story and exits 0."""

import subprocess
import sys

from gradproof._cli import main


def test_demo_reproduces_the_seed_figures_and_diagnoses_the_bug(capsys):
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "5.999999999999872" in out and "6.009999999999849" in out
    assert "2 of 6 parameters wrong" in out
    assert "analytic = 2.00 × numeric" in out and "analytic = 4.00 × numeric" in out
    assert "1.189e-07" in out
    assert "Gradient check passed: 6 parameters" in out
    # one slip in layer 2's mask: one cause, and the line to fix
    assert "the error enters at layer 2's ReLU derivative, dZ2 = dA2 * (Z2 > 0)" in out
    assert "W1, b1 only inherit the error" in out
    assert "dZ2 = np.multiply(dA2, np.int64(A2 > 0))   # not (Z2 > 0.5)" in out
    assert "breast cancer" in out and "test accuracy" in out
    assert "handwritten digits" in out and "backward proven" in out


def test_demo_help_runs_as_a_module_and_mentions_the_planted_bug():
    result = subprocess.run(
        [sys.executable, "-m", "gradproof", "demo", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0
    assert "planted bug" in result.stdout


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "demo" in capsys.readouterr().out
