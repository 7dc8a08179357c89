"""Statistics on every number: bootstrap intervals (with a coverage check on a case whose truth is
known), paired tests of two models on the same images, mean ± sd over seeds, and probes that
write them all."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import binomtest
from sklearn.metrics import roc_auc_score

from conceptlab import metrics
from conceptlab.experiments import ProbeConfigError, parse_probe, run_probe
from conceptlab.experiments.report import accuracy_interval_table


def test_bootstrap_interval_covers_a_known_accuracy_95_percent_of_the_time():
    """300 test sets of 200 images from a classifier whose true accuracy is 0.8 (seeded, so the
    count is fixed): the 95 % percentile interval must hold 0.8 in 92-98 % of them (the bounds
    allow the Monte Carlo error of 300 draws, sd ≈ 0.013; the measured share is in the data card)."""
    truth, n, replicates = 0.8, 200, 300
    hits = 0
    for r in range(replicates):
        rng = np.random.default_rng(10_000 + r)
        y = rng.integers(0, 5, size=n)
        correct = rng.random(n) < truth
        predictions = np.where(correct, y, (y + 1) % 5)
        estimate = metrics.accuracy_ci(y, predictions, n_boot=1000, seed=r)
        assert estimate.low <= estimate.value <= estimate.high
        hits += estimate.contains(truth)
    coverage = hits / replicates
    assert 0.92 <= coverage <= 0.98, coverage


def test_intervals_are_seeded_and_shrink_with_more_images():
    rng = np.random.default_rng(0)
    small, large = rng.random(100) < 0.7, rng.random(10_000) < 0.7
    a, b = metrics.bootstrap_mean_ci(small, seed=1), metrics.bootstrap_mean_ci(small, seed=1)
    assert a == b and a.n == 100 and a.level == 0.95
    assert (metrics.bootstrap_mean_ci(large).high - metrics.bootstrap_mean_ci(large).low) < (a.high - a.low) / 5
    # the pooled (few distinct values) draw and a plain index resampling agree
    plain = metrics.bootstrap_ci(np.mean, small.astype(float), n_boot=2000, seed=3)
    assert plain.low == pytest.approx(a.low, abs=0.02) and plain.high == pytest.approx(a.high, abs=0.02)
    assert str(a) == f"{a.value:.3f} [{a.low:.3f}, {a.high:.3f}]"
    with pytest.raises(ValueError, match="n_boot"):
        metrics.bootstrap_mean_ci(small, n_boot=2)


def test_fast_auroc_is_sklearns_and_concept_intervals_hold_it():
    rng = np.random.default_rng(1)
    truth = rng.random((300, 4)) < [0.2, 0.5, 0.5, 0.0]
    scores = truth * [2.0, 1.0, 0.0, 1.0] + rng.normal(size=(300, 4))
    scores[:, 1] = np.round(scores[:, 1])  # ties
    fast = metrics.fast_auroc(scores, truth)
    assert np.allclose(fast[:3], [roc_auc_score(truth[:, j], scores[:, j]) for j in range(3)]) and np.isnan(fast[3])
    frame, mean = metrics.concept_auroc_ci(scores, truth, names=list("abcd"), truth_names=list("abcd"), n_boot=300)
    assert list(frame.index) == list("abcd") and np.isnan(frame.loc["d", "auroc"])
    ok = frame.dropna()
    assert ((ok["low"] <= ok["auroc"]) & (ok["auroc"] <= ok["high"])).all()
    assert frame.loc["c", "low"] < 0.5 < frame.loc["c", "high"]  # a useless score's interval holds chance
    assert mean.value == pytest.approx(np.nanmean(fast)) and mean.low <= mean.value <= mean.high


def test_mcnemar_and_the_paired_bootstrap_on_a_hand_case():
    y = np.zeros(100, dtype=int)
    a = np.zeros(100, dtype=int)
    b = np.zeros(100, dtype=int)
    a[:8] = 1  # a wrong on 8 images b gets right
    b[8:10] = 1  # b wrong on 2 images a gets right
    b[10:40] = 1
    a[10:40] = 1  # both wrong on 30: concordant, they do not count
    test = metrics.mcnemar_test(y, a, b)
    assert (test["only_a"], test["only_b"]) == (2, 8)
    assert test["p_value"] == pytest.approx(binomtest(2, 10, 0.5).pvalue)
    comparison = metrics.compare_predictions(y, a, b, names=("A", "B"))
    assert comparison.difference.value == pytest.approx(-0.06) and comparison.accuracy_a.value == pytest.approx(0.62)
    assert comparison.difference.low < -0.06 < comparison.difference.high
    assert "mcnemar p = " in comparison.summary() and comparison.to_dict()["only_b"] == 8
    boot = metrics.compare_predictions(y, a, b, test="bootstrap")
    assert 0 < boot.p_value < 0.2 and boot.test == "bootstrap"
    same = metrics.mcnemar_test(y, a, a)
    assert same["p_value"] == 1.0
    with pytest.raises(ValueError, match="same images"):
        metrics.mcnemar_test(y, a[:50], b)


def test_mean_sd_over_seeds():
    stats = metrics.mean_sd([0.9, 0.92, 0.94])
    assert stats["mean"] == pytest.approx(0.92) and stats["sd"] == pytest.approx(0.02) and stats["n"] == 3
    assert metrics.mean_sd([0.5])["sd"] == 0.0


def _probe(**top) -> dict:
    return {
        "name": "t", "backbone": {"spec": "zoo:shapes-clip"}, "dataset": {"sizes": {"train": 60, "val": 20, "test": 30, "shifted": 30}},
        "concepts": {"source": "text"}, "method": {"name": "pcbm"}, **top,
    }


def test_probes_take_seeds():
    assert parse_probe(_probe(seeds=[0, 1, 2])).seeds == (0, 1, 2)
    assert parse_probe(_probe()).seeds == ()
    assert parse_probe(_probe(seeds=[3, 4])).to_dict()["seeds"] == [3, 4]
    for bad in ([1, 1], [-1], ["a"], [True]):
        with pytest.raises(ProbeConfigError, match="seeds must be a list of distinct non-negative integers"):
            parse_probe(_probe(seeds=bad))
    with pytest.raises(ProbeConfigError, match="must be a list"):
        parse_probe(_probe(seeds=3))


@pytest.fixture(scope="module")
def seeded_run(tmp_path_factory, tiny_clip_dir):
    """A tiny probe with two seeds on the tiny random CLIP (its numbers mean little; their shape does)."""
    home = tmp_path_factory.mktemp("stats-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CONCEPTLAB_HOME", str(home))
        raw = _probe(seeds=[1, 2])
        raw["backbone"] = {"spec": f"local-dir:{tiny_clip_dir}"}
        raw["method"] = {"name": "pcbm", "params": {"lam": 1e-4}}
        raw["evaluation"] = {"editing": {"concepts": ["background:white", "background:black"]}}
        out = tmp_path_factory.mktemp("stats-out")
        result = run_probe(parse_probe(raw), out_dir=out, progress=False, log=None)
    return result, out


def test_a_probe_writes_intervals_paired_tests_interventions_and_seeds(seeded_run):
    result, out = seeded_run
    m = json.loads((out / "metrics.json").read_text())
    for split, value in m["accuracy"].items():
        ci = m["accuracy_ci"][split]
        assert ci["value"] == pytest.approx(value) and ci["low"] <= value <= ci["high"] and ci["n"] == m["sizes"][split]
    assert set(m["linear_baseline"]["accuracy_ci"]) == set(m["accuracy"])
    assert [c["split"] for c in m["comparisons"]] == ["val", "test", "shifted"]
    assert all(0 <= c["p_value"] <= 1 and c["b"] == "linear baseline" for c in m["comparisons"])
    assert m["concept_auroc"]["mean_ci"]["low"] <= m["concept_auroc"]["mean"] <= m["concept_auroc"]["mean_ci"]["high"]
    assert set(m["editing"]["intervals"]) == set(m["editing"]["accuracy"])
    curves = m["interventions"]["replace"]["policies"]
    assert set(curves) == {"random", "weight", "uncertainty"} and curves["weight"][0]["accuracy"] == pytest.approx(m["accuracy"]["test"])
    assert m["interventions"]["kind"] == "score"  # PCBM: raw margins, Koh's percentiles
    seeds = m["seeds"]
    assert seeds["seeds"] == [1, 2] and seeds["varies"] == ["dataset.seed", "method.params.seed"]
    test = seeds["accuracy"]["test"]
    assert test["n"] == 2 and test["mean"] == pytest.approx(np.mean(test["values"])) and test["sd"] == pytest.approx(np.std(test["values"], ddof=1))
    assert "gain shifted" in seeds["editing"] and set(seeds["interventions"]) == {"random", "weight", "uncertainty"}
    report = (out / "report.html").read_text()
    assert "Over seeds" in report and "Paired comparison with the linear baseline" in report and "McNemar p" in report
    assert report.count("Plotly.newPlot") == 5  # intervals and tables, no extra figure
    table = accuracy_interval_table(m)
    value, ci = m["accuracy"]["test"], m["accuracy_ci"]["test"]
    assert table.loc["test", "model"] == f"{value:.3f} [{ci['low']:.3f}, {ci['high']:.3f}]"
