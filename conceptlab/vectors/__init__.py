"""Concept vectors inside language models (ConceptVectors, Hong et al.): locate, validate, unlearn.

- :func:`scan_vocabulary` -- a streamed vocabulary projection of every MLP value vector, scored
  against a concept's term set (pluggable scorer); its best vectors become :class:`Concept` s;
- :func:`causal_validate` -- Gaussian noise (absolute or relative), zero or mean ablation of one
  vector, target vs unrelated questions (exact match, NLL, ROUGE-L); :func:`neuron_effects` -- the
  exhaustive causal counterpart (every vector zero-ablated in turn);
- :func:`unlearn` -- GA, GD, NPO, NPO-KL and Needle as swappable loss callables; and
  :func:`intrinsic_diff` -- cosine, L2 and top-k Jaccard of a vector before/after;
- :mod:`~conceptlab.vectors.study` -- the same on FactsWorld, graded against the truth.

Models come from :mod:`conceptlab.backbones` (``hf:``, ``transformer_lens:``, ``zoo:facts-gpt2``).
"""

from conceptlab.vectors.figures import layer_score_figure, unlearning_figure, validation_figure
from conceptlab.vectors.locate import SCORERS, ScanResult, TokenProjection, project_to_vocab, rank_weighted_score, scan_vocabulary, share_score
from conceptlab.vectors.study import EVAL_FORMS, FORGET_FORMS, entity_bank, locate_entities, unlearning_table
from conceptlab.vectors.unlearning import DEFAULTS, LOSSES, METHODS, UnlearningRun, grad_ascent, grad_diff, intrinsic_diff, npo, npo_kl, unlearn
from conceptlab.vectors.validate import (
    GaussianNoise,
    MeanAblation,
    ValidationResult,
    ZeroAblation,
    answer_table,
    causal_validate,
    neuron_effects,
    rouge_l,
    validate_entities,
)

__all__ = [
    "DEFAULTS",
    "EVAL_FORMS",
    "FORGET_FORMS",
    "LOSSES",
    "METHODS",
    "SCORERS",
    "GaussianNoise",
    "MeanAblation",
    "ScanResult",
    "TokenProjection",
    "UnlearningRun",
    "ValidationResult",
    "ZeroAblation",
    "answer_table",
    "causal_validate",
    "entity_bank",
    "grad_ascent",
    "grad_diff",
    "intrinsic_diff",
    "layer_score_figure",
    "locate_entities",
    "neuron_effects",
    "npo",
    "npo_kl",
    "project_to_vocab",
    "rank_weighted_score",
    "rouge_l",
    "scan_vocabulary",
    "share_score",
    "unlearn",
    "unlearning_figure",
    "unlearning_table",
    "validate_entities",
    "validation_figure",
]
