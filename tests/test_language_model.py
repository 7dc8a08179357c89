"""The language-model adapter: one orientation of value vectors whatever loaded the model.

Tiny random GPT-2 and LLaMA folders are built in code and saved to disk (no download). The HF,
transformer-lens (HookedTransformer) and TransformerBridge paths must give identical value
vectors, projections, logits and hook activations on the same weights; weight patches must be
restored bit for bit, even when the body raises.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from conceptlab.backbones import LanguageModel, load, load_hf_language_model, load_transformer_lens
from conceptlab.data import FactsWorld

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"), pytest.mark.usefixtures("one_thread")]


@pytest.fixture(scope="module")
def world():
    return FactsWorld(n_people=4, n_cities=1, n_species=1)


def _save(model, tokenizer, folder):
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory, world):
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = world.tokenizer()
    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_embd=32, n_head=2, n_inner=48, n_positions=64, vocab_size=len(tokenizer), bos_token_id=0, eos_token_id=0)
    return _save(GPT2LMHeadModel(config).eval(), tokenizer, tmp_path_factory.mktemp("tiny-gpt2") / "model")


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory, world):
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = world.tokenizer()
    torch.manual_seed(1)
    config = LlamaConfig(
        hidden_size=32, intermediate_size=40, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2, vocab_size=len(tokenizer),
        max_position_embeddings=64, bos_token_id=0, eos_token_id=0, tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():  # a non-trivial final norm gain, so folding is visible
        model.model.norm.weight.uniform_(0.5, 1.5)
    return _save(model, tokenizer, tmp_path_factory.mktemp("tiny-llama") / "llama-model")  # "llama" in the path on purpose


@pytest.fixture(scope="module")
def hf(gpt2_dir):
    return load(f"hf:{gpt2_dir}", device="cpu")


@pytest.fixture(scope="module")
def hooked(gpt2_dir):
    return load(f"transformer_lens:{gpt2_dir}", device="cpu")


@pytest.fixture(scope="module")
def bridge(gpt2_dir):
    return load_transformer_lens(str(gpt2_dir), device="cpu", backend="bridge")


@pytest.fixture(scope="module")
def ids(hf, world):
    return torch.tensor(hf.encode([world.texts("paragraph")[0].text]))


HOOKS = ("blocks.1.mlp.hook_post", "blocks.0.hook_resid_post", "blocks.1.hook_resid_pre", "blocks.1.hook_mlp_out")


def test_value_vectors_have_one_orientation(hf, gpt2_dir, llama_dir):
    assert isinstance(hf, LanguageModel) and (hf.n_layers, hf.d_model, hf.d_mlp) == (2, 32, 48)
    assert torch.equal(hf.value_vectors(1), hf.model.transformer.h[1].mlp.c_proj.weight)  # GPT-2 Conv1D: rows
    llama = load_hf_language_model(llama_dir)
    assert torch.equal(llama.value_vectors(0), llama.model.model.layers[0].mlp.down_proj.weight.T)  # LLaMA Linear: columns
    assert torch.equal(llama.value_vector(0, 7), llama.model.model.layers[0].mlp.down_proj.weight[:, 7])
    assert torch.equal(hf.value_vectors(0, 5, 9), hf.value_vectors(0)[5:9])


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_zeroing_the_value_vector_equals_zeroing_the_activation(arch, hf, llama_dir, ids):
    """The orientation test that matters: a wrong row/column would zero another neuron's output."""
    lm = hf if arch == "gpt2" else load_hf_language_model(llama_dir)
    with torch.no_grad():
        base = lm.logits(ids)
        with lm.ablate(1, 5, mode="zero"):
            by_weight = lm.logits(ids)
        with lm.ablate(1, 5, mode="patch", value=0.0):
            by_activation = lm.logits(ids)
    assert not torch.allclose(base, by_weight)
    torch.testing.assert_close(by_weight, by_activation, rtol=0, atol=1e-5)


@pytest.mark.parametrize("other", ["hooked", "bridge"])
def test_transformer_lens_paths_equal_the_hf_path(other, hf, request, ids):
    tl = request.getfixturevalue(other)
    assert tl.backend == {"hooked": "hooked_transformer", "bridge": "transformer_bridge"}[other]
    for layer in range(hf.n_layers):
        assert torch.equal(hf.value_vectors(layer), tl.value_vectors(layer))
    assert torch.equal(hf.unembedding("raw"), tl.unembedding("raw"))
    torch.testing.assert_close(hf.unembedding("folded"), tl.unembedding("folded"), rtol=0, atol=1e-6)
    assert torch.equal(hf.project(hf.value_vectors(1)), tl.project(tl.value_vectors(1)))
    with torch.no_grad():
        torch.testing.assert_close(hf.logits(ids), tl.logits(ids), rtol=0, atol=1e-5)
    _, a = hf.run_with_cache(ids, HOOKS)
    _, b = tl.run_with_cache(ids, HOOKS)
    for name in HOOKS:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-5)


def test_llama_through_transformer_lens_equals_hf(llama_dir, ids):
    hf = load_hf_language_model(llama_dir)
    tl = load_transformer_lens(str(llama_dir))
    assert tl.backend == "hooked_transformer"
    for layer in range(hf.n_layers):
        assert torch.equal(hf.value_vectors(layer), tl.value_vectors(layer))
    assert torch.equal(hf.project(hf.value_vectors(0), "raw"), tl.project(tl.value_vectors(0), "raw"))
    torch.testing.assert_close(hf.unembedding("folded"), tl.unembedding("folded"), rtol=0, atol=1e-6)
    assert not torch.allclose(hf.unembedding("folded"), hf.unembedding("raw"))  # RMSNorm gain folded in
    with torch.no_grad():
        torch.testing.assert_close(hf.logits(ids), tl.logits(ids), rtol=0, atol=1e-5)


def test_folded_projection_matches_hooked_transformer_processing(hf, gpt2_dir):
    """Our "folded" = transformer-lens' fold_ln + centring, up to a per-vector constant
    (centre_unembed shifts every logit of a vector by the same amount)."""
    folded = load_transformer_lens(str(gpt2_dir), processing="folded")
    assert folded.processing == "folded"
    ours = hf.project(hf.value_vectors(1), "folded")
    theirs = folded.project(folded.value_vectors(1), "raw")
    torch.testing.assert_close(ours - ours.mean(1, keepdim=True), theirs - theirs.mean(1, keepdim=True), rtol=0, atol=1e-5)


def test_answers_and_nll_agree_across_backends(hf, hooked, world):
    items = world.questions(form="qa")[:12]
    prompts, answers = [t.prompt for t in items], [t.answer for t in items]
    assert hf.greedy_answers(prompts) == hooked.greedy_answers(prompts)
    torch.testing.assert_close(hf.answer_nll(prompts, answers), hooked.answer_nll(prompts, answers), rtol=0, atol=1e-5)
    # by hand: -log p(answer | prompt) from one forward pass
    ids = torch.tensor(hf.encode([f"{prompts[0]} {answers[0]}"]))
    with torch.no_grad():
        logp = torch.log_softmax(hf.logits(ids)[0, -2], -1)[ids[0, -1]]
    assert float(hf.answer_nll(prompts[:1], answers[:1])[0]) == pytest.approx(float(-logp), abs=1e-5)


@pytest.mark.parametrize("backend", ["hf", "hooked"])
def test_patches_restore_weights_bit_for_bit_even_on_error(backend, hf, hooked, ids):
    lm = hf if backend == "hf" else hooked
    state = {k: v.clone() for k, v in lm.model.state_dict().items()}
    fingerprint = lm.fingerprint
    with torch.no_grad():
        base = lm.logits(ids)
    original = lm.value_vector(1, 3)
    with pytest.raises(RuntimeError, match="boom"):
        with lm.patch_value_vector(1, 3, delta=torch.randn(lm.d_model)):
            assert not torch.equal(lm.value_vector(1, 3), original)
            raise RuntimeError("boom")
    with pytest.raises(RuntimeError, match="boom"):
        with lm.ablate(0, 2, mode="zero"):
            assert torch.equal(lm.value_vector(0, 2), torch.zeros(lm.d_model))
            raise RuntimeError("boom")
    with pytest.raises(RuntimeError, match="boom"):
        with lm.ablate(0, 2, mode="mean", value=0.7):
            raise RuntimeError("boom")
    for key, value in lm.model.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert lm.fingerprint == fingerprint
    with torch.no_grad():
        assert torch.equal(lm.logits(ids), base)  # the hook is gone too


def test_mean_ablation_uses_the_corpus_mean(hf, world, ids):
    texts = world.training_corpus()[:20]
    mean = hf.mean_activation(1, texts)
    _, cache = hf.run_with_cache(torch.tensor(hf.encode(texts[:1])), ["blocks.1.mlp.hook_post"])
    assert mean.shape == (hf.d_mlp,) and torch.isfinite(mean).all()
    with torch.no_grad(), hf.ablate(1, 4, mode="mean", value=float(mean[4])):
        _, patched = hf.run_with_cache(ids, ["blocks.1.mlp.hook_post"])
    assert torch.allclose(patched["blocks.1.mlp.hook_post"][..., 4], torch.tensor(float(mean[4])))
    assert cache["blocks.1.mlp.hook_post"].shape[-1] == hf.d_mlp


def test_bad_input_is_a_clear_error(hf, tmp_path, gpt2_dir):
    with pytest.raises(FileNotFoundError, match="no model folder"):
        load(f"hf:{tmp_path / 'nothing'}")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="no weights"):
        load(f"hf:{tmp_path / 'empty'}")
    with pytest.raises(IndexError, match="layer"):
        hf.value_vector(5, 0)
    with pytest.raises(IndexError, match="neuron index"):
        hf.value_vector(0, 10_000)
    with pytest.raises(ValueError, match="projection"):
        hf.unembedding("centred")
    with pytest.raises(ValueError, match="exactly one"):
        with hf.patch_value_vector(0, 0):
            pass
    with pytest.raises(ValueError, match="unknown hook"):
        hf.run_with_cache(torch.tensor([[0, 1]]), ["blocks.9.mlp.hook_post"])
    with pytest.raises(ValueError, match="backend"):
        load_transformer_lens(str(gpt2_dir), backend="legacy")


@pytest.mark.slow
def test_transformer_lens_is_not_imported_at_module_level():
    code = "import sys, conceptlab.backbones, conceptlab.vectors; assert 'transformer_lens' not in sys.modules, 'imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_vocabulary_scan_is_the_same_through_every_backend(hf, hooked, bridge, world):
    from conceptlab.vectors import scan_vocabulary

    terms = world.terms(world.names[0])
    tables = [scan_vocabulary(lm, terms, k=5, chunk=16, progress=False) for lm in (hf, hooked, bridge)]
    for other in tables[1:]:
        assert torch.equal(other.scores, tables[0].scores) and torch.equal(other.top_ids, tables[0].top_ids)
        assert other.table.equals(tables[0].table)
