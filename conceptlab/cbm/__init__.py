"""Concept bottleneck models on embeddings: the shared core, the elastic-net solver, PCBM/PCBM-h.

- :func:`concept_scores` -- PCBM's margin (c·x + b)/‖c‖ or a plain dot product.
- :class:`ConceptBottleneckModel` -- fit / transform / predict / explain / intervene / prune /
  save / load, shared by every CBM.
- :class:`PCBM`, :class:`PCBMHybrid` -- post-hoc CBM and its residual (hybrid) variant.
- :func:`fit_elastic_net`, :func:`elastic_net_path`, :class:`ElasticNetHead` -- the sparse head.
"""

from conceptlab.cbm.elastic_net import (
    ElasticNetFit,
    elastic_net_objective,
    elastic_net_path,
    fit_elastic_net,
    kkt_residual,
    lambda_max,
)
from conceptlab.cbm.heads import SOLVERS, ElasticNetHead
from conceptlab.cbm.model import ConceptBottleneckModel, InterventionResult
from conceptlab.cbm.pcbm import PCBM, PCBMHybrid, pcbm_lambda
from conceptlab.cbm.scores import SCORE_MODES, concept_scores

__all__ = [
    "PCBM",
    "PCBMHybrid",
    "SCORE_MODES",
    "SOLVERS",
    "ConceptBottleneckModel",
    "ElasticNetFit",
    "ElasticNetHead",
    "InterventionResult",
    "concept_scores",
    "elastic_net_objective",
    "elastic_net_path",
    "fit_elastic_net",
    "kkt_residual",
    "lambda_max",
    "pcbm_lambda",
]

# -- LaBo, V2C-CBM, Label-free CBM ----------------------------------------------------------------
from conceptlab.cbm.labo import V2CCBM, LaBo, association_prior, concept_bank_from_set  # noqa: E402
from conceptlab.cbm.lfcbm import LFCBM, fit_projection  # noqa: E402

__all__ += ["LFCBM", "LaBo", "V2CCBM", "association_prior", "concept_bank_from_set", "fit_projection"]

# -- Discover-then-Name ---------------------------------------------------------------------------
from conceptlab.cbm.dncbm import DNCBM  # noqa: E402

__all__ += ["DNCBM"]
