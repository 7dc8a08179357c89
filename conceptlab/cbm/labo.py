"""LaBo (Yang et al., CVPR 2023) and V2C-CBM (He et al., AAAI 2025): a class-concept association
bottleneck over text concepts.

Faithful to ``YueYANG1996/LaBo`` (``models/asso_opt/asso_opt.py``, ``cfg/asso_opt/base.py``):

- concept scores are dot products x·c of **unnormalised** image and text embeddings
  (``use_img_norm = use_txt_norm = False``); the text embedding is the raw concept string, no
  template (``utils.prepare_txt_feat``);
- the head is an association matrix A (K, C); logits = 100 · s(x) · softmax(A, dim=-1)ᵀ: each
  class row is a distribution over the concepts ("scaling as standard CLIP does");
- A starts from the 0/1 "language prior": A[class of concept j, j] = ``init_val`` = 1, else 0;
  a concept listed by several classes belongs to the first (``np.unique(..., return_index=True)``);
- loss = cross-entropy only (``use_l1_loss = use_div_loss = False``); Adam; batch 512;
  validation every 10 epochs (and after the last); the **best-validation** A is kept (``ModelCheckpoint(monitor=
  'val_acc', mode='max')``, a later tie does not replace it);
- concepts are chosen per class by :func:`~conceptlab.concepts.selection.submodular_select`
  (:meth:`LaBo.from_candidates`).

In conceptlab's head form the model is W = 100·softmax(A) (K, C), b = 0, so ``explain``,
``intervene`` and ``prune`` work unchanged; ``prune`` zeroes entries of W (rows then no longer sum
to 100 -- an edit, not a retrained model).

Defaults: lr 1e-4 and 5000 epochs are LaBo's CIFAR-10 learning rate and base epoch budget
(CUB: 5e-5; CIFAR-10 runs 15 000 epochs). Without validation data, ``val_fraction`` (10%) of the
training rows is held out, seeded -- LaBo ships its own validation split instead.

:class:`V2CCBM` is the same bottleneck over V2C tokenizer concepts, without selection, with the
"concept prior" initialisation the V2C-CBM authors did not release; see its docstring for ours.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from conceptlab.cbm.model import ConceptBottleneckModel
from conceptlab.concepts.bank import ConceptBank, library_provenance, unknown_name
from conceptlab.concepts.generation import ConceptSet
from conceptlab.concepts.selection import SelectionResult, submodular_select
from conceptlab.concepts.text import image_embedding_space

__all__ = ["LaBo", "V2CCBM", "concept_bank_from_set", "association_prior", "PRIORS"]

PRIORS = ("first", "all", "frequency", "none")


@torch.no_grad()
def concept_bank_from_set(
    backbone: Any,
    concept_set: ConceptSet,
    normalize: bool = False,
    space: str | None = None,
    batch_size: int = 256,
) -> ConceptBank:
    """One text concept per unique phrase of ``concept_set``, embedded raw (LaBo's default).

    Each concept's ``class_links`` are the classes that list it, in class order (LaBo uses the
    first); a set's ``scores`` (V2C token frequencies) go into ``provenance["class_scores"]``.
    ``normalize=True`` L2-normalises the vectors (LaBo's ``use_txt_norm``).
    """
    names = concept_set.unique()
    if not names:
        raise ValueError("the concept set is empty")
    links = concept_set.links()
    vectors = torch.cat([backbone.encode_texts(names[s : s + batch_size]).float().cpu() for s in range(0, len(names), batch_size)])
    if normalize:
        vectors = torch.nn.functional.normalize(vectors, dim=1)
    spec = str(getattr(backbone, "spec", type(backbone).__name__))
    fingerprint = getattr(backbone, "fingerprint", None)
    scores = concept_set.scores or {}
    provenance = []
    for name in names:
        entry = {
            "kind": "text", "prompts": [name], "templates": None, "backbone": spec,
            "backbone_fingerprint": fingerprint if isinstance(fingerprint, str) else None,
            "aggregation": "L2-normalised" if normalize else "raw text embedding (LaBo: use_txt_norm=False)",
            "source": concept_set.provenance.get("provider") or concept_set.provenance.get("source"),
        }
        class_scores = {c: scores[c][name] for c in links[name] if c in scores and name in scores[c]}
        if class_scores:
            entry["class_scores"] = class_scores
        provenance.append(entry)
    return ConceptBank.from_tensors(
        names, vectors, space or image_embedding_space(spec), provenance=provenance,
        class_links=[links[n] for n in names],
        bank_provenance=library_provenance(builder="concept_bank_from_set", backbone=spec, normalized=normalize, concept_set=concept_set.provenance),
    )


def association_prior(bank: ConceptBank, class_names: Sequence[str], prior: str = "first", init_val: float = 1.0) -> torch.Tensor:
    """The initial association matrix A₀ (K, C) from the bank's class links.

    - ``"first"`` (LaBo): A₀[first linked class, j] = init_val;
    - ``"all"``: every linked class gets init_val;
    - ``"frequency"`` (our V2C concept prior): every linked class k gets
      init_val · score_k(j) / max_j' score_k(j'), the scores being V2C's token counts;
    - ``"none"``: zeros (a uniform softmax).
    """
    if prior not in PRIORS:
        raise ValueError(f"prior must be one of {PRIORS}, got {prior!r}")
    names = [str(c) for c in class_names]
    index = {n: i for i, n in enumerate(names)}
    A = torch.zeros(len(names), len(bank))
    if prior == "none":
        return A
    unlinked = [c.name for c in bank if not c.class_links]
    if unlinked:
        raise ValueError(f"prior {prior!r} needs every concept linked to a class; {len(unlinked)} are not, e.g. {unlinked[:3]}")
    for j, concept in enumerate(bank):
        links = concept.class_links[:1] if prior == "first" else concept.class_links
        for cls in links:
            if cls not in index:
                raise unknown_name(cls, names, "class")
            if prior == "frequency":
                scores = concept.provenance.get("class_scores") or {}
                if cls not in scores:
                    raise ValueError(f"prior 'frequency' needs class_scores in the provenance of concept {concept.name!r} (build the bank from a V2C concept set)")
                A[index[cls], j] = float(scores[cls])
            else:
                A[index[cls], j] = init_val
    if prior == "frequency":
        top = A.max(1, keepdim=True).values
        A = torch.where(top > 0, A / top.clamp_min(1e-30), A) * init_val
    return A


class LaBo(ConceptBottleneckModel):
    """Language in a Bottle: concept scores x·c, head 100·softmax(A) trained from the language prior.

    Args:
        bank: the selected text concepts, each linked to its class (``class_links``).
        class_names: class names in label order (needed to read the links).
        lr, batch_size, epochs: Adam learning rate, batch size and epoch budget.
        val_every: validate every this many epochs; the best validation accuracy is kept.
        patience: stop after this many validations without improvement (None: run all epochs, as LaBo).
        logit_scale: 100 (LaBo).
        init_val: the prior's value (1.0).
        prior: ``"first"`` (LaBo), ``"all"``, ``"frequency"``, ``"none"`` -- see :func:`association_prior`.
        normalize_images: L2-normalise image embeddings first (LaBo's ``use_img_norm``, off).
        val_fraction: share of the training rows held out when ``fit`` gets no validation data.
        seed: the held-out split and the batch order.
        device: where training runs; CUDA when present.
    """

    default_prior = "first"

    def __init__(
        self,
        bank: ConceptBank,
        class_names: Sequence[str] | None = None,
        lr: float = 1e-4,
        batch_size: int = 512,
        epochs: int = 5000,
        val_every: int = 10,
        patience: int | None = None,
        logit_scale: float = 100.0,
        init_val: float = 1.0,
        prior: str | None = None,
        normalize_images: bool = False,
        val_fraction: float = 0.1,
        seed: int = 42,
        device: str | None = None,
    ) -> None:
        super().__init__(bank=bank, class_names=class_names, score_mode="dot", seed=seed)
        self.lr = lr
        self.batch_size = batch_size
        self.epochs = epochs
        self.val_every = val_every
        self.patience = patience
        self.logit_scale = logit_scale
        self.init_val = init_val
        self.prior = prior
        self.normalize_images = normalize_images
        self.val_fraction = val_fraction
        self.device = device

    @classmethod
    def _param_names(cls) -> list[str]:
        return [name for name in super()._param_names() if name != "score_mode"]  # always "dot"

    # -- building ----------------------------------------------------------------------------------

    @classmethod
    def from_candidates(
        cls,
        bank: ConceptBank,
        embeddings: Any,
        labels: Any,
        class_names: Sequence[str],
        n_per_class: int | None = 50,
        num_concepts: int | None = None,
        mi_scale: float = 1e7,
        coverage_weight: float = 5.0,
        coverage: str = "facility",
        **params: Any,
    ) -> "LaBo":
        """An unfitted model over the concepts LaBo's submodular selection keeps from ``bank``.

        Candidates compete within the first class they are linked to; the selection sees the
        training images (``embeddings``, ``labels``) as they are (normalised when
        ``normalize_images``). The :class:`~conceptlab.concepts.selection.SelectionResult` is kept
        as ``model.selection_``. Defaults follow LaBo's CIFAR-10 config ``[1e7, 5]``.
        """
        class_names = [str(c) for c in class_names]
        index = {n: i for i, n in enumerate(class_names)}
        missing = [c.name for c in bank if not c.class_links]
        if missing:
            raise ValueError(f"LaBo selection needs every candidate linked to a class; unlinked: {missing[:3]}")
        bad = [c.class_links[0] for c in bank if c.class_links[0] not in index]
        if bad:
            raise unknown_name(bad[0], class_names, "class")
        concept2cls = np.array([index[c.class_links[0]] for c in bank])
        X = torch.as_tensor(np.asarray(embeddings.detach().cpu() if isinstance(embeddings, torch.Tensor) else embeddings, dtype=np.float32))
        if params.get("normalize_images", False):
            X = torch.nn.functional.normalize(X, dim=1)
        y, _ = cls(bank=bank, class_names=class_names, **params)._resolve_classes(labels)
        result = submodular_select(
            X, y, bank.vectors, concept2cls, n_per_class=n_per_class, num_concepts=num_concepts, mi_scale=mi_scale,
            coverage_weight=coverage_weight, coverage=coverage, n_classes=len(class_names), names=bank.names, class_names=class_names,
        )
        model = cls(bank=bank.subset(result.indices.tolist()), class_names=class_names, **params)
        model.selection_ = result
        return model

    # -- scores ------------------------------------------------------------------------------------

    def _compute_scores(self, X: torch.Tensor) -> torch.Tensor:
        if self.normalize_images:
            X = torch.nn.functional.normalize(X, dim=1)
        return X @ self.bank.vectors.T

    # -- fitting -----------------------------------------------------------------------------------

    def fit(self, embeddings: Any, labels: Any, val_embeddings: Any = None, val_labels: Any = None) -> "LaBo":
        """Train A on (embeddings, labels); pick the epoch by accuracy on (val_embeddings, val_labels),
        or on a seeded ``val_fraction`` of the training rows when none are given."""
        if (val_embeddings is None) != (val_labels is None):
            raise ValueError("give both val_embeddings and val_labels, or neither")
        self._validation = None
        if val_embeddings is not None:
            Xv = self._check_embeddings(val_embeddings)
            yv, _ = self._resolve_classes(val_labels)
            if len(Xv) != len(yv):
                raise ValueError(f"{len(Xv)} validation embeddings but {len(yv)} labels")
            self._validation = (Xv, yv)
        try:
            return super().fit(embeddings, labels)
        finally:
            self._validation = None

    def _prior_name(self) -> str:
        return self.prior or self.default_prior

    def _fit(self, X: torch.Tensor, scores: torch.Tensor, y: torch.Tensor) -> None:
        for value, name in ((self.lr, "lr"), (self.logit_scale, "logit_scale")):
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value}")
        if int(self.epochs) < 1 or int(self.batch_size) < 1 or int(self.val_every) < 1:
            raise ValueError("epochs, batch_size and val_every must be positive")
        generator = torch.Generator().manual_seed(int(self.seed))
        validation = getattr(self, "_validation", None)
        if validation is not None:
            train_scores, train_y = scores, y
            val_scores, val_y = self._compute_scores(validation[0]), validation[1]
            held_out = "given"
        elif self.val_fraction and float(self.val_fraction) > 0:
            order = torch.randperm(len(y), generator=generator)
            n_val = max(1, int(len(y) * float(self.val_fraction)))
            if n_val >= len(y):
                raise ValueError("val_fraction leaves no training rows")
            val_idx, train_idx = order[:n_val], order[n_val:]
            train_scores, train_y, val_scores, val_y = scores[train_idx], y[train_idx], scores[val_idx], y[val_idx]
            held_out = f"{float(self.val_fraction):g} of the training rows"
        else:
            train_scores, train_y, val_scores, val_y = scores, y, None, None
            held_out = "none (last epoch kept)"
        prior = association_prior(self.bank, self.class_names_, self._prior_name(), self.init_val)
        dev = torch.device(self.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        S, Y = train_scores.to(dev), train_y.to(dev)
        A = torch.nn.Parameter(prior.clone().to(dev))
        optimizer = torch.optim.Adam([A], lr=float(self.lr))
        scale = float(self.logit_scale)
        best_A, best_acc, best_epoch, stale = A.detach().clone(), -1.0, 0, 0
        history: dict[str, list] = {"epoch": [], "train_loss": [], "val_accuracy": []}
        n, bs = len(Y), int(self.batch_size)
        for epoch in range(1, int(self.epochs) + 1):
            perm = torch.randperm(n, generator=generator).to(dev)
            total = 0.0
            for start in range(0, n, bs):
                batch = perm[start : start + bs]
                logits = scale * (S[batch] @ torch.softmax(A, dim=-1).T)
                loss = torch.nn.functional.cross_entropy(logits, Y[batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(batch)
            if val_scores is not None and (epoch % int(self.val_every) == 0 or epoch == int(self.epochs)):
                with torch.no_grad():
                    pred = (val_scores.to(dev) @ torch.softmax(A, dim=-1).T).argmax(1)
                    acc = float((pred == val_y.to(dev)).float().mean())
                history["epoch"].append(epoch)
                history["train_loss"].append(total / n)
                history["val_accuracy"].append(acc)
                if acc > best_acc:  # strictly better, as ModelCheckpoint
                    best_A, best_acc, best_epoch, stale = A.detach().clone(), acc, epoch, 0
                else:
                    stale += 1
                    if self.patience is not None and stale >= int(self.patience):
                        break
        if val_scores is None:
            best_A, best_epoch = A.detach().clone(), epoch
        self.asso_ = best_A.cpu()
        self.prior_ = prior
        self.weight_ = (scale * torch.softmax(self.asso_, dim=-1)).float()
        self.bias_ = torch.zeros(self.n_classes_)
        self.best_epoch_ = int(best_epoch)
        self.best_val_accuracy_ = None if val_scores is None else float(best_acc)
        self.epochs_run_ = int(epoch)
        self.history_ = history
        self.validation_ = held_out

    def _provenance_extra(self) -> dict[str, Any]:
        out = {
            "head": "logit_scale * softmax(A, dim=-1) over concepts, b = 0", "prior": self._prior_name(), "init_val": self.init_val,
            "optimizer": "Adam", "lr": self.lr, "batch_size": self.batch_size, "epochs": self.epochs, "val_every": self.val_every,
            "selection": "best validation accuracy", "validation": self.validation_, "normalize_images": self.normalize_images,
        }
        selection = getattr(self, "selection_", None)
        if isinstance(selection, SelectionResult):
            out["concept_selection"] = selection.settings
        return out

    # -- reading -----------------------------------------------------------------------------------

    @property
    def association_(self) -> torch.Tensor:
        """softmax(A) (K, C): each class row is a distribution over the concepts."""
        self._check_fitted()
        return torch.softmax(self.asso_, dim=-1)

    def top_concepts(self, k: int = 3) -> pd.DataFrame:
        """The ``k`` concepts with the largest softmax(A) weight per class (LaBo's Figure 7)."""
        M = self.association_
        rows = []
        for c, name in enumerate(self.class_names_):
            values, idx = torch.topk(M[c], min(int(k), M.shape[1]))
            for rank, (v, j) in enumerate(zip(values.tolist(), idx.tolist())):
                rows.append({"class": name, "rank": rank, "concept": self.concept_names_[j], "weight": v})
        return pd.DataFrame(rows)

    # -- persistence -------------------------------------------------------------------------------

    def _extra_tensors(self) -> dict[str, torch.Tensor]:
        return {"asso": self.asso_, "prior": self.prior_}

    def _load_extra(self, tensors: dict[str, torch.Tensor], config: dict[str, Any]) -> None:
        self.asso_ = tensors["asso"].float()
        self.prior_ = tensors["prior"].float()

    def _fitted_state(self) -> dict[str, Any]:
        state = {
            "best_epoch_": self.best_epoch_, "best_val_accuracy_": self.best_val_accuracy_, "epochs_run_": self.epochs_run_,
            "history_": self.history_, "validation_": self.validation_,
        }
        selection = getattr(self, "selection_", None)
        if isinstance(selection, SelectionResult):
            state["selection_table_"] = selection.table.to_dict(orient="list")
        return state


class V2CCBM(LaBo):
    """V2C-CBM: LaBo's bottleneck over the V2C tokenizer's concepts, with no selection.

    Build the bank with :meth:`conceptlab.concepts.v2c.V2CTokenizer.to_concept_set` and
    :func:`concept_bank_from_set`, so each concept carries the classes whose top tokens it is
    and its token count in each.

    **Concept prior (our choice; the authors did not release theirs).** A₀[k, j] =
    init_val · f_k(j) / max_j' f_k(j'), where f_k(j) is how often token j was among the top-5
    tokens of class k's quantisation images, for every class whose list holds token j (0
    elsewhere). Why: the counts are the evidence the tokenizer found for each class-concept link,
    so a token hit by most of a class's images starts stronger than one that scraped into the
    top 50; a token shared by several classes is linked to all of them instead of to an arbitrary
    first one (LaBo's dedupe); and the scale (max 1 = LaBo's init_val) keeps LaBo's starting
    temperature, so LaBo's learning rates carry over. ``prior="first"`` gives LaBo's 0/1 prior.
    """

    default_prior = "frequency"
