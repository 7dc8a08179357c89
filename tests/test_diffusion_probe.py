"""The ``diffusion_diversity`` probe kind: the shipped probe file validates, bad files fail with the
section and key named, and a small run on tiny models writes metrics.json and a self-contained report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("diffusers")

from conceptlab.experiments import load_probe, parse_any  # noqa: E402
from conceptlab.experiments.config import ProbeConfigError  # noqa: E402
from conceptlab.registry import PROBE_KINDS  # noqa: E402
from conceptlab.zoo.shapes_ddpm import AttributeReader, save_shapes_model  # noqa: E402
from tests.test_diffusion import tiny_model  # noqa: E402  (the tiny models built in code)

PROBE = Path(__file__).resolve().parents[1] / "probes" / "shapes_diffusion_diversity.toml"


def test_shipped_probe_validates():
    config = load_probe(PROBE)
    assert config.kind == "diffusion_diversity" and config.study["seeds"] >= 64
    assert "a red circle" in config.study["conditions"] and config.hybrid["switch_at"] == 1
    assert "diversity of zoo:shapes-ddpm" in config.summary()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"study": {"conditions": ["a crimson circle"]}}, r"\[study\] conditions\[0\].*crimson"),
        ({"study": {"seeds": 1}}, r"\[study\] seeds must be >= 2"),
        ({"study": {"reader": "psychic"}}, r"\[study\] reader"),
        ({"models": {"base_scheduler": "heun-ish"}}, r"\[models\] base_scheduler"),
        ({"hybrid": {"switch_at": "one"}}, r"\[hybrid\] switch_at = 'one' has the wrong type"),
        ({"hybrid": {"swtich_at": 1}}, r"\[hybrid\]: unknown key\(s\) swtich_at"),
        ({"extra": {}}, r"top level: unknown key"),
    ],
)
def test_bad_probe_files_name_what_is_wrong(raw, message):
    with pytest.raises(ProbeConfigError, match=message):
        parse_any({"kind": "diffusion_diversity", "name": "bad", **raw}, source="bad.toml")


@pytest.mark.slow
def test_small_run_writes_metrics_and_a_self_contained_report(tmp_path, tiny_backbone, one_thread):
    base = tiny_model(0)
    save_shapes_model(base, tmp_path / "base")
    AttributeReader.fit(tiny_backbone, n_images=48, seed=3).save(tmp_path / "base")
    save_shapes_model(tiny_model(1, sampler={"name": "lcm", "num_inference_steps": 4, "guidance_scale": 1.0}), tmp_path / "student")
    raw = {
        "kind": "diffusion_diversity", "name": "tiny_diversity",
        "models": {"base": f"local-dir:{tmp_path / 'base'}", "distilled": f"local-dir:{tmp_path / 'student'}", "base_steps": 4},
        "study": {"conditions": ["a red circle"], "seeds": 3},
        "convergence": {"seeds": 2},
        "ablation": {"seeds": 2, "switch_at": [0, 1], "base_guidance": [0.0, 2.0]},
    }
    config = parse_any(raw, source="tiny.toml")
    result = PROBE_KINDS.get("diffusion_diversity").run(config, out_dir=tmp_path / "out", progress=False, log=None)
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert [row["model"] for row in metrics["diversity"]] == ["base", "distilled", "hybrid"]
    assert {row["model"] for row in metrics["structure_steps"]} == {"base", "distilled"}
    assert [(row["switch_at"], row["base_guidance"]) for row in metrics["ablation"]] == [(0, 0.0), (1, 0.0), (1, 2.0)]
    assert all(row["shared_scheduler"] for row in metrics["ablation"])
    report = (tmp_path / "out" / "report.html").read_text()
    assert report.count("* plotly.js v") == 1 and 'src="https://cdn.plot.ly' not in report  # plotly inlined once: it opens offline
    assert "data:image/png;base64," in report and (tmp_path / "out" / "dt_grid.png").stat().st_size > 100
    assert "base" in result.summary() and result.out_dir == tmp_path / "out"
