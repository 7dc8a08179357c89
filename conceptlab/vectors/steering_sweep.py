"""Dose-response of a steering vector with a coherence guard, and the FactsWorld task it runs on.

Steering libraries apply a vector at a multiplier and leave it to the user to find where it
works and where the model breaks (repeng's own example collapses into "oooo..."). Here one sweep
measures, for each multiplier:

- ``target_rate`` -- the share of target prompts whose greedy answer *begins* with the target
  (the behaviour steered for); ``exact_rate`` -- whose whole answer is exactly the target;
- ``other_accuracy`` -- exact match on control questions the steering should leave alone;
- ``nll`` -- mean next-token NLL of held-out texts under steering (coherence);
- ``repeat_share`` -- the share of greedily generated tokens equal to the token just before them
  (degenerate repeats, "white white white").

:func:`coherent_range` reads the table: from multiplier 0 upwards, how far the NLL and the repeat
share stay within tolerances, and where in that span the target rate rises.

:func:`facts_steering_task` builds the task on FactsWorld: steer the answers to one attribute
towards one value (``colour -> white``). Pairs contrast the QA prompts of entities that have the
value with the same prompts (same phrasing, same kind) of entities that do not, read at the
prompt's last token -- where the model is about to say the value. The target prompts ask the
attribute of *other* entities (never in a pair), in phrasings never trained on.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd
import torch
from tqdm.auto import tqdm

from conceptlab.backbones import LanguageModel
from conceptlab.data.facts_world import FactsWorld
from conceptlab.vectors.steering import SteeringVector, mean_difference, pca_direction, steer

__all__ = [
    "BUILDERS",
    "DEFAULT_MULTIPLIERS",
    "SteeringTask",
    "build_steering_vector",
    "coherent_range",
    "dose_response",
    "facts_steering_task",
    "greedy_tokens",
    "steered_examples",
]

#: the sweep's default multipliers: negative, fine steps around one mean difference, then far out
DEFAULT_MULTIPLIERS = (-2.0, -1.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)
#: how a task's pairs become a vector
BUILDERS = ("mean_difference", "pca_diff", "pca_center")


@dataclass
class SteeringTask:
    """What a dose-response sweep needs, independent of FactsWorld.

    Attributes:
        pairs: contrastive ``(positive, negative)`` texts the vector is built from.
        target: the answer steering should produce; ``prompts``: the prompts it should produce it for
            (whose true answer is something else).
        control_prompts / control_answers: questions whose answers steering should not change.
        coherence_texts: held-out texts whose NLL under steering measures coherence.
        generation_prompts: prompts continued greedily to count degenerate repeats.
        description: a line saying what the task is.
    """

    pairs: list[tuple[str, str]]
    target: str
    prompts: list[str]
    control_prompts: list[str] = field(default_factory=list)
    control_answers: list[str] = field(default_factory=list)
    coherence_texts: list[str] = field(default_factory=list)
    generation_prompts: list[str] = field(default_factory=list)
    description: str = ""
    truths: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.pairs:
            raise ValueError("a steering task needs contrastive pairs")
        if not self.prompts:
            raise ValueError("a steering task needs target prompts")
        if len(self.control_prompts) != len(self.control_answers):
            raise ValueError(f"{len(self.control_prompts)} control prompts for {len(self.control_answers)} answers")

    def __repr__(self) -> str:
        return (
            f"SteeringTask({self.description or self.target!r}: {len(self.pairs)} pairs, {len(self.prompts)} target prompts, "
            f"{len(self.control_prompts)} control questions, {len(self.coherence_texts)} coherence texts, {len(self.generation_prompts)} generation prompts)"
        )


def facts_steering_task(
    world: FactsWorld, attribute: str = "colour", value: str = "white", seed: int = 0, train_share: float = 0.5, max_prompts: int | None = None
) -> SteeringTask:
    """Steer ``attribute`` answers towards ``value`` on FactsWorld.

    The entities without ``value`` are split (seeded) into ``train_share`` that serve as pairs'
    negatives and the rest that are steered (held-out entities): the target prompts are their
    ``qa_heldout`` questions about ``attribute``; the control questions their ``qa_heldout``
    questions about the other attributes, whose full texts are also the coherence texts; the
    generation prompts the first sentence of their paragraphs. ``max_prompts`` caps every list
    (a quick run)."""
    having = [e for e in world.entities if attribute in e.attributes]
    if not having:
        raise ValueError(f"no FactsWorld entity has the attribute {attribute!r}")
    positives = [e.name for e in having if e.attributes[attribute] == value]
    negatives = [e.name for e in having if e.attributes[attribute] != value]
    if not positives:
        values = sorted({e.attributes[attribute] for e in having})
        raise ValueError(f"no entity has {attribute} = {value!r}; values in this world: {', '.join(values)}")
    if len(negatives) < 2:
        raise ValueError(f"{attribute} = {value!r}: too few entities without it to build pairs and to steer ({len(negatives)})")
    random.Random(f"steer:{seed}:{attribute}:{value}").shuffle(negatives)
    cut = min(max(1, round(len(negatives) * train_share)), len(negatives) - 1)
    train, held_out = negatives[:cut], negatives[cut:]
    kind = {e.name: e.kind for e in world.entities}
    negative_texts = world.texts("qa", train, [attribute])
    pairs = []
    for i, text in enumerate(world.texts("qa", positives, [attribute])):
        same = [n for n in negative_texts if n.template == text.template and kind[n.entity] == kind[text.entity]]
        same = same or [n for n in negative_texts if n.template == text.template]
        pairs.append((text.prompt, same[i % len(same)].prompt))
    targets = world.texts("qa_heldout", held_out, [attribute])
    controls = [t for t in world.texts("qa_heldout", held_out) if t.attribute != attribute]
    openings = [t.text.split(". ")[0] + "." for t in world.texts("paragraph", held_out) if t.template == 0]
    cap = slice(None, max_prompts)
    return SteeringTask(
        pairs=pairs[cap],
        target=value,
        prompts=[t.prompt for t in targets][cap],
        truths=[t.answer for t in targets][cap],
        control_prompts=[t.prompt for t in controls][cap],
        control_answers=[t.answer for t in controls][cap],
        coherence_texts=[t.text for t in controls][cap],
        generation_prompts=openings[cap],
        description=f"FactsWorld {attribute} -> {value} ({len(positives)} entities with it, {len(train)} in pairs, {len(held_out)} steered)",
    )


def build_steering_vector(lm: LanguageModel, task: SteeringTask, layer: int | str, method: str = "mean_difference", read_token_index: int = -1) -> SteeringVector:
    """A vector from the task's pairs by ``method`` (:data:`BUILDERS`). PCA directions (unit norm)
    are scaled to the norm of the same pairs' mean difference, so that multiplier 1 means one
    mean difference for every method and their dose-response curves share an axis."""
    if method not in BUILDERS:
        raise ValueError(f"method must be one of {', '.join(BUILDERS)}, got {method!r}")
    mean = mean_difference(lm, task.pairs, layer, read_token_index=read_token_index)
    if method == "mean_difference":
        return mean
    return pca_direction(lm, task.pairs, layer, method=method, read_token_index=read_token_index).scaled(mean.norm)


# -- measuring -----------------------------------------------------------------------------------


def _groups(encoded: Sequence[Sequence[int]], batch_size: int = 64):
    groups: dict[int, list[int]] = {}
    for i, ids in enumerate(encoded):
        groups.setdefault(len(ids), []).append(i)
    for length in sorted(groups):
        members = groups[length]
        for start in range(0, len(members), batch_size):
            yield members[start : start + batch_size]


@torch.no_grad()
def greedy_tokens(lm: LanguageModel, prompts: Sequence[str], max_new_tokens: int = 16) -> list[list[int]]:
    """Greedy continuations as token ids (stopping at the EOS token, which is not included).
    Prompts of equal length share a batch: no padding moves any position."""
    encoded = lm.encode(prompts)
    eos = lm.tokenizer.eos_token_id
    out: list[list[int]] = [[] for _ in encoded]
    for members in _groups(encoded):
        ids = torch.tensor([encoded[i] for i in members], device=lm.device)
        done = torch.zeros(len(members), dtype=torch.bool, device=lm.device)
        for _ in range(max_new_tokens):
            step = lm.logits(ids)[:, -1].argmax(-1)
            for row, i in enumerate(members):
                if not done[row] and (eos is None or int(step[row]) != eos):
                    out[i].append(int(step[row]))
            if eos is not None:
                done |= step == eos
            if bool(done.all()):
                break
            ids = torch.cat([ids, step[:, None]], dim=1)
    return out


def _repeat_share(lm: LanguageModel, prompts: Sequence[str], continuations: Sequence[Sequence[int]]) -> float:
    """Share of generated tokens equal to the token just before them (the prompt's last for the first)."""
    repeats = total = 0
    for ids, new in zip(lm.encode(prompts), continuations):
        previous = ids[-1] if ids else None
        for token in new:
            repeats += token == previous
            total += 1
            previous = token
    return repeats / total if total else 0.0


@torch.no_grad()
def _first_token_rate(lm: LanguageModel, prompts: Sequence[str], target: str) -> float:
    """Share of prompts whose greedy next token is the target's first token."""
    encoded = lm.encode(prompts)
    full = lm.encode([f"{p} {target}" for p in prompts])
    firsts = [f[len(e)] if len(f) > len(e) else -1 for e, f in zip(encoded, full)]
    if any(f < 0 for f in firsts):
        raise ValueError(f"the target {target!r} adds no token to a prompt")
    hits = 0
    for members in _groups(encoded):
        predicted = lm.logits(torch.tensor([encoded[i] for i in members], device=lm.device))[:, -1].argmax(-1).tolist()
        hits += sum(int(p == firsts[i]) for p, i in zip(predicted, members))
    return hits / len(encoded)


def _measure(lm: LanguageModel, task: SteeringTask, max_new_tokens: int) -> dict[str, float]:
    row = {
        "target_rate": _first_token_rate(lm, task.prompts, task.target),
        "exact_rate": float(lm.answer_scores(task.prompts, [task.target] * len(task.prompts))[0].float().mean()),
    }
    row["other_accuracy"] = float(lm.answer_scores(task.control_prompts, task.control_answers)[0].float().mean()) if task.control_prompts else float("nan")
    row["nll"] = float(lm.answer_nll(task.coherence_texts, [""] * len(task.coherence_texts)).mean()) if task.coherence_texts else float("nan")
    if task.generation_prompts:
        row["repeat_share"] = _repeat_share(lm, task.generation_prompts, greedy_tokens(lm, task.generation_prompts, max_new_tokens))
    else:
        row["repeat_share"] = float("nan")
    return row


def dose_response(
    lm: LanguageModel,
    vector: SteeringVector,
    task: SteeringTask,
    multipliers: Sequence[float] = DEFAULT_MULTIPLIERS,
    token_scope: str | int = "all",
    max_new_tokens: int = 16,
    progress: bool = True,
) -> pd.DataFrame:
    """One row per multiplier (sorted): ``multiplier, target_rate, exact_rate, other_accuracy, nll,
    repeat_share`` (see the module docstring), every measure taken with the vector applied.
    Include 0 in ``multipliers`` to have the unsteered baseline in the table."""
    values = sorted({float(m) for m in multipliers})
    if not values:
        raise ValueError("dose_response needs at least one multiplier")
    rows = []
    for multiplier in tqdm(values, desc="dose-response", disable=not progress):
        with steer(lm, vector, multiplier, token_scope=token_scope):
            rows.append({"multiplier": multiplier, **_measure(lm, task, max_new_tokens)})
    return pd.DataFrame(rows)


def coherent_range(
    table: pd.DataFrame, max_nll_increase: float = 0.1, max_repeat_share: float = 0.05, min_rise: float = 0.05, min_control_accuracy: float | None = None
) -> dict[str, float | None]:
    """Where steering works and the model still holds, read from a :func:`dose_response` table.

    Coherence holds at a multiplier when its NLL is at most ``max_nll_increase`` nats above the
    unsteered one and its repeat share at most ``max_repeat_share``. Walking up from 0, the
    coherent span ends before the first multiplier where it fails (``breaks_at``). ``low`` is the
    first multiplier in that span whose target rate exceeds the unsteered rate by ``min_rise``,
    ``high`` the span's last multiplier, ``best`` the multiplier of the highest target rate in
    [low, high] (``best_rate`` that rate). ``min_control_accuracy`` adds a stricter guard: the
    control questions' accuracy must stay at or above it. Needs multiplier 0 in the table."""
    table = table.sort_values("multiplier").reset_index(drop=True)
    zero = table[table["multiplier"] == 0.0]
    if zero.empty:
        raise ValueError("coherent_range needs the unsteered row (multiplier 0) in the table")
    base = zero.iloc[0]
    out: dict[str, float | None] = {
        "baseline_rate": float(base["target_rate"]), "baseline_nll": float(base["nll"]), "low": None, "high": 0.0, "best": None, "best_rate": None, "breaks_at": None
    }
    for row in table[table["multiplier"] >= 0].itertuples():
        broken = row.nll > base["nll"] + max_nll_increase or row.repeat_share > max_repeat_share
        if min_control_accuracy is not None and row.other_accuracy < min_control_accuracy:
            broken = True
        if broken:
            out["breaks_at"] = float(row.multiplier)
            break
        out["high"] = float(row.multiplier)
        if out["low"] is None and row.target_rate >= base["target_rate"] + min_rise:
            out["low"] = float(row.multiplier)
        if out["low"] is not None and (out["best_rate"] is None or row.target_rate > out["best_rate"]):
            out["best"], out["best_rate"] = float(row.multiplier), float(row.target_rate)
    return out


@torch.no_grad()
def steered_examples(
    lm: LanguageModel, vector: SteeringVector, task: SteeringTask, multiplier: float, n: int = 8, max_new_tokens: int = 16, token_scope: str | int = "all"
) -> pd.DataFrame:
    """What the model says under steering: the first ``n`` target prompts with their true answer,
    the answer unsteered and steered, and a generation prompt (``opening``) with its steered continuation."""
    prompts = task.prompts[:n]
    with steer(lm, vector, 0.0):
        before = [lm.tokenizer.decode(t, skip_special_tokens=True) for t in greedy_tokens(lm, prompts, 4)]
    with steer(lm, vector, multiplier, token_scope=token_scope):
        after = [lm.tokenizer.decode(t, skip_special_tokens=True) for t in greedy_tokens(lm, prompts, 4)]
        openings = task.generation_prompts[: len(prompts)]
        continued = [lm.tokenizer.decode(t, skip_special_tokens=True) for t in greedy_tokens(lm, openings, max_new_tokens)]
    pad = [""] * (len(prompts) - len(continued))
    truths = (task.truths or [""] * len(prompts))[: len(prompts)]
    return pd.DataFrame({"prompt": prompts, "truth": truths, "unsteered": before, "steered": after, "opening": [*openings, *pad], "continuation": [*continued, *pad]})
