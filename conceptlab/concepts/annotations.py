"""Concepts from what the user brings: annotated images (two folders, or 0/1 concept columns of a
table) and a plain text file of concept phrases.

- :func:`cavs_from_annotations` -- one CAV per annotated concept column of a dataset, rows whose
  annotation is unknown left out, each graded by AUROC on held-out rows;
- :func:`cav_from_folders` -- one CAV from a folder of images that show the concept and a folder
  of images that do not;
- :func:`read_phrases` / :func:`text_bank_from_file` -- one concept per line of a text file.

CAVs are learnt with PCBM's protocol (:func:`~conceptlab.concepts.cav.learn_cavs`: a linear SVM,
C chosen on validation rows); the held-out AUROC is measured on rows neither step saw.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from conceptlab.concepts.bank import ConceptBank
from conceptlab.concepts.cav import DEFAULT_C, learn_cavs
from conceptlab.concepts.text import text_concepts

__all__ = ["cav_from_folders", "cavs_from_annotations", "read_phrases", "text_bank_from_file"]


def _heldout_auroc(bank: ConceptBank, tests: dict[str, tuple[np.ndarray, np.ndarray]]) -> ConceptBank:
    from sklearn.metrics import roc_auc_score

    out = []
    for concept in bank:
        pos, neg = tests[concept.name]
        scores = np.concatenate([pos, neg]) @ concept.vector.numpy() + concept.bias
        truth = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
        auroc = float(roc_auc_score(truth, scores)) if len(pos) and len(neg) else float("nan")
        out.append(replace(concept, metrics={**(concept.metrics or {}), "heldout_auroc": auroc, "n_heldout": int(len(truth))}))
    return ConceptBank(out, provenance=bank.provenance)


def _split(rows: np.ndarray, n_fit: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    rows = rng.permutation(rows)
    return rows[:n_fit], rows[n_fit:]


def cavs_from_annotations(
    embeddings: Any,
    dataset: Any,
    names: Sequence[str] | None = None,
    n_samples: int = 50,
    heldout: float = 0.3,
    C: Sequence[float] = DEFAULT_C,
    seed: int = 1,
    space: str | None = None,
) -> ConceptBank:
    """CAVs for the annotated concepts of ``dataset`` (``concept_names``, ``concepts`` and, for a
    table, ``concept_known``), each with its held-out AUROC in ``concept.metrics``.

    For each concept, a ``heldout`` share of the annotated positives and negatives is kept aside
    (never seen by the SVM or the C sweep); of the rest, ``n_samples`` per side train and the
    remainder validates, as PCBM's protocol asks. A concept with too few annotated examples on a
    side is an error naming it.
    """
    X = np.asarray(embeddings.detach().cpu() if hasattr(embeddings, "detach") else embeddings, dtype=np.float32)
    available = list(getattr(dataset, "concept_names", None) or [])
    if not available:
        raise ValueError(f"{dataset!r} has no annotated concepts (a CSV with 0/1 concept columns, or ShapesWorld)")
    names = list(names) if names else available
    unknown = [n for n in names if n not in available]
    if unknown:
        raise ValueError(f"no annotated concept(s) {unknown}; the dataset has {', '.join(available)}")
    truth = np.asarray(dataset.concepts, dtype=bool)
    known = getattr(dataset, "concept_known", None)
    known = np.ones_like(truth) if known is None else np.asarray(known, dtype=bool)
    if len(X) != len(truth):
        raise ValueError(f"{len(X)} embeddings for {len(truth)} dataset rows")
    rng = np.random.default_rng(seed)
    pos_neg, tests = {}, {}
    for name in names:
        j = available.index(name)
        positives = np.flatnonzero(known[:, j] & truth[:, j])
        negatives = np.flatnonzero(known[:, j] & ~truth[:, j])
        need = n_samples + 1
        sides = {}
        for side, rows in (("positive", positives), ("negative", negatives)):
            n_fit = len(rows) - int(round(heldout * len(rows)))
            if n_fit < need:
                raise ValueError(f"concept {name!r} has {len(rows)} annotated {side} rows; learning its CAV needs more than "
                                 f"{n_samples} of them outside the held-out {heldout:.0%} (lower n_samples or annotate more)")
            sides[side] = _split(rows, n_fit, rng)
        pos_neg[name] = (X[sides["positive"][0]], X[sides["negative"][0]])
        tests[name] = (X[sides["positive"][1]], X[sides["negative"][1]])
    bank = learn_cavs(pos_neg, C=C, n_samples=n_samples, seed=seed, space=space or "unspecified")
    return _heldout_auroc(bank, tests)


def cav_from_folders(
    positive: Any,
    negative: Any,
    name: str,
    n_samples: int = 50,
    heldout: float = 0.3,
    C: Sequence[float] = DEFAULT_C,
    seed: int = 1,
    space: str | None = None,
) -> ConceptBank:
    """One CAV from embeddings of images that show the concept (``positive``, (P, d)) and of
    images that do not (``negative``), e.g. two folders embedded through the store; graded by
    held-out AUROC like :func:`cavs_from_annotations`."""
    pos = np.asarray(positive.detach().cpu() if hasattr(positive, "detach") else positive, dtype=np.float32)
    neg = np.asarray(negative.detach().cpu() if hasattr(negative, "detach") else negative, dtype=np.float32)

    class _TwoFolders:
        concept_names = [name]
        concepts = np.r_[np.ones(len(pos), bool), np.zeros(len(neg), bool)][:, None]

        def __repr__(self) -> str:
            return f"the two folders of {name!r}"

    return cavs_from_annotations(np.concatenate([pos, neg]), _TwoFolders(), [name], n_samples, heldout, C, seed, space)


def read_phrases(path: str | Path) -> list[str]:
    """The concept phrases of a text file: one per line, blank lines and ``#`` comments skipped,
    white space folded, duplicates dropped (first kept)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"no concept file at {path} (a text file with one concept phrase per line)")
    phrases = []
    for line in path.read_text(encoding="utf-8").splitlines():
        phrase = " ".join(line.split("#", 1)[0].split())
        if phrase and phrase not in phrases:
            phrases.append(phrase)
    if not phrases:
        raise ValueError(f"{path} holds no concept phrases (one per line; # starts a comment)")
    return phrases


def text_bank_from_file(backbone: Any, path: str | Path, templates: Sequence[str] | None = None) -> ConceptBank:
    """A text concept bank with one concept per phrase of ``path`` (see :func:`read_phrases`)."""
    phrases = read_phrases(path)
    bank = text_concepts(backbone, phrases, templates=templates)
    return ConceptBank(list(bank), provenance={**bank.provenance, "phrases_file": str(path)})
