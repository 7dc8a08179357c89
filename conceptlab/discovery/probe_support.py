"""Discover-then-Name in declarative probes: an ``sae`` concept source and a ``dncbm`` method.

The source trains a sparse autoencoder on a split's cached embeddings, names its latents against
the vocabulary and returns them as a ConceptBank. The DN-CBM needs that very SAE for its concept
scores, but a probe hands a method only the bank; so the SAE is saved in sae-lens's format under
``$CONCEPTLAB_HOME/discovery/probe-sae/<hash>`` (the hash covers the embeddings and every SAE
setting, so a re-run reuses it) and the bank's provenance names that folder.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from conceptlab.utils import conceptlab_home

__all__ = ["SAE_SOURCE_KEYS", "build_sae_bank", "dncbm_factory", "register"]

#: [concepts] keys of ``source = "sae"`` and their defaults: the settings measured best for naming
#: on ShapesWorld (data_cards/vocabulary_dn.md; conceptlab/discovery/centering.py)
SAE_SOURCE_KEYS: dict[str, Any] = {
    "split": "train",
    "n_latents": 64,
    "l1": 1e-2,
    "steps": 400,
    "batch_size": 1024,
    "lr": 5e-4,
    "seed": 49,
    # naming prompts: the zoo's caption grammar; [] names with bare words, as DN-CBM does
    "templates": ["a {} shape", "a {}", "a shape on a {} background", "a shape at the {}"],
    "top_k": 5,
}

DNCBM_PARAMS: dict[str, Any] = {"lam": 1.0, "lr": 1e-3, "epochs": 200, "batch_size": 512, "val_fraction": 0.1, "seed": 42}


def _cache_folder(embeddings: np.ndarray, settings: dict[str, Any]) -> Path:
    digest = hashlib.sha256(np.ascontiguousarray(embeddings, dtype=np.float32).tobytes())
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return conceptlab_home() / "discovery" / "probe-sae" / digest.hexdigest()[:24]


def build_sae_bank(config: dict[str, Any], context: dict[str, Any]):
    """The ``sae`` concept source: train (or reuse) an SAE, name its latents, return the bank."""
    from conceptlab.concepts import ConceptBank
    from conceptlab.concepts.text import image_embedding_space
    from conceptlab.discovery.naming import name_latents
    from conceptlab.discovery.sae import SparseAutoencoder

    split = config["split"]
    if split not in context["embeddings"]:
        raise ValueError(f"[concepts] split {split!r} is not among the probe's splits {sorted(context['embeddings'])}")
    embeddings = np.asarray(context["embeddings"][split], dtype=np.float32)
    settings = {k: config[k] for k in ("n_latents", "l1", "steps", "batch_size", "lr", "seed")}
    folder = _cache_folder(embeddings, settings)
    if (folder / "cfg.json").is_file():
        sae = SparseAutoencoder.load(folder)
    else:
        sae = SparseAutoencoder(**settings, progress=False).fit(embeddings)
        sae.save(folder)
    templates = list(config["templates"] or []) or None
    names = name_latents(sae, context["backbone"], templates=templates, top_k=config["top_k"])
    bank = names.to_bank(space=image_embedding_space(context["backbone"].spec))
    return ConceptBank(list(bank), provenance={**bank.provenance, "sae_path": str(folder), "sae_settings": settings})


def dncbm_factory(bank, class_names, **params):
    """A DN-CBM over the SAE that built ``bank`` (found through the bank's provenance)."""
    from conceptlab.cbm.dncbm import DNCBM
    from conceptlab.discovery.sae import SparseAutoencoder

    path = bank.provenance.get("sae_path")
    if not path:
        raise ValueError('method "dncbm" needs the concepts of source = "sae" (its bank names the SAE it came from)')
    return DNCBM(bank, sae=SparseAutoencoder.load(path), class_names=class_names, **params)


def register() -> None:
    """Add ``sae`` and ``dncbm`` to the probe registries."""
    from conceptlab.probes import register_concept_source, register_method

    register_concept_source(
        "sae", build_sae_bank, SAE_SOURCE_KEYS,
        "sparse-autoencoder latents of the split's embeddings, named against the vocabulary (Discover-then-Name)",
    )
    register_method(
        "dncbm", dncbm_factory, DNCBM_PARAMS,
        "DN-CBM: bias-free sparse linear probe on SAE activations (needs source = \"sae\")",
    )
