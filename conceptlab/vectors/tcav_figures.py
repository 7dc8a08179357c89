"""Plotly figures of TCAV results: score bars with significance stars over the random-run distribution,
CAV accuracy per concept, and the stability curve."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["cav_accuracy_figure", "stability_figure", "stars", "tcav_figure"]


def stars(p_value: float, alpha_used: float) -> str:
    """``***`` / ``**`` / ``*`` at the corrected level alpha_used / 100, / 10, / 1; ``""`` when not significant."""
    if not p_value < alpha_used:
        return ""
    return "***" if p_value < alpha_used / 100 else "**" if p_value < alpha_used / 10 else "*"


def tcav_figure(result, target: str, score: str = "sign_count", title: str | None = None):
    """One bar per concept (mean TCAV score over the random runs, error bar = std) with its stars, and a
    box of each concept's per-run scores next to the random concepts' distribution (grey band)."""
    import plotly.graph_objects as go

    table = result.table[(result.table["target"] == target) & (result.table["score"] == score)]
    if table.empty:
        raise ValueError(f"no {score} results for target {target!r}; targets: {sorted(result.table['target'].unique())}")
    concepts = table["concept"].tolist()
    runs = [result.runs[(target, c)][score] for c in concepts]
    random = result.runs[(target, "random")][score]
    labels = [stars(p, a) for p, a in zip(table["p_value"], table["alpha_used"])]
    colors = ["#2b8cbe" if s and d > 0 else "#e34a33" if s else "#bdbdbd" for s, d in zip(table["significant"], table["direction"])]
    figure = go.Figure()
    figure.add_bar(x=concepts, y=[float(np.mean(r)) for r in runs], error_y={"type": "data", "array": [float(np.std(r)) for r in runs]},
                   marker_color=colors, text=labels, textposition="outside", name="concept CAVs",
                   customdata=np.stack([table["p_value"], table["effect_size"]], axis=1),
                   hovertemplate="%{x}<br>mean %{y:.3f}<br>p %{customdata[0]:.2g}<br>d %{customdata[1]:.2f}<extra></extra>")
    low, high = np.percentile(random, [2.5, 97.5])
    figure.add_hrect(y0=float(low), y1=float(high), fillcolor="grey", opacity=0.2, line_width=0, annotation_text="random CAVs (95 %)")
    figure.add_hline(y=float(np.mean(random)), line_dash="dash", line_color="grey")
    figure.add_trace(go.Box(x=[c for c, r in zip(concepts, runs) for _ in r], y=np.concatenate(runs), name="per-run scores",
                            marker_color="rgba(0,0,0,0.35)", boxpoints=False, line_width=1))
    n_runs = result.settings.get("runs", len(random))
    figure.update_layout(title=title or f"TCAV {score.replace('_', ' ')} of {target} ({n_runs} random runs, {result.settings.get('correction')})",
                         yaxis_title=score.replace("_", " "), showlegend=False, height=420, margin={"t": 60, "b": 80})
    return figure


def cav_accuracy_figure(accuracy: pd.DataFrame, title: str = "CAV held-out accuracy"):
    """Mean held-out accuracy of each concept's CAVs over the random runs (error bar = std)."""
    import plotly.graph_objects as go

    figure = go.Figure(go.Bar(x=accuracy["concept"], y=accuracy["accuracy_mean"], error_y={"type": "data", "array": accuracy["accuracy_std"]},
                              marker_color=["#bdbdbd" if c == "random" else "#31a354" for c in accuracy["concept"]]))
    figure.add_hline(y=0.5, line_dash="dot", line_color="grey")
    figure.update_layout(title=title, yaxis_title="accuracy", yaxis_range=[0, 1.05], height=360, margin={"t": 50, "b": 80})
    return figure


def stability_figure(stability: pd.DataFrame, title: str = "Significance decisions vs number of random runs"):
    """Agreement of decisions across independent subsets of N runs, and precision / recall, against N."""
    import plotly.graph_objects as go

    figure = go.Figure()
    for column in ("agreement", "pairwise_agreement", "precision", "recall", "false_positive_rate"):
        if column in stability:
            figure.add_scatter(x=stability["n_random"], y=stability[column], mode="lines+markers", name=column.replace("_", " "))
    figure.update_layout(title=title, xaxis_title="random runs N", yaxis_range=[0, 1.05], height=360)
    return figure
