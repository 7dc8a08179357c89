"""The HTML page every probe report is: one style, plotly.js inlined once, written atomically.

Reports are self-contained (they open offline): the first figure carries plotly.js, the others reuse it.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from pathlib import Path

from conceptlab.utils import atomic_write_text

__all__ = ["REPORT_STYLE", "figure_html", "figures_html", "write_report_page"]

REPORT_STYLE = """
body { font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; margin: 2rem auto; max-width: 1200px; color: #222; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; padding-bottom: .3rem; }
.meta { color: #666; font-size: .9rem; } table { border-collapse: collapse; margin: .5rem 0; font-size: .92rem; }
th, td { border: 1px solid #ddd; padding: .3rem .7rem; text-align: right; } th { background: #f5f5f5; } td:first-child, th:first-child { text-align: left; }
code { background: #f3f3f3; padding: 0 .25rem; border-radius: 3px; } img { image-rendering: pixelated; max-width: 100%; }
"""


def figure_html(figure, include_plotlyjs: bool) -> str:
    """One plotly figure as an HTML fragment (with plotly.js inlined when asked: the page's first figure)."""
    return figure.to_html(full_html=False, include_plotlyjs=bool(include_plotlyjs), config={"displaylogo": False})


def figures_html(figures: Iterable) -> list[str]:
    """Fragments of ``figures`` in order, plotly.js inlined in the first only."""
    return [figure_html(figure, i == 0) for i, figure in enumerate(figures)]


def write_report_page(path: str | Path, probe_name: str, body: Iterable[str]) -> Path:
    """Write the report of probe ``probe_name`` (its ``body`` fragments) to ``path``, atomically."""
    page = (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>Probe {html.escape(probe_name)} · conceptlab</title><style>{REPORT_STYLE}</style></head>"
        f"<body>{''.join(body)}</body></html>\n"
    )
    path = Path(path)
    atomic_write_text(path, page)
    return path
