"""Concept vectors inside language models (ConceptVectors, Hong et al.): locate, validate, unlearn.

- :func:`scan_vocabulary` -- a streamed vocabulary projection of every MLP value vector, scored
  against a concept's term set (pluggable scorer); its best vectors become :class:`Concept` s;
- :func:`causal_validate` -- Gaussian noise (absolute or relative), zero or mean ablation of one
  vector, target vs unrelated questions (exact match, NLL, ROUGE-L); :func:`neuron_effects` -- the
  exhaustive causal counterpart (every vector zero-ablated in turn);
- :func:`unlearn` -- GA, GD, NPO, NPO-KL and Needle as swappable loss callables; and
  :func:`intrinsic_diff` -- cosine, L2 and top-k Jaccard of a vector before/after;
- :mod:`~conceptlab.vectors.study` -- the same on FactsWorld, graded against the truth;
- :mod:`~conceptlab.vectors.steering` -- steering vectors (mean difference, PCA, from a CAV or a
  located vector) applied through a restoring context manager, and
  :mod:`~conceptlab.vectors.steering_sweep` -- their dose-response with a coherence guard;
- :mod:`~conceptlab.vectors.tcav` -- CAVs on any layer (:func:`train_cavs`, batched) and TCAV with
  random runs, a t-test and Bonferroni by default (:class:`TCAV`); graded on ShapesWorld in
  :mod:`~conceptlab.vectors.tcav_shapes`.

Models come from :mod:`conceptlab.backbones` (``hf:``, ``transformer_lens:``, ``zoo:facts-gpt2``).
"""

from conceptlab.vectors.cav import CAV_METHODS, CAVSet, train_cavs
from conceptlab.vectors.figures import dose_response_figure, layer_score_figure, unlearning_figure, validation_figure
from conceptlab.vectors.locate import SCORERS, ScanResult, TokenProjection, project_to_vocab, rank_weighted_score, scan_vocabulary, share_score
from conceptlab.vectors.steering import (
    PCA_METHODS,
    STEERING_HOOKS,
    SteeringVector,
    from_cav,
    from_concept_vector,
    mean_difference,
    pair_activations,
    pca_direction,
    steer,
)
from conceptlab.vectors.steering_sweep import (
    BUILDERS,
    DEFAULT_MULTIPLIERS,
    SteeringTask,
    build_steering_vector,
    coherent_range,
    dose_response,
    facts_steering_task,
    greedy_tokens,
    steered_examples,
)
from conceptlab.vectors.study import EVAL_FORMS, FORGET_FORMS, entity_bank, locate_entities, unlearning_table
from conceptlab.vectors.tcav import (
    SCORES,
    TCAV,
    LayerGradients,
    TCAVResult,
    embedding_logit,
    embedding_similarity,
    folder_concepts,
    layer_activations,
    layer_gradients,
    tcav_scores,
    token_logprob,
    zero_shot_logit,
)
from conceptlab.vectors.tcav_figures import cav_accuracy_figure, stability_figure, stars, tcav_figure
from conceptlab.vectors.tcav_shapes import ShapesTCAVStudy, class_prompts, class_truth, grade, shapes_tcav_study, stability_curve
from conceptlab.vectors.tcav_stats import CORRECTIONS, Significance, binomial_sign_test, significance_test
from conceptlab.vectors.tcav_text import MINILM_CONCEPTS, MINILM_LAYERS, MINILM_RANDOM, minilm_cav_accuracy, minilm_tcav
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
    "BUILDERS",
    "DEFAULTS",
    "DEFAULT_MULTIPLIERS",
    "EVAL_FORMS",
    "FORGET_FORMS",
    "LOSSES",
    "METHODS",
    "PCA_METHODS",
    "SCORERS",
    "STEERING_HOOKS",
    "GaussianNoise",
    "MeanAblation",
    "ScanResult",
    "SteeringTask",
    "SteeringVector",
    "TokenProjection",
    "UnlearningRun",
    "ValidationResult",
    "ZeroAblation",
    "answer_table",
    "build_steering_vector",
    "causal_validate",
    "coherent_range",
    "dose_response",
    "dose_response_figure",
    "entity_bank",
    "facts_steering_task",
    "from_cav",
    "from_concept_vector",
    "grad_ascent",
    "grad_diff",
    "greedy_tokens",
    "intrinsic_diff",
    "layer_score_figure",
    "locate_entities",
    "mean_difference",
    "neuron_effects",
    "npo",
    "npo_kl",
    "pair_activations",
    "pca_direction",
    "project_to_vocab",
    "rank_weighted_score",
    "rouge_l",
    "scan_vocabulary",
    "share_score",
    "steer",
    "steered_examples",
    "unlearn",
    "unlearning_figure",
    "unlearning_table",
    "validate_entities",
    "validation_figure",
    # CAV / TCAV
    "CAV_METHODS",
    "CAVSet",
    "CORRECTIONS",
    "LayerGradients",
    "SCORES",
    "ShapesTCAVStudy",
    "Significance",
    "TCAV",
    "TCAVResult",
    "MINILM_CONCEPTS",
    "MINILM_LAYERS",
    "MINILM_RANDOM",
    "binomial_sign_test",
    "cav_accuracy_figure",
    "class_prompts",
    "class_truth",
    "embedding_logit",
    "embedding_similarity",
    "folder_concepts",
    "grade",
    "layer_activations",
    "layer_gradients",
    "minilm_cav_accuracy",
    "minilm_tcav",
    "shapes_tcav_study",
    "significance_test",
    "stability_curve",
    "stability_figure",
    "stars",
    "tcav_figure",
    "tcav_scores",
    "token_logprob",
    "train_cavs",
    "zero_shot_logit",
]
