"""LaBo (Yang et al., CVPR 2023) and V2C-CBM (He et al., AAAI 2025): a class-concept association
bottleneck over text concepts.

Faithful to ``YueYANG1996/LaBo`` (``models/asso_opt/asso_opt.py``, ``cfg/asso_opt/base.py``):

- concept scores are dot products x·c of **unnormalised** image and text embeddings
  (``use_img_norm = use_txt_norm = False``); the text embedding is the raw concept string, no
  template (``utils.prepare_txt_feat``);
- the head is an association matrix A (K, C); logits = 100 · s(x) · softmax(A, dim=-1)ᵀ: each
  class row is a distribution over the concepts ("scaling as standard CLIP does");
- A starts from the 0/1 "language prior": A[class of concept j, j] = ``init_val`` = 1, else 0;
  a concept listed by several classes belongs to the first (``np.unique(..., return_index=True)``);
- loss = cross-entropy only (``use_l1_loss = use_div_loss = False``); Adam; batch 512;
  validation every 10 epochs (and after the last); the **best-validation** A is kept (``ModelCheckpoint(monitor=
  'val_acc', mode='max')``, a later tie does not replace it);
- concepts are chosen per class by :func:`~conceptlab.concepts.selection.submodular_select`
  when ``n_per_class`` (or ``num_concepts``) is given: ``fit`` selects from the candidate bank.

Recipe: :class:`~conceptlab.cbm.layers.DotLayer` (with the selection) +
:class:`~conceptlab.cbm.heads.AssociationHead`.

In conceptlab's head form the model is W = 100·softmax(A) (K, C), b = 0, so ``explain``,
``intervene`` and ``prune`` work unchanged; ``prune`` zeroes entries of W (rows then no longer sum
to 100 -- an edit, not a retrained model).

Defaults: lr 1e-4 and 5000 epochs are LaBo's CIFAR-10 learning rate and base epoch budget
(CUB: 5e-5; CIFAR-10 runs 15 000 epochs). Without validation data, ``val_fraction`` (10%) of the
training rows is held out, seeded -- LaBo ships its own validation split instead.

Where we depart from the code: with ``num_concepts`` that is not a multiple of the number of
classes K, LaBo selects k = ceil(num_concepts / K) per class and then keeps only the first
``num_concepts`` of the concatenated selections (``select_idx[:self.num_concept]`` in
``data.py``), so the last classes lose concepts (a class can end with none). We keep k concepts for
every class (K·k in all); pass ``n_per_class`` to avoid the ambiguity.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import pandas as pd
import torch

from conceptlab.cbm.heads import AssociationHead
from conceptlab.cbm.layers import DotLayer
from conceptlab.cbm.model import ConceptBottleneckModel
from conceptlab.concepts.bank import ConceptBank
from conceptlab.registry import register_method
from conceptlab.utils import params_for, store_params

__all__ = ["LaBo"]


@register_method("labo", description="LaBo: class-concept association 100·softmax(A) over text concepts, from the language prior")
class LaBo(ConceptBottleneckModel):
    """Language in a Bottle: concept scores x·c, head 100·softmax(A) trained from the language prior.

    Args:
        bank: text concepts, each linked to its class (``class_links``): the candidates when
            ``n_per_class`` / ``num_concepts`` asks for LaBo's selection, else the concepts used.
        class_names: class names in label order (needed to read the links).
        n_per_class, num_concepts: how many concepts the submodular selection keeps per class
            (or in all, k = ceil(num_concepts / K)); both None: no selection.
        mi_scale, coverage_weight, coverage: the selection's weights (LaBo CIFAR-10: [1e7, 5]).
        lr, batch_size, epochs: Adam learning rate, batch size and epoch budget.
        val_every: validate every this many epochs; the best validation accuracy is kept.
        patience: stop after this many validations without improvement (None: run all epochs, as LaBo).
        logit_scale: 100 (LaBo).
        init_val: the prior's value (1.0).
        prior: ``"first"`` (LaBo), ``"all"``, ``"frequency"``, ``"none"`` -- see
            :func:`~conceptlab.cbm.heads.association_prior`; None: the method's default.
        normalize_images: L2-normalise image embeddings first (LaBo's ``use_img_norm``, off).
        val_fraction: share of the training rows held out when ``fit`` gets no validation data.
        seed: the held-out split and the batch order.
        device: where training runs; CUDA when present.
    """

    display_name = "LaBo"
    how_it_predicts = (
        "**LaBo** (Language in a Bottle) scores each concept as the dot product x·c of the image and concept-text embeddings, "
        "and links concepts to classes through an *association* matrix: each class's row is 100·softmax(A), a distribution over "
        "the concepts that starts from the language prior (each concept belongs to its own class). Every weight is positive and "
        "every dot product is too, so raw contributions are all large and positive; what moves the prediction is how much more a "
        "class weighs a concept than the *average class* does. The bars show that difference (contributions relative to the "
        "mean class, which sum to the class's logit minus the mean logit; the softmax ignores the common part)."
    )
    score_units = "dot product x·c"
    contribution_baseline = "mean"

    bank_kind = "class_linked"
    default_prior: ClassVar[str] = "first"

    def __init__(
        self,
        bank: ConceptBank,
        class_names: Sequence[str] | None = None,
        n_per_class: int | None = None,
        num_concepts: int | None = None,
        mi_scale: float = 1e7,
        coverage_weight: float = 5.0,
        coverage: str = "facility",
        lr: float = 1e-4,
        batch_size: int = 512,
        epochs: int = 5000,
        val_every: int = 10,
        patience: int | None = None,
        logit_scale: float = 100.0,
        init_val: float = 1.0,
        prior: str | None = None,
        normalize_images: bool = False,
        val_fraction: float = 0.1,
        seed: int = 42,
        device: str | None = None,
    ) -> None:
        store_params(self, locals())

    def _make_layer(self) -> DotLayer:
        selection = None
        if self.n_per_class is not None or self.num_concepts is not None:
            selection = {"n_per_class": self.n_per_class, "num_concepts": self.num_concepts, "mi_scale": self.mi_scale,
                         "coverage_weight": self.coverage_weight, "coverage": self.coverage}
        return DotLayer(normalize_images=self.normalize_images, selection=selection)

    def _make_head(self, n_concepts: int, n_classes: int) -> AssociationHead:
        return AssociationHead(**params_for(self, AssociationHead, prior=self.prior or self.default_prior))

    # -- reading -----------------------------------------------------------------------------------

    def _head(self) -> AssociationHead:
        self._check_fitted()
        return self.head_

    @property
    def selection_(self):
        """The :class:`~conceptlab.concepts.selection.SelectionResult` of ``fit`` (None without selection)."""
        self._check_fitted()
        return getattr(self.concept_layer_, "selection_", None)

    asso_ = property(lambda self: self._head().asso_, doc="The learned association A (K, C), before the softmax.")
    prior_ = property(lambda self: self._head().prior_, doc="The prior A₀ (K, C) training started from.")
    best_epoch_ = property(lambda self: self._head().best_epoch_)
    best_val_accuracy_ = property(lambda self: self._head().best_val_accuracy_)
    epochs_run_ = property(lambda self: self._head().epochs_run_)
    history_ = property(lambda self: self._head().history_)
    validation_ = property(lambda self: self._head().validation_)

    @property
    def association_(self) -> torch.Tensor:
        """softmax(A) (K, C): each class row is a distribution over the concepts."""
        return torch.softmax(self.asso_, dim=-1)

    def top_concepts(self, k: int = 3) -> pd.DataFrame:
        """The ``k`` concepts with the largest softmax(A) weight per class (LaBo's Figure 7)."""
        M = self.association_
        rows = []
        for c, name in enumerate(self.class_names_):
            values, idx = torch.topk(M[c], min(int(k), M.shape[1]))
            for rank, (v, j) in enumerate(zip(values.tolist(), idx.tolist())):
                rows.append({"class": name, "rank": rank, "concept": self.concept_names_[j], "weight": v})
        return pd.DataFrame(rows)
