"""Concept bottleneck models on embeddings: a concept layer and a head, one file per method.

- :class:`ConceptBottleneckModel` -- fit / transform / predict / explain / intervene / prune /
  save / load, shared by every CBM; a method is a recipe of a concept layer
  (:mod:`conceptlab.cbm.layers`) and a head (:mod:`conceptlab.cbm.heads`).
- the methods (``conceptlab/cbm/methods/``, registered in ``conceptlab.registry.METHODS``):
  :class:`PCBM`, :class:`PCBMHybrid`, :class:`LaBo`, :class:`V2CCBM`, :class:`LFCBM`, :class:`DNCBM`,
  :class:`SequentialPCBM` (calibrated concept probabilities, :mod:`conceptlab.cbm.calibration`).
- :mod:`conceptlab.cbm.interventions` (true-value interventions by policy), :mod:`conceptlab.cbm.editing`
  (edits side by side), :mod:`conceptlab.cbm.grounding` (concept scores attributed to pixels, graded against masks).
- :func:`fit_elastic_net`, :func:`elastic_net_path` -- the sparse head's solver.
- :func:`concept_scores` -- PCBM's margin (c·x + b)/‖c‖ or a plain dot product.
"""

from conceptlab.cbm.calibration import CalibratedLayer, ConceptCalibrator
from conceptlab.cbm.elastic_net import (
    ElasticNetFit,
    elastic_net_objective,
    elastic_net_path,
    fit_elastic_net,
    kkt_residual,
    lambda_max,
)
from conceptlab.cbm.heads import (
    PRIORS,
    SOLVERS,
    AssociationHead,
    ElasticNetHead,
    Head,
    HeadContext,
    ResidualHead,
    SparseLinearHead,
    association_prior,
)
from conceptlab.cbm.heads.intervention_aware import InterventionAwareHead
from conceptlab.cbm.layers import ConceptLayer, DotLayer, MarginLayer, ProjectionLayer, SAEEncoderLayer
from conceptlab.cbm.methods import DNCBM, LFCBM, PCBM, V2CCBM, LaBo, PCBMHybrid, pcbm_lambda
from conceptlab.cbm.methods.sequential import SequentialPCBM
from conceptlab.cbm.model import ConceptBottleneckModel, InterventionResult
from conceptlab.cbm.projection import ProjectionReport, cos_cubed_similarity, fit_projection
from conceptlab.cbm.scores import SCORE_MODES, concept_scores
from conceptlab.concepts.from_set import concept_bank_from_set
from conceptlab.registry import METHODS

__all__ = [
    "DNCBM",
    "LFCBM",
    "METHODS",
    "PCBM",
    "PRIORS",
    "SCORE_MODES",
    "SOLVERS",
    "V2CCBM",
    "AssociationHead",
    "CalibratedLayer",
    "ConceptCalibrator",
    "ConceptBottleneckModel",
    "ConceptLayer",
    "DotLayer",
    "ElasticNetFit",
    "ElasticNetHead",
    "Head",
    "HeadContext",
    "InterventionAwareHead",
    "InterventionResult",
    "LaBo",
    "MarginLayer",
    "PCBMHybrid",
    "ProjectionLayer",
    "ProjectionReport",
    "ResidualHead",
    "SAEEncoderLayer",
    "SequentialPCBM",
    "SparseLinearHead",
    "association_prior",
    "available_methods",
    "concept_bank_from_set",
    "concept_scores",
    "cos_cubed_similarity",
    "elastic_net_objective",
    "elastic_net_path",
    "fit_elastic_net",
    "fit_projection",
    "kkt_residual",
    "lambda_max",
    "pcbm_lambda",
]


def available_methods(bank_kind: str | None = None) -> dict[str, type]:
    """Registered method name -> class; with ``bank_kind``, only the methods that work on such a
    bank (``"any"`` banks: PCBM and friends; ``"class_linked"``: also LaBo / V2C-CBM; ``"sae"``: also DN-CBM)."""
    accepted = {None: None, "any": {"any"}, "class_linked": {"any", "class_linked"}, "sae": {"any", "sae"}}
    if bank_kind not in accepted:
        raise ValueError(f"bank_kind must be one of {[k for k in accepted if k]}, got {bank_kind!r}")
    kinds = accepted[bank_kind]
    return {e.name: e.obj for e in METHODS.entries() if kinds is None or e.obj.bank_kind in kinds}
