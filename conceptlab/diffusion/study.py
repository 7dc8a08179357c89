"""The diffusion-target studies on the embedded world: diversity of base / distilled / hybrid samples,
and how fast each model's target settles (the convergence curve).

Everything is read back from the generated images by an :class:`~conceptlab.zoo.shapes_ddpm.AttributeReader`
(zoo:shapes-clip), so diversity is counted in ground-truth attribute space: for a condition such as
"a red circle", the families it leaves free (size, fill, background, position) should spread over
their values as they do in the data (uniformly: entropy log2 of the number of values).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from conceptlab.data import ATTRIBUTE_VALUES
from conceptlab.diffusion.diversity import attribute_diversity, pairwise_distance, vendi_score
from conceptlab.diffusion.hybrid import hybrid_sample
from conceptlab.diffusion.pipeline import ShapesPipeline, load_pipeline, resolve_model
from conceptlab.diffusion.recorder import Frame, StepRecorder
from conceptlab.zoo.shapes_ddpm import FAMILIES, AttributeReader, condition_codes, tensor_to_images

__all__ = [
    "DEFAULT_CONDITIONS",
    "MODELS",
    "ConvergenceResult",
    "DiversityStudy",
    "convergence",
    "diversity_study",
    "free_families",
    "images_of",
    "load_reader",
    "sample",
    "structure_steps",
]

#: conditions of the diversity study: shape and colour of four ShapesWorld classes; size, fill,
#: background and position are left to the model
DEFAULT_CONDITIONS: tuple[str, ...] = ("a red circle", "a blue star", "a green triangle", "a yellow cross")
#: the three ways of sampling compared
MODELS: tuple[str, ...] = ("base", "distilled", "hybrid")


def load_reader(model: str = "zoo:shapes-ddpm", backbone=None) -> AttributeReader:
    """The attribute reader saved with a diffusion model (zoo:shapes-ddpm ships one: probes fitted
    on zoo:shapes-clip); its backbone is loaded from the spec the reader records unless given."""
    import json

    from conceptlab.backbones import load

    folder, _ = resolve_model(model)
    meta_file = folder / "reader.json"
    if not meta_file.is_file():
        raise FileNotFoundError(f"{model} has no attribute reader (reader.json); use zoo:shapes-ddpm's or fit one with AttributeReader.fit")
    backbone = backbone or load(json.loads(meta_file.read_text())["backbone"], device="cpu")
    return AttributeReader.load(folder, backbone)


def free_families(condition) -> list[str]:
    """The families a condition leaves unspecified."""
    codes = condition_codes(condition)
    return [f for f, c in zip(FAMILIES, codes) if c == len(ATTRIBUTE_VALUES[f])]


def _named(condition) -> dict[str, str]:
    codes = condition_codes(condition)
    return {f: ATTRIBUTE_VALUES[f][c] for f, c in zip(FAMILIES, codes) if c < len(ATTRIBUTE_VALUES[f])}


def sample(
    kind: str,
    base: ShapesPipeline | None,
    distilled: ShapesPipeline | None,
    condition,
    seeds: Sequence[int],
    hybrid: Mapping[str, Any] | None = None,
    batch_size: int = 64,
    base_guidance: float | None = None,
) -> torch.Tensor:
    """(N, 3, H, W) samples in [-1, 1], ``batch_size`` seeds at a time: ``kind`` ``"base"``,
    ``"distilled"``, or any other name for a hybrid with the settings ``hybrid``."""
    if kind not in ("base", "distilled") and hybrid is None and kind != "hybrid":
        raise ValueError(f"unknown model kind {kind!r}: base, distilled, or a hybrid with its settings")
    seeds = list(seeds)
    out = []
    for start in range(0, len(seeds), batch_size):
        chunk = seeds[start : start + batch_size]
        if kind not in ("base", "distilled"):
            out.append(hybrid_sample(base, distilled, condition, chunk, **dict(hybrid or {})).images)
        else:
            pipe = base if kind == "base" else distilled
            guidance = base_guidance if kind == "base" else None
            out.append(pipe.copy()(condition, chunk, guidance_scale=guidance, output_type="pt").images)
    return torch.cat(out)


@dataclass
class DiversityStudy:
    """``table``: one row per (condition, model); ``summary``: the mean over conditions per model;
    ``reads``: (condition, model) -> family -> values read; ``images`` when kept."""

    table: pd.DataFrame
    summary: pd.DataFrame
    reads: dict[tuple[str, str], dict[str, list[str]]]
    settings: dict[str, Any]
    images: dict[tuple[str, str], torch.Tensor] = field(default_factory=dict)

    def histogram(self, condition: str, family: str) -> pd.DataFrame:
        """Counts of each value of ``family`` per model, for one condition (the app's panel)."""
        rows = []
        for (cond, model), read in self.reads.items():
            if cond != condition:
                continue
            for value in ATTRIBUTE_VALUES[family]:
                rows.append({"model": model, "value": value, "count": int(sum(v == value for v in read[family]))})
        return pd.DataFrame(rows)


def diversity_study(
    base: ShapesPipeline | str = "zoo:shapes-ddpm",
    distilled: ShapesPipeline | str = "zoo:shapes-ddpm-distilled",
    conditions: Sequence[str] = DEFAULT_CONDITIONS,
    seeds: Sequence[int] | int = 64,
    reader: AttributeReader | None = None,
    hybrid: Mapping[str, Any] | None = None,
    models: Sequence[str] = MODELS,
    mode: str = "probe",
    batch_size: int = 64,
    keep_images: bool = False,
    progress: bool = True,
    variants: Mapping[str, Mapping[str, Any]] | None = None,
) -> DiversityStudy:
    """For each condition and model: sample the seeds, read the attributes back, and measure
    coverage and entropy of the free families, the share showing the requested attributes, the
    mean pairwise zoo-CLIP distance and the Vendi score (q = 1, cosine kernel).

    ``hybrid``: the settings of :func:`hybrid_sample` for the model ``"hybrid"`` (default: switch
    at 1, base guidance 0, shared scheduler); ``variants``: more hybrids, name -> settings, compared
    as extra models (e.g. ``{"hybrid_separate": {"switch_at": 1, "shared_scheduler": False}}``)."""
    base = load_pipeline(base) if isinstance(base, str) else base
    distilled = load_pipeline(distilled) if isinstance(distilled, str) else distilled
    reader = reader or load_reader()
    seeds = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if len(seeds) < 2:
        raise ValueError("a diversity study needs at least 2 seeds")
    hybrid = dict(hybrid if hybrid is not None else {"switch_at": 1, "base_guidance": 0.0})
    settings_of = {"hybrid": hybrid, **{name: dict(v) for name, v in (variants or {}).items()}}
    models = [*models, *[name for name in (variants or {}) if name not in models]]
    rows, reads, images = [], {}, {}
    jobs = [(c, m) for c in conditions for m in models]
    for condition, model in tqdm(jobs, desc="diversity study", disable=not progress):
        x = sample(model, base, distilled, condition, seeds, settings_of.get(model), batch_size)
        embeddings = reader.embed(x)
        read = reader.read_embeddings(embeddings, mode)
        free = free_families(condition)
        named = _named(condition)
        stats = attribute_diversity(read, free, {f: len(v) for f, v in ATTRIBUTE_VALUES.items()})
        row: dict[str, Any] = {"condition": condition, "model": model, "n": len(seeds)}
        for family in free:
            row[f"{family}_coverage"] = stats[family]["coverage"]
            row[f"{family}_entropy"] = stats[family]["entropy"]
        row["coverage"] = float(np.mean([s["coverage"] for s in stats.values()])) if stats else float("nan")
        row["entropy"] = float(np.mean([s["entropy"] for s in stats.values()])) if stats else float("nan")
        row["entropy_share"] = float(np.mean([s["entropy"] / s["max_entropy"] for s in stats.values()])) if stats else float("nan")
        row["faithful"] = float(np.mean([all(read[f][i] == v for f, v in named.items()) for i in range(len(seeds))])) if named else float("nan")
        row["clip_pairwise"] = pairwise_distance(embeddings)
        row["vendi"] = vendi_score(embeddings, q=1.0)
        rows.append(row)
        reads[(condition, model)] = read
        if keep_images:
            images[(condition, model)] = x
    table = pd.DataFrame(rows)
    numeric = [c for c in table.columns if c not in ("condition", "model")]
    summary = table.groupby("model", sort=False)[numeric].mean().reindex(list(models))
    settings = {
        "base": base.name, "base_scheduler": type(base.scheduler).__name__, "base_steps": base.num_inference_steps, "base_guidance": base.guidance_scale,
        "distilled": distilled.name, "distilled_scheduler": type(distilled.scheduler).__name__, "distilled_steps": distilled.num_inference_steps,
        "hybrid": hybrid, "variants": {k: v for k, v in settings_of.items() if k != "hybrid"},
        "conditions": list(conditions), "seeds": [seeds[0], seeds[-1], len(seeds)], "reader": mode,
    }
    return DiversityStudy(table, summary, reads, settings, images)


# -- convergence ------------------------------------------------------------------------------------
@dataclass
class ConvergenceResult:
    """``curve``: one row per (model, seed, step): share of steps done, zoo-CLIP and pixel distance
    of DT_t to the final image, share of the six attributes already as in the final image, and
    (the same for every seed) ``spread``, the mean pairwise zoo-CLIP distance of DT_t across the
    seeds, beside ``final_spread``, that of the final images; ``frames``: model -> the recorded
    frames (for the DT grid)."""

    curve: pd.DataFrame
    frames: dict[str, list[Frame]]

    def mean_curve(self) -> pd.DataFrame:
        columns = ["share", "clip_distance", "pixel_distance", "attributes_match", "spread", "final_spread"]
        return self.curve.groupby(["model", "step"], sort=False)[columns].mean().reset_index()


def convergence(
    pipes: Mapping[str, ShapesPipeline],
    condition,
    seeds: Sequence[int],
    reader: AttributeReader,
    mode: str = "probe",
) -> ConvergenceResult:
    """Record every step of each pipeline on the same seeds and compare each step's x̂0 with the final image."""
    rows, frames = [], {}
    for name, pipe in pipes.items():
        pipe = pipe.copy()
        with StepRecorder(pipe, what=("x_t", "x0")) as recorder:
            final = pipe(condition, list(seeds), output_type="pt").images
        frames[name] = recorder.frames
        final_emb = reader.embed(final)
        final_read = reader.read_embeddings(final_emb, mode)
        final_spread = pairwise_distance(final_emb) if len(seeds) > 1 else float("nan")
        final01 = (final.clamp(-1, 1) + 1) / 2
        for frame in recorder.frames:
            x0 = frame.x0.clamp(-1, 1)
            emb = reader.embed(x0)
            read = reader.read_embeddings(emb, mode)
            clip = 1.0 - (emb * final_emb).sum(dim=1)
            pixel = (((x0 + 1) / 2 - final01) ** 2).mean(dim=(1, 2, 3)).sqrt()
            spread = pairwise_distance(emb) if len(seeds) > 1 else float("nan")
            for i, seed in enumerate(seeds):
                match = np.mean([read[f][i] == final_read[f][i] for f in FAMILIES])
                rows.append({
                    "model": name, "seed": int(seed), "step": frame.step, "timestep": frame.timestep, "share": frame.share,
                    "clip_distance": float(clip[i]), "pixel_distance": float(pixel[i]), "attributes_match": float(match),
                    "spread": spread, "final_spread": final_spread,
                })
    return ConvergenceResult(pd.DataFrame(rows), frames)


def structure_steps(curve: pd.DataFrame, fraction: float = 0.2) -> pd.DataFrame:
    """Per model, when the diffusion target settles:

    - ``attribute_lock_share_mean`` / ``_median``: the share of steps after which every attribute
      read from x̂0 stays as in the final image (per seed, then mean and median over seeds);
    - ``clip_fixed_share``: the first share at which the mean zoo-CLIP distance of x̂0 to its final
      image is at most ``fraction`` of the distance between two final images of different seeds
      (the target is then far closer to its own end than to another sample);
    - ``first_step_spread``: the spread of the first step's targets across seeds as a share of the
      finals' spread (near 0: every seed aims at the same image at first; near 1: the first step
      already commits each seed to its own image)."""
    rows = []
    for model, group in curve.groupby("model", sort=False):
        locks = []
        for _, seed_rows in group.groupby("seed"):
            seed_rows = seed_rows.sort_values("step")
            matched = seed_rows["attributes_match"].to_numpy() >= 1.0
            shares = seed_rows["share"].to_numpy()
            lock = shares[-1]
            for j in range(len(matched) - 1, -1, -1):
                if not matched[j]:
                    break
                lock = shares[j]
            locks.append(lock)
        mean_curve = group.groupby("step")[["share", "clip_distance", "spread", "final_spread"]].mean().sort_index()
        final_spread = float(mean_curve["final_spread"].iloc[-1])
        below = mean_curve[mean_curve["clip_distance"] <= fraction * final_spread] if final_spread == final_spread else mean_curve.iloc[-1:]
        rows.append({
            "model": model,
            "steps": int(group["step"].max() + 1),
            "attribute_lock_share_mean": float(np.mean(locks)),
            "attribute_lock_share_median": float(np.median(locks)),
            "clip_fixed_share": float(below["share"].iloc[0]) if len(below) else 1.0,
            "first_step_spread": float(mean_curve["spread"].iloc[0] / final_spread) if final_spread else float("nan"),
        })
    return pd.DataFrame(rows)


def images_of(x: torch.Tensor) -> list:
    """PIL images of a (N, 3, H, W) tensor in [-1, 1] (for the app and the notebook)."""
    return tensor_to_images(x)
