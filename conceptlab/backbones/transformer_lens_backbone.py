"""``transformer_lens:NAME``: a causal LM through transformer-lens, behind :class:`LanguageModel`.

transformer-lens 3.x has ``HookedTransformer`` (deprecated there, removed in 4.x: importing it
raises ImportError); 4.x has ``TransformerBridge``, which wraps the Hugging Face model itself.
The loader detects which one the installed version offers -- nothing of transformer-lens is
imported at module level -- and ``backend="bridge"`` asks for the bridge on 3.x as well.

NAME is a local Hugging Face folder (offline) or an official transformer-lens name (needs the
hub). The weights are loaded **without** transformer-lens' processing by default
(``from_pretrained_no_processing``; the bridge's raw HF numerics), so value vectors and
projections equal the ``hf:`` path's bit for bit; ``processing="folded"`` applies
HookedTransformer's default folding (LayerNorm folded, writing weights and unembedding centred),
and the adapter then reports ``processing == "folded"`` with every projection.

Where we depart: transformers 5 no longer gives ``GPT2Config.n_ctx``, which transformer-lens 3.x
reads; we give it ``n_ctx = n_positions``, and transformer-lens 3.x sets a GPT-2's ``d_mlp`` to
``4 * d_model`` whatever its ``n_inner``; we take ``d_mlp`` from the weights. And transformer-lens resolves a local folder's architecture from its *path* when
the path contains "llama" or "gemma" (without reading ``config.json``); we load through a
neutral name (a temporary folder of symlinks) so a folder's name never changes what is loaded.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from conceptlab.backbones.language_model import HF_ARCHITECTURES, HFLanguageModel, LanguageModel
from conceptlab.registry import register_backbone_scheme

__all__ = ["HookedTransformerLanguageModel", "TransformerBridgeLanguageModel", "load_transformer_lens", "transformer_lens_backend"]

BACKENDS = ("auto", "hooked", "bridge")


def transformer_lens_backend() -> str:
    """``"hooked"`` where ``HookedTransformer`` can be imported (transformer-lens <= 3.x), else
    ``"bridge"``; an ImportError with the install line when transformer-lens is absent."""
    try:
        import transformer_lens  # noqa: F401
    except ImportError as error:  # pragma: no cover - a declared dependency
        raise ImportError("transformer_lens: backbones need `pip install 'transformer-lens<4'` (or 4.x for TransformerBridge)") from error
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from transformer_lens import HookedTransformer  # noqa: F401
    except ImportError:
        return "bridge"
    return "hooked"


def _hook_point_hook(model: torch.nn.Module, name: str, fn: Callable[[torch.Tensor], torch.Tensor | None]) -> Any:
    hook_dict = model.hook_dict
    if name not in hook_dict:
        raise ValueError(f"transformer-lens model has no hook {name!r}")

    def post(module, args, output):
        return fn(output)

    return hook_dict[name].register_forward_hook(post)


class HookedTransformerLanguageModel(LanguageModel):
    """A transformer-lens ``HookedTransformer`` (value vectors are rows of ``blocks[l].mlp.W_out``)."""

    backend = "hooked_transformer"

    def _n_layers(self) -> int:
        return int(self.model.cfg.n_layers)

    def _value_weight(self, layer: int) -> tuple[torch.Tensor, str]:
        return self.model.blocks[layer].mlp.W_out, "row"

    def _unembed_raw(self) -> torch.Tensor:
        return self.model.unembed.W_U

    def _final_norm(self) -> tuple[torch.Tensor | None, str]:
        norm = getattr(self.model, "ln_final", None)
        gain = getattr(norm, "w", None)
        if gain is None:  # folded (LayerNormPre) or no final norm: W_U already holds the fold
            return None, "none"
        return gain, "rmsnorm" if "RMS" in type(norm).__name__ else "layernorm"

    def _forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids, return_type="logits")

    def _add_hook(self, name: str, fn: Callable[[torch.Tensor], torch.Tensor | None]) -> Any:
        return _hook_point_hook(self.model, name, fn)


class TransformerBridgeLanguageModel(HFLanguageModel):
    """A transformer-lens ``TransformerBridge``: weights are those of the Hugging Face model it
    wraps (``bridge.original_model``), forward passes and hooks go through the bridge."""

    backend = "transformer_bridge"

    def __init__(self, spec: str, bridge: torch.nn.Module, tokenizer: Any, device=None) -> None:
        self.bridge = bridge
        super().__init__(spec, bridge.original_model, tokenizer, device=device)
        self.bridge.to(self.device).eval()

    def _forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.bridge(input_ids, return_type="logits")

    def _add_hook(self, name: str, fn: Callable[[torch.Tensor], torch.Tensor | None]) -> Any:
        return _hook_point_hook(self.bridge, name, fn)

    def clone(self) -> LanguageModel:
        raise NotImplementedError("a TransformerBridge model cannot be deep-copied here; load it again, or clone its hf: twin")


@contextlib.contextmanager
def _readable_copy(folder: Path, config_patch: dict[str, Any]) -> Iterator[str]:
    """The folder as transformer-lens 3.x can read it: under a neutral name (no "llama"/"gemma"
    for its name sniffing) and with ``config_patch`` written into its config.json (the other
    files are symlinks). The folder itself when neither is needed."""
    if not config_patch and not any(word in str(folder).lower() for word in ("llama", "gemma")):
        yield str(folder)
        return
    holder = Path(tempfile.mkdtemp(prefix="conceptlab-tl-"))
    try:
        copy = holder / "model"
        copy.mkdir()
        for item in folder.iterdir():
            if item.name != "config.json":
                os.symlink(item, copy / item.name)
        config = json.loads((folder / "config.json").read_text())
        (copy / "config.json").write_text(json.dumps({**config, **config_patch}))
        yield str(copy)
    finally:
        shutil.rmtree(holder, ignore_errors=True)


def load_transformer_lens(name: str, device=None, spec: str | None = None, backend: str = "auto", processing: str = "none") -> LanguageModel:
    """Load ``name`` (a local HF folder or an official transformer-lens name) through transformer-lens.

    Args:
        backend: ``"auto"`` (HookedTransformer where it exists, else TransformerBridge),
            ``"hooked"`` or ``"bridge"``.
        processing: ``"none"`` (raw weights, the default) or ``"folded"`` (HookedTransformer's
            fold_ln / centre_writing_weights / centre_unembed; the bridge's compatibility mode).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if processing not in ("none", "folded"):
        raise ValueError(f"processing must be 'none' or 'folded', got {processing!r}")
    available = transformer_lens_backend()
    chosen = available if backend == "auto" else backend
    if chosen == "hooked" and available != "hooked":
        raise ImportError("the installed transformer-lens (4.x) has no HookedTransformer; use backend='bridge' or install 'transformer-lens<4'")
    folder = Path(name).expanduser()
    local = folder.is_dir()
    if local and not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder} has no config.json; transformer_lens:PATH needs a Hugging Face model folder")
    if not local and (os.environ.get("HF_HUB_OFFLINE") == "1" or folder.is_absolute()):
        raise FileNotFoundError(f"no model folder at {folder}, and an official transformer-lens name needs the hub (this machine is offline)")
    spec = spec or f"transformer_lens:{name}"
    from transformers import AutoModelForCausalLM, AutoTokenizer

    fold = processing == "folded"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        if chosen == "bridge":
            from transformer_lens.model_bridge import TransformerBridge

            source = str(folder.resolve()) if local else name
            tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local)
            bridge = TransformerBridge.boot_transformers(source, device="cpu", dtype=torch.float32, tokenizer=tokenizer)
            if fold:
                bridge.enable_compatibility_mode()
            if getattr(bridge.original_model.config, "model_type", None) not in HF_ARCHITECTURES:
                raise ValueError(f"no value-vector layout known for {bridge.original_model.config.model_type!r}")
            adapter: LanguageModel = TransformerBridgeLanguageModel(spec, bridge, tokenizer, device=device)
            adapter.processing = processing
            return adapter
        from transformer_lens import HookedTransformer

        if not local:
            loader = HookedTransformer.from_pretrained if fold else HookedTransformer.from_pretrained_no_processing
            model = loader(name, device="cpu")
            return HookedTransformerLanguageModel(spec, model, model.tokenizer, device=device, architecture=model.cfg.original_architecture or "", processing=processing)
        from transformer_lens import loading_from_pretrained as loading

        folder = folder.resolve()
        hf_model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        patch = {}
        if hf_model.config.model_type == "gpt2" and "n_ctx" not in hf_model.config.to_dict():
            patch["n_ctx"] = hf_model.config.n_positions  # transformers 5 dropped GPT2Config.n_ctx, which transformer-lens 3.x reads
        with _readable_copy(folder, patch) as path:
            cfg = loading.get_pretrained_model_config(path, fold_ln=fold, device="cpu", dtype=torch.float32)
            state = loading.get_pretrained_state_dict(path, cfg, hf_model=hf_model)
        arch = HF_ARCHITECTURES.get(hf_model.config.model_type)
        if arch is not None:  # transformer-lens 3.x assumes GPT-2's d_mlp = 4 * d_model, ignoring n_inner
            down = hf_model.get_submodule(arch.blocks)[0].get_submodule(arch.down).weight
            cfg.d_mlp = int(down.shape[0] if arch.orientation == "row" else down.shape[1])
        cfg.tokenizer_name = None  # the adapter tokenizes with the folder's own tokenizer
        model = HookedTransformer(cfg, tokenizer=None, move_to_device=False)
        model.load_and_process_state_dict(
            state, fold_ln=fold, center_writing_weights=fold, center_unembed=fold, fold_value_biases=fold, refactor_factored_attn_matrices=False
        )
        del hf_model
    return HookedTransformerLanguageModel(spec, model, tokenizer, device=device, architecture=str(cfg.original_architecture), processing=processing)


@register_backbone_scheme(
    "transformer_lens",
    usage="transformer_lens:NAME",
    description="a causal LM through transformer-lens (HookedTransformer on 3.x, TransformerBridge on 4.x); NAME is a local HF folder or an official name",
)
def _transformer_lens_scheme(rest: str, device=None, spec: str | None = None) -> LanguageModel:
    return load_transformer_lens(rest, device=device, spec=spec)
