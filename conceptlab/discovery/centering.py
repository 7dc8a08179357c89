"""Bridging CLIP's modality gap before naming SAE latents (an option; DN-CBM itself does neither).

CLIP image and text embeddings sit in two narrow cones around different means. An SAE decoder
row is a *displacement* in image space, while a raw text embedding is mostly its cone's mean
plus a small word-specific part; cosine(decoder row, text) is therefore dominated by how the
row lines up with the text mean, the same for every word. Two helpers:

- :func:`centre_rows` -- subtract a mean from every row and L2-normalise again.
- :func:`centred_vocabulary` -- vocabulary text embeddings with a text mean removed; the mean is
  that of ``reference`` texts (e.g. the captions the backbone was trained on) or, by default,
  of the vocabulary itself.

Measured on ShapesWorld / zoo:shapes-clip (issue 6; naming precision on 2000 test images, 5 SAE
settings): removing the *vocabulary's* text mean makes naming much worse (0.45-0.52 -> 0.06-0.15:
most vocabulary words are out of the tiny CLIP's caption domain, so their mean is not the
caption cone's centre); removing the mean of the 25 caption-grammar prompts is neutral (0.30-0.52
vs 0.35-0.49). What helps is a small, sparse SAE and the caption grammar as templates
(:data:`SHAPES_TEMPLATES`, +0.02-0.07). These helpers stay as options for backbones where the
gap matters; they are not the default.

Training the SAE on mean-centred image embeddings is the image-side half: sae-lens's ``b_dec``
(the pre-encoder bias, DN-CBM's ``b_pre``) starts at 0 under DN-CBM's init and, measured on
ShapesWorld, stays tiny (‖b_dec‖ ≈ 0.3-1.5 against ‖mean image‖ ≈ 45), so it does **not** absorb
the image mean; subtract it yourself (``sae.fit(X - X.mean(0))`` and encode ``X - mean``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from conceptlab.data.shapes_facts import NAMING_TEMPLATES
from conceptlab.utils import as_matrix

__all__ = ["centre_rows", "centred_vocabulary", "SHAPES_TEMPLATES"]

#: the zoo CLIP's caption grammar (kept under its old name; the home is ``conceptlab.data.NAMING_TEMPLATES``)
SHAPES_TEMPLATES = NAMING_TEMPLATES


def centre_rows(matrix: Any, mean: Any = None) -> torch.Tensor:
    """Rows of ``matrix`` (N, d) minus ``mean`` (d,) (their own mean by default), unit-normalised."""
    M = as_matrix(matrix, "rows", single_row=False)
    mu = M.mean(0) if mean is None else torch.as_tensor(mean, dtype=torch.float32).reshape(-1)
    if mu.shape != (M.shape[1],):
        raise ValueError(f"the mean has shape {tuple(mu.shape)} but the rows have dimension {M.shape[1]}")
    C = M - mu
    norms = C.norm(dim=1, keepdim=True)
    if bool((norms == 0).any()):
        raise ValueError("a row equals the mean: it has no direction once centred")
    return C / norms


@torch.no_grad()
def centred_vocabulary(
    backbone: Any,
    vocabulary: Sequence[str],
    templates: Sequence[str] | None = None,
    reference: Sequence[str] | None = None,
    batch_size: int = 256,
) -> torch.Tensor:
    """(V, d) unit text embeddings of ``vocabulary`` with a text mean removed, for ``name_latents(vocab_embeddings=...)``.

    Args:
        backbone: the image-text backbone (its text encoder).
        vocabulary: the words.
        templates: prompt templates (``SHAPES_TEMPLATES`` for the zoo CLIP), ensembled per word.
        reference: texts whose mean unit embedding is removed (e.g. the training captions); by
            default the vocabulary's own mean.
    """
    from conceptlab.discovery.naming import embed_vocabulary

    T = embed_vocabulary(backbone, vocabulary, templates, batch_size=batch_size)
    if reference is None:
        return centre_rows(T)
    R = embed_vocabulary(backbone, list(dict.fromkeys(reference)), None, batch_size=batch_size)
    return centre_rows(T, R.mean(0))
