"""The workspace selection (backbone + ShapesWorld slice), kept in st.session_state across pages.

Widgets on different pages are different widgets to Streamlit, so their values are lost when
the analyst switches page. The selection therefore lives under plain session-state keys
(``cl.backbone``, ``cl.split``, ``cl.size``, ``cl.seed``); the sidebar widgets start from them and
write back to them on every run. Tests (and later pages) may set those keys directly.

Defaults come from the environment so a test or a demo can point the app elsewhere:

- ``CONCEPTLAB_DEFAULT_BACKBONE``: a backbone spec (default ``zoo:shapes-clip``)
- ``CONCEPTLAB_DEFAULT_DATASET``: ``SPLIT[:SIZE[:SEED]]`` (default ``test:500:0``)
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import streamlit as st

from conceptlab.backbones import SCHEMES
from conceptlab.data import SPLITS

__all__ = ["ENV_BACKBONE", "ENV_DATASET", "Selection", "default_selection", "current_selection", "sidebar_selection"]

ENV_BACKBONE = "CONCEPTLAB_DEFAULT_BACKBONE"
ENV_DATASET = "CONCEPTLAB_DEFAULT_DATASET"
BUILTIN_BACKBONE = "zoo:shapes-clip"
BUILTIN_DATASET = ("test", 500, 0)
MAX_SIZE = 20000

#: session-state key of each selection field
KEYS = {"backbone": "cl.backbone", "split": "cl.split", "size": "cl.size", "seed": "cl.seed"}


@dataclass(frozen=True)
class Selection:
    """What every page works on: one backbone spec and one ShapesWorld slice."""

    backbone: str
    split: str
    size: int
    seed: int

    @property
    def dataset_label(self) -> str:
        return f"ShapesWorld {self.split}, {self.size} images, seed {self.seed}"


def _parse_dataset(text: str) -> tuple[str, int, int]:
    parts = text.split(":")
    if not 1 <= len(parts) <= 3 or parts[0] not in SPLITS:
        raise ValueError(f"{ENV_DATASET}={text!r}: expected SPLIT[:SIZE[:SEED]] with SPLIT one of {', '.join(SPLITS)}")
    try:
        size = int(parts[1]) if len(parts) > 1 else BUILTIN_DATASET[1]
        seed = int(parts[2]) if len(parts) > 2 else BUILTIN_DATASET[2]
    except ValueError:
        raise ValueError(f"{ENV_DATASET}={text!r}: SIZE and SEED must be integers") from None
    if not 1 <= size <= MAX_SIZE:
        raise ValueError(f"{ENV_DATASET}={text!r}: SIZE must be between 1 and {MAX_SIZE}")
    return parts[0], size, seed


def default_selection() -> Selection:
    """The selection a fresh session starts with (environment, else built-in defaults)."""
    backbone = os.environ.get(ENV_BACKBONE, "").strip() or BUILTIN_BACKBONE
    split, size, seed = _parse_dataset(os.environ[ENV_DATASET]) if os.environ.get(ENV_DATASET) else BUILTIN_DATASET
    return Selection(backbone, split, size, seed)


def current_selection() -> Selection:
    """The selection in session state, filling in defaults on first use."""
    missing = [field for field, key in KEYS.items() if key not in st.session_state]
    if missing:
        try:
            defaults = default_selection()
        except ValueError as error:
            st.error(f"{error}. Using the built-in defaults.")
            defaults = Selection(BUILTIN_BACKBONE, *BUILTIN_DATASET)
        for field in missing:
            st.session_state[KEYS[field]] = getattr(defaults, field)
    return Selection(**{field: st.session_state[key] for field, key in KEYS.items()})


def sidebar_selection() -> Selection:
    """Draw the workspace controls in the sidebar; store and return the selection."""
    current = current_selection()
    bar = st.sidebar
    bar.header("Workspace")
    backbone = bar.text_input(
        "Backbone spec",
        value=current.backbone,
        key="cl.backbone_input",
        help="Any backbone spec:\n\n" + "\n\n".join(f"- `{form}`" for form in SCHEMES.values()),
    ).strip()
    bar.caption(f"Default: `{BUILTIN_BACKBONE}`")
    bar.subheader("Dataset")
    split = bar.selectbox("ShapesWorld split", SPLITS, index=SPLITS.index(current.split), key="cl.split_input")
    size = bar.number_input("Images", 1, MAX_SIZE, int(current.size), step=100, key="cl.size_input")
    seed = bar.number_input("Seed", 0, 2**31 - 1, int(current.seed), step=1, key="cl.seed_input")
    selection = Selection(backbone or current.backbone, split, int(size), int(seed))
    for field, key in KEYS.items():
        st.session_state[key] = getattr(selection, field)
    return selection
