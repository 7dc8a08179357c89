"""Running a probe: embed through the store, build the bank, fit, evaluate, write the outputs."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from conceptlab.backbones import load
from conceptlab.baselines import linear_classifier
from conceptlab.cbm import figures as fig
from conceptlab.cbm.calibration import CalibratedLayer
from conceptlab.cbm.editing import NothingToPrune, editing_study
from conceptlab.cbm.interventions import fit_calibrator, intervention_curves, intervention_summary
from conceptlab.concepts.sources import ConceptSourceError, SourceContext
from conceptlab.data import ShapesWorld, split_dataset
from conceptlab.data import load as load_dataset
from conceptlab.experiments.config import ProbeConfig, ProbeConfigError, default_out_dir, load_probe, method_params
from conceptlab.experiments.report import accuracy_table, write_report
from conceptlab.metrics import accuracy_ci, compare_predictions, concept_auroc, concept_auroc_ci, intervention_curve, mean_sd, per_class_accuracy, sparsity
from conceptlab.registry import CONCEPT_SOURCES, METHODS, PROBE_KINDS
from conceptlab.store import ActivationStore
from conceptlab.utils import atomic_write_text

__all__ = ["ProbeResult", "accuracy_table", "probe_datasets", "run_probe"]


@dataclass
class ProbeResult:
    """What :func:`run_probe` produced: the fitted model, its metrics and where they were written."""

    config: ProbeConfig
    model: Any
    metrics: dict[str, Any]
    out_dir: Path | None
    figures: dict[str, Any] = field(default_factory=dict)
    editing: Any = None

    def accuracy_table(self) -> pd.DataFrame:
        return accuracy_table(self.metrics)

    def summary(self) -> str:
        return self.accuracy_table().round(4).to_string()


def probe_datasets(config: ProbeConfig) -> dict[str, Any]:
    """The datasets a probe reads, by split: ShapesWorld slices, or the seeded split of its ``spec``."""
    ds_cfg = config.dataset
    if ds_cfg.get("spec"):
        parts = split_dataset(load_dataset(ds_cfg["spec"]), ds_cfg["fractions"], seed=ds_cfg["seed"])
        return {split: parts[split] for split in config.needed_splits}
    return {
        split: ShapesWorld(
            split, size=ds_cfg["sizes"][split], seed=ds_cfg["seed"], resolution=ds_cfg["resolution"],
            label_noise=ds_cfg["label_noise"], spurious_strength=ds_cfg["spurious_strength"],
        )
        for split in config.needed_splits
    }


def run_probe(
    probe: ProbeConfig | str | Path,
    out_dir: str | Path | None = None,
    store=None,
    progress: bool = True,
    write: bool = True,
    log: Callable[[str], None] | None = print,
    *,
    figures: bool = True,
) -> ProbeResult:
    """Run a probe: embed (through the store), build the bank, fit, evaluate, write the outputs.

    Args:
        probe: a :class:`ProbeConfig` or a TOML path.
        out_dir: the output folder; default ``artifacts/probes/<name>/`` (relative to the cwd).
        store: an :class:`~conceptlab.store.ActivationStore` (default: $CONCEPTLAB_HOME/store).
        progress: show the store's progress bars.
        write: write the model, metrics and report (False: only compute and return them).
        log: called with one line per step (None: silent).
        figures: build the plotly figures (the seed re-runs of ``seeds = [...]`` skip them; a
            written report needs them).
    """
    config = load_probe(probe) if isinstance(probe, (str, Path)) else probe
    if not isinstance(config, ProbeConfig):  # another kind of run: its plug-in runs it
        return PROBE_KINDS.get(config.kind).run(config, out_dir=out_dir, store=store, progress=progress, write=write, log=log)
    say = log or (lambda message: None)
    draw = figures or write
    started = time.time()
    store = store or ActivationStore()
    backbone = load(config.backbone["spec"], device=config.backbone["device"])
    say(f"backbone {backbone.spec} ({backbone.dim}-d)")
    ds_cfg = config.dataset
    datasets, embeddings, labels = probe_datasets(config), {}, {}
    for split, dataset in datasets.items():
        embeddings[split] = store.get_or_compute(backbone, dataset, progress=progress)
        labels[split] = np.asarray(dataset.labels)
        say(f"embedded {dataset.identity}" if not ds_cfg.get("spec") else f"embedded {split} ({len(dataset)} images) of {ds_cfg['spec']}")
    context = SourceContext(backbone=backbone, datasets=datasets, embeddings=embeddings, base_dir=config.base_dir)
    source_config = {k: v for k, v in config.concepts.items() if k != "source"}
    try:
        bank = CONCEPT_SOURCES.get(config.concepts["source"])(source_config, context)
    except ConceptSourceError as error:
        raise ProbeConfigError(f"{config.source or config.name}: [concepts] {error}") from None
    say(f"concept bank: {len(bank)} concepts from source {config.concepts['source']!r}")
    klass = METHODS.get(config.method["name"])
    class_names = datasets["train"].class_names
    validation = (embeddings["val"], labels["val"]) if klass.needs_validation else ()
    if klass.needs_validation and "val" not in embeddings:
        raise ProbeConfigError(f"{config.source or config.name}: method {config.method['name']!r} learns against a validation split: give [dataset.sizes] val")
    concept_frames = {s: _concept_frame(d) for s, d in datasets.items()}
    model = klass(bank=bank, class_names=class_names, **config.method["params"])
    # concept labels go to methods whose concept layer calibrates on them (the sequential CBM)
    uses_labels = getattr(model._make_layer(), "uses_concept_labels", False)
    extra = {"concept_labels": concept_frames["train"]} if uses_labels and concept_frames["train"] is not None else {}
    fit_started = time.time()
    model = model.fit(embeddings["train"], labels["train"], *validation, **extra)
    fit_seconds = time.time() - fit_started
    say(f"fitted {type(model).__name__} in {fit_seconds:.1f} s")

    evaluation = config.evaluation
    eval_splits = ["train", *[s for s in evaluation["splits"] if s != "train"]]
    predictions = {s: model.predict(embeddings[s]) for s in eval_splits}
    metrics: dict[str, Any] = {
        "probe": config.name,
        "backbone": backbone.spec,
        "backbone_fingerprint": getattr(backbone, "fingerprint", None),
        "method": config.method["name"],
        "model_class": type(model).__name__,
        "n_concepts": len(bank),
        "sizes": {s: len(d) for s, d in datasets.items()},
        "store_keys": {s: store.key(backbone, d) for s, d in datasets.items()},
        "accuracy": {s: float(np.mean(predictions[s] == labels[s])) for s in eval_splits},
        "sparsity": sparsity(model),
        "fit_seconds": round(fit_seconds, 2),
    }
    # 95 % bootstrap intervals over the images of each split (seeded: the same run gives the same intervals)
    metrics["accuracy_ci"] = {s: accuracy_ci(labels[s], predictions[s]).to_dict() for s in eval_splits}
    figure_set: dict[str, Any] = {}
    if draw:
        figure_set["weights"] = fig.weight_heatmap(model)
    if evaluation["per_class"]:
        table = pd.DataFrame({s: per_class_accuracy(labels[s], predictions[s], class_names) for s in eval_splits})
        metrics["per_class_accuracy"] = {s: {k: float(v) for k, v in table[s].items()} for s in table.columns}
        if draw:
            figure_set["per_class"] = fig.per_class_accuracy_bars(table)
    if evaluation["linear_baseline"]:
        probe_model = linear_classifier(embeddings["train"], labels["train"])
        metrics["linear_baseline"] = {
            "model": "sklearn LogisticRegression(max_iter=5000) on the raw embeddings",
            "accuracy": {s: float(probe_model.score(embeddings[s].numpy(), labels[s])) for s in eval_splits},
        }
        baseline_predictions = {s: probe_model.predict(embeddings[s].numpy()) for s in eval_splits}
        metrics["linear_baseline"]["accuracy_ci"] = {s: accuracy_ci(labels[s], baseline_predictions[s]).to_dict() for s in eval_splits}
        # the CBM against the linear probe on the same images: paired intervals and McNemar's test
        metrics["comparisons"] = [
            {"split": s, **compare_predictions(labels[s], predictions[s], baseline_predictions[s], names=(config.method["name"], "linear baseline")).to_dict()}
            for s in eval_splits if s != "train"
        ]
    truth_names = datasets["train"].concept_names
    shared = [n for n in model.concept_names_ if n in truth_names]
    auroc_split = evaluation["concept_auroc"]
    if auroc_split and shared:
        scores = model.transform(embeddings[auroc_split])
        aurocs = concept_auroc(scores, datasets[auroc_split].concepts, names=model.concept_names_, truth_names=truth_names)
        metrics["concept_auroc"] = {"split": auroc_split, "mean": float(aurocs.mean()), "per_concept": {k: float(v) for k, v in aurocs.items()}}
        per_concept_ci, mean_ci = concept_auroc_ci(scores, datasets[auroc_split].concepts, names=model.concept_names_, truth_names=truth_names)
        metrics["concept_auroc"]["mean_ci"] = mean_ci.to_dict()
        metrics["concept_auroc"]["per_concept_ci"] = {str(k): [float(r["low"]), float(r["high"])] for k, r in per_concept_ci.iterrows()}
        if draw:
            figure_set["concept_auroc"] = fig.concept_auroc_bars(aurocs, title=f"Concept AUROC on {auroc_split} against ground truth (mean {aurocs.mean():.3f})")
    intervention_split = evaluation["intervention"]
    if intervention_split and shared:
        curve = intervention_curve(
            model, embeddings[intervention_split], labels[intervention_split], datasets[intervention_split].concepts,
            train_scores=model.transform(embeddings["train"]), train_truth=datasets["train"].concepts, truth_names=truth_names,
        )
        metrics["intervention"] = {
            "split": intervention_split,
            "curve": [
                {"k": int(k), "accuracy": float(a), "concept": c if isinstance(c, str) else None}
                for k, a, c in zip(curve["k"], curve["accuracy"], curve["concept"])
            ],
        }
        if draw:
            figure_set["intervention"] = fig.intervention_line(curve, title=f"Intervening with true concept values ({intervention_split})")
        if concept_frames["train"] is not None and concept_frames[intervention_split] is not None:
            policies = _intervention_policies(model, embeddings, labels, concept_frames, intervention_split)
            metrics["interventions"] = policies["metrics"]
            if draw:
                figure_set["intervention"] = fig.intervention_policies(
                    policies["curves"], legacy=curve, title=f"Intervening with true concept values ({intervention_split}), by policy, 95 % intervals"
                )
    study = None
    if config.editing.enabled:
        splits = {s: (embeddings[s], labels[s]) for s in dict.fromkeys([*eval_splits, "shifted"])}
        try:
            study = editing_study(
                model, splits, concepts=config.editing.concepts, suggest=config.editing.suggest,
                renormalize=config.editing.renormalize, method=config.editing.method,
            )
        except NothingToPrune as error:
            metrics["editing"] = {"skipped": str(error)}
            say(f"editing study skipped: {error}")
        else:
            metrics["editing"] = study.to_dict()
            if draw:
                figure_set["editing"] = fig.editing_bars(study.accuracy, title=f"Accuracy before and after pruning {', '.join(study.concepts)}")
            say(study.summary())
    if config.seeds:
        metrics["seeds"] = _seed_runs(config, klass, store, progress, say)
    metrics["seconds"] = round(time.time() - started, 2)
    torch_threads = torch.get_num_threads()
    metrics["torch_threads"] = torch_threads
    result = ProbeResult(config=config, model=model, metrics=metrics, out_dir=None, figures=figure_set, editing=study)
    if write:
        out = Path(out_dir) if out_dir is not None else default_out_dir(config)
        out.mkdir(parents=True, exist_ok=True)
        model.save(out / "model")
        if study is not None:
            study.model.save(out / "model_edited")
        atomic_write_text(out / "probe.json", json.dumps(config.to_dict(), indent=2) + "\n")
        atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2, default=_json_default) + "\n")
        write_report(result, out / "report.html")
        result.out_dir = out
        say(f"wrote {out}/ (model/, metrics.json, report.html)")
    return result


def _concept_frame(dataset: Any) -> pd.DataFrame | None:
    """A split's concept labels with concept-named columns (NaN: unknown), or None when it has none."""
    names, concepts = getattr(dataset, "concept_names", None), getattr(dataset, "concepts", None)
    if not names or concepts is None:
        return None
    values = np.asarray(concepts, dtype=np.float64)
    return pd.DataFrame(values, columns=list(names)) if values.ndim == 2 and values.shape[1] == len(names) else None


def _intervention_policies(model, embeddings, labels, concept_frames, split: str) -> dict[str, Any]:
    """Intervention curves per policy (random, weight, uncertainty) with intervals, in both modes."""
    calibrator = None if isinstance(getattr(model, "concept_layer_", None), CalibratedLayer) else fit_calibrator(model, embeddings["train"], concept_frames["train"])
    out: dict[str, Any] = {"split": split}
    curves = None
    for mode in ("replace", "correct"):
        frame = intervention_curves(model, embeddings[split], labels[split], concept_frames[split], calibrator=calibrator, mode=mode)
        if mode == "replace":
            curves = frame
            out.update({"kind": frame.attrs["kind"], "calibrated_concepts": frame.attrs["calibrated"], "concepts": frame.attrs["concepts"]})
        out[mode] = {
            "policies": {
                policy: [{k: (int(v) if k == "k" else float(v)) for k, v in row.items() if k != "policy"} for row in group.to_dict("records")]
                for policy, group in frame.groupby("policy", sort=False)
            },
            "summary": {p: {k: (None if v is None or pd.isna(v) else float(v)) for k, v in row.items()} for p, row in intervention_summary(frame, target=0.99).iterrows()},
        }
    return {"metrics": out, "curves": curves}


def _seed_runs(config: ProbeConfig, klass: type, store, progress: bool, say: Callable[[str], None]) -> dict[str, Any]:
    """Re-run the probe with each seed (ShapesWorld seed and the method's ``seed``) and give mean ± sd."""
    has_seed = "seed" in method_params(klass)
    runs = []
    for seed in config.seeds:
        params = {**config.method["params"], **({"seed": int(seed)} if has_seed else {})}
        replica = dataclasses.replace(config, dataset={**config.dataset, "seed": int(seed)}, method={**config.method, "params": params}, seeds=())
        say(f"seed {seed}: re-running the probe on ShapesWorld seed {seed}" + (f" with method seed {seed}" if has_seed else ""))
        runs.append(run_probe(replica, store=store, progress=progress, write=False, log=None, figures=False).metrics)
    out: dict[str, Any] = {"seeds": [int(s) for s in config.seeds], "varies": ["dataset.seed", *(["method.params.seed"] if has_seed else [])]}
    out["accuracy"] = {s: mean_sd([r["accuracy"][s] for r in runs]) for s in runs[0]["accuracy"]}
    if all("linear_baseline" in r for r in runs):
        out["linear_baseline"] = {s: mean_sd([r["linear_baseline"]["accuracy"][s] for r in runs]) for s in runs[0]["linear_baseline"]["accuracy"]}
    if all("concept_auroc" in r for r in runs):
        out["concept_auroc_mean"] = mean_sd([r["concept_auroc"]["mean"] for r in runs])
    edited = [r["editing"]["accuracy"] for r in runs if "accuracy" in r.get("editing", {})]
    if edited:
        out["editing"] = {
            "runs": len(edited),
            **{f"{column} {split}": mean_sd([e[split][column] for e in edited]) for split in edited[0] for column in ("gain", "gain_normalized")},
        }
    if all("interventions" in r for r in runs):
        summaries = [r["interventions"]["replace"]["summary"] for r in runs]
        out["interventions"] = {
            policy: {column: mean_sd([s[policy][column] for s in summaries]) for column in ("k=0", "k=5", "all")} for policy in summaries[0]
        }
    return out


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
