"""Backbone specs: local-dir on a real open_clip architecture, zoo paths, clear errors."""

from __future__ import annotations

import pytest
import torch

from conceptlab.backbones import load, parse_spec
from conceptlab.data import ShapesWorld
from tests.conftest import make_tiny_clip_dir, save_open_clip_dir


def test_local_dir_vit_b_32_matches_the_model_that_was_saved(tmp_path):
    import open_clip

    torch.manual_seed(0)
    model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None)
    model.eval()
    cfg = open_clip.get_model_config("ViT-B-32")
    save_open_clip_dir(model, cfg, tmp_path / "vitb32")
    backbone = load(f"local-dir:{tmp_path / 'vitb32'}", device="cpu")
    assert backbone.dim == 512 and backbone.device == torch.device("cpu")
    images = [im for im, _ in (ShapesWorld("test", size=2)[i] for i in range(2))]
    expected = model.encode_image(torch.stack([preprocess(im) for im in images]))
    assert torch.allclose(backbone.encode_images(images), expected, atol=1e-5)
    tokens = open_clip.get_tokenizer("ViT-B-32")(["a red circle"])
    assert torch.allclose(backbone.encode_texts(["a red circle"]), model.encode_text(tokens), atol=1e-5)


def test_fingerprint_is_stable_and_weight_sensitive(tmp_path):
    a = load(f"local-dir:{make_tiny_clip_dir(tmp_path / 'a', seed=0)}")
    b = load(f"local-dir:{make_tiny_clip_dir(tmp_path / 'b', seed=0)}")
    c = load(f"local-dir:{make_tiny_clip_dir(tmp_path / 'c', seed=1)}")
    assert a.fingerprint == b.fingerprint != c.fingerprint
    assert len(a.fingerprint) == 32


def test_embeddings_are_raw_and_accept_tensors(tiny_backbone):
    images = [ShapesWorld("test", size=3)[i][0] for i in range(3)]
    from_pil = tiny_backbone.encode_images(images)
    from_tensor = tiny_backbone.encode_images(torch.stack([tiny_backbone.preprocess(im) for im in images]))
    assert from_pil.shape == (3, tiny_backbone.dim) and torch.equal(from_pil, from_tensor)
    assert not torch.allclose(from_pil.norm(dim=1), torch.ones(3))  # not normalised
    assert tiny_backbone.encode_texts(["a red shape", "a circle"]).shape == (2, tiny_backbone.dim)


@pytest.mark.parametrize(
    "spec, error, message",
    [
        ("resnet", ValueError, "no scheme"),
        ("hub:foo", ValueError, "unknown backbone scheme"),
        ("zoo:nope", ValueError, "the zoo has"),
        ("open_clip:NoSuchNet/openai", ValueError, "open_clip has no model"),
        ("open_clip:RN50/not-a-tag", ValueError, "no pretrained tag"),
    ],
)
def test_bad_specs_are_clear_errors(spec, error, message):
    with pytest.raises(error, match=message):
        load(spec)


def test_missing_pretrained_weights_offline_say_where_files_go(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(FileNotFoundError, match="local-dir"):
        load("open_clip:RN50/openai")


def test_local_dir_missing_pieces(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint directory"):
        load(f"local-dir:{tmp_path / 'absent'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="open_clip_config.json"):
        load(f"local-dir:{tmp_path / 'empty'}")
    folder = make_tiny_clip_dir(tmp_path / "noweights")
    (folder / "open_clip_model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="no weights"):
        load(f"local-dir:{folder}")
    (folder / "open_clip_config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load(f"local-dir:{folder}")


def test_zoo_model_not_built_names_the_build_command(isolated_home, monkeypatch):
    from conceptlab.zoo import catalog

    monkeypatch.setattr(catalog, "_PACKAGE_WEIGHTS", isolated_home / "nowhere")
    with pytest.raises(FileNotFoundError, match="conceptlab zoo build shapes-clip"):
        load("zoo:shapes-clip")


def test_parse_spec():
    assert parse_spec("open_clip:ViT-B-32/laion2b_s34b_b79k") == ("open_clip", "ViT-B-32/laion2b_s34b_b79k")
    assert parse_spec("local-dir:/a/b:c") == ("local-dir", "/a/b:c")
