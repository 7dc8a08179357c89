"""Shared pieces of the conceptlab app: the sidebar selection, cached loaders and widgets.

Every page starts the same way::

    import sys
    from pathlib import Path
    DASHBOARDS = str(Path(__file__).resolve().parents[1])  # for `import lib`
    if DASHBOARDS not in sys.path:
        sys.path.insert(0, DASHBOARDS)

    import lib
    selection = lib.page_setup("Embeddings")     # page config + sidebar; returns the Selection

then loads what it needs through the cached loaders (``lib.load_backbone``, ``lib.load_dataset``,
``lib.load_embeddings``) and draws with the widgets (``lib.image_grid``). A new page is one more
file in ``dashboards/pages/`` named ``N_Title.py``; the Home page lists it by itself.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_CHECKOUT = str(Path(__file__).resolve().parents[2])
if importlib.util.find_spec("conceptlab") is None and _CHECKOUT not in sys.path:  # a checkout, not installed
    sys.path.append(_CHECKOUT)

from lib.analysis import (  # noqa: E402
    family_of_text,
    filter_mask,
    ground_truth_auroc,
    human_bytes,
    image_caption,
    pca_2d,
    rank_indices,
    zero_shot_scores,
)
from lib.loaders import (  # noqa: E402
    BackboneUnavailable,
    clear_caches,
    concept_vector,
    get_store,
    load_backbone,
    load_dataset,
    load_embeddings,
    load_map,
    try_load_backbone,
)
from lib.state import ENV_BACKBONE, ENV_DATASET, Selection, current_selection, default_selection, sidebar_selection  # noqa: E402
from lib.widgets import attribute_filters, image_grid, page_links, page_setup, store_table  # noqa: E402

__all__ = [
    "BackboneUnavailable",
    "ENV_BACKBONE",
    "ENV_DATASET",
    "Selection",
    "attribute_filters",
    "clear_caches",
    "concept_vector",
    "current_selection",
    "default_selection",
    "family_of_text",
    "filter_mask",
    "get_store",
    "ground_truth_auroc",
    "human_bytes",
    "image_caption",
    "image_grid",
    "load_backbone",
    "load_dataset",
    "load_embeddings",
    "load_map",
    "page_links",
    "page_setup",
    "pca_2d",
    "rank_indices",
    "sidebar_selection",
    "store_table",
    "try_load_backbone",
    "zero_shot_scores",
]
