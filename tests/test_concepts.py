"""Concept, ConceptBank (save/load, errors), text concepts and CAVs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conceptlab.cbm import concept_scores
from conceptlab.concepts import (
    Concept,
    ConceptBank,
    UnknownNameError,
    cavs_from_labels,
    image_embedding_space,
    learn_cavs,
    text_concepts,
)


def make_bank(n=3, d=4, space="test-space", seed=0):
    rng = np.random.default_rng(seed)
    return ConceptBank.from_tensors(
        [f"c{i}" for i in range(n)], rng.normal(size=(n, d)), space, biases=rng.normal(size=n),
        provenance={"kind": "cav"},
    )


# -- Concept / ConceptBank ---------------------------------------------------------------------


def test_concept_normalises_its_fields():
    concept = Concept("red", np.array([[1.0, 2.0]]), "s", bias=np.float64(0.5), metrics={"auc": np.float32(0.75), "bad": float("nan")})
    assert concept.vector.dtype == torch.float32 and concept.vector.shape == (2,)
    assert concept.bias == 0.5 and isinstance(concept.bias, float)
    assert concept.metrics == {"auc": 0.75, "bad": None}  # JSON-safe now, so a round trip is exact
    with pytest.raises(ValueError, match="non-empty string name"):
        Concept("", [1.0], "s")
    with pytest.raises(ValueError, match="NaN"):
        Concept("x", [1.0, float("nan")], "s")
    with pytest.raises(ValueError, match="1-D"):
        Concept("x", np.ones((2, 2)), "s")


def test_bank_accessors():
    bank = make_bank()
    assert len(bank) == 3 and bank.names == ["c0", "c1", "c2"] and bank.dim == 4
    assert bank.vectors.shape == (3, 4) and bank.biases.shape == (3,) and bank.space == "test-space"
    assert bank[1] is bank["c1"] and "c2" in bank and "zz" not in bank
    torch.testing.assert_close(bank.norms, bank.vectors.norm(dim=1))
    bank.vectors.zero_()  # a copy: the bank is not changed
    assert bank.vectors.abs().sum() > 0
    assert list(bank.to_frame()["name"]) == bank.names


def test_bank_errors_are_clear():
    a = Concept("a", [1.0, 0.0], "s")
    with pytest.raises(ValueError, match="at least one concept"):
        ConceptBank([])
    with pytest.raises(ValueError, match="unique.*a"):
        ConceptBank([a, Concept("a", [0.0, 1.0], "s")])
    with pytest.raises(ValueError, match="one dimension"):
        ConceptBank([a, Concept("b", [1.0, 2.0, 3.0], "s")])
    with pytest.raises(ValueError, match="one space"):
        ConceptBank([a, Concept("b", [1.0, 2.0], "other")])
    with pytest.raises(TypeError, match="not a Concept"):
        ConceptBank([a, "b"])
    bank = ConceptBank([a, Concept("blue", [0.0, 1.0], "s")])
    with pytest.raises(UnknownNameError, match="Did you mean: 'blue'"):
        bank["blu"]
    with pytest.raises(KeyError):  # also a KeyError ...
        bank.index("nope")
    with pytest.raises(IndexError):
        bank[5]


def test_subset_and_rename_return_new_banks():
    bank = make_bank(4)
    sub = bank.subset(["c3", "c1"])
    assert sub.names == ["c3", "c1"] and torch.equal(sub.vectors[0], bank.vectors[3])
    renamed = bank.rename("c0", "zero")
    assert renamed.names[0] == "zero" and bank.names[0] == "c0"
    assert renamed["zero"].provenance["renamed_from"] == "c0"
    assert torch.equal(renamed.vectors, bank.vectors)
    assert bank.rename({"c0": "a", "c1": "b"}).names[:2] == ["a", "b"]
    with pytest.raises(ValueError, match="unique"):
        bank.rename("c0", "c1")
    with pytest.raises(UnknownNameError):
        bank.rename("c9", "x")


def test_save_load_round_trip_is_exact(tmp_path):
    bank = ConceptBank(
        [
            Concept("red", [0.1, 0.2, 0.3], "zoo:x#image-embedding", bias=0.1 + 0.2, class_links=["ruby disc"],
                    provenance={"kind": "text", "prompts": ["a red shape"]}, metrics={"auroc": 0.93, "sweep": [{"C": 0.1}]}),
            Concept("blue", [1e-8, -3.0, 7.5], "zoo:x#image-embedding", bias=-2.5e-7),
        ],
        provenance={"library": "conceptlab", "seed": 7},
    )
    bank.save(tmp_path / "bank")
    assert sorted(p.name for p in (tmp_path / "bank").iterdir()) == ["concepts.safetensors", "config.json"]
    loaded = ConceptBank.load(tmp_path / "bank")
    assert loaded == bank
    assert loaded["red"].bias == 0.1 + 0.2  # float64 exact, not float32-rounded
    assert torch.equal(loaded.vectors, bank.vectors) and loaded.provenance == {"library": "conceptlab", "seed": 7}
    assert not any(p.name.endswith(".tmp") for p in (tmp_path / "bank").iterdir())


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no concept bank directory"):
        ConceptBank.load(tmp_path / "missing")
    folder = make_bank().save(tmp_path / "b")
    (folder / "concepts.safetensors").write_bytes(b"\x00\x01garbage")
    with pytest.raises(ValueError, match="concepts.safetensors.*corrupt"):
        ConceptBank.load(folder)
    (folder / "concepts.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="concepts.safetensors"):
        ConceptBank.load(folder)
    folder = make_bank().save(tmp_path / "c")
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json.*corrupt"):
        ConceptBank.load(folder)
    (folder / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="config.json"):
        ConceptBank.load(folder)
    folder = make_bank().save(tmp_path / "d")
    config = json.loads((folder / "config.json").read_text())
    config["concepts"] = config["concepts"][:2]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="does not match"):
        ConceptBank.load(folder)


# -- text concepts -----------------------------------------------------------------------------


class FakeTextBackbone:
    """Deterministic text embeddings: a hash of the text seeds a Gaussian vector."""

    spec = "fake:text"
    fingerprint = "f" * 32

    def __init__(self):
        self.seen = []

    def encode_texts(self, texts):
        self.seen.extend(texts)
        rows = []
        for text in texts:
            seed = int.from_bytes(text.encode()[:8].ljust(8, b"_"), "little") % (2**32) + len(text)
            rows.append(torch.from_numpy(np.random.default_rng(seed).normal(size=6) * 3).float())
        return torch.stack(rows)


def test_text_concepts_average_normalised_template_embeddings():
    backbone = FakeTextBackbone()
    templates = ["a photo of {}.", "{} again"]
    bank = text_concepts(backbone, ["color:red", "shape:circle"], templates=templates, prompts={"color:red": "a red shape", "shape:circle": "a circle"})
    assert backbone.seen == ["a photo of a red shape.", "a red shape again", "a photo of a circle.", "a circle again"]
    e = torch.nn.functional.normalize(backbone.encode_texts(["a photo of a red shape.", "a red shape again"]), dim=1)
    expected = torch.nn.functional.normalize(e.mean(0), dim=0)
    torch.testing.assert_close(bank["color:red"].vector, expected)
    torch.testing.assert_close(bank.norms, torch.ones(2))
    assert bank.biases.tolist() == [0.0, 0.0] and bank.space == image_embedding_space("fake:text")
    red = bank["color:red"]
    assert red.provenance["kind"] == "text" and red.provenance["prompts"] == ["a red shape"] and red.provenance["templates"] == templates
    # no templates: the prompt itself (PCBM's ConceptNet bank), a unit vector
    plain = text_concepts(backbone, ["stripes"])
    torch.testing.assert_close(plain["stripes"].vector, torch.nn.functional.normalize(backbone.encode_texts(["stripes"])[0], dim=0))
    with pytest.raises(ValueError, match="template"):
        text_concepts(backbone, ["x"], templates=["no placeholder"])
    with pytest.raises(ValueError, match="no entry"):
        text_concepts(backbone, ["x", "y"], prompts={"x": "an x"})


def test_text_concepts_on_a_tiny_open_clip(tiny_backbone):
    bank = text_concepts(tiny_backbone, ["color:red", "shape:circle"], prompts=["a red shape", "a circle"])
    assert bank.vectors.shape == (2, tiny_backbone.dim)
    torch.testing.assert_close(bank.norms, torch.ones(2))
    raw = tiny_backbone.encode_texts(["a red shape"])[0]
    torch.testing.assert_close(bank["color:red"].vector, raw / raw.norm())
    assert bank["color:red"].provenance["backbone_fingerprint"] == tiny_backbone.fingerprint


# -- CAVs --------------------------------------------------------------------------------------


def test_margin_is_signed_distance_on_hand_values():
    bank = ConceptBank([Concept("a", [3.0, 4.0], "s", bias=5.0), Concept("b", [0.0, 2.0], "s", bias=-1.0)])
    x = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    expected = torch.tensor([[(3 + 4 + 5) / 5, (2 - 1) / 2], [5 / 5, -1 / 2]])
    torch.testing.assert_close(concept_scores(x, bank), expected)
    torch.testing.assert_close(concept_scores(x, bank, mode="dot"), torch.tensor([[7.0, 2.0], [0.0, 0.0]]))


def test_cavs_on_separable_data_reach_full_validation_accuracy():
    rng = np.random.default_rng(0)
    d = 16
    direction = rng.normal(size=d)
    direction /= np.linalg.norm(direction)
    pos = rng.normal(size=(100, d)) + 3 * direction
    neg = rng.normal(size=(100, d)) - 3 * direction
    bank = learn_cavs({"thing": (pos, neg)}, n_samples=50, space="s")
    concept = bank["thing"]
    assert concept.metrics["val_acc"] == 1.0 and concept.metrics["train_acc"] == 1.0
    assert [e["C"] for e in concept.metrics["sweep"]] == [0.001, 0.01, 0.1, 1.0, 10.0]
    assert float(torch.nn.functional.cosine_similarity(concept.vector, torch.tensor(direction, dtype=torch.float32), dim=0)) > 0.8
    # the stored margin statistics are those of (c·x + b)/‖c‖ on the training rows
    train = np.concatenate([pos[:50], neg[:50]])
    margins = concept_scores(train, bank).numpy()[:, 0]
    assert concept.metrics["margin"]["max"] == pytest.approx(margins.max(), rel=1e-4)
    assert concept.metrics["margin"]["pos_count"] == 50 and concept.provenance["kind"] == "cav"
    assert (margins[:50] > 0).all() and (margins[50:] < 0).all()


def test_cavs_pick_c_by_validation_accuracy():
    rng = np.random.default_rng(1)
    d = 40  # few samples in many dimensions: tiny C underfits, so the sweep matters
    pos = rng.normal(size=(80, d)) + 0.6
    neg = rng.normal(size=(80, d)) - 0.6
    concept = learn_cavs({"x": (pos, neg)}, n_samples=30)["x"]
    best = max(e["val_acc"] for e in concept.metrics["sweep"])
    assert concept.metrics["val_acc"] == best
    assert concept.metrics["C"] == next(e["C"] for e in concept.metrics["sweep"] if e["val_acc"] == best)


def test_cavs_from_labels_samples_the_right_rows():
    rng = np.random.default_rng(2)
    acts = rng.normal(size=(600, 8))
    truth = np.stack([acts[:, 0] > 0.3, acts[:, 3] < 0], axis=1)
    bank = cavs_from_labels(acts, truth, ["first", "fourth"], n_samples=40, seed=3, space="s")
    for j, name in enumerate(["first", "fourth"]):
        concept = bank[name]
        assert concept.metrics["val_acc"] >= 0.95
        assert truth[concept.provenance["positive_rows"], j].all() and not truth[concept.provenance["negative_rows"], j].any()
        assert len(concept.provenance["positive_rows"]) == 80 and concept.provenance["with_replacement"] is False
    assert abs(float(bank["first"].vector[0])) == float(bank["first"].vector.abs().max())
    assert float(bank["fourth"].vector[3]) < 0  # positives have small x_3
    again = cavs_from_labels(acts, truth, ["first", "fourth"], n_samples=40, seed=3, space="s")
    assert again == bank  # same seed, same bank


def test_cav_errors():
    with pytest.raises(ValueError, match="more than 50"):
        learn_cavs({"x": (np.ones((60, 3)), np.ones((40, 3)))})
    with pytest.raises(ValueError, match="needs both"):
        cavs_from_labels(np.ones((10, 3)), np.ones((10, 1), bool), ["always"])
    with pytest.raises(ValueError, match="NaN"):
        learn_cavs({"x": (np.full((120, 3), np.nan), np.ones((120, 3)))})
