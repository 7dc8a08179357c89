"""Small analyses of embeddings against ground truth: zero-shot scores, rankings, filters, a 2-D map.

What the app's Embeddings page shows, callable from a notebook::

    scores = zero_shot_scores(embeddings, text_concepts(backbone, ["a red shape"]).vectors[0])
    ground_truth_auroc("a red shape", scores, dataset.attributes, dataset.attribute_values)  # {"color:red": 0.97}
    top, bottom = rank_indices(scores, np.flatnonzero(filter_mask(dataset.attributes, {"shape": ["circle"]})), 8)
    coords, variance = pca_2d(embeddings)            # or umap_2d(embeddings)
    expression = parse_concept_expression("red AND (circle OR square)", dataset.attribute_values)
    compound_auroc(scores, expression, dataset.attributes)               # one AUROC for the compound concept

Plain numpy / pandas / scikit-learn in, plain values out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from conceptlab.metrics import concept_auroc

__all__ = [
    "ConceptExpression",
    "compound_auroc",
    "dataset_image",
    "dataset_table",
    "default_expression",
    "family_of_text",
    "filter_mask",
    "ground_truth_auroc",
    "ground_truth_matches",
    "parse_concept_expression",
    "pca_2d",
    "rank_indices",
    "umap_2d",
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


def umap_2d(embeddings: np.ndarray, n_neighbors: int = 15, min_dist: float = 0.1, seed: int = 0) -> np.ndarray:
    """(N, 2) UMAP coordinates of the L2-normalised embeddings (cosine neighbourhoods), seeded.

    Unlike PCA, UMAP keeps local neighbourhoods (clusters) and distorts global distances: use it
    to see which images sit together, not how far apart groups are. Needs ``umap-learn``."""
    try:
        import umap
    except ImportError as error:
        raise ImportError("the UMAP map needs umap-learn: pip install -c constraints.txt umap-learn (or use PCA)") from error
    unit = _unit_rows(embeddings)
    if unit.shape[0] < 4:  # too few images for a neighbourhood graph: PCA says all there is
        return pca_2d(unit)[0]
    reducer = umap.UMAP(n_components=2, n_neighbors=min(int(n_neighbors), unit.shape[0] - 1), min_dist=min_dist, metric="cosine",
                        random_state=seed, n_jobs=1)
    return reducer.fit_transform(unit).astype(np.float32)


# -- compound concepts ("red AND circle") -------------------------------------------------------------

_OPERATORS = {"and": "and", "&": "and", "or": "or", "|": "or", "not": "not", "!": "not", "~": "not"}
_TOKEN = re.compile(r'\s*(?:(\()|(\))|("[^"]*")|([&|!~])|([^\s()&|!~"]+))')


@dataclass(frozen=True)
class ConceptExpression:
    """A ground-truth concept built from attribute values with AND, OR, NOT.

    ``op`` is ``"term"`` (``family`` = ``value``), ``"not"`` (one operand) or ``"and"`` / ``"or"``
    (two). :meth:`mask` evaluates it on an attribute table; ``str()`` writes it back in full."""

    op: str
    operands: tuple[ConceptExpression, ...] = ()
    family: str = ""
    value: str = ""

    def mask(self, attributes: pd.DataFrame) -> np.ndarray:
        """(N,) bool: the rows where the expression holds."""
        if self.op == "term":
            return (attributes[self.family].astype(str) == self.value).to_numpy()
        if self.op == "not":
            return ~self.operands[0].mask(attributes)
        left, right = (e.mask(attributes) for e in self.operands)
        return (left & right) if self.op == "and" else (left | right)

    def terms(self) -> list[tuple[str, str]]:
        """The (family, value) pairs it reads, in order."""
        return [(self.family, self.value)] if self.op == "term" else [t for e in self.operands for t in e.terms()]

    def __str__(self) -> str:
        if self.op == "term":
            return self.value if " " not in self.value else f'"{self.value}"'
        if self.op == "not":
            inner = self.operands[0]
            return f"NOT {inner}" if inner.op in ("term", "not") else f"NOT ({inner})"
        parts = [f"({e})" if e.op in ("and", "or") and e.op != self.op else str(e) for e in self.operands]
        return f" {self.op.upper()} ".join(parts)


def _lookup(term: str, attribute_values: Mapping[str, Sequence[str]]) -> ConceptExpression:
    family, sep, value = term.partition(":") if ":" in term else term.partition("=")
    if sep:
        if family not in attribute_values:
            raise ValueError(f"unknown attribute {family!r} in {term!r}; the data has {', '.join(attribute_values)}")
        found = [v for v in attribute_values[family] if v.lower() == value.lower()]
        if not found:
            raise ValueError(f"{value!r} is not a value of {family}; it takes {', '.join(attribute_values[family])}")
        return ConceptExpression("term", family=family, value=found[0])
    hits = [(f, v) for f, values in attribute_values.items() for v in values if v.lower() == term.lower()]
    if not hits:
        every = sorted({v for values in attribute_values.values() for v in values})
        raise ValueError(f"{term!r} is not a ground-truth value; write one of {', '.join(every)} (or family:value)")
    if len(hits) > 1:
        raise ValueError(f"{term!r} is a value of {' and '.join(f for f, _ in hits)}; write family:value, e.g. {hits[0][0]}:{term}")
    return ConceptExpression("term", family=hits[0][0], value=hits[0][1])


def parse_concept_expression(text: str, attribute_values: Mapping[str, Sequence[str]]) -> ConceptExpression:
    """Parse ``"red AND circle"``, ``"red OR blue"``, ``"NOT striped"``, ``"(red OR blue) AND NOT color:green"``.

    Terms are ground-truth values (``red``), ``family:value`` when a value is ambiguous, or a
    quoted value with spaces (``"not striped"``); operators ``AND`` / ``&``, ``OR`` / ``|``,
    ``NOT`` / ``!`` / ``~`` in any case, with parentheses; NOT binds tighter than AND, AND
    tighter than OR. Anything else is a ValueError that says what was expected where."""
    tokens: list[tuple[str, str]] = []
    position = 0
    text = str(text)
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None:
            raise ValueError(f"cannot read {text[position:]!r}: an unclosed quote?")
        opening, closing, quoted, symbol, word = match.groups()
        if opening or closing:
            tokens.append(("(" if opening else ")", match.group().strip()))
        elif quoted is not None:
            tokens.append(("term", quoted[1:-1]))
        elif (symbol or word).lower() in _OPERATORS:
            tokens.append((_OPERATORS[(symbol or word).lower()], (symbol or word)))
        else:
            tokens.append(("term", word))
        position = match.end()
    if not tokens:
        raise ValueError("the expression is empty: write e.g. red AND circle")
    at = 0

    def peek() -> str | None:
        return tokens[at][0] if at < len(tokens) else None

    def take(kind: str) -> str:
        nonlocal at
        if peek() != kind:
            found = f"{tokens[at][1]!r}" if at < len(tokens) else "the end"
            raise ValueError(f"expected {'a value' if kind == 'term' else repr(kind)} but found {found} in {text!r}")
        at += 1
        return tokens[at - 1][1]

    def disjunction() -> ConceptExpression:
        left = conjunction()
        while peek() == "or":
            take("or")
            left = ConceptExpression("or", (left, conjunction()))
        return left

    def conjunction() -> ConceptExpression:
        left = negation()
        while peek() in ("and", "term", "not", "("):  # two values side by side ("red circle") mean AND
            if peek() == "and":
                take("and")
            left = ConceptExpression("and", (left, negation()))
        return left

    def negation() -> ConceptExpression:
        if peek() == "not":
            take("not")
            return ConceptExpression("not", (negation(),))
        if peek() == "(":
            take("(")
            inner = disjunction()
            take(")")
            return inner
        return _lookup(take("term"), attribute_values)

    expression = disjunction()
    if at < len(tokens):
        raise ValueError(f"unexpected {tokens[at][1]!r} in {text!r}" + (" (a ')' without its '(')" if tokens[at][0] == ")" else ""))
    return expression


def default_expression(text: str, attribute_values: Mapping[str, Sequence[str]]) -> str:
    """The ground truth a typed concept names, as an expression: the values it mentions, OR-ed
    within a family and AND-ed across families ("a red or blue circle" -> ``(red OR blue) AND circle``);
    empty when it names none."""
    families: dict[str, list[str]] = {}
    matches = ground_truth_matches(text, attribute_values)
    for family, value in sorted(matches, key=lambda match: text.lower().find(match[1].split("-")[0])):  # in the text's order
        families.setdefault(family, []).append(value)
    groups = [" OR ".join(values) for values in families.values()]
    return " AND ".join(f"({g})" if " OR " in g and len(groups) > 1 else g for g in groups)


def compound_auroc(scores: np.ndarray, expression: ConceptExpression, attributes: pd.DataFrame) -> dict[str, float]:
    """AUROC of ``scores`` (N,) for the images where ``expression`` holds against the rest, with
    the counts: ``{"auroc", "positives", "negatives"}``; the AUROC is NaN when every image is on
    one side (undefined)."""
    from sklearn.metrics import roc_auc_score

    truth = expression.mask(attributes)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(scores) != len(truth):
        raise ValueError(f"{len(scores)} scores for {len(truth)} images")
    positives = int(truth.sum())
    value = float(roc_auc_score(truth, scores)) if 0 < positives < len(truth) else float("nan")
    return {"auroc": value, "positives": positives, "negatives": int(len(truth) - positives)}
