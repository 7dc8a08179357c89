"""The Diffusion targets page's cached loaders: pipelines, the attribute reader, recorded steps,
hybrid samples and the diversity study -- each a thin cache around a ``conceptlab.diffusion`` call.

The models default to the zoo's and can be pointed elsewhere (tests use tiny models) with
``CONCEPTLAB_DIFFUSION_BASE`` / ``CONCEPTLAB_DIFFUSION_DISTILLED``; ``CONCEPTLAB_DIFFUSION_SEEDS``
sets the default number of seeds of the diversity panel.
"""

from __future__ import annotations

import os

import pandas as pd
import streamlit as st

from conceptlab.diffusion import (
    DEFAULT_CONDITIONS,
    convergence,
    diversity_study,
    hybrid_sample,
    load_pipeline,
    load_reader,
    structure_steps,
)

__all__ = [
    "CONDITIONS",
    "ENV_BASE",
    "ENV_DISTILLED",
    "ENV_SEEDS",
    "default_seeds",
    "default_specs",
    "diversity",
    "hybrid",
    "pipelines",
    "reader",
    "recorded",
]

ENV_BASE = "CONCEPTLAB_DIFFUSION_BASE"
ENV_DISTILLED = "CONCEPTLAB_DIFFUSION_DISTILLED"
ENV_SEEDS = "CONCEPTLAB_DIFFUSION_SEEDS"
CONDITIONS = list(DEFAULT_CONDITIONS)


def default_specs() -> tuple[str, str]:
    return os.environ.get(ENV_BASE, "zoo:shapes-ddpm"), os.environ.get(ENV_DISTILLED, "zoo:shapes-ddpm-distilled")


def default_seeds() -> int:
    return int(os.environ.get(ENV_SEEDS, "16"))


@st.cache_resource(show_spinner="Loading the diffusion models…", max_entries=4)
def pipelines(base_spec: str, distilled_spec: str, base_scheduler: str, base_steps: int, base_guidance: float):
    """(base, distilled) pipelines; the base with the chosen scheduler, steps and guidance."""
    base = load_pipeline(base_spec, scheduler=base_scheduler, num_inference_steps=base_steps, guidance_scale=base_guidance)
    return base, load_pipeline(distilled_spec)


@st.cache_resource(show_spinner="Loading the attribute reader…", max_entries=2)
def reader(base_spec: str):
    """The attribute reader saved with the base model (zoo:shapes-ddpm's when it has none)."""
    from conceptlab.diffusion import resolve_model

    folder, _ = resolve_model(base_spec)
    return load_reader(base_spec if (folder / "reader.json").is_file() else "zoo:shapes-ddpm")


@st.cache_data(show_spinner="Sampling with the step recorder…", max_entries=16)
def recorded(key: tuple, condition: str, seeds: tuple[int, ...], _base, _distilled, _reader) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """Frames of both models (recorded every step), the mean convergence curve and the structure steps."""
    result = convergence({"base": _base, "distilled": _distilled}, condition, list(seeds), _reader)
    return result.frames, result.mean_curve(), structure_steps(result.curve)


@st.cache_data(show_spinner="Sampling the hybrid…", max_entries=16)
def hybrid(key: tuple, condition: str, seeds: tuple[int, ...], switch_at: int, base_guidance: float, _base, _distilled):
    """Hybrid samples (N, 3, H, W) in [-1, 1] and the timesteps each model ran at."""
    out = hybrid_sample(_base, _distilled, condition, list(seeds), switch_at=switch_at, base_guidance=base_guidance)
    return out.images, out.base_timesteps, out.distilled_timesteps


@st.cache_data(show_spinner="Sampling every seed with the three models…", max_entries=8)
def diversity(key: tuple, condition: str, n_seeds: int, switch_at: int, base_guidance: float, _base, _distilled, _reader):
    """The diversity study of one condition: (table, per-family histograms, settings)."""
    study = diversity_study(_base, _distilled, [condition], n_seeds, _reader, hybrid={"switch_at": switch_at, "base_guidance": base_guidance}, progress=False)
    families = [c.removesuffix("_coverage") for c in study.table.columns if c.endswith("_coverage")]
    return study.table, {f: study.histogram(condition, f) for f in families}, study.settings
