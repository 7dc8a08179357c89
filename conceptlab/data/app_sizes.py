"""The ShapesWorld sizes the app's pages start with: :data:`~conceptlab.data.shapes_facts.APP_SIZES`,
or smaller ones from the environment (tests and quick demos).

The pages, ``conceptlab demo`` and the first-run precompute all read these functions, so what the
first run embeds is what the pages read.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from conceptlab.data.shapes_facts import APP_SEED, APP_SIZES

__all__ = ["ENV_CBM_SIZES", "ENV_DISCOVERY_TRAIN", "app_requests", "cbm_page_sizes", "discovery_train_size"]

#: ``TRAIN:EVAL`` image counts of the Concept bottleneck and Concept set pages
ENV_CBM_SIZES = "CONCEPTLAB_CBM_SIZES"
#: train images of the Discovered concepts page
ENV_DISCOVERY_TRAIN = "CONCEPTLAB_DISCOVERY_TRAIN"


def cbm_page_sizes(environ: Mapping[str, str] = os.environ) -> tuple[int, int]:
    """(train, val/shifted) image counts: ``$CONCEPTLAB_CBM_SIZES`` (``TRAIN:EVAL``) or APP_SIZES'."""
    text = environ.get(ENV_CBM_SIZES, "").strip()
    if not text:
        return APP_SIZES["train"], APP_SIZES["val"]
    try:
        train, evaluation = (int(part) for part in text.split(":"))
    except ValueError:
        raise ValueError(f"{ENV_CBM_SIZES}={text!r}: expected TRAIN:EVAL, two integers") from None
    if train < 100 or evaluation < 50:
        raise ValueError(f"{ENV_CBM_SIZES}={text!r}: at least 100 train and 50 evaluation images")
    return train, evaluation


def discovery_train_size(environ: Mapping[str, str] = os.environ) -> int:
    """Train images of the Discovered concepts page: ``$CONCEPTLAB_DISCOVERY_TRAIN`` or APP_SIZES'."""
    text = environ.get(ENV_DISCOVERY_TRAIN, "").strip()
    if not text:
        return APP_SIZES["train"]
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{ENV_DISCOVERY_TRAIN}={text!r}: expected an integer") from None
    if value < 100:
        raise ValueError(f"{ENV_DISCOVERY_TRAIN}={text!r}: at least 100 train images")
    return value


def app_requests(environ: Mapping[str, str] = os.environ) -> list[tuple[str, int, int]]:
    """``(split, size, seed)`` of every ShapesWorld slice the default pages read, the first page's first."""
    train, evaluation = cbm_page_sizes(environ)
    wanted = [
        ("test", APP_SIZES["test"], APP_SEED),  # the Embeddings page (the sidebar's default selection)
        ("train", train, APP_SEED), ("val", evaluation, APP_SEED), ("shifted", evaluation, APP_SEED),
        ("train", discovery_train_size(environ), APP_SEED),
    ]
    return list(dict.fromkeys(wanted))
