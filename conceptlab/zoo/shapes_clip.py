"""The recipe for ``zoo:shapes-clip``: open_clip's own CLIP, small, trained on ShapesWorld captions.

The image tower is open_clip's ModifiedResNet (layers 1,1,1,1, width 32, 64x64 input): on this
world a small convolutional tower learns shape and position far faster than a ViT of equal cost.
The text tower is a small transformer over open_clip's standard BPE tokenizer. Training is
deterministic on a given machine: seeded sampling, seeded init, fixed thread count.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from conceptlab.data import ATTRIBUTE_VALUES, ShapesWorld, caption_for, family_prompts
from conceptlab.utils import atomic_write_bytes, atomic_write_text

__all__ = ["ShapesClipRecipe", "build", "train_shapes_clip", "zero_shot_accuracy", "family_prompts", "MODEL_CFG"]

MEAN = (0.48145466, 0.4578275, 0.40821073)  # open_clip's OPENAI_DATASET_MEAN
STD = (0.26862954, 0.26130258, 0.27577711)

MODEL_CFG = {
    "embed_dim": 64,
    "vision_cfg": {"layers": [1, 1, 1, 1], "width": 32, "image_size": 64},
    "text_cfg": {"context_length": 24, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 2},
}


@dataclass
class ShapesClipRecipe:
    """Every knob of the recipe; the saved model card records the values used."""

    steps: int = 400
    batch_size: int = 256
    pool_size: int = 12000  # pre-rendered training images; captions are re-drawn every step
    lr: float = 2e-3
    weight_decay: float = 0.1
    warmup_steps: int = 25
    seed: int = 0
    threads: int = 2
    model_cfg: dict = field(default_factory=lambda: json.loads(json.dumps(MODEL_CFG)))


def _images_to_tensor(dataset: ShapesWorld, indices) -> torch.Tensor:
    """Rendered images as one normalised float tensor (N, 3, H, W)."""
    arrays = np.stack([np.asarray(dataset.image(int(i)), dtype=np.uint8) for i in indices])
    images = torch.from_numpy(arrays).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (images - mean) / std


@torch.no_grad()
def zero_shot_accuracy(backbone, dataset: ShapesWorld, batch_size: int = 256) -> dict[str, float]:
    """Per family: prompt every value, take the argmax over the image's similarities."""
    images = []
    for start in range(0, len(dataset), batch_size):
        batch = [dataset.image(i) for i in range(start, min(start + batch_size, len(dataset)))]
        images.append(backbone.encode_images(batch))
    image_emb = F.normalize(torch.cat(images), dim=-1)
    scores = {}
    for family, values in ATTRIBUTE_VALUES.items():
        text_emb = F.normalize(backbone.encode_texts(family_prompts(family)), dim=-1)
        predicted = (image_emb @ text_emb.T).argmax(dim=1).numpy()
        truth = dataset.attributes[family].map({v: k for k, v in enumerate(values)}).to_numpy()
        scores[family] = float((predicted == truth).mean())
    return scores


def _lr_at(step: int, recipe: ShapesClipRecipe) -> float:
    if step < recipe.warmup_steps:
        return recipe.lr * (step + 1) / recipe.warmup_steps
    progress = (step - recipe.warmup_steps) / max(1, recipe.steps - recipe.warmup_steps)
    return recipe.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def train_shapes_clip(
    out_dir: str | os.PathLike,
    recipe: ShapesClipRecipe | None = None,
    progress: bool = True,
    evaluate: bool = True,
) -> dict:
    """Train the model, save it as an open_clip folder in ``out_dir``, return its card.

    The folder holds ``open_clip_config.json`` + ``open_clip_model.safetensors`` (fp16), i.e. the
    layout ``local-dir:`` loads, plus ``model_card.json`` with the recipe and measured accuracy.
    """
    import open_clip
    from safetensors.torch import save

    recipe = recipe or ShapesClipRecipe()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(recipe.threads)
    started = time.time()
    try:
        torch.manual_seed(recipe.seed)
        rng = np.random.default_rng(recipe.seed)
        pool = ShapesWorld("train", size=recipe.pool_size, seed=recipe.seed)
        images = _images_to_tensor(pool, range(len(pool)))
        rows = pool.attributes.to_dict("records")
        families = list(ATTRIBUTE_VALUES)

        model = open_clip.CLIP(**recipe.model_cfg)
        # channels-last convolutions run about a quarter faster on CPU for this tower
        model.visual.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
        tokenizer = open_clip.get_tokenizer("RN50", context_length=recipe.model_cfg["text_cfg"]["context_length"])
        decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
        no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": recipe.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=recipe.lr,
            betas=(0.9, 0.98),
            eps=1e-6,
        )
        model.train()
        losses = []
        bar = tqdm(range(recipe.steps), desc="training zoo:shapes-clip", disable=not progress)
        for step in bar:
            for group in optimizer.param_groups:
                group["lr"] = _lr_at(step, recipe)
            idx = rng.choice(len(pool), size=recipe.batch_size, replace=False)
            captions = []
            for i in idx:
                chosen = [f for f in families if rng.random() < 0.6] or [families[rng.integers(len(families))]]
                captions.append(caption_for(rows[i], chosen))
            image_features = F.normalize(model.encode_image(images[idx]), dim=-1)
            text_features = F.normalize(model.encode_text(tokenizer(captions)), dim=-1)
            logits = model.logit_scale.exp() * image_features @ text_features.T
            # identical captions in a batch are not negatives of each other: soft targets over them
            same = torch.tensor([[a == b for b in captions] for a in captions], dtype=torch.float32)
            targets = same / same.sum(dim=1, keepdim=True)
            loss = 0.5 * (
                torch.sum(-targets * F.log_softmax(logits, dim=1), dim=1).mean()
                + torch.sum(-targets * F.log_softmax(logits.T, dim=1), dim=1).mean()
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
            losses.append(float(loss.detach()))
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
        train_seconds = time.time() - started

        model.eval()
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().half().contiguous() for k, v in model.state_dict().items()}
        atomic_write_bytes(out / "open_clip_model.safetensors", save(state))
        config = {
            "model_cfg": recipe.model_cfg,
            "preprocess_cfg": {"mean": list(MEAN), "std": list(STD), "interpolation": "bicubic", "resize_mode": "shortest"},
        }
        atomic_write_text(out / "open_clip_config.json", json.dumps(config, indent=2))
        card = {
            "name": "shapes-clip",
            "recipe": asdict(recipe),
            "train_seconds": round(train_seconds, 1),
            "torch_threads": recipe.threads,
            "final_loss": round(float(np.mean(losses[-20:])), 4),
            "loss_curve": [round(v, 4) for v in losses[:: max(1, len(losses) // 50)]],
        }
        if evaluate:
            from conceptlab.backbones import load_local_dir

            test = ShapesWorld("test", size=2000, seed=0)
            card["zero_shot_test"] = zero_shot_accuracy(load_local_dir(out, device="cpu"), test)
        atomic_write_text(out / "model_card.json", json.dumps(card, indent=2))
        return card
    finally:
        torch.set_num_threads(previous_threads)


def build(out_dir: str | os.PathLike, progress: bool = True, evaluate: bool = True, **recipe_overrides) -> dict:
    """The zoo's entry point (``conceptlab zoo build shapes-clip``): :func:`train_shapes_clip` with
    :class:`ShapesClipRecipe` ``(**recipe_overrides)``."""
    return train_shapes_clip(out_dir, ShapesClipRecipe(**recipe_overrides), progress=progress, evaluate=evaluate)
