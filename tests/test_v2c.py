"""V2C-CBM: templates, vocabulary, codebook, the tokenizer against a loop reference, the CBM's prior."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conceptlab.cbm import V2CCBM, LaBo, concept_bank_from_set
from conceptlab.concepts import ConceptBank
from conceptlab.concepts.v2c import (
    V2CTokenizer,
    class_shot_features,
    class_text_features,
    embed_codebook,
    imagenet_templates,
    load_v2c_vocabulary,
    read_word_lists,
    v2c_templates,
)
from conceptlab.data import ATTRIBUTE_VALUES

# small torch ops on a busy 2-core machine run far faster on one thread (conftest.py)
pytestmark = pytest.mark.usefixtures("one_thread")


def test_templates():
    templates = v2c_templates()
    assert len(imagenet_templates()) == 80 and len(templates) == 86
    assert templates[0] == "a bad photo of a {}." and templates[79] == "a tattoo of the {}."
    assert templates[80:] == ["has a {} on it.", "is made of {}.", "is a {}.", "has many {} on it.", "is a type of {}.", "part of a {}."]


def test_packaged_vocabulary_covers_shapesworld(tmp_path):
    lists = read_word_lists()
    words = load_v2c_vocabulary()
    singles = lists["adjectives"] + lists["nouns"] + lists["phrases"]
    assert len(words) == len(singles) + len(lists["adjectives"]) * len(lists["nouns"])
    assert len(set(words)) == len(words) and words[: len(singles)] == singles
    for family, values in ATTRIBUTE_VALUES.items():
        for value in values:
            assert value.replace("-", " ") in words, (family, value)
    assert {"red circle", "striped star", "white background", "small shape"} <= set(words)
    assert len(load_v2c_vocabulary(pairs=False)) == len(singles)
    trigrams = load_v2c_vocabulary(relations=True)
    assert "made of red circle" in trigrams and len(trigrams) == len(words) + 4 * len(lists["adjectives"]) * len(lists["nouns"])
    custom = tmp_path / "v.txt"
    custom.write_text("loose phrase\n[adjectives]\nred # a comment\nred\n[nouns]\nball\n")
    assert load_v2c_vocabulary(custom) == ["red", "ball", "loose phrase", "red ball"]
    custom.write_text("[verbs]\nrun\n")
    with pytest.raises(ValueError, match="unknown section"):
        read_word_lists(custom)


def test_codebook_is_a_mean_of_unit_embeddings_not_renormalised(tiny_backbone):
    templates = ["a photo of a {}.", "{}", "is made of {}."]
    codebook = embed_codebook(tiny_backbone, ["red", "striped star"], templates, batch_size=4)
    for i, word in enumerate(["red", "striped star"]):
        emb = torch.nn.functional.normalize(tiny_backbone.encode_texts([t.format(word) for t in templates]).float(), dim=1)
        assert torch.allclose(codebook[i], emb.mean(0), atol=1e-6)
    assert (codebook.norm(dim=1) < 1 - 1e-4).all()  # a mean of distinct unit vectors is shorter
    feats = class_text_features(tiny_backbone, ["ruby disc"], templates)
    assert feats[0].shape == (3, tiny_backbone.dim) and torch.allclose(feats[0].norm(dim=1), torch.ones(3), atol=1e-5)


def tokenizer_reference(U, C, class_features, n_images, t, keep):
    """V2C's steps 2-3 written as loops (ties in frequency to the earlier token)."""
    U = U / U.norm(dim=1, keepdim=True)
    out, counts = [], []
    for F in class_features:
        F = F / F.norm(dim=1, keepdim=True)
        scores = [float(np.mean([float(u @ f) for f in F])) for u in U]
        ranked = sorted(range(len(U)), key=lambda i: -scores[i])[:n_images]
        freq = np.zeros(len(C), dtype=np.int64)
        for i in ranked:
            sims = (U[i] @ C.T).tolist()
            for j in sorted(range(len(C)), key=lambda j: -sims[j])[:t]:
                freq[j] += 1
        order = sorted((j for j in range(len(C)) if freq[j] > 0), key=lambda j: (-freq[j], j))[:keep]
        out.append(order)
        counts.append(freq)
    return out, np.stack(counts)


def synthetic_world(seed=0, d=16, n_words=12, n=120):
    g = torch.Generator().manual_seed(seed)
    words = [f"w{i}" for i in range(n_words)]
    codebook = torch.randn(n_words, d, generator=g)
    codebook = 0.6 * codebook / codebook.norm(dim=1, keepdim=True)  # V2C's codebook rows are shorter than 1
    labels = torch.randint(0, 3, (n,), generator=g)
    # class k's images mix tokens 3k, 3k+1, 3k+2 (and noise)
    mix = torch.zeros(n, n_words)
    for i, k in enumerate(labels.tolist()):
        mix[i, 3 * k : 3 * k + 3] = torch.rand(3, generator=g) + 0.5
    U = mix @ codebook + 0.05 * torch.randn(n, d, generator=g)
    return words, codebook, U * 3.0, labels


def test_tokenizer_equals_loop_reference():
    words, codebook, U, labels = synthetic_world()
    shots = class_shot_features(U[:15], labels[:15], 3)
    tok = V2CTokenizer(n_images=30, tokens_per_image=2, concepts_per_class=4).fit(U, codebook, words, shots, ["a", "b", "c"])
    ref_keep, ref_counts = tokenizer_reference(U, codebook, shots, 30, 2, 4)
    assert torch.equal(tok.counts_, torch.as_tensor(ref_counts))
    assert [tok.class2concepts_[c] for c in "abc"] == [[words[j] for j in keep] for keep in ref_keep]
    assert (tok.counts_.sum(1) == 30 * 2).all()  # every image counts exactly its top-2 tokens
    # the tokens of each class are its own mixture's
    for k, c in enumerate("abc"):
        assert set(tok.class2concepts_[c][:2]) <= {f"w{3 * k}", f"w{3 * k + 1}", f"w{3 * k + 2}"}
        ranked_labels = labels[tok.ranked_images_[k]]
        assert (ranked_labels == k).float().mean() > 0.9  # the quantisation set is mostly the class's images
    cs = tok.to_concept_set()
    assert cs.scores["a"][cs["a"][0]] == float(tok.counts_[0].max())
    assert tok.frequencies("b").iloc[0] == int(tok.counts_[1].max())
    assert tok.overlap(threshold=0.1).empty  # three separated classes share no quantisation images


def test_tokenizer_drops_unused_tokens_and_reports_overlap():
    words, codebook, U, labels = synthetic_world(seed=1)
    shots = class_shot_features(U, torch.zeros(len(U), dtype=torch.long), 1)  # one class made of everything
    tok = V2CTokenizer(n_images=500, tokens_per_image=1, concepts_per_class=50).fit(U, codebook, words, [shots[0], shots[0]], ["x", "y"])
    assert tok.n_images_ == len(U)  # capped by the unlabelled set
    kept = tok.class2concepts_["x"]
    assert len(kept) == int((tok.counts_[0] > 0).sum()) < 50  # no zero-count padding
    overlap = tok.overlap()
    assert len(overlap) == 2 and (overlap["shared"] == len(U)).all()
    with pytest.raises(ValueError, match="words for a codebook"):
        V2CTokenizer().fit(U, codebook, words[:-1], shots, ["x"])


def test_v2c_cbm_uses_the_frequency_prior(tiny_backbone):
    words, codebook, U, labels = synthetic_world(seed=2)
    shots = class_shot_features(U[:30], labels[:30], 3)
    tok = V2CTokenizer(n_images=40, tokens_per_image=3, concepts_per_class=5).fit(U, codebook, words, shots, ["a", "b", "c"])
    cs = tok.to_concept_set()
    bank = concept_bank_from_set(tiny_backbone, cs)  # text embeddings of the token strings (LaBo's pipeline)
    links = {c.name: c.class_links for c in bank}
    assert all(cls in links[w] for cls in "abc" for w in cs[cls])
    # scores (N, C) come from our synthetic space, so give the model a bank in that space with the same links
    synthetic = ConceptBank.from_tensors(
        bank.names, codebook[[words.index(n) for n in bank.names]], "synthetic",
        class_links=[c.class_links for c in bank], provenance=[c.provenance for c in bank],
    )
    model = V2CCBM(synthetic, ["a", "b", "c"], lr=0.05, epochs=20, val_every=5, batch_size=64, device="cpu").fit(U, labels)
    counts = tok.counts_.float()
    for k, cls in enumerate("abc"):
        for j, name in enumerate(model.concept_names_):
            expected = float(counts[k, words.index(name)]) / float(counts[k, [words.index(w) for w in cs[cls]]].max()) if cls in links[name] else 0.0
            assert float(model.prior_[k, j]) == pytest.approx(expected)
    assert model.provenance_["prior"] == "frequency" and model.score(U, labels) > 0.9
    as_labo = LaBo(synthetic, ["a", "b", "c"], epochs=1, device="cpu").fit(U, labels)
    assert as_labo.provenance_["prior"] == "first" and (as_labo.prior_.sum(0) == 1).all()
