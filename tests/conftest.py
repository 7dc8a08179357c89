"""Shared fixtures: tiny open_clip models saved as local-dir folders, an isolated conceptlab home."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TINY_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"layers": [1, 1, 1, 1], "width": 8, "image_size": 64},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def save_open_clip_dir(model: torch.nn.Module, cfg: dict, folder) -> None:
    """Save a model the way open_clip's save_for_hf does: config JSON + safetensors weights."""
    import open_clip
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "model_cfg": cfg,
        "preprocess_cfg": {"mean": list(open_clip.OPENAI_DATASET_MEAN), "std": list(open_clip.OPENAI_DATASET_STD)},
    }
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, folder / "open_clip_model.safetensors")


def make_tiny_clip_dir(folder, seed: int = 0, cfg: dict | None = None):
    import open_clip

    cfg = cfg or TINY_CFG
    torch.manual_seed(seed)
    save_open_clip_dir(open_clip.CLIP(**cfg), cfg, folder)
    return folder


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory):
    """A randomly initialised tiny CLIP in open_clip's folder format."""
    return make_tiny_clip_dir(tmp_path_factory.mktemp("tiny-clip") / "model")


@pytest.fixture(scope="session")
def tiny_backbone(tiny_clip_dir):
    from conceptlab.backbones import load

    return load(f"local-dir:{tiny_clip_dir}", device="cpu")


@pytest.fixture()
def one_thread():
    """Run a test with one torch thread, restoring the setting after: small tensor operations on a
    busy 2-core machine are many times faster on one thread than on two that contend."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture()
def isolated_home(tmp_path, monkeypatch):
    """A fresh CONCEPTLAB_HOME so a test's store and zoo never touch the user's."""
    home = tmp_path / "conceptlab-home"
    monkeypatch.setenv("CONCEPTLAB_HOME", str(home))
    return home


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray with 2 CPUs for one test module (skipped when ray is not installed)."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    # Ray's workers must import the test modules to unpickle what the tests define (fault-injecting datasets)
    previous = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]), previous]))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()
    if previous is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = previous
