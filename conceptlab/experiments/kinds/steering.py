"""``kind = "steering"``: a steering vector's dose-response and coherence on FactsWorld, as a probe file.

::

    kind = "steering"
    name = "facts_steering"
    [model]
    spec = "zoo:facts-gpt2"          # any hf: / transformer_lens: / zoo: language model
    [steer]
    attribute = "colour"             # steer the answers to this attribute ...
    value = "white"                  # ... towards this value
    layer = 1                        # the block whose output (hook_resid_post) receives the vector
    method = "mean_difference"       # mean_difference | pca_diff | pca_center
    multipliers = [-1.0, 0.0, 0.5, 1.0, 1.5, 2.0, 4.0, 8.0]
    token_scope = "all"              # all | last
    seed = 0
    [coherence]
    max_nll_increase = 0.1           # nats above the unsteered NLL of held-out texts
    max_repeat_share = 0.05          # share of generated tokens repeating the one before
    min_control_accuracy = 0.0       # optional stricter guard: accuracy on the other attributes' questions

The world is the one the model was trained on (its ``factsworld.json``) or ``[world]``.
``conceptlab probe run FILE`` writes into ``artifacts/probes/<name>/``: ``steering_vector/``
(safetensors + JSON), ``dose_response.csv``, ``metrics.json``, ``probe.json`` and ``report.html``.
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
from conceptlab.experiments.report_page import figure_html, write_report_page
from conceptlab.registry import register_probe_kind
from conceptlab.utils import atomic_write_json, atomic_write_text

__all__ = ["SteeringConfig", "SteeringProbe", "SteeringResult"]

SECTIONS: dict[str, dict[str, Any]] = {
    "model": {"spec": "zoo:facts-gpt2", "device": "cpu"},
    "world": {"n_people": 24, "n_cities": 8, "n_species": 8, "seed": 0},
    "steer": {
        "attribute": "colour", "value": "white", "layer": 1, "method": "mean_difference",
        "multipliers": [-2.0, -1.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0],
        "token_scope": "all", "seed": 0, "max_new_tokens": 16,
    },
    "coherence": {"max_nll_increase": 0.1, "max_repeat_share": 0.05, "min_rise": 0.05, "min_control_accuracy": 0.0},
}
TOP_LEVEL = {"kind", "name", "description", *SECTIONS}


@dataclass
class SteeringConfig:
    """A validated ``steering`` probe."""

    name: str
    description: str = ""
    model: dict[str, Any] = field(default_factory=dict)
    world: dict[str, Any] | None = None
    steer: dict[str, Any] = field(default_factory=dict)
    coherence: dict[str, Any] = field(default_factory=dict)
    kind: str = "steering"

    def summary(self) -> str:
        s = self.steer
        return (
            f"steering {self.model['spec']}: {s['attribute']} -> {s['value']}, {s['method']} vector at layer {s['layer']}, "
            f"{len(s['multipliers'])} multipliers ({min(s['multipliers']):g} .. {max(s['multipliers']):g})"
        )


def _section(raw: Mapping[str, Any], key: str, source: str) -> dict[str, Any]:
    return read_section(raw, key, SECTIONS[key], source)


@register_probe_kind("steering", description="a steering vector's dose-response and coherence on FactsWorld (target rate, NLL, repeats vs multiplier)")
class SteeringProbe:
    """Parse and run ``kind = "steering"`` probe files."""

    @staticmethod
    def parse(raw: Mapping[str, Any], source: str = "<probe>", name: str | None = None) -> SteeringConfig:
        from conceptlab.vectors import BUILDERS

        probe_name = read_header(raw, TOP_LEVEL, source, name)
        model = _section(raw, "model", source)
        check_spec(model["spec"], source)
        steer = _section(raw, "steer", source)
        check_choice(steer["method"], BUILDERS, "[steer] method", source)
        if steer["token_scope"] not in ("all", "last"):
            raise ProbeConfigError(f"{source}: [steer] token_scope = {steer['token_scope']!r}; choose all or last")
        if steer["layer"] < 0:
            raise ProbeConfigError(f"{source}: [steer] layer must be >= 0")
        if 0.0 not in steer["multipliers"]:
            raise ProbeConfigError(f"{source}: [steer] multipliers must include 0 (the unsteered baseline the coherence guard compares with)")
        if steer["max_new_tokens"] < 1:
            raise ProbeConfigError(f"{source}: [steer] max_new_tokens must be >= 1")
        coherence = _section(raw, "coherence", source)
        world = _section(raw, "world", source) if "world" in raw else None
        description = raw.get("description", "")
        if not isinstance(description, str):
            raise ProbeConfigError(f"{source}: top level: description must be a string")
        return SteeringConfig(probe_name, description, model, world, steer, coherence)

    @staticmethod
    def run(config: SteeringConfig, out_dir=None, store=None, progress: bool = True, write: bool = True, log: Callable[[str], None] | None = print) -> SteeringResult:
        return run_steering(config, out_dir=out_dir, progress=progress, write=write, log=log)


@dataclass
class SteeringResult:
    """What a ``steering`` run produced."""

    config: SteeringConfig
    metrics: dict[str, Any]
    table: pd.DataFrame
    examples: pd.DataFrame
    vector: Any
    figure: Any
    out_dir: Path | None

    def summary(self) -> str:
        c = self.metrics["coherent_range"]
        works = "no multiplier raises the target rate while coherence holds" if c["low"] is None else (
            f"target rate rises from {c['baseline_rate']:.2f} to {c['best_rate']:.2f} over multipliers {c['low']:g} .. {c['high']:g} while coherence holds"
        )
        breaks = "" if c["breaks_at"] is None else f"; coherence breaks at {c['breaks_at']:g}"
        return f"{self.metrics['task']}\n{works}{breaks}\n{self.table.round(3).to_string(index=False)}"


def _world(config: SteeringConfig):
    from conceptlab.data import FactsWorld
    from conceptlab.zoo.facts_gpt2 import WORLD_FILE, world_of

    if config.world is not None:
        return FactsWorld(**config.world)
    spec = config.model["spec"]
    if spec.startswith("zoo:"):
        from conceptlab.zoo import zoo_path

        return world_of(zoo_path(spec.split(":", 1)[1]))
    folder = Path(spec.split(":", 1)[1]).expanduser()
    return world_of(folder) if (folder / WORLD_FILE).is_file() else FactsWorld()


def run_steering(config: SteeringConfig, out_dir=None, progress: bool = True, write: bool = True, log: Callable[[str], None] | None = print) -> SteeringResult:
    """Build the vector from FactsWorld pairs, sweep the multipliers, find the coherent range; write the outputs."""
    from conceptlab.backbones import load
    from conceptlab.experiments.config import default_out_dir
    from conceptlab.vectors import build_steering_vector, coherent_range, dose_response, dose_response_figure, facts_steering_task, steered_examples

    say = log or (lambda message: None)
    started = time.time()
    lm = load(config.model["spec"], device=config.model["device"])
    if not hasattr(lm, "value_vectors"):
        raise ProbeConfigError(f"[model] spec {config.model['spec']!r} is not a language model")
    s = config.steer
    if s["layer"] >= lm.n_layers:
        raise ProbeConfigError(f"[steer] layer {s['layer']} is out of range: {lm.spec} has {lm.n_layers} layers")
    world = _world(config)
    try:
        task = facts_steering_task(world, s["attribute"], s["value"], seed=s["seed"])
    except ValueError as error:
        raise ProbeConfigError(f"[steer] {error}") from None
    say(f"model {lm}; {task}")
    vector = build_steering_vector(lm, task, s["layer"], s["method"])
    table = dose_response(lm, vector, task, s["multipliers"], token_scope=s["token_scope"], max_new_tokens=s["max_new_tokens"], progress=progress)
    coherent = coherent_range(table, **config.coherence)
    chosen = coherent["best"] if coherent["best"] is not None else max(s["multipliers"])
    examples = steered_examples(lm, vector, task, chosen, token_scope=s["token_scope"], max_new_tokens=s["max_new_tokens"])
    figure = dose_response_figure(table, multiplier=chosen, coherent=coherent, title=f"{s['attribute']} → {s['value']}: {s['method']} at layer {s['layer']}")
    metrics = {
        "kind": config.kind,
        "model": lm.spec,
        "fingerprint": lm.fingerprint,
        "world": repr(world),
        "task": task.description,
        "vector": {"method": vector.method, "layer": vector.layer, "hook": vector.hook, "norm": vector.norm, "n_pairs": len(task.pairs)},
        "coherence": config.coherence,
        "coherent_range": coherent,
        "examples_multiplier": chosen,
        "dose_response": json.loads(table.to_json(orient="records")),
        "seconds": round(time.time() - started, 1),
    }
    result = SteeringResult(config, metrics, table, examples, vector, figure, None)
    say(result.summary())
    if write:
        out = Path(out_dir) if out_dir is not None else default_out_dir(config)
        out.mkdir(parents=True, exist_ok=True)
        vector.save(out / "steering_vector")
        atomic_write_text(out / "dose_response.csv", table.to_csv(index=False))
        atomic_write_json(out / "metrics.json", metrics)
        atomic_write_json(out / "probe.json", asdict(config))
        write_steering_report(result, out / "report.html")
        result.out_dir = out
        say(f"wrote {out}")
    return result


def write_steering_report(result: SteeringResult, path: str | Path) -> Path:
    """A self-contained HTML report (plotly.js inlined: it opens offline)."""
    config, metrics = result.config, result.metrics
    c = metrics["coherent_range"]
    verdict = "no multiplier raises the target rate while coherence holds" if c["low"] is None else (
        f"the target rate rises from {c['baseline_rate']:.2f} (unsteered) to {c['best_rate']:.2f} over multipliers {c['low']:g} – {c['high']:g} while coherence holds"
    )
    if c["breaks_at"] is not None:
        verdict += f"; coherence breaks at {c['breaks_at']:g}"
    tolerances = f"NLL ≤ unsteered + {config.coherence['max_nll_increase']:g} nats, repeat share ≤ {config.coherence['max_repeat_share']:g}"
    body = [
        f"<h1>Probe {html.escape(config.name)}</h1>",
        f"<p class='meta'>{html.escape(config.description)}</p>" if config.description else "",
        f"<p class='meta'>model <code>{html.escape(metrics['model'])}</code> · {html.escape(metrics['task'])} · ran in {metrics['seconds']} s</p>",
        f"<h2>Dose-response</h2><p>{html.escape(verdict)} (coherence: {html.escape(tolerances)}).</p>",
        figure_html(result.figure, include_plotlyjs=True),
        result.table.to_html(border=0, index=False, float_format=lambda v: f"{v:.3f}"),
        f"<h2>Answers at multiplier {metrics['examples_multiplier']:g}</h2>",
        result.examples.to_html(border=0, index=False, escape=True),
    ]
    return write_report_page(path, config.name, body)
