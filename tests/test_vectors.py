"""conceptlab.vectors on a tiny random GPT-2: the streamed scan equals the full product, a planted
concept vector is found, interventions restore the weights, the unlearning losses match their
formulas at the start, and Needle touches nothing but its vector."""

from __future__ import annotations

import pytest
import torch

from conceptlab.backbones import load
from conceptlab.concepts import ConceptBank
from conceptlab.data import FactsWorld
from conceptlab.vectors import (
    LOSSES,
    GaussianNoise,
    ZeroAblation,
    causal_validate,
    intrinsic_diff,
    project_to_vocab,
    rank_weighted_score,
    rouge_l,
    scan_vocabulary,
    share_score,
    unlearn,
)
from conceptlab.vectors.unlearning import LossContext, _batch, _encode

pytestmark = pytest.mark.usefixtures("one_thread")
PLANTED = (1, 5)


@pytest.fixture(scope="module")
def world():
    return FactsWorld(n_people=4, n_cities=1, n_species=1)


@pytest.fixture(scope="module")
def lm(tmp_path_factory, world):
    """A random tiny GPT-2 (d_model > vocabulary, so a planted projection is exact) whose value vector PLANTED promotes the first entity's terms."""
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = world.tokenizer()
    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_embd=128, n_head=2, n_inner=40, n_positions=64, vocab_size=len(tokenizer), bos_token_id=0, eos_token_id=0)
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        model.transformer.ln_f.weight.uniform_(0.5, 1.5)
    folder = tmp_path_factory.mktemp("tiny-gpt2-vectors") / "model"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    lm = load(f"hf:{folder}", device="cpu")
    ids = lm.token_ids(world.terms(world.names[0]))
    w_u = lm.unembedding("raw")
    with torch.no_grad():
        layer, index = PLANTED
        wanted = torch.zeros(lm.d_vocab)
        wanted[ids] = 1.0  # least squares: the vector whose logits are closest to 1 on the terms, 0 elsewhere
        lm.model.transformer.h[layer].mlp.c_proj.weight[index] = torch.linalg.lstsq(w_u.T, wanted[:, None]).solution[:, 0]
    lm._fingerprint = None
    return lm


def test_streamed_scan_equals_the_full_product(lm, world):
    terms = world.terms(world.names[1])
    streamed = scan_vocabulary(lm, terms, k=7, chunk=6, progress=False)
    logits = torch.stack([lm.value_vectors(layer) @ lm.unembedding("raw") for layer in range(lm.n_layers)])
    full = logits.topk(7, dim=-1)
    # the same top-k up to float rounding between a chunk's matmul and a layer's (ties may swap)
    torch.testing.assert_close(logits.gather(-1, streamed.top_ids.long()), full.values, rtol=0, atol=1e-5)
    full = full.indices
    assert streamed.peak_block_bytes == 6 * lm.d_vocab * 4  # one chunk, never a layer
    hits = torch.isin(streamed.top_ids.long(), torch.tensor(lm.token_ids(terms)))
    torch.testing.assert_close(streamed.scores, hits.float().mean(-1))
    one = project_to_vocab(lm, 1, 3, k=7)
    assert one.tokens == lm.token_strings(one.ids) and set(one.ids) == set(full[1, 3].tolist())


def test_scorers_by_hand():
    hits = torch.tensor([[True, False, True, False], [False, False, False, True]])
    torch.testing.assert_close(share_score(hits, 3), torch.tensor([0.5, 0.25]))
    best = 1 + 1 / 2 + 1 / 3
    torch.testing.assert_close(rank_weighted_score(hits, 3), torch.tensor([(1 + 1 / 3) / best, (1 / 4) / best]))


def test_planted_vector_is_located_and_banked(lm, world, tmp_path):
    entity = world.names[0]
    terms = world.terms(entity)
    scan = scan_vocabulary(lm, terms, k=len(terms), scorer="rank_weighted", progress=False)
    layer, index, score = scan.best()
    assert (layer, index) == PLANTED and score == pytest.approx(1.0) and float(scan.table.iloc[1]["score"]) < 0.9
    assert sorted(scan.top_tokens(layer, index)) == sorted(terms)
    bank = scan.to_bank(lm, n=3, name=entity)
    assert isinstance(bank, ConceptBank) and len(bank) == 3
    first = bank[0]
    assert first.provenance["layer"] == layer and first.provenance["index"] == index and first.provenance["projection"] == "raw"
    assert first.space == lm.space and torch.equal(first.vector, lm.value_vector(layer, index))
    again = ConceptBank.load(bank.save(tmp_path / "bank"))
    assert torch.equal(again.vectors, bank.vectors) and [c.provenance for c in again] == [c.provenance for c in bank]
    folded = scan_vocabulary(lm, terms, k=len(terms), projection="folded", progress=False)
    assert folded.projection == "folded" and not torch.equal(folded.top_ids, scan.top_ids)


def test_scan_rejects_bad_input(lm, world):
    terms = world.terms(world.names[0])
    with pytest.raises(ValueError, match="none of the terms"):
        scan_vocabulary(lm, ["zzzunknown"], progress=False)
    with pytest.raises(ValueError, match="unknown scorer"):
        scan_vocabulary(lm, terms, scorer="magic", progress=False)
    with pytest.raises(IndexError, match="layer"):
        scan_vocabulary(lm, terms, layers=[7], progress=False)


def test_interventions_restore_weights_and_grade(lm, world):
    entity = world.names[0]
    state = {k: v.clone() for k, v in lm.model.state_dict().items()}
    target, unrelated = world.questions([entity], form="cloze"), world.unrelated(entity, form="cloze")
    result = causal_validate(lm, *PLANTED, target, unrelated, GaussianNoise(std=0.0))
    summary = result.summary()
    assert summary["target_accuracy_drop"] == 0 and summary["unrelated_rouge_l"] == 1.0
    noisy = causal_validate(lm, *PLANTED, target, unrelated, GaussianNoise(std=2.0, relative=True), before=result.before.drop(columns="group"))
    assert noisy.details["noise_norm"] > 0 and noisy.summary()["target_nll_after"] != noisy.summary()["target_nll_before"]
    causal_validate(lm, *PLANTED, target, unrelated, ZeroAblation())
    for key, value in lm.model.state_dict().items():
        assert torch.equal(value, state[key]), key
    with pytest.raises(ValueError, match="std"):
        GaussianNoise(std=-1)


def test_rouge_l():
    assert rouge_l("a b c", "a b c") == 1.0
    assert rouge_l("a x c", "a b c") == pytest.approx(2 / 3)
    assert rouge_l("", "") == 1.0 and rouge_l("a", "") == 0.0


def test_losses_at_the_start_match_their_formulas(lm, world):
    pad = lm.tokenizer.pad_token_id
    forget = _batch(_encode(lm, [t.text for t in world.texts("paragraph", [world.names[0]])]), pad)
    retain = _batch(_encode(lm, [t.text for t in world.texts("paragraph", [world.names[1]])]), pad)
    ctx = LossContext(lm, lm, forget, retain, beta=0.1)
    with torch.no_grad():
        nll = float(lm.token_nll(forget.ids[:1], 1)) if forget.ids.shape[0] == 1 else None
        ga = float(LOSSES["ga"](ctx))
        npo = float(LOSSES["npo"](ctx))
        npo_kl = float(LOSSES["npo_kl"](ctx))
        gd = float(LOSSES["gd"](ctx))
    assert ga < 0 and (nll is None or ga == pytest.approx(-nll, rel=1e-5))
    assert npo == pytest.approx(2 / 0.1 * torch.log(torch.tensor(2.0)).item(), rel=1e-5)  # theta = ref: -(2/b) log sigmoid(0)
    assert npo_kl == pytest.approx(npo, rel=1e-5)  # KL(ref || ref) = 0
    assert gd > ga


@pytest.mark.slow
def test_needle_touches_only_its_vector_and_full_methods_touch_all(lm, world):
    forget = [t.text for t in world.texts(("paragraph", "qa"), [world.names[0]])]
    retain = [t.text for t in world.texts(("paragraph",), world.names[1:3])]
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    needle = unlearn(lm, forget, method="needle", target=PLANTED, steps=3, progress=False)
    for key, value in needle.model.model.state_dict().items():
        if key.endswith("h.1.mlp.c_proj.weight"):
            changed = (value != before[key]).any(dim=1)
            assert changed.nonzero().flatten().tolist() == [PLANTED[1]]
        else:
            assert torch.equal(value, before[key]), key
    for key, value in lm.model.state_dict().items():  # the original is untouched
        assert torch.equal(value, before[key])
    full = unlearn(lm, forget, retain, method="npo_kl", steps=2, lr=1e-3, progress=False)
    assert not torch.equal(full.model.model.transformer.wte.weight, before["transformer.wte.weight"])
    assert len(full.losses) == 2 and full.params["method"] == "npo_kl" and full.params["seed"] == 999
    again = unlearn(lm, forget, retain, method="npo_kl", steps=2, lr=1e-3, progress=False)
    assert again.losses == full.losses  # seeded
    diff = intrinsic_diff(lm, needle.model, *PLANTED, k=5)
    assert diff["cosine"] < 1.0 and diff["l2"] > 0
    same = intrinsic_diff(lm, lm, *PLANTED, k=5)
    assert same == {"cosine": pytest.approx(1.0), "l2": 0.0, "jaccard": 1.0, "k": 5, "projection": "raw"}
    custom = unlearn(lm, forget, method="ga", loss=lambda ctx: -LOSSES["ga"](ctx), steps=1, progress=False)
    assert custom.params["loss"] == "<lambda>"
    with pytest.raises(ValueError, match="target"):
        unlearn(lm, forget, method="needle")
    with pytest.raises(ValueError, match="retain"):
        unlearn(lm, forget, method="gd")
