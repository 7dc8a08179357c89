"""A probe's HTML report: metrics tables and the figures, self-contained (plotly.js inlined once)."""

from __future__ import annotations

import html
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from conceptlab.experiments.report_page import figure_html, write_report_page

__all__ = ["accuracy_interval_table", "accuracy_table", "falling_curve_note", "write_report"]


def accuracy_table(metrics: Mapping[str, Any]) -> pd.DataFrame:
    rows = {split: {"model": value} for split, value in metrics["accuracy"].items()}
    for split, value in (metrics.get("linear_baseline") or {}).get("accuracy", {}).items():
        rows.setdefault(split, {})["linear baseline"] = value
    editing = metrics.get("editing") or {}
    for split, row in editing.get("accuracy", {}).items():  # absent when the study was skipped
        rows.setdefault(split, {})["after pruning"] = row["after"]
        rows[split]["after prune + normalize"] = row["after_normalized"]
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = "split"
    return frame


def _interval(value: float, ci: Mapping[str, Any] | None) -> str:
    if value is None or pd.isna(value):
        return ""
    return f"{value:.3f}" if not ci else f"{value:.3f} [{ci['low']:.3f}, {ci['high']:.3f}]"


def accuracy_interval_table(metrics: Mapping[str, Any]) -> pd.DataFrame:
    """:func:`accuracy_table` as text, each accuracy with its 95 % bootstrap interval where the
    metrics hold one (``accuracy_ci``, ``linear_baseline.accuracy_ci``, ``editing.intervals``)."""
    table = accuracy_table(metrics)
    intervals = {
        "model": metrics.get("accuracy_ci") or {},
        "linear baseline": (metrics.get("linear_baseline") or {}).get("accuracy_ci") or {},
    }
    editing = (metrics.get("editing") or {}).get("intervals") or {}
    out = table.astype(object).copy()
    for split in table.index:
        for column in table.columns:
            value = table.loc[split, column]
            ci = intervals.get(column, {}).get(split)
            if column in ("after pruning", "after prune + normalize") and split in editing:
                key = "after" if column == "after pruning" else "after_normalized"
                ci = {"low": editing[split][f"{key}_low"], "high": editing[split][f"{key}_high"]}
            out.loc[split, column] = _interval(value, ci)
    return out


_SECTIONS = [
    ("weights", "Concept weights",
     "The head W: one row per class, one column per concept. Blue supports the class, red argues against it, white is zero (pruned by the elastic net)."),
    ("per_class", "Accuracy per class", "Per split; the shifted split breaks every class's link to its usual background."),
    ("concept_auroc", "Concept quality", "How well each concept score separates the images that have the concept from those that do not (ground truth)."),
    ("intervention", "Interventions", "Accuracy as k concepts per image are replaced by their true values, by policy, with 95 % bootstrap bands."),
    ("editing", "Model editing", "Accuracy before and after pruning the suggested (or chosen) spurious concepts."),
]


def _metrics_html(metrics: Mapping[str, Any]) -> str:
    accuracy = accuracy_interval_table(metrics)
    accuracy = accuracy.rename(columns={"model": metrics["method"]})
    parts = [accuracy.to_html(border=0, escape=True, index_names=False)]
    if metrics.get("accuracy_ci"):
        parts.append("<p class='meta'>Accuracy [95 % bootstrap interval over the split's images, 2000 resamples].</p>")
    facts = {
        "concepts": metrics["n_concepts"],
        "non-zero weights": f"{metrics['sparsity']['nonzeros']} of {metrics['sparsity']['total']} (NEC {metrics['sparsity']['nec']:.1f} per class)",
        "concepts used": metrics["sparsity"]["concepts_used"],
    }
    if "concept_auroc" in metrics:
        facts[f"mean concept AUROC ({metrics['concept_auroc']['split']})"] = _interval(metrics["concept_auroc"]["mean"], metrics["concept_auroc"].get("mean_ci"))
    if "skipped" in metrics.get("editing", {}):
        facts["editing study"] = "skipped: " + metrics["editing"]["skipped"]
    elif "editing" in metrics:
        editing = metrics["editing"]
        facts["pruned concepts"] = ", ".join(editing["pruned"])
        if "shifted" in editing["accuracy"]:
            facts["editing gain on shifted"] = f"{editing['accuracy']['shifted']['gain']:+.3f}"
            p = (editing.get("intervals") or {}).get("shifted", {}).get("p_after")
            if p is not None:
                facts["editing gain on shifted"] += f" (McNemar p = {p:.3g})"
    facts["fit time"] = f"{metrics['fit_seconds']} s"
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in facts.items())
    parts.append(f"<table>{rows}</table>")
    parts.append(_comparisons_html(metrics))
    parts.append(_seeds_html(metrics))
    return "\n".join(p for p in parts if p)


def _comparisons_html(metrics: Mapping[str, Any]) -> str:
    comparisons = metrics.get("comparisons") or []
    if not comparisons:
        return ""
    rows = [
        {
            "split": c["split"], "models": f"{c['a']} vs {c['b']}", "difference [95 %]": _interval(c["difference"]["value"], c["difference"]),
            f"only {c['a']} right": c["only_a"], "only baseline right": c["only_b"], "McNemar p": f"{c['p_value']:.3g}",
        }
        for c in comparisons
    ]
    table = pd.DataFrame(rows).to_html(border=0, escape=True, index=False)
    return "<h2>Paired comparison with the linear baseline</h2><p class='meta'>The same images for both models: the accuracy difference " \
           "with a paired bootstrap interval, and McNemar's exact test on the images only one of them gets right.</p>" + table


def _seeds_html(metrics: Mapping[str, Any]) -> str:
    seeds = metrics.get("seeds")
    if not seeds:
        return ""
    rows = {}
    for split, stats in seeds["accuracy"].items():
        rows[f"accuracy {split}"] = stats
    for split, stats in (seeds.get("linear_baseline") or {}).items():
        rows[f"linear baseline {split}"] = stats
    if "concept_auroc_mean" in seeds:
        rows["mean concept AUROC"] = seeds["concept_auroc_mean"]
    for key, stats in (seeds.get("editing") or {}).items():
        if key != "runs":
            rows[f"editing {key}"] = stats
    for policy, columns in (seeds.get("interventions") or {}).items():
        for column, stats in columns.items():
            rows[f"intervention {policy} {column}"] = stats
    frame = pd.DataFrame(
        {name: {"mean ± sd": f"{s['mean']:.3f} ± {s['sd']:.3f}", "per seed": ", ".join(f"{v:.3f}" for v in s["values"])} for name, s in rows.items()}
    ).T
    frame.index.name = "metric"
    varies = ", ".join(seeds.get("varies", []))
    return (f"<h2>Over seeds</h2><p class='meta'>Mean ± sd over seeds {', '.join(map(str, seeds['seeds']))} (each re-draws the "
            f"ShapesWorld images; varied: {html.escape(varies)}). The numbers above are the main run's.</p>"
            + frame.to_html(border=0, escape=True))


def _interventions_html(metrics: Mapping[str, Any]) -> str:
    interventions = metrics.get("interventions")
    if not interventions:
        return falling_curve_note(metrics)
    parts = []
    space = "calibrated concept probabilities (true = 1, false = 0)" if interventions.get("kind") == "probability" else \
        "raw concept scores (true = the 95th, false = the 5th training percentile, Koh et al.)"
    parts.append(f"<p class='meta'>Per image, k concepts take their true value, chosen by policy: random, the head's weight "
                 f"order, or uncertainty-first (predicted probability closest to 0.5). The model reads {space}. "
                 f"“replace” sets every chosen concept; “correct” only those on the wrong side of 0.5. The dotted line "
                 f"is the older weight-order curve with class-mean values.</p>")
    parts.append(falling_curve_note(metrics))
    for mode in ("replace", "correct"):
        summary = pd.DataFrame(interventions[mode]["summary"]).T
        for column in summary.columns:
            reach = column.startswith("k to reach")
            summary[column] = [("never" if reach else "") if v is None or pd.isna(v) else (f"{int(v)}" if reach else f"{v:.3f}") for v in summary[column]]
        parts.append(f"<p class='meta'>mode “{mode}”</p>" + summary.to_html(border=0, escape=True))
    return "\n".join(parts)


def _falls(start: float | None, end: float | None, drop: float | None = None, tolerance: float = 0.005) -> bool:
    if start is None or end is None:
        return False
    return end < start - tolerance or (drop is not None and drop > 2 * tolerance)


def falling_curve_note(metrics: Mapping[str, Any]) -> str:
    """An HTML paragraph explaining a falling intervention curve, or "" when every curve rises.

    The curve is not a bug: it measures accuracy after the model's own concept scores are
    overwritten with the values that stand for "true" / "false" (the 95th / 5th training percentile
    of a raw score, or the class-mean value of the dotted curve). A head trained on graded,
    entangled scores (a text concept "a red shape" also fires a little on orange shapes) reads that
    gradation as evidence; a blanket overwrite destroys it and puts the image among score
    combinations the head never saw. Setting only the concepts on the wrong side ("correct") keeps
    it, and a head trained on calibrated probabilities (the sequential CBM) takes interventions."""
    interventions = metrics.get("interventions") or {}
    falling = []
    for mode in ("replace", "correct"):
        for policy, row in ((interventions.get(mode) or {}).get("summary") or {}).items():
            if _falls(row.get("k=0"), row.get("all"), row.get("largest drop")):
                falling.append(f"{policy} ({mode}): {row['k=0']:.3f} at k = 0 → {row['all']:.3f} with every concept set")
    legacy = (metrics.get("intervention") or {}).get("curve") or []
    if legacy and _falls(legacy[0]["accuracy"], legacy[-1]["accuracy"]):
        falling.append(f"weight order, class-mean values (dotted): {legacy[0]['accuracy']:.3f} → {legacy[-1]['accuracy']:.3f}")
    if not falling:
        return ""
    probability = interventions.get("kind") == "probability"
    why = (
        "The head reads calibrated probabilities, so a fall means some calibrated concepts still disagree with their labels "
        "in a way the head had learned to use (e.g. a concept that is true but rarely fires, which the head down-weights)."
        if probability else
        "This is what the curve measures, not a bug: the head was trained on the model's own concept scores, which are graded "
        "and entangled (a text concept such as “a red shape” also fires a little on orange shapes, and the head learned to "
        "read that gradation). Overwriting a score with the single value that stands for “true” or “false” (its 95th / 5th "
        "training percentile, or the class mean for the dotted curve) throws that evidence away and puts the image among score "
        "combinations the head never saw, so accuracy can drop even though every value set is correct. Setting only the "
        "concepts on the wrong side of 0.5 (mode “correct”) keeps the graded evidence and falls far less; a sequential CBM, "
        "whose head is trained on calibrated probabilities and on corrected copies of its training set, rises instead (to 1.000 with every concept set on ShapesWorld, "
        "data_cards/shapesworld_cbm_results.md)."
    )
    items = "".join(f"<li>{html.escape(item)}</li>" for item in falling)
    return f"<p class='meta'><b>Why does accuracy fall as true values are set?</b> {html.escape(why)}</p><ul class='meta'>{items}</ul>"


def write_report(result: Any, path: str | Path) -> Path:
    """Write a self-contained HTML report (plotly.js inlined once: it opens offline)."""
    config, metrics = result.config, result.metrics
    body = [
        f"<h1>Probe {html.escape(config.name)}</h1>",
        f"<p class='meta'>{html.escape(config.description)}</p>" if config.description else "",
        f"<p class='meta'>method <code>{html.escape(metrics['method'])}</code> · backbone <code>{html.escape(metrics['backbone'])}</code> · "
        f"concepts <code>{html.escape(config.concepts['source'])}</code> · train {metrics['sizes'].get('train')} images · "
        f"ran in {metrics['seconds']} s</p>",
        "<h2>Metrics</h2>",
        _metrics_html(metrics),
    ]
    first = True
    for key, title, caption in _SECTIONS:
        figure = result.figures.get(key)
        if figure is None:
            continue
        body.append(f"<h2>{html.escape(title)}</h2><p class='meta'>{html.escape(caption)}</p>")
        body.append(figure_html(figure, first))
        if key == "intervention":
            body.append(_interventions_html(metrics))
        first = False
    return write_report_page(path, config.name, body)
