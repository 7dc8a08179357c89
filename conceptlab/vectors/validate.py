"""Causal validation of a concept vector: perturb it, and see which answers break.

ConceptVectors' validation (``Concept_Validation_Experiments.ipynb``): add Gaussian noise
``N(0, 0.1^2)`` to the vector, ask the concept's questions and 50 unrelated ones (10 questions
of 5 other concepts) with the prompt ``"Question: {q}\\n Answer:"``, greedy decoding, and compare
the answers with those of the unperturbed model. A concept vector is causal and specific when the
target answers change and the unrelated ones do not.

Interventions (each records itself in every result):

- :class:`GaussianNoise` -- ``std`` absolute (the paper's 0.1, on a 4096-d LLaMA column), or
  ``relative=True``: ``std * ||v|| / sqrt(d_model)``, i.e. noise whose expected norm is ``std``
  times the vector's (the reference's "relative sigma");
- :class:`ZeroAblation` -- the vector set to 0;
- :class:`MeanAblation` -- the neuron's activation replaced by its mean over a corpus.

Metrics: exact-match accuracy against the **truth** (FactsWorld knows it), teacher-forced NLL of
the true answer, and ROUGE-L F of the perturbed answer against the unperturbed one (the paper's
behavioural metric; BLEU on one-word answers says nothing ROUGE-L does not, and is left out).

Where we depart: the paper reloads the weights after each perturbation; here the perturbation
is a context manager that restores the weights bit for bit. Defaults follow the notebook: seed
8888, 5 unrelated concepts, the QA prompt above, greedy decoding (3 new tokens here: FactsWorld
answers are one word, where the notebook generates 100).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from conceptlab.backbones import LanguageModel, exact_match
from conceptlab.data.facts_world import FactsWorld, FactText

__all__ = [
    "GaussianNoise",
    "MeanAblation",
    "ValidationResult",
    "ZeroAblation",
    "answer_table",
    "causal_validate",
    "neuron_effects",
    "rouge_l",
    "validate_entities",
]


@dataclass(frozen=True)
class GaussianNoise:
    """Add ``N(0, sigma^2)`` to the vector; ``sigma = std`` or, with ``relative``, ``std * ||v|| / sqrt(d)``."""

    std: float = 0.1
    relative: bool = False
    seed: int = 8888

    def __post_init__(self) -> None:
        if not (isinstance(self.std, (int, float)) and math.isfinite(self.std) and self.std >= 0):
            raise ValueError(f"std must be a finite number >= 0, got {self.std!r}")

    @property
    def name(self) -> str:
        return f"noise(std={self.std:g}{', relative' if self.relative else ''})"

    def sigma(self, vector: torch.Tensor) -> float:
        return float(self.std * vector.norm() / math.sqrt(vector.numel())) if self.relative else float(self.std)

    @contextlib.contextmanager
    def apply(self, lm: LanguageModel, layer: int, index: int) -> Iterator[dict[str, float]]:
        vector = lm.value_vector(layer, index)
        generator = torch.Generator().manual_seed(self.seed)
        noise = torch.randn(vector.shape, generator=generator) * self.sigma(vector)
        with lm.patch_value_vector(layer, index, delta=noise):
            yield {"sigma": self.sigma(vector), "noise_norm": float(noise.norm()), "vector_norm": float(vector.norm())}


@dataclass(frozen=True)
class ZeroAblation:
    """Set the vector to 0 (the neuron writes nothing)."""

    @property
    def name(self) -> str:
        return "zero"

    @contextlib.contextmanager
    def apply(self, lm: LanguageModel, layer: int, index: int) -> Iterator[dict[str, float]]:
        with lm.ablate(layer, index, mode="zero"):
            yield {"vector_norm": float(lm.value_vector(layer, index).norm())}


@dataclass(frozen=True)
class MeanAblation:
    """Replace the neuron's activation by its mean over ``corpus`` (texts)."""

    corpus: tuple[str, ...] = field(repr=False)

    def __post_init__(self) -> None:
        if not self.corpus:
            raise ValueError("MeanAblation needs a non-empty corpus to average the activation over")
        object.__setattr__(self, "corpus", tuple(self.corpus))

    @property
    def name(self) -> str:
        return f"mean(over {len(self.corpus)} texts)"

    @contextlib.contextmanager
    def apply(self, lm: LanguageModel, layer: int, index: int) -> Iterator[dict[str, float]]:
        mean = float(lm.mean_activation(layer, self.corpus)[index])
        with lm.ablate(layer, index, mode="mean", value=mean):
            yield {"mean_activation": mean}


def rouge_l(hypothesis: str, reference: str) -> float:
    """ROUGE-L F1 over whitespace words (longest common subsequence); 1.0 for two empty strings."""
    a, b = hypothesis.split(), reference.split()
    if not a and not b:
        return 1.0
    if not a or not b:
        return 0.0
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            table[i + 1][j + 1] = table[i][j] + 1 if x == y else max(table[i][j + 1], table[i + 1][j])
    lcs = table[-1][-1]
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(a), lcs / len(b)
    return 2 * precision * recall / (precision + recall)


def answer_table(lm: LanguageModel, items: Sequence[FactText], max_new_tokens: int = 3, generate: bool = True) -> pd.DataFrame:
    """One row per question: entity, attribute, form, truth, greedy prediction, exact match, NLL of the truth.

    ``generate=False`` skips the generation loop: ``correct`` then comes from one teacher-forced
    pass (:meth:`LanguageModel.answer_scores`, the same exact match in token space) and
    ``prediction`` is empty."""
    prompts, answers = [t.prompt for t in items], [t.answer for t in items]
    if generate:
        predictions = lm.greedy_answers(prompts, max_new_tokens=max_new_tokens)
        correct = [exact_match(p, a) for p, a in zip(predictions, answers)]
        nll = lm.answer_nll(prompts, answers).tolist()
    else:
        hits, nll_t = lm.answer_scores(prompts, answers)
        predictions, correct, nll = [""] * len(items), hits.tolist(), nll_t.tolist()
    return pd.DataFrame(
        {
            "entity": [t.entity for t in items],
            "attribute": [t.attribute for t in items],
            "form": [t.form for t in items],
            "prompt": prompts,
            "answer": answers,
            "prediction": predictions,
            "correct": correct,
            "nll": nll,
        }
    )


@dataclass
class ValidationResult:
    """Before/after answers for the target and unrelated questions under one intervention."""

    layer: int
    index: int
    intervention: str
    details: dict[str, float]
    before: pd.DataFrame
    after: pd.DataFrame
    target: str = "target"

    def _group(self, frame: pd.DataFrame, group: str) -> pd.DataFrame:
        return frame[frame["group"] == group]

    def summary(self) -> dict[str, Any]:
        """Accuracy, NLL and ROUGE-L (perturbed vs unperturbed answers) per group, before and after."""
        out: dict[str, Any] = {"layer": self.layer, "index": self.index, "intervention": self.intervention, **self.details}
        for group in ("target", "unrelated"):
            b, a = self._group(self.before, group), self._group(self.after, group)
            if b.empty:
                continue
            out[f"{group}_accuracy_before"] = float(b["correct"].mean())
            out[f"{group}_accuracy_after"] = float(a["correct"].mean())
            out[f"{group}_accuracy_drop"] = out[f"{group}_accuracy_before"] - out[f"{group}_accuracy_after"]
            out[f"{group}_nll_before"] = float(b["nll"].mean())
            out[f"{group}_nll_after"] = float(a["nll"].mean())
            out[f"{group}_rouge_l"] = float(sum(rouge_l(x, y) for x, y in zip(a["prediction"], b["prediction"])) / len(b))
        return out

    def passed(self, target_drop: float = 0.30, unrelated_drop: float = 0.05) -> bool:
        """The issue's bar: the target's accuracy drops by >= ``target_drop``, the unrelated by <= ``unrelated_drop``."""
        s = self.summary()
        return s.get("target_accuracy_drop", 0.0) >= target_drop and s.get("unrelated_accuracy_drop", 0.0) <= unrelated_drop


def causal_validate(
    lm: LanguageModel,
    layer: int,
    index: int,
    target: Sequence[FactText],
    unrelated: Sequence[FactText],
    intervention: Any = None,
    before: pd.DataFrame | None = None,
) -> ValidationResult:
    """Answer ``target`` and ``unrelated`` questions with and without the intervention on
    value vector (``layer``, ``index``). ``before`` reuses an unperturbed answer table."""
    intervention = intervention or GaussianNoise()
    items = [*target, *unrelated]
    groups = ["target"] * len(target) + ["unrelated"] * len(unrelated)
    if not target:
        raise ValueError("causal_validate needs at least one target question")
    if before is None:
        before = answer_table(lm, items)
    before = before.assign(group=groups)
    with intervention.apply(lm, layer, index) as details:
        after = answer_table(lm, items).assign(group=groups)
    return ValidationResult(int(layer), int(index), intervention.name, details, before, after)


def validate_entities(
    lm: LanguageModel,
    world: FactsWorld,
    located: dict[str, tuple[int, int]],
    intervention: Any = None,
    form: str = "qa",
    n_unrelated: int = 5,
    progress: bool = True,
) -> pd.DataFrame:
    """Validate one located vector per entity on FactsWorld, graded against the truth.

    For each ``entity -> (layer, index)``: the exact-match accuracy of *every* entity's ``form``
    questions before and under the intervention (teacher-forced, see :func:`answer_table`). Reported per row: the target's drop, the mean drop of the
    ``n_unrelated`` entities the paper's sampler picks (seed 8888), the mean drop over all other
    entities, the entity whose accuracy dropped most and whether it is the located one.
    """
    intervention = intervention or GaussianNoise()
    items = world.questions(None, form=form)
    base = answer_table(lm, items, generate=False)
    base_acc = base.groupby("entity", sort=False)["correct"].mean()
    rows = []
    for entity, (layer, index) in tqdm(located.items(), desc="validating", disable=not progress):
        with intervention.apply(lm, layer, index) as details:
            after = answer_table(lm, items, generate=False)
        acc = after.groupby("entity", sort=False)["correct"].mean()
        drop = (base_acc - acc).reindex(world.names)
        sample = sorted({t.entity for t in world.unrelated(entity, n_unrelated, form=form)})
        others = drop.drop(entity)
        worst = drop.idxmax()
        rows.append(
            {
                "entity": entity,
                "layer": int(layer),
                "index": int(index),
                "intervention": intervention.name,
                "target_before": float(base_acc[entity]),
                "target_after": float(acc[entity]),
                "target_drop": float(drop[entity]),
                "unrelated_before": float(base_acc[sample].mean()),
                "unrelated_after": float(acc[sample].mean()),
                "unrelated_drop": float(drop[sample].mean()),
                "others_drop": float(others.mean()),
                "others_max_drop": float(others.max()),
                "most_broken": worst,
                "graded_correct": bool(worst == entity and drop[entity] > 0),
                **{k: round(float(v), 5) for k, v in details.items()},
            }
        )
    return pd.DataFrame(rows)


@torch.no_grad()
def neuron_effects(lm: LanguageModel, items: Sequence[FactText], layers: Sequence[int] | None = None, progress: bool = True) -> pd.DataFrame:
    """Zero-ablate every neuron of ``layers`` in turn (all layers by default): the change in the
    items' mean answer NLL and in their exact-match accuracy, largest NLL change first.

    The exhaustive, causal counterpart of a vocabulary scan: it says how much the single most
    important value vector matters for these questions, whatever its projection reads."""
    prompts, answers = [t.prompt for t in items], [t.answer for t in items]
    base_correct, base_nll = lm.answer_scores(prompts, answers)
    layers = list(range(lm.n_layers)) if layers is None else list(layers)
    rows = []
    bar = tqdm(total=len(layers) * lm.d_mlp, desc="ablating neurons", disable=not progress)
    for layer in layers:
        for index in range(lm.d_mlp):
            with lm.ablate(layer, index, mode="zero"):
                correct, nll = lm.answer_scores(prompts, answers)
            rows.append(
                {
                    "layer": int(layer), "index": index, "nll_increase": float((nll - base_nll).mean()),
                    "accuracy_drop": float(base_correct.float().mean() - correct.float().mean()),
                }
            )
            bar.update()
    bar.close()
    return pd.DataFrame(rows).sort_values("nll_increase", ascending=False, kind="stable").reset_index(drop=True)
