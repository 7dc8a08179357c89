"""The SAE browser's library side: pending latent renames keyed by id (round-trips through a saved
run and a draft, unknown ids are clear errors), duplicate names, activation bands and density, and
training progress with cancel."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conceptlab.discovery import (
    DiscoveryRun,
    LatentRenames,
    SparseAutoencoder,
    TrainingCancelled,
    activation_bands,
    activation_histogram,
    duplicate_names,
    feature_density,
    name_directions,
)

pytestmark = pytest.mark.filterwarnings("ignore:The 'utils' module has been deprecated:DeprecationWarning")

VOCAB = ["red", "green", "blue", "circle", "square", "striped"]


@pytest.fixture(scope="module")
def run():
    """A tiny fitted SAE (12 latents on 6-d data) named against a 6-word vocabulary."""
    X = torch.randn(200, 6, generator=torch.Generator().manual_seed(0))
    sae = SparseAutoencoder(n_latents=12, steps=30, batch_size=64, l1=1e-3, progress=False).fit(X)
    names = name_directions(sae.decoder_directions, torch.eye(6), VOCAB)
    return DiscoveryRun(sae, names, {"n_latents": 12, "steps": 30})


def test_renames_are_keyed_by_latent_id_and_say_what_changed(run):
    edits = LatentRenames(run.names)
    other = 5 if run.names[5] != run.names[8] else 6
    before = run.names[other]
    result = edits.rename(8, "  my   concept ")
    assert (result.latent, result.new, result.status) == (8, "my concept", "renamed") and result.old == run.names[8]
    second = edits.rename(8, "better name")
    assert (second.old, second.new, second.status) == ("my concept", "better name", "renamed")
    assert edits.pending == {8: "better name"} and edits.names[8] == "better name" and edits.names[other] == before
    assert edits.rename(8, "better name").status == "unchanged"
    assert edits.rename(8, "   ").status == "empty name" and edits.names[8] == "better name"
    assert run.names[8] != "better name"  # the run's own names are untouched until applied
    shared = edits.rename(3, "better name")
    assert shared.shared_with == (8,) and "also carries this name" in shared.message
    edits.rename(3, run.names[3])  # back to its automatic name: nothing left to save for it
    assert edits.pending == {8: "better name"}


def test_unknown_ids_and_labels_are_clear_errors(run):
    edits = LatentRenames(run.names)
    with pytest.raises(KeyError, match="there is no latent 12: this run has 12 latents"):
        edits.rename(12, "x")
    with pytest.raises(TypeError, match="integer id, got '8 · red'"):
        edits.rename("8 · red", "x")  # a picker label is never a latent
    with pytest.raises(KeyError):
        LatentRenames(run.names, {-1: "x"})


def test_renames_round_trip_through_a_draft_and_a_saved_run(run, tmp_path):
    edits = LatentRenames(run.names)
    edits.rename(2, "stripes")
    edits.rename(7, "round things")
    draft = edits.save(tmp_path / "draft.json")
    restored = LatentRenames.load(draft, run.names)
    assert restored.pending == {2: "stripes", 7: "round things"} and restored.names.names == edits.names.names
    saved = DiscoveryRun.load(edits.apply(run).save(tmp_path / "run"))
    assert saved.names[2] == "stripes" and saved.names[7] == "round things"
    assert set(saved.renamed) == {2, 7} and saved.renamed[2]["by"] == "analyst"
    untouched = [i for i in range(12) if i not in (2, 7)]
    assert [saved.names[i] for i in untouched] == [run.names[i] for i in untouched]
    bigger = name_directions(torch.randn(13, 6), torch.eye(6), VOCAB)
    with pytest.raises(ValueError, match="for 12 latents, the names have 13"):
        LatentRenames.load(draft, bigger)
    draft.write_text('{"format": "conceptlab.LatentRenames", "n_latents": 12, "renames": {"two": "x"}}')
    with pytest.raises(ValueError, match="latent ids must be integers"):
        LatentRenames.load(draft, run.names)


def test_duplicate_names():
    assert duplicate_names(["red", "blue", "Red ", "green", "blue", "x"]) == {"red": [0, 2], "blue": [1, 4]}
    assert duplicate_names(["red", "blue", "red"], latents=[0, 1]) == {}
    with pytest.raises(KeyError):
        duplicate_names(["red"], latents=[3])


def test_activation_bands_cover_the_range_and_never_show_a_silent_image():
    rng = np.random.default_rng(1)
    values = np.where(rng.random(400) < 0.5, rng.exponential(1.0, 400), 0.0)
    firing = np.flatnonzero(values > 0)
    bands = activation_bands(values, top=10, per_band=5, n_random=6, seed=3)
    assert [b.name for b in bands] == ["top", "quantile 75–100%", "quantile 50–75%", "quantile 25–50%", "quantile 0–25%", "random firing"]
    np.testing.assert_array_equal(bands[0].indices, np.argsort(-values, kind="stable")[:10])
    quartiles = bands[1:5]
    assert sum(b.count for b in quartiles) == len(firing)  # the quantile bands partition the firing images
    assert all(abs(b.count - len(firing) / 4) <= 1 for b in quartiles)
    for band in bands:
        assert (values[band.indices] > 0).all() and (np.diff(band.values) <= 0).all()
        assert ((band.values >= band.low) & (band.values <= band.high)).all()
        np.testing.assert_array_equal(band.values, values[band.indices])
    for higher, lower in zip(quartiles, quartiles[1:]):
        assert lower.high <= higher.low
    assert len(bands[-1].indices) == 6 and len(set(bands[-1].indices)) == 6
    again = activation_bands(values, top=10, per_band=5, n_random=6, seed=3)
    assert all((a.indices == b.indices).all() for a, b in zip(bands, again))  # seeded: the same on every rerun
    assert activation_bands(np.zeros(5)) == []
    with pytest.raises(ValueError, match="rise strictly from 0 to 1"):
        activation_bands(values, quantiles=(0.0, 0.5))


def test_density_and_histogram():
    z = np.array([[0.0, 1.0, 0.0], [2.0, 0.5, 0.0], [0.0, 3.0, 0.0], [1.0, 0.0, 0.0]])
    np.testing.assert_allclose(feature_density(z), [0.5, 0.75, 0.0])
    counts, edges = activation_histogram(z[:, 1], bins=5)
    assert counts.sum() == 3 and edges[0] == 0.5 and edges[-1] == 3.0
    counts, edges = activation_histogram(z[:, 2])
    assert len(counts) == 0


def test_training_reports_progress_and_can_be_cancelled():
    X = torch.randn(128, 6, generator=torch.Generator().manual_seed(0))
    seen = []
    SparseAutoencoder(n_latents=8, steps=12, batch_size=32, progress=False).fit(X, callback=seen.append)
    assert [p.step for p in seen] == list(range(1, 13)) and all(p.steps == 12 for p in seen)
    assert seen[-1].fraction == 1.0 and seen[-1].eta_seconds == 0.0 and seen[5].eta_seconds >= 0
    assert all(np.isfinite(p.loss) for p in seen)

    steps_done = []
    sae = SparseAutoencoder(n_latents=8, steps=50, batch_size=32, progress=False)
    with pytest.raises(TrainingCancelled, match="cancelled after 5 of 50 steps") as caught:
        sae.fit(X, callback=lambda p: steps_done.append(p.step), cancel=lambda: len(steps_done) >= 5)
    assert caught.value.step == 5 and steps_done == [1, 2, 3, 4, 5]
    assert not sae.is_fitted  # the partial SAE is discarded
