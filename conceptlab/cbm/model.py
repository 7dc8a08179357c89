"""The one interface every concept bottleneck model in conceptlab shares.

A CBM maps embeddings to concept scores (``transform``), concept scores to class logits through a
linear head W (K, C) + b (K,), and optionally adds a residual linear layer on the raw embedding
(PCBM-h)::

    logits(x) = W · s(x) + b  [+ R · x + r]

Subclasses (PCBM, PCBM-h; LaBo and DN-CBM later) implement ``_fit`` and, when their concept
scores are not the bank's margin/dot product, ``_compute_scores``. Everything else -- prediction,
explanation, intervention, pruning, save/load -- lives here once.

scikit-learn contract: the constructor stores parameters only; ``fit`` returns self; learned
state ends in ``_``; edits return new models and never change the original.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from sklearn.exceptions import NotFittedError

from conceptlab.cbm.scores import as_matrix, concept_scores
from conceptlab.concepts.bank import (
    ConceptBank,
    library_provenance,
    read_json,
    read_tensors,
    unknown_name,
    write_json,
    write_tensors,
)
from conceptlab.concepts.concept import jsonable

__all__ = ["ConceptBottleneckModel", "InterventionResult", "CBM_FORMAT"]

CBM_FORMAT = "conceptlab.ConceptBottleneckModel"
CBM_FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
TENSOR_FILE = "model.safetensors"
BANK_DIR = "bank"


@dataclass(frozen=True)
class InterventionResult:
    """What :meth:`ConceptBottleneckModel.intervene` returns (all numpy)."""

    scores: np.ndarray  # (N, C) the edited concept scores
    logits: np.ndarray  # (N, K)
    proba: np.ndarray  # (N, K)
    predictions: np.ndarray  # (N,)


def _softmax(logits: torch.Tensor) -> torch.Tensor:
    return torch.softmax(logits.double(), dim=1).float()


class ConceptBottleneckModel:
    """Base class: a linear head over concept scores, with optional residual.

    Args:
        bank: the :class:`~conceptlab.concepts.ConceptBank` the scores are computed against.
        class_names: class names, in label order; by default ``"0" .. "K-1"`` from the labels.
        score_mode: ``"margin"`` (PCBM) or ``"dot"`` (LaBo/V2C), see
            :func:`~conceptlab.cbm.scores.concept_scores`.
        seed: recorded in provenance and used by stochastic parts of ``fit``.
    """

    _registry: ClassVar[dict[str, type["ConceptBottleneckModel"]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        ConceptBottleneckModel._registry[cls.__name__] = cls

    def __init__(self, bank: ConceptBank, class_names: Sequence[str] | None = None, score_mode: str = "margin", seed: int = 42) -> None:
        self.bank = bank
        self.class_names = class_names
        self.score_mode = score_mode
        self.seed = seed

    # ------------------------------------------------------------------------------------------
    # parameters (scikit-learn style)
    # ------------------------------------------------------------------------------------------

    @classmethod
    def _param_names(cls) -> list[str]:
        names = []
        for klass in cls.__mro__:
            if klass is object or "__init__" not in vars(klass):
                continue
            for name, parameter in inspect.signature(klass.__init__).parameters.items():
                if name != "self" and parameter.kind not in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL) and name not in names:
                    names.append(name)
        return names

    def get_params(self, deep: bool = False) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> "ConceptBottleneckModel":
        valid = self._param_names()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(f"{type(self).__name__} has no parameter {name!r}; parameters: {', '.join(valid)}")
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        params = {k: v for k, v in self.get_params().items() if k != "bank"}
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
        bank = self._check_bank()
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

    def fit(self, embeddings: Any, labels: Any) -> "ConceptBottleneckModel":
        """Fit on raw embeddings (N, d) and labels (N,) (ints in [0, K) or class names)."""
        X = self._check_embeddings(embeddings)
        y, names = self._resolve_classes(labels)
        if len(y) != len(X):
            raise ValueError(f"{len(X)} embeddings but {len(y)} labels")
        self.class_names_ = names
        self.n_classes_ = len(names)
        self.concept_names_ = self.bank.names
        self.residual_weight_ = None
        self.residual_bias_ = None
        self.edits_ = []
        self.weight_ = None
        self._fit(X, self._compute_scores(X), y)
        if self.weight_ is None or self.bias_ is None:
            raise RuntimeError(f"{type(self).__name__}._fit must set weight_ and bias_")
        self.provenance_ = library_provenance(
            seed=self.seed, model=type(self).__name__, bank_space=self.bank.space, n_train=int(len(y)),
            **self._provenance_extra(),
        )
        return self

    def _fit(self, X: torch.Tensor, scores: torch.Tensor, y: torch.Tensor) -> None:
        """Set ``weight_`` (K, C), ``bias_`` (K,) and optionally ``residual_weight_`` / ``residual_bias_``."""
        raise NotImplementedError

    def _provenance_extra(self) -> dict[str, Any]:
        return {}

    def _compute_scores(self, X: torch.Tensor) -> torch.Tensor:
        return concept_scores(X, self.bank, self.score_mode)

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

    def copy(self) -> "ConceptBottleneckModel":
        """A deep copy (the immutable bank is shared)."""
        return copy.deepcopy(self, memo={id(self.bank): self.bank})

    def prune(self, concepts: str | int | Iterable[str | int], classes: str | int | Iterable[str | int] | None = None, renormalize: bool = False) -> "ConceptBottleneckModel":
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

    def _extra_tensors(self) -> dict[str, torch.Tensor]:
        """Subclass state beyond the head and residual, saved in the safetensors file."""
        return {}

    def _load_extra(self, tensors: dict[str, torch.Tensor], config: dict[str, Any]) -> None:
        pass

    def _json_params(self) -> dict[str, Any]:
        params = {k: v for k, v in self.get_params().items() if k != "bank"}
        return jsonable(params)

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``config.json`` + ``model.safetensors`` + ``bank/`` into ``directory``; returns it."""
        self._check_fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {"weight": self.weight_, "bias": self.bias_}
        if self.has_residual:
            tensors.update(residual_weight=self.residual_weight_, residual_bias=self.residual_bias_)
        extra = self._extra_tensors()
        clash = sorted(set(extra) & set(tensors))
        if clash:
            raise RuntimeError(f"extra tensor names clash with the head's: {clash}")
        tensors.update(extra)
        config = {
            "format": CBM_FORMAT,
            "format_version": CBM_FORMAT_VERSION,
            "model_class": type(self).__name__,
            "model_module": type(self).__module__,
            "params": self._json_params(),
            "class_names": self.class_names_,
            "concept_names": self.concept_names_,
            "tensors": sorted(tensors),
            "edits": jsonable(self.edits_),
            "provenance": self.provenance_,
            "fitted_state": jsonable(self._fitted_state()),
        }
        self.bank.save(directory / BANK_DIR)
        write_tensors(directory / TENSOR_FILE, tensors, metadata={"format": CBM_FORMAT})
        write_json(directory / CONFIG_FILE, config)
        return directory

    def _fitted_state(self) -> dict[str, Any]:
        """JSON-safe learned scalars of a subclass (e.g. the λ actually used)."""
        return {}

    def _load_fitted_state(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "ConceptBottleneckModel":
        """Read a model written by :meth:`save`; ``ConceptBottleneckModel.load`` returns the saved subclass."""
        directory = Path(directory)
        if not directory.is_dir():
            raise FileNotFoundError(f"no saved model directory at {directory}")
        config_path = directory / CONFIG_FILE
        config = read_json(config_path, "model config")
        if config.get("format") != CBM_FORMAT:
            raise ValueError(f"{config_path} is not a conceptlab CBM config (format {config.get('format')!r})")
        if int(config.get("format_version", -1)) > CBM_FORMAT_VERSION:
            raise ValueError(f"{config_path} has format_version {config.get('format_version')}; this conceptlab reads up to {CBM_FORMAT_VERSION}")
        name, module = config.get("model_class"), str(config.get("model_module", ""))
        klass = cls._registry.get(name)
        if klass is None and module.startswith("conceptlab."):
            importlib.import_module(module)  # registers the class
            klass = cls._registry.get(name)
        if klass is None:
            raise ValueError(f"{config_path} names model class {name!r} from {module!r}, which conceptlab does not know")
        if not issubclass(klass, cls):
            raise TypeError(f"{directory} holds a {name}, not a {cls.__name__}")
        bank = ConceptBank.load(directory / BANK_DIR)
        try:
            params = dict(config["params"])
            class_names = list(config["class_names"])
            concept_names = list(config["concept_names"])
        except (KeyError, TypeError) as error:
            raise ValueError(f"{config_path} is corrupt: missing {error}") from error
        if concept_names != bank.names:
            raise ValueError(f"{config_path} lists concepts that differ from the bank in {directory / BANK_DIR}")
        tensors = read_tensors(directory / TENSOR_FILE, required=config.get("tensors", ["weight", "bias"]))
        model = klass(bank=bank, **params)
        model.class_names_ = class_names
        model.n_classes_ = len(class_names)
        model.concept_names_ = concept_names
        model.weight_ = tensors["weight"].float()
        model.bias_ = tensors["bias"].float()
        expected = (len(class_names), len(concept_names))
        if tuple(model.weight_.shape) != expected or tuple(model.bias_.shape) != (len(class_names),):
            raise ValueError(f"{directory / TENSOR_FILE} holds a head of shape {tuple(model.weight_.shape)}, expected {expected}")
        model.residual_weight_ = tensors.get("residual_weight")
        model.residual_bias_ = tensors.get("residual_bias")
        model.edits_ = list(config.get("edits", []))
        model.provenance_ = dict(config.get("provenance") or {})
        model._load_fitted_state(dict(config.get("fitted_state") or {}))
        model._load_extra(tensors, config)
        return model
