"""CBM heads: concept scores -> class logits (see :mod:`conceptlab.cbm.heads.base`).

- :class:`ElasticNetHead` -- elastic-net logistic regression, three solvers (PCBM, LF-CBM);
- :class:`AssociationHead` -- LaBo's 100·softmax(A) from a language prior (LaBo, V2C-CBM);
- :class:`SparseLinearHead` -- DN-CBM's bias-free sparse linear layer;
- :class:`ResidualHead` -- any head plus a residual on the raw embedding (PCBM-h).
"""

from conceptlab.cbm.heads.association import PRIORS, AssociationHead, association_prior
from conceptlab.cbm.heads.base import Head, HeadContext
from conceptlab.cbm.heads.elastic_net_head import SOLVERS, ElasticNetHead, fit_glm_saga, fit_sgd
from conceptlab.cbm.heads.residual import ResidualHead, train_residual
from conceptlab.cbm.heads.sparse_linear import HeadHistory, SparseLinearHead, train_sparse_head

__all__ = [
    "PRIORS",
    "SOLVERS",
    "AssociationHead",
    "ElasticNetHead",
    "Head",
    "HeadContext",
    "HeadHistory",
    "ResidualHead",
    "SparseLinearHead",
    "association_prior",
    "fit_glm_saga",
    "fit_sgd",
    "train_residual",
    "train_sparse_head",
]
