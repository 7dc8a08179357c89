"""Label-free CBM filters: what each removes and why, with the real MiniLM sentence encoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conceptlab.concepts.filters import (
    SentenceEncoder,
    filter_class_similarity,
    filter_length,
    filter_near_duplicates,
    filter_not_in_data,
    lfcbm_filters,
    text_similarity,
)


@pytest.fixture(scope="module")
def minilm():
    return SentenceEncoder.default()


class TableEncoder:
    """A sentence encoder with fixed vectors, so similarities are known exactly."""

    def __init__(self, vectors: dict[str, list[float]]):
        self.vectors = {k: np.asarray(v, dtype=np.float32) / np.linalg.norm(v) for k, v in vectors.items()}

    def encode(self, texts):
        return np.stack([self.vectors[t] for t in texts])


def lfcbm_near_duplicates_reference(concepts, sim, cutoff):
    """LF-CBM's ``filter_too_similar`` loop, written out as in the official code."""
    to_delete = []
    for i in range(len(concepts)):
        for j in range(len(concepts)):
            if sim[i, j] >= cutoff and i != j and i not in to_delete and j not in to_delete:
                to_delete.append(i if np.sum(sim[i]) < np.sum(sim[j]) else j)
    return [c for k, c in enumerate(concepts) if k not in to_delete]


def test_length_filter_reports_each_removal():
    result = filter_length(["red", "x" * 30, "y" * 31, "red"])
    assert result.kept == ["red", "x" * 30]  # 30 characters is allowed, duplicates merged
    assert result.frame.to_dict("records") == [{"concept": "y" * 31, "filter": "length", "reason": "31 characters > 30", "value": 31.0, "other": None}]
    assert result.steps == [{"filter": "length", "before": 3, "removed": 1, "after": 2, "max_len": 30}]


def test_class_similarity_with_minilm(minilm):
    concepts = ["The Ruby Disc", "an azure star", "ruby discs", "a ruby disk", "red circle", "glossy surface", "ruby", "jade spire shape"]
    result = filter_class_similarity(concepts, ["ruby disc", "jade spire", "azure star"], sentence_encoder=minilm)
    removed = result.frame.set_index("concept")
    assert removed.loc["The Ruby Disc", "reason"] == "is the class name 'ruby disc'"
    assert removed.loc["an azure star", "other"] == "azure star"
    # MiniLM: plural 0.95, another spelling 0.88, the class plus a generic noun 0.82 (below 0.85)
    assert set(removed.index) == {"The Ruby Disc", "an azure star", "ruby discs", "a ruby disk"}
    assert removed.loc["ruby discs", "other"] == "ruby disc" and removed.loc["ruby discs", "value"] >= 0.85
    assert result.kept == ["red circle", "glossy surface", "ruby", "jade spire shape"]
    # the same decision from the similarity matrix itself
    sim = text_similarity(["ruby disc", "jade spire", "azure star"], result.kept, minilm)
    assert (sim.max(0) < 0.85).all()
    # a lower cut-off removes "jade spire shape" (0.82) but not the unrelated ones
    lower = filter_class_similarity(concepts, ["ruby disc", "jade spire", "azure star"], cutoff=0.8, sentence_encoder=minilm)
    assert "jade spire shape" not in lower.kept and "glossy surface" in lower.kept


def test_near_duplicates_follow_lfcbm_loop():
    # a, b, c nearly identical; d close to b only; e alone
    vectors = {"a": [1, 0.05, 0, 0], "b": [1, 0, 0.05, 0.2], "c": [1, 0.02, 0.02, 0.05], "d": [0.8, 0, 0, 1], "e": [0, 1, 0, 0]}
    encoder = TableEncoder(vectors)
    concepts = list(vectors)
    sim = text_similarity(concepts, concepts, encoder)
    for cutoff in (0.9, 0.95, 0.99, 0.999):
        result = filter_near_duplicates(concepts, cutoff=cutoff, sentence_encoder=encoder)
        assert result.kept == lfcbm_near_duplicates_reference(concepts, sim, cutoff)
        for row in result.removed:  # the kept partner is the more general (larger summed similarity)
            i, j = concepts.index(row["concept"]), concepts.index(row["other"])
            assert sim[i].sum() <= sim[j].sum() and row["value"] >= cutoff
    assert filter_near_duplicates(concepts, cutoff=0.99, sentence_encoder=encoder).kept != concepts


def test_near_duplicates_with_minilm(minilm):
    concepts = ["red color", "red colour", "bright red color", "round shape", "circular shape", "glossy surface"]
    result = filter_near_duplicates(concepts, sentence_encoder=minilm)
    assert len(result.removed) == 1 and {result.removed[0]["concept"], result.removed[0]["other"]} == {"red color", "red colour"}
    assert "bright red color" in result.kept and "circular shape" in result.kept  # 0.87 and 0.79: below 0.9


def test_not_in_data_uses_top_k_image_similarity():
    g = torch.Generator().manual_seed(0)
    d = 16
    directions = torch.eye(d)
    images = torch.zeros(200, d)
    images[:, 3:] = torch.randn(200, d - 3, generator=g)  # nuisance directions, orthogonal to the concepts
    images[:3] += 20 * directions[0]  # three images show concept 0: fewer than top-5
    images[3:40] += 20 * directions[1]  # many show concept 1
    text = directions[:3] * torch.tensor([[2.0], [3.0], [1.0]])  # raw norms must not matter
    result = filter_not_in_data(["rare", "common", "absent"], images * 7.0, text_embeddings=text, cutoff=0.25, top_k=5)
    scores = result.steps[0]["scores"]
    unit = torch.nn.functional.normalize(images, dim=1)
    expected = [float(torch.topk(unit @ directions[j], 5).values.mean()) for j in range(3)]
    assert [scores[c] for c in ("rare", "common", "absent")] == pytest.approx(expected, abs=1e-5)
    assert 0.5 < scores["rare"] < scores["common"] and scores["absent"] == pytest.approx(0.0, abs=1e-6)
    assert result.kept == ["rare", "common"] and result.removed[0]["concept"] == "absent"
    assert result.removed[0]["reason"].startswith("mean top-5 image similarity")
    strict = filter_not_in_data(["rare", "common", "absent"], images, text_embeddings=text, cutoff=0.9, top_k=5)
    assert strict.kept == ["common"]  # three strong images are not enough for a mean over five
    with pytest.raises(ValueError, match="text_embeddings or a backbone"):
        filter_not_in_data(["x"], images)


def test_full_chain_with_backbone(minilm, tiny_backbone):
    from conceptlab.concepts.language import shapesworld_concept_set
    from conceptlab.data import ShapesWorld

    concepts = shapesworld_concept_set().unique()
    world = ShapesWorld("train", size=24, seed=0)
    images = tiny_backbone.encode_images([world[i][0] for i in range(len(world))])
    result = lfcbm_filters(concepts, world.class_names, images, backbone=tiny_backbone, sentence_encoder=minilm, clip_cutoff=0.0)
    assert [s["filter"] for s in result.steps] == ["length", "class_similarity", "near_duplicate", "not_in_data"]
    removed = {r["concept"] for r in result.removed}
    assert len(removed) == len(result.removed) and not removed & set(result.kept)
    assert sorted(removed | set(result.kept)) == sorted(concepts)
    assert sum(s["removed"] for s in result.steps) == len(result.removed)
    assert all(len(c) <= 30 for c in result.kept)
    assert not set(world.class_names) & set(result.kept)  # every class name was a candidate and is gone
    assert {"ruby disc", "jade spire"} <= {r["concept"] for r in result.removed if r["filter"] == "class_similarity"}
    assert "a thin flat disc that looks like a coin or a plate" in {r["concept"] for r in result.removed if r["filter"] == "length"}
