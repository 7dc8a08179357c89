"""Helpers of the "Concept vectors (LM)" page: cached calls into :mod:`conceptlab.vectors`.

Every number the page shows comes from a library function a notebook can call
(``conceptlab.vectors.scan_vocabulary``, ``causal_validate``, ``unlearning_table``,
``conceptlab.zoo.facts_gpt2.evaluate_qa``, and for steering ``facts_steering_task``,
``build_steering_vector``, ``dose_response``, ``coherent_range``, ``steered_examples``); this module
only caches them per input and turns results into display tables.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

__all__ = [
    "DEFAULT_LM",
    "ENV_LM",
    "INTERVENTIONS",
    "intervention",
    "load_lm",
    "load_world",
    "one_thread",
    "parse_terms",
    "qa_accuracy",
    "scan",
    "scan_table",
    "steerable_values",
    "steered",
    "steering_sweep",
    "unlearn_one",
    "validate",
    "world_for",
]

#: environment variable naming the page's default language model (tests point it at a tiny one)
ENV_LM = "CONCEPTLAB_LM_BACKBONE"
DEFAULT_LM = "zoo:facts-gpt2"
INTERVENTIONS = ("noise", "zero", "mean")


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run a tiny model's many small matrix products on one torch thread (on a shared machine two
    threads that contend are many times slower); the setting is restored after."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def default_spec() -> str:
    return os.environ.get(ENV_LM, DEFAULT_LM)


@st.cache_resource(show_spinner="Loading the language model…")
def load_lm(spec: str):
    from conceptlab.backbones import load

    lm = load(spec, device="cpu")
    if not hasattr(lm, "value_vectors"):
        raise ValueError(f"{spec} is not a language model (an image-text backbone?); try {DEFAULT_LM}")
    return lm


def world_for(spec: str):
    """The FactsWorld the model knows: its folder's ``factsworld.json`` if it has one, else the default world."""
    from conceptlab.data import FactsWorld
    from conceptlab.zoo.facts_gpt2 import WORLD_FILE, world_of

    if spec.startswith("zoo:"):
        from conceptlab.zoo import zoo_path

        folder = zoo_path(spec.split(":", 1)[1])
    else:
        folder = Path(spec.split(":", 1)[-1]).expanduser()
    return world_of(folder) if (folder / WORLD_FILE).is_file() else FactsWorld()


@st.cache_resource
def load_world(spec: str):
    return world_for(spec)


@st.cache_data(show_spinner="Asking every FactsWorld question…")
def qa_accuracy(spec: str) -> dict[str, float]:
    from conceptlab.zoo.facts_gpt2 import evaluate_qa

    with one_thread():
        return evaluate_qa(load_lm(spec), load_world(spec))


def parse_terms(text: str) -> list[str]:
    """``"Sopis, baker  teal"`` -> ``["Sopis", "baker", "teal"]`` (commas or spaces)."""
    return [t for t in text.replace(",", " ").split() if t]


@st.cache_resource(show_spinner="Scanning every value vector…")
def scan(spec: str, terms: tuple[str, ...], k: int, scorer: str, projection: str):
    from conceptlab.vectors import scan_vocabulary

    with one_thread():
        return scan_vocabulary(load_lm(spec), list(terms), k=k, scorer=scorer, projection=projection, keep=50, progress=False)


def scan_table(result: Any, n: int = 20) -> pd.DataFrame:
    """The ranked vectors with their top tokens joined for display."""
    table = result.table.head(n).copy()
    table["tokens"] = table["tokens"].map(lambda tokens: " ".join(tokens))
    return table


def intervention(kind: str, std: float, relative: bool, spec: str):
    from conceptlab.vectors import GaussianNoise, MeanAblation, ZeroAblation

    if kind == "zero":
        return ZeroAblation()
    if kind == "mean":
        return MeanAblation(tuple(load_world(spec).training_corpus()[:400]))
    return GaussianNoise(std=float(std), relative=bool(relative))


@st.cache_data(show_spinner="Asking the questions with the vector perturbed…")
def validate(spec: str, layer: int, index: int, entity: str, kind: str, std: float, relative: bool, form: str = "qa") -> dict[str, Any]:
    """:func:`conceptlab.vectors.causal_validate` on ``entity``'s questions vs 5 unrelated entities'."""
    from conceptlab.vectors import causal_validate

    world = load_world(spec)
    with one_thread():
        result = causal_validate(
            load_lm(spec), layer, index, world.questions([entity], form=form), world.unrelated(entity, form=form), intervention(kind, std, relative, spec)
        )
    after = result.after.assign(before=result.before["prediction"])[["group", "entity", "attribute", "answer", "before", "prediction", "correct"]]
    return {"summary": result.summary(), "answers": after}


@st.cache_data(show_spinner="Unlearning…")
def unlearn_one(spec: str, entity: str, layer: int, index: int, method: str, k: int) -> dict[str, Any]:
    """:func:`conceptlab.vectors.unlearning_table` for one method, and the vector's top tokens before/after."""
    from conceptlab.vectors import project_to_vocab, unlearning_table

    lm = load_lm(spec)
    with one_thread():
        table, runs = unlearning_table(lm, load_world(spec), entity, layer, index, methods=[method], k=k, progress=False)
    after = runs[method].model
    return {
        "table": table,
        "tokens_before": project_to_vocab(lm, layer, index, k=k).tokens,
        "tokens_after": project_to_vocab(after, layer, index, k=k).tokens,
        "params": runs[method].params,
    }


# -- steering ----------------------------------------------------------------------------------------


def steerable_values(world) -> dict[str, list[str]]:
    """attribute -> the values a steering task can be built for (held by at least one entity and
    missing from at least two others, which give the pairs' negatives and the steered prompts)."""
    out: dict[str, list[str]] = {}
    for attribute in sorted({a for e in world.entities for a in e.attributes}):
        having = [e.attributes[attribute] for e in world.entities if attribute in e.attributes]
        values = sorted({v for v in having if sum(h != v for h in having) >= 2})
        if values:
            out[attribute] = values
    return out


@st.cache_resource(show_spinner="Building the steering vector…")
def _vector(spec: str, attribute: str, value: str, layer: int, method: str):
    from conceptlab.vectors import build_steering_vector, facts_steering_task

    task = facts_steering_task(load_world(spec), attribute, value)
    with one_thread():
        return task, build_steering_vector(load_lm(spec), task, layer, method)


@st.cache_data(show_spinner="Sweeping the multiplier (target rate, NLL, repeats)…")
def steering_sweep(spec: str, attribute: str, value: str, layer: int, method: str, multipliers: tuple[float, ...] | None = None) -> dict[str, Any]:
    """:func:`conceptlab.vectors.dose_response` over ``multipliers`` (default: the library's) and
    :func:`conceptlab.vectors.coherent_range` of it."""
    from conceptlab.vectors import DEFAULT_MULTIPLIERS, coherent_range, dose_response

    task, vector = _vector(spec, attribute, value, layer, method)
    with one_thread():
        table = dose_response(load_lm(spec), vector, task, multipliers or DEFAULT_MULTIPLIERS, progress=False)
    return {"table": table, "coherent": coherent_range(table), "task": task.description, "vector": repr(vector)}


@st.cache_data(show_spinner="Steering…")
def steered(spec: str, attribute: str, value: str, layer: int, method: str, multiplier: float) -> dict[str, Any]:
    """The measures at one multiplier (a one-row :func:`dose_response`) and what the model says
    (:func:`conceptlab.vectors.steered_examples`)."""
    from conceptlab.vectors import dose_response, steered_examples

    task, vector = _vector(spec, attribute, value, layer, method)
    lm = load_lm(spec)
    with one_thread():
        row = dose_response(lm, vector, task, [float(multiplier)], progress=False).iloc[0].to_dict()
        examples = steered_examples(lm, vector, task, float(multiplier))
    return {"row": row, "examples": examples}
