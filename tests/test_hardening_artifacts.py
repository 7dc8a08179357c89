"""Hardening, class 2: a saved model, concept bank or SAE is checked before it is trusted.

Every file a config lists has its sha256 verified on load (a flipped bit anywhere is an error
naming the file), every tensor is finite and has the shape the config and the model need, and the
JSON state of a layer or head can only set learned attributes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from conceptlab.cbm import PCBM, ConceptBottleneckModel, PCBMHybrid
from conceptlab.concepts import ConceptBank
from conceptlab.concepts.bank import ArtifactIntegrityError, file_checksums

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.filterwarnings("ignore:The 'utils' module has been deprecated:DeprecationWarning"),
]

D, CLASSES = 8, ["a", "b", "c"]


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    atoms = torch.nn.functional.normalize(torch.randn(6, D, generator=g), dim=1)
    y = torch.randint(0, 3, (240,), generator=g)
    X = atoms[2 * y] + atoms[2 * y + 1] + 0.1 * torch.randn(240, D, generator=g)
    bank = ConceptBank.from_tensors([f"{c}{i}" for c in CLASSES for i in range(2)], atoms, "synthetic")
    return X, y, bank


@pytest.fixture(scope="module")
def hybrid(data):
    X, y, bank = data
    return PCBMHybrid(bank, CLASSES, residual_epochs=1).fit(X, y)


@pytest.fixture(scope="module")
def dncbm(data):
    from conceptlab.cbm import DNCBM
    from conceptlab.discovery import SparseAutoencoder

    X, y, _ = data
    sae = SparseAutoencoder(n_latents=12, l1=1e-3, steps=20, batch_size=64, lr=1e-2, seed=0, progress=False).fit(X)
    bank = ConceptBank.from_tensors([f"latent {i}" for i in range(12)], sae.decoder_directions, "synthetic")
    return DNCBM(bank, sae=sae, class_names=CLASSES, epochs=3, batch_size=64, device="cpu").fit(X, y)


def flip_a_byte(path: Path, offset: int = -3) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def rewrite_config(folder: Path, change) -> None:
    config = json.loads((folder / "config.json").read_text())
    change(config)
    (folder / "config.json").write_text(json.dumps(config))


def resign(folder: Path) -> None:
    """Recompute the checksums, as someone who edits a file on purpose would: the other checks must still hold."""
    rewrite_config(folder, lambda c: c.update(files=file_checksums(folder, list(c["files"]))))


# -- checksums -------------------------------------------------------------------------------------


def test_every_file_of_a_saved_model_is_checksummed(hybrid, dncbm, data, tmp_path):
    folder = hybrid.save(tmp_path / "h")
    config = json.loads((folder / "config.json").read_text())
    assert config["format_version"] == 3
    assert sorted(config["files"]) == ["bank/concepts.safetensors", "bank/config.json", "model.safetensors"]
    assert config["tensor_shapes"]["residual_weight"] == [3, D]
    folder = dncbm.save(tmp_path / "d")
    listed = json.loads((folder / "config.json").read_text())["files"]
    on_disk = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.name != "config.json" or p.parent != folder and p.is_file())
    assert sorted(listed) == on_disk and any(name.startswith("layer/sae/") for name in listed)
    again = ConceptBottleneckModel.load(folder)
    assert torch.equal(torch.as_tensor(again.decision_function(data[0])), torch.as_tensor(dncbm.decision_function(data[0])))


@pytest.mark.parametrize("target", ["model.safetensors", "bank/concepts.safetensors", "bank/config.json", "layer/sae/sae_weights.safetensors", "layer/sae/cfg.json"])
def test_a_flipped_bit_in_any_file_is_an_error_naming_it(dncbm, tmp_path, target):
    folder = dncbm.save(tmp_path / "m")
    flip_a_byte(folder / target, offset=-2 if target.endswith(".json") else -3)
    with pytest.raises(ArtifactIntegrityError, match=rf"{target.split('/')[-1]} is corrupt: its sha256 does not match"):
        ConceptBottleneckModel.load(folder)


def test_missing_or_escaping_listed_files(hybrid, tmp_path):
    folder = hybrid.save(tmp_path / "m")
    (folder / "bank" / "concepts.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="concepts.safetensors"):
        PCBM.load(folder)
    folder = hybrid.save(tmp_path / "n")
    rewrite_config(folder, lambda c: c["files"].update({"../../etc/passwd": "0" * 64}))
    with pytest.raises(ValueError, match="not a file inside"):
        PCBM.load(folder)
    folder = hybrid.save(tmp_path / "o")
    rewrite_config(folder, lambda c: c.pop("files"))
    with pytest.raises(ValueError, match="lists its files' checksums, this one has none"):
        PCBM.load(folder)


def test_format_2_models_without_checksums_still_load(hybrid, data, tmp_path):
    folder = hybrid.save(tmp_path / "v2")

    def downgrade(config):
        config["format_version"] = 2
        for key in ("files", "tensor_shapes"):
            config.pop(key)

    rewrite_config(folder, downgrade)
    rewrite_config(folder / "bank", lambda c: c.update(format_version=1) or c.pop("files"))
    loaded = PCBM.load(folder)
    assert (loaded.predict(data[0]) == hybrid.predict(data[0])).all()


# -- finiteness and shapes (even when the checksums were recomputed) -----------------------------------


def test_nan_weights_are_refused(hybrid, tmp_path):
    folder = hybrid.save(tmp_path / "m")
    tensors = load_file(folder / "model.safetensors")
    tensors["weight"][1, 2] = float("nan")
    save_file(tensors, folder / "model.safetensors")
    resign(folder)
    with pytest.raises(ArtifactIntegrityError, match=r"model.safetensors is corrupt: 'weight' hold\(s\) NaN"):
        PCBM.load(folder)


@pytest.mark.parametrize("name, shape, message", [
    ("residual_weight", (3, D + 1), r"'residual_weight' of shape \(3, 9\), expected \(3, 8\)"),
    ("weight", (2, 6), r"'weight' of shape \(2, 6\), expected \(3, 6\)"),
    ("bias", (4,), r"'bias' of shape \(4,\), expected \(3,\)"),
])
def test_tensors_of_the_wrong_shape_are_refused(hybrid, tmp_path, name, shape, message):
    folder = hybrid.save(tmp_path / "m")
    tensors = load_file(folder / "model.safetensors")
    tensors[name] = torch.zeros(shape)
    save_file(tensors, folder / "model.safetensors")
    resign(folder)
    with pytest.raises(ValueError, match=message):
        PCBM.load(folder)


def test_recorded_shapes_of_head_tensors_are_checked(tmp_path, data):
    from conceptlab.cbm import LaBo

    X, y, atoms_bank = data
    bank = ConceptBank.from_tensors(atoms_bank.names, atoms_bank.vectors, "synthetic", class_links=[[c] for c in CLASSES for _ in range(2)])
    labo = LaBo(bank, CLASSES, epochs=2, val_every=1, batch_size=64, device="cpu").fit(X, y, X[:60], y[:60])
    folder = labo.save(tmp_path / "labo")
    tensors = load_file(folder / "model.safetensors")
    tensors["head.asso"] = torch.zeros(tuple(tensors["head.asso"].shape[::-1]) + (1,))
    save_file(tensors, folder / "model.safetensors")
    resign(folder)
    with pytest.raises(ValueError, match=r"'head.asso' of shape \(6, 3, 1\), expected \(3, 6\)"):
        ConceptBottleneckModel.load(folder)


# -- the JSON state allow-list ------------------------------------------------------------------------


@pytest.mark.parametrize("where, state", [
    ("head_state", {"concept_names_": ["x"] * 6}),  # would relabel explain()'s concepts
    ("head_state", {"weight_": [[0.0]]}),
    ("head_state", {"predict": 1}),  # shadows a method
    ("head_state", {"lam": 5.0}),  # a parameter, not learned state
    ("head_state", {"_private": 1}),
    ("head_state", {"inner": {"class_names_": ["z", "y", "x"]}}),  # nested in the residual head's inner head
    ("layer_state", {"bank_": None}),
])
def test_state_may_only_set_learned_attributes(hybrid, tmp_path, where, state):
    folder = hybrid.save(tmp_path / "m")
    rewrite_config(folder, lambda c: c.update({where: state}))
    with pytest.raises(ValueError, match=r"tries to set .* not learned state"):
        PCBM.load(folder)


def test_allowed_state_round_trips(hybrid, tmp_path):
    folder = hybrid.save(tmp_path / "m")
    loaded = PCBM.load(folder)
    assert loaded.head_.state() == hybrid.head_.state() and loaded.concept_names_ == hybrid.concept_names_


# -- concept banks and SAEs ------------------------------------------------------------------------


def test_bank_integrity(data, tmp_path):
    bank = data[2]
    folder = bank.save(tmp_path / "bank")
    assert json.loads((folder / "config.json").read_text())["format_version"] == 2
    flip_a_byte(folder / "concepts.safetensors")
    with pytest.raises(ArtifactIntegrityError, match="concepts.safetensors is corrupt"):
        ConceptBank.load(folder)
    folder = bank.save(tmp_path / "zero")
    tensors = load_file(folder / "concepts.safetensors")
    tensors["vectors"][3] = 0.0
    save_file(tensors, folder / "concepts.safetensors")
    resign(folder)
    with pytest.raises(ValueError, match=r"config.json is corrupt: 1 concept\(s\) have a vector whose norm is zero"):
        ConceptBank.load(folder)
    tensors["vectors"][3] = float("inf")
    save_file(tensors, folder / "concepts.safetensors")
    resign(folder)
    with pytest.raises(ArtifactIntegrityError, match="NaN or infinite"):
        ConceptBank.load(folder)


def test_sae_integrity(dncbm, data, tmp_path):
    from conceptlab.discovery import SparseAutoencoder

    sae = dncbm.concept_layer_.sae_
    folder = sae.save(tmp_path / "sae")
    cfg = json.loads((folder / "cfg.json").read_text())
    assert sorted(cfg["metadata"]["conceptlab"]["files"]) == ["sae_weights.safetensors"]
    assert torch.equal(SparseAutoencoder.load(folder).encode(data[0]), sae.encode(data[0]))
    flip_a_byte(folder / "sae_weights.safetensors")
    with pytest.raises(ArtifactIntegrityError, match="sae_weights.safetensors is corrupt"):
        SparseAutoencoder.load(folder)
    folder = sae.save(tmp_path / "nan")
    weights = load_file(folder / "sae_weights.safetensors")
    weights["b_enc"][0] = float("nan")
    save_file(weights, folder / "sae_weights.safetensors")
    cfg = json.loads((folder / "cfg.json").read_text())
    del cfg["metadata"]["conceptlab"]["files"]  # as a folder written by sae-lens itself
    (folder / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(ArtifactIntegrityError, match="NaN or infinite"):
        SparseAutoencoder.load(folder)
    weights["b_enc"] = torch.zeros(5)
    save_file(weights, folder / "sae_weights.safetensors")
    with pytest.raises(ValueError, match="b_enc of shape"):
        SparseAutoencoder.load(folder)
