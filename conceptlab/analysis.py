"""Small analyses of embeddings against ground truth: zero-shot scores, rankings, filters, a 2-D map.

What the app's Embeddings page shows, callable from a notebook::

    scores = zero_shot_scores(embeddings, text_concepts(backbone, ["a red shape"]).vectors[0])
    ground_truth_auroc("a red shape", scores, dataset.attributes, dataset.attribute_values)  # {"color:red": 0.97}
    top, bottom = rank_indices(scores, np.flatnonzero(filter_mask(dataset.attributes, {"shape": ["circle"]})), 8)
    coords, variance = pca_2d(embeddings)

Plain numpy / pandas / scikit-learn in, plain values out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from conceptlab.metrics import concept_auroc

__all__ = [
    "dataset_image",
    "dataset_table",
    "family_of_text",
    "filter_mask",
    "ground_truth_auroc",
    "ground_truth_matches",
    "pca_2d",
    "rank_indices",
    "zero_shot_scores",
]


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=-1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)


def zero_shot_scores(embeddings: np.ndarray, concept_vector: np.ndarray) -> np.ndarray:
    """(N,) cosine similarity of each image embedding (N, d) with a concept vector (d,) (CLIP zero-shot)."""
    return _unit_rows(embeddings) @ _unit_rows(concept_vector)


def rank_indices(scores: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(top, bottom): the ``k`` highest- and lowest-scoring of ``rows`` (dataset indices); ties by index."""
    rows = np.asarray(rows)
    order = rows[np.argsort(-np.asarray(scores)[rows], kind="stable")]
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


def family_of_text(text: str, attribute_values: Mapping[str, Sequence[str]]) -> str | None:
    """The first attribute family with a value named in ``text`` ("a red shape" -> "color")."""
    return next(iter(ground_truth_matches(text, attribute_values)), (None, None))[0]


def ground_truth_auroc(
    text: str, scores: np.ndarray, attributes: pd.DataFrame, attribute_values: Mapping[str, Sequence[str]]
) -> dict[str, float]:
    """AUROC of ``scores`` (N,) for each ground-truth concept the text names ("color:red" -> 0.97),
    by :func:`conceptlab.metrics.concept_auroc`.

    Concepts whose rows are all positive or all negative are left out (AUROC is undefined).
    """
    matches = ground_truth_matches(text, attribute_values)
    if not matches:
        return {}
    names = [f"{family}:{value}" for family, value in matches]
    truth = np.stack([attributes[family].to_numpy() == value for family, value in matches], axis=1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1, 1)
    aurocs = concept_auroc(np.repeat(scores, len(names), axis=1), truth, names=names, truth_names=names)
    return {name: float(value) for name, value in aurocs.items() if np.isfinite(value)}


def dataset_table(dataset) -> tuple[pd.DataFrame, dict[str, tuple[str, ...]]]:
    """One row per image with its class and ground truth, and each ground-truth column's values.

    ShapesWorld gives its attribute table (shape, colour, size, fill, background, position). Any
    other dataset gives ``class_name`` and, per annotated concept ``c``, a column ``c`` holding
    ``c``, ``"not c"`` or ``"unknown"`` -- so filters and :func:`ground_truth_auroc` work the same
    (a concept is matched when its name appears in the typed text; unknown rows count as negatives).
    """
    if hasattr(dataset, "attributes") and hasattr(dataset, "attribute_values"):
        return dataset.attributes, {k: tuple(v) for k, v in dataset.attribute_values.items()}
    labels = np.asarray(dataset.labels)
    frame = pd.DataFrame({"class_name": [dataset.class_names[k] for k in labels]})
    names = list(getattr(dataset, "concept_names", None) or [])
    values: dict[str, tuple[str, ...]] = {}
    if names:
        truth = np.asarray(dataset.concepts, dtype=bool)
        known = getattr(dataset, "concept_known", None)
        known = np.ones_like(truth) if known is None else np.asarray(known, dtype=bool)
        for j, name in enumerate(names):
            frame[name] = np.where(known[:, j], np.where(truth[:, j], name, f"not {name}"), "unknown")
            values[name] = (name, f"not {name}", "unknown")
    return frame, values


def dataset_image(dataset, index: int):
    """The PIL image of row ``index`` (ShapesWorld renders it; file datasets read it)."""
    return dataset.image(index) if hasattr(dataset, "image") else dataset[index][0]


def pca_2d(embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 2) PCA coordinates of the L2-normalised embeddings, and the explained-variance ratios."""
    from sklearn.decomposition import PCA

    unit = _unit_rows(embeddings)
    if unit.shape[0] < 2:  # a single image: at the origin of the map; no variance to explain
        return np.zeros((unit.shape[0], 2), dtype=np.float32), np.full(2, np.nan)
    components = min(2, unit.shape[0], unit.shape[1])
    pca = PCA(n_components=components, random_state=0).fit(unit)
    coords = pca.transform(unit)
    if components < 2:  # one-dimensional embeddings
        coords = np.pad(coords, ((0, 0), (0, 2 - components)))
    return coords.astype(np.float32), pca.explained_variance_ratio_
