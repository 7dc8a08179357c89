"""The one interface every concept bottleneck model in conceptlab shares.

A CBM is a **concept layer** (embeddings -> concept scores, :mod:`conceptlab.cbm.layers`) and a
**head** (scores -> class logits through W (K, C) + b (K,), optionally plus a residual linear
layer on the raw embedding, :mod:`conceptlab.cbm.heads`)::

    logits(x) = W · s(x) + b  [+ R · x + r]

A method is a recipe of the two: a subclass implements ``_make_layer()`` and
``_make_head(n_concepts, n_classes)`` from its parameters, registers itself with
``@register_method("name")`` in a file of ``conceptlab/cbm/methods/``, and gets fitting,
prediction, explanation, intervention, pruning and save/load from here.

scikit-learn contract (``BaseEstimator`` + ``ClassifierMixin``): the constructor stores
parameters only; ``fit`` does the data-dependent work (concept selection, learned projections;
validation data is a ``fit`` argument) and returns self; learned state ends in ``_``;
``sklearn.base.clone`` works; edits return new models and never change the original.
"""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import NotFittedError

from conceptlab.cbm.calibration import align_concept_labels
from conceptlab.cbm.heads.base import Head, HeadContext
from conceptlab.cbm.layers import ConceptLayer
from conceptlab.cbm.persistence import load_model, save_model
from conceptlab.concepts.bank import ConceptBank, library_provenance, unknown_name
from conceptlab.registry import METHODS
from conceptlab.utils import as_matrix, store_params

__all__ = ["ConceptBottleneckModel", "InterventionResult"]


@dataclass(frozen=True)
class InterventionResult:
    """What :meth:`ConceptBottleneckModel.intervene` returns (all numpy)."""

    scores: np.ndarray  # (N, C) the edited concept scores
    logits: np.ndarray  # (N, K)
    proba: np.ndarray  # (N, K)
    predictions: np.ndarray  # (N,)


def _softmax(logits: torch.Tensor) -> torch.Tensor:
    return torch.softmax(logits.double(), dim=1).float()


class ConceptBottleneckModel(ClassifierMixin, BaseEstimator):
    """Base class: a concept layer and a head (module docstring).

    Args:
        bank: the :class:`~conceptlab.concepts.ConceptBank` the method starts from (its concept
            layer may keep a subset or learn new concepts from it: the fitted concepts are ``bank_``).
        class_names: class names, in label order; by default ``"0" .. "K-1"`` from the labels.
        seed: recorded in provenance and used by stochastic parts of ``fit``.
    """

    #: the name people know the method by (pickers, reports); the class name when empty
    display_name: ClassVar[str] = ""
    #: what the method needs of its bank: ``"any"``, ``"class_linked"`` (every concept names its
    #: classes: LaBo's prior and selection) or ``"sae"`` (one concept per latent of an SAE)
    bank_kind: ClassVar[str] = "any"
    #: True when ``fit`` needs validation data (Label-free CBM learns its concepts against it)
    needs_validation: ClassVar[bool] = False
    #: parameters that are objects saved beside the model, not JSON (DN-CBM's SAE)
    artifact_params: ClassVar[tuple[str, ...]] = ()
    #: how the method predicts, in a sentence or two of markdown (the app's introduction to a model)
    how_it_predicts: ClassVar[str] = "Each class's logit is a weighted sum of the concept scores plus an intercept: logit_k = Σ_j W_kj · s_j + b_k."
    #: what one concept score is, in the method's own units (intervention sliders and presets use them)
    score_units: ClassVar[str] = "concept score"
    #: what a contribution is best read against (:mod:`conceptlab.cbm.explanations`): ``"zero"`` when
    #: weights are signed (score × weight already argues for or against), ``"mean"`` when every weight is
    #: positive (LaBo's softmax rows): only the part above the average class moves a softmax prediction
    contribution_baseline: ClassVar[str] = "zero"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__dict__.get("display_name"):
            cls.display_name = cls.__name__

    def __init__(self, bank: ConceptBank, class_names: Sequence[str] | None = None, seed: int = 42) -> None:
        store_params(self, locals())

    # -- the recipe --------------------------------------------------------------------------------

    def _make_layer(self) -> ConceptLayer:
        """The unfitted concept layer this method's parameters describe."""
        raise NotImplementedError

    def _make_head(self, n_concepts: int, n_classes: int) -> Head:
        """The unfitted head this method's parameters describe."""
        raise NotImplementedError

    @classmethod
    def method_name(cls) -> str | None:
        """The name this class is registered under (None for an unregistered subclass)."""
        return METHODS.name_of(cls)

    def __repr__(self) -> str:
        params = {k: v for k, v in self.get_params(deep=False).items() if k not in ("bank", *self.artifact_params)}
        shown = ", ".join(f"{k}={v!r}" for k, v in params.items() if not isinstance(v, (list, tuple)) or len(v) < 6)
        bank = f"{len(self.bank)} concepts" if isinstance(self.bank, ConceptBank) else repr(self.bank)
        fitted = "fitted" if self.is_fitted else "not fitted"
        return f"{type(self).__name__}(bank=<{bank}>, {shown}) [{fitted}]"

    # ------------------------------------------------------------------------------------------
    # validation
    # ------------------------------------------------------------------------------------------

    @property
    def is_fitted(self) -> bool:
        return getattr(self, "weight_", None) is not None

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit(embeddings, labels) first")

    def _check_bank(self) -> ConceptBank:
        if self.bank is None or (not isinstance(self.bank, ConceptBank) and hasattr(self.bank, "__len__") and len(self.bank) == 0):
            raise ValueError("the concept bank is empty: a CBM needs at least one concept")
        if not isinstance(self.bank, ConceptBank):
            raise TypeError(f"bank must be a ConceptBank, got {type(self.bank).__name__}")
        if len(self.bank) == 0:
            raise ValueError("the concept bank is empty")
        return self.bank

    def _check_embeddings(self, embeddings: Any) -> torch.Tensor:
        bank = getattr(self, "bank_", None) or self._check_bank()
        return as_matrix(embeddings, "embeddings", bank.dim, f"the concept bank ({bank.space!r})")

    def _resolve_classes(self, labels: Any) -> tuple[torch.Tensor, list[str]]:
        raw = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
        raw = raw.reshape(-1)
        names = None if self.class_names is None else [str(c) for c in self.class_names]
        if names is not None and len(set(names)) != len(names):
            raise ValueError("class_names must be unique")
        if raw.dtype.kind in "USO":  # labels given as class names
            if names is None:
                raise ValueError("string labels need class_names to map them to indices")
            index = {n: i for i, n in enumerate(names)}
            bad = sorted({str(v) for v in raw if str(v) not in index})
            if bad:
                raise unknown_name(bad[0], names, "class")
            y = np.array([index[str(v)] for v in raw], dtype=np.int64)
        else:
            if raw.dtype.kind == "f":
                if np.isnan(raw).any():
                    raise ValueError("labels contain NaN")
                if not np.all(raw == np.round(raw)):
                    raise ValueError("labels must be integers (or class names)")
            if raw.dtype.kind not in "iuf" and raw.dtype.kind != "b":
                raise ValueError(f"labels must be integers or class names, got dtype {raw.dtype}")
            y = raw.astype(np.int64)
        if y.size == 0:
            raise ValueError("no labels")
        K = len(names) if names is not None else int(y.max()) + 1
        if y.min() < 0 or y.max() >= K:
            raise ValueError(f"labels must lie in [0, {K}) for {K} classes; got values in [{y.min()}, {y.max()}]")
        if K < 2:
            raise ValueError("a classifier needs at least 2 classes")
        return torch.from_numpy(y), names or [str(k) for k in range(K)]

    # ------------------------------------------------------------------------------------------
    # fitting
    # ------------------------------------------------------------------------------------------

    def fit(self, embeddings: Any, labels: Any, val_embeddings: Any = None, val_labels: Any = None, concept_labels: Any = None) -> ConceptBottleneckModel:
        """Fit on raw embeddings (N, d) and labels (N,) (ints in [0, K) or class names).

        ``val_embeddings`` / ``val_labels``: held-out data for the methods that choose an epoch
        or learn concepts against it (LaBo's best epoch, Label-free CBM's projection).
        ``concept_labels``: optional training concept labels (a DataFrame with concept-named
        columns, see :func:`~conceptlab.cbm.calibration.align_concept_labels`), passed to a layer
        that uses them (``uses_concept_labels``, e.g. calibration) and to the head's context."""
        X = self._check_embeddings(embeddings)
        y, names = self._resolve_classes(labels)
        if len(y) != len(X):
            raise ValueError(f"{len(X)} embeddings but {len(y)} labels")
        if (val_embeddings is None) != (val_labels is None):
            raise ValueError("give both val_embeddings and val_labels, or neither")
        val = None
        if val_embeddings is not None:
            Xv = self._check_embeddings(val_embeddings)
            yv, _ = self._resolve_classes(val_labels)
            if len(Xv) != len(yv):
                raise ValueError(f"{len(Xv)} validation embeddings but {len(yv)} labels")
            val = (Xv, yv)
        K = len(names)
        layer = self._make_layer()
        if concept_labels is not None and getattr(layer, "uses_concept_labels", False):
            layer = layer.fit(self.bank, X, y, names, val=val, concept_labels=concept_labels)
        else:
            layer = layer.fit(self.bank, X, y, names, val=val)
        scores = layer.scores(X)
        truth = None
        if concept_labels is not None:
            truth = align_concept_labels(concept_labels, layer.bank_.names, len(X))
        context = HeadContext(X, layer.bank_, names, None if val is None else (layer.scores(val[0]), val[1]), concept_labels=truth)
        head = self._make_head(len(layer.bank_), K).fit_head(scores, y, K, context)
        self.class_names_ = names
        self.n_classes_ = K
        self.classes_ = np.arange(K)
        self._set_fitted(layer, head)
        self.edits_ = []
        self.provenance_ = library_provenance(
            seed=self.seed, model=type(self).__name__, method=self.method_name(), bank_space=self.bank.space, n_train=int(len(y)),
            **({"concept_labels": int((~np.isnan(truth)).any(0).sum())} if truth is not None else {}),
            layer=layer.info(), **head.info(),
        )
        return self

    def _set_fitted(self, layer: ConceptLayer, head: Head) -> None:
        self.concept_layer_ = layer
        self.head_ = head
        self.bank_ = layer.bank_
        self.concept_names_ = layer.bank_.names
        self.weight_ = head.weight_
        self.bias_ = head.bias_
        self.residual_weight_ = getattr(head, "residual_weight_", None)
        self.residual_bias_ = getattr(head, "residual_bias_", None)
        if self.weight_ is None or self.bias_ is None:
            raise RuntimeError(f"{type(head).__name__}.fit_head must set weight_ and bias_")

    def _compute_scores(self, X: torch.Tensor) -> torch.Tensor:
        self._check_fitted()
        return self.concept_layer_.scores(X)

    # ------------------------------------------------------------------------------------------
    # inference
    # ------------------------------------------------------------------------------------------

    @property
    def has_residual(self) -> bool:
        return getattr(self, "residual_weight_", None) is not None

    def _logits(self, scores: torch.Tensor, X: torch.Tensor | None) -> torch.Tensor:
        logits = scores @ self.weight_.T + self.bias_
        if self.has_residual:
            if X is None:
                raise ValueError(f"{type(self).__name__} has a residual on the raw embedding: pass the embeddings too")
            logits = logits + X @ self.residual_weight_.T + self.residual_bias_
        return logits

    def transform(self, embeddings: Any) -> np.ndarray:
        """Concept scores (N, C) of raw embeddings (N, d)."""
        return self._compute_scores(self._check_embeddings(embeddings)).numpy()

    def decision_function(self, embeddings: Any) -> np.ndarray:
        """Class logits (N, K)."""
        self._check_fitted()
        X = self._check_embeddings(embeddings)
        return self._logits(self._compute_scores(X), X).numpy()

    def predict_proba(self, embeddings: Any) -> np.ndarray:
        return _softmax(torch.from_numpy(self.decision_function(embeddings))).numpy()

    def predict(self, embeddings: Any) -> np.ndarray:
        return self.decision_function(embeddings).argmax(1)

    def decision_from_scores(self, scores: Any, embeddings: Any = None) -> np.ndarray:
        """Logits from given concept scores (N, C); the embeddings are needed only by a residual."""
        self._check_fitted()
        S = as_matrix(scores, "concept scores", len(self.concept_names_), f"the model's {len(self.concept_names_)} concepts")
        X = None if embeddings is None else self._check_embeddings(embeddings)
        if X is not None and len(X) != len(S):
            raise ValueError(f"{len(S)} score rows but {len(X)} embeddings")
        return self._logits(S, X).numpy()

    def score(self, embeddings: Any, labels: Any) -> float:
        """Top-1 accuracy."""
        y, _ = self._resolve_classes(labels)
        return float((torch.from_numpy(self.predict(embeddings)) == y).float().mean())

    # ------------------------------------------------------------------------------------------
    # reading the model
    # ------------------------------------------------------------------------------------------

    @property
    def coef_(self) -> np.ndarray:
        """The head's weights (K, C) as numpy (a copy)."""
        self._check_fitted()
        return self.weight_.numpy().copy()

    @property
    def intercept_(self) -> np.ndarray:
        self._check_fitted()
        return self.bias_.numpy().copy()

    def weights_frame(self) -> pd.DataFrame:
        """The head as a class × concept DataFrame (for heatmaps)."""
        self._check_fitted()
        return pd.DataFrame(self.weight_.numpy(), index=self.class_names_, columns=self.concept_names_)

    def _class_index(self, class_: int | str) -> int:
        if isinstance(class_, (int, np.integer)) and not isinstance(class_, bool):
            if not 0 <= int(class_) < self.n_classes_:
                raise ValueError(f"class index {class_} outside [0, {self.n_classes_})")
            return int(class_)
        if isinstance(class_, str) and class_ in self.class_names_:
            return self.class_names_.index(class_)
        raise unknown_name(class_, self.class_names_, "class")

    def _concept_index(self, concept: int | str) -> int:
        if isinstance(concept, (int, np.integer)) and not isinstance(concept, bool):
            if not 0 <= int(concept) < len(self.concept_names_):
                raise ValueError(f"concept index {concept} outside [0, {len(self.concept_names_)})")
            return int(concept)
        if isinstance(concept, str) and concept in self.concept_names_:
            return self.concept_names_.index(concept)
        raise unknown_name(concept, self.concept_names_, "concept")

    def explain(self, embeddings: Any, class_: int | str | None = None, top: int | None = None) -> pd.DataFrame:
        """Per-concept contributions to one class's logit.

        For each row: ``contribution = score × weight`` for every concept of the explained class
        (the predicted one unless ``class_`` is given), sorted by |contribution|, then an
        ``(intercept)`` row and, with a residual, a ``(residual)`` row. Contributions of a row
        sum to the class logit. Columns: ``sample``, ``class``, ``concept``, ``score``,
        ``weight``, ``contribution``. ``top`` keeps the largest concept rows only.
        """
        self._check_fitted()
        X = self._check_embeddings(embeddings)
        scores = self._compute_scores(X)
        logits = self._logits(scores, X)
        residual = (X @ self.residual_weight_.T + self.residual_bias_) if self.has_residual else None
        frames = []
        for i in range(len(X)):
            k = self._class_index(class_) if class_ is not None else int(logits[i].argmax())
            contribution = scores[i] * self.weight_[k]
            order = torch.argsort(contribution.abs(), descending=True, stable=True)
            if top is not None:
                order = order[:top]
            rows = {
                "concept": [self.concept_names_[j] for j in order.tolist()] + ["(intercept)"],
                "score": scores[i, order].tolist() + [np.nan],
                "weight": self.weight_[k, order].tolist() + [np.nan],
                "contribution": contribution[order].tolist() + [float(self.bias_[k])],
            }
            if residual is not None:
                rows["concept"].append("(residual)")
                rows["score"].append(np.nan)
                rows["weight"].append(np.nan)
                rows["contribution"].append(float(residual[i, k]))
            frame = pd.DataFrame(rows)
            frame.insert(0, "class", self.class_names_[k])
            frame.insert(0, "sample", i)
            frames.append(frame)
        out = pd.concat(frames, ignore_index=True)
        if len(X) == 1:
            k = self._class_index(out["class"].iloc[0])
            out.attrs.update(
                {"class": self.class_names_[k], "logit": float(logits[0, k]), "predicted": self.class_names_[int(logits[0].argmax())]}
            )
        return out

    # ------------------------------------------------------------------------------------------
    # interventions and edits
    # ------------------------------------------------------------------------------------------

    def intervene(self, embeddings: Any, set: Mapping[str | int, Any] | None = None, zero: Iterable[str | int] = ()) -> InterventionResult:  # noqa: A002
        """Re-predict with concept scores edited: ``set={name: value}`` (a scalar or one value per
        row) and ``zero=[names]`` (score 0, i.e. on the concept's hyperplane). Pure: the model is
        not changed."""
        self._check_fitted()
        X = self._check_embeddings(embeddings)
        scores = self._compute_scores(X).clone()
        for name in zero:
            scores[:, self._concept_index(name)] = 0.0
        for name, value in (set or {}).items():
            j = self._concept_index(name)
            values = torch.as_tensor(np.asarray(value, dtype=np.float32))
            if values.ndim > 1 or (values.ndim == 1 and values.shape[0] != len(X)):
                raise ValueError(f"value for {name!r} must be a scalar or one value per row ({len(X)}), got shape {tuple(values.shape)}")
            if not torch.isfinite(values).all():
                raise ValueError(f"value for {name!r} is NaN or infinite")
            scores[:, j] = values
        logits = self._logits(scores, X)
        proba = _softmax(logits)
        return InterventionResult(scores.numpy(), logits.numpy(), proba.numpy(), logits.argmax(1).numpy())

    def copy(self) -> ConceptBottleneckModel:
        """A deep copy (the immutable bank is shared)."""
        return copy.deepcopy(self, memo={id(self.bank): self.bank})

    def prune(self, concepts: str | int | Iterable[str | int], classes: str | int | Iterable[str | int] | None = None, renormalize: bool = False) -> ConceptBottleneckModel:
        """An edited copy with W[class, concept] = 0 for the given concepts and classes (all by default).

        ``renormalize`` (FACT's prune + normalise): each edited class row is then rescaled so its
        L1 norm equals its value before pruning. The original model is not changed.
        """
        self._check_fitted()
        concept_list = [concepts] if isinstance(concepts, (str, int, np.integer)) else list(concepts)
        if not concept_list:
            raise ValueError("prune needs at least one concept")
        concept_idx = sorted({self._concept_index(c) for c in concept_list})
        if classes is None:
            class_idx = list(range(self.n_classes_))
        else:
            class_list = [classes] if isinstance(classes, (str, int, np.integer)) else list(classes)
            class_idx = sorted({self._class_index(c) for c in class_list})
        edited = self.copy()
        W = edited.weight_
        before = W[class_idx].abs().sum(1)
        rows = torch.tensor(class_idx)[:, None]
        W[rows, torch.tensor(concept_idx)[None, :]] = 0.0
        if renormalize:
            after = W[class_idx].abs().sum(1)
            scale = torch.where(after > 0, before / after.clamp(min=1e-30), torch.ones_like(after))
            W[class_idx] = W[class_idx] * scale[:, None]
            dead = [self.class_names_[k] for k, a, b in zip(class_idx, after.tolist(), before.tolist()) if a == 0 and b > 0]
            if dead:
                warnings.warn(f"classes {dead} have no weight left after pruning; they cannot be renormalised", stacklevel=2)
        edited.edits_ = list(self.edits_) + [
            {
                "op": "prune",
                "concepts": [self.concept_names_[j] for j in concept_idx],
                "classes": [self.class_names_[k] for k in class_idx],
                "renormalize": bool(renormalize),
            }
        ]
        return edited

    # ------------------------------------------------------------------------------------------
    # persistence
    # ------------------------------------------------------------------------------------------

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``config.json`` + ``model.safetensors`` + ``bank/`` (+ the layer's artifacts) into
        ``directory``; returns it. See :mod:`conceptlab.cbm.persistence`."""
        self._check_fitted()
        return save_model(self, directory)

    @classmethod
    def load(cls, directory: str | os.PathLike) -> ConceptBottleneckModel:
        """Read a model written by :meth:`save`; ``ConceptBottleneckModel.load`` returns the saved
        method's class (looked up in the method registry)."""
        return load_model(directory, cls)

    def _restored(self) -> None:
        """Called after :func:`~conceptlab.cbm.persistence.load_model` set the fitted state."""
