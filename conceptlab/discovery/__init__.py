"""Concept discovery: sparse autoencoders on cached embeddings, named against a vocabulary.

- :class:`SparseAutoencoder` -- scikit-learn-style estimator; trains through sae-lens's
  ``SAETrainer`` with Discover-then-Name's defaults; saves in sae-lens's own format.
- :class:`SAEMetrics` / :func:`sae_metrics` -- reconstruction MSE, explained variance, L0, dead latents.
- :func:`name_latents` / :func:`name_directions` / :class:`LatentNames` -- decoder rows vs
  vocabulary text embeddings (cosine, optional templates), top-k candidates, margins, renames.
- :func:`align_concepts` -- best matches between two concept sets by direction cosine and by
  activation correlation.
- :func:`grade_latents` -- AUROC against ground-truth concepts, naming precision, recovery.
- :func:`discover` / :class:`DiscoveryRun` / :func:`list_runs` -- train + name in one call; a run
  (SAE, names, settings, provenance) saved and loaded as one folder, atomically.
- :class:`LatentRenames` / :func:`duplicate_names` -- the analyst's pending renames keyed by
  latent id (JSON drafts, applied to a run on save); names several latents share.
- :func:`activation_bands` / :func:`feature_density` / :func:`activation_histogram` -- a feature
  page's examples across a latent's range (top, quantile bands, random) and its density.
- ``source.py`` registers the ``sae`` concept source of declarative runs.

sae-lens is imported only when an SAE is trained or loaded, so importing this package is cheap.
"""

from conceptlab.concepts.alignment import ALIGN_BY, align_concepts, correlation_matrix, cosine_matrix
from conceptlab.discovery.browse import ActivationBand, activation_bands, activation_histogram, feature_density
from conceptlab.discovery.centering import SHAPES_TEMPLATES, centre_rows, centred_vocabulary
from conceptlab.discovery.grading import GradingReport, auroc_matrix, concept_words, grade_latents, name_matches
from conceptlab.discovery.naming import (
    LatentNames,
    embed_vocabulary,
    load_vocabulary,
    name_directions,
    name_latents,
    vocabulary_path,
)
from conceptlab.discovery.renames import LatentRenames, RenameResult, duplicate_names
from conceptlab.discovery.runs import DiscoveryRun, RunInfo, check_run_name, discover, discovery_root, list_runs, sae_params
from conceptlab.discovery.sae import SAEMetrics, SparseAutoencoder, sae_metrics
from conceptlab.discovery.source import build_sae_bank  # registers the "sae" concept source
from conceptlab.discovery.train import TrainingCancelled, TrainProgress, TrainResult, TrainSettings, train_sae, train_sae_plain

__all__ = [
    "ALIGN_BY",
    "ActivationBand",
    "LatentRenames",
    "RenameResult",
    "TrainProgress",
    "TrainingCancelled",
    "activation_bands",
    "activation_histogram",
    "duplicate_names",
    "feature_density",
    "DiscoveryRun",
    "GradingReport",
    "LatentNames",
    "RunInfo",
    "SAEMetrics",
    "SHAPES_TEMPLATES",
    "SparseAutoencoder",
    "TrainResult",
    "TrainSettings",
    "align_concepts",
    "auroc_matrix",
    "build_sae_bank",
    "centre_rows",
    "centred_vocabulary",
    "check_run_name",
    "concept_words",
    "correlation_matrix",
    "cosine_matrix",
    "discover",
    "discovery_root",
    "embed_vocabulary",
    "grade_latents",
    "list_runs",
    "load_vocabulary",
    "name_directions",
    "name_latents",
    "name_matches",
    "sae_metrics",
    "sae_params",
    "train_sae",
    "train_sae_plain",
    "vocabulary_path",
]
