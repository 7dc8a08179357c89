"""V2C-CBM's vision-to-concept tokenizer (He et al., AAAI 2025): concepts from a vocabulary and
unlabelled images, no LLM.

Faithful to ``riverback/V2C-CBM`` ``code_appendix/step0..3``:

0. vocabulary = words (adjectives ∪ nouns) + "adjective noun" pairs (+ optional trigrams
   "{relation} {adjective} {noun}", relation ∈ has / part of / at location / made of);
1. class base features: the 80 CLIP ImageNet templates filled with the class name, each
   embedding L2-normalised, **not averaged** (T, d) per class -- or, few-shot, the normalised
   image embeddings of each class's shots;
2. every unlabelled image is scored per class by its mean cosine with the class's base features
   and the images are ranked (``step2``);
3. codebook = per vocabulary entry the **mean of the 86 L2-normalised template embeddings
   (80 ImageNet + 6 V2C templates), not re-normalised**; per class the top ``n_images`` (500)
   ranked images are L2-normalised, compared with the codebook, their **top-5** tokens counted,
   and the **50 most frequent** tokens kept (``step3``).

Where we depart from the code:

- no augmentation: the code applies RandomResizedCrop + flip to already-preprocessed tensors
  (with a literal ``...`` in the transform list, so it does not run as released); conceptlab
  methods never re-embed images -- the embeddings come from the activation store;
- tokens never hit are not kept (the code's ``argsort(freq)[::-1][:50]`` pads a short list with
  zero-count tokens); ties in frequency go to the earlier vocabulary entry (the code's argsort is
  not stable);
- the unlabelled set is whatever the caller passes (the code: 1000 random ImageNet-train images).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from conceptlab.backbones.base import encode_texts_in_batches
from conceptlab.concepts.bank import library_provenance, unknown_name
from conceptlab.concepts.language.sets import ConceptSet

__all__ = [
    "V2CTokenizer",
    "V2C_EXTRA_TEMPLATES",
    "RELATIONS",
    "imagenet_templates",
    "v2c_templates",
    "load_v2c_vocabulary",
    "read_word_lists",
    "v2c_vocabulary_path",
    "embed_codebook",
    "class_text_features",
    "class_shot_features",
]

#: the six templates V2C adds to the 80 ImageNet ones for its codebook
V2C_EXTRA_TEMPLATES = ("has a {} on it.", "is made of {}.", "is a {}.", "has many {} on it.", "is a type of {}.", "part of a {}.")
#: trigram relations of ``step0_generate_word_list.py``
RELATIONS = ("has", "part of", "at location", "made of")


def imagenet_templates() -> list[str]:
    """CLIP's 80 ImageNet prompt templates (from open_clip), as ``str.format`` strings."""
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    return [template("{}") for template in OPENAI_IMAGENET_TEMPLATES]


def v2c_templates() -> list[str]:
    """The 86 codebook templates: 80 ImageNet + :data:`V2C_EXTRA_TEMPLATES`."""
    return imagenet_templates() + list(V2C_EXTRA_TEMPLATES)


# ----------------------------------------------------------------------------------------------
# vocabulary
# ----------------------------------------------------------------------------------------------


def v2c_vocabulary_path() -> Path:
    """The packaged ``vocabulary_v2c.txt`` (see ``data_cards/vocabulary_v2c.md``)."""
    return Path(str(resources.files("conceptlab") / "resources" / "vocabulary_v2c.txt"))


def read_word_lists(path: str | os.PathLike | None = None) -> dict[str, list[str]]:
    """Sections of a vocabulary file: ``{"adjectives": [...], "nouns": [...], "phrases": [...]}``.

    Lines before any ``[section]`` header count as phrases; ``#`` starts a comment; repeats within
    a section are dropped.
    """
    file = Path(path) if path is not None else v2c_vocabulary_path()
    if not file.is_file():
        raise FileNotFoundError(f"no vocabulary file at {file}")
    sections: dict[str, list[str]] = {"adjectives": [], "nouns": [], "phrases": []}
    current = "phrases"
    for line in file.read_text(encoding="utf-8").splitlines():
        text = " ".join(line.split("#", 1)[0].split())
        if not text:
            continue
        if text.startswith("[") and text.endswith("]"):
            current = text[1:-1].strip().lower()
            if current not in sections:
                raise ValueError(f"{file}: unknown section [{current}]; use [adjectives], [nouns] or [phrases]")
            continue
        if text not in sections[current]:
            sections[current].append(text)
    if not any(sections.values()):
        raise ValueError(f"vocabulary file {file} holds no words")
    return sections


def load_v2c_vocabulary(path: str | os.PathLike | None = None, pairs: bool = True, relations: bool = False) -> list[str]:
    """V2C's token list: words and phrases, then "adjective noun" pairs, then (``relations``)
    "{relation} {adjective} {noun}" trigrams; unique, in that order."""
    lists = read_word_lists(path)
    words = lists["adjectives"] + lists["nouns"] + lists["phrases"]
    if pairs:
        words += [f"{a} {n}" for a in lists["adjectives"] for n in lists["nouns"]]
    if relations:
        words += [f"{r} {a} {n}" for r in RELATIONS for a in lists["adjectives"] for n in lists["nouns"]]
    return list(dict.fromkeys(words))


# ----------------------------------------------------------------------------------------------
# embeddings
# ----------------------------------------------------------------------------------------------


def _encode(backbone: Any, texts: list[str], batch_size: int) -> torch.Tensor:
    return torch.nn.functional.normalize(encode_texts_in_batches(backbone, texts, batch_size), dim=1)


@torch.no_grad()
def embed_codebook(backbone: Any, words: Sequence[str], templates: Sequence[str] | None = None, batch_size: int = 1024) -> torch.Tensor:
    """V2C's codebook (|V|, d): per entry, the mean of its L2-normalised template embeddings,
    **not re-normalised** (``step3``). ``templates`` defaults to :func:`v2c_templates` (86)."""
    words = [str(w) for w in words]
    if not words:
        raise ValueError("the vocabulary is empty")
    templates = list(templates) if templates is not None else v2c_templates()
    if not templates or any("{}" not in t for t in templates):
        raise ValueError("every template must contain '{}'")
    rows = []
    chunk = max(1, batch_size // len(templates))
    for start in range(0, len(words), chunk):
        block = words[start : start + chunk]
        texts = [t.format(w) for w in block for t in templates]
        emb = _encode(backbone, texts, batch_size)
        rows.append(emb.view(len(block), len(templates), -1).mean(1))
    return torch.cat(rows)


@torch.no_grad()
def class_text_features(backbone: Any, class_names: Sequence[str], templates: Sequence[str] | None = None, batch_size: int = 1024) -> list[torch.Tensor]:
    """Zero-shot class base features: per class a (T, d) stack of L2-normalised template
    embeddings (``step1``: the 80 ImageNet templates, not averaged)."""
    templates = list(templates) if templates is not None else imagenet_templates()
    out = []
    for name in class_names:
        out.append(_encode(backbone, [t.format(name) for t in templates], batch_size))
    return out


def class_shot_features(embeddings: Any, labels: Any, n_classes: int) -> list[torch.Tensor]:
    """Few-shot class base features: per class the L2-normalised embeddings of its labelled shots."""
    X = torch.as_tensor(np.asarray(embeddings.detach().cpu() if isinstance(embeddings, torch.Tensor) else embeddings, dtype=np.float32))
    y = torch.as_tensor(np.asarray(labels.detach().cpu() if isinstance(labels, torch.Tensor) else labels, dtype=np.int64)).reshape(-1)
    X = torch.nn.functional.normalize(X, dim=1)
    out = []
    for k in range(int(n_classes)):
        shots = X[y == k]
        if len(shots) == 0:
            raise ValueError(f"class {k} has no labelled shots")
        out.append(shots)
    return out


# ----------------------------------------------------------------------------------------------
# the tokenizer
# ----------------------------------------------------------------------------------------------


class V2CTokenizer:
    """Quantise unlabelled images into vocabulary tokens and keep each class's most frequent ones.

    Args:
        n_images: images per class in its quantisation set (the top-ranked ones; V2C: 500).
        tokens_per_image: tokens counted per image (top-5).
        concepts_per_class: tokens kept per class (top-50).

    After :meth:`fit`: ``class2concepts_`` (class -> tokens, most frequent first), ``counts_``
    (K, |V|) token counts, ``ranked_images_`` (K, n) indices into the unlabelled set,
    ``image_scores_`` (K, n) their class scores.
    """

    def __init__(self, n_images: int = 500, tokens_per_image: int = 5, concepts_per_class: int = 50) -> None:
        self.n_images = n_images
        self.tokens_per_image = tokens_per_image
        self.concepts_per_class = concepts_per_class

    def __repr__(self) -> str:
        fitted = f", {len(self.class2concepts_)} classes" if hasattr(self, "class2concepts_") else ""
        return f"V2CTokenizer(n_images={self.n_images}, tokens_per_image={self.tokens_per_image}, concepts_per_class={self.concepts_per_class}{fitted})"

    @torch.no_grad()
    def fit(
        self,
        unlabelled: Any,
        codebook: Any,
        words: Sequence[str],
        class_features: Sequence[Any],
        class_names: Sequence[str],
    ) -> V2CTokenizer:
        """Tokenise.

        Args:
            unlabelled: (N, d) image embeddings (raw; normalised here), e.g. from the store.
            codebook: (|V|, d) from :func:`embed_codebook`, aligned with ``words``.
            class_features: per class a (T_k, d) tensor (:func:`class_text_features` or
                :func:`class_shot_features`), or a (K, T, d) tensor.
            class_names: in the order of ``class_features``.
        """
        for value, name in ((self.n_images, "n_images"), (self.tokens_per_image, "tokens_per_image"), (self.concepts_per_class, "concepts_per_class")):
            if int(value) < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        U = torch.as_tensor(np.asarray(unlabelled.detach().cpu() if isinstance(unlabelled, torch.Tensor) else unlabelled, dtype=np.float32))
        C = torch.as_tensor(np.asarray(codebook.detach().cpu() if isinstance(codebook, torch.Tensor) else codebook, dtype=np.float32))
        words = [str(w) for w in words]
        class_names = [str(c) for c in class_names]
        if U.ndim != 2 or C.ndim != 2 or U.shape[1] != C.shape[1]:
            raise ValueError(f"unlabelled embeddings {tuple(U.shape)} and codebook {tuple(C.shape)} must share a dimension")
        if len(words) != len(C):
            raise ValueError(f"{len(words)} words for a codebook of {len(C)} entries")
        if len(class_features) != len(class_names):
            raise ValueError(f"{len(class_features)} class features for {len(class_names)} class names")
        U = torch.nn.functional.normalize(U, dim=1)
        n = min(int(self.n_images), len(U))
        t = min(int(self.tokens_per_image), len(C))
        K = len(class_names)
        counts = torch.zeros(K, len(C), dtype=torch.int64)
        ranked = torch.zeros(K, n, dtype=torch.int64)
        scores = torch.zeros(K, n)
        class2concepts: dict[str, list[str]] = {}
        class_scores: dict[str, dict[str, float]] = {}
        for k, name in enumerate(class_names):
            F = torch.as_tensor(np.asarray(class_features[k], dtype=np.float32)).reshape(-1, U.shape[1])
            F = torch.nn.functional.normalize(F, dim=1)
            score = (U @ F.T).mean(1)  # step 2: mean over templates / shots
            order = torch.argsort(score, descending=True, stable=True)[:n]
            ranked[k], scores[k] = order, score[order]
            top = torch.topk(U[order] @ C.T, k=t, dim=1).indices  # step 3: top-t tokens per image
            counts[k] = torch.bincount(top.reshape(-1), minlength=len(C))
            freq = counts[k].numpy()
            keep = [int(j) for j in np.lexsort((np.arange(len(freq)), -freq)) if freq[j] > 0][: int(self.concepts_per_class)]
            class2concepts[name] = [words[j] for j in keep]
            class_scores[name] = {words[j]: float(freq[j]) for j in keep}
        self.class_names_ = class_names
        self.words_ = words
        self.counts_ = counts
        self.ranked_images_ = ranked
        self.image_scores_ = scores
        self.class2concepts_ = class2concepts
        self.class_scores_ = class_scores
        self.n_images_ = n
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "class2concepts_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("this V2CTokenizer is not fitted yet; call fit(...) first")

    def to_concept_set(self) -> ConceptSet:
        """The tokens as a :class:`~conceptlab.concepts.language.ConceptSet`, with token counts as scores."""
        self._check_fitted()
        return ConceptSet(
            dict(self.class2concepts_),
            provenance=library_provenance(
                source="v2c", n_images=self.n_images_, tokens_per_image=int(self.tokens_per_image),
                concepts_per_class=int(self.concepts_per_class), vocabulary_size=len(self.words_),
            ),
            scores=self.class_scores_,
        )

    def frequencies(self, class_: str) -> pd.Series:
        """Token counts of one class, most frequent first (zero counts left out)."""
        self._check_fitted()
        if class_ not in self.class_names_:
            raise unknown_name(class_, self.class_names_, "class")
        row = self.counts_[self.class_names_.index(class_)].numpy()
        order = [j for j in np.lexsort((np.arange(len(row)), -row)) if row[j] > 0]
        return pd.Series(row[order], index=[self.words_[j] for j in order], name=class_)

    def overlap(self, threshold: float = 0.1) -> pd.DataFrame:
        """Class pairs whose quantisation sets share more than ``threshold`` of their images (V2C's
        diagnostic print): ``class``, ``other``, ``shared``."""
        self._check_fitted()
        sets = [set(r.tolist()) for r in self.ranked_images_]
        rows = [
            {"class": a, "other": b, "shared": len(sets[i] & sets[j])}
            for i, a in enumerate(self.class_names_) for j, b in enumerate(self.class_names_)
            if i != j and len(sets[i] & sets[j]) > threshold * self.n_images_
        ]
        return pd.DataFrame(rows, columns=["class", "other", "shared"])
