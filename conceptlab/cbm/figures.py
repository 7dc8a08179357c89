"""Plotly figures of a concept bottleneck model, shared by probe reports, the app and notebooks.

Every function takes plain model outputs (a fitted CBM, an ``explain`` frame, metric tables) and
returns a ``plotly.graph_objects.Figure``; plotly is imported on first use.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from conceptlab import palette

__all__ = [
    "FAMILY_COLORS",
    "concept_auroc_bars",
    "contribution_bars",
    "editing_bars",
    "editing_comparison_bars",
    "grounding_bars",
    "grounding_panel",
    "intervention_line",
    "intervention_policies",
    "per_class_accuracy_bars",
    "weight_heatmap",
]

#: one colour per ShapesWorld attribute family (concept names ``family:value``), from :mod:`conceptlab.palette`
FAMILY_COLORS = palette.category_colors(("shape", "color", "size", "fill", "background", "position"))
#: for / against a class (blue / vermillion: told apart under every common colour-vision deficiency)
POSITIVE, NEGATIVE, NEUTRAL = palette.FOR, palette.AGAINST, palette.NEUTRAL
BEFORE, AFTER, AFTER_NORMALIZED = palette.NEUTRAL, palette.OKABE_ITO[4], palette.OKABE_ITO[1]
#: one colour per intervention policy (``conceptlab.cbm.interventions.POLICIES``)
POLICY_COLORS = {"random": palette.NEUTRAL, "weight": palette.OKABE_ITO[4], "uncertainty": palette.OKABE_ITO[5]}


def _go():
    try:
        import plotly.graph_objects as go
    except ImportError as error:  # pragma: no cover - plotly is a dependency
        raise ImportError("conceptlab's figures need plotly: pip install plotly") from error
    return go


def _family(name: str) -> str:
    return name.split(":", 1)[0] if ":" in name else "other"


def _layout(figure, title: str, height: int, **extra):
    """Title top-left and any legend on its own line under it, left-aligned: plotly's toolbar
    appears top-right on hover and would cover a legend or a long title there."""
    legend = extra.pop("legend", None)
    if legend is not None:
        extra["legend"] = {**legend, "x": 0, "xanchor": "left", "y": 1.02, "yanchor": "bottom"}
    figure.update_layout(
        title={"text": title, "x": 0, "xanchor": "left", "y": 0.99, "yanchor": "top", "font": {"size": 15}},
        height=height + (30 if legend is not None else 0), margin={"t": 90 if legend is not None else 60, "b": 10, "l": 10, "r": 10},
        template="plotly_white", **extra,
    )
    return figure


def weight_heatmap(model_or_weights: Any, title: str | None = None, height: int | None = None):
    """The head W as a class × concept heatmap: blue supports a class, red argues against it, white is 0."""
    go = _go()
    weights = model_or_weights if isinstance(model_or_weights, pd.DataFrame) else model_or_weights.weights_frame()
    limit = float(np.abs(weights.to_numpy()).max()) or 1.0
    figure = go.Figure(
        go.Heatmap(
            z=weights.to_numpy(), x=list(weights.columns), y=list(weights.index),
            colorscale="RdBu", zmid=0, zmin=-limit, zmax=limit, xgap=1, ygap=1,
            colorbar={"title": {"text": "weight"}, "thickness": 12},
            hovertemplate="class %{y}<br>concept %{x}<br>weight %{z:.3f}<extra></extra>",
        )
    )
    nonzero = int((np.abs(weights.to_numpy()) > 1e-5).sum())
    title = title or f"Concept weights ({weights.shape[0]} classes × {weights.shape[1]} concepts, {nonzero} non-zero)"
    _layout(figure, title, height or max(320, 26 * weights.shape[0] + 190))
    figure.update_xaxes(tickangle=-45, showgrid=False)
    figure.update_yaxes(autorange="reversed", showgrid=False)
    return figure


def contribution_bars(explanation: pd.DataFrame, top: int = 12, title: str | None = None, height: int | None = None):
    """One image's contributions as horizontal bars: the ``top`` largest non-zero concept
    contributions (blue for, vermillion against the class), then the intercept and any residual in grey.

    Takes ``model.explain(x)`` or :func:`conceptlab.cbm.explanations.relative_contributions` /
    ``why_not`` (then bars are read against the baseline class and labelled with their share of
    all the evidence). The axis leaves room for every label, however long the bars."""
    go = _go()
    if "sample" in explanation and explanation["sample"].nunique() != 1:
        raise ValueError("contribution_bars shows one image: pass the explain() frame of a single row")
    special = explanation["concept"].str.startswith("(")
    nonzero = explanation[~special & (explanation["contribution"].abs() > 1e-9)]
    concepts = nonzero.head(top)
    if explanation.attrs.get("against", "zero") != "zero":
        # read against another class, both sides matter: keep the strongest few against it in view
        against = nonzero[nonzero["contribution"] < 0].head(max(1, top // 4))
        keep = list(concepts.index)
        missing = [i for i in against.index if i not in keep]
        if missing:
            keep = keep[: top - len(missing)] + missing
            concepts = nonzero.loc[sorted(keep, key=lambda i: -abs(nonzero.loc[i, "contribution"]))]
    rest = explanation[special]
    frame = pd.concat([concepts, rest])
    values = frame["contribution"].to_numpy(dtype=float)
    colors = [NEUTRAL if c.startswith("(") else (POSITIVE if v >= 0 else NEGATIVE) for c, v in zip(frame["concept"], values)]
    shares = frame["share"].to_numpy(dtype=float) if "share" in frame else None
    labels = [f"{v:+.2f}" + ("" if shares is None else f" ({s:+.0%})") for v, s in zip(values, shares if shares is not None else values)]
    hover = [
        f"{c}<br>contribution {v:+.3f}" + ("" if np.isnan(s) else f"<br>score {s:.3f} × weight {w:+.3f}")
        for c, v, s, w in zip(frame["concept"], values, frame["score"], frame["weight"])
    ]
    figure = go.Figure(
        go.Bar(
            x=values, y=frame["concept"], orientation="h", marker_color=colors,
            # inside a bar long enough to hold its label, else beside it (with room kept on the axis below)
            text=labels, textposition="auto", insidetextanchor="end", cliponaxis=False, hovertext=hover, hoverinfo="text",
        )
    )
    klass = explanation["class"].iloc[0] if "class" in explanation else explanation.attrs.get("class", "")
    against = explanation.attrs.get("against", "zero")
    units = explanation.attrs.get("units", "score")
    if against == "zero":
        logit = explanation.attrs.get("logit", float(explanation["contribution"].sum()))
        title = title or f"Why “{klass}”: contributions to its logit ({logit:.2f})"
        axis = f"{units} × weight"
    elif against == "mean":
        total = explanation.attrs.get("total", float(explanation["contribution"].sum()))
        title = title or f"Why “{klass}”: contributions to its logit relative to the mean class ({total:+.2f})"
        axis = f"{units} × (weight − mean class weight)"
    else:
        total = explanation.attrs.get("total", float(explanation["contribution"].sum()))
        title = title or f"Why “{klass}” and not “{against}”: logit difference {total:+.2f}"
        axis = f"{units} × (weight for {klass} − weight for {against})"
    # room for the labels of short bars beside them: about 2.5 % of the axis per character
    low, high = float(min(values.min(), 0.0)), float(max(values.max(), 0.0))
    span = (high - low) or 1.0
    pad = span * (0.05 + 0.025 * max(len(t) for t in labels))
    _layout(figure, title, height or 60 + 28 * len(frame) + 60, showlegend=False)
    figure.update_yaxes(autorange="reversed", showgrid=False, automargin=True)
    figure.update_xaxes(zeroline=True, zerolinecolor="#444", title={"text": axis},
                        range=[low - (pad if low < 0 else 0.02 * span), high + (pad if high > 0 else 0.02 * span)])
    return figure


def per_class_accuracy_bars(table: pd.DataFrame | Mapping[str, pd.Series], title: str = "Accuracy per class", height: int = 380):
    """Grouped bars: one group per class, one bar per split (columns of ``table``)."""
    go = _go()
    table = pd.DataFrame(table)
    figure = go.Figure([go.Bar(name=str(split), x=list(table.index), y=table[split]) for split in table.columns])
    _layout(figure, title, height, barmode="group", legend={"orientation": "h", "y": 1.02, "x": 1, "xanchor": "right", "yanchor": "bottom"})
    figure.update_yaxes(range=[0, 1.05], title={"text": "accuracy"})
    return figure


def concept_auroc_bars(aurocs: pd.Series, title: str | None = None, height: int = 380):
    """Bars of each concept's AUROC against ground truth, coloured by family, with chance (0.5)."""
    go = _go()
    aurocs = aurocs.dropna()
    families = [_family(str(n)) for n in aurocs.index]
    figure = go.Figure()
    for family in dict.fromkeys(families):
        mask = [f == family for f in families]
        figure.add_bar(
            name=family, x=[str(n) for n, m in zip(aurocs.index, mask) if m], y=aurocs[mask].to_numpy(),
            marker_color=FAMILY_COLORS.get(family, NEUTRAL),
            hovertemplate="%{x}<br>AUROC %{y:.3f}<extra></extra>",
        )
    figure.add_hline(y=0.5, line_dash="dot", line_color="#666", annotation_text="chance", annotation_position="bottom right")
    title = title or f"Concept AUROC against ground truth (mean {aurocs.mean():.3f})"
    _layout(figure, title, height, legend={"orientation": "h", "y": 1.02, "x": 1, "xanchor": "right", "yanchor": "bottom"})
    figure.update_yaxes(range=[min(0.4, float(aurocs.min()) - 0.05), 1.0], title={"text": "AUROC"})
    figure.update_xaxes(tickangle=-45, categoryorder="array", categoryarray=[str(n) for n in aurocs.index])
    return figure


def intervention_line(curve: pd.DataFrame, title: str = "Intervening with true concept values", height: int = 360):
    """Accuracy as the top-k concepts (by weight) take their true values (``metrics.intervention_curve``)."""
    go = _go()
    hover = ["no intervention" if c is None or (isinstance(c, float) and np.isnan(c)) else f"+ {c}" for c in curve["concept"]]
    figure = go.Figure(
        go.Scatter(x=curve["k"], y=curve["accuracy"], mode="lines+markers", hovertext=hover,
                   hovertemplate="k=%{x}<br>accuracy %{y:.3f}<br>%{hovertext}<extra></extra>", line_color=AFTER)
    )
    _layout(figure, title, height)
    figure.update_xaxes(title={"text": "concepts set to their true value (k)"})
    figure.update_yaxes(title={"text": "accuracy"}, range=[0, 1.02])
    return figure


def editing_bars(accuracy: pd.DataFrame, title: str | None = None, height: int = 360):
    """Accuracy per split before and after pruning (``EditingStudy.accuracy``)."""
    go = _go()
    bars = [("before", "before", BEFORE), ("after", "pruned", AFTER)]
    if "after_normalized" in accuracy.columns:
        bars.append(("after_normalized", "pruned + normalized", AFTER_NORMALIZED))
    figure = go.Figure(
        [
            go.Bar(name=label, x=list(accuracy.index), y=accuracy[column], marker_color=color,
                   text=[f"{v:.3f}" for v in accuracy[column]], textposition="outside", cliponaxis=False)
            for column, label, color in bars
        ]
    )
    title = title or "Accuracy before and after pruning"
    _layout(figure, title, height, barmode="group", legend={"orientation": "h", "y": 1.02, "x": 1, "xanchor": "right", "yanchor": "bottom"})
    figure.update_yaxes(range=[0, 1.1], title={"text": "accuracy"})
    return figure


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    return f"rgba({int(h[0:2], 16)}, {int(h[2:4], 16)}, {int(h[4:6], 16)}, {alpha})"


def intervention_policies(curves: pd.DataFrame, legacy: pd.DataFrame | None = None, title: str = "Intervening with true concept values", height: int = 400):
    """Accuracy against k per policy (``conceptlab.cbm.interventions.intervention_curves``), each with
    its 95 % bootstrap band; ``legacy`` adds the weight-order curve with class-mean values
    (``metrics.intervention_curve``) as a dotted line for comparison."""
    go = _go()
    figure = go.Figure()
    for policy, group in curves.groupby("policy", sort=False):
        group = group.sort_values("k")
        color = POLICY_COLORS.get(str(policy), NEUTRAL)
        if {"low", "high"} <= set(group.columns):
            figure.add_trace(go.Scatter(
                x=list(group["k"]) + list(group["k"])[::-1], y=list(group["high"]) + list(group["low"])[::-1], fill="toself",
                fillcolor=_rgba(color, 0.15), line={"width": 0}, hoverinfo="skip", showlegend=False, name=f"{policy} 95 %",
            ))
        figure.add_trace(go.Scatter(
            x=group["k"], y=group["accuracy"], mode="lines+markers", name=str(policy), line_color=color, marker={"size": 5},
            customdata=np.stack([group.get("low", group["accuracy"]), group.get("high", group["accuracy"])], axis=1),
            hovertemplate=f"{policy}<br>k=%{{x}}<br>accuracy %{{y:.3f}} [%{{customdata[0]:.3f}}, %{{customdata[1]:.3f}}]<extra></extra>",
        ))
    if legacy is not None:
        figure.add_trace(go.Scatter(
            x=legacy["k"], y=legacy["accuracy"], mode="lines", name="weight order, class-mean values", line={"color": NEUTRAL, "dash": "dot"},
            hovertemplate="class-mean values<br>k=%{x}<br>accuracy %{y:.3f}<extra></extra>",
        ))
    _layout(figure, title, height, legend={"orientation": "h", "y": 1.02, "x": 1, "xanchor": "right", "yanchor": "bottom"})
    figure.update_xaxes(title={"text": "concepts per image set to their true value (k)"})
    low = float(np.nanmin([curves["low"].min() if "low" in curves else curves["accuracy"].min(), *([] if legacy is None else [legacy["accuracy"].min()])]))
    figure.update_yaxes(title={"text": "accuracy"}, range=[max(0.0, low - 0.05), 1.01])
    return figure


def editing_comparison_bars(table: pd.DataFrame, splits: tuple[str, ...] = ("test", "shifted"), title: str = "Edits that fix the shortcut", height: int = 380):
    """Accuracy per model (``EditingComparison.table``: original, each edit, oracle) on each split,
    with 95 % bootstrap intervals as error bars."""
    go = _go()
    colors = {"test": BEFORE, "shifted": AFTER}
    figure = go.Figure()
    for split in splits:
        if split not in table.columns:
            continue
        error = None
        if f"{split}_low" in table.columns:
            error = {"type": "data", "symmetric": False, "array": (table[f"{split}_high"] - table[split]).to_numpy(),
                     "arrayminus": (table[split] - table[f"{split}_low"]).to_numpy(), "thickness": 1.2, "width": 4}
        figure.add_bar(name=split, x=list(table.index), y=table[split], error_y=error, marker_color=colors.get(split, NEUTRAL),
                       text=[f"{v:.3f}" for v in table[split]], textposition="inside")
    _layout(figure, title, height, barmode="group", legend={"orientation": "h", "y": 1.02, "x": 1, "xanchor": "right", "yanchor": "bottom"})
    figure.update_yaxes(range=[0, 1.05], title={"text": "accuracy (95 % interval)"})
    return figure


def grounding_panel(image: Any, maps: Mapping[str, np.ndarray], mask: np.ndarray | None = None, title: str = "Where does it look", height: int = 330):
    """An image beside its attribution maps (``method -> (H, W)``, red = evidence for the concept,
    blue = against), each with the outline of ``mask`` (the region the concept should use)."""
    from plotly.subplots import make_subplots

    go = _go()
    pixels = np.asarray(image)
    names = list(maps)
    figure = make_subplots(rows=1, cols=1 + len(names), subplot_titles=["image", *[n.replace("_", " ") for n in names]], horizontal_spacing=0.03)
    figure.add_trace(go.Image(z=pixels, hoverinfo="skip"), row=1, col=1)
    for c, name in enumerate(names, start=2):
        a = np.asarray(maps[name], dtype=np.float64)
        limit = float(np.abs(a).max()) or 1.0
        figure.add_trace(go.Heatmap(
            z=a, colorscale="RdBu", reversescale=True, zmid=0, zmin=-limit, zmax=limit, showscale=False,
            hovertemplate=f"{name}<br>x %{{x}}, y %{{y}}<br>attribution %{{z:.3g}}<extra></extra>",
        ), row=1, col=c)
        if mask is not None:
            figure.add_trace(go.Contour(
                z=np.asarray(mask, dtype=float), contours={"start": 0.5, "end": 0.5, "size": 1, "coloring": "none"},
                line={"color": "#111", "width": 1.5}, showscale=False, hoverinfo="skip", name="mask",
            ), row=1, col=c)
        figure.update_yaxes(autorange="reversed", row=1, col=c)
    for c in range(1, 2 + len(names)):
        figure.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, scaleanchor=f"y{'' if c == 1 else c}", row=1, col=c)
        figure.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, row=1, col=c)
    _layout(figure, title, height, showlegend=False)
    return figure


def grounding_bars(table: pd.DataFrame, value: str = "mass", by: str = "family", title: str | None = None, height: int = 360):
    """``GroundingResult.table()`` as bars per family and method with 95 % intervals, against the
    chance level (the region's area for ``"mass"`` and ``"pointing"``) as a dotted marker."""
    go = _go()
    figure = go.Figure()
    for method, group in table.groupby("method", sort=False):
        error = None
        if f"{value}_low" in group.columns:
            error = {"type": "data", "symmetric": False, "array": (group[f"{value}_high"] - group[value]).to_numpy(),
                     "arrayminus": (group[value] - group[f"{value}_low"]).to_numpy(), "thickness": 1.2, "width": 4}
        figure.add_bar(name=str(method).replace("_", " "), x=list(group[by]), y=group[value], error_y=error,
                       hovertemplate=f"{method}<br>%{{x}}<br>{value} %{{y:.3f}}<extra></extra>")
    chance = table.groupby(by, sort=False)["area"].mean()
    figure.add_trace(go.Scatter(x=list(chance.index), y=chance.to_numpy(), mode="markers", name="chance (region's area)",
                                marker={"symbol": "line-ew", "size": 26, "line": {"width": 2, "color": "#333"}}))
    label = {"mass": "attribution mass in the right region", "pointing": "pointing game (hits)"}.get(value, value)
    _layout(figure, title or f"Where the concepts look: {label}", height, barmode="group",
            legend={"orientation": "h", "y": 1.02, "x": 1, "xanchor": "right", "yanchor": "bottom"})
    figure.update_yaxes(range=[0, 1.05], title={"text": label})
    return figure
