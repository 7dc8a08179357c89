"""The conceptlab command line, run as a user would run it (a real subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conceptlab.cli import build_parser


def run_cli(*args, home, timeout=300, env=None):
    env = {**os.environ, "CONCEPTLAB_HOME": str(home), "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "conceptlab.cli", *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def test_parser_knows_every_command():
    parser = build_parser()
    assert parser.parse_args(["demo", "--no-app"]).no_app
    assert parser.parse_args(["zoo", "build", "--steps", "5"]).steps == 5
    assert parser.parse_args(["embed", "--split", "val", "--dry-run"]).split == "val"
    assert parser.parse_args(["info"]).command == "info"


def test_embed_then_info_lists_the_entry(tmp_path, tiny_clip_dir):
    spec = f"local-dir:{tiny_clip_dir}"
    dry = run_cli("embed", "--backbone", spec, "--split", "test", "--size", "24", "--dry-run", home=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert "disk_bytes" in dry.stdout
    done = run_cli("embed", "--backbone", spec, "--split", "test", "--size", "24", home=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "stored (24, 32)" in done.stdout
    info = run_cli("info", home=tmp_path)
    assert info.returncode == 0, info.stderr
    assert "1 entries" in info.stdout and "n=24" in info.stdout


def test_bad_spec_is_a_clear_error_not_a_traceback(tmp_path):
    result = run_cli("embed", "--backbone", "nonsense:thing", "--dry-run", home=tmp_path)
    assert result.returncode == 2
    assert "unknown backbone scheme" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.skipif(not os.path.isdir(os.path.join(os.path.dirname(__file__), "..", "conceptlab", "zoo", "weights", "shapes-clip")),
                    reason="zoo:shapes-clip weights are not shipped in this checkout")
def test_demo_no_app_prints_zero_shot_summary(tmp_path):
    # the pages' sizes made small, as a demo or a test may; the first run embeds exactly those
    env = {"CONCEPTLAB_CBM_SIZES": "200:100", "CONCEPTLAB_DISCOVERY_TRAIN": "200"}
    result = run_cli("demo", "--no-app", "--no-probes", home=tmp_path, timeout=600, env=env)
    assert result.returncode == 0, result.stderr
    assert "first run: 4 store entries (900 images) for the app's default pages" in result.stdout
    assert "zero-shot accuracy on ShapesWorld test (500 images)" in result.stdout
    color = next(line for line in result.stdout.splitlines() if line.strip().startswith("color"))
    assert float(color.split()[-1].rstrip("%")) >= 95.0  # the shipped model's colour bar
    listed = run_cli("store", "ls", home=tmp_path)
    assert "4 entries" in listed.stdout
    for identity in ("test:n=500:seed=0", "train:n=200:seed=0", "val:n=100:seed=0", "shifted:n=100:seed=0"):
        assert identity in listed.stdout
