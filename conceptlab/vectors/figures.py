"""Plotly figures of concept-vector results: the layer x index score map, target vs unrelated
bars, and the unlearning before/after table. Each takes a result object or table and returns a
``plotly.graph_objects.Figure``; nothing here computes a number of its own."""

from __future__ import annotations

from typing import Any

import pandas as pd

__all__ = ["layer_score_figure", "unlearning_figure", "validation_figure"]


def layer_score_figure(scan: Any, title: str | None = None):
    """Heatmap of every scanned value vector's score: layers (rows) x neuron index (columns)."""
    import plotly.graph_objects as go

    scores = scan.score_map()
    labels = [f"L{layer}" for layer in scores.index]
    figure = go.Figure(go.Heatmap(z=scores.to_numpy(), y=labels, colorscale="Viridis", colorbar={"title": "score"}))
    title = title or f"{scan.scorer} score of every value vector (top-{scan.k}, {scan.projection})"
    figure.update_layout(title=title, xaxis_title="neuron index", yaxis_title="layer", height=140 + 40 * len(scores))
    return figure


def validation_figure(summary: dict[str, Any] | pd.DataFrame, title: str | None = None):
    """Bars of target vs unrelated accuracy before and after the intervention.

    Takes :meth:`ValidationResult.summary` (one vector) or :func:`validate_entities`' table (means)."""
    import plotly.graph_objects as go

    if isinstance(summary, pd.DataFrame):
        values = {g: (float(summary[f"{g}_before"].mean()), float(summary[f"{g}_after"].mean())) for g in ("target", "unrelated")}
    else:
        values = {g: (summary[f"{g}_accuracy_before"], summary[f"{g}_accuracy_after"]) for g in ("target", "unrelated") if f"{g}_accuracy_before" in summary}
    figure = go.Figure()
    for position, label in enumerate(("before", "after")):
        figure.add_bar(name=label, x=list(values), y=[v[position] for v in values.values()], text=[f"{v[position]:.2f}" for v in values.values()], textposition="outside")
    figure.add_hline(y=1.0, line_dash="dash", line_color="grey")
    figure.update_layout(title=title or "QA accuracy, target vs unrelated questions", yaxis_title="exact-match accuracy", yaxis_range=[0, 1.12], barmode="group", height=360)
    return figure


def unlearning_figure(table: pd.DataFrame, group: str = "target", title: str | None = None):
    """Accuracy after unlearning per method and form (grouped bars), the ``before`` as a line."""
    import plotly.graph_objects as go

    rows = table[table["group"] == group]
    figure = go.Figure()
    for form, part in rows.groupby("form", sort=False):
        figure.add_bar(name=f"{form}{'' if part['seen'].iloc[0] else ' (held out)'}", x=part["method"], y=part["after"])
    figure.add_hline(y=float(rows["before"].mean()), line_dash="dash", line_color="grey", annotation_text="before")
    figure.update_layout(title=title or f"{group} accuracy after unlearning, per form", yaxis_title="exact-match accuracy", yaxis_range=[0, 1.05], barmode="group", height=380)
    return figure
