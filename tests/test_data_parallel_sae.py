"""Data-parallel SAE training without Ray: two forked processes in a gloo group train the SAE of one
process (TopK, whose AuxK loss reads the synchronised dead-latent counters, and the standard SAE
with resampling).

Tolerance: the data-parallel gradient is the mean of two half-batch means instead of one batch
mean, so it differs in the last bits (~1e-7 relative); Adam and the unit-norm decoder carry that
difference along without amplifying it over these steps (measured: ~3e-7 of the weights' scale
after 120 steps), so weights must agree to 1e-5 of their scale and losses to 1e-5 relative, and
every discrete outcome (which latents were resampled when, which are live) must be identical.
"""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from conceptlab.discovery.data_parallel import GradientAveraging
from conceptlab.discovery.train import TrainSettings, train_sae
from tests.test_discovery import planted_world

RTOL = 1e-5


def _replica(rank: int, world: int, folder: str, settings: dict, X: torch.Tensor) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=world)
    try:
        sae, result = train_sae(X, TrainSettings(**settings), data_parallel=GradientAveraging())
        if rank == 0:
            save_file({k: v.contiguous() for k, v in sae.state_dict().items()}, f"{folder}/sae.safetensors")
            Path(folder, "history.json").write_text(json.dumps({"losses": result.losses, "resampled": result.resampled}))
    finally:
        dist.destroy_process_group()


def train_two_replicas(tmp_path: Path, settings: dict, X: torch.Tensor) -> tuple[dict, dict]:
    context = multiprocessing.get_context("fork")  # torch and the data are already in this process
    processes = [context.Process(target=_replica, args=(rank, 2, str(tmp_path), settings, X)) for rank in range(2)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=300)
    assert [p.exitcode for p in processes] == [0, 0]
    return load_file(str(tmp_path / "sae.safetensors")), json.loads((tmp_path / "history.json").read_text())


@pytest.mark.parametrize("architecture", ["topk", "standard"])
def test_two_processes_train_the_one_process_sae(tmp_path, architecture):
    X, _, _ = planted_world(n=1024)
    if architecture == "topk":
        settings = dict(d_sae=64, architecture="topk", k=3, mse_reduction="sum", steps=50, batch_size=128, dead_feature_window=5,
                        lr=5e-3, progress=False, seed=4)
    else:
        settings = dict(d_sae=64, l1=0.3, lr=1e-2, steps=60, batch_size=128, resample_every=20, progress=False, seed=3)
    reference, ref_result = train_sae(X, TrainSettings(**settings))
    weights, history = train_two_replicas(tmp_path, settings, X)
    for name, value in reference.state_dict().items():
        assert float((weights[name] - value).abs().max()) <= RTOL * max(1.0, float(value.abs().max())), name
    ours, theirs = torch.tensor(history["losses"]), torch.tensor(ref_result.losses)
    assert float(((ours - theirs).abs() / theirs.abs()).max()) <= RTOL
    assert [tuple(r) for r in history["resampled"]] == ref_result.resampled
    if architecture == "standard":
        assert sum(n for _, n in ref_result.resampled) > 0  # resampling ran, on the same latents


def test_a_batch_that_does_not_split_is_refused(tmp_path):
    class Group:  # the checks need no real group
        world_size = 3

    with pytest.raises(ValueError, match="multiple of 3"):
        GradientAveraging.check(Group(), 128)


def test_gradient_averaging_needs_a_process_group():
    with pytest.raises(RuntimeError, match="process group"):
        GradientAveraging()
