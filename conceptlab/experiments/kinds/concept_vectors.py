"""``kind = "concept_vectors"``: ConceptVectors on a language model and FactsWorld, as a probe file.

::

    kind = "concept_vectors"
    name = "facts_concept_vectors"
    [model]
    spec = "zoo:facts-gpt2"          # any hf: / transformer_lens: / zoo: language model
    [locate]
    entities = 12                    # the first N FactsWorld entities, or a list of names
    k = 10
    scorer = "share"                 # share | rank_weighted
    projection = "raw"               # raw | folded
    [validate]
    intervention = "noise"           # noise | zero | mean
    std = 0.1
    relative = false
    form = "qa"
    [unlearn]
    entity = ""                      # "" = the best-located entity
    methods = ["ga", "gd", "npo", "npo_kl", "needle"]

The world is the one the model was trained on (its ``factsworld.json``, as ``zoo:facts-gpt2``
ships) or ``[world]`` (FactsWorld's sizes and seed). ``conceptlab probe run FILE`` writes into
``artifacts/probes/<name>/``: ``concepts/`` (the located vectors as a ConceptBank),
``metrics.json``, ``probe.json`` and ``report.html`` -- each atomically.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from conceptlab.experiments.config import ProbeConfigError
from conceptlab.experiments.plugin_config import check_choice, check_spec, read_header, read_section
from conceptlab.experiments.report_page import figures_html, write_report_page
from conceptlab.registry import register_probe_kind
from conceptlab.utils import atomic_write_json

__all__ = ["ConceptVectorsConfig", "ConceptVectorsProbe", "ConceptVectorsResult"]

SECTIONS: dict[str, dict[str, Any]] = {
    "model": {"spec": "zoo:facts-gpt2", "device": "cpu"},
    "world": {"n_people": 24, "n_cities": 8, "n_species": 8, "seed": 0},
    "locate": {"entities": 12, "k": 10, "scorer": "share", "projection": "raw", "layers": []},
    "validate": {"intervention": "noise", "std": 0.1, "relative": False, "seed": 8888, "form": "qa", "n_unrelated": 5},
    "unlearn": {"entity": "", "methods": ["ga", "gd", "npo", "npo_kl", "needle"], "steps": 0, "k": 10, "seed": 999},
}
TOP_LEVEL = {"kind", "name", "description", *SECTIONS}


@dataclass
class ConceptVectorsConfig:
    """A validated ``concept_vectors`` probe."""

    name: str
    description: str = ""
    model: dict[str, Any] = field(default_factory=dict)
    world: dict[str, Any] | None = None
    locate: dict[str, Any] = field(default_factory=dict)
    validate: dict[str, Any] = field(default_factory=dict)
    unlearn: dict[str, Any] | None = None
    kind: str = "concept_vectors"

    def summary(self) -> str:
        entities = self.locate["entities"]
        count = entities if isinstance(entities, int) else len(entities)
        steps = f"; unlearn with {', '.join(self.unlearn['methods'])}" if self.unlearn else ""
        iv = self.validate["intervention"] + (f" std {self.validate['std']}{' relative' if self.validate['relative'] else ''}" if self.validate["intervention"] == "noise" else "")
        return f"concept vectors of {self.model['spec']}: locate {count} FactsWorld entities (top-{self.locate['k']} {self.locate['scorer']}), validate ({iv}){steps}"


def _section(raw: Mapping[str, Any], key: str, source: str) -> dict[str, Any]:
    return read_section(raw, key, SECTIONS[key], source, _VALIDATORS)


def _entities(value: Any) -> tuple[bool, Any]:
    """How many entities to locate (>= 1), or their names."""
    count = isinstance(value, int) and not isinstance(value, bool) and value >= 1
    return count or (isinstance(value, list) and bool(value) and all(isinstance(v, str) for v in value)), value


def _layers(value: Any) -> tuple[bool, Any]:
    """Layers to scan: a list of layer indices, empty for all."""
    return isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value), value


_VALIDATORS = {"entities": _entities, "layers": _layers}


@register_probe_kind("concept_vectors", description="ConceptVectors on a language model: locate, validate and unlearn FactsWorld entities")
class ConceptVectorsProbe:
    """Parse and run ``kind = "concept_vectors"`` probe files."""

    @staticmethod
    def parse(raw: Mapping[str, Any], source: str = "<probe>", name: str | None = None) -> ConceptVectorsConfig:
        from conceptlab.vectors import METHODS, SCORERS

        probe_name = read_header(raw, TOP_LEVEL, source, name)
        model = _section(raw, "model", source)
        check_spec(model["spec"], source)
        locate = _section(raw, "locate", source)
        check_choice(locate["scorer"], tuple(SCORERS), "[locate] scorer", source)
        check_choice(locate["projection"], ("raw", "folded"), "[locate] projection", source)
        if locate["k"] < 1:
            raise ProbeConfigError(f"{source}: [locate] k must be >= 1")
        validate = _section(raw, "validate", source)
        check_choice(validate["intervention"], ("noise", "zero", "mean"), "[validate] intervention", source)
        check_choice(validate["form"], ("qa", "qa_heldout", "cloze", "foreign"), "[validate] form", source)
        if validate["std"] < 0:
            raise ProbeConfigError(f"{source}: [validate] std must be >= 0")
        unlearn = _section(raw, "unlearn", source) if "unlearn" in raw else None
        if unlearn is not None:
            for method in unlearn["methods"]:
                check_choice(method, tuple(METHODS), "[unlearn] methods", source)
        world = _section(raw, "world", source) if "world" in raw else None
        description = raw.get("description", "")
        if not isinstance(description, str):
            raise ProbeConfigError(f"{source}: top level: description must be a string")
        return ConceptVectorsConfig(probe_name, description, model, world, locate, validate, unlearn)

    @staticmethod
    def run(config: ConceptVectorsConfig, out_dir=None, store=None, progress: bool = True, write: bool = True, log: Callable[[str], None] | None = print) -> ConceptVectorsResult:
        return run_concept_vectors(config, out_dir=out_dir, progress=progress, write=write, log=log)


@dataclass
class ConceptVectorsResult:
    """What a ``concept_vectors`` run produced."""

    config: ConceptVectorsConfig
    metrics: dict[str, Any]
    located: pd.DataFrame
    validation: pd.DataFrame
    unlearning: pd.DataFrame | None
    bank: Any
    figures: dict[str, Any]
    out_dir: Path | None

    def summary(self) -> str:
        v = self.metrics["validation"]
        lines = [
            f"QA accuracy (held-out phrasings): {self.metrics['qa_accuracy'].get('qa_heldout', float('nan')):.3f}",
            f"validated {v['n_entities']} entities ({v['intervention']}): {v['n_passed']} pass (target drop >= 0.30, unrelated <= 0.05); "
            f"mean target drop {v['mean_target_drop']:.3f}, mean unrelated drop {v['mean_unrelated_drop']:.3f}; graded correct {v['n_graded_correct']}",
        ]
        if self.unlearning is not None:
            lines.append(self.unlearning.pivot_table(index="method", columns=["group", "form"], values="after").round(3).to_string())
        return "\n".join(lines)


def _world(config: ConceptVectorsConfig, lm: Any):
    from conceptlab.data import FactsWorld
    from conceptlab.zoo.facts_gpt2 import WORLD_FILE, world_of

    if config.world is not None:
        return FactsWorld(**config.world)
    spec = config.model["spec"]
    if spec.startswith("zoo:"):
        from conceptlab.zoo import zoo_path

        return world_of(zoo_path(spec.split(":", 1)[1]))
    folder = Path(spec.split(":", 1)[1]).expanduser()
    if (folder / WORLD_FILE).is_file():
        return world_of(folder)
    return FactsWorld()


def _intervention(validate: dict[str, Any], lm: Any, world: Any):
    from conceptlab.vectors import GaussianNoise, MeanAblation, ZeroAblation

    if validate["intervention"] == "zero":
        return ZeroAblation()
    if validate["intervention"] == "mean":
        return MeanAblation(tuple(world.training_corpus()[:400]))
    return GaussianNoise(std=validate["std"], relative=validate["relative"], seed=validate["seed"])


def run_concept_vectors(config: ConceptVectorsConfig, out_dir=None, progress: bool = True, write: bool = True, log: Callable[[str], None] | None = print) -> ConceptVectorsResult:
    """Locate one vector per entity, validate each, unlearn one entity; write the outputs."""
    from conceptlab.backbones import load
    from conceptlab.experiments.config import default_out_dir
    from conceptlab.vectors import entity_bank, layer_score_figure, locate_entities, unlearning_figure, unlearning_table, validate_entities, validation_figure
    from conceptlab.zoo.facts_gpt2 import evaluate_qa

    say = log or (lambda message: None)
    started = time.time()
    lm = load(config.model["spec"], device=config.model["device"])
    if not hasattr(lm, "value_vectors"):
        raise ProbeConfigError(f"[model] spec {config.model['spec']!r} is not a language model")
    world = _world(config, lm)
    say(f"model {lm}; {world}")
    qa = evaluate_qa(lm, world)
    say("QA accuracy: " + ", ".join(f"{form} {score:.3f}" for form, score in qa.items()))
    loc = config.locate
    entities = world.names[: loc["entities"]] if isinstance(loc["entities"], int) else loc["entities"]
    for entity in entities:
        world.entity(entity)  # a clear error for an unknown name
    located, scans = locate_entities(lm, world, entities, k=loc["k"], scorer=loc["scorer"], projection=loc["projection"], layers=loc["layers"] or None, progress=progress)
    say(f"located {len(located)} vectors; best {located.iloc[0]['entity']} at L{located.iloc[0]['layer']}.{located.iloc[0]['index']}")
    intervention = _intervention(config.validate, lm, world)
    pairs = {row.entity: (int(row.layer), int(row.index)) for row in located.itertuples()}
    validation = validate_entities(lm, world, pairs, intervention, form=config.validate["form"], n_unrelated=config.validate["n_unrelated"], progress=progress)
    passed = (validation["target_drop"] >= 0.30) & (validation["unrelated_drop"] <= 0.05)
    validation = validation.assign(passed=passed)
    metrics: dict[str, Any] = {
        "kind": config.kind,
        "model": lm.spec,
        "fingerprint": lm.fingerprint,
        "world": repr(world),
        "qa_accuracy": qa,
        "locate": {**loc, "entities": list(entities)},
        "validation": {
            "intervention": intervention.name,
            "form": config.validate["form"],
            "n_entities": int(len(validation)),
            "n_passed": int(passed.sum()),
            "n_graded_correct": int(validation["graded_correct"].sum()),
            "mean_target_drop": float(validation["target_drop"].mean()),
            "mean_unrelated_drop": float(validation["unrelated_drop"].mean()),
            "mean_others_drop": float(validation["others_drop"].mean()),
        },
        "located": json.loads(located.to_json(orient="records")),
        "validated": json.loads(validation.to_json(orient="records")),
    }
    figures = {"scan": layer_score_figure(scans[located.iloc[0]["entity"]], title=f"Scan for {located.iloc[0]['entity']}"), "validation": validation_figure(validation)}
    unlearning = None
    if config.unlearn is not None:
        entity = config.unlearn["entity"] or str(located.iloc[0]["entity"])
        row = located[located["entity"] == entity]
        if row.empty:
            layer_index = locate_entities(lm, world, [entity], k=loc["k"], scorer=loc["scorer"], projection=loc["projection"], progress=False)[0].iloc[0]
        else:
            layer_index = row.iloc[0]
        layer, index = int(layer_index["layer"]), int(layer_index["index"])
        overrides = {m: {"steps": config.unlearn["steps"]} for m in config.unlearn["methods"]} if config.unlearn["steps"] else None
        unlearning, runs = unlearning_table(
            lm, world, entity, layer, index, methods=config.unlearn["methods"], k=config.unlearn["k"], seed=config.unlearn["seed"], overrides=overrides, progress=progress
        )
        metrics["unlearning"] = {
            "entity": entity, "layer": layer, "index": index,
            "params": {m: r.params for m, r in runs.items()},
            "table": json.loads(unlearning.to_json(orient="records")),
        }
        figures["unlearning"] = unlearning_figure(unlearning)
        say(f"unlearned {entity} with {', '.join(config.unlearn['methods'])}")
    bank = entity_bank(lm, located, projection=loc["projection"], k=loc["k"])
    metrics["seconds"] = round(time.time() - started, 1)
    result = ConceptVectorsResult(config, metrics, located, validation, unlearning, bank, figures, None)
    if write:
        out = Path(out_dir) if out_dir is not None else default_out_dir(config)
        out.mkdir(parents=True, exist_ok=True)
        bank.save(out / "concepts")
        atomic_write_json(out / "metrics.json", metrics)
        atomic_write_json(out / "probe.json", asdict(config))
        write_concept_vectors_report(result, out / "report.html")
        result.out_dir = out
        say(f"wrote {out}")
    return result


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(border=0, escape=True, index=False, float_format=lambda v: f"{v:.3f}")


def write_concept_vectors_report(result: ConceptVectorsResult, path: str | Path) -> Path:
    """A self-contained HTML report (plotly.js inlined once: it opens offline)."""
    config, metrics = result.config, result.metrics
    v = metrics["validation"]
    located = result.located.assign(tokens=result.located["tokens"].map(lambda t: " ".join(t)))
    columns = ["entity", "layer", "index", "target_before", "target_after", "target_drop", "unrelated_drop", "others_drop", "most_broken", "graded_correct", "passed"]
    body = [
        f"<h1>Probe {html.escape(config.name)}</h1>",
        f"<p class='meta'>{html.escape(config.description)}</p>" if config.description else "",
        f"<p class='meta'>model <code>{html.escape(metrics['model'])}</code> · {html.escape(metrics['world'])} · ran in {metrics['seconds']} s</p>",
        "<h2>QA accuracy (exact match)</h2>",
        _table(pd.DataFrame([metrics["qa_accuracy"]])),
        "<h2>Located concept vectors</h2>",
        f"<p class='meta'>top-{config.locate['k']} tokens of each value vector's {html.escape(config.locate['projection'])} projection, scored by "
        f"{html.escape(config.locate['scorer'])} against the entity's name and attribute values</p>",
        _table(located),
        "<h2>Validation</h2>",
        f"<p class='meta'>{html.escape(v['intervention'])} on each located vector; {v['n_passed']} of {v['n_entities']} pass "
        f"(target drop ≥ 0.30, unrelated ≤ 0.05); graded against the truth, the most-broken entity is the located one for {v['n_graded_correct']}</p>",
        _table(result.validation[columns]),
    ]
    if result.unlearning is not None:
        u = metrics["unlearning"]
        pivot = result.unlearning.pivot_table(index=["method", "cosine", "l2", "jaccard"], columns=["group", "form"], values="after").reset_index()
        pivot.columns = [" ".join(str(c) for c in col if c) if isinstance(col, tuple) else col for col in pivot.columns]
        before = result.unlearning.drop_duplicates(["form", "group"]).pivot_table(index="group", columns="form", values="before").reset_index()
        body += [
            f"<h2>Unlearning {html.escape(u['entity'])} (vector L{u['layer']}.{u['index']})</h2>",
            "<p class='meta'>accuracy before unlearning</p>", _table(before),
            "<p class='meta'>accuracy after, and the intrinsic diff of the located vector (cosine, L2, top-k Jaccard)</p>", _table(pivot),
        ]
    body += figures_html(result.figures[key] for key in ("scan", "validation", "unlearning") if result.figures.get(key) is not None)
    return write_report_page(path, config.name, body)
