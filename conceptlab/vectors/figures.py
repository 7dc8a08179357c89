"""Plotly figures of concept-vector results: the layer x index score map, target vs unrelated
bars, and the unlearning before/after table. Each takes a result object or table and returns a
``plotly.graph_objects.Figure``; nothing here computes a number of its own."""

from __future__ import annotations

from typing import Any

import pandas as pd

__all__ = ["dose_response_figure", "layer_score_figure", "unlearning_figure", "validation_figure"]


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


def dose_response_figure(table: pd.DataFrame, multiplier: float | None = None, coherent: dict[str, Any] | None = None, title: str | None = None):
    """Two stacked panels over the multiplier: the behaviour (target rate, exact rate, control
    accuracy) above, coherence (held-out NLL; repeat share on a second axis) below.

    ``multiplier`` draws a line at the chosen one; ``coherent`` (:func:`coherent_range`) shades the
    span where the target rises while coherence holds and marks where it breaks."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    table = table.sort_values("multiplier")
    x = table["multiplier"]
    figure = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08, specs=[[{}], [{"secondary_y": True}]], subplot_titles=("behaviour", "coherence"))
    lines = (("target_rate", "target rate (answer starts with it)", "solid"), ("exact_rate", "exact answer", "dot"), ("other_accuracy", "control accuracy", "dash"))
    for column, label, dash in lines:
        if column in table:
            figure.add_trace(go.Scatter(x=x, y=table[column], name=label, mode="lines+markers", line={"dash": dash}), row=1, col=1)
    figure.add_trace(go.Scatter(x=x, y=table["nll"], name="held-out NLL (nats)", mode="lines+markers"), row=2, col=1, secondary_y=False)
    figure.add_trace(go.Scatter(x=x, y=table["repeat_share"], name="repeat share", mode="lines+markers", line={"dash": "dot"}), row=2, col=1, secondary_y=True)
    for row in (1, 2):  # the marks in both panels, each label once (the span's and the break's on top, the multiplier's below)

        def label(text: str, position: str, on: int = 1, row: int = row) -> dict[str, str]:
            return {"annotation_text": text, "annotation_position": position} if row == on else {}

        if coherent and coherent.get("low") is not None:
            figure.add_vrect(x0=coherent["low"], x1=coherent["high"], fillcolor="green", opacity=0.12, line_width=0, row=row, col=1, **label("works, coherent", "top left"))
        if coherent and coherent.get("breaks_at") is not None:
            figure.add_vline(x=coherent["breaks_at"], line_dash="dash", line_color="red", row=row, col=1, **label("coherence breaks", "bottom right"))
        if multiplier is not None:
            figure.add_vline(x=float(multiplier), line_color="black", row=row, col=1, **label(f"× {float(multiplier):g}", "top right", on=2))
    figure.update_yaxes(title_text="share of prompts", range=[-0.03, 1.05], row=1, col=1)
    figure.update_yaxes(title_text="NLL", row=2, col=1, secondary_y=False)
    figure.update_yaxes(title_text="repeat share", range=[-0.03, 1.05], tickmode="array", tickvals=[0, 0.25, 0.5, 0.75, 1], showgrid=False, row=2, col=1, secondary_y=True)
    figure.update_xaxes(title_text="multiplier", row=2, col=1)
    figure.update_layout(title=title or "Steering dose-response", height=560, legend={"orientation": "h", "y": -0.15})
    return figure
