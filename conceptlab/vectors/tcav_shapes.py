"""TCAV graded on ShapesWorld: each class is a rule over concepts, so TCAV's verdicts can be scored.

For class k the target is its zero-shot logit in ``zoo:shapes-clip`` (the log-sum-exp over the
captions its rule allows: "a red circle" for *ruby disc*, "a yellow cross" | "a orange cross" for
*sun cross*). A concept should come out significant (and raising the logit) exactly when it is in
the class's rule. :func:`grade` counts true and false positives; :func:`shapes_tcav_study` runs
the whole thing with layer activations from the store, and compares the default test (N random
runs, t-test, Bonferroni) with the same runs uncorrected and with a single CAV and no random runs.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from conceptlab.data import ATTRIBUTE_VALUES, CLASS_RULES, ShapesWorld, caption_for
from conceptlab.store import ActivationStore
from conceptlab.vectors.tcav import TCAV, TCAVResult, layer_gradients, zero_shot_logit

__all__ = ["ShapesTCAVStudy", "class_prompts", "class_truth", "grade", "shapes_tcav_study", "stability_curve"]


def class_prompts(class_name: str) -> list[str]:
    """The captions a class's rule allows, in the zoo CLIP's caption grammar."""
    rule, _ = CLASS_RULES[class_name]
    families = list(rule)
    prompts = []
    for values in itertools.product(*(rule[f] for f in families)):
        row = {f: "?" for f in ATTRIBUTE_VALUES} | dict(zip(families, values))
        prompts.append(caption_for(row, families))
    return prompts


def class_truth(class_names: Sequence[str] | None = None) -> dict[str, set[str]]:
    """class -> the ``family:value`` concepts its rule names (the concepts TCAV should find)."""
    names = list(CLASS_RULES) if class_names is None else list(class_names)
    return {name: {f"{family}:{value}" for family, values in CLASS_RULES[name][0].items() for value in values} for name in names}


def grade(decisions: pd.DataFrame, truth: dict[str, set[str]], concepts: Sequence[str]) -> dict[str, float]:
    """Precision, recall and false-positive rate of "significant and raising the target" against the truth.

    ``decisions``: rows with ``target``, ``concept``, ``significant``, ``direction`` (one score kind)."""
    tp = fp = fn = tn = 0
    positive = {(r.target, r.concept) for r in decisions.itertuples() if bool(r.significant) and int(r.direction) > 0}
    for target, relevant in truth.items():
        for concept in concepts:
            called, real = (target, concept) in positive, concept in relevant
            tp += called and real
            fp += called and not real
            fn += real and not called
            tn += not called and not real
    return {
        "precision": tp / (tp + fp) if tp + fp else float("nan"),
        "recall": tp / (tp + fn) if tp + fn else float("nan"),
        "false_positive_rate": fp / (fp + tn) if fp + tn else float("nan"),
        "tp": tp, "fp": fp, "fn": fn, "tn": tn,
    }


def stability_curve(tcav: TCAV, grads: dict[str, torch.Tensor], truth: dict[str, set[str]], sizes: Sequence[int] = (10, 20, 50, 100),
                    repeats: int = 10, score: str = "sign_count", seed: int = 0) -> pd.DataFrame:
    """How significance decisions change with the number of random runs N.

    For each N, ``repeats`` random subsets of N runs (out of the ``tcav.n_random`` trained) each
    decide every (target, concept); ``agreement`` is the fraction of pairs on which all subsets
    agree, ``pairwise_agreement`` the mean agreement of two subsets; precision / recall are averaged."""
    rng = np.random.default_rng(seed)
    total = int(tcav.n_random)
    rows = []
    for n in sizes:
        if n > total:
            raise ValueError(f"a subset of {n} runs needs at least that many trained runs; this TCAV has {total}")
        decisions, grades = [], []
        for _ in range(repeats):
            subset = rng.choice(total, size=n, replace=False)
            table = tcav.test(grads, runs=subset.tolist()).table
            table = table[table["score"] == score]
            decisions.append(((table["significant"]) & (table["direction"] > 0)).to_numpy())
            grades.append(grade(table, truth, tcav.concepts_))
        stack = np.stack(decisions)
        unanimous = (stack.all(0) | (~stack).all(0)).mean()
        pairs = [np.mean(stack[i] == stack[j]) for i in range(repeats) for j in range(i + 1, repeats)]
        rows.append({"n_random": n, "agreement": float(unanimous), "pairwise_agreement": float(np.mean(pairs)) if pairs else 1.0,
                     "precision": float(np.nanmean([g["precision"] for g in grades])), "recall": float(np.nanmean([g["recall"] for g in grades])),
                     "false_positive_rate": float(np.mean([g["false_positive_rate"] for g in grades]))})
    return pd.DataFrame(rows)


@dataclass
class ShapesTCAVStudy:
    """The outputs of :func:`shapes_tcav_study`."""

    tcav: TCAV
    result: TCAVResult
    grads: dict[str, torch.Tensor]
    truth: dict[str, set[str]]
    grading: pd.DataFrame
    stability: pd.DataFrame | None
    settings: dict[str, Any] = field(default_factory=dict)


def _concept_rows(world: ShapesWorld, concepts: Sequence[str], n_examples: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    names = list(world.concept_names)
    rows = {}
    for concept in concepts:
        if concept not in names:
            raise ValueError(f"unknown ShapesWorld concept {concept!r}; concepts are {', '.join(names)}")
        candidates = np.flatnonzero(world.concepts[:, names.index(concept)])
        if len(candidates) < 4:
            raise ValueError(f"concept {concept!r} has only {len(candidates)} images in {world}; enlarge the world")
        rows[concept] = rng.choice(candidates, size=min(n_examples, len(candidates)), replace=False)
    return rows


def shapes_tcav_study(
    backbone,
    layer: str = "visual.layer4",
    pool: str = "mean",
    classes: Sequence[str] | None = None,
    concepts: Sequence[str] | None = None,
    n_examples: int = 100,
    world_size: int = 3000,
    n_random_pool: int = 1000,
    n_inputs: int = 50,
    n_random: int = 100,
    stability_sizes: Sequence[int] | None = None,
    stability_repeats: int = 10,
    method: str = "sgd",
    significance: float = 0.05,
    effect_gate: float = 1.5,
    store: ActivationStore | None = None,
    seed: int = 0,
    progress: bool = False,
) -> ShapesTCAVStudy:
    """TCAV of every class's zero-shot logit against ShapesWorld's concepts, graded against the rules.

    Concept examples (``n_examples`` images showing the concept) and the random pool come from a
    ``world_size`` train split whose layer activations the store caches; each class's gradients
    come from its first ``n_inputs`` test images. The grading compares three procedures on the same
    CAVs: the default (N = ``n_random`` runs, t-test, Bonferroni), the same uncorrected, and a single
    CAV with no random runs (binomial test of its sign count). ``stability_sizes`` adds
    :func:`stability_curve` (it needs ``n_random`` at least the largest size; the default test then
    uses the first 100 runs or all if fewer). A fourth procedure adds the effect-size gate
    ``|d| >= effect_gate`` to the default (``TCAV(min_effect_size=...)``).
    """
    classes = list(CLASS_RULES) if classes is None else list(classes)
    world = ShapesWorld("train", size=world_size, seed=seed)
    concepts = list(world.concept_names) if concepts is None else list(concepts)
    store = store or ActivationStore()
    acts = store.get_or_compute(backbone, world, capture=f"image:{layer}@{pool}", progress=progress)
    rng = np.random.default_rng(seed)
    examples = {c: acts[torch.as_tensor(rows)] for c, rows in _concept_rows(world, concepts, n_examples, rng).items()}
    pool_rows = rng.choice(len(world), size=min(n_random_pool, len(world)), replace=False)
    tcav = TCAV(n_random=n_random, method=method, significance=significance, random_state=seed).fit(examples, acts[torch.as_tensor(pool_rows)], progress=progress)

    test = ShapesWorld("test", size=max(2000, n_inputs * len(CLASS_RULES) * 3), seed=seed)
    names = list(CLASS_RULES)
    grads = {}
    for class_name in classes:
        rows = np.flatnonzero(test.labels == names.index(class_name))[:n_inputs]
        images = [test.image(int(i)) for i in rows]
        grads[class_name] = layer_gradients(backbone, layer, images, zero_shot_logit(backbone, class_prompts(class_name)), pool=pool).grads
    truth = class_truth(classes)
    default_runs = min(100, n_random)
    result = tcav.test(grads, runs=default_runs)
    uncorrected = tcav.test(grads, runs=default_runs, correction="none")
    gated = tcav.test(grads, runs=default_runs, min_effect_size=effect_gate)
    single = tcav.single_run_test(grads)
    grading = []
    for name, table in (("default (N runs, t-test, Bonferroni)", result.table), ("N runs, t-test, uncorrected", uncorrected.table),
                        (f"default + effect size |d| >= {effect_gate:g}", gated.table)):
        for score in ("sign_count", "magnitude"):
            grading.append({"procedure": name, "score": score, "n_random": default_runs, **grade(table[table["score"] == score], truth, concepts)})
    grading.append({"procedure": "single CAV, no random runs (binomial)", "score": "sign_count", "n_random": 1, **grade(single, truth, concepts)})
    stability = None
    if stability_sizes:
        stability = stability_curve(tcav, grads, truth, sizes=stability_sizes, repeats=stability_repeats, seed=seed)
    settings = {"layer": layer, "pool": pool, "classes": classes, "concepts": concepts, "n_examples": n_examples, "world_size": world_size,
                "n_random_pool": n_random_pool, "n_inputs": n_inputs, "n_random": n_random, "method": method, "significance": significance,
                "effect_gate": effect_gate, "seed": seed, "backbone": getattr(backbone, "spec", "?")}
    return ShapesTCAVStudy(tcav, result, grads, truth, pd.DataFrame(grading), stability, settings)
