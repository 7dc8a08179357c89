"""The conceptlab app's page helpers: the sidebar selection, cached loaders and widgets.

Streamlit puts the folder of the script it runs (``dashboards/``) on ``sys.path``, so every page
starts the same way, with no path set-up::

    import workbench
    selection = workbench.page_setup("Embeddings")     # page config + sidebar; returns the Selection

then loads what it needs through the cached loaders (``workbench.load_backbone``,
``workbench.load_dataset``, ``workbench.load_embeddings``), computes with the library
(``conceptlab.analysis``, ``conceptlab.discovery``, ``conceptlab.metrics``) and draws with the
widgets (``workbench.image_grid``). This package only caches and draws: every number a page shows
comes from a library function a notebook can call. A new page is one more file in
``dashboards/pages/`` named ``N_Title.py``; the Home page lists it by itself.
"""

from __future__ import annotations

from workbench.loaders import (
    USER_FRACTIONS,
    BackboneUnavailable,
    SplitData,
    clear_caches,
    concept_vector,
    get_store,
    load_backbone,
    load_dataset,
    load_embeddings,
    load_map,
    load_split,
    text_bank,
    try_load_backbone,
)
from workbench.persist import SHADOW, remember
from workbench.state import ENV_BACKBONE, ENV_DATASET, Selection, current_selection, default_selection, sidebar_selection
from workbench.widgets import FILTER_COLUMNS, attribute_filters, image_caption, image_grid, page_links, page_setup, store_table

__all__ = [
    "BackboneUnavailable",
    "ENV_BACKBONE",
    "ENV_DATASET",
    "FILTER_COLUMNS",
    "SHADOW",
    "Selection",
    "SplitData",
    "attribute_filters",
    "clear_caches",
    "concept_vector",
    "current_selection",
    "default_selection",
    "get_store",
    "image_caption",
    "image_grid",
    "load_backbone",
    "load_dataset",
    "load_embeddings",
    "load_map",
    "USER_FRACTIONS",
    "load_split",
    "page_links",
    "page_setup",
    "remember",
    "sidebar_selection",
    "store_table",
    "text_bank",
    "try_load_backbone",
]
