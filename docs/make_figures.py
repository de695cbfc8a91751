"""Draw the documentation's pictures with gradproof itself, into docs/images/.

    python docs/make_figures.py

The pictures are committed, so the site builds (and GitHub shows the pages)
without running anything; CI runs this script before ``mkdocs build --strict``,
so the published pictures are always the current gradproof's and the script
cannot rot. It also prints the figures the verdict page quotes.

- ``report-table.svg``: the terminal table (rich) of the seeds' buggy network;
- ``report-plot.png``: ``report.plot()``, the bar chart and W2's heat map;
- ``step-sweep.png``: ``gp.step_sweep(...).plot()``, the V curve of the fixed network;
- ``report.html`` and ``report-html.png``: ``report.save_html()`` and a screenshot
  of it (the screenshot only where headless Chromium is installed);
- ``verdict-*.png``: the verdict page's measurements (steps, round-off, kinks,
  bisection).
"""

from __future__ import annotations

import dataclasses
import io
import math
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import gradproof as gp
from gradproof.examples import (
    backward_propagation_n,
    forward_propagation_n,
    seed_case,
)

IMAGES = Path(__file__).resolve().parent / "images"
PNG = {"dpi": 100, "metadata": {"Software": None}}


def seed_case_checked() -> tuple[gp.Report, object, dict, dict, dict]:
    """The seeds' network checked with their bug, its cost, parameters and both gradients."""
    X, Y, parameters = seed_case()
    _, cache = forward_propagation_n(X, Y, parameters)

    def cost(p):
        return forward_propagation_n(X, Y, p)

    buggy_grads = backward_propagation_n(X, Y, cache, buggy=True)
    grads = backward_propagation_n(X, Y, cache)
    # The run time the footer prints is fixed at a typical figure for this network, so
    # that drawing the pictures again changes no committed file (CI checks the text ones).
    report = dataclasses.replace(gp.check(cost, parameters, buggy_grads), seconds=0.01)
    return report, cost, parameters, grads, buggy_grads


def save(fig, name: str) -> None:
    fig.savefig(IMAGES / name, **PNG)
    plt.close(fig)
    print(f"  {name:<24} {(IMAGES / name).stat().st_size / 1024:5.1f} KiB")


def report_table_svg(report: gp.Report) -> None:
    """The coloured terminal table, as rich draws it, with no web font to fetch."""
    from rich.console import CONSOLE_SVG_FORMAT, Console

    console = Console(record=True, width=96, file=io.StringIO(), force_terminal=True)
    console.print(report)
    offline = re.sub(r"@font-face \{\{.*?\}\}\s*", "", CONSOLE_SVG_FORMAT, flags=re.DOTALL)
    svg = console.export_svg(title="print(report)", code_format=offline, unique_id="gradproof")
    (IMAGES / "report-table.svg").write_text(svg, encoding="utf-8")
    size = (IMAGES / "report-table.svg").stat().st_size / 1024
    print(f"  {'report-table.svg':<24} {size:5.1f} KiB")


def html_page(report: gp.Report) -> None:
    """The self-contained HTML page, and a screenshot of it where Chromium is installed."""
    page = IMAGES / "report.html"
    report.save_html(page)
    print(f"  {'report.html':<24} {page.stat().st_size / 1024:5.1f} KiB")
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        print("  report-html.png          kept as it is (no headless Chromium here)")
        return
    with tempfile.TemporaryDirectory() as profile:
        shot = subprocess.run(
            [
                browser,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--no-first-run",
                "--disable-background-networking",
                f"--user-data-dir={profile}",
                "--window-size=1000,820",
                f"--screenshot={IMAGES / 'report-html.png'}",
                page.as_uri(),
            ],
            capture_output=True,
            timeout=120,
            check=False,
        )
    if shot.returncode != 0:
        print(f"  report-html.png          kept as it is (Chromium exited {shot.returncode})")
        return
    size = (IMAGES / "report-html.png").stat().st_size / 1024
    print(f"  {'report-html.png':<24} {size:5.1f} KiB")


def verdict_sweeps(cost, parameters: dict, grads: dict, buggy_grads: dict) -> None:
    """The difference against the step, for the fixed and the buggy backward."""
    right = gp.step_sweep(cost, parameters, grads)
    wrong = gp.step_sweep(cost, parameters, buggy_grads)
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    ax.loglog(right.steps, right.differences, "o-", ms=4, color="#264653", label="fixed backward")
    ax.loglog(wrong.steps, wrong.differences, "s-", ms=4, color="#e63946", label="dW2 ×2, db1 ×4")
    ax.axhline(1e-7, color="#555555", ls="--", lw=1, label="tol 1e-7")
    ax.axvline(1e-7, color="#999999", ls=":", lw=1, label="the seeds' eps = 1e-7")
    ax.plot([right.auto_step], [right.auto_difference], "*", ms=14, color="#2a9d8f")
    ax.annotate(
        f"automatic step {right.auto_step:.1e}",
        (right.auto_step, right.auto_difference),
        textcoords="offset points",
        xytext=(8, -4),
        fontsize="small",
    )
    ax.set_xlabel("step h")
    ax.set_ylabel("relative difference")
    ax.set_title("Fixed: round-off and truncation make a V. Buggy: flat")
    ax.legend(loc="center right", fontsize="small")
    fig.tight_layout()
    save(fig, "verdict-sweeps.png")
    print(
        f"    fixed: order {right.order:.2f}, auto step {right.auto_step:.2e} -> "
        f"{right.auto_difference:.3g}; buggy: order {wrong.order:.2f} ({wrong.reading})"
    )


def noise_level(values: np.ndarray) -> float:
    """Moré & Wild's estimate of the noise in equally spaced values (k-th differences)."""
    best = math.inf
    m = len(values) - 1
    for k in range(1, m):
        diffs = np.diff(values, n=k)
        gamma = math.factorial(k) ** 2 / math.factorial(2 * k)
        best = min(best, math.sqrt(gamma * np.mean(diffs**2)))
    return best


def verdict_roundoff(cost, parameters: dict) -> None:
    """The cost's own round-off around the seeds' check point, measured as gradproof does."""
    theta = parameters["W1"]
    j0 = float(cost(parameters)[0])
    h = 6.06e-6 * max(1.0, abs(theta[0, 0]))
    spacing = h / 16
    offsets = np.arange(-4, 5) * spacing
    values = []
    for t in offsets:
        moved = {**parameters, "W1": theta.copy()}
        moved["W1"][0, 0] += t
        values.append(float(cost(moved)[0]))
    values = np.asarray(values)
    line = np.polyval(np.polyfit(offsets, values, 2), offsets)
    sigma = noise_level(values)
    model = 16 * np.finfo(float).eps / 2 * abs(j0)
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    ax.plot(offsets / spacing, (values - line) / abs(j0), "o-", color="#264653")
    ax.axhspan(-sigma / abs(j0), sigma / abs(j0), color="#2a9d8f", alpha=0.15, label="measured σ")
    ax.set_xlabel("W1[0, 0] moved by k · h/16")
    ax.set_ylabel("(J − smooth fit) / |J|")
    ax.set_title(f"The cost's round-off: σ = {sigma:.1e} at J = {j0:.3f}")
    ax.legend(loc="upper right", fontsize="small")
    fig.tight_layout()
    save(fig, "verdict-roundoff.png")
    print(
        f"    J = {j0:.6f}, measured sigma {sigma:.2e} ({sigma / abs(j0):.1e} relative), "
        f"model 16 u |J| = {model:.2e}; central-difference round-off at eps=1e-7: "
        f"sigma/1e-7 = {sigma / 1e-7:.1e}, at the automatic step {sigma / h:.1e}"
    )


def kink_case() -> tuple[object, dict, dict]:
    """A ReLU layer with one hidden unit exactly at its kink."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(4)
    W = rng.standard_normal((3, 4))
    W[0, 3] = -(W[0, :3] @ x[:3]) / x[3]  # unit 0's pre-activation is 0

    def cost(p):
        return float(np.sum(np.maximum(0.0, p["W"] @ x)))

    grads = {"dW": np.outer((W @ x > 0).astype(float), x)}
    return cost, {"W": W}, grads


def verdict_kink() -> None:
    """The cost along a kinked coordinate, and the one-sided slopes at h and h/16."""
    cost, params, grads = kink_case()
    report = gp.check(cost, params, grads)
    W = params["W"]
    h = 6.06e-6 * max(1.0, abs(W[0, 0]))
    ts = np.linspace(-2 * h, 2 * h, 81)

    def along(t: float) -> float:
        moved = W.copy()
        moved[0, 0] += t
        return cost({"W": moved})

    j0 = along(0.0)
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    ax.plot(ts / h, [along(t) - j0 for t in ts], color="#264653", label="J(W) − J0 along W[0, 0]")
    for shrink, marker in ((1, "o"), (16, "s")):
        for sign in (1, -1):
            t = sign * h / shrink
            label = f"J at ± h/{shrink}" if shrink > 1 else "J at ± h"
            ax.plot([t / h], [along(t) - j0], marker, color="#e63946", label=label)
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    ax.legend(unique.values(), unique.keys(), loc="upper left", fontsize="small")
    ax.set_xlabel("step, in units of the automatic h")
    ax.set_ylabel("J − J0")
    ax.set_title("A ReLU at its kink: the one-sided slopes differ at h and at h/16")
    fig.tight_layout()
    save(fig, "verdict-kink.png")
    t = report.tensors["W"]
    print(
        f"    kink: passed={report.passed}, kinks at {list(t.kinks)}, probed {t.probed}, "
        f"{report.evaluations} evaluations"
    )


def verdict_bisection() -> None:
    """Evaluations that directional mode spends to find one wrong element, against 2n."""
    rng = np.random.default_rng(0)
    sizes = [10**2, 10**3, 10**4, 10**5, 10**6]
    spent = []
    for n in sizes:
        theta = rng.standard_normal(n)
        grads = np.cos(theta)
        grads[n // 3] += 1e-3
        report = gp.check(
            lambda p: np.sum(np.sin(p["t"])), {"t": theta}, {"dt": grads}, mode="directional"
        )
        assert report.tensors["t"].wrong_indices == ((n // 3,),)
        spent.append(report.evaluations)
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    ax.loglog(sizes, [2 * n for n in sizes], "--", color="#555555", label="full check: 2n")
    ax.loglog(sizes, spent, "o-", color="#2a9d8f", label="directional, element found")
    for n, e in zip(sizes, spent, strict=True):
        ax.annotate(str(e), (n, e), textcoords="offset points", xytext=(-6, 8), fontsize="small")
    ax.set_xlabel("elements in the parameter")
    ax.set_ylabel("cost evaluations")
    ax.set_title("One wrong element (off by 1e-3) found by bisection")
    ax.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    save(fig, "verdict-bisection.png")
    print("    bisection: " + ", ".join(f"n={n}: {e}" for n, e in zip(sizes, spent, strict=True)))


def main() -> int:
    IMAGES.mkdir(exist_ok=True)
    print(f"gradproof {gp.__version__}: drawing into {IMAGES}")
    buggy, cost, parameters, grads, buggy_grads = seed_case_checked()
    report_table_svg(buggy)
    save(buggy.plot(), "report-plot.png")
    save(gp.step_sweep(cost, parameters, grads).plot().figure, "step-sweep.png")
    html_page(buggy)
    verdict_sweeps(cost, parameters, grads, buggy_grads)
    verdict_roundoff(cost, parameters)
    verdict_kink()
    verdict_bisection()
    return 0


if __name__ == "__main__":
    sys.exit(main())
