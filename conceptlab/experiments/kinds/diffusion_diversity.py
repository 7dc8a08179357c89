"""``kind = "diffusion_diversity"``: base vs distilled vs hybrid diversity, convergence and the hybrid ablation, as a probe file.

::

    kind = "diffusion_diversity"
    name = "shapes_diffusion_diversity"
    [models]
    base = "zoo:shapes-ddpm"               # zoo:NAME, local-dir:PATH or a folder
    distilled = "zoo:shapes-ddpm-distilled"
    base_scheduler = ""                    # "" = the model card's (ddim); ddpm | euler | dpm++ | ...
    base_steps = 0                         # 0 = the model card's
    base_guidance = -1.0                   # < 0 = the model card's
    distilled_steps = 0
    [study]
    conditions = ["a red circle", "a blue star", "a green triangle", "a yellow cross"]
    seeds = 64                             # seeds seed_start .. seed_start + seeds - 1 per condition
    seed_start = 0
    reader = "probe"                       # probe | zero-shot
    [hybrid]
    switch_at = 1
    base_guidance = 0.0
    shared_scheduler = true
    [variants]                             # optional: more hybrids, compared as extra models
    hybrid_separate = { switch_at = 1, base_guidance = 0.0, shared_scheduler = false }
    [convergence]
    condition = "a red circle"
    seeds = 16
    [ablation]                             # optional: the hybrid's switch point and base guidance
    condition = "a red circle"
    seeds = 32
    switch_at = [0, 1, 2, 3, 4]
    base_guidance = [0.0, 2.0, 4.0]
    shared_scheduler = [true, false]

``conceptlab probe run FILE`` writes ``metrics.json``, ``report.html`` (self-contained: plotly.js
inlined once, the DT grid as an embedded PNG) and ``dt_grid.png`` into ``artifacts/probes/<name>/``,
each atomically.
"""

from __future__ import annotations

import base64
import html
import io
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from conceptlab.experiments.config import ProbeConfigError
from conceptlab.experiments.plugin_config import read_header, read_section
from conceptlab.experiments.report_page import figures_html, write_report_page
from conceptlab.registry import register_probe_kind
from conceptlab.utils import atomic_write_bytes, atomic_write_json

__all__ = ["DiffusionDiversityConfig", "DiffusionDiversityProbe", "DiffusionDiversityResult", "run_diffusion_diversity"]

SECTIONS: dict[str, dict[str, Any]] = {
    "models": {
        "base": "zoo:shapes-ddpm", "distilled": "zoo:shapes-ddpm-distilled", "base_scheduler": "", "base_steps": 0, "base_guidance": -1.0, "distilled_steps": 0,
    },
    "study": {"conditions": ["a red circle", "a blue star", "a green triangle", "a yellow cross"], "seeds": 64, "seed_start": 0, "reader": "probe"},
    "hybrid": {"switch_at": 1, "base_guidance": 0.0, "shared_scheduler": True},
    "convergence": {"condition": "a red circle", "seeds": 16},
    "ablation": {"condition": "a red circle", "seeds": 32, "switch_at": [0, 1, 2, 3, 4], "base_guidance": [0.0, 2.0, 4.0], "shared_scheduler": [True]},
}
TOP_LEVEL = {"kind", "name", "description", "variants", *SECTIONS}


@dataclass
class DiffusionDiversityConfig:
    """A validated ``diffusion_diversity`` probe."""

    name: str
    description: str = ""
    models: dict[str, Any] = field(default_factory=dict)
    study: dict[str, Any] = field(default_factory=dict)
    hybrid: dict[str, Any] = field(default_factory=dict)
    convergence: dict[str, Any] = field(default_factory=dict)
    ablation: dict[str, Any] | None = None
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    kind: str = "diffusion_diversity"

    def summary(self) -> str:
        s, h = self.study, self.hybrid
        ablation = f"; ablation over switch {self.ablation['switch_at']} x base guidance {self.ablation['base_guidance']}" if self.ablation else ""
        return (
            f"diversity of {self.models['base']} vs {self.models['distilled']} vs hybrid (switch at {h['switch_at']}, base guidance {h['base_guidance']}): "
            f"{len(s['conditions'])} conditions x {s['seeds']} seeds, read by {s['reader']}{ablation}"
        )


def _section(raw: Mapping[str, Any], key: str, source: str) -> dict[str, Any]:
    return read_section(raw, key, SECTIONS[key], source)


def _check_condition(condition: str, where: str, source: str) -> None:
    from conceptlab.zoo.shapes_ddpm import condition_codes

    try:
        condition_codes(condition)
    except (ValueError, TypeError) as error:
        raise ProbeConfigError(f"{source}: {where}: {error}") from None


@register_probe_kind("diffusion_diversity", description="Diffusion targets: base vs distilled vs hybrid diversity in ground-truth attribute space")
class DiffusionDiversityProbe:
    """Parse and run ``kind = "diffusion_diversity"`` probe files."""

    @staticmethod
    def parse(raw: Mapping[str, Any], source: str = "<probe>", name: str | None = None) -> DiffusionDiversityConfig:
        from conceptlab.diffusion import SCHEDULERS

        probe_name = read_header(raw, TOP_LEVEL, source, name)
        description = raw.get("description", "")
        if not isinstance(description, str):
            raise ProbeConfigError(f"{source}: top level: description must be a string")
        models = _section(raw, "models", source)
        if models["base_scheduler"] and models["base_scheduler"] not in SCHEDULERS:
            raise ProbeConfigError(f"{source}: [models] base_scheduler = {models['base_scheduler']!r}; choose one of {', '.join(SCHEDULERS)} (or \"\" for the model's)")
        for key in ("base_steps", "distilled_steps"):
            if models[key] < 0:
                raise ProbeConfigError(f"{source}: [models] {key} must be >= 0 (0 = the model card's)")
        study = _section(raw, "study", source)
        for i, condition in enumerate(study["conditions"]):
            _check_condition(condition, f"[study] conditions[{i}]", source)
        if study["seeds"] < 2:
            raise ProbeConfigError(f"{source}: [study] seeds must be >= 2 (diversity compares samples)")
        if study["reader"] not in ("probe", "zero-shot"):
            raise ProbeConfigError(f"{source}: [study] reader = {study['reader']!r}; choose one of probe, zero-shot")
        hybrid = _section(raw, "hybrid", source)
        if hybrid["switch_at"] < 0:
            raise ProbeConfigError(f"{source}: [hybrid] switch_at must be >= 0")
        convergence = _section(raw, "convergence", source)
        _check_condition(convergence["condition"], "[convergence] condition", source)
        if convergence["seeds"] < 1:
            raise ProbeConfigError(f"{source}: [convergence] seeds must be >= 1")
        variants = {}
        given = raw.get("variants", {})
        if not isinstance(given, Mapping):
            raise ProbeConfigError(f"{source}: [variants] must be a table of name = {{ hybrid settings }}")
        for variant, settings in given.items():
            if variant in ("base", "distilled", "hybrid"):
                raise ProbeConfigError(f"{source}: [variants] {variant}: the name is taken; pick another")
            variants[variant] = _section({"hybrid": settings}, "hybrid", f"{source}: [variants] {variant}")
        ablation = _section(raw, "ablation", source) if "ablation" in raw else None
        if ablation is not None:
            _check_condition(ablation["condition"], "[ablation] condition", source)
            if ablation["seeds"] < 2 or any(k < 0 for k in ablation["switch_at"]):
                raise ProbeConfigError(f"{source}: [ablation] needs seeds >= 2 and switch_at values >= 0")
        return DiffusionDiversityConfig(probe_name, description, models, study, hybrid, convergence, ablation, variants)

    @staticmethod
    def run(config: DiffusionDiversityConfig, out_dir=None, store=None, progress: bool = True, write: bool = True, log: Callable[[str], None] | None = print):
        return run_diffusion_diversity(config, out_dir=out_dir, progress=progress, write=write, log=log)


@dataclass
class DiffusionDiversityResult:
    """What a ``diffusion_diversity`` run produced."""

    config: DiffusionDiversityConfig
    metrics: dict[str, Any]
    study: Any
    convergence: Any
    ablation: pd.DataFrame | None
    figures: dict[str, Any]
    grid: Any
    out_dir: Path | None

    def summary(self) -> str:
        columns = ["coverage", "entropy", "entropy_share", "faithful", "clip_pairwise", "vendi"]
        lines = [self.study.summary[columns].round(3).to_string()]
        steps = pd.DataFrame(self.metrics["structure_steps"]).set_index("model")
        lines.append(steps.round(3).to_string())
        return "\n".join(lines)


def _pipelines(models: Mapping[str, Any]):
    from conceptlab.diffusion import load_pipeline

    base = load_pipeline(
        models["base"], scheduler=models["base_scheduler"] or None, num_inference_steps=models["base_steps"] or None,
        guidance_scale=models["base_guidance"] if models["base_guidance"] >= 0 else None,
    )
    distilled = load_pipeline(models["distilled"], num_inference_steps=models["distilled_steps"] or None)
    return base, distilled


def run_ablation(
    base, distilled, reader, condition: str, seeds: list[int], switch_at: list[int], base_guidance: list[float], mode: str = "probe", progress: bool = True,
    shared_scheduler: list[bool] = (True,),
) -> pd.DataFrame:
    """The hybrid's switch-point x base-guidance (x shared-scheduler) grid: the study's metrics for each setting."""
    from tqdm.auto import tqdm

    from conceptlab.diffusion import diversity_study

    rows = []
    grid = [(s, k, g) for s in shared_scheduler for k in switch_at for g in base_guidance if not (k == 0 and g != base_guidance[0])]  # k = 0: no base step
    for shared, k, g in tqdm(grid, desc="hybrid ablation", disable=not progress):
        settings = {"switch_at": k, "base_guidance": g, "shared_scheduler": shared}
        study = diversity_study(base, distilled, [condition], seeds, reader, hybrid=settings, models=("hybrid",), mode=mode, progress=False)
        row = study.table.iloc[0].to_dict()
        metrics = ("coverage", "entropy", "entropy_share", "faithful", "clip_pairwise", "vendi")
        rows.append({"shared_scheduler": shared, "switch_at": k, "base_guidance": g, **{key: row[key] for key in metrics}})
    return pd.DataFrame(rows)


def run_diffusion_diversity(
    config: DiffusionDiversityConfig, out_dir=None, progress: bool = True, write: bool = True, log: Callable[[str], None] | None = print
) -> DiffusionDiversityResult:
    """Run the study, the convergence curve and the optional ablation; write the outputs."""
    from conceptlab.diffusion import ablation_figure, convergence, convergence_figure, diversity_study, dt_grid, histogram_figure, structure_steps
    from conceptlab.experiments.config import default_out_dir

    say = log or (lambda message: None)
    started = time.time()
    base, distilled = _pipelines(config.models)
    reader = _reader(config.models["base"])
    mode = config.study["reader"]
    say(f"base {base}; distilled {distilled}")
    seeds = list(range(config.study["seed_start"], config.study["seed_start"] + config.study["seeds"]))
    study = diversity_study(base, distilled, config.study["conditions"], seeds, reader, hybrid=config.hybrid, mode=mode, progress=progress, variants=config.variants)
    say(study.summary[["coverage", "entropy", "faithful", "clip_pairwise", "vendi"]].round(3).to_string())
    conv_seeds = list(range(config.convergence["seeds"]))
    conv = convergence({"base": base, "distilled": distilled}, config.convergence["condition"], conv_seeds, reader, mode)
    steps = structure_steps(conv.curve)
    say(steps.round(3).to_string())
    ablation = None
    if config.ablation is not None:
        a = config.ablation
        ablation = run_ablation(base, distilled, reader, a["condition"], list(range(a["seeds"])), a["switch_at"], a["base_guidance"], mode, progress, a["shared_scheduler"])
    first = config.study["conditions"][0]
    figures: dict[str, Any] = {
        "convergence": convergence_figure(conv.mean_curve(), "clip_distance"),
        "attributes": convergence_figure(conv.mean_curve(), "attributes_match"),
    }
    for family in ("size", "fill", "background", "position"):
        if any(f"{family}_coverage" == c for c in study.table.columns):
            figures[f"hist_{family}"] = histogram_figure(study.histogram(first, family), family, first)
    if ablation is not None:
        for (shared, g), part in ablation.groupby(["shared_scheduler", "base_guidance"]):
            name = f"ablation_{'shared' if shared else 'separate'}_g{g}"
            figures[name] = ablation_figure(part.sort_values("switch_at"), "switch_at", ("entropy_share", "faithful", "clip_pairwise"))
            figures[name].update_layout(title=f"Hybrid switch point ({'shared' if shared else 'separate'} schedulers), base guidance {g}")
    grid = dt_grid(conv.frames, index=0)
    metrics: dict[str, Any] = {
        "kind": config.kind,
        "settings": study.settings,
        "diversity": json.loads(study.table.to_json(orient="records")),
        "summary": json.loads(study.summary.reset_index().to_json(orient="records")),
        "structure_steps": json.loads(steps.to_json(orient="records")),
        "convergence_curve": json.loads(conv.mean_curve().to_json(orient="records")),
        "ablation": json.loads(ablation.to_json(orient="records")) if ablation is not None else None,
        "reader_accuracy_real_32px": reader_accuracy(config.models["base"]),
        "seconds": round(time.time() - started, 1),
    }
    result = DiffusionDiversityResult(config, metrics, study, conv, ablation, figures, grid, None)
    if write:
        out = Path(out_dir) if out_dir is not None else default_out_dir(config)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "metrics.json", metrics)
        png = io.BytesIO()
        grid.save(png, format="PNG")
        atomic_write_bytes(out / "dt_grid.png", png.getvalue())
        write_diversity_report(result, out / "report.html", png.getvalue())
        result.out_dir = out
        say(f"wrote {out}")
    return result


def _reader(base_spec: str):
    """The base model's own reader when it has one, else zoo:shapes-ddpm's."""
    from conceptlab.diffusion import load_reader, resolve_model

    folder, _ = resolve_model(base_spec)
    return load_reader(base_spec if (folder / "reader.json").is_file() else "zoo:shapes-ddpm")


def reader_accuracy(base_spec: str) -> dict | None:
    """The reader's accuracy on real 32-pixel images, from the base model's card (the ceiling of any reading)."""
    from conceptlab.diffusion import resolve_model

    try:
        folder, _ = resolve_model(base_spec)
        return json.loads((folder / "model_card.json").read_text()).get("reader_accuracy_real_32px")
    except (OSError, ValueError):
        return None


def write_diversity_report(result: DiffusionDiversityResult, path: str | Path, grid_png: bytes) -> Path:
    """A self-contained HTML report: tables, the DT grid (embedded PNG) and the figures (plotly.js inlined once)."""
    config, metrics = result.config, result.metrics
    columns = ["coverage", "entropy", "entropy_share", "faithful", "clip_pairwise", "vendi"]
    body = [
        f"<h1>Probe {html.escape(config.name)}</h1>",
        f"<p class='meta'>{html.escape(config.description)}</p>" if config.description else "",
        f"<p class='meta'>{html.escape(config.summary())} · ran in {metrics['seconds']} s</p>",
        "<h2>Diversity, mean over conditions</h2>",
        "<p class='meta'>coverage: distinct values of the free families / values that exist; entropy in bits (entropy_share: of its maximum); "
        "faithful: share of samples showing every requested attribute; clip_pairwise: mean 1 − cos in zoo-CLIP space; vendi: Vendi score (q = 1)</p>",
        result.study.summary[columns].round(3).to_html(border=0),
        "<h2>Per condition</h2>",
        result.study.table.round(3).to_html(border=0, index=False),
        "<h2>When is the structure fixed?</h2>",
        "<p class='meta'>share of the steps after which every attribute read from x̂0 stays as in the final image; share at which the zoo-CLIP distance falls below a tenth</p>",
        pd.DataFrame(metrics["structure_steps"]).round(3).to_html(border=0, index=False),
        "<h2>Diffusion targets</h2><p class='meta'>rows: base, distilled; each cell x_t | x̂0</p>",
        f"<img alt='DT grid' src='data:image/png;base64,{base64.b64encode(grid_png).decode()}'>",
    ]
    if result.ablation is not None:
        body += ["<h2>Hybrid ablation</h2>", result.ablation.round(3).to_html(border=0, index=False)]
    for key, fragment in zip(result.figures, figures_html(result.figures.values()), strict=True):
        body += [f"<h3>{html.escape(key.replace('_', ' '))}</h3>", fragment]
    return write_report_page(path, config.name, body)
