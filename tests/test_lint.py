"""The code passes ruff (lint and import order), configured in pyproject.toml's ``[tool.ruff]``."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHECKED = ["conceptlab", "dashboards", "tests", "benchmarks"]


def test_ruff_check_passes():
    if importlib.util.find_spec("ruff") is None:
        pytest.fail("ruff is not installed: run `bash scripts/setup.sh --test` (ruff is in the test extra)")
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", *CHECKED],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        pytest.fail(
            f"ruff check {' '.join(CHECKED)} found problems (`ruff check --fix` fixes those marked [*]):\n"
            f"{result.stdout}{result.stderr}",
            pytrace=False,
        )
