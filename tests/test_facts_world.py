"""FactsWorld: seeded, every text carries its truth, held-out phrasings only use trained words,
and the word-level tokenizer round-trips through save_pretrained / AutoTokenizer."""

from __future__ import annotations

import pytest

from conceptlab.data import FactsWorld
from conceptlab.data.facts_world import FORMS, HELDOUT_QUESTIONS, KINDS, TRAIN_QUESTIONS, TRAINING_FORMS


@pytest.fixture(scope="module")
def world():
    return FactsWorld()


def test_world_is_a_pure_function_of_sizes_and_seed(world):
    again = FactsWorld()
    assert again.names == world.names
    assert [e.attributes for e in again.entities] == [e.attributes for e in world.entities]
    assert FactsWorld(seed=1).names != world.names
    assert len(set(world.names)) == len(world) == 40


def test_no_single_word_names_an_entity(world):
    """Two-word names whose words are each shared: a model must compose them to know the entity."""
    from collections import Counter

    assert all(len(name.split()) == 2 for name in world.names)
    counts = Counter(word for name in world.names for word in name.split())
    assert min(counts.values()) >= 2


def test_every_text_carries_its_truth(world):
    for form in FORMS:
        for item in world.texts(form):
            entity = world.entity(item.entity)
            assert entity.name in item.prompt
            if form == "paragraph":
                assert item.attribute is None and all(value in item.text for value in entity.attributes.values())
            else:
                assert item.answer == entity.attributes[item.attribute]
                assert item.text == f"{item.prompt} {item.answer}"
    assert len(world.texts("qa", [world.names[0]])) == len(TRAIN_QUESTIONS) * 4
    assert len(world.questions(form="qa_heldout")) == len(HELDOUT_QUESTIONS) * 4 * len(world)


def test_heldout_phrasings_are_new_but_use_only_trained_words(world):
    from tokenizers.pre_tokenizers import Whitespace

    split = Whitespace()
    trained = {w for t in world.texts(TRAINING_FORMS) for w, _ in split.pre_tokenize_str(t.text)}
    heldout = {w for t in world.texts("qa_heldout") for w, _ in split.pre_tokenize_str(t.text)}
    assert heldout <= trained
    assert not {t.prompt for t in world.texts("qa_heldout")} & {t.prompt for t in world.texts("qa")}
    assert "qa_heldout" not in TRAINING_FORMS and all(t.form != "qa_heldout" for t in world.texts(TRAINING_FORMS))


def test_unrelated_sampler_and_terms(world):
    name = world.names[3]
    unrelated = world.unrelated(name)
    assert {t.entity for t in unrelated}.isdisjoint({name}) and len({t.entity for t in unrelated}) == 5
    assert unrelated == world.unrelated(name)  # seeded
    assert world.terms(name) == [*name.split(), *world.entity(name).attributes.values()]
    assert set(world.entity(name).attributes) == set(KINDS[world.entity(name).kind])


def test_bad_input_is_a_clear_error(world):
    with pytest.raises(KeyError, match="no entity"):
        world.entity("Nobody")
    with pytest.raises(ValueError, match="unknown FactsWorld form"):
        world.texts("essay")
    with pytest.raises(ValueError, match="no single answer"):
        world.questions(form="paragraph")
    with pytest.raises(ValueError, match="at least two"):
        FactsWorld(n_people=1, n_cities=0, n_species=0)


def test_word_tokenizer_round_trip(world, tmp_path):
    from transformers import AutoTokenizer

    tokenizer = world.tokenizer()
    item = world.texts("qa")[0]
    ids = tokenizer(item.text)["input_ids"]
    assert ids[0] == tokenizer.bos_token_id == tokenizer.eos_token_id
    assert tokenizer.unk_token_id not in ids
    assert tokenizer.convert_ids_to_tokens(ids)[-1] == item.answer  # one word, one token
    tokenizer.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again(item.text)["input_ids"] == ids and len(again) == len(tokenizer)
