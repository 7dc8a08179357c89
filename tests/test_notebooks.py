"""Every notebook in notebooks/ runs top to bottom, in a kernel on this venv's Python."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
KERNEL_NAME = "conceptlab-test-python"
CELL_TIMEOUT_S = 600


@pytest.fixture(scope="module")
def kernel_dir(tmp_path_factory) -> Path:
    """A kernelspec whose argv runs exactly sys.executable (not whatever `python` is on PATH)."""
    from ipykernel.kernelspec import install

    prefix = tmp_path_factory.mktemp("jupyter-kernel")
    install(kernel_name=KERNEL_NAME, prefix=str(prefix), display_name="conceptlab tests")
    data_dir = prefix / "share" / "jupyter"
    spec = json.loads((data_dir / "kernels" / KERNEL_NAME / "kernel.json").read_text())
    assert Path(spec["argv"][0]).resolve() == Path(sys.executable).resolve(), spec["argv"]
    return data_dir


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_without_errors(path, kernel_dir, isolated_home, tiny_clip_dir, monkeypatch):
    from jupyter_client.kernelspec import KernelSpecManager

    from conceptlab import zoo

    monkeypatch.setenv("JUPYTER_PATH", os.pathsep.join(filter(None, [str(kernel_dir), os.environ.get("JUPYTER_PATH")])))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("CONCEPTLAB_NOTEBOOK_SEEDS", "8")  # notebooks that sample seeds (07) run a small slice; 64 in a real run
    monkeypatch.setenv("CONCEPTLAB_NOTEBOOK_TCAV_RUNS", "10")  # 06a runs TCAV with 10 random runs on a few classes; 100 in a real run
    if path.name.startswith("07_") and None in (zoo.available()["shapes-ddpm"], zoo.available()["shapes-ddpm-distilled"]):
        pytest.skip("notebook 07 needs the zoo diffusion models (conceptlab zoo build shapes-ddpm, then shapes-ddpm-distilled)")
    if zoo.available()["shapes-clip"] is None:  # never train the zoo model inside a test
        monkeypatch.setenv("CONCEPTLAB_DEFAULT_BACKBONE", f"local-dir:{tiny_clip_dir}")
    assert KernelSpecManager().get_kernel_spec(KERNEL_NAME).argv[0] == sys.executable

    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        notebook, kernel_name=KERNEL_NAME, timeout=CELL_TIMEOUT_S, allow_errors=False,
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()  # raises CellExecutionError, naming the cell, on the first error
    errors = [o for cell in notebook.cells for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
