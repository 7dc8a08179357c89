"""Diffusion targets: what a diffusion model aims at, step by step, and why distilled models lose diversity.

- :class:`StepRecorder` -- x̂0 (and x_t) at every step of any diffusers scheduler (``recorder``);
- :func:`load_pipeline` -- the zoo diffusion models (``zoo:shapes-ddpm``, ``zoo:shapes-ddpm-distilled``)
  as pipelines with any diffusers scheduler (``pipeline``);
- :func:`hybrid_sample` -- base model first, distilled model after (``hybrid``);
- :func:`vendi_score`, :func:`pairwise_distance`, :func:`attribute_diversity` (``diversity``);
- :func:`diversity_study`, :func:`convergence`, :func:`structure_steps` -- the studies (``study``);
- :func:`dt_grid` and the study figures (``views``).

Spec: ``reference/concept-vectors-and-diffusion.md`` §3 and §5.4 (Gandikota & Bau, "Distilling
Diversity and Control in Diffusion Models").
"""

from conceptlab.diffusion.diversity import attribute_diversity, entropy_bits, pairwise_distance, similarity_matrix, vendi_score
from conceptlab.diffusion.hybrid import HybridResult, from_vp, hybrid_sample, to_vp
from conceptlab.diffusion.pipeline import SCHEDULERS, PipelineOutput, ShapesPipeline, decode, load_pipeline, make_scheduler, resolve_model
from conceptlab.diffusion.recorder import Frame, StepRecorder, find_scheduler, scheduler_family, x0_from
from conceptlab.diffusion.study import (
    DEFAULT_CONDITIONS,
    MODELS,
    ConvergenceResult,
    DiversityStudy,
    convergence,
    diversity_study,
    free_families,
    images_of,
    load_reader,
    sample,
    structure_steps,
)
from conceptlab.diffusion.views import ablation_figure, convergence_figure, dt_grid, histogram_figure, tile

__all__ = [
    "DEFAULT_CONDITIONS",
    "MODELS",
    "SCHEDULERS",
    "ConvergenceResult",
    "DiversityStudy",
    "Frame",
    "HybridResult",
    "PipelineOutput",
    "ShapesPipeline",
    "StepRecorder",
    "ablation_figure",
    "attribute_diversity",
    "convergence",
    "convergence_figure",
    "decode",
    "diversity_study",
    "dt_grid",
    "entropy_bits",
    "find_scheduler",
    "free_families",
    "from_vp",
    "histogram_figure",
    "hybrid_sample",
    "images_of",
    "load_pipeline",
    "load_reader",
    "make_scheduler",
    "pairwise_distance",
    "resolve_model",
    "sample",
    "scheduler_family",
    "similarity_matrix",
    "structure_steps",
    "tile",
    "to_vp",
    "vendi_score",
    "x0_from",
]
