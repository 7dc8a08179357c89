"""Naming SAE latents: each decoder direction against a vocabulary's text embeddings (DN-CBM step 3).

>>> vocab = load_vocabulary()                                   # packaged vocabulary_dn.txt
>>> names = name_latents(sae, backbone, vocab)                  # cosine, no templates (DN-CBM)
>>> names.table                                                 # top-k candidates, scores, margin
>>> names = names.rename(12, "stripes", note="top images are striped")   # the analyst's edit
>>> names.save("runs/sae/names"); names.to_bank().save("runs/sae/bank")

Following ``neuroexplicit-saar/Discover-then-Name`` (``assign_names.py``,
``MethodOurs.get_concept_name_similarity_matrix``): the name of latent k is
``argmax_v cos(W_dec[k], T_v)`` with ``T_v`` the L2-normalised text embedding of word v. The
decoder row (what the latent writes), not the encoder row, is compared. The official repository
embeds the raw word without a template (PR #9's ``compute_embeddings.py``); ``templates`` adds
CLIP-style prompt ensembling (mean of normalised embeddings, re-normalised) as an option.
Names never change what an SAE or a DN-CBM computes; they are for explanations.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from conceptlab.concepts.text import text_concepts
from conceptlab.utils import as_matrix

__all__ = [
    "LatentNames",
    "load_vocabulary",
    "vocabulary_path",
    "embed_vocabulary",
    "name_directions",
    "name_latents",
]

NAMES_FORMAT = "conceptlab.LatentNames"
NAMES_FORMAT_VERSION = 1


def vocabulary_path(name: str = "vocabulary_dn.txt") -> Path:
    """Path of a vocabulary file shipped in ``conceptlab/resources``."""
    return Path(str(resources.files("conceptlab") / "resources" / name))


def load_vocabulary(path: str | os.PathLike | None = None) -> list[str]:
    """Words (or short phrases), one a line; ``#`` starts a comment; blanks and repeats dropped.

    Without ``path``, the packaged ``vocabulary_dn.txt`` (see ``data_cards/vocabulary_dn.md``).
    """
    file = Path(path) if path is not None else vocabulary_path()
    if not file.is_file():
        raise FileNotFoundError(f"no vocabulary file at {file}")
    words, seen = [], set()
    for line in file.read_text(encoding="utf-8").splitlines():
        word = " ".join(line.split("#", 1)[0].split())
        if word and word not in seen:
            seen.add(word)
            words.append(word)
    if not words:
        raise ValueError(f"vocabulary file {file} holds no words")
    return words


def _check_vocabulary(words: Sequence[str]) -> list[str]:
    words = [str(w) for w in words] if words is not None else []
    if not words:
        raise ValueError("the vocabulary is empty: naming needs at least one word")
    bad = [w for w in words if not w.strip()]
    if bad:
        raise ValueError(f"the vocabulary holds {len(bad)} empty word(s)")
    counts = Counter(words)
    duplicates = sorted(w for w, c in counts.items() if c > 1)
    if duplicates:
        raise ValueError(f"the vocabulary repeats words: {', '.join(map(repr, duplicates[:10]))}")
    return words


@torch.no_grad()
def embed_vocabulary(backbone: Any, words: Sequence[str], templates: Sequence[str] | None = None, batch_size: int = 256) -> torch.Tensor:
    """(V, d) unit-norm text embeddings of ``words`` (one per word, templates ensembled)."""
    words = _check_vocabulary(words)
    return text_concepts(backbone, words, templates=templates, batch_size=batch_size).vectors


def _unit_rows(matrix: Any, what: str) -> torch.Tensor:
    tensor = as_matrix(matrix, what, single_row=False)
    norms = tensor.norm(dim=1, keepdim=True)
    if bool((norms == 0).any()):
        rows = (norms.flatten() == 0).nonzero().flatten()[:5].tolist()
        raise ValueError(f"{what} has zero rows (e.g. {rows}); a zero vector has no direction")
    return tensor / norms


@dataclass
class LatentNames:
    """Names of SAE latents with their evidence, and the analyst's renames.

    ``table`` has one row per latent: ``latent``, ``name`` (current), ``auto_name`` (top
    vocabulary word), ``score`` (its cosine), ``runner_up`` and ``runner_up_score``, ``margin``
    (score − runner-up score), ``candidates`` (top-k words) and ``candidate_scores``, ``live``
    (fired on the SAE's training data, when known), ``renamed``, ``renamed_by`` and ``note``.
    ``directions`` (M, d) are the unit decoder rows that were named.
    """

    table: pd.DataFrame
    directions: torch.Tensor
    vocabulary: list[str]
    templates: list[str] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.table)

    def __repr__(self) -> str:
        renamed = int(self.table["renamed"].sum())
        return f"LatentNames({len(self)} latents, vocabulary of {len(self.vocabulary)}, {renamed} renamed)"

    @property
    def names(self) -> list[str]:
        return self.table["name"].tolist()

    def __getitem__(self, latent: int) -> str:
        return str(self.table.loc[self._row(latent), "name"])

    def _row(self, latent: int) -> int:
        if isinstance(latent, bool) or not isinstance(latent, (int, np.integer)):
            raise TypeError(f"latents are addressed by integer index, got {latent!r}")
        if not 0 <= int(latent) < len(self):
            raise IndexError(f"latent {latent} out of range for {len(self)} latents")
        return int(latent)

    def rename(self, latent: int | Mapping[int, str], name: str | None = None, by: str = "analyst", note: str | None = None) -> LatentNames:
        """A copy with ``latent`` renamed to ``name`` (or a whole ``{latent: name}`` mapping).

        The automatic name and its scores stay in the table; ``renamed_by`` and ``note`` record
        who changed it and why. The original object is not changed.
        """
        mapping = dict(latent) if isinstance(latent, Mapping) else {latent: name}
        table = self.table.copy()
        for index, new in mapping.items():
            row = self._row(index)
            if not isinstance(new, str) or not new.strip():
                raise ValueError(f"the new name of latent {index} must be a non-empty string, got {new!r}")
            table.at[row, "name"] = " ".join(new.split())
            table.at[row, "renamed"] = True
            table.at[row, "renamed_by"] = str(by)
            table.at[row, "note"] = note
        return LatentNames(table, self.directions, self.vocabulary, self.templates, dict(self.provenance))

    def unique_names(self) -> list[str]:
        """Names made unique for a ConceptBank: the best-scoring latent of a name keeps it,
        others become ``"name #latent"``."""
        order = self.table.sort_values(["score", "latent"], ascending=[False, True], kind="stable")
        taken: set[str] = set()
        result = [""] * len(self)
        for row in order.itertuples():
            name = str(row.name)
            result[row.latent] = name if name not in taken else f"{name} #{row.latent}"
            taken.add(result[row.latent])
        return result

    def to_bank(self, space: str | None = None, latents: Iterable[int] | None = None):
        """A :class:`~conceptlab.concepts.ConceptBank` of the named decoder directions.

        Each concept's provenance says ``kind="sae_decoder"``, its latent, automatic name,
        candidates and margin, and any rename; the SAE run's provenance is the bank's (once, not
        per concept). ``latents`` picks a subset (all by default).
        """
        from conceptlab.concepts import Concept, ConceptBank

        space = space or self.provenance.get("space") or "sae-input"
        unique = self.unique_names()
        keep = range(len(self)) if latents is None else [self._row(i) for i in latents]
        concepts = []
        for i in keep:
            row = self.table.iloc[i]
            concepts.append(Concept(
                name=unique[i],
                vector=self.directions[i],
                space=space,
                provenance={
                    "kind": "sae_decoder",
                    "latent": int(row["latent"]),
                    "auto_name": row["auto_name"],
                    "score": float(row["score"]),
                    "margin": float(row["margin"]),
                    "candidates": list(row["candidates"]),
                    "candidate_scores": [float(s) for s in row["candidate_scores"]],
                    "live": None if pd.isna(row["live"]) else bool(row["live"]),
                    "renamed_by": row["renamed_by"] if bool(row["renamed"]) else None,
                    "note": row["note"],
                    "templates": self.templates,
                },
            ))
        return ConceptBank(concepts, provenance={**self.provenance, "builder": "LatentNames.to_bank"})

    # -- persistence ---------------------------------------------------------------------------

    def save(self, directory: str | os.PathLike) -> Path:
        """``config.json`` (the table, vocabulary, templates, provenance) + ``directions.safetensors``."""
        from conceptlab.concepts.bank import write_json, write_tensors
        from conceptlab.concepts.concept import jsonable

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        records = self.table.to_dict("records")
        write_tensors(directory / "directions.safetensors", {"directions": self.directions}, metadata={"format": NAMES_FORMAT})
        write_json(directory / "config.json", jsonable({
            "format": NAMES_FORMAT, "format_version": NAMES_FORMAT_VERSION, "vocabulary": self.vocabulary,
            "templates": self.templates, "provenance": self.provenance, "latents": records,
        }))
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike) -> LatentNames:
        from conceptlab.concepts.bank import read_json, read_tensors

        directory = Path(directory)
        config = read_json(directory / "config.json", "latent names config")
        if config.get("format") != NAMES_FORMAT:
            raise ValueError(f"{directory / 'config.json'} is not a latent-names file (format {config.get('format')!r})")
        directions = read_tensors(directory / "directions.safetensors", required=("directions",))["directions"]
        table = _frame(config["latents"])
        if len(table) != directions.shape[0]:
            raise ValueError(f"{directory} is corrupt: {len(table)} names for {directions.shape[0]} directions")
        return cls(table, directions.float(), list(config["vocabulary"]), config.get("templates"), dict(config.get("provenance") or {}))


_COLUMNS = ["latent", "name", "auto_name", "score", "runner_up", "runner_up_score", "margin", "candidates",
            "candidate_scores", "live", "renamed", "renamed_by", "note"]
_TEXT_COLUMNS = ("name", "auto_name", "runner_up", "live", "renamed_by", "note")


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The names table with fixed dtypes: text/optional columns are object with None for missing."""
    table = pd.DataFrame(rows, columns=_COLUMNS)
    for column in _TEXT_COLUMNS:
        values = table[column].astype(object)
        table[column] = values.where(values.notna(), None)
    table["renamed"] = table["renamed"].astype(bool)
    table["latent"] = table["latent"].astype(int)
    return table


def name_directions(
    directions: Any,
    vocab_embeddings: Any,
    vocabulary: Sequence[str],
    top_k: int = 5,
    live: Any = None,
    templates: Sequence[str] | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> LatentNames:
    """Name each direction (M, d) by cosine against vocabulary embeddings (V, d).

    The core of :func:`name_latents`, usable with any directions (SAE decoder rows, CAVs, ...).
    """
    vocabulary = _check_vocabulary(vocabulary)
    D = _unit_rows(directions, "directions")
    T = _unit_rows(vocab_embeddings, "vocabulary embeddings")
    if T.shape[0] != len(vocabulary):
        raise ValueError(f"{T.shape[0]} vocabulary embeddings for {len(vocabulary)} words")
    if T.shape[1] != D.shape[1]:
        raise ValueError(f"directions have dimension {D.shape[1]} but the vocabulary embeddings {T.shape[1]}: "
                         "they must live in the same space (the backbone's joint embedding)")
    if int(top_k) < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    k = min(int(top_k), len(vocabulary))
    similarity = D @ T.T  # (M, V)
    scores, index = similarity.topk(min(max(k, 2), len(vocabulary)), dim=1)
    live_values: list[Any] = [None] * D.shape[0]
    if live is not None:
        live_t = torch.as_tensor(np.asarray(live, dtype=bool))
        if live_t.shape != (D.shape[0],):
            raise ValueError(f"live must be a boolean vector of length {D.shape[0]}, got shape {tuple(live_t.shape)}")
        live_values = live_t.tolist()
    rows = []
    for m in range(D.shape[0]):
        words = [vocabulary[j] for j in index[m].tolist()]
        vals = [float(v) for v in scores[m].tolist()]
        has_second = len(words) > 1
        rows.append({
            "latent": m,
            "name": words[0],
            "auto_name": words[0],
            "score": vals[0],
            "runner_up": words[1] if has_second else None,
            "runner_up_score": vals[1] if has_second else float("nan"),
            "margin": vals[0] - vals[1] if has_second else float("nan"),
            "candidates": words[:k],
            "candidate_scores": vals[:k],
            "live": live_values[m],
            "renamed": False,
            "renamed_by": None,
            "note": None,
        })
    table = _frame(rows)
    meta = {"method": "cosine(decoder row, L2-normalised text embedding), argmax over the vocabulary",
            "vocabulary_size": len(vocabulary), "templates": list(templates) if templates else None, **dict(provenance or {})}
    return LatentNames(table, D, list(vocabulary), list(templates) if templates else None, meta)


def name_latents(
    sae: Any,
    backbone: Any,
    vocabulary: Sequence[str] | None = None,
    templates: Sequence[str] | None = None,
    top_k: int = 5,
    vocab_embeddings: Any = None,
) -> LatentNames:
    """Name every latent of a fitted :class:`~conceptlab.discovery.SparseAutoencoder`.

    Args:
        sae: the fitted SAE; its unit decoder rows are named.
        backbone: the image-text backbone whose image embeddings the SAE was trained on (its text
            encoder embeds the vocabulary). May be None when ``vocab_embeddings`` is given.
        vocabulary: words; the packaged ``vocabulary_dn.txt`` by default.
        templates: prompt templates like ``"a photo of a {}."``; None embeds the bare word (DN-CBM).
        top_k: candidates kept per latent.
        vocab_embeddings: precomputed (V, d) embeddings of ``vocabulary`` (skips the backbone).
    """
    from conceptlab.concepts.text import image_embedding_space

    vocabulary = load_vocabulary() if vocabulary is None else _check_vocabulary(vocabulary)
    if vocab_embeddings is None:
        if backbone is None:
            raise ValueError("name_latents needs a backbone (to embed the vocabulary) or vocab_embeddings")
        vocab_embeddings = embed_vocabulary(backbone, vocabulary, templates)
    spec = str(getattr(backbone, "spec", "")) or None
    live = getattr(sae, "live_", None)
    provenance = {
        "space": image_embedding_space(spec) if spec else None,
        "backbone": spec,
        "sae": getattr(sae, "provenance_", None),
    }
    return name_directions(sae.decoder_directions, vocab_embeddings, vocabulary, top_k=top_k, live=live,
                           templates=templates, provenance=provenance)
