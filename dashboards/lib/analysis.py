"""Pure computations behind the pages (numpy / pandas / sklearn, no Streamlit): easy to test."""

from __future__ import annotations

import re
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = [
    "family_of_text",
    "filter_mask",
    "ground_truth_auroc",
    "human_bytes",
    "image_caption",
    "pca_2d",
    "rank_indices",
    "zero_shot_scores",
]


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024:
            return f"{int(n)} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=-1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)


def zero_shot_scores(embeddings: np.ndarray, concept_vector: np.ndarray) -> np.ndarray:
    """(N,) cosine similarity of each image embedding with a concept vector (CLIP zero-shot)."""
    return _unit_rows(embeddings) @ _unit_rows(concept_vector)


def rank_indices(scores: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(top, bottom): the ``k`` highest- and lowest-scoring of ``rows`` (dataset indices)."""
    rows = np.asarray(rows)
    order = rows[np.argsort(-scores[rows], kind="stable")]
    k = min(k, len(order))
    return order[:k], order[::-1][:k]


def filter_mask(attributes: pd.DataFrame, filters: Mapping[str, Sequence[str]]) -> np.ndarray:
    """(N,) bool: rows whose every filtered column holds one of the chosen values.

    An empty choice for a column means "any value".
    """
    mask = np.ones(len(attributes), dtype=bool)
    for column, values in filters.items():
        if values:
            mask &= attributes[column].isin(list(values)).to_numpy()
    return mask


def image_caption(index: int, row: Mapping[str, object], score: float | None = None) -> str:
    """``#12 ruby disc · large red solid circle · white, top-left`` (plus the score when given)."""
    look = f"{row['size']} {row['color']} {row['fill']} {row['shape']}"
    where = f"{row['background']}, {row['position']}"
    text = f"#{index} {row['class_name']} · {look} · {where}"
    return text if score is None else f"{score:+.4f} · {text}"


def family_of_text(text: str, attribute_values: Mapping[str, Sequence[str]]) -> str | None:
    """The first attribute family with a value named in ``text`` ("a red shape" -> "color")."""
    return next(iter(ground_truth_matches(text, attribute_values)), (None, None))[0]


def ground_truth_matches(text: str, attribute_values: Mapping[str, Sequence[str]]) -> list[tuple[str, str]]:
    """(family, value) pairs whose value appears as a word (or hyphenated phrase) in ``text``."""
    lowered = text.lower()
    found = []
    for family, values in attribute_values.items():
        for value in values:
            pattern = r"\b" + r"[\s-]".join(map(re.escape, value.split("-"))) + r"\b"
            if re.search(pattern, lowered):
                found.append((family, value))
    return found


def ground_truth_auroc(
    text: str, scores: np.ndarray, attributes: pd.DataFrame, attribute_values: Mapping[str, Sequence[str]]
) -> dict[str, float]:
    """AUROC of ``scores`` for each ground-truth concept the text names ("color:red" -> 0.97).

    Concepts whose rows are all positive or all negative are left out (AUROC is undefined).
    """
    from sklearn.metrics import roc_auc_score

    result = {}
    for family, value in ground_truth_matches(text, attribute_values):
        truth = attributes[family].to_numpy() == value
        if 0 < truth.sum() < len(truth):
            result[f"{family}:{value}"] = float(roc_auc_score(truth, scores))
    return result


def pca_2d(embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 2) PCA coordinates of the L2-normalised embeddings, and the explained-variance ratios."""
    from sklearn.decomposition import PCA

    unit = _unit_rows(embeddings)
    components = min(2, unit.shape[0], unit.shape[1])
    pca = PCA(n_components=components, random_state=0).fit(unit)
    coords = pca.transform(unit)
    if components < 2:  # a single image: put it at the origin of a 2-D map
        coords = np.pad(coords, ((0, 0), (0, 2 - components)))
    return coords.astype(np.float32), pca.explained_variance_ratio_
