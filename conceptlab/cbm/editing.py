"""Model editing: find the concepts a CBM leans on for a reason that does not transfer, prune them.

The study (PCBM's model editing, FACT's prune and prune + normalise): fit on a split with a
spurious cue (ShapesWorld ``train``: each class sits on its usual background 90 % of the time),
measure accuracy where the cue is gone (``shifted``), zero the head's weights of the spurious
concepts, measure again. The concepts are the user's choice, or suggested by
:func:`concept_shift`.

What "shift" means here
-----------------------
The head uses concept j for class k with weight W[k, j]. On a split, let r(j, k) be the Pearson
correlation, over the split's images, between the concept's score s_j and the class indicator
1[y = k]. The concept's **evidence** on that split is how well its use by the head agrees with the
labels, weighted by the weights::

    evidence(j) = Σ_k W[k, j] · r(j, k)

and its **shift** is the fraction of its training evidence that is gone on the shifted split::

    shift(j) = (evidence_train(j) − evidence_shifted(j)) / Σ_k |W[k, j] · r_train(j, k)|

0 means the concept works as well after the shift as before, 1 that its evidence is all gone, more
than 1 that it now points to the wrong classes. This is *weight × shift* made scale-free: the
weights decide which correlations count, and the ratio compares each concept with itself. Why not
the plain change of a concept's mean score, or an unnormalised weight × change? Both were measured
on ``zoo:shapes-clip`` and both rank core concepts such as *blue* above the backgrounds: the
backbone's concept scores are themselves a little entangled with the background (it was trained
on the spurious split's captions), so a heavily weighted core concept loses a small *fraction* of
a large evidence, which is a large absolute amount; a background concept loses all of a small one.
And ShapesWorld's backgrounds are equally frequent in every split; only their link to the classes
changes, so the marginal mean of a score hardly moves.

A concept is suggested when it has lost at least ``min_shift`` (three quarters) of its training
evidence, largest shift first; concepts whose training evidence is below ``min_share`` (0.5 %)
of the model's total are not suggested (a ratio of two tiny numbers is noise). What it suggests
on ``zoo:shapes-clip``, with the measured shifts, is in ``data_cards/shapesworld_cbm_results.md``.

Without labels for the shifted split (``method="agreement"``) the class indicator is replaced by
the rest of the model's evidence for the class, z_k − W[k, j]·s_j (z = the concept logits): a
spurious concept agreed with the core concepts while the cue held and disagrees once it breaks.
It needs no labels but ranks less sharply (measured in the same card); prefer labels when there
are some.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.base import clone

from conceptlab.cbm.heads.base import HeadContext
from conceptlab.metrics import DEFAULT_LEVEL, accuracy, accuracy_ci, mcnemar_test, mean_sd

__all__ = [
    "DEFAULT_MIN_SHIFT",
    "EDIT_METHODS",
    "EditingComparison",
    "EditingStudy",
    "NothingToPrune",
    "SHIFT_METHODS",
    "concept_shift",
    "editing_comparison",
    "editing_seeds_table",
    "group_balanced_refit",
    "groups_from_concepts",
    "refit_without",
    "suggest_from_shift",
    "suggest_spurious",
]

SHIFT_METHODS = ("correlation", "agreement")
#: a concept is suggested for pruning when it lost at least this fraction of its training evidence
DEFAULT_MIN_SHIFT = 0.75


class NothingToPrune(ValueError):
    """No concept was given and none that the model uses has shifted the wrong way."""


def _np(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _labels(model, labels: Any, n: int, what: str) -> np.ndarray:
    y, _ = model._resolve_classes(labels)
    y = y.numpy()
    if len(y) != n:
        raise ValueError(f"{n} {what} embeddings but {len(y)} labels")
    if y.max() >= model.n_classes_:
        raise ValueError(f"{what} labels must lie in [0, {model.n_classes_})")
    return y


def _correlations(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(C, K) Pearson correlations between the columns of scores (N, C) and targets (N, K)."""
    S = scores - scores.mean(0)
    T = targets - targets.mean(0)
    norms = np.sqrt((S**2).sum(0))[:, None] * np.sqrt((T**2).sum(0))[None, :]
    return np.divide(S.T @ T, norms, out=np.zeros((S.shape[1], T.shape[1])), where=norms > 0)


def _label_correlations(model, scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(K, C): r(j, k) between concept scores and the class indicators."""
    return _correlations(scores, np.eye(model.n_classes_)[labels]).T


def _agreement_correlations(model, scores: np.ndarray) -> np.ndarray:
    """(K, C): corr(s_j, z_k − W_kj·s_j), the concept against the rest of the class's concept logit."""
    W = model.coef_.astype(np.float64)
    Z = scores @ W.T
    S = scores - scores.mean(0)
    Zc = Z - Z.mean(0)
    var_s = (S**2).mean(0)  # (C,)
    cov_sz = Zc.T @ S / len(S)  # (K, C): cov(z_k, s_j)
    var_z = (Zc**2).mean(0)  # (K,)
    # rest = z_k − W_kj s_j: cov(s_j, rest) = cov_sz − W var_s; var(rest) = var_z − 2 W cov_sz + W² var_s
    cov = cov_sz - W * var_s[None, :]
    var_rest = np.clip(var_z[:, None] - 2 * W * cov_sz + W**2 * var_s[None, :], 0, None)
    norms = np.sqrt(var_s[None, :] * var_rest)
    return np.divide(cov, norms, out=np.zeros_like(cov), where=norms > 1e-12)


def concept_shift(
    model,
    train_emb: Any,
    shifted_emb: Any,
    train_labels: Any = None,
    shifted_labels: Any = None,
    method: str = "auto",
    min_share: float = 0.005,
) -> pd.DataFrame:
    """Every concept's shift between a training and a shifted split (see the module docstring).

    Args:
        model: a fitted :class:`~conceptlab.cbm.ConceptBottleneckModel`.
        train_emb, shifted_emb: raw embeddings (N, d) of the two splits.
        train_labels, shifted_labels: their labels, needed by ``"correlation"``.
        method: ``"correlation"`` (label correlations), ``"agreement"`` (label-free) or ``"auto"``
            (correlation when both label sets are given, else agreement).
        min_share: concepts with less than this share of the model's total training evidence are
            not ``eligible`` for suggestion.

    Returns a DataFrame indexed by concept, eligible concepts first, each group sorted by ``shift``
    (descending), with columns ``weight`` (L1 norm of the concept's column of W; 0: unused),
    ``evidence_train`` and ``evidence_shifted`` (Σ_k W·r), ``share`` (of the total training
    evidence Σ_k |W·r|), ``shift`` (fraction of the training evidence lost), ``eligible``, and
    ``mean_shift`` (the change of the mean score, train − shifted, in training standard
    deviations; for information only).
    """
    model._check_fitted()
    if method == "auto":
        method = "correlation" if train_labels is not None and shifted_labels is not None else "agreement"
    if method not in SHIFT_METHODS:
        raise ValueError(f"method must be 'auto' or one of {SHIFT_METHODS}, got {method!r}")
    S_tr = model.transform(train_emb).astype(np.float64)
    S_sh = model.transform(shifted_emb).astype(np.float64)
    W = model.coef_.astype(np.float64)
    if method == "correlation":
        if train_labels is None or shifted_labels is None:
            raise ValueError("method='correlation' needs train_labels and shifted_labels (or use method='agreement')")
        R_tr = _label_correlations(model, S_tr, _labels(model, train_labels, len(S_tr), "train"))
        R_sh = _label_correlations(model, S_sh, _labels(model, shifted_labels, len(S_sh), "shifted"))
    else:
        R_tr, R_sh = _agreement_correlations(model, S_tr), _agreement_correlations(model, S_sh)
    evidence_train = (W * R_tr).sum(0)
    evidence_shifted = (W * R_sh).sum(0)
    magnitude = np.abs(W * R_tr).sum(0)
    total = magnitude.sum()
    share = magnitude / total if total > 0 else np.zeros_like(magnitude)
    shift = np.divide(evidence_train - evidence_shifted, magnitude, out=np.zeros_like(magnitude), where=magnitude > 0)
    spread = S_tr.std(0)
    frame = pd.DataFrame(
        {
            "weight": np.abs(W).sum(0),
            "evidence_train": evidence_train,
            "evidence_shifted": evidence_shifted,
            "share": share,
            "shift": shift,
            "eligible": (share >= min_share) & (np.abs(W).sum(0) > 0),
            "mean_shift": (S_tr.mean(0) - S_sh.mean(0)) / np.where(spread > 0, spread, 1.0),
        },
        index=pd.Index(list(model.concept_names_), name="concept"),
    )
    frame = frame.sort_values(["eligible", "shift"], ascending=[False, False], kind="stable")
    frame.attrs["method"] = method
    return frame


def suggest_from_shift(frame: pd.DataFrame, top: int = 4, min_shift: float = DEFAULT_MIN_SHIFT) -> list[str]:
    """Up to ``top`` eligible concepts of a :func:`concept_shift` frame with ``shift >= min_shift``."""
    chosen = frame[frame["eligible"] & (frame["shift"] >= min_shift)]
    return list(chosen.sort_values("shift", ascending=False, kind="stable").index[: int(top)])


def suggest_spurious(
    model,
    train_emb: Any,
    shifted_emb: Any,
    top: int = 4,
    train_labels: Any = None,
    shifted_labels: Any = None,
    method: str = "auto",
    min_shift: float = DEFAULT_MIN_SHIFT,
    min_share: float = 0.005,
) -> list[str]:
    """Up to ``top`` eligible concepts that lost at least ``min_shift`` of their evidence, largest first.

    See :func:`concept_shift`. Give the labels of both splits when you have them
    (``method="correlation"``); without them the label-free ``"agreement"`` shift is used. Fewer
    than ``top`` (possibly none) come back when fewer concepts shifted that much.
    """
    if int(top) < 1:
        raise ValueError(f"top must be at least 1, got {top}")
    frame = concept_shift(model, train_emb, shifted_emb, train_labels, shifted_labels, method=method, min_share=min_share)
    return suggest_from_shift(frame, top, min_shift)


@dataclass
class EditingStudy:
    """What :func:`editing_study` found.

    Attributes:
        concepts: the pruned concepts.
        accuracy: one row per split with ``before``, ``after``, ``gain`` (after − before) for the
            plain prune and ``after_normalized``, ``gain_normalized`` for prune + normalise.
        model: the edited model (prune, or prune + normalise when ``renormalize``).
        original: the model before the edit.
        shift: the :func:`concept_shift` ranking (None when it could not be computed).
        suggested: the concepts the ranking suggested (empty when the user chose them).
        renormalize: which edit ``model`` is.
        intervals: one row per split: 95 % bootstrap intervals of each accuracy (``before_low``,
            ``before_high``, ``after_low``, ...) and McNemar p-values of each edit against the
            original on the same images (``p_after``, ``p_after_normalized``).
    """

    concepts: list[str]
    accuracy: pd.DataFrame
    model: Any
    original: Any
    shift: pd.DataFrame | None = None
    suggested: list[str] = field(default_factory=list)
    renormalize: bool = False
    intervals: pd.DataFrame | None = None

    def gain(self, split: str = "shifted") -> float:
        """Accuracy gain of the edit on ``split`` (the variant ``model`` is)."""
        column = "gain_normalized" if self.renormalize else "gain"
        return float(self.accuracy.loc[split, column])

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (for metrics files)."""
        out: dict[str, Any] = {
            "pruned": list(self.concepts),
            "suggested": list(self.suggested),
            "renormalize": bool(self.renormalize),
            "accuracy": {split: {k: float(v) for k, v in row.items()} for split, row in self.accuracy.iterrows()},
        }
        if self.intervals is not None:
            out["intervals"] = {split: {k: (None if pd.isna(v) else float(v)) for k, v in row.items()} for split, row in self.intervals.iterrows()}
        if self.shift is not None:
            out["shift_method"] = self.shift.attrs.get("method")
            out["shift"] = {name: {k: (bool(v) if k == "eligible" else float(v)) for k, v in row.items()} for name, row in self.shift.iterrows()}
        return out

    def summary(self) -> str:
        lines = [f"pruned {len(self.concepts)} concept(s): {', '.join(self.concepts)}"]
        for split, row in self.accuracy.iterrows():
            lines.append(
                f"  {split:<8s} {row['before']:.3f} -> {row['after']:.3f} ({row['gain']:+.3f}); "
                f"prune+normalize {row['after_normalized']:.3f} ({row['gain_normalized']:+.3f})"
            )
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"EditingStudy(\n{self.summary()}\n)"


def _split(value: Any, name: str) -> tuple[Any, Any]:
    try:
        emb, labels = value
    except (TypeError, ValueError):
        raise ValueError(f"splits[{name!r}] must be a pair (embeddings, labels)") from None
    return emb, labels


def editing_study(
    model,
    splits: Mapping[str, tuple[Any, Any]],
    concepts: Sequence[str] | str | None = None,
    suggest: int = 4,
    train_split: str = "train",
    shifted_split: str = "shifted",
    renormalize: bool = False,
    method: str = "auto",
    min_shift: float = DEFAULT_MIN_SHIFT,
) -> EditingStudy:
    """Prune concepts from a fitted CBM and compare accuracy before and after on every split.

    Args:
        model: a fitted CBM (PCBM, PCBM-h, ...); it is not changed.
        splits: split name -> (embeddings, labels), e.g. ``{"train": ..., "val": ..., "shifted": ...}``.
            Accuracy is reported for each.
        concepts: the concepts to prune; None -> the ``suggest`` top of :func:`suggest_spurious`,
            computed between ``splits[train_split]`` and ``splits[shifted_split]``.
        suggest: at most this many concepts are suggested when ``concepts`` is None (those that
            lost at least ``min_shift`` of their training evidence, see :func:`concept_shift`).
        renormalize: make ``model`` the prune + normalise edit (both are always measured).
        method: the shift measure, see :func:`concept_shift` (labels are used when present).
    """
    model._check_fitted()
    if not splits:
        raise ValueError("editing_study needs at least one split (name -> (embeddings, labels))")
    data = {name: _split(value, name) for name, value in splits.items()}
    shift = None
    if train_split in data and shifted_split in data:
        (tr_x, tr_y), (sh_x, sh_y) = data[train_split], data[shifted_split]
        labelled = method in ("auto", "correlation") and tr_y is not None and sh_y is not None
        shift = concept_shift(model, tr_x, sh_x, tr_y if labelled else None, sh_y if labelled else None, method=method)
    suggested: list[str] = []
    if concepts is None:
        if shift is None:
            raise ValueError(
                f"no concepts given and no way to suggest them: splits needs {train_split!r} and {shifted_split!r} "
                f"(has {', '.join(map(repr, data))})"
            )
        if int(suggest) < 1:
            raise ValueError(f"suggest must be at least 1 when no concepts are given, got {suggest}")
        suggested = suggest_from_shift(shift, suggest, min_shift)
        if not suggested:
            raise NothingToPrune(
                f"no concept the model relies on lost at least {min_shift:.0%} of its evidence between "
                f"{train_split!r} and {shifted_split!r}; there is nothing to suggest pruning (name concepts to prune them anyway)"
            )
        chosen = suggested
    else:
        chosen = [concepts] if isinstance(concepts, str) else list(concepts)
        if not chosen:
            raise ValueError("concepts is empty: name at least one concept to prune (or pass None to use suggestions)")
    pruned = model.prune(chosen)
    normalized = model.prune(chosen, renormalize=True)
    rows, intervals = {}, {}
    for name, (emb, labels) in data.items():
        if labels is None:
            continue
        y = _labels(model, labels, len(_np(emb)), name)
        predictions = {"before": model.predict(emb), "after": pruned.predict(emb), "after_normalized": normalized.predict(emb)}
        before = accuracy(y, predictions["before"])
        after = accuracy(y, predictions["after"])
        after_norm = accuracy(y, predictions["after_normalized"])
        rows[name] = {
            "before": before, "after": after, "gain": after - before,
            "after_normalized": after_norm, "gain_normalized": after_norm - before,
        }
        intervals[name] = _interval_row(y, predictions)
    if not rows:
        raise ValueError("no split has labels; accuracy cannot be measured")
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "split"
    interval_table = pd.DataFrame.from_dict(intervals, orient="index")
    interval_table.index.name = "split"
    return EditingStudy(
        concepts=list(pruned.edits_[-1]["concepts"]),
        accuracy=table,
        model=normalized if renormalize else pruned,
        original=model,
        shift=shift,
        suggested=suggested,
        renormalize=bool(renormalize),
        intervals=interval_table,
    )


def _interval_row(y: np.ndarray, predictions: Mapping[str, np.ndarray], level: float = DEFAULT_LEVEL) -> dict[str, float]:
    """Bootstrap intervals of each variant's accuracy and McNemar p-values of each edit against ``before``."""
    row: dict[str, float] = {}
    for variant, pred in predictions.items():
        estimate = accuracy_ci(y, pred, level=level)
        row[f"{variant}_low"], row[f"{variant}_high"] = estimate.low, estimate.high
    for variant, pred in predictions.items():
        if variant != "before":
            row[f"p_{variant}"] = mcnemar_test(y, pred, predictions["before"])["p_value"]
    return row


# ------------------------------------------------------------------------------------------------
# comparing edits that fix a shortcut: prune, prune + normalise, refit without, DFR; an oracle
# ------------------------------------------------------------------------------------------------

#: the edits :func:`editing_comparison` runs, in its table's order
EDIT_METHODS = ("prune", "prune + normalize", "refit without", "DFR (group-balanced)")


def refit_without(model, embeddings: Any, labels: Any, concepts: Sequence[str], concept_labels: Any = None):
    """A new model of the same method and parameters, fitted on the same data with ``concepts``
    left out of its bank (the concept layer sees them no more; the original is not changed)."""
    model._check_fitted()
    drop = set(concepts)
    unknown = [c for c in drop if c not in model.bank.names]
    if unknown:
        raise ValueError(f"concepts {unknown} are not in the model's bank")
    kept = [n for n in model.bank.names if n not in drop]
    if not kept:
        raise ValueError("refitting without these concepts would leave no concept")
    twin = clone(model).set_params(bank=model.bank.subset(kept))
    extra = {"concept_labels": concept_labels} if concept_labels is not None else {}
    return twin.fit(embeddings, labels, **extra)


def groups_from_concepts(concept_truth: Any) -> np.ndarray:
    """One group id per row from the truth (N, G) of the spurious concepts (one-hot, e.g. the
    four backgrounds): the index of the true one, G where none is true."""
    T = np.asarray(concept_truth, dtype=bool)
    if T.ndim != 2:
        raise ValueError(f"concept truth must be (N, G), got shape {T.shape}")
    return np.where(T.any(1), T.argmax(1), T.shape[1])


def _concept_head(model, n_concepts: int, n_classes: int):
    return model._concept_head(n_concepts, n_classes) if hasattr(model, "_concept_head") else model._make_head(n_concepts, n_classes)


def group_balanced_refit(model, embeddings: Any, labels: Any, groups: Any, n_subsets: int = 10, seed: int = 0):
    """DFR (Kirichenko, Izmailov & Wilson, ICLR 2023, "Last Layer Re-Training is Sufficient for
    Robustness to Spurious Correlations"), the variant that retrains on the training data:
    the concept layer is kept; the (concept) head is refitted on ``n_subsets`` group-balanced
    subsets -- within each class, the same number of images from every group (class × spurious
    attribute) that occurs, the size of the smallest -- and the subsets' weights are averaged.
    A residual on the raw embedding (PCBM-h) is kept as it is."""
    model._check_fitted()
    X = model._check_embeddings(embeddings)
    y, _ = model._resolve_classes(labels)
    y = y.numpy()
    g = np.asarray(groups).reshape(-1)
    if len(g) != len(y) or len(X) != len(y):
        raise ValueError(f"{len(X)} embeddings, {len(y)} labels and {len(g)} groups must match")
    scores = model._compute_scores(X)
    rng = np.random.default_rng(seed)
    cells: dict[int, list[np.ndarray]] = {}
    for k in np.unique(y):
        members = [np.flatnonzero((y == k) & (g == group)) for group in np.unique(g[y == k])]
        cells[int(k)] = [m for m in members if len(m)]
    weights, biases = [], []
    C, K = len(model.concept_names_), model.n_classes_
    for _ in range(int(n_subsets)):
        rows = []
        for members in cells.values():
            size = min(len(m) for m in members)
            rows.extend(rng.choice(m, size=size, replace=False) for m in members)
        idx = np.sort(np.concatenate(rows))
        head = _concept_head(model, C, K)
        context = HeadContext(X[idx], model.bank_, list(model.class_names_))
        head.fit_head(scores[idx], torch.as_tensor(y[idx]), K, context)
        weights.append(head.weight_.double())
        biases.append(head.bias_.double())
    edited = model.copy()
    W, b = torch.stack(weights).mean(0).float(), torch.stack(biases).mean(0).float()
    edited.weight_, edited.bias_ = W, b
    target = edited.head_.head if hasattr(edited.head_, "head") else edited.head_
    target.weight_, target.bias_ = W, b
    edited.edits_ = list(model.edits_) + [{"op": "dfr", "subsets": int(n_subsets), "rows_per_subset": int(len(idx)), "seed": int(seed)}]
    return edited


@dataclass
class EditingComparison:
    """What :func:`editing_comparison` found on one seed.

    ``table``: one row per model (``original``, each edit, ``oracle`` when given) with its
    accuracy, interval (``<split>_low`` / ``<split>_high``) on every split, ``shifted gain``,
    ``test cost`` (original − edited on the test split; positive is a loss), ``share of oracle
    gap`` (shifted gain / (oracle − original on shifted)) and ``p shifted`` (McNemar against the
    original on the same shifted images). ``models``: name -> fitted model.
    """

    table: pd.DataFrame
    models: dict[str, Any]
    concepts: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "concepts": list(self.concepts),
            "table": {name: {k: (None if pd.isna(v) else float(v)) for k, v in row.items()} for name, row in self.table.iterrows()},
        }


def editing_comparison(
    model,
    train: tuple[Any, Any],
    splits: Mapping[str, tuple[Any, Any]],
    concepts: Sequence[str],
    groups: Any = None,
    oracle: Any = None,
    concept_labels: Any = None,
    shifted_split: str = "shifted",
    test_split: str = "test",
    n_subsets: int = 10,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
) -> EditingComparison:
    """Side by side on every split: the original, prune, prune + normalise, refit without the
    ``concepts``, DFR on group-balanced subsets of ``train`` (when ``groups`` is given: one group id
    per training row, e.g. :func:`groups_from_concepts` of the spurious concepts' truth), and an
    ``oracle`` (a model fitted on data without the cue) when given.

    ``train``: (embeddings, labels) the model was fitted on (refit and DFR use it);
    ``concept_labels``: the training concept labels, for methods that use them when refitting.
    """
    model._check_fitted()
    chosen = [concepts] if isinstance(concepts, str) else list(concepts)
    models: dict[str, Any] = {
        "original": model,
        "prune": model.prune(chosen),
        "prune + normalize": model.prune(chosen, renormalize=True),
        "refit without": refit_without(model, *train, chosen, concept_labels=concept_labels),
    }
    if groups is not None:
        models["DFR (group-balanced)"] = group_balanced_refit(model, *train, groups, n_subsets=n_subsets, seed=seed)
    if oracle is not None:
        models["oracle"] = oracle
    data = {name: _split(value, name) for name, value in splits.items()}
    predictions = {name: {m: fitted.predict(emb) for m, fitted in models.items()} for name, (emb, _) in data.items()}
    rows = {}
    for m in models:
        row: dict[str, float] = {}
        for name, (emb, labels) in data.items():
            y = _labels(model, labels, len(_np(emb)), name)
            estimate = accuracy_ci(y, predictions[name][m], level=level)
            row[name], row[f"{name}_low"], row[f"{name}_high"] = estimate.value, estimate.low, estimate.high
        rows[m] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "model"
    if shifted_split in data:
        y_sh = _labels(model, data[shifted_split][1], len(_np(data[shifted_split][0])), shifted_split)
        table["shifted gain"] = table[shifted_split] - table.loc["original", shifted_split]
        table["p shifted"] = [
            np.nan if m == "original" else mcnemar_test(y_sh, predictions[shifted_split][m], predictions[shifted_split]["original"])["p_value"]
            for m in table.index
        ]
        if "oracle" in table.index:
            gap = table.loc["oracle", shifted_split] - table.loc["original", shifted_split]
            table["share of oracle gap"] = table["shifted gain"] / gap if gap > 0 else np.nan
    if test_split in data:
        table["test cost"] = table.loc["original", test_split] - table[test_split]
    return EditingComparison(table=table, models=models, concepts=list(models["prune"].edits_[-1]["concepts"]))


def editing_seeds_table(comparisons: Sequence[EditingComparison], columns: Sequence[str] = ("shifted gain", "test cost", "share of oracle gap")) -> pd.DataFrame:
    """Mean ± sd over seeds of each model's ``columns`` (one :class:`EditingComparison` per seed):
    a frame indexed by model with ``<column> mean`` and ``<column> sd`` (and ``n`` seeds)."""
    if not comparisons:
        raise ValueError("no comparisons")
    models = list(comparisons[0].table.index)
    rows = {}
    for m in models:
        row: dict[str, float] = {}
        for column in columns:
            values = [c.table.loc[m, column] for c in comparisons if column in c.table.columns and m in c.table.index]
            values = [v for v in values if not pd.isna(v)]
            if values:
                stats = mean_sd(values)
                row[f"{column} mean"], row[f"{column} sd"] = stats["mean"], stats["sd"]
        row["n"] = len(comparisons)
        rows[m] = row
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "model"
    return out
