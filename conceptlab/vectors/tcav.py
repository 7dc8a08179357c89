"""TCAV (Kim et al., 2018) with significance by default: gradients of any target at any layer, CAVs
against N random sets, t-test against random-concept CAVs, Bonferroni over the concepts tested.

- :func:`layer_gradients` -- pooled activations and gradients of a target at a layer, for an open_clip
  image tower, a language model or a sentence encoder (:mod:`conceptlab.backbones.layer_taps`);
- targets: :func:`zero_shot_logit` (a CLIP zero-shot class logit), :func:`embedding_logit` (any
  function of the embedding, e.g. a CBM's class logit), :func:`token_logprob` (an LM token's
  log-probability after each text), :func:`embedding_similarity` (a sentence encoder);
- :func:`tcav_scores` -- both score definitions per CAV: ``sign_count`` (fraction of inputs whose
  directional derivative is positive) and ``magnitude`` (captum's: the mean directional
  derivative), plus ``magnitude_ratio`` (what captum's docstring describes and the code does not:
  sum of positive derivatives over sum of absolute ones);
- :class:`TCAV` -- the estimator: ``fit`` trains every CAV (concept vs N random sets, random vs
  random), ``test`` scores targets and decides significance.

The sign convention is captum's: the gradient of the *target* (a logit), so a concept that raises
the target has a sign count above 1/2 (the tf reference uses the loss gradient and counts ``< 0``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator
from tqdm.auto import tqdm

from conceptlab.backbones.layer_taps import forward_with_tap, layer_kind, pool_activation, pool_gradient
from conceptlab.store.captures import tokenize_for
from conceptlab.vectors.cav import CAVSet, train_cavs
from conceptlab.vectors.tcav_stats import binomial_sign_test, significance_test

__all__ = [
    "SCORES",
    "TCAV",
    "LayerGradients",
    "TCAVResult",
    "embedding_logit",
    "embedding_similarity",
    "folder_concepts",
    "layer_activations",
    "layer_gradients",
    "tcav_scores",
    "token_logprob",
    "zero_shot_logit",
]

SCORES = ("sign_count", "magnitude")


# -- targets: callables (model output, batch) -> one scalar per input ----------------------------


def zero_shot_logit(backbone, prompts: Sequence[str] | str, scale: float | None = None) -> Callable:
    """A CLIP zero-shot class logit: ``scale * cos(image, text)``; with several prompts for one class
    (e.g. each colour a rule allows), their log-sum-exp. ``scale`` defaults to the model's logit scale."""
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    with torch.no_grad():
        text = torch.nn.functional.normalize(backbone.encode_texts(prompts).float(), dim=-1)
        if scale is None:
            scale = float(backbone.model.logit_scale.exp()) if hasattr(backbone.model, "logit_scale") else 100.0

    def target(output: torch.Tensor, batch=None) -> torch.Tensor:
        image = torch.nn.functional.normalize(output.float(), dim=-1)
        return torch.logsumexp(scale * image @ text.to(image.device).T, dim=1)

    target.description = f"zero-shot logit of {' | '.join(prompts)}"
    return target


def embedding_logit(fn: Callable[[torch.Tensor], torch.Tensor], index: int) -> Callable:
    """Column ``index`` of ``fn(embedding)``: e.g. a CBM's class logit, ``lambda e: cbm.logits(e)``
    written in torch (gradients must flow through ``fn``)."""

    def target(output: torch.Tensor, batch=None) -> torch.Tensor:
        return fn(output.float())[:, index]

    target.description = f"logit {index} of {getattr(fn, '__name__', type(fn).__name__)}"
    return target


def token_logprob(token_id: int) -> Callable:
    """A language model's log-probability of ``token_id`` as the next token after each text."""

    def target(logits: torch.Tensor, batch) -> torch.Tensor:
        last = logits[torch.arange(logits.shape[0]), (batch.lengths - 1).to(logits.device)]
        return torch.log_softmax(last.float(), dim=-1)[:, int(token_id)]

    target.description = f"log p(token {token_id})"
    return target


def embedding_similarity(anchor: torch.Tensor) -> Callable:
    """Cosine similarity of a sentence embedding to ``anchor`` (e.g. the embedding of "a happy review")."""
    anchor = torch.nn.functional.normalize(anchor.detach().float().reshape(-1), dim=0)

    def target(output: torch.Tensor, batch=None) -> torch.Tensor:
        return torch.nn.functional.normalize(output.float(), dim=-1) @ anchor.to(output.device)

    target.description = "cosine similarity to an anchor embedding"
    return target


# -- gradients -----------------------------------------------------------------------------------


@dataclass
class LayerGradients:
    """Pooled activations ``acts`` [N, d] and target gradients ``grads`` [N, d] at one layer, and the
    target values ``values`` [N]."""

    acts: torch.Tensor
    grads: torch.Tensor
    values: torch.Tensor
    layer: str
    pool: str


def _batches(backbone, inputs, batch_size: int):
    kind = layer_kind(backbone)
    if isinstance(inputs, torch.Tensor):
        for start in range(0, len(inputs), batch_size):
            yield inputs[start : start + batch_size]
        return
    items = list(inputs)
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        if kind == "image_text":
            yield torch.stack([backbone.preprocess(image.convert("RGB")) for image in chunk])
        else:
            yield tokenize_for(backbone, [str(t) for t in chunk])


def layer_gradients(backbone, layer: str, inputs, target: Callable, pool: str = "mean", batch_size: int = 64, progress: bool = False) -> LayerGradients:
    """Activations and gradients of ``target`` at ``layer`` (pooled by ``pool``) for every input.

    ``inputs``: a preprocessed image tensor (N, 3, H, W), a list of PIL images, or a list of texts.
    ``target(output, batch) -> [B]``: one scalar per input, computed from the model's output (the
    image embedding, the LM's logits, the sentence embedding).
    """
    acts, grads, values = [], [], []
    total = len(inputs)
    bar = tqdm(total=total, desc=f"gradients at {layer}", unit="input", disable=not progress)
    for batch in _batches(backbone, inputs, batch_size):
        act, leaf, output = forward_with_tap(backbone, layer, batch, grad=True)
        with torch.enable_grad():
            value = target(output, batch)
            (grad,) = torch.autograd.grad(value.sum(), leaf)
        lengths = getattr(batch, "lengths", None)
        acts.append(pool_activation(act.detach().float(), pool, lengths).cpu())
        grads.append(pool_gradient(grad.float(), pool, lengths).cpu())
        values.append(value.detach().float().cpu())
        bar.update(len(batch))
    bar.close()
    if not acts:
        raise ValueError("layer_gradients got no inputs")
    return LayerGradients(torch.cat(acts), torch.cat(grads), torch.cat(values), layer, pool)


def layer_activations(backbone, dataset, layer: str, pool: str = "mean", store=None, indices=None, progress: bool = False) -> torch.Tensor:
    """(N, d) pooled activations of ``dataset`` at ``layer``, through the activation store (the layer and
    pooling are part of the key, so a changed layer, pooling, example or weight is never served stale).

    ``dataset``: an image dataset (ShapesWorld, ``folder:``, ...) or a :class:`~conceptlab.data.TextSet`;
    a plain list of texts is wrapped in one."""
    from conceptlab.data import TextSet
    from conceptlab.store import ActivationStore

    if isinstance(dataset, (list, tuple)):
        dataset = TextSet(dataset)
    modality = "text" if isinstance(dataset, TextSet) else "image"
    store = store or ActivationStore()
    return store.get_or_compute(backbone, dataset, capture=f"{modality}:{layer}@{pool}", indices=indices, progress=progress, num_workers=0)


def folder_concepts(backbone, path, layer: str, pool: str = "mean", negative: str = "random", store=None) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Concept examples from a folder with one subfolder per concept (ImageFolder layout): returns
    (concept name -> activations, activations of the ``negative`` subfolder), for :meth:`TCAV.fit`'s
    concepts and random pool. A missing ``negative`` subfolder is a clear error."""
    from conceptlab.data import FolderDataset

    dataset = FolderDataset(path)
    if negative not in dataset.class_names:
        raise ValueError(f"{path} has no subfolder {negative!r} of negative/random images; its subfolders are {', '.join(dataset.class_names)}")
    acts = layer_activations(backbone, dataset, layer, pool, store=store)
    labels = torch.as_tensor(np.asarray(dataset.labels))
    groups = {name: acts[labels == i] for i, name in enumerate(dataset.class_names)}
    pool_acts = groups.pop(negative)
    return groups, pool_acts


def tcav_scores(grads: torch.Tensor, cavs: torch.Tensor) -> dict[str, torch.Tensor]:
    """Scores of each CAV [R, d] (or one [d]) over inputs' gradients [N, d]: ``sign_count`` [R],
    ``magnitude`` [R] (captum: mean directional derivative) and ``magnitude_ratio`` [R]."""
    cavs = cavs[None] if cavs.ndim == 1 else cavs
    derivatives = grads.float() @ cavs.float().T  # [N, R]
    positive = derivatives.clamp_min(0).sum(0)
    return {
        "sign_count": (derivatives > 0).float().mean(0),
        "magnitude": derivatives.mean(0),
        "magnitude_ratio": positive / derivatives.abs().sum(0).clamp_min(1e-30),
    }


# -- the estimator -------------------------------------------------------------------------------


@dataclass
class TCAVResult:
    """What :meth:`TCAV.test` found. ``table``: one row per (target, concept, score) with the
    significance verdict; ``runs``: per-run scores, ``runs[(target, concept)][score]`` an array of
    N (``concept = "random"`` holds the random-concept distribution)."""

    table: pd.DataFrame
    runs: dict[tuple[str, str], dict[str, np.ndarray]] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def significant(self, score: str = "sign_count", direction: int | None = 1) -> pd.DataFrame:
        """Rows judged significant (``direction=1``: the concept raises the target; None: either way)."""
        rows = self.table[(self.table["score"] == score) & self.table["significant"]]
        return rows if direction is None else rows[rows["direction"] == direction]


class TCAV(BaseEstimator):
    """TCAV with random runs and a corrected t-test (scikit-learn estimator contract).

    Args:
        n_random: random runs (N): each concept gets N CAVs, one against each of N random sets,
            and N random-vs-random CAVs make the null distribution. 100 by default, from the
            stability curve of ``probes/shapes_tcav.toml`` (:func:`~conceptlab.vectors.tcav_shapes.stability_curve`):
            decisions taken on independent subsets of N runs still disagree at N = 10-50.
        method, alpha, C, max_iter, tol, test_size: the CAV classifier (:func:`train_cavs`;
            ``"sgd"`` with alpha 0.01 is TCAV's reference).
        significance: the family-wise level of the t-test.
        correction: ``"bonferroni"`` (divide by the number of concepts tested) or ``"none"``.
        min_effect_size: a call also needs |Cohen's d| of at least this (0, the default, is TCAV's
            reference procedure: the t-test alone). With many runs a tiny but consistent difference
            passes the t-test; the gate keeps only differences large against the runs' spread.
            ``probes/shapes_tcav.toml`` grades its effect on precision and recall.
        normalize: unit-length CAVs (magnitudes comparable across CAVs).
        random_state: seeds the random sets, the splits and SGD's shuffles.

    Fitted: ``concepts_`` (names), ``cavs_`` (name -> :class:`CAVSet` of N runs), ``random_cavs_``,
    ``accuracy_`` (a DataFrame of mean / std held-out accuracy per concept).
    """

    def __init__(self, n_random: int = 100, method: str = "sgd", alpha: float = 0.01, C: float = 1.0, max_iter: int = 1000, tol: float = 1e-3,
                 test_size: float = 0.33, significance: float = 0.05, correction: str = "bonferroni", normalize: bool = True, random_state: int = 0,
                 min_effect_size: float = 0.0) -> None:
        self.n_random = n_random
        self.method = method
        self.alpha = alpha
        self.C = C
        self.max_iter = max_iter
        self.tol = tol
        self.test_size = test_size
        self.significance = significance
        self.correction = correction
        self.normalize = normalize
        self.random_state = random_state
        self.min_effect_size = min_effect_size

    def _train(self, positives, negatives, seed: int) -> CAVSet:
        max_iter = self.max_iter if self.method != "logistic" else min(self.max_iter, 100)
        return train_cavs(positives, negatives, method=self.method, alpha=self.alpha, C=self.C, max_iter=max_iter, tol=self.tol,
                          test_size=self.test_size, normalize=self.normalize, seed=seed)

    def fit(self, concepts: Mapping[str, Any], random_pool: Any, negatives: Mapping[str, Any] | None = None, progress: bool = False) -> TCAV:
        """Train the CAVs.

        ``concepts``: name -> (n, d) activations of the concept's examples; ``random_pool``: (M, d)
        activations of random examples the N random sets are drawn from (each set as large as the
        concept's examples, without replacement within a set). ``negatives``: name -> (m, d) a
        negative set for that concept instead of random sets (resampled with replacement for each
        run, tensorflow/tcav#25's way of making many CAVs from one pair of sets).
        """
        if int(self.n_random) < 2:
            raise ValueError(f"n_random must be at least 2 (a t-test needs two random scores), got {self.n_random}")
        if not (isinstance(self.min_effect_size, (int, float)) and 0 <= self.min_effect_size < float("inf")):
            raise ValueError(f"min_effect_size must be a number >= 0 (0: no gate), got {self.min_effect_size!r}")
        if not concepts:
            raise ValueError("TCAV.fit needs at least one concept")
        pool = torch.as_tensor(random_pool, dtype=torch.float32)
        if pool.ndim != 2:
            raise ValueError(f"random_pool must be (M, d), got shape {tuple(pool.shape)}")
        generator = torch.Generator().manual_seed(int(self.random_state))
        N = int(self.n_random)
        sizes = {name: int(torch.as_tensor(acts).shape[0]) for name, acts in concepts.items()}
        n_max = max(sizes.values())
        if pool.shape[0] < n_max:
            raise ValueError(f"the random pool has {pool.shape[0]} examples but a concept has {n_max}; random sets are as large as a concept's examples")

        def random_sets(size: int) -> torch.Tensor:
            picks = torch.stack([torch.randperm(pool.shape[0], generator=generator)[:size] for _ in range(N)])
            return pool[picks]

        self.concepts_ = list(concepts)
        self.cavs_: dict[str, CAVSet] = {}
        rows = []
        bar = tqdm(self.concepts_, desc="training CAVs", unit="concept", disable=not progress)
        for i, name in enumerate(bar):
            acts = torch.as_tensor(concepts[name], dtype=torch.float32)
            if acts.ndim != 2 or acts.shape[1] != pool.shape[1]:
                raise ValueError(f"concept {name!r}: activations must be (n, {pool.shape[1]}), got {tuple(acts.shape)}")
            if negatives is not None and name in negatives:
                neg = torch.as_tensor(negatives[name], dtype=torch.float32)
                neg_runs = neg[torch.randint(len(neg), (N, len(neg)), generator=generator)]
            else:
                neg_runs = random_sets(len(acts))
            self.cavs_[name] = self._train(acts, neg_runs, seed=int(self.random_state) * 1000 + i + 1)
            accuracy = self.cavs_[name].accuracy
            rows.append({"concept": name, "n_examples": len(acts), "accuracy_mean": float(accuracy.mean()), "accuracy_std": float(accuracy.std()),
                         "accuracy_min": float(accuracy.min())})
        # random concepts: two fresh random sets per run (no set shared by all runs), disjoint when the
        # pool allows -- an example on both sides is a label conflict that drags held-out accuracy below 1/2
        size = min(sizes.values())
        if pool.shape[0] >= 2 * size:
            both = random_sets(2 * size)
            first, second = both[:, :size], both[:, size:]
        else:
            first, second = random_sets(size), random_sets(size)
        self.random_cavs_ = self._train(first, second, seed=int(self.random_state) * 1000)
        random_accuracy = self.random_cavs_.accuracy
        rows.append({"concept": "random", "n_examples": size, "accuracy_mean": float(random_accuracy.mean()),
                     "accuracy_std": float(random_accuracy.std()), "accuracy_min": float(random_accuracy.min())})
        self.accuracy_ = pd.DataFrame(rows)
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "cavs_"):
            raise RuntimeError("this TCAV is not fitted yet; call fit(concepts, random_pool) first")

    def test(self, grads: Mapping[str, Any], runs: int | Sequence[int] | None = None, correction: str | None = None,
             min_effect_size: float | None = None) -> TCAVResult:
        """Score and test every (target, concept).

        ``grads``: target name -> (n_inputs, d) gradients of that target at the layer (from
        :func:`layer_gradients`). ``runs``: use only the first ``runs`` random runs, or the runs at
        these indices (the stability curve); ``correction`` and ``min_effect_size`` override the
        estimator's for a comparison.
        """
        self._check_fitted()
        correction = self.correction if correction is None else correction
        gate = float(self.min_effect_size if min_effect_size is None else min_effect_size)
        if runs is None:
            N = slice(0, int(self.n_random))
        elif isinstance(runs, (int, np.integer)):
            N = slice(0, int(runs))
        else:
            N = torch.as_tensor(list(runs), dtype=torch.long)
        rows, per_run = [], {}
        n_tests = len(self.concepts_)
        for target, g in grads.items():
            g = torch.as_tensor(g, dtype=torch.float32)
            random_scores = {k: v.numpy() for k, v in tcav_scores(g, self.random_cavs_.vectors[N]).items()}
            per_run[(target, "random")] = random_scores
            for name in self.concepts_:
                cavs = self.cavs_[name]
                scores = {k: v.numpy() for k, v in tcav_scores(g, cavs.vectors[N]).items()}
                per_run[(target, name)] = scores
                for score in SCORES:
                    verdict = significance_test(scores[score], random_scores[score], alpha=self.significance, n_tests=n_tests, correction=correction)
                    row = {"target": target, "concept": name, "score": score, **verdict.as_dict(), "cav_accuracy": float(cavs.accuracy[N].mean())}
                    row["below_min_effect"] = bool(abs(verdict.effect_size) < gate)
                    row["significant"] = bool(row["significant"] and not row["below_min_effect"])
                    rows.append(row)
        used = len(self.random_cavs_.vectors[N])
        settings = {**self.get_params(), "runs": used, "correction": correction, "min_effect_size": gate, "n_tests": n_tests}
        return TCAVResult(pd.DataFrame(rows), per_run, settings)

    def single_run_test(self, grads: Mapping[str, Any], alpha: float = 0.05) -> pd.DataFrame:
        """What a user without random runs gets: each concept's *first* CAV alone, called significant
        when its sign count differs from 1/2 by a binomial test over the inputs (no correction)."""
        self._check_fitted()
        rows = []
        for target, g in grads.items():
            g = torch.as_tensor(g, dtype=torch.float32)
            for name in self.concepts_:
                derivatives = g @ self.cavs_[name].vectors[0]
                p_value, significant = binomial_sign_test(derivatives.numpy(), alpha)
                sign_count = float((derivatives > 0).float().mean())
                rows.append({"target": target, "concept": name, "score": "sign_count", "concept_mean": sign_count, "p_value": p_value,
                             "significant": significant, "direction": 1 if sign_count > 0.5 else -1})
        return pd.DataFrame(rows)
