"""The recipe for ``zoo:shapes-ddpm``: a small conditional pixel-space DDPM on 32x32 ShapesWorld images.

The model is a diffusers ``UNet2DModel`` (three levels, 16/32/64 channels, one ResNet per level,
attention in the 8x8 middle block) whose time embedding receives, through
``class_embed_type="identity"``, the sum of one learned embedding per attribute family
(:class:`ShapesConditioner`). Any subset of the six families can be requested: an unnamed family
takes its own "unspecified" embedding, so "a red circle" leaves size, fill, background and position
to the model -- which is what the diversity study measures. Training drops each family with
probability ``family_dropout`` and the whole condition with ``null_prob`` (classifier-free
guidance then works).

The model predicts v (``prediction_type="v_prediction"``) and every sampler starts at t = 999
(``timestep_spacing="trailing"``), where the cosine schedule's SNR is ~2e-9. A first run with ε
prediction drew every background from the initial noise instead of the condition -- off-palette
tans and teals, "on a black background" ignored: at near-zero SNR an ε model's x̂0 is its tiny
deviations from x_t amplified ~10^4 times (Stable Diffusion's "no pure black" problem, Lin et al.
2024). v prediction makes the model state x0 outright at the noisiest steps. The loss carries
min-SNR-5 weights (Hang et al., 2023).

The folder the recipe writes is what :func:`load_shapes_model` reads: ``unet_config.json`` +
``unet.safetensors`` (fp16), ``conditioner.safetensors``, ``scheduler_config.json`` (diffusers'
scheduler config, so ``DDIMScheduler.from_config`` reads it), ``model_card.json``; the base model's
folder also holds the attribute reader (``reader.safetensors`` + ``reader.json``).

The reader (:class:`AttributeReader`) reads generated images back into attributes: zoo:shapes-clip
embeddings of the image and, per family, either a logistic-regression probe fitted on real 32-pixel
ShapesWorld images (``"probe"``, the default) or the zero-shot argmax over ``family_prompts``
(``"zero-shot"``). Where we depart: the diversity spec reads zero-shot; zoo:shapes-clip was trained
on 64-pixel images and reads the fill of real 32-pixel ones zero-shot at chance-like levels, so
the probe is the default and both are reported (the model card gives each reader's accuracy on
real images, the ceiling for generated ones).

Only what the recipe needs lives here (layer 3: data, backbones, utils); sampling with recorders,
hybrids and diversity metrics are :mod:`conceptlab.diffusion`.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from conceptlab.data import ATTRIBUTE_VALUES, ShapesWorld, family_prompts
from conceptlab.utils import atomic_write_bytes, atomic_write_text

__all__ = [
    "FAMILIES",
    "RESOLUTION",
    "SCHEDULER_CFG",
    "UNET_CFG",
    "AttributeReader",
    "ShapesConditioner",
    "ShapesDDPMRecipe",
    "ShapesModel",
    "build",
    "condition_codes",
    "condition_text",
    "images_to_tensor",
    "initial_noise",
    "load_shapes_model",
    "make_unet",
    "sample_loop",
    "save_shapes_model",
    "tensor_to_images",
    "train_shapes_ddpm",
]

FAMILIES: tuple[str, ...] = tuple(ATTRIBUTE_VALUES)
RESOLUTION = 32

#: the UNet2DModel config of both zoo diffusion models
UNET_CFG: dict[str, Any] = {
    "sample_size": RESOLUTION,
    "in_channels": 3,
    "out_channels": 3,
    "layers_per_block": 1,
    "block_out_channels": [16, 32, 64],
    "down_block_types": ["DownBlock2D", "DownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "UpBlock2D", "UpBlock2D"],
    "attention_head_dim": 32,
    "norm_num_groups": 8,
    "class_embed_type": "identity",
}

#: the training noise schedule (diffusers scheduler config keys); samplers are built from it
SCHEDULER_CFG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_schedule": "squaredcos_cap_v2",
    "prediction_type": "v_prediction",  # an ε model cannot set the background colour (see the module doc)
    "clip_sample": True,  # pixel space: x0 lives in [-1, 1] (latent models set this False)
    "timestep_spacing": "trailing",  # every sampler starts at t = 999, pure noise
}

_WORD_VALUES = {value.replace("-", " "): (family, value) for family, values in ATTRIBUTE_VALUES.items() for value in values}
_FILLER_WORDS = {"a", "an", "the", "shape", "on", "at", "background", "of", "with", "in", "and", ",", "image", "picture"}


# -- conditions ---------------------------------------------------------------------------------
def condition_codes(condition: str | Mapping[str, str] | None) -> list[int]:
    """One code per family (value index, or ``len(values)`` = unspecified) for a condition given as
    text ("a red circle", "a small striped shape at the top left") or as ``{family: value}``."""
    if condition is None:
        chosen: dict[str, str] = {}
    elif isinstance(condition, Mapping):
        chosen = {}
        for family, value in condition.items():
            if family not in ATTRIBUTE_VALUES:
                raise ValueError(f"unknown attribute family {family!r}; families: {', '.join(FAMILIES)}")
            if value not in ATTRIBUTE_VALUES[family]:
                raise ValueError(f"unknown {family} {value!r}; {family} is one of {', '.join(ATTRIBUTE_VALUES[family])}")
            chosen[family] = value
    elif isinstance(condition, str):
        chosen = {}
        text = " " + re.sub(r"[-_,.]", " ", condition.lower()) + " "
        for phrase in sorted(_WORD_VALUES, key=len, reverse=True):  # "top left" before "left"
            if f" {phrase} " in text:
                family, value = _WORD_VALUES[phrase]
                if family in chosen and chosen[family] != value:
                    raise ValueError(f"condition {condition!r} names two {family} values: {chosen[family]} and {value}")
                chosen[family] = value
                text = text.replace(f" {phrase} ", " ")
        unknown = [w for w in text.split() if w not in _FILLER_WORDS]
        if unknown:
            words = ", ".join(sorted(_WORD_VALUES))
            raise ValueError(f"condition {condition!r}: unknown words {unknown}; ShapesWorld knows: {words}")
    else:
        raise TypeError(f"a condition is text or a {{family: value}} mapping, got {type(condition).__name__}")
    return [ATTRIBUTE_VALUES[f].index(chosen[f]) if f in chosen else len(ATTRIBUTE_VALUES[f]) for f in FAMILIES]


def condition_text(codes: Sequence[int]) -> str:
    """The caption of a code row ("a red circle"; "a shape" when nothing is named)."""
    from conceptlab.data import caption_for

    named = {f: ATTRIBUTE_VALUES[f][c] for f, c in zip(FAMILIES, codes) if c < len(ATTRIBUTE_VALUES[f])}
    row = {f: named.get(f, "?") for f in FAMILIES}
    return caption_for(row, list(named))


class ShapesConditioner(nn.Module):
    """Family codes (B, 6) -> a (B, dim) vector added to the UNet's time embedding: the sum of one
    embedding per family, each family with an extra "unspecified" row."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        sizes = [len(ATTRIBUTE_VALUES[f]) + 1 for f in FAMILIES]
        self.register_buffer("offsets", torch.tensor(np.cumsum([0, *sizes[:-1]]), dtype=torch.long), persistent=False)
        self.embedding = nn.Embedding(sum(sizes), dim)
        nn.init.normal_(self.embedding.weight, std=0.02)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return self.embedding(codes.long() + self.offsets).sum(dim=1)


def make_unet(config: Mapping[str, Any] | None = None):
    """A fresh ``UNet2DModel`` (default :data:`UNET_CFG`)."""
    from diffusers import UNet2DModel

    return UNet2DModel(**dict(config or UNET_CFG))


def _time_embed_dim(unet) -> int:
    return int(unet.time_embedding.linear_2.out_features)


@dataclass
class ShapesModel:
    """A zoo diffusion model: UNet, conditioner, its scheduler config and card."""

    unet: Any
    conditioner: ShapesConditioner
    scheduler_config: dict
    card: dict = field(default_factory=dict)
    folder: Path | None = None

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one sample."""
        size = self.unet.config.sample_size
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        return (int(self.unet.config.in_channels), int(h), int(w))

    def eval(self) -> ShapesModel:
        self.unet.eval()
        self.conditioner.eval()
        return self

    @torch.no_grad()
    def predict(self, x: torch.Tensor, t: torch.Tensor | int, codes: torch.Tensor, guidance_scale: float = 1.0) -> torch.Tensor:
        """The (guided) model output at ``x``, timestep ``t``: ``guidance_scale <= 1`` is the
        conditional prediction alone (diffusers' convention), above 1 classifier-free guidance
        ``u + g (c - u)`` against the all-unspecified condition."""
        if guidance_scale > 1.0:
            null = torch.tensor([len(ATTRIBUTE_VALUES[f]) for f in FAMILIES]).expand_as(codes)
            tt = torch.cat([t, t]) if isinstance(t, torch.Tensor) and t.ndim == 1 and len(t) > 1 else t
            both = self.unet(torch.cat([x, x]), tt, class_labels=self.conditioner(torch.cat([null, codes]))).sample
            uncond, cond = both.chunk(2)
            return uncond + guidance_scale * (cond - uncond)
        return self.unet(x, t, class_labels=self.conditioner(codes)).sample


def save_shapes_model(model: ShapesModel, out_dir: str | os.PathLike) -> Path:
    """Write the folder :func:`load_shapes_model` reads (fp16 weights, atomic writes)."""
    from safetensors.torch import save

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    unet_state = {k: v.detach().half().contiguous() for k, v in model.unet.state_dict().items()}
    atomic_write_bytes(out / "unet.safetensors", save(unet_state))
    atomic_write_bytes(out / "conditioner.safetensors", save({"embedding.weight": model.conditioner.embedding.weight.detach().half().contiguous()}))
    atomic_write_text(out / "unet_config.json", json.dumps(dict(model.unet.config), indent=2, default=list))
    atomic_write_text(out / "scheduler_config.json", json.dumps(model.scheduler_config, indent=2))
    atomic_write_text(out / "model_card.json", json.dumps(model.card, indent=2))
    return out


def load_shapes_model(folder: str | os.PathLike, dtype: torch.dtype = torch.float32) -> ShapesModel:
    """Read a folder written by :func:`save_shapes_model` (weights upcast to ``dtype``)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    missing = [n for n in ("unet_config.json", "unet.safetensors", "conditioner.safetensors", "scheduler_config.json") if not (folder / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} is not a shapes diffusion model folder: missing {', '.join(missing)}")
    config = json.loads((folder / "unet_config.json").read_text())
    config = {k: v for k, v in config.items() if not k.startswith("_")}
    unet = make_unet(config)
    unet.load_state_dict({k: v.to(dtype) for k, v in load_file(folder / "unet.safetensors").items()})
    unet = unet.to(dtype) if dtype != torch.float32 else unet
    conditioner = ShapesConditioner(_time_embed_dim(unet))
    conditioner.load_state_dict({k: v.to(dtype) for k, v in load_file(folder / "conditioner.safetensors").items()})
    card_file = folder / "model_card.json"
    card = json.loads(card_file.read_text()) if card_file.is_file() else {}
    model = ShapesModel(unet, conditioner.to(dtype), json.loads((folder / "scheduler_config.json").read_text()), card, folder)
    return model.eval()


# -- images ---------------------------------------------------------------------------------------
def images_to_tensor(images: Sequence[Any]) -> torch.Tensor:
    """PIL images -> (N, 3, H, W) float tensor in [-1, 1]."""
    arrays = np.stack([np.asarray(im.convert("RGB"), dtype=np.uint8) for im in images])
    return torch.from_numpy(arrays).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def tensor_to_images(x: torch.Tensor) -> list:
    """(N, 3, H, W) tensor in [-1, 1] -> PIL images (clamped)."""
    from PIL import Image

    arrays = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(a, "RGB") for a in arrays]


def initial_noise(seeds: Sequence[int], shape: Sequence[int] = (3, RESOLUTION, RESOLUTION)) -> torch.Tensor:
    """One standard-normal sample per seed, drawn from its own generator (a seed gives the same
    noise whatever else is in the batch)."""
    return torch.stack([torch.randn(tuple(shape), generator=torch.Generator().manual_seed(int(s))) for s in seeds])


# -- sampling -------------------------------------------------------------------------------------
@torch.no_grad()
def sample_loop(
    model: ShapesModel,
    scheduler,
    codes: torch.Tensor,
    latents: torch.Tensor,
    num_inference_steps: int | None = None,
    guidance_scale: float = 1.0,
    generators: list[torch.Generator] | None = None,
    timesteps: Sequence[int] | None = None,
    callback: Callable[[int, Any, torch.Tensor], Any] | None = None,
    should_stop: Callable[[], bool] | None = None,
    scale_initial: bool = True,
) -> torch.Tensor:
    """The plain diffusers sampling loop: ``set_timesteps``, then per timestep ``scale_model_input``,
    the (guided) model output and one ``scheduler.step``. ``timesteps`` runs a given slice of an
    already-set schedule (the hybrid sampler); ``callback(i, t, latents)`` runs after each step;
    ``should_stop()`` ends the loop early (a recorder's ``stop_at``). Returns the last latents."""
    if timesteps is None:
        scheduler.set_timesteps(num_inference_steps)
        timesteps = scheduler.timesteps
    if scale_initial:
        latents = latents * getattr(scheduler, "init_noise_sigma", 1.0)
    step_kwargs: dict[str, Any] = {}
    if generators is not None and "generator" in _step_parameters(scheduler):
        step_kwargs["generator"] = generators if len(generators) > 1 else generators[0]
    for i, t in enumerate(timesteps):
        model_input = scheduler.scale_model_input(latents, t) if hasattr(scheduler, "scale_model_input") else latents
        output = model.predict(model_input, t, codes, guidance_scale)
        latents = scheduler.step(output, t, latents, **step_kwargs, return_dict=False)[0]
        if callback is not None:
            callback(i, t, latents)
        if should_stop is not None and should_stop():
            break
    return latents


def _step_parameters(scheduler) -> set[str]:
    import inspect

    return set(inspect.signature(type(scheduler).step).parameters)


def _codes_tensor(condition, n: int) -> torch.Tensor:
    return torch.tensor([condition_codes(condition)] * n, dtype=torch.long)


# -- the attribute reader -------------------------------------------------------------------------
class AttributeReader:
    """Reads ShapesWorld attributes from images through zoo:shapes-clip: per family, a logistic
    probe on the image embedding (``mode="probe"``) or the zero-shot argmax over the family's
    prompts (``mode="zero-shot"``)."""

    def __init__(self, backbone, probes: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None) -> None:
        self.backbone = backbone
        self.probes = probes or {}
        self._text: dict[str, torch.Tensor] = {}

    def embed(self, images: Sequence[Any] | torch.Tensor) -> torch.Tensor:
        """(N, d) unit-norm zoo-CLIP embeddings of PIL images or a (N, 3, H, W) tensor in [-1, 1]."""
        if isinstance(images, torch.Tensor):
            images = tensor_to_images(images)
        out = [self.backbone.encode_images(list(images[i : i + 256])) for i in range(0, len(images), 256)]
        return F.normalize(torch.cat(out), dim=-1)

    @torch.no_grad()
    def logits(self, embeddings: torch.Tensor, family: str, mode: str = "probe") -> torch.Tensor:
        if mode == "probe":
            if family not in self.probes:
                raise ValueError("this reader has no probes (fit them with AttributeReader.fit or read with mode='zero-shot')")
            weight, bias = self.probes[family]
            return embeddings @ weight.T + bias
        if mode == "zero-shot":
            if family not in self._text:
                self._text[family] = F.normalize(self.backbone.encode_texts(family_prompts(family)), dim=-1)
            return embeddings @ self._text[family].T
        raise ValueError(f"unknown reader mode {mode!r}; use 'probe' or 'zero-shot'")

    def read_embeddings(self, embeddings: torch.Tensor, mode: str = "probe") -> dict[str, list[str]]:
        """family -> the value read for each embedding."""
        return {f: [ATTRIBUTE_VALUES[f][int(k)] for k in self.logits(embeddings, f, mode).argmax(dim=1)] for f in FAMILIES}

    def read(self, images, mode: str = "probe") -> dict[str, list[str]]:
        return self.read_embeddings(self.embed(images), mode)

    @classmethod
    def fit(cls, backbone, n_images: int = 3000, seed: int = 1, C: float = 10.0, progress: bool = False) -> AttributeReader:
        """Fit one multinomial logistic probe per family on ``n_images`` real 32-pixel ShapesWorld
        images (``train`` split, uniform backgrounds)."""
        from sklearn.linear_model import LogisticRegression

        data = ShapesWorld("train", size=n_images, seed=seed, resolution=RESOLUTION, spurious_strength=0.25)
        reader = cls(backbone)
        images = [data.image(i) for i in tqdm(range(len(data)), desc="rendering reader images", disable=not progress)]
        x = reader.embed(images).numpy()
        for family in FAMILIES:
            truth = data.attributes[family].map({v: k for k, v in enumerate(ATTRIBUTE_VALUES[family])}).to_numpy()
            clf = LogisticRegression(C=C, max_iter=3000).fit(x, truth)
            reader.probes[family] = (torch.tensor(clf.coef_, dtype=torch.float32), torch.tensor(clf.intercept_, dtype=torch.float32))
        return reader

    def accuracy(self, images, attributes: Mapping[str, Sequence[str]], mode: str = "probe") -> dict[str, float]:
        read = self.read(images, mode)
        return {f: float(np.mean([a == b for a, b in zip(read[f], attributes[f])])) for f in FAMILIES if f in attributes}

    def save(self, folder: str | os.PathLike) -> None:
        from safetensors.torch import save

        tensors = {}
        for family, (weight, bias) in self.probes.items():
            tensors[f"{family}.weight"] = weight.contiguous()
            tensors[f"{family}.bias"] = bias.contiguous()
        atomic_write_bytes(Path(folder) / "reader.safetensors", save(tensors))
        meta = {"backbone": self.backbone.spec, "backbone_fingerprint": self.backbone.fingerprint, "values": {f: list(v) for f, v in ATTRIBUTE_VALUES.items()}}
        atomic_write_text(Path(folder) / "reader.json", json.dumps(meta, indent=2))

    @classmethod
    def load(cls, folder: str | os.PathLike, backbone) -> AttributeReader:
        from safetensors.torch import load_file

        folder = Path(folder)
        if not (folder / "reader.safetensors").is_file():
            raise FileNotFoundError(f"no attribute reader in {folder} (reader.safetensors); fit one with AttributeReader.fit(backbone)")
        meta = json.loads((folder / "reader.json").read_text())
        if meta.get("backbone_fingerprint") not in (None, backbone.fingerprint):
            raise ValueError(f"the reader in {folder} was fitted on another {meta.get('backbone')} (weights changed); refit it with AttributeReader.fit")
        tensors = load_file(folder / "reader.safetensors")
        return cls(backbone, {f: (tensors[f"{f}.weight"].float(), tensors[f"{f}.bias"].float()) for f in FAMILIES})


def _shapes_clip():
    from conceptlab.backbones import load_local_dir
    from conceptlab.zoo.catalog import zoo_path

    return load_local_dir(zoo_path("shapes-clip"), device="cpu", spec="zoo:shapes-clip")


# -- evaluation -----------------------------------------------------------------------------------
@torch.no_grad()
def conditional_accuracy(
    model: ShapesModel,
    reader: AttributeReader,
    scheduler,
    num_inference_steps: int,
    guidance_scale: float,
    per_value: int = 8,
    seed: int = 10_000,
    mode: str = "probe",
    batch_size: int = 64,
    progress: bool = False,
) -> dict[str, float]:
    """Per family: request each value alone (the other families unspecified), sample ``per_value``
    seeds, read the family back; the share read as requested."""
    requests = [(f, v) for f in FAMILIES for v in ATTRIBUTE_VALUES[f] for _ in range(per_value)]
    codes = torch.tensor([condition_codes({f: v}) for f, v in requests])
    seeds = [seed + i for i in range(len(requests))]
    images = []
    for start in tqdm(range(0, len(requests), batch_size), desc="sampling for evaluation", disable=not progress):
        sl = slice(start, start + batch_size)
        generators = [torch.Generator().manual_seed(s + 7_919) for s in seeds[sl]]
        out = sample_loop(model, scheduler, codes[sl], initial_noise(seeds[sl], model.sample_shape), num_inference_steps, guidance_scale, generators)
        images.extend(tensor_to_images(out))
    read = reader.read(images, mode)
    hits: dict[str, list[bool]] = {f: [] for f in FAMILIES}
    for i, (family, value) in enumerate(requests):
        hits[family].append(read[family][i] == value)
    return {f: round(float(np.mean(h)), 3) for f, h in hits.items()}


# -- training -------------------------------------------------------------------------------------
@dataclass
class ShapesDDPMRecipe:
    """Every knob of the base recipe; the model card records the values used."""

    steps: int = 2400
    batch_size: int = 32  # 2400 x 32 fits the 10-minute budget on 2 CPU cores (2500 x 64 took 19 min)
    pool_size: int = 8000  # pre-rendered 32-pixel training images (uniform backgrounds)
    lr: float = 2e-3
    warmup_steps: int = 50
    weight_decay: float = 0.0
    family_dropout: float = 0.5  # each family is left unspecified with this probability
    null_prob: float = 0.1  # the whole condition is dropped (classifier-free guidance)
    min_snr_gamma: float = 5.0  # min-SNR loss weighting (Hang et al. 2023); 0 turns it off
    ema_decay: float = 0.995
    seed: int = 0
    threads: int = 2
    eval_steps: int = 25  # DDIM steps of the evaluation samples
    eval_guidance: float = 2.0
    eval_per_value: int = 8
    reader_images: int = 3000
    unet_cfg: dict = field(default_factory=lambda: json.loads(json.dumps(UNET_CFG)))
    scheduler_cfg: dict = field(default_factory=lambda: dict(SCHEDULER_CFG))


def _lr_at(step: int, lr: float, warmup: int, total: int) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    return lr * 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def _training_pool(size: int, seed: int, progress: bool) -> tuple[torch.Tensor, torch.Tensor]:
    data = ShapesWorld("train", size=size, seed=seed, resolution=RESOLUTION, spurious_strength=0.25)
    images = [data.image(i) for i in tqdm(range(size), desc="rendering the training pool", disable=not progress)]
    codes = torch.tensor(
        np.stack([data.attributes[f].map({v: k for k, v in enumerate(ATTRIBUTE_VALUES[f])}).to_numpy() for f in FAMILIES], axis=1), dtype=torch.long
    )
    return images_to_tensor(images), codes


def _drop_families(codes: torch.Tensor, generator: torch.Generator, family_dropout: float, null_prob: float) -> torch.Tensor:
    unspecified = torch.tensor([len(ATTRIBUTE_VALUES[f]) for f in FAMILIES])
    drop = torch.rand(codes.shape, generator=generator) < family_dropout
    drop |= torch.rand((codes.shape[0], 1), generator=generator) < null_prob
    return torch.where(drop, unspecified.expand_as(codes), codes)


def _ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    with torch.no_grad():
        for e, p in zip(ema.parameters(), model.parameters()):
            e.lerp_(p, 1.0 - decay)


def train_shapes_ddpm(out_dir: str | os.PathLike, recipe: ShapesDDPMRecipe | None = None, progress: bool = True, evaluate: bool = True) -> dict:
    """Train the base model, save it (with the attribute reader when ``evaluate``) in ``out_dir``,
    return its card."""
    from diffusers import DDIMScheduler, DDPMScheduler

    recipe = recipe or ShapesDDPMRecipe()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(recipe.threads)
    started = time.time()
    try:
        torch.manual_seed(recipe.seed)
        generator = torch.Generator().manual_seed(recipe.seed)
        images, all_codes = _training_pool(recipe.pool_size, recipe.seed, progress)
        render_seconds = time.time() - started
        noise_scheduler = DDPMScheduler(**recipe.scheduler_cfg)
        alphas_cumprod = noise_scheduler.alphas_cumprod
        unet = make_unet(recipe.unet_cfg)
        conditioner = ShapesConditioner(_time_embed_dim(unet))
        modules = nn.ModuleList([unet, conditioner])
        ema = copy.deepcopy(modules).eval().requires_grad_(False)
        optimizer = torch.optim.AdamW(modules.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
        snr = alphas_cumprod / (1 - alphas_cumprod)
        losses = []
        bar = tqdm(range(recipe.steps), desc="training zoo:shapes-ddpm", disable=not progress)
        for step in bar:
            for group in optimizer.param_groups:
                group["lr"] = _lr_at(step, recipe.lr, recipe.warmup_steps, recipe.steps)
            idx = torch.randint(len(images), (recipe.batch_size,), generator=generator)
            x0 = images[idx]
            codes = _drop_families(all_codes[idx], generator, recipe.family_dropout, recipe.null_prob)
            noise = torch.randn(x0.shape, generator=generator)
            t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (recipe.batch_size,), generator=generator)
            x_t = noise_scheduler.add_noise(x0, noise, t)
            pred = unet(x_t, t, class_labels=conditioner(codes)).sample
            v_prediction = noise_scheduler.config.prediction_type == "v_prediction"
            target = noise_scheduler.get_velocity(x0, noise, t) if v_prediction else noise
            per_sample = F.mse_loss(pred, target, reduction="none").mean(dim=(1, 2, 3))
            if recipe.min_snr_gamma > 0:  # min(SNR, γ) / SNR for ε, / (SNR + 1) for v
                per_sample = per_sample * torch.clamp(snr[t], max=recipe.min_snr_gamma) / (snr[t] + 1 if v_prediction else snr[t])
            loss = per_sample.mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(modules.parameters(), 1.0)
            optimizer.step()
            _ema_update(ema, modules, min(recipe.ema_decay, (1 + step) / (10 + step)))
            losses.append(float(loss.detach()))
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
        train_seconds = time.time() - started
        model = ShapesModel(ema[0], ema[1], dict(recipe.scheduler_cfg)).eval()
        card: dict[str, Any] = {
            "name": "shapes-ddpm",
            "recipe": asdict(recipe),
            "render_seconds": round(render_seconds, 1),
            "train_seconds": round(train_seconds, 1),
            "torch_threads": recipe.threads,
            "parameters": sum(p.numel() for p in modules.parameters()),
            "final_loss": round(float(np.mean(losses[-50:])), 4),
            "loss_curve": [round(v, 4) for v in losses[:: max(1, len(losses) // 50)]],
            "sampler": {"name": "ddim", "num_inference_steps": recipe.eval_steps, "guidance_scale": recipe.eval_guidance},
        }
        model.card = card
        out = save_shapes_model(model, out_dir)
        if evaluate:
            model = load_shapes_model(out)  # evaluate what was saved (fp16 weights)
            reader = AttributeReader.fit(_shapes_clip(), n_images=recipe.reader_images, progress=progress)
            reader.save(out)
            card["reader_accuracy_real_32px"] = _reader_accuracy(reader)
            scheduler = DDIMScheduler.from_config(model.scheduler_config)
            card["conditional_accuracy"] = {
                mode: conditional_accuracy(model, reader, scheduler, recipe.eval_steps, recipe.eval_guidance, recipe.eval_per_value, mode=mode, progress=progress)
                for mode in ("probe",)
            }
            card["eval_seconds"] = round(time.time() - started - train_seconds, 1)
            atomic_write_text(out / "model_card.json", json.dumps(card, indent=2))
        return card
    finally:
        torch.set_num_threads(previous_threads)


def _reader_accuracy(reader: AttributeReader, n: int = 600) -> dict[str, dict[str, float]]:
    test = ShapesWorld("test", size=n, seed=0, resolution=RESOLUTION, spurious_strength=0.25)
    images = [test.image(i) for i in range(n)]
    truth = {f: list(test.attributes[f]) for f in FAMILIES}
    return {mode: {f: round(a, 3) for f, a in reader.accuracy(images, truth, mode).items()} for mode in ("probe", "zero-shot")}


def build(out_dir: str | os.PathLike, progress: bool = True, evaluate: bool = True, **recipe_overrides) -> dict:
    """The zoo's entry point (``conceptlab zoo build shapes-ddpm``): :func:`train_shapes_ddpm` with
    :class:`ShapesDDPMRecipe` ``(**recipe_overrides)``."""
    return train_shapes_ddpm(out_dir, ShapesDDPMRecipe(**recipe_overrides), progress=progress, evaluate=evaluate)
