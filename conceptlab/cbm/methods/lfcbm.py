"""Label-free CBM (Oikarinen et al., ICLR 2023): a learned concept layer fitted to CLIP's
image-concept similarities with cos³, standardised, under a sparse elastic-net head.

Faithful to ``Trustworthy-ML-Lab/Label-free-CBM`` (``train_cbm.py``, ``similarity.py``):

- targets P = norm(image) · norm(text concept)ᵀ (N, M);
- W_c = ``nn.Linear(d, M, bias=False)`` (PyTorch's default init) on the backbone features, Adam
  lr 1e-3, up to 1000 full-batch steps (``proj_batch_size`` 50 000 ≥ N here);
- loss = −mean_concepts cos³(P[:, j], (f W_cᵀ)[:, j]): both columns centred over the batch,
  cubed, L2-normalised over samples, dot product (``cos_similarity_cubed_single``);
- every 50 steps the loss on **validation** is checked; training stops at the first check that
  does not improve and the best weights are kept;
- filter 5: concepts whose validation cos³ is ≤ 0.45 (``interpretability_cutoff``) are dropped;
- the projections are standardised with the training mean and std;
- the head is an elastic net with α = 0.99 and λ = 7e-4 (CIFAR-10's flags), LF-CBM's
  mean-CE + λ(α‖W‖₁ + ½(1−α)‖W‖²) objective, here through conceptlab's
  :class:`~conceptlab.cbm.heads.ElasticNetHead` (solver ``"proximal"`` minimises that objective;
  ``"glm-saga"`` runs LF-CBM's own solver).

Where we depart from the code, on purpose:

- the validation split is a **real held-out split** (LF-CBM#8: the code early-stops and filters on
  the test set);
- the concept scorer and the backbone are the same model (LF-CBM pairs e.g. a ResNet backbone with
  a CLIP ViT-B/16 scorer), because conceptlab methods read one space from the store;
- ``lam`` is the penalty the head is solved at. LF-CBM passes ``--lam`` to GLM-SAGA as
  ``max_reg``, and with ``k=1, epsilon=1`` GLM-SAGA solves at ``lam/alpha``: its CIFAR-10 flag
  7e-4 is an effective 7.07e-4. Pass ``lam=7e-4 / 0.99`` for the official effective penalty (the
  ``"glm-saga"`` solver is handed ``lam·alpha`` so that it too solves at exactly ``lam``);
- the concept filters (:mod:`conceptlab.concepts.filters`): the sentence encoder is MiniLM, not
  mpnet; filter 2 matches class names in any capitalisation (the code tries "", "a ", "A ", "an ",
  "An ", "the ", "The " + the class name as written) and compares every concept with every class
  (the code skips concept j against class j); the code sorts the concept list in filter 2, so its
  filter 3 walks the pairs in sorted order -- ours keeps the input order unless
  ``lfcbm_filters(..., sort_like_lfcbm=True)``.

Recipe: :class:`~conceptlab.cbm.layers.ProjectionLayer` (``fit`` learns it against the
validation data given to ``fit``) + :class:`~conceptlab.cbm.heads.ElasticNetHead`. The learned
layer is stored as a concept bank of kind ``learned_projection``: concept j has vector w_j/σ_j
and bias −μ_j/σ_j, so its score x·vector + bias is exactly the standardised projection, and
save/load need nothing beyond the bank and the head.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from conceptlab.cbm.heads import ElasticNetHead
from conceptlab.cbm.layers import ProjectionLayer
from conceptlab.cbm.model import ConceptBottleneckModel
from conceptlab.concepts.bank import ConceptBank
from conceptlab.registry import register_method
from conceptlab.utils import params_for, store_params

__all__ = ["LFCBM"]


@register_method("lfcbm", description="Label-free CBM: a learned, standardised concept projection under a sparse elastic-net head")
class LFCBM(ConceptBottleneckModel):
    """Label-free CBM: standardised learned concept scores and a sparse elastic-net head.

    ``fit(X, y, val_embeddings, val_labels)`` learns the projection from the text ``bank``
    (early-stopped and filtered on the validation embeddings) and then the head.

    Args:
        bank: the text concepts the projection is fitted to (CLIP similarities).
        class_names: class names in label order.
        lam: λ (LF-CBM CIFAR-10: 7e-4; CUB 2e-4; Places 3e-4; ImageNet 1e-4).
        alpha: L1 ratio (0.99).
        solver: ``"proximal"`` (default) or ``"glm-saga"`` (see :class:`~conceptlab.cbm.heads.ElasticNetHead`).
        tol, max_iter: the proximal solver's stopping rule.
        proj_steps, proj_lr: the projection's step budget and Adam learning rate (1000, 1e-3).
        interpretability_cutoff: filter 5's validation cos³ threshold (0.45).
        seed, device: as elsewhere.
    """

    display_name = "LF-CBM"
    how_it_predicts = (
        "A **Label-free CBM** learns a projection of the embedding onto its concepts (matched to the concept texts' CLIP "
        "similarities), standardises each concept score on the train split, and weighs them with a sparse elastic-net head: "
        "each class's logit is Σ standardised score × weight + intercept."
    )
    score_units = "standardised concept score (train mean 0, sd 1)"

    needs_validation = True

    def __init__(
        self,
        bank: ConceptBank,
        class_names: Sequence[str] | None = None,
        lam: float = 7e-4,
        alpha: float = 0.99,
        solver: str = "proximal",
        tol: float = 1e-5,
        max_iter: int = 20000,
        proj_steps: int = 1000,
        proj_lr: float = 1e-3,
        interpretability_cutoff: float = 0.45,
        seed: int = 42,
        device: str | None = None,
    ) -> None:
        store_params(self, locals())

    def _make_layer(self) -> ProjectionLayer:
        return ProjectionLayer(steps=self.proj_steps, lr=self.proj_lr, interpretability_cutoff=self.interpretability_cutoff, seed=self.seed)

    def _make_head(self, n_concepts: int, n_classes: int) -> ElasticNetHead:
        return ElasticNetHead(**params_for(self, ElasticNetHead, loss="multinomial", standardize=False))

    @property
    def projection_(self):
        """The :class:`~conceptlab.cbm.projection.ProjectionReport` of the fitted projection."""
        self._check_fitted()
        return self.concept_layer_.report_

    @property
    def head_info_(self) -> dict[str, Any]:
        self._check_fitted()
        return self.head_.state()["fit_info_"]
