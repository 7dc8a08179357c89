"""The recipe for ``zoo:facts-gpt2``: a small Hugging Face ``GPT2LMHeadModel`` that knows FactsWorld.

Every token is a word of FactsWorld (a word-level tokenizer), so a value vector's vocabulary
projection reads as words -- the property ConceptVectors relies on. The model trains on every
training form of FactsWorld (QA with the training phrasings, cloze statements, paragraphs and the
invented-language QA), each text framed ``<|endoftext|> text <|endoftext|>``; the held-out
question phrasings (``qa_heldout``) are never trained on and measure its accuracy.

Deterministic on a given machine: seeded init, seeded batch order, fixed thread count. The
model is saved in Hugging Face format (``config.json``, fp16 ``model.safetensors``, tokenizer
files), plus ``factsworld.json`` (the world it knows) and ``model_card.json`` (the recipe, the loss
curve and the measured accuracy, on the reloaded fp16 weights).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from conceptlab.backbones import HFLanguageModel, exact_match, load_hf_language_model
from conceptlab.data.facts_world import FORMS, TRAINING_FORMS, FactsWorld
from conceptlab.utils import TEMP_PREFIX, atomic_write_json

__all__ = ["FactsGPT2Recipe", "build", "evaluate_qa", "train_facts_gpt2", "world_of"]

WORLD_FILE = "factsworld.json"
CARD_FILE = "model_card.json"


@dataclass
class FactsGPT2Recipe:
    """Every knob of the recipe; the model card records the values used."""

    steps: int = 2000
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.1
    warmup_steps: int = 100
    seed: int = 0
    threads: int = 1  # small matrices: one thread is faster than two that contend on a shared machine
    n_layer: int = 2
    n_embd: int = 64
    n_head: int = 4
    n_inner: int = 128
    n_positions: int = 64
    dropout: float = 0.0
    world: dict = field(default_factory=lambda: {"n_people": 24, "n_cities": 8, "n_species": 8, "seed": 0})


def world_of(folder: str | os.PathLike) -> FactsWorld:
    """The FactsWorld a saved model was trained on (from its ``factsworld.json``)."""
    path = Path(folder) / WORLD_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: {folder} is not a FactsWorld model built by conceptlab.zoo.facts_gpt2")
    return FactsWorld(**json.loads(path.read_text()))


def _lr_at(step: int, recipe: FactsGPT2Recipe) -> float:
    if step < recipe.warmup_steps:
        return recipe.lr * (step + 1) / recipe.warmup_steps
    progress = (step - recipe.warmup_steps) / max(1, recipe.steps - recipe.warmup_steps)
    return recipe.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _bucketed_batches(sequences: list[list[int]], batch_size: int, generator: torch.Generator, bucket: int = 16) -> list[list[int]]:
    """One epoch of batches: a seeded shuffle, then texts of similar length grouped (less padding)."""
    order = torch.randperm(len(sequences), generator=generator).tolist()
    batches = []
    for start in range(0, len(order), batch_size * bucket):
        chunk = sorted(order[start : start + batch_size * bucket], key=lambda i: len(sequences[i]))
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    shuffled = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in shuffled]


def _batch(sequences: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad, dtype=torch.long)
    labels = torch.full((len(sequences), width), -100, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(seq)
        labels[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
    return ids, labels, mask


@torch.no_grad()
def evaluate_qa(lm: Any, world: FactsWorld, forms: tuple[str, ...] = ("qa", "qa_heldout", "cloze", "foreign"), entities=None, generate: bool = False) -> dict[str, float]:
    """Exact-match accuracy of greedy answers, per form: with ``generate`` by a generation loop and
    string comparison, else by one teacher-forced pass (the same exact match in token space)."""
    scores = {}
    for form in forms:
        items = world.questions(entities, form=form)
        if generate:
            answers = lm.greedy_answers([t.prompt for t in items], max_new_tokens=3)
            scores[form] = sum(exact_match(p, t.answer) for p, t in zip(answers, items)) / len(items)
        else:
            correct, _ = lm.answer_scores([t.prompt for t in items], [t.answer for t in items])
            scores[form] = float(correct.float().mean())
    return scores


def train_facts_gpt2(recipe: FactsGPT2Recipe, progress: bool = True) -> tuple[Any, Any, FactsWorld, list[float], float]:
    """Train the model; returns (model, tokenizer, world, loss curve, seconds)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(recipe.threads)
    try:
        torch.manual_seed(recipe.seed)
        world = FactsWorld(**recipe.world)
        tokenizer = world.tokenizer()
        eos = tokenizer.eos_token_id
        sequences = [ids + [eos] for ids in tokenizer(world.training_corpus(TRAINING_FORMS))["input_ids"]]
        longest = max(len(s) for s in sequences)
        if longest > recipe.n_positions:
            raise ValueError(f"the longest FactsWorld text has {longest} tokens; raise n_positions (now {recipe.n_positions})")
        config = GPT2Config(
            vocab_size=len(tokenizer), n_positions=recipe.n_positions, n_embd=recipe.n_embd, n_layer=recipe.n_layer, n_head=recipe.n_head,
            n_inner=recipe.n_inner, resid_pdrop=recipe.dropout, embd_pdrop=recipe.dropout, attn_pdrop=recipe.dropout,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=eos, pad_token_id=tokenizer.pad_token_id, attn_implementation="eager",
        )
        model = GPT2LMHeadModel(config)
        model.train()
        decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
        no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
        optimiser = torch.optim.AdamW(
            [{"params": decay, "weight_decay": recipe.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=recipe.lr, betas=(0.9, 0.98)
        )
        generator = torch.Generator().manual_seed(recipe.seed)
        batches: list[list[int]] = []
        losses: list[float] = []
        started = time.perf_counter()
        bar = tqdm(range(recipe.steps), desc="facts-gpt2", disable=not progress, unit="step")
        for step in bar:
            if not batches:
                batches = _bucketed_batches(sequences, recipe.batch_size, generator)
            ids, labels, _ = _batch([sequences[i] for i in batches.pop()], eos)  # pads are never attended to nor scored
            for group in optimiser.param_groups:
                group["lr"] = _lr_at(step, recipe)
            # right padding under a causal mask: no real token attends to a pad, so no attention mask
            loss = model(input_ids=ids, labels=labels).loss
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimiser.step()
            losses.append(round(float(loss.detach()), 4))
            if step % 50 == 0:
                bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
        seconds = time.perf_counter() - started
        model.eval()
        return model, tokenizer, world, losses, seconds
    finally:
        torch.set_num_threads(previous_threads)


def _save(model: Any, tokenizer: Any, world: FactsWorld, card: dict, out_dir: Path) -> None:
    """Write the folder atomically: into a temporary sibling, then renamed into place."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    temp = out_dir.parent / f"{TEMP_PREFIX}{out_dir.name}.{os.getpid()}"
    shutil.rmtree(temp, ignore_errors=True)
    try:
        model.to(torch.float16).save_pretrained(temp, safe_serialization=True)
        model.to(torch.float32)
        tokenizer.save_pretrained(temp)
        sizes = {"n_people": world.n_people, "n_cities": world.n_cities, "n_species": world.n_species, "seed": world.seed, "paragraphs": world.paragraphs}
        atomic_write_json(temp / WORLD_FILE, sizes)
        atomic_write_json(temp / CARD_FILE, card)
        old = out_dir.parent / f"{TEMP_PREFIX}{out_dir.name}.old.{os.getpid()}"
        if out_dir.exists():
            os.replace(out_dir, old)
        os.replace(temp, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise


def build(out_dir: str | os.PathLike, progress: bool = True, evaluate: bool = True, **overrides) -> dict:
    """Train ``zoo:facts-gpt2`` by the recipe (``overrides`` change its fields) into ``out_dir``;
    returns the model card (also written to ``model_card.json``)."""
    recipe = FactsGPT2Recipe(**overrides)
    model, tokenizer, world, losses, seconds = train_facts_gpt2(recipe, progress=progress)
    out_dir = Path(out_dir)
    card: dict[str, Any] = {
        "name": "facts-gpt2",
        "architecture": "GPT2LMHeadModel",
        "recipe": asdict(recipe),
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "vocab_size": len(tokenizer),
        "train_seconds": round(seconds, 1),
        "loss_curve": losses[:: max(1, len(losses) // 100)],
        "final_loss": float(sum(losses[-50:]) / len(losses[-50:])),
        "weights_dtype": "float16",
    }
    _save(model, tokenizer, world, card, out_dir)
    if evaluate:
        lm = load_hf_language_model(out_dir, device="cpu", spec=f"hf:{out_dir}")
        card["exact_match"] = {form: round(score, 4) for form, score in evaluate_qa(lm, world, tuple(f for f in FORMS if f != "paragraph")).items()}
        atomic_write_json(out_dir / CARD_FILE, card)
    return card


def as_language_model(model: Any, tokenizer: Any, spec: str = "facts-gpt2 (in memory)") -> HFLanguageModel:
    """Wrap a freshly trained model (float32, in memory) in the LanguageModel interface."""
    return HFLanguageModel(spec, model, tokenizer, device="cpu")
