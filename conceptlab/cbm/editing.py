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
of the model's total are not suggested (a ratio of two tiny numbers is noise). On
``zoo:shapes-clip`` with PCBM's default λ the four backgrounds lose 87-131 % of their evidence;
the next concept, *star*, 58 %, and the heavily weighted core concepts (*blue*, *green*, *cross*)
14-19 %.

Without labels for the shifted split (``method="agreement"``) the class indicator is replaced by
the rest of the model's evidence for the class, z_k − W[k, j]·s_j (z = the concept logits): a
spurious concept agreed with the core concepts while the cue held and disagrees once it breaks.
It needs no labels but ranks less sharply: on ``zoo:shapes-clip`` only *beige* clears the default
``min_shift`` (on a synthetic world with less entangled scores, three of the four backgrounds);
prefer labels when there are some.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from conceptlab.metrics import accuracy

__all__ = ["DEFAULT_MIN_SHIFT", "EditingStudy", "NothingToPrune", "SHIFT_METHODS", "concept_shift", "editing_study", "suggest_from_shift", "suggest_spurious"]

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
    """

    concepts: list[str]
    accuracy: pd.DataFrame
    model: Any
    original: Any
    shift: pd.DataFrame | None = None
    suggested: list[str] = field(default_factory=list)
    renormalize: bool = False

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
    rows = {}
    for name, (emb, labels) in data.items():
        if labels is None:
            continue
        y = _labels(model, labels, len(_np(emb)), name)
        before = accuracy(y, model.predict(emb))
        after = accuracy(y, pruned.predict(emb))
        after_norm = accuracy(y, normalized.predict(emb))
        rows[name] = {
            "before": before, "after": after, "gain": after - before,
            "after_normalized": after_norm, "gain_normalized": after_norm - before,
        }
    if not rows:
        raise ValueError("no split has labels; accuracy cannot be measured")
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "split"
    return EditingStudy(
        concepts=list(pruned.edits_[-1]["concepts"]),
        accuracy=table,
        model=normalized if renormalize else pruned,
        original=model,
        shift=shift,
        suggested=suggested,
        renormalize=bool(renormalize),
    )
