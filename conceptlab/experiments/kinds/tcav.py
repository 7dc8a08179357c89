"""``kind = "tcav"``: TCAV on ShapesWorld with significance, graded against the class rules, as a probe file.

::

    kind = "tcav"
    name = "shapes_tcav"
    [model]
    spec = "zoo:shapes-clip"        # any open_clip / local-dir: / zoo: image-text backbone
    [tcav]
    layer = "visual.layer4"          # any module of the image tower
    pool = "mean"                    # mean | flatten
    n_random = 100                   # random runs (CAVs per concept, and random-vs-random CAVs)
    n_examples = 100                 # images per concept
    n_inputs = 50                    # test images per class whose gradients are scored
    method = "sgd"                   # sgd | logistic | mean_diff
    significance = 0.05              # family-wise, Bonferroni over the concepts
    effect_gate = 1.5                # also graded: the default plus |Cohen's d| >= this (TCAV(min_effect_size=...))
    stability = [10, 20, 50, 100]    # the stability curve ([] to skip); n_random must reach the largest

``conceptlab probe run FILE`` writes ``artifacts/probes/<name>/``: ``metrics.json`` (grading of the
default test against the uncorrected one, the default with an effect-size gate and a single CAV
without random runs, the stability
curve, CAV accuracies), ``tcav.json`` (every verdict), ``probe.json`` and ``report.html``.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from conceptlab.experiments.config import ProbeConfigError
from conceptlab.experiments.plugin_config import check_choice, check_spec, read_header, read_section
from conceptlab.experiments.report_page import figures_html, write_report_page
from conceptlab.registry import register_probe_kind
from conceptlab.utils import atomic_write_json

__all__ = ["TCAVConfig", "TCAVProbe", "TCAVProbeResult"]

SECTIONS: dict[str, dict[str, Any]] = {
    "model": {"spec": "zoo:shapes-clip", "device": "cpu"},
    "tcav": {"layer": "visual.layer4", "pool": "mean", "n_random": 100, "n_examples": 100, "n_inputs": 50, "world_size": 3000,
             "n_random_pool": 1000, "method": "sgd", "significance": 0.05, "effect_gate": 1.5, "stability": [10, 20, 50, 100], "stability_repeats": 10,
             "classes": [], "concepts": [], "seed": 0},
}
TOP_LEVEL = {"kind", "name", "description", *SECTIONS}


@dataclass
class TCAVConfig:
    """A validated ``tcav`` probe."""

    name: str
    description: str = ""
    model: dict[str, Any] = field(default_factory=dict)
    tcav: dict[str, Any] = field(default_factory=dict)
    kind: str = "tcav"

    def summary(self) -> str:
        t = self.tcav
        return (f"TCAV of {self.model['spec']} at {t['layer']}@{t['pool']}: {t['n_random']} random runs, {t['method']} CAVs, "
                f"t-test at {t['significance']} with Bonferroni, graded against ShapesWorld's class rules")


def _section(raw: Mapping[str, Any], key: str, source: str) -> dict[str, Any]:
    return read_section(raw, key, SECTIONS[key], source)


@register_probe_kind("tcav", description="TCAV with random runs, t-test and Bonferroni on ShapesWorld, graded against the class rules")
class TCAVProbe:
    """Parse and run ``kind = "tcav"`` probe files."""

    @staticmethod
    def parse(raw: Mapping[str, Any], source: str = "<probe>", name: str | None = None) -> TCAVConfig:
        from conceptlab.backbones.layer_taps import POOLS
        from conceptlab.data import CLASS_RULES, ShapesWorld
        from conceptlab.vectors import CAV_METHODS

        probe_name = read_header(raw, TOP_LEVEL, source, name)
        model = _section(raw, "model", source)
        check_spec(model["spec"], source)
        t = _section(raw, "tcav", source)
        check_choice(t["pool"], POOLS, "[tcav] pool", source)
        check_choice(t["method"], CAV_METHODS, "[tcav] method", source)
        if t["n_random"] < 2:
            raise ProbeConfigError(f"{source}: [tcav] n_random must be >= 2 (a t-test needs two random scores)")
        if not 0 < t["significance"] < 1:
            raise ProbeConfigError(f"{source}: [tcav] significance must lie in (0, 1)")
        if not (isinstance(t["effect_gate"], (int, float)) and 0 <= t["effect_gate"] < float("inf")):
            raise ProbeConfigError(f"{source}: [tcav] effect_gate must be a number >= 0")
        if t["stability"] and max(t["stability"]) > t["n_random"]:
            raise ProbeConfigError(f"{source}: [tcav] stability sizes go up to {max(t['stability'])} but n_random is {t['n_random']}; raise n_random")
        bad = [c for c in t["classes"] if c not in CLASS_RULES]
        if bad:
            raise ProbeConfigError(f"{source}: [tcav] classes: unknown {', '.join(bad)}; ShapesWorld's classes are {', '.join(CLASS_RULES)}")
        names = ShapesWorld("test", size=1).concept_names
        bad = [c for c in t["concepts"] if c not in names]
        if bad:
            raise ProbeConfigError(f"{source}: [tcav] concepts: unknown {', '.join(bad)}; concepts are {', '.join(names)}")
        description = raw.get("description", "")
        if not isinstance(description, str):
            raise ProbeConfigError(f"{source}: top level: description must be a string")
        return TCAVConfig(probe_name, description, model, t)

    @staticmethod
    def run(config: TCAVConfig, out_dir=None, store=None, progress: bool = True, write: bool = True, log: Callable[[str], None] | None = print) -> TCAVProbeResult:
        return run_tcav_probe(config, out_dir=out_dir, store=store, progress=progress, write=write, log=log)


@dataclass
class TCAVProbeResult:
    """What a ``tcav`` run produced."""

    config: TCAVConfig
    metrics: dict[str, Any]
    study: Any
    figures: dict[str, Any]
    out_dir: Path | None

    def summary(self) -> str:
        lines = [f"{g['procedure']} [{g['score']}]: precision {g['precision']:.3f}, recall {g['recall']:.3f}, false-positive rate {g['false_positive_rate']:.3f}"
                 for g in self.metrics["grading"]]
        if self.metrics.get("stability"):
            lines += [f"N={s['n_random']}: decisions agree across subsets on {s['agreement']:.3f} of pairs" for s in self.metrics["stability"]]
        return "\n".join(lines)


def run_tcav_probe(config: TCAVConfig, out_dir=None, store=None, progress: bool = True, write: bool = True,
                   log: Callable[[str], None] | None = print) -> TCAVProbeResult:
    """Run the ShapesWorld TCAV study and write its outputs."""
    from conceptlab.backbones import load
    from conceptlab.experiments.config import default_out_dir
    from conceptlab.vectors import shapes_tcav_study
    from conceptlab.vectors.tcav_figures import cav_accuracy_figure, stability_figure, tcav_figure

    say = log or (lambda message: None)
    started = time.time()
    t = config.tcav
    backbone = load(config.model["spec"], device=config.model["device"])
    study = shapes_tcav_study(
        backbone, layer=t["layer"], pool=t["pool"], classes=t["classes"] or None, concepts=t["concepts"] or None, n_examples=t["n_examples"],
        world_size=t["world_size"], n_random_pool=t["n_random_pool"], n_inputs=t["n_inputs"], n_random=t["n_random"],
        stability_sizes=t["stability"] or None, stability_repeats=t["stability_repeats"], method=t["method"], significance=t["significance"],
        effect_gate=t["effect_gate"], store=store, seed=t["seed"], progress=progress,
    )
    metrics = {
        "kind": config.kind, "model": backbone.spec, "fingerprint": backbone.fingerprint, "settings": study.settings,
        "grading": json.loads(study.grading.to_json(orient="records")),
        "stability": json.loads(study.stability.to_json(orient="records")) if study.stability is not None else None,
        "cav_accuracy": json.loads(study.tcav.accuracy_.to_json(orient="records")),
        "seconds": round(time.time() - started, 1),
    }
    first = next(iter(study.grads))
    figures = {"tcav": tcav_figure(study.result, first), "accuracy": cav_accuracy_figure(study.tcav.accuracy_)}
    if study.stability is not None:
        figures["stability"] = stability_figure(study.stability)
    result = TCAVProbeResult(config, metrics, study, figures, None)
    say(result.summary())
    if write:
        out = Path(out_dir) if out_dir is not None else default_out_dir(config)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "metrics.json", metrics)
        atomic_write_json(out / "tcav.json", json.loads(study.result.table.to_json(orient="records")))
        atomic_write_json(out / "probe.json", asdict(config))
        write_tcav_report(result, out / "report.html")
        result.out_dir = out
        say(f"wrote {out}")
    return result


def write_tcav_report(result: TCAVProbeResult, path: str | Path) -> Path:
    """A self-contained HTML report (plotly.js inlined once: it opens offline)."""
    import pandas as pd

    config, metrics = result.config, result.metrics
    table = lambda rows: pd.DataFrame(rows).to_html(border=0, index=False, float_format=lambda v: f"{v:.3f}")  # noqa: E731
    body = [
        f"<h1>Probe {html.escape(config.name)}</h1>",
        f"<p class='meta'>{html.escape(config.summary())} · ran in {metrics['seconds']} s</p>",
        "<h2>Significance against the class rules</h2>", table(metrics["grading"]),
        "<h2>CAV accuracy (held-out, mean over runs)</h2>", table(metrics["cav_accuracy"]),
    ]
    if metrics.get("stability"):
        body += ["<h2>Stability over the number of random runs</h2>", table(metrics["stability"])]
    body += figures_html(result.figures.values())
    return write_report_page(path, config.name, body)
