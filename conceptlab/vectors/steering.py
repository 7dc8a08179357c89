"""Steering vectors: a direction added to a language model's residual stream at one layer.

A :class:`SteeringVector` is a direction in the residual stream, the layer (and hook) it is added
at, and a record of how it was built. Builders:

- :func:`mean_difference` -- the mean over contrastive pairs of ``h_l(pos) - h_l(neg)`` read at one
  token position (default the last): the ``mean_aggregator`` of the ``steering-vectors`` package
  (and CAA's vector), read at the output of decoder block ``l`` (``blocks.{l}.hook_resid_post``);
- :func:`pca_direction` -- repeng's one-component PCA: ``"pca_diff"`` (repeng's default: PCA of the
  differences, *centred* on their mean as ``sklearn.decomposition.PCA`` centres) or
  ``"pca_center"`` (PCA of each side minus its pair's midpoint, i.e. of ``±(pos - neg)/2``: the
  direction ``steering-vectors``' ``pca_aggregator`` finds by uncentred PCA of ``±deltas``); unit
  norm, its sign set as repeng sets it (most pairs project higher on the positive side);
- :func:`from_cav` -- any direction (a CAV, a tensor, an array, an object with ``.vector``);
- :func:`from_concept_vector` -- a located MLP value vector (a :class:`~conceptlab.concepts.Concept`
  from :func:`~conceptlab.vectors.entity_bank` or ``(lm, layer, index)``).

:func:`steer` (or :meth:`SteeringVector.apply`) adds ``multiplier * direction`` through a forward
hook for the body of a ``with`` block and removes it afterwards, whatever happens; nothing else in
the model changes, so after the block its outputs are bit-for-bit those before.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from conceptlab.backbones import LanguageModel
from conceptlab.concepts import Concept
from conceptlab.concepts.concept import as_vector, jsonable
from conceptlab.utils import atomic_write_bytes, atomic_write_json

__all__ = [
    "PCA_METHODS",
    "STEERING_HOOKS",
    "SteeringVector",
    "from_cav",
    "from_concept_vector",
    "mean_difference",
    "pair_activations",
    "pca_direction",
    "steer",
]

#: hooks a steering vector can be added at (they all live in the residual stream's space)
STEERING_HOOKS = ("hook_resid_post", "hook_resid_pre", "hook_mlp_out")
PCA_METHODS = ("pca_diff", "pca_center")
VECTOR_FILE, CONFIG_FILE = "steering_vector.safetensors", "steering_vector.json"
_HOOK_NAME = re.compile(r"^blocks\.(\d+)\.(hook_resid_post|hook_resid_pre|hook_mlp_out)$")


@dataclass
class SteeringVector:
    """A residual-stream direction, where it is added and how it was built.

    Attributes:
        direction: ``[d_model]`` float32.
        layer: the block whose ``hook`` receives it (a non-negative layer number).
        hook: ``"hook_resid_post"`` (the decoder block's output, where ``steering-vectors`` adds),
            ``"hook_resid_pre"`` or ``"hook_mlp_out"``.
        method: how it was built (``mean_difference``, ``pca_diff``, ``pca_center``, ``cav``,
            ``concept_vector``, ``direction``); ``provenance`` holds the details (model spec,
            read position, number of pairs, source ...), JSON-safe.
    """

    direction: torch.Tensor
    layer: int
    hook: str = "hook_resid_post"
    method: str = "direction"
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.direction = as_vector(self.direction, "a steering direction")
        if isinstance(self.layer, bool) or not isinstance(self.layer, int) or self.layer < 0:
            raise ValueError(f"layer must be a non-negative layer number, got {self.layer!r}")
        if self.hook not in STEERING_HOOKS:
            raise ValueError(f"hook must be one of {', '.join(STEERING_HOOKS)}, got {self.hook!r}")
        self.provenance = jsonable(dict(self.provenance))

    def __repr__(self) -> str:
        return f"SteeringVector({self.method}, blocks.{self.layer}.{self.hook}, d={self.direction.numel()}, norm={self.norm:.4g})"

    @property
    def norm(self) -> float:
        return float(self.direction.norm())

    @property
    def hook_name(self) -> str:
        return f"blocks.{self.layer}.{self.hook}"

    def scaled(self, norm: float) -> SteeringVector:
        """The same direction with Euclidean norm ``norm`` (e.g. a unit CAV brought to the scale of a
        mean difference, so that their multipliers mean the same thing)."""
        if not norm > 0 or self.norm == 0:
            raise ValueError(f"cannot scale a vector of norm {self.norm} to norm {norm}")
        return replace(self, direction=self.direction * (float(norm) / self.norm), provenance={**self.provenance, "scaled_to_norm": float(norm)})

    def cosine(self, other: SteeringVector | torch.Tensor) -> float:
        """Cosine similarity with another steering vector or direction."""
        other_vector = other.direction if isinstance(other, SteeringVector) else as_vector(other)
        return float(torch.nn.functional.cosine_similarity(self.direction, other_vector, dim=0))

    def apply(self, lm: LanguageModel, multiplier: float = 1.0, token_scope: str | int = "all"):
        """:func:`steer` with this vector (a context manager)."""
        return steer(lm, self, multiplier, token_scope=token_scope)

    def to_concept(self, name: str, space: str) -> Concept:
        """The direction as a :class:`Concept` (to align it with CAVs and value vectors)."""
        provenance = {"kind": "steering_vector", "method": self.method, "layer": self.layer, "hook": self.hook, **self.provenance}
        return Concept(name, self.direction.clone(), space, provenance=provenance)

    # -- artifacts ---------------------------------------------------------------------------------

    def save(self, folder: str | Path) -> Path:
        """``steering_vector.safetensors`` (the direction) + ``steering_vector.json`` (the rest), atomically."""
        from safetensors.torch import save

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(folder / VECTOR_FILE, save({"direction": self.direction.contiguous()}))
        atomic_write_json(folder / CONFIG_FILE, {"layer": self.layer, "hook": self.hook, "method": self.method, "provenance": self.provenance})
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> SteeringVector:
        from safetensors.torch import load_file

        folder = Path(folder)
        for name in (VECTOR_FILE, CONFIG_FILE):
            if not (folder / name).is_file():
                raise FileNotFoundError(f"{folder} is not a saved steering vector: {name} is missing")
        config = json.loads((folder / CONFIG_FILE).read_text())
        return cls(load_file(folder / VECTOR_FILE)["direction"], int(config["layer"]), config["hook"], config["method"], config.get("provenance", {}))


# -- reading activations -------------------------------------------------------------------------


def _pairs(pairs: Sequence[Any]) -> tuple[list[str], list[str]]:
    positives, negatives = [], []
    for i, pair in enumerate(pairs):
        if hasattr(pair, "positive") and hasattr(pair, "negative"):  # repeng's DatasetEntry
            pair = (pair.positive, pair.negative)
        if not isinstance(pair, (tuple, list)) or len(pair) != 2 or not all(isinstance(s, str) and s for s in pair):
            raise ValueError(f"pair {i} must be a (positive, negative) pair of non-empty strings, got {pair!r}")
        positives.append(pair[0])
        negatives.append(pair[1])
    if not positives:
        raise ValueError("a steering vector needs at least one contrastive pair")
    return positives, negatives


def _hook(lm: LanguageModel, layer: int | str, hook: str) -> tuple[int, str]:
    """(layer number, hook kind) from a layer number (+ kind) or a full hook name."""
    if isinstance(layer, str):
        match = _HOOK_NAME.match(layer)
        if not match:
            raise ValueError(f"a steering layer is a number or a hook name blocks.N.{{{', '.join(STEERING_HOOKS)}}}, got {layer!r}")
        layer, hook = int(match.group(1)), match.group(2)
    if hook not in STEERING_HOOKS:
        raise ValueError(f"hook must be one of {', '.join(STEERING_HOOKS)}, got {hook!r}")
    return lm.layer_number(layer), hook


@torch.no_grad()
def _read(lm: LanguageModel, texts: Sequence[str], name: str, read_token_index: int, batch_size: int) -> torch.Tensor:
    """The activation at hook ``name`` of each text's token ``read_token_index``, ``[n, d_model]``.
    Texts of equal token length share a batch, so no padding shifts a position (repeng PR#38)."""
    encoded = lm.encode(texts)
    out = torch.zeros(len(encoded), lm.d_model)
    groups: dict[int, list[int]] = {}
    for i, ids in enumerate(encoded):
        if not -len(ids) <= read_token_index < len(ids):
            raise ValueError(f"read_token_index {read_token_index} is outside text {i} ({len(ids)} tokens): {texts[i]!r}")
        groups.setdefault(len(ids), []).append(i)
    for length in sorted(groups):
        members = groups[length]
        for start in range(0, len(members), batch_size):
            chunk = members[start : start + batch_size]
            _, cache = lm.run_with_cache(torch.tensor([encoded[i] for i in chunk]), [name])
            out[chunk] = cache[name][:, read_token_index].float()
    return out


def pair_activations(
    lm: LanguageModel, pairs: Sequence[Any], layer: int | str, hook: str = "hook_resid_post", read_token_index: int = -1, batch_size: int = 64, progress: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """The positive and negative texts' activations at ``blocks.{layer}.{hook}``, token
    ``read_token_index`` (``-1``: the last), as two ``[n_pairs, d_model]`` float32 tensors."""
    positives, negatives = _pairs(pairs)
    layer, hook = _hook(lm, layer, hook)
    name = f"blocks.{layer}.{hook}"
    sides = [_read(lm, texts, name, read_token_index, batch_size) for texts in tqdm([positives, negatives], desc="reading pairs", disable=not progress)]
    return sides[0], sides[1]


def _provenance(lm: LanguageModel, n_pairs: int, read_token_index: int, **extra: Any) -> dict[str, Any]:
    return {"spec": lm.spec, "fingerprint": lm.fingerprint, "n_pairs": n_pairs, "read_token_index": read_token_index, **extra}


# -- builders --------------------------------------------------------------------------------------


def mean_difference(
    lm: LanguageModel, pairs: Sequence[Any], layer: int | str, hook: str = "hook_resid_post", read_token_index: int = -1, batch_size: int = 64, progress: bool = False
) -> SteeringVector:
    """``mean_i (h(pos_i) - h(neg_i))`` at ``blocks.{layer}.{hook}``, token ``read_token_index``.

    This is the ``steering-vectors`` package's definition (``train_steering_vector`` with its default
    ``mean_aggregator``, ``layer_type="decoder_block"``, ``read_token_index=-1``): the decoder
    block's output is ``hook_resid_post``, and the vector is not normalised.
    ``pairs``: ``(positive, negative)`` strings (or objects with ``.positive`` / ``.negative``)."""
    positive, negative = pair_activations(lm, pairs, layer, hook, read_token_index, batch_size, progress)
    layer, hook = _hook(lm, layer, hook)
    return SteeringVector((positive - negative).mean(0), layer, hook, "mean_difference", _provenance(lm, len(positive), read_token_index))


def _top_direction(data: torch.Tensor, centre: bool) -> torch.Tensor:
    data = data.double()
    if centre:
        data = data - data.mean(0, keepdim=True)
    _, _, vh = torch.linalg.svd(data, full_matrices=False)
    return vh[0]


def pca_direction(
    lm: LanguageModel,
    pairs: Sequence[Any],
    layer: int | str,
    method: str = "pca_diff",
    hook: str = "hook_resid_post",
    read_token_index: int = -1,
    batch_size: int = 64,
    progress: bool = False,
) -> SteeringVector:
    """The first principal component of the pairs' activations (unit norm), as repeng builds it.

    ``method="pca_diff"`` (repeng's default): PCA of the differences ``pos_i - neg_i``, centred on
    their mean (repeng fits ``sklearn.decomposition.PCA(n_components=1)``, which centres).
    ``method="pca_center"``: each side minus its pair's midpoint, i.e. PCA of ``±(pos_i - neg_i)/2``
    (mean zero) -- the same direction as ``steering-vectors``' ``pca_aggregator`` (uncentred PCA of
    ``deltas`` and ``-deltas``). Sign (repeng's rule): flipped when fewer pairs project higher on
    the positive side than on the negative side; a tie keeps the sign of the mean projection.
    repeng reads the last token (``read_token_index=-1``), every layer; here one layer."""
    if method not in PCA_METHODS:
        raise ValueError(f"method must be one of {', '.join(PCA_METHODS)}, got {method!r}")
    positive, negative = pair_activations(lm, pairs, layer, hook, read_token_index, batch_size, progress)
    deltas = (positive - negative).double()
    if method == "pca_diff":
        direction = _top_direction(deltas, centre=True)
    else:
        direction = _top_direction(torch.cat([deltas, -deltas]) / 2, centre=False)
    projected = deltas @ direction
    higher, lower = int((projected > 0).sum()), int((projected < 0).sum())
    if lower > higher or (lower == higher and float(projected.mean()) < 0):
        direction = -direction
    layer, hook = _hook(lm, layer, hook)
    agreement = max(higher, lower) / len(projected)
    return SteeringVector(direction.float(), layer, hook, method, _provenance(lm, len(positive), read_token_index, sign_agreement=agreement))


def from_cav(cav: Any, layer: int | str | None = None, lm: LanguageModel | None = None, hook: str = "hook_resid_post", norm: float | None = None) -> SteeringVector:
    """A steering vector from a CAV or any direction in the residual stream.

    ``cav``: a tensor / array / list, a :class:`Concept`, or any object with ``.vector`` (a CAV of
    :mod:`conceptlab.vectors`' TCAV tools). ``layer``: a layer number or a hook name
    (``"blocks.1.hook_resid_post"``); when None it is read from the object's ``layer`` / ``hook``
    attribute or its ``provenance["layer"]``. ``lm`` (optional) checks the layer and the width.
    ``norm`` rescales the direction (CAVs are usually unit vectors; residual activations are not)."""
    vector = getattr(cav, "vector", cav)
    direction = as_vector(vector, "a CAV")
    if layer is None:
        provenance = getattr(cav, "provenance", None) or {}
        layer = next((v for v in (getattr(cav, "hook", None), getattr(cav, "layer", None), provenance.get("hook"), provenance.get("layer")) if v is not None), None)
        if layer is None:
            raise ValueError("say which layer the CAV steers: from_cav(cav, layer=N) or layer='blocks.N.hook_resid_post'")
    if lm is not None:
        layer, hook = _hook(lm, layer, hook)
        if direction.numel() != lm.d_model:
            raise ValueError(f"the CAV has {direction.numel()} dimensions; the residual stream of {lm.spec} has {lm.d_model}")
    elif isinstance(layer, str):
        match = _HOOK_NAME.match(layer)
        if not match:
            raise ValueError(f"a steering layer is a number or a hook name blocks.N.{{{', '.join(STEERING_HOOKS)}}}, got {layer!r}")
        layer, hook = int(match.group(1)), match.group(2)
    name = getattr(cav, "name", None)
    vector_out = SteeringVector(direction, int(layer), hook, "cav", {"source": type(cav).__name__, **({"name": name} if isinstance(name, str) else {})})
    return vector_out.scaled(norm) if norm is not None else vector_out


def from_concept_vector(
    source: Concept | LanguageModel, layer: int | None = None, index: int | None = None, hook: str = "hook_resid_post", norm: float | None = None
) -> SteeringVector:
    """A located MLP value vector as a steering direction.

    ``from_concept_vector(concept)`` takes a :class:`Concept` of kind ``value_vector`` (what
    :func:`~conceptlab.vectors.entity_bank` makes; its provenance holds the layer and index);
    ``from_concept_vector(lm, layer, index)`` reads the vector from the model. The vector is what
    neuron ``index`` of MLP ``layer`` writes into the residual stream, so it is added at the same
    layer's ``hook_resid_post`` (after that MLP). ``norm`` rescales it (value vectors are small)."""
    if isinstance(source, LanguageModel):
        if layer is None or index is None:
            raise ValueError("from_concept_vector(lm, layer, index) needs both the layer and the neuron index")
        layer = source.layer_number(layer)
        direction = source.value_vector(layer, index)
        provenance: dict[str, Any] = {"spec": source.spec, "fingerprint": source.fingerprint, "value_vector": [layer, int(index)]}
    elif isinstance(source, Concept):
        where = source.provenance
        layer = where.get("layer") if layer is None else layer
        if layer is None:
            raise ValueError(f"concept {source.name!r} has no layer in its provenance; pass layer=")
        direction = source.vector
        provenance = {"concept": source.name, "space": source.space, "value_vector": [int(layer), where.get("index")], "spec": where.get("spec")}
    else:
        raise TypeError(f"from_concept_vector takes a Concept or (LanguageModel, layer, index), got {type(source).__name__}")
    vector = SteeringVector(direction, int(layer), hook, "concept_vector", provenance)
    return vector.scaled(norm) if norm is not None else vector


# -- applying ------------------------------------------------------------------------------------


def _scope(token_scope: str | int) -> int | None:
    """The first position steered (None: only the last position)."""
    if token_scope == "all":
        return 0
    if token_scope == "last":
        return None
    if isinstance(token_scope, int) and not isinstance(token_scope, bool) and token_scope >= 0:
        return token_scope
    raise ValueError(f"token_scope must be 'all', 'last' or a first position (int >= 0), got {token_scope!r}")


@contextlib.contextmanager
def steer(lm: LanguageModel, vector: SteeringVector, multiplier: float = 1.0, token_scope: str | int = "all") -> Iterator[SteeringVector]:
    """Add ``multiplier * vector.direction`` at ``vector.hook_name`` for the body of the block.

    ``token_scope``: ``"all"`` positions (``steering-vectors``' default ``min_token_index=0``),
    ``"last"`` (only the final position of each forward pass), or an int: positions from there on
    (``min_token_index``; e.g. the prompt length to steer only what is generated). Multiplier 0 is
    the identity (``x + 0 * v == x`` bit for bit), negative multipliers steer away. The hook is
    removed after the block whatever happens, so the model's outputs are then exactly those before.
    Yields the vector."""
    if not isinstance(vector, SteeringVector):
        raise TypeError(f"steer needs a SteeringVector, got {type(vector).__name__} (wrap a raw direction with from_cav(direction, layer))")
    if vector.direction.numel() != lm.d_model:
        raise ValueError(f"the steering vector has {vector.direction.numel()} dimensions; the residual stream of {lm.spec} has {lm.d_model}")
    multiplier = float(multiplier)
    if multiplier != multiplier or multiplier in (float("inf"), float("-inf")):
        raise ValueError(f"multiplier must be finite, got {multiplier}")
    start = _scope(token_scope)
    lm.layer_number(vector.layer)  # a clear IndexError when the model has fewer layers
    delta = multiplier * vector.direction

    def add(activation: torch.Tensor) -> torch.Tensor:
        step = delta.to(activation.device, activation.dtype)
        if start == 0:
            return activation + step
        out = activation.clone()
        if start is None:
            out[..., -1, :] += step
        else:
            out[..., start:, :] += step
        return out

    with lm.hooks([(vector.hook_name, add)]):
        yield vector
