"""The ``sae`` concept source of declarative runs: Discover-then-Name's latents as a ConceptBank.

``[concepts] source = "sae"`` trains a sparse autoencoder on one split's cached embeddings with
ShapesWorld's recommended settings (``conceptlab.data.SAE_SETTINGS``, centring included; every
key can be overridden), names its latents against the vocabulary and returns them as a bank.

A DN-CBM needs that very SAE for its concept scores, but a run hands a method only the bank; so
the SAE is saved in sae-lens's format under ``$CONCEPTLAB_HOME/discovery/probe-sae/<hash>`` (the
hash covers the embeddings and every SAE setting, so a re-run reuses it) and the bank's
provenance names that folder (``sae_path``) and the settings (``sae_settings``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from conceptlab.concepts.sources.base import ConceptSourceError
from conceptlab.data.shapes_facts import SAE_SETTINGS
from conceptlab.discovery.runs import discover, discovery_root, sae_params
from conceptlab.discovery.sae import SAE_CFG_FILE, SparseAutoencoder
from conceptlab.registry import register_concept_source

__all__ = ["SAE_SOURCE_KEYS", "build_sae_bank", "sae_cache_folder"]

#: [concepts] keys of ``source = "sae"`` and their defaults
SAE_SOURCE_KEYS: dict[str, Any] = {"split": "train", **SAE_SETTINGS}


def sae_cache_folder(embeddings: Any, settings: Mapping[str, Any]) -> Path:
    """``$CONCEPTLAB_HOME/discovery/probe-sae/<hash of the embeddings and the SAE settings>``."""
    digest = hashlib.sha256(np.ascontiguousarray(embeddings, dtype=np.float32).tobytes())
    digest.update(json.dumps(dict(settings), sort_keys=True, default=str).encode())
    return discovery_root() / "probe-sae" / digest.hexdigest()[:24]


@register_concept_source(
    "sae", keys=SAE_SOURCE_KEYS,
    description="sparse-autoencoder latents of the split's embeddings, named against the vocabulary (Discover-then-Name)",
)
def build_sae_bank(config: Mapping[str, Any], context: Any):
    """Train (or reuse) the SAE on ``config["split"]``'s embeddings, name its latents, return the bank.

    A split that the run does not embed, or an unknown key, is a :class:`ConceptSourceError` (a
    ValueError) naming it."""
    from conceptlab.concepts import ConceptBank
    from conceptlab.concepts.text import image_embedding_space

    config = {**SAE_SOURCE_KEYS, **dict(config)}
    split = config.pop("split")
    if split not in context.embeddings:
        raise ConceptSourceError(f"split = {split!r} is not among this run's splits {sorted(context.embeddings)}")
    embeddings = context.embeddings[split]
    embeddings = np.asarray(embeddings.detach().cpu() if hasattr(embeddings, "detach") else embeddings, dtype=np.float32)
    try:
        params = sae_params(config)
    except ValueError as error:  # an unknown key
        raise ConceptSourceError(str(error)) from None
    params.pop("progress", None)
    folder = sae_cache_folder(embeddings, params)
    sae = SparseAutoencoder.load(folder) if (folder / SAE_CFG_FILE).is_file() else None
    run = discover(embeddings, context.backbone, config, sae=sae, provenance={"split": split})
    if sae is None:
        run.sae.save(folder)
    bank = run.names.to_bank(space=image_embedding_space(context.backbone.spec))
    return ConceptBank(list(bank), provenance={**bank.provenance, "sae_path": str(folder), "sae_settings": params})
