"""A report as one self-contained HTML page: no scripts, fonts or images from the network."""

from __future__ import annotations

import base64
import html
import io

from . import _format
from ._plot import plot_report, pyplot
from ._records import ReportRecord

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem;
  color: #1d3557; }
.gradproof-report table { border-collapse: collapse; margin: 1rem 0; }
.gradproof-report th, .gradproof-report td { padding: 0.3rem 0.8rem; border-bottom: 1px solid #ddd;
  text-align: left; font-variant-numeric: tabular-nums; }
.gradproof-report th { background: #f1f4f8; }
.footer { color: #666; font-size: 0.9rem; }
img { max-width: 100%; border: 1px solid #eee; margin-top: 1rem; }
"""


def _figure_png(report: ReportRecord) -> str | None:
    try:
        plt = pyplot()
    except ImportError:
        return None
    fig = plot_report(report)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def page(report: ReportRecord, what: str | None = None) -> str:
    """The whole page: what was checked (``what``, when given), headline, table, warnings,
    the plots inlined, the footer."""
    png = _figure_png(report)
    picture = (
        f'<img alt="per-parameter differences" src="data:image/png;base64,{png}">'
        if png
        else "<p><em>Install matplotlib (pip install 'gradproof[plot]') for plots.</em></p>"
    )
    footer = "<br>".join(html.escape(line) for line in _format.footer(report))
    title = "gradproof: " + ("passed" if report.passed else "failed")
    heading = f"<h1>{html.escape(what)}</h1>" if what else ""
    if what:
        title = f"{title}: {html.escape(what)}"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{title}</title><style>{STYLE}</style></head><body>{heading}"
        f'{_format.html(report)}{picture}<p class="footer">{footer}</p></body></html>\n'
    )
