"""Causal language models behind one interface: value vectors, unembedding, hooks, weight patches.

An MLP layer computes ``MLP(x) = sum_i a_i(x) * v_i``: ``v_i`` is the *value vector* of neuron
``i`` (a column of the output projection in the math), ``a_i(x)`` its activation. Checkpoints
store ``v_i`` differently -- a **row** of GPT-2's ``Conv1D`` ``c_proj.weight`` ``[d_mlp, d_model]``,
a **column** of LLaMA's / OLMo's ``down_proj`` or NeoX's ``dense_4h_to_h`` ``[d_model, d_mlp]``,
a row of transformer-lens' ``W_out[l]`` -- and :class:`LanguageModel` hides that: every method
here sees ``value_vectors(layer)`` as ``[d_mlp, d_model]`` rows, whatever loaded the model.

- ``unembedding(projection)``: ``W_U`` ``[d_model, d_vocab]``. ``"raw"`` is the output embedding as
  stored (what ConceptVectors projects with: no final-norm gain); ``"folded"`` folds the final
  norm into it -- the gain ``g`` (``diag(g) W_U``) and, for a LayerNorm, its centring over
  ``d_model`` -- so ``v @ W`` is what ``v`` does to the logits after the final norm, up to the
  positive ``1/rms`` scale (which does not change a ranking). Every result records which.
- Hook names follow transformer-lens on every backend: ``blocks.{l}.hook_resid_pre``,
  ``blocks.{l}.hook_resid_post``, ``blocks.{l}.mlp.hook_post`` (the activations ``a_i``),
  ``blocks.{l}.hook_mlp_out``; :meth:`LanguageModel.run_with_cache` reads them.
- :meth:`LanguageModel.patch_value_vector` and :meth:`LanguageModel.ablate` are context managers
  that change one value vector (or hook its activation) and always restore the weights, bit for
  bit, even when the body raises.

The ``hf:PATH`` scheme (this file) loads a local Hugging Face causal LM; ``transformer_lens:NAME``
lives in ``transformer_lens_backbone.py``.
"""

from __future__ import annotations

import contextlib
import copy
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from conceptlab.backbones.base import WeightFingerprint
from conceptlab.registry import register_backbone_scheme
from conceptlab.utils import default_device

__all__ = [
    "HF_ARCHITECTURES",
    "PROJECTIONS",
    "HFLanguageModel",
    "LanguageModel",
    "exact_match",
    "is_language_model_dir",
    "load_hf_language_model",
]

PROJECTIONS = ("raw", "folded")
HOOK_KINDS = ("hook_resid_pre", "hook_resid_post", "mlp.hook_post", "hook_mlp_out")
_HOOK_RE = re.compile(r"^blocks\.(\d+)\.(hook_resid_pre|hook_resid_post|mlp\.hook_post|hook_mlp_out)$")


def exact_match(prediction: str, answer: str) -> bool:
    """Case-insensitive equality after trimming whitespace and a trailing full stop."""

    def norm(text: str) -> str:
        return " ".join(text.strip().rstrip(".").split()).casefold()

    return norm(prediction) == norm(answer)


def _check_projection(projection: str) -> str:
    if projection not in PROJECTIONS:
        raise ValueError(f"projection must be one of {PROJECTIONS}, got {projection!r}")
    return projection


class LanguageModel(WeightFingerprint):
    """A causal LM with value vectors in one orientation. Backends subclass the ``_`` methods.

    Attributes: ``spec``, ``model`` (the torch module), ``tokenizer`` (a Hugging Face tokenizer),
    ``device``, ``backend`` (``"hf"``, ``"hooked_transformer"``, ``"transformer_bridge"``),
    ``architecture``, ``processing`` (``"none"``, or ``"folded"`` for a transformer-lens model
    loaded with its weight processing), ``n_layers``, ``d_model``, ``d_mlp``, ``d_vocab``.
    """

    backend = "abstract"

    def __init__(self, spec: str, model: torch.nn.Module, tokenizer: Any, device=None, architecture: str = "", processing: str = "none") -> None:
        self.spec = spec
        self.device = default_device(device)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.architecture = architecture
        self.processing = processing
        self._fingerprint: str | None = None
        first = self.value_vectors(0)
        self.n_layers = self._n_layers()
        self.d_mlp, self.d_model = int(first.shape[0]), int(first.shape[1])
        self.d_vocab = int(self._unembed_raw().shape[1])

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.spec!r}, {self.architecture}, layers={self.n_layers}, d_model={self.d_model}, "
            f"d_mlp={self.d_mlp}, vocab={self.d_vocab}, device={self.device})"
        )

    # -- backend hooks (subclasses) ---------------------------------------------------------------

    def _n_layers(self) -> int:
        raise NotImplementedError

    def _value_weight(self, layer: int) -> tuple[torch.Tensor, str]:
        """The parameter holding layer ``layer``'s value vectors and its orientation ("row"/"col")."""
        raise NotImplementedError

    def _unembed_raw(self) -> torch.Tensor:
        """``W_U`` as stored, [d_model, d_vocab] (a view is fine)."""
        raise NotImplementedError

    def _final_norm(self) -> tuple[torch.Tensor | None, str]:
        """The final norm's gain (None when it has none) and its kind ("layernorm"/"rmsnorm"/"none")."""
        raise NotImplementedError

    def _forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _add_hook(self, name: str, fn: Callable[[torch.Tensor], torch.Tensor | None]) -> Any:
        """Call ``fn(activation)`` at hook ``name``; a returned tensor replaces the activation.
        Returns a handle with ``remove()``."""
        raise NotImplementedError

    # -- shapes and weights ---------------------------------------------------------------------------

    @property
    def space(self) -> str:
        """The name of the residual-stream space concepts of this model live in."""
        return f"{self.spec}#residual"

    def _layer(self, layer: int) -> int:
        n = self._n_layers()
        if not isinstance(layer, int) or isinstance(layer, bool) or not -n <= layer < n:
            raise IndexError(f"layer {layer!r} is out of range for a model with {n} layers")
        return layer % n

    def layer_number(self, layer: int) -> int:
        """``layer`` as a non-negative layer number (``-1`` is the last); an IndexError when out of range."""
        return self._layer(layer)

    def _index(self, index: int) -> int:
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < self.d_mlp:
            raise IndexError(f"neuron index {index!r} is out of range: layers have {self.d_mlp} neurons")
        return index

    def value_vectors(self, layer: int, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Value vectors ``start:stop`` of ``layer`` as rows, ``[stop - start, d_model]`` float32 (a
        copy of just those rows, so a caller can stream a layer in chunks)."""
        weight, orientation = self._value_weight(self._layer(layer))
        rows = weight.detach()[start:stop] if orientation == "row" else weight.detach()[:, start:stop].T
        return rows.to(torch.float32, copy=True).contiguous()

    def value_vector(self, layer: int, index: int) -> torch.Tensor:
        """One value vector, ``[d_model]`` float32 (a copy)."""
        weight, orientation = self._value_weight(self._layer(layer))
        index = self._index(index)
        column = weight.detach()[index] if orientation == "row" else weight.detach()[:, index]
        return column.to(torch.float32, copy=True)

    def value_parameter(self, layer: int) -> tuple[torch.nn.Parameter, str]:
        """The live parameter holding layer ``layer``'s value vectors and its orientation (for
        training, e.g. Needle's column mask). Prefer :meth:`patch_value_vector` for edits."""
        return self._value_weight(self._layer(layer))

    def final_norm_gain(self) -> torch.Tensor | None:
        gain, _ = self._final_norm()
        return None if gain is None else gain.detach().to(torch.float32)

    def unembedding(self, projection: str = "raw", copy: bool = True) -> torch.Tensor:
        """``W_U`` ``[d_model, d_vocab]`` float32; ``projection="folded"`` folds the final norm in.
        ``copy=False`` lets ``"raw"`` return a read-only view of float32 weights (no extra memory)."""
        projection = _check_projection(projection)
        w_u = self._unembed_raw().detach().to(torch.float32)
        if projection == "raw":
            return w_u.clone() if copy else w_u
        gain, kind = self._final_norm()
        if gain is not None:
            w_u = gain.detach().to(torch.float32)[:, None] * w_u
        if kind == "layernorm":  # LayerNorm removes a vector's mean over d_model: centre the rows' directions
            w_u = w_u - w_u.mean(dim=0, keepdim=True)
        return w_u.contiguous()

    def project(self, vectors: torch.Tensor, projection: str = "raw", unembedding: torch.Tensor | None = None) -> torch.Tensor:
        """Vocabulary logits of vectors in the residual stream: ``vectors @ W_U`` (``[..., d_vocab]``)."""
        w_u = self.unembedding(projection) if unembedding is None else unembedding
        return vectors.to(torch.float32) @ w_u.to(vectors.device)

    def token_strings(self, ids: Sequence[int] | torch.Tensor) -> list[str]:
        """Vocabulary entries of token ids, as the tokenizer spells them (``Ġ``/``▁`` kept, like
        ConceptVectors' ``_convert_id_to_token``)."""
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        return [str(t) for t in self.tokenizer.convert_ids_to_tokens([int(i) for i in ids])]

    def token_ids(self, words: Sequence[str]) -> list[int]:
        """Vocabulary ids of the given token strings (words not in the vocabulary are skipped);
        for BPE vocabularies both ``word`` and ``Ġword`` / ``▁word`` are looked up."""
        vocab = self.tokenizer.get_vocab()
        unk = getattr(self.tokenizer, "unk_token_id", None)
        out: list[int] = []
        for word in words:
            for form in (word, f"Ġ{word}", f"▁{word}"):
                idx = vocab.get(form)
                if idx is not None and idx != unk and idx not in out:
                    out.append(int(idx))
        return out

    # -- running ---------------------------------------------------------------------------------

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, with the tokenizer's own special tokens (e.g. a BOS)."""
        return [list(ids) for ids in self.tokenizer(list(texts))["input_ids"]]

    def logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        """``[batch, pos, d_vocab]`` logits of unpadded ids (gradients flow; wrap in no_grad to read)."""
        if input_ids.ndim == 1:
            input_ids = input_ids[None]
        return self._forward(input_ids.to(self.device))

    def hook_name(self, kind: str, layer: int) -> str:
        """``hook_name("mlp.hook_post", 2) -> "blocks.2.mlp.hook_post"`` (kinds: HOOK_KINDS)."""
        if kind not in HOOK_KINDS:
            raise ValueError(f"unknown hook kind {kind!r}; known: {', '.join(HOOK_KINDS)}")
        return f"blocks.{self._layer(layer)}.{kind}"

    def hook_names(self) -> list[str]:
        return [f"blocks.{layer}.{kind}" for layer in range(self.n_layers) for kind in HOOK_KINDS]

    def _parse_hook(self, name: str) -> tuple[int, str]:
        match = _HOOK_RE.match(name)
        if not match or int(match.group(1)) >= self.n_layers:
            raise ValueError(f"unknown hook {name!r}; hooks are blocks.{{0..{self.n_layers - 1}}}.{{{', '.join(HOOK_KINDS)}}}")
        return int(match.group(1)), match.group(2)

    @contextlib.contextmanager
    def hooks(self, hooks: Sequence[tuple[str, Callable[[torch.Tensor], torch.Tensor | None]]]) -> Iterator[None]:
        """Add ``(name, fn)`` hooks for the body; they are removed after it, whatever happens."""
        handles = []
        try:
            for name, fn in hooks:
                self._parse_hook(name)
                handles.append(self._add_hook(name, fn))
            yield
        finally:
            for handle in handles:
                handle.remove()

    @torch.no_grad()
    def run_with_cache(self, input_ids: torch.Tensor, names: Sequence[str]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits and the activations at hooks ``names`` (float32 copies, on the CPU)."""
        cache: dict[str, torch.Tensor] = {}

        def keeper(name: str):
            def keep(act: torch.Tensor) -> None:
                cache[name] = act.detach().to("cpu", torch.float32, copy=True)

            return keep

        with self.hooks([(name, keeper(name)) for name in names]):
            logits = self.logits(input_ids)
        return logits, cache

    def _batches_by_length(self, sequences: Sequence[Sequence[int]], batch_size: int) -> Iterator[list[int]]:
        """Indices grouped by sequence length (no padding anywhere), in chunks of ``batch_size``."""
        groups: dict[int, list[int]] = {}
        for i, seq in enumerate(sequences):
            groups.setdefault(len(seq), []).append(i)
        for length in sorted(groups):
            members = groups[length]
            for start in range(0, len(members), batch_size):
                yield members[start : start + batch_size]

    @torch.no_grad()
    def greedy_answers(self, prompts: Sequence[str], max_new_tokens: int = 4, batch_size: int = 64) -> list[str]:
        """Greedy continuations of ``prompts`` (``do_sample=False``), cut at the EOS token or a
        newline, decoded without special tokens. Prompts of equal token length share a batch,
        so no padding changes any position."""
        encoded = self.encode(prompts)
        eos = self.tokenizer.eos_token_id
        out: list[str] = [""] * len(encoded)
        for members in self._batches_by_length(encoded, batch_size):
            ids = torch.tensor([encoded[i] for i in members], device=self.device)
            new = torch.empty((len(members), 0), dtype=torch.long, device=self.device)
            done = torch.zeros(len(members), dtype=torch.bool, device=self.device)
            for _ in range(max_new_tokens):
                step = self.logits(torch.cat([ids, new], dim=1))[:, -1].argmax(-1)
                step = torch.where(done, torch.full_like(step, eos if eos is not None else 0), step)
                new = torch.cat([new, step[:, None]], dim=1)
                if eos is not None:
                    done |= step == eos
                if bool(done.all()):
                    break
            for row, i in enumerate(members):
                tokens = new[row].tolist()
                if eos is not None and eos in tokens:
                    tokens = tokens[: tokens.index(eos)]
                out[i] = self.tokenizer.decode(tokens, skip_special_tokens=True).split("\n")[0].strip()
        return out

    def _answer_spans(self, prompts: Sequence[str], answers: Sequence[str]) -> tuple[list[list[int]], list[int]]:
        if len(prompts) != len(answers):
            raise ValueError(f"{len(prompts)} prompts for {len(answers)} answers")
        full = self.encode([f"{p} {a}" if a else p for p, a in zip(prompts, answers)])
        starts = [len(ids) for ids in self.encode(prompts)]
        for ids, start, answer in zip(full, starts, answers):
            if answer and start >= len(ids):
                raise ValueError(f"answer {answer!r} adds no token to its prompt")
        return full, starts

    def token_nll(self, input_ids: torch.Tensor, starts: torch.Tensor | int = 1) -> torch.Tensor:
        """Mean next-token NLL per row of unpadded ``input_ids`` over positions >= ``starts``
        (the first scored token); differentiable."""
        logits = self.logits(input_ids).float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1)
        target = input_ids[:, 1:].to(logp.device)
        nll = -logp.gather(-1, target[..., None])[..., 0]
        positions = torch.arange(1, input_ids.shape[1], device=logp.device)[None]
        starts_t = torch.as_tensor(starts, device=logp.device).reshape(-1, 1)
        mask = (positions >= starts_t).float()
        return (nll * mask).sum(1) / mask.sum(1).clamp_min(1)

    @torch.no_grad()
    def answer_nll(self, prompts: Sequence[str], answers: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """Teacher-forced mean NLL of each answer's tokens after its prompt (``[n]`` float32);
        an empty answer scores the whole text after its first token."""
        full, starts = self._answer_spans(prompts, answers)
        starts = [s if a else 1 for s, a in zip(starts, answers)]
        out = torch.zeros(len(full))
        for members in self._batches_by_length(full, batch_size):
            ids = torch.tensor([full[i] for i in members], device=self.device)
            out[members] = self.token_nll(ids, torch.tensor([starts[i] for i in members])).cpu()
        return out

    @torch.no_grad()
    def answer_scores(self, prompts: Sequence[str], answers: Sequence[str], batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
        """(correct, nll) per item from one teacher-forced pass: ``correct`` is whether greedy
        decoding after the prompt produces exactly the answer's tokens and then EOS (when the
        tokenizer has one) -- the exact match of :meth:`greedy_answers` in token space, without
        a generation loop; ``nll`` as :meth:`answer_nll`."""
        full, starts = self._answer_spans(prompts, answers)
        eos = self.tokenizer.eos_token_id
        if eos is not None:
            full = [ids + [eos] for ids in full]
        correct = torch.zeros(len(full), dtype=torch.bool)
        nll = torch.zeros(len(full))
        for members in self._batches_by_length(full, batch_size):
            ids = torch.tensor([full[i] for i in members], device=self.device)
            logits = self.logits(ids).float()
            logp = torch.log_softmax(logits[:, :-1], dim=-1)
            target = ids[:, 1:]
            token_nll = -logp.gather(-1, target[..., None])[..., 0]
            hit = logits[:, :-1].argmax(-1) == target
            positions = torch.arange(1, ids.shape[1], device=ids.device)[None]
            begin = torch.tensor([starts[i] for i in members], device=ids.device)[:, None]
            scored = positions >= begin
            answer_part = scored & (positions < ids.shape[1] - (1 if eos is not None else 0))
            correct[members] = ((hit | ~scored).all(dim=1)).cpu()
            nll[members] = ((token_nll * answer_part).sum(1) / answer_part.sum(1).clamp_min(1)).cpu()
        return correct, nll

    # -- weight patches and ablations ---------------------------------------------------------------

    @contextlib.contextmanager
    def patch_value_vector(self, layer: int, index: int, vector: torch.Tensor | None = None, delta: torch.Tensor | None = None) -> Iterator[torch.Tensor]:
        """Set value vector (``vector``) or add to it (``delta``) for the body; restored after it,
        bit for bit, whatever happens. Yields the vector in force."""
        if (vector is None) == (delta is None):
            raise ValueError("give exactly one of vector= (replace) or delta= (add)")
        weight, orientation = self._value_weight(self._layer(layer))
        index = self._index(index)
        view = weight.data[index] if orientation == "row" else weight.data[:, index]
        new = (vector if vector is not None else view.float() + delta.to(view.device).float()).to(view.device, view.dtype)
        if new.shape != view.shape:
            raise ValueError(f"a value vector of this model has shape {tuple(view.shape)}, got {tuple(new.shape)}")
        saved = view.clone()
        try:
            with torch.no_grad():
                view.copy_(new)
            self._fingerprint = None
            yield new.float()
        finally:
            with torch.no_grad():
                view.copy_(saved)
            self._fingerprint = None

    @contextlib.contextmanager
    def ablate(self, layer: int, index: int, mode: str = "zero", value: float | torch.Tensor | None = None) -> Iterator[None]:
        """Ablate neuron ``index`` of ``layer`` for the body.

        ``mode="zero"`` sets its value vector to 0 (the same as a zero activation); ``"mean"``
        replaces its activation ``a_i(x)`` by ``value`` (its mean over a corpus, see
        :meth:`mean_activation`) through the ``mlp.hook_post`` hook; ``"patch"`` replaces the
        activation by ``value`` (a number or a broadcastable tensor). Weights are restored and
        hooks removed after the body, whatever happens.
        """
        layer, index = self._layer(layer), self._index(index)
        if mode == "zero":
            with self.patch_value_vector(layer, index, vector=torch.zeros(self.d_model)):
                yield
            return
        if mode not in ("mean", "patch"):
            raise ValueError(f"ablation mode must be 'zero', 'mean' or 'patch', got {mode!r}")
        if value is None:
            raise ValueError(f"mode={mode!r} needs value= (the activation to put in place)")

        def replace(act: torch.Tensor) -> torch.Tensor:
            act = act.clone()
            act[..., index] = torch.as_tensor(value, dtype=act.dtype, device=act.device)
            return act

        with self.hooks([(self.hook_name("mlp.hook_post", layer), replace)]):
            yield

    @torch.no_grad()
    def mean_activation(self, layer: int, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """Mean activation ``a_i`` of every neuron of ``layer`` over the tokens of ``texts``, ``[d_mlp]``."""
        encoded = self.encode(texts)
        name = self.hook_name("mlp.hook_post", layer)
        total, count = torch.zeros(self.d_mlp), 0
        for members in self._batches_by_length(encoded, batch_size):
            _, cache = self.run_with_cache(torch.tensor([encoded[i] for i in members]), [name])
            acts = cache[name].reshape(-1, self.d_mlp)
            total += acts.sum(0)
            count += acts.shape[0]
        if count == 0:
            raise ValueError("mean_activation needs at least one text")
        return total / count

    def clone(self) -> LanguageModel:
        """An independent copy (weights deep-copied), e.g. to unlearn without touching this one."""
        twin = copy.copy(self)
        twin.model = copy.deepcopy(self.model)
        twin._fingerprint = None
        return twin


# ----------------------------------------------------------------------------------------------
# plain Hugging Face models
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Arch:
    """Where a Hugging Face architecture keeps its blocks, MLP output projection and final norm."""

    blocks: str
    mlp: str
    down: str
    orientation: str
    final_norm: str
    norm: str


#: ``config.model_type`` -> module paths; GPT-2's Conv1D stores value vectors as rows, the
#: Linear layers of LLaMA, OLMo and NeoX as columns.
HF_ARCHITECTURES: dict[str, _Arch] = {
    "gpt2": _Arch("transformer.h", "mlp", "mlp.c_proj", "row", "transformer.ln_f", "layernorm"),
    "llama": _Arch("model.layers", "mlp", "mlp.down_proj", "col", "model.norm", "rmsnorm"),
    "mistral": _Arch("model.layers", "mlp", "mlp.down_proj", "col", "model.norm", "rmsnorm"),
    "qwen2": _Arch("model.layers", "mlp", "mlp.down_proj", "col", "model.norm", "rmsnorm"),
    "olmo": _Arch("model.layers", "mlp", "mlp.down_proj", "col", "model.norm", "layernorm"),
    "olmo2": _Arch("model.layers", "mlp", "mlp.down_proj", "col", "model.norm", "rmsnorm"),
    "gpt_neox": _Arch("gpt_neox.layers", "mlp", "mlp.dense_4h_to_h", "col", "gpt_neox.final_layer_norm", "layernorm"),
}


def _hidden(args: tuple, kwargs: dict) -> torch.Tensor:
    return args[0] if args else kwargs["hidden_states"]


class HFLanguageModel(LanguageModel):
    """A Hugging Face ``*ForCausalLM`` (GPT-2, LLaMA, Mistral, Qwen2, OLMo, GPT-NeoX)."""

    backend = "hf"

    def __init__(self, spec: str, model: torch.nn.Module, tokenizer: Any, device=None) -> None:
        model_type = getattr(model.config, "model_type", "?")
        if model_type not in HF_ARCHITECTURES:
            raise ValueError(f"no value-vector layout known for model_type {model_type!r}; known: {', '.join(sorted(HF_ARCHITECTURES))}")
        self.arch = HF_ARCHITECTURES[model_type]
        super().__init__(spec, model, tokenizer, device=device, architecture=model_type)

    def _blocks(self) -> torch.nn.ModuleList:
        return self.model.get_submodule(self.arch.blocks)

    def _n_layers(self) -> int:
        return len(self._blocks())

    def _value_weight(self, layer: int) -> tuple[torch.Tensor, str]:
        return self._blocks()[layer].get_submodule(self.arch.down).weight, self.arch.orientation

    def _unembed_raw(self) -> torch.Tensor:
        return self.model.get_output_embeddings().weight.T

    def _final_norm(self) -> tuple[torch.Tensor | None, str]:
        norm = self.model.get_submodule(self.arch.final_norm)
        return getattr(norm, "weight", None), self.arch.norm

    def _forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, use_cache=False).logits

    def _add_hook(self, name: str, fn: Callable[[torch.Tensor], torch.Tensor | None]) -> Any:
        layer, kind = self._parse_hook(name)
        block = self._blocks()[layer]
        if kind == "mlp.hook_post":  # the input of the output projection

            def pre(module, args, kwargs):
                out = fn(_hidden(args, kwargs))
                if out is None:
                    return None
                return ((out, *args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": out})

            return block.get_submodule(self.arch.down).register_forward_pre_hook(pre, with_kwargs=True)
        if kind == "hook_resid_pre":

            def pre_block(module, args, kwargs):
                out = fn(_hidden(args, kwargs))
                if out is None:
                    return None
                return ((out, *args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": out})

            return block.register_forward_pre_hook(pre_block, with_kwargs=True)
        module = block if kind == "hook_resid_post" else block.get_submodule(self.arch.mlp)

        def post(module, args, output):
            hidden = output[0] if isinstance(output, tuple) else output
            out = fn(hidden)
            if out is None:
                return None
            return (out, *output[1:]) if isinstance(output, tuple) else out

        return module.register_forward_hook(post)


WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def is_language_model_dir(path: str | os.PathLike) -> bool:
    """Whether a folder holds a Hugging Face causal LM (a ``config.json`` without open_clip's)."""
    folder = Path(path)
    return (folder / "config.json").is_file() and not (folder / "open_clip_config.json").is_file()


def load_hf_language_model(path: str | os.PathLike, device=None, spec: str | None = None, dtype: torch.dtype = torch.float32) -> HFLanguageModel:
    """Load a local Hugging Face causal LM folder (``config.json``, weights, tokenizer files).

    Weights stored in fp16 are read into ``dtype`` (float32 by default: exact on a CPU). A hub
    name instead of a folder works only where the hub cache or a network has it.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = Path(path).expanduser()
    local = folder.is_dir()
    if local:
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"{folder} has no config.json; an hf: language model is a folder saved with save_pretrained")
        if not any((folder / name).is_file() for name in WEIGHT_FILES):
            present = sorted(p.name for p in folder.iterdir())
            raise FileNotFoundError(f"{folder} has a config.json but no weights; expected one of {', '.join(WEIGHT_FILES)}, found {present}")
    elif os.environ.get("HF_HUB_OFFLINE") == "1" or Path(str(path)).is_absolute():
        raise FileNotFoundError(f"no model folder at {folder}. hf:PATH names a local folder saved with save_pretrained (this machine is offline)")
    source = str(folder) if local else str(path)
    try:
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, local_files_only=local)
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local)
    except OSError as error:
        raise FileNotFoundError(f"could not load the language model {source!r}: {error}") from error
    return HFLanguageModel(spec or f"hf:{source}", model, tokenizer, device=device)


@register_backbone_scheme("hf", usage="hf:PATH", description="a local Hugging Face causal language model folder (GPT-2, LLaMA, OLMo, NeoX, ...)")
def _hf_scheme(rest: str, device=None, spec: str | None = None) -> HFLanguageModel:
    return load_hf_language_model(rest, device=device, spec=spec)
