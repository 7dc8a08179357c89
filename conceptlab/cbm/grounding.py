"""Concepts grounded in pixels: where in the image does a concept score look, and is it the right place?

"Can we Constrain Concept Bottleneck Models to Learn Semantically Meaningful Input Features?"
asks whether a concept such as *blue background* is computed from the background at all. On
ShapesWorld the answer can be graded: every image comes with masks of its shape and its
background (``ShapesWorld.masks``), and each attribute family lives in one of them (colour, size,
fill, shape and position on the shape; the background on the background).

1. A **score function** maps preprocessed pixels (N, 3, H, W) to concept scores (N, C) through the
   backbone's image tower, differentiably: :func:`cbm_score_function` (a fitted CBM's concept
   layer) or :func:`sae_score_function` (the latents of a sparse autoencoder).
2. An **attribution** of one concept's score to the pixels: :func:`integrated_gradients`
   (Sundararajan et al. 2017; midpoint Riemann sum, averaged over random baselines) and
   :func:`occlusion` (Zeiler & Fergus 2014; the score drop when a patch is covered).
3. **Grading** against the concept's region (:func:`grade_grounding`): the *pointing game*
   (Zhang et al. 2016: does the most positively attributed pixel fall in the region, within
   ``tolerance`` pixels?) and the *mass in mask* (the share of positive attribution inside the
   region). Both are reported beside the region's area, which is what a map that looks
   everywhere would get by chance, and with bootstrap intervals over the images.

Gradients run through the backbone, so this module needs the backbone's ``model.encode_image``
and ``preprocess`` (open_clip's); it does not go through the activation store.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from conceptlab.data.rendering import FAMILY_REGIONS
from conceptlab.metrics import DEFAULT_LEVEL, bootstrap_mean_ci

__all__ = [
    "ATTRIBUTION_METHODS",
    "BASELINES",
    "GroundingResult",
    "attribution_map",
    "cbm_score_function",
    "concept_region",
    "differentiable_layer",
    "grade_grounding",
    "ground_model",
    "ground_sae",
    "integrated_gradients",
    "mass_in_mask",
    "occlusion",
    "pointing_hit",
    "preprocess_images",
    "sae_concept_columns",
    "sae_score_function",
]

ATTRIBUTION_METHODS = ("integrated_gradients", "occlusion")
BASELINES = ("noise", "zeros")
ScoreFunction = Callable[[torch.Tensor], torch.Tensor]


# ------------------------------------------------------------------------------------------------
# score functions: pixels -> concept scores, differentiable
# ------------------------------------------------------------------------------------------------


def preprocess_images(backbone: Any, images: Sequence[Any]) -> torch.Tensor:
    """(N, 3, H, W) float32 inputs of the backbone's image tower, from PIL images."""
    images = list(images)
    if not images:
        raise ValueError("no images")
    return torch.stack([backbone.preprocess(image.convert("RGB")) for image in images]).float()


def _encoder(backbone: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    model = getattr(backbone, "model", None)
    if model is None or not hasattr(model, "encode_image"):
        raise TypeError(f"attribution needs a backbone with model.encode_image (an open_clip backbone), got {type(backbone).__name__}")
    parameter = next(iter(model.parameters()), None)
    device = parameter.device if parameter is not None else torch.device("cpu")

    def encode(x: torch.Tensor) -> torch.Tensor:
        return model.encode_image(x.to(device)).float().cpu()

    return encode


def differentiable_layer(layer: Any, dim: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """A fitted concept layer's ``scores`` as a function that keeps the gradient.

    Layers validate (and so detach) their input; this rebuilds the same map from its fitted state:
    a calibrated layer is its calibration on its inner layer, an SAE encoder layer the SAE's
    sae-lens module, and any other layer must be affine in the embedding (margin, dot, LF-CBM's
    projection): its map is read off at 0 and at the unit vectors and checked on random inputs."""
    from conceptlab.cbm.calibration import CalibratedLayer
    from conceptlab.cbm.layers import DotLayer, SAEEncoderLayer

    if isinstance(layer, CalibratedLayer):
        inner = differentiable_layer(layer.inner_, dim)
        return lambda X: layer.calibrator_.probabilities(inner(X))
    if isinstance(layer, SAEEncoderLayer):
        module = layer.sae_.sae_
        return lambda X: module.encode(X.to(module.W_dec.device)).float().cpu()
    normalize = isinstance(layer, DotLayer) and layer.normalize_images
    with torch.no_grad():
        if normalize:  # x·c on unit images: read the vectors off the bank
            A, c = layer.bank_.vectors.T.float(), torch.zeros(len(layer.bank_))
        else:
            c = layer.scores(torch.zeros(1, dim))[0]
            A = layer.scores(torch.eye(dim)) - c
        probe = torch.randn(8, dim, generator=torch.Generator().manual_seed(0)) * 10
        expected = layer.scores(probe)
        got = (torch.nn.functional.normalize(probe, dim=1) if normalize else probe) @ A + c
        if not torch.allclose(got, expected, rtol=1e-3, atol=1e-3 * float(expected.abs().max().clamp_min(1))):
            raise TypeError(f"{type(layer).__name__} is not affine in the embedding: give a score function that keeps the gradient")
    if normalize:
        return lambda X: torch.nn.functional.normalize(X, dim=1) @ A + c
    return lambda X: X @ A + c


def cbm_score_function(backbone: Any, model: Any) -> ScoreFunction:
    """Pixels -> a fitted CBM's concept scores (its concept layer on the backbone's embedding)."""
    model._check_fitted()
    encode = _encoder(backbone)
    scores = differentiable_layer(model.concept_layer_, model.bank_.dim)
    return lambda x: scores(encode(x))


def sae_score_function(backbone: Any, sae: Any) -> ScoreFunction:
    """Pixels -> the latent activations of a fitted :class:`~conceptlab.discovery.SparseAutoencoder`
    (its sae-lens module's ``encode``, which keeps the gradient)."""
    sae._check_fitted()
    encode, module = _encoder(backbone), sae.sae_
    return lambda x: module.encode(encode(x).to(module.W_dec.device)).float().cpu()


def sae_concept_columns(names: Sequence[str | None], concept_names: Sequence[str]) -> dict[int, str]:
    """Latent index -> the ShapesWorld concept its name names (``discovery.grading.name_matches``);
    latents whose name names no concept are left out."""
    from conceptlab.discovery.grading import name_matches

    out = {}
    for m, name in enumerate(names):
        named = [c for c in concept_names if name_matches(name, c)]
        if named:
            out[m] = named[0]
    return out


# ------------------------------------------------------------------------------------------------
# attributions
# ------------------------------------------------------------------------------------------------


def _targets(targets: int | Sequence[int] | torch.Tensor, n: int) -> torch.Tensor:
    t = torch.as_tensor(targets, dtype=torch.long).reshape(-1)
    if t.numel() == 1:
        t = t.expand(n)
    if t.numel() != n:
        raise ValueError(f"{t.numel()} targets for {n} inputs: give one concept index, or one per input")
    return t.clone()


def _baselines(inputs: torch.Tensor, baseline: str | torch.Tensor, n_baselines: int, seed: int) -> list[torch.Tensor]:
    if isinstance(baseline, torch.Tensor):
        return [baseline.expand_as(inputs).to(inputs.dtype)]
    if baseline == "zeros":  # the preprocessing's mean colour, in normalised inputs
        return [torch.zeros_like(inputs)]
    if baseline == "noise":  # random images around the mean colour (normalised N(0, 1)), averaged over
        generator = torch.Generator().manual_seed(int(seed))
        return [torch.randn(inputs.shape, generator=generator, dtype=inputs.dtype) for _ in range(int(n_baselines))]
    raise ValueError(f"baseline must be one of {BASELINES} or a tensor, got {baseline!r}")


def integrated_gradients(
    score_fn: ScoreFunction,
    inputs: torch.Tensor,
    targets: int | Sequence[int] | torch.Tensor,
    baseline: str | torch.Tensor = "noise",
    steps: int = 16,
    n_baselines: int = 2,
    seed: int = 0,
    batch_size: int = 64,
) -> torch.Tensor:
    """Integrated gradients of concept ``targets`` (one per input) w.r.t. the inputs (N, 3, H, W).

    IG_i = (x_i − x'_i) · mean over α of ∂f(x' + α(x − x'))/∂x_i, α at the midpoints of ``steps``
    equal intervals; with ``baseline="noise"`` averaged over ``n_baselines`` seeded random
    baselines. Completeness: the attributions of an input sum to f(x) − f(x') (up to the Riemann
    error), which the tests check.
    """
    x = inputs.detach().float()
    t = _targets(targets, len(x))
    if int(steps) < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    alphas = (torch.arange(int(steps), dtype=x.dtype) + 0.5) / int(steps)
    total = torch.zeros_like(x)
    bases = _baselines(x, baseline, n_baselines, seed)
    for base in bases:
        grads = torch.zeros_like(x)
        # all (input, alpha) pairs, batch_size at a time
        pairs = [(i, a) for i in range(len(x)) for a in range(len(alphas))]
        for start in range(0, len(pairs), int(batch_size)):
            chunk = pairs[start : start + int(batch_size)]
            rows = torch.tensor([i for i, _ in chunk])
            alpha = alphas[torch.tensor([a for _, a in chunk])].view(-1, 1, 1, 1)
            point = (base[rows] + alpha * (x[rows] - base[rows])).requires_grad_(True)
            with torch.enable_grad():
                scores = score_fn(point)
                chosen = scores.gather(1, t[rows].view(-1, 1)).sum()
                (grad,) = torch.autograd.grad(chosen, point)
            grads.index_add_(0, rows, grad.detach())
        total += (x - base) * grads / len(alphas)
    return total / len(bases)


@torch.no_grad()
def occlusion(
    score_fn: ScoreFunction,
    inputs: torch.Tensor,
    targets: int | Sequence[int] | torch.Tensor | None,
    window: int = 8,
    stride: int = 8,
    fill: str = "zeros",
    seed: int = 0,
    batch_size: int = 64,
) -> torch.Tensor:
    """Occlusion maps: each pixel's mean, over the ``window`` × ``window`` patches (every ``stride``
    pixels, the last one flush with the border) that cover it, of f(x) − f(x with the patch
    replaced by ``fill``). ``fill="zeros"`` is the preprocessing's mean colour; ``"noise"`` seeded
    N(0, 1) in normalised inputs.

    Returns (N, H, W) for the target concept of each input, or, with ``targets=None``, (N, C, H, W)
    for every score column at once (one forward pass per patch serves them all)."""
    if fill not in ("zeros", "noise"):
        raise ValueError(f"fill must be 'zeros' or 'noise', got {fill!r}")
    x = inputs.detach().float()
    N, _, H, W = x.shape
    if not 1 <= int(window) <= min(H, W) or int(stride) < 1:
        raise ValueError(f"window must lie in [1, {min(H, W)}] and stride be >= 1, got {window}, {stride}")
    window, stride = int(window), int(stride)

    def starts(size: int) -> list[int]:
        out = list(range(0, size - window + 1, stride))
        return out if out[-1] == size - window else [*out, size - window]

    patches = [(r, c) for r in starts(H) for c in starts(W)]
    fill_value = torch.zeros_like(x) if fill == "zeros" else torch.randn(x.shape, generator=torch.Generator().manual_seed(int(seed)))
    reference = score_fn(x)  # (N, C)
    heat = torch.zeros(N, reference.shape[1], H, W)
    count = torch.zeros(H, W)
    for r, c in patches:
        count[r : r + window, c : c + window] += 1
    jobs = [(i, p) for i in range(N) for p in range(len(patches))]
    for start in range(0, len(jobs), int(batch_size)):
        chunk = jobs[start : start + int(batch_size)]
        batch = torch.stack([x[i] for i, _ in chunk]).clone()
        for b, (i, p) in enumerate(chunk):
            r, c = patches[p]
            batch[b, :, r : r + window, c : c + window] = fill_value[i, :, r : r + window, c : c + window]
        rows = torch.tensor([i for i, _ in chunk])
        drop = reference[rows] - score_fn(batch)  # (B, C)
        for b, (i, p) in enumerate(chunk):
            r, c = patches[p]
            heat[i, :, r : r + window, c : c + window] += drop[b].view(-1, 1, 1)
    heat /= count
    if targets is None:
        return heat
    t = _targets(targets, N)
    return heat[torch.arange(N), t]


def attribution_map(attributions: Any) -> np.ndarray:
    """(N, H, W) (or (H, W)) maps: channel sums of (N, 3, H, W) attributions; maps pass through."""
    a = attributions.detach().cpu().numpy() if isinstance(attributions, torch.Tensor) else np.asarray(attributions)
    if a.ndim == 4:
        return a.sum(1)
    if a.ndim == 3 and a.shape[0] == 3 and a.shape[1] == a.shape[2] and a.shape[1] != 3:
        return a.sum(0)
    return a


# ------------------------------------------------------------------------------------------------
# grading against masks
# ------------------------------------------------------------------------------------------------


def _dilate(mask: np.ndarray, steps: int) -> np.ndarray:
    out = mask.copy()
    for _ in range(int(steps)):
        grown = out.copy()
        grown[1:, :] |= out[:-1, :]
        grown[:-1, :] |= out[1:, :]
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        out = grown
    return out


def pointing_hit(attribution: np.ndarray, mask: np.ndarray, tolerance: int = 1) -> bool:
    """The pointing game: does the most positively attributed pixel lie in ``mask`` (grown by
    ``tolerance`` pixels)? A map with no positive pixel misses."""
    a = np.asarray(attribution, dtype=np.float64)
    if a.shape != mask.shape:
        raise ValueError(f"attribution {a.shape} and mask {mask.shape} must have one shape")
    if not (a > 0).any():
        return False
    r, c = np.unravel_index(int(np.argmax(a)), a.shape)
    return bool(_dilate(np.asarray(mask, dtype=bool), tolerance)[r, c])


def mass_in_mask(attribution: np.ndarray, mask: np.ndarray) -> float:
    """Share of the positive attribution that lies inside ``mask`` (NaN when nothing is positive)."""
    a = np.clip(np.asarray(attribution, dtype=np.float64), 0, None)
    total = a.sum()
    return float(a[np.asarray(mask, dtype=bool)].sum() / total) if total > 0 else float("nan")


def concept_region(concept: str) -> str | None:
    """The region (``"shape"`` / ``"background"``) a ShapesWorld concept ``family:value`` lives in."""
    family = str(concept).split(":", 1)[0]
    return FAMILY_REGIONS.get(family)


def _resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if mask.shape == shape:
        return mask
    tensor = torch.as_tensor(mask, dtype=torch.float32)[None, None]
    return torch.nn.functional.interpolate(tensor, size=shape, mode="nearest")[0, 0].numpy() > 0.5


@dataclass
class GroundingResult:
    """What :func:`grade_grounding` measured.

    ``frame``: one row per (image, concept, method): ``image``, ``column`` (the score column),
    ``name`` (its name), ``concept`` (the ShapesWorld concept it stands for), ``family``,
    ``region``, ``method``, ``hit`` (pointing game), ``mass`` (in the right region), ``area``
    (the region's share of the image: chance level for both), ``other_mass`` (in the other region).
    ``maps``: (image, column, method) -> (H, W) map, kept when asked for.
    """

    frame: pd.DataFrame
    maps: dict[tuple[int, int, str], np.ndarray] = field(default_factory=dict)

    def table(self, by: str = "family", level: float = DEFAULT_LEVEL, n_boot: int = 1000) -> pd.DataFrame:
        """Per ``by`` (``"family"`` or ``"concept"``) and method: ``pointing`` and ``mass`` with 95 %
        bootstrap intervals over the graded images, ``area`` (the region's share of the image: the
        chance level of both), ``lift`` (mass / area: 1 is a map that looks everywhere alike) and ``n``."""
        rows = []
        for (key, method), group in self.frame.groupby([by, "method"], sort=False):
            area = float(group["area"].mean())
            hit = bootstrap_mean_ci(group["hit"].astype(float), n_boot=n_boot, level=level)
            masses = group["mass"].dropna()
            mass = bootstrap_mean_ci(masses, n_boot=n_boot, level=level) if len(masses) else None
            rows.append({
                by: key, "method": method, "region": group["region"].iloc[0], "n": len(group),
                "pointing": hit.value, "pointing_low": hit.low, "pointing_high": hit.high,
                "mass": np.nan if mass is None else mass.value, "mass_low": np.nan if mass is None else mass.low,
                "mass_high": np.nan if mass is None else mass.high, "area": area,
                "lift": (np.nan if mass is None else mass.value) / area if area > 0 else np.nan,
            })
        return pd.DataFrame(rows)


def grade_grounding(
    score_fn: ScoreFunction,
    inputs: torch.Tensor,
    masks: Sequence[Mapping[str, np.ndarray]],
    columns: Mapping[int, str],
    truth: Any = None,
    truth_names: Sequence[str] | None = None,
    names: Sequence[str] | None = None,
    methods: Sequence[str] = ATTRIBUTION_METHODS,
    positives_only: bool = True,
    tolerance: int = 1,
    keep_maps: bool = False,
    ig: Mapping[str, Any] | None = None,
    occ: Mapping[str, Any] | None = None,
) -> GroundingResult:
    """Attribute score columns to pixels and grade them against the masks.

    Args:
        score_fn: pixels (N, 3, H, W) -> scores (N, C) (:func:`cbm_score_function`, :func:`sae_score_function`).
        inputs: preprocessed images (N, 3, H, W) (:func:`preprocess_images`).
        masks: one ``ShapesWorld.masks(i)`` dict per image.
        columns: score column -> the ShapesWorld concept (``family:value``) it stands for.
        truth, truth_names: (N, 25) ground truth; with ``positives_only`` a column is graded on the
            images where its concept is present (a concept absent from an image has nothing to point at).
        names: the score columns' names (default: their concepts).
        methods: any of :data:`ATTRIBUTION_METHODS`.
        tolerance: pixels of slack in the pointing game.
        keep_maps: keep every map in ``maps``.
        ig, occ: keyword arguments of :func:`integrated_gradients` / :func:`occlusion`.
    """
    unknown = [m for m in methods if m not in ATTRIBUTION_METHODS]
    if unknown:
        raise ValueError(f"unknown attribution methods {unknown}; choose from {ATTRIBUTION_METHODS}")
    if len(masks) != len(inputs):
        raise ValueError(f"{len(masks)} mask sets for {len(inputs)} images")
    regions = {j: concept_region(c) for j, c in columns.items()}
    bad = [columns[j] for j, r in regions.items() if r is None]
    if bad:
        raise ValueError(f"no ShapesWorld region for {bad}: concepts are 'family:value' with family in {sorted(FAMILY_REGIONS)}")
    T = None
    if positives_only and truth is not None:
        T = np.asarray(truth, dtype=bool)
        index = {n: k for k, n in enumerate(truth_names)} if truth_names is not None else None
    pairs = []
    for i in range(len(inputs)):
        for j, concept in columns.items():
            if T is not None:
                k = index[concept] if index is not None else j
                if not T[i, k]:
                    continue
            pairs.append((i, j))
    if not pairs:
        raise ValueError("nothing to grade: no image has any of the columns' concepts")
    H, W = inputs.shape[-2:]
    rows, maps = [], {}
    images = torch.tensor([i for i, _ in pairs])
    targets = torch.tensor([j for _, j in pairs])
    for method in methods:
        if method == "integrated_gradients":
            attributions = attribution_map(integrated_gradients(score_fn, inputs[images], targets, **dict(ig or {})))
        else:  # every column of every image at once, then the graded pairs
            unique = sorted({i for i, _ in pairs})
            position = {i: u for u, i in enumerate(unique)}
            heat = occlusion(score_fn, inputs[torch.tensor(unique)], None, **dict(occ or {}))
            attributions = np.stack([heat[position[i], j].numpy() for i, j in pairs])
        for p, (i, j) in enumerate(pairs):
            region = regions[j]
            mask = _resize_mask(np.asarray(masks[i][region], dtype=bool), (H, W))
            other = ~mask
            a = attributions[p]
            rows.append({
                "image": i, "column": j, "name": names[j] if names is not None else columns[j], "concept": columns[j],
                "family": columns[j].split(":", 1)[0], "region": region, "method": method,
                "hit": pointing_hit(a, mask, tolerance), "mass": mass_in_mask(a, mask), "area": float(mask.mean()),
                "other_mass": mass_in_mask(a, other),
            })
            if keep_maps:
                maps[(i, j, method)] = a
    return GroundingResult(pd.DataFrame(rows), maps)


def ground_model(
    backbone: Any,
    model: Any,
    dataset: Any,
    indices: Sequence[int],
    methods: Sequence[str] = ATTRIBUTION_METHODS,
    concepts: Sequence[str] | None = None,
    **kwargs: Any,
) -> GroundingResult:
    """:func:`grade_grounding` of a fitted CBM's concepts that name ShapesWorld concepts, on the
    images ``indices`` of a ShapesWorld ``dataset`` (each concept graded where it is present)."""
    names = list(model.concept_names_)
    wanted = set(concepts) if concepts is not None else set(dataset.concept_names)
    columns = {j: n for j, n in enumerate(names) if n in wanted and n in dataset.concept_names}
    if not columns:
        raise ValueError("none of the model's concepts is a ShapesWorld concept (family:value)")
    return _ground(backbone, cbm_score_function(backbone, model), columns, names, dataset, indices, methods, kwargs)


def _ground(backbone: Any, score_fn: ScoreFunction, columns: Mapping[int, str], names: Sequence[str], dataset: Any, indices: Sequence[int],
            methods: Sequence[str], kwargs: Mapping[str, Any]) -> GroundingResult:
    indices = [int(i) for i in indices]
    inputs = preprocess_images(backbone, [dataset.image(i) for i in indices])
    masks = [dataset.masks(i) for i in indices]
    truth = np.asarray(dataset.concepts)[indices]
    result = grade_grounding(score_fn, inputs, masks, columns, truth=truth, truth_names=dataset.concept_names, names=list(names), methods=methods, **kwargs)
    result.frame["image"] = [indices[i] for i in result.frame["image"]]
    result.maps = {(indices[i], j, m): a for (i, j, m), a in result.maps.items()}
    return result


def ground_sae(
    backbone: Any,
    sae: Any,
    names: Sequence[str | None],
    dataset: Any,
    indices: Sequence[int],
    methods: Sequence[str] = ATTRIBUTION_METHODS,
    **kwargs: Any,
) -> GroundingResult:
    """:func:`grade_grounding` of the SAE latents whose ``names`` name a ShapesWorld concept
    (:func:`sae_concept_columns`), on the images ``indices`` of a ShapesWorld ``dataset``: does the
    latent named *red* look at the shape, the one named *white* at the background?"""
    columns = sae_concept_columns(list(names), dataset.concept_names)
    if not columns:
        raise ValueError("no latent is named after a ShapesWorld concept")
    shown = [n if n is not None else f"latent {m}" for m, n in enumerate(names)]
    return _ground(backbone, sae_score_function(backbone, sae), columns, shown, dataset, indices, methods, kwargs)
