"""Pictures of diffusion targets: the DT grid and the figures of the studies (plotly).

``dt_grid`` puts one row per model and one column per recorded step; each cell shows x_t (left, on
the VP scale) beside x̂0 (right), the paper's Fig. 4 in one image. Latent models pass ``decode``
(e.g. ``lambda x: conceptlab.diffusion.decode(pipe, x)``); the zoo models are pixel models.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import pandas as pd
import torch
from PIL import Image

from conceptlab.diffusion.recorder import Frame
from conceptlab.zoo.shapes_ddpm import tensor_to_images

__all__ = ["ablation_figure", "convergence_figure", "dt_grid", "histogram_figure", "tile"]

MODEL_COLORS = {"base": "#1f77b4", "distilled": "#d62728", "hybrid": "#2ca02c"}


def tile(x: torch.Tensor, size: int = 96) -> Image.Image:
    """One (3, H, W) tensor in [-1, 1] as a PIL image, upscaled with nearest neighbours."""
    return tensor_to_images(x.unsqueeze(0))[0].resize((size, size), Image.Resampling.NEAREST)


def dt_grid(
    rows: Mapping[str, Sequence[Frame]],
    index: int = 0,
    show_x_t: bool = True,
    size: int = 96,
    gap: int = 6,
    decode: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Image.Image:
    """Rows = models, columns = recorded steps; sample ``index`` of the batch; x_t | x̂0 per cell."""
    if not rows or not any(rows.values()):
        raise ValueError("dt_grid needs at least one row of recorded frames")
    decode = decode or (lambda x: x)
    per_cell = 2 if show_x_t else 1
    n_cols = max(len(frames) for frames in rows.values())
    cell_w = per_cell * size + (per_cell - 1) * 2
    width = n_cols * cell_w + (n_cols + 1) * gap
    height = len(rows) * size + (len(rows) + 1) * gap
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    for r, frames in enumerate(rows.values()):
        y = gap + r * (size + gap)
        for c, frame in enumerate(frames):
            x = gap + c * (cell_w + gap)
            if frame.x0 is None:
                raise ValueError("the frames hold no x0 (record with what=('x_t', 'x0'))")
            if show_x_t:
                x_t = frame.x_t_vp()
                if x_t is None:
                    raise ValueError("the frames hold no x_t (record it, or pass show_x_t=False)")
                canvas.paste(tile(decode(x_t[index : index + 1])[0], size), (x, y))
                x += size + 2
            canvas.paste(tile(decode(frame.x0[index : index + 1])[0], size), (x, y))
    return canvas


def convergence_figure(mean_curve: pd.DataFrame, metric: str = "clip_distance"):
    """Distance of DT_t to the final image against the share of steps done, one line per model."""
    import plotly.graph_objects as go

    labels = {
        "clip_distance": "zoo-CLIP distance to the final image",
        "pixel_distance": "pixel RMSE to the final image",
        "attributes_match": "attributes already as in the final image",
        "spread": "spread of the targets across seeds (zoo-CLIP)",
    }
    fig = go.Figure()
    for model, group in mean_curve.groupby("model", sort=False):
        group = group.sort_values("share")
        fig.add_trace(go.Scatter(x=group["share"] * 100, y=group[metric], mode="lines+markers", name=str(model), line={"color": MODEL_COLORS.get(str(model))}))
    fig.update_layout(
        title=f"Convergence of the diffusion target: {labels.get(metric, metric)}",
        xaxis_title="% of sampling steps done", yaxis_title=labels.get(metric, metric), height=380, margin={"l": 60, "r": 20, "t": 50, "b": 50},
    )
    return fig


def histogram_figure(counts: pd.DataFrame, family: str, condition: str = ""):
    """Grouped bars: how often each value of ``family`` appears per model (a study's ``histogram``)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for model, group in counts.groupby("model", sort=False):
        fig.add_trace(go.Bar(x=group["value"], y=group["count"], name=str(model), marker_color=MODEL_COLORS.get(str(model))))
    title = f"{family} across seeds{' - ' + condition if condition else ''}"
    fig.update_layout(barmode="group", title=title, yaxis_title="samples", height=320, margin={"l": 50, "r": 20, "t": 50, "b": 40})
    return fig


def ablation_figure(table: pd.DataFrame, x: str, metrics: Sequence[str] = ("entropy_share", "faithful")):
    """Lines of study metrics against an ablated setting (switch point or base guidance)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for metric in metrics:
        fig.add_trace(go.Scatter(x=table[x], y=table[metric], mode="lines+markers", name=metric))
    fig.update_layout(title=f"Hybrid ablation over {x}", xaxis_title=x, height=320, margin={"l": 50, "r": 20, "t": 50, "b": 40})
    return fig
