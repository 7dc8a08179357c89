"""Sequential PCBM: PCBM's concepts as calibrated probabilities, and a head trained to take interventions.

Koh et al. (ICML 2020, "Concept Bottleneck Models") train the head of a *sequential* CBM on the
concept predictor's probabilities, so that a person can intervene by setting a concept to its
true value, 1 or 0. A post-hoc CBM's margins are graded, unbounded and entangled: overwriting
them with any fixed "true" value moves the model off the scores its head was trained on.

Recipe: :class:`~conceptlab.cbm.calibration.CalibratedLayer` around PCBM's margin (or dot) layer
(per-concept Platt scaling on the training concept labels passed as ``fit(..., concept_labels=...)``;
without them, Koh's 5th/95th-percentile fallback, reported in ``provenance_["layer"]``) +
:class:`~conceptlab.cbm.heads.InterventionAwareHead` around PCBM's elastic net (``intervention_copies``
corrected copies of the training set, when concept labels are given).

λ: the head sees probabilities in [0, 1] rather than margins, so PCBM's rule λ = c/(N_c·K) is used
with a smaller ``lam_scale`` (0.2 by default: the weights a probability needs are about ten times
those a margin needs). The measured effect of λ and of the copies is in
``data_cards/shapesworld_cbm_results.md``.
"""

from __future__ import annotations

from collections.abc import Sequence

from conceptlab.cbm.calibration import CalibratedLayer
from conceptlab.cbm.heads import ElasticNetHead
from conceptlab.cbm.heads.intervention_aware import InterventionAwareHead
from conceptlab.cbm.methods.pcbm import PCBM
from conceptlab.concepts.bank import ConceptBank
from conceptlab.registry import register_method
from conceptlab.utils import store_params

__all__ = ["SequentialPCBM"]


@register_method("sequential_pcbm", description="Sequential PCBM: elastic-net head on calibrated concept probabilities, trained to take interventions")
class SequentialPCBM(PCBM):
    """PCBM on calibrated concept probabilities (module docstring). PCBM's arguments, and:

    Args:
        lam_scale: λ = lam_scale / (N_c · K); 0.2 by default (probabilities, not margins).
        intervention_copies: corrected copies of the training set the head also learns from (0: a plain sequential CBM).
        percentiles: Koh's fallback percentiles for concepts without labels.
    """

    display_name = "Sequential PCBM"
    how_it_predicts = (
        "The **sequential PCBM** turns each concept margin into a calibrated probability (fitted on the train split's concept "
        "labels) and trains its sparse head on those probabilities, with corrected copies of the training set, so that a person "
        "can intervene by setting a concept to 1 (present) or 0 (absent). Each class's logit is Σ probability × weight + intercept."
    )
    score_units = "calibrated probability"

    def __init__(
        self,
        bank: ConceptBank,
        class_names: Sequence[str] | None = None,
        lam: float | None = None,
        lam_scale: float = 0.2,
        alpha: float = 0.99,
        loss: str = "multinomial",
        solver: str = "proximal",
        standardize: bool = False,
        tol: float = 1e-5,
        max_iter: int = 20000,
        score_mode: str = "margin",
        seed: int = 42,
        device: str | None = None,
        intervention_copies: int = 2,
        percentiles: tuple[float, float] = (5.0, 95.0),
    ) -> None:
        store_params(self, locals())

    def _make_layer(self):
        return CalibratedLayer(inner=super()._make_layer(), percentiles=tuple(self.percentiles))

    def _make_head(self, n_concepts: int, n_classes: int):
        return InterventionAwareHead(self._concept_head(n_concepts, n_classes), copies=self.intervention_copies, seed=self.seed)

    def _elastic_net(self) -> ElasticNetHead:
        self._check_fitted()
        return self.head_.head

    @property
    def calibrator_(self):
        """The fitted :class:`~conceptlab.cbm.calibration.ConceptCalibrator`."""
        self._check_fitted()
        return self.concept_layer_.calibrator_
