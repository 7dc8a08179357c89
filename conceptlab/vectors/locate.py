"""Locate concept vectors: a streamed vocabulary projection of every MLP value vector.

ConceptVectors (Hong et al.) finds "concept vectors" -- single columns of an MLP output matrix
whose vocabulary projection ``v @ W_U`` is about one concept -- but ships no localisation script.
This is one: for every value vector of the scanned layers, take the ``k`` highest-logit tokens of
its projection and score them against the concept's term set with a pluggable scorer.

The scan is **streamed**: value vectors are read and projected ``chunk`` rows at a time, and only
each row's top-``k`` ids and its score are kept, so the peak extra memory is one
``chunk x d_vocab`` block -- never a layer's ``d_mlp x d_vocab`` product
(``benchmarks/vocab_scan.py`` measures both).

Defaults: ``k=200`` and ``projection="raw"`` as ConceptVectors (``get_output_embeddings()``, no
final-norm gain); a small vocabulary wants a smaller ``k`` (the FactsWorld studies use 10).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from conceptlab.backbones import LanguageModel
from conceptlab.concepts import Concept, ConceptBank, library_provenance

__all__ = [
    "SCORERS",
    "ScanResult",
    "TokenProjection",
    "project_to_vocab",
    "rank_weighted_score",
    "scan_vocabulary",
    "share_score",
]

Scorer = Callable[[torch.Tensor, int], torch.Tensor]


def share_score(hits: torch.Tensor, n_terms: int) -> torch.Tensor:
    """The share of the top-k tokens that are in the term set: ``|top-k ∩ T| / k``."""
    return hits.float().mean(dim=1)


def rank_weighted_score(hits: torch.Tensor, n_terms: int) -> torch.Tensor:
    """Hits weighted by ``1 / (rank + 1)``, normalised by the best possible sum (all of the first
    ``min(k, |T|)`` ranks hit), so 1.0 means the terms fill the top ranks."""
    k = hits.shape[1]
    weights = 1.0 / torch.arange(1, k + 1, dtype=torch.float32)
    best = weights[: max(1, min(k, n_terms))].sum()
    return (hits.float() * weights).sum(dim=1) / best


#: scorer name -> ``score(hits [n, k] bool, n_terms) -> [n]``; pass a callable for your own
SCORERS: dict[str, Scorer] = {"share": share_score, "rank_weighted": rank_weighted_score}


@dataclass
class TokenProjection:
    """The top-``k`` vocabulary tokens of one vector: ids, token strings and logits, best first."""

    layer: int
    index: int
    ids: list[int]
    tokens: list[str]
    logits: list[float]
    projection: str

    def as_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"rank": range(1, len(self.ids) + 1), "token": self.tokens, "logit": self.logits, "id": self.ids})


def project_to_vocab(lm: LanguageModel, layer: int, index: int, k: int = 200, projection: str = "raw", vector: torch.Tensor | None = None) -> TokenProjection:
    """Top-``k`` tokens of value vector (``layer``, ``index``) -- or of ``vector`` -- in ``lm``'s vocabulary."""
    v = lm.value_vector(layer, index) if vector is None else vector.to(torch.float32)
    logits = lm.project(v[None], projection)[0]
    top = logits.topk(min(k, logits.numel()))
    ids = top.indices.tolist()
    return TokenProjection(int(layer), int(index), ids, lm.token_strings(ids), [round(float(x), 5) for x in top.values], projection)


def _scorer(scorer: str | Scorer) -> tuple[str, Scorer]:
    if callable(scorer):
        return getattr(scorer, "__name__", "custom"), scorer
    if scorer not in SCORERS:
        raise ValueError(f"unknown scorer {scorer!r}; known: {', '.join(SCORERS)} (or pass a callable)")
    return scorer, SCORERS[scorer]


@dataclass
class ScanResult:
    """What :func:`scan_vocabulary` found.

    ``scores`` is ``[n_layers_scanned, d_mlp]`` (the layer x index map), ``top_ids`` the top-k
    ids of every scanned vector (``[n_layers_scanned, d_mlp, k]`` int32), ``table`` the ``keep``
    best vectors (layer, index, score, hits, tokens) ranked by score.
    """

    spec: str
    terms: list[str]
    term_ids: list[int]
    layers: list[int]
    k: int
    projection: str
    scorer: str
    chunk: int
    scores: torch.Tensor
    top_ids: torch.Tensor
    table: pd.DataFrame
    token_strings: Callable[[Sequence[int]], list[str]] = field(repr=False, default=lambda ids: [str(i) for i in ids])
    peak_block_bytes: int = 0

    def best(self) -> tuple[int, int, float]:
        """(layer, index, score) of the best vector."""
        row = self.table.iloc[0]
        return int(row["layer"]), int(row["index"]), float(row["score"])

    def top_tokens(self, layer: int, index: int) -> list[str]:
        return self.token_strings(self.top_ids[self.layers.index(layer), index].tolist())

    def score_map(self) -> pd.DataFrame:
        """Layers x neuron index scores (rows: layer)."""
        return pd.DataFrame(self.scores.numpy(), index=pd.Index(self.layers, name="layer"))

    def to_bank(self, lm: LanguageModel, n: int = 10, name: str = "concept", min_score: float = 0.0) -> ConceptBank:
        """The ``n`` best vectors as :class:`Concept` s (value vectors in ``lm``'s residual stream)."""
        rows = self.table[self.table["score"] >= min_score].head(n)
        if rows.empty:
            raise ValueError(f"no vector scores >= {min_score} for terms {self.terms[:5]}...")
        concepts = []
        for row in rows.itertuples():
            provenance = {
                "kind": "value_vector",
                "spec": self.spec,
                "layer": int(row.layer),
                "index": int(row.index),
                "projection": self.projection,
                "scorer": self.scorer,
                "k": self.k,
                "terms": self.terms,
                "top_tokens": list(row.tokens),
            }
            vector = lm.value_vector(int(row.layer), int(row.index))
            metrics = {"score": float(row.score), "hits": int(row.hits)}
            concepts.append(Concept(f"{name}@L{row.layer}.{row.index}", vector, lm.space, provenance=provenance, metrics=metrics))
        return ConceptBank(concepts, provenance=library_provenance(None, source="scan_vocabulary", spec=self.spec))


@torch.no_grad()
def scan_vocabulary(
    lm: LanguageModel,
    terms: Sequence[str],
    layers: Sequence[int] | None = None,
    k: int = 200,
    chunk: int = 1024,
    scorer: str | Scorer = "share",
    projection: str = "raw",
    keep: int = 100,
    progress: bool = True,
) -> ScanResult:
    """Score every value vector of ``layers`` against a concept's term set.

    Args:
        terms: the concept's words; looked up in the vocabulary as ``word``, ``Ġword`` and
            ``▁word`` (words that are not one token are dropped -- an error if none is left).
        k: top tokens kept per vector (ConceptVectors: 200).
        chunk: value vectors projected at once; peak memory is one ``chunk x d_vocab`` block.
        scorer: ``"share"`` (share of the top-k in the set), ``"rank_weighted"``, or a callable
            ``score(hits [n, k] bool, n_terms) -> [n]``.
        projection: ``"raw"`` or ``"folded"`` (see :meth:`LanguageModel.unembedding`).
        keep: rows of the ranked ``table`` (all scores stay in ``scores``).
    """
    if k < 1 or chunk < 1:
        raise ValueError(f"k and chunk must be >= 1, got k={k}, chunk={chunk}")
    terms = [str(t) for t in terms]
    term_ids = lm.token_ids(terms)
    if not term_ids:
        raise ValueError(f"none of the terms {terms[:8]} is a token of this model's vocabulary; a concept needs at least one")
    scorer_name, score_fn = _scorer(scorer)
    layers = list(range(lm.n_layers)) if layers is None else [lm.layer_number(int(layer)) for layer in layers]
    if not layers:
        raise ValueError("scan_vocabulary needs at least one layer")
    k = min(k, lm.d_vocab)
    w_u = lm.unembedding(projection, copy=False)
    is_term = torch.zeros(lm.d_vocab, dtype=torch.bool)  # a lookup table: much faster than torch.isin on every chunk
    is_term[term_ids] = True
    scores = torch.zeros(len(layers), lm.d_mlp)
    top_ids = torch.zeros(len(layers), lm.d_mlp, k, dtype=torch.int32)
    peak = 0
    bar = tqdm(total=len(layers) * lm.d_mlp, desc="vocabulary scan", unit="vec", disable=not progress)
    for row, layer in enumerate(layers):
        for start in range(0, lm.d_mlp, chunk):
            stop = min(start + chunk, lm.d_mlp)
            block = lm.value_vectors(layer, start, stop) @ w_u  # [chunk, d_vocab]: the only large temporary
            peak = max(peak, block.numel() * block.element_size())
            ids = block.topk(k, dim=1).indices
            del block
            hits = is_term[ids]
            scores[row, start:stop] = score_fn(hits, len(term_ids))
            top_ids[row, start:stop] = ids.to(torch.int32)
            bar.update(stop - start)
    bar.close()
    flat = scores.flatten()
    order = torch.argsort(flat, descending=True, stable=True)[:keep]
    records: list[dict[str, Any]] = []
    for position in order.tolist():
        row, index = divmod(position, lm.d_mlp)
        ids = top_ids[row, index].tolist()
        records.append(
            {
                "layer": layers[row],
                "index": index,
                "score": round(float(flat[position]), 6),
                "hits": int(np.isin(ids, term_ids).sum()),
                "tokens": lm.token_strings(ids),
            }
        )
    table = pd.DataFrame.from_records(records, columns=["layer", "index", "score", "hits", "tokens"])
    return ScanResult(
        spec=lm.spec, terms=terms, term_ids=term_ids, layers=layers, k=k, projection=projection, scorer=scorer_name, chunk=chunk,
        scores=scores, top_ids=top_ids, table=table, token_strings=lm.token_strings, peak_block_bytes=peak,
    )
