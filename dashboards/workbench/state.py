"""The workspace selection (backbone + dataset), kept in st.session_state across pages.

The dataset is a ShapesWorld slice (the default) or the user's own data named by a dataset spec
(``folder:PATH``, ``csv:PATH``, ``hf:PATH``; see :func:`conceptlab.data.load`).

Widgets on different pages are different widgets to Streamlit, so their values are lost when
the analyst switches page. The selection therefore lives under plain session-state keys
(``cl.backbone``, ``cl.split``, ``cl.size``, ``cl.seed``); the sidebar widgets start from them and
write back to them on every run. Tests (and later pages) may set those keys directly.

Defaults come from the environment so a test or a demo can point the app elsewhere:

- ``CONCEPTLAB_DEFAULT_BACKBONE``: a backbone spec (default ``zoo:shapes-clip``)
- ``CONCEPTLAB_DEFAULT_DATASET``: ``SPLIT[:SIZE[:SEED]]`` (default ``test:500:0``) or a dataset
  spec such as ``folder:/data/birds``
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import streamlit as st

from conceptlab.backbones import scheme_usage
from conceptlab.data import APP_SEED, APP_SIZES, SPLITS, DatasetError, dataset_kind_usage, parse_dataset_spec

__all__ = ["ENV_BACKBONE", "ENV_DATASET", "Selection", "default_selection", "current_selection", "sidebar_selection"]

ENV_BACKBONE = "CONCEPTLAB_DEFAULT_BACKBONE"
ENV_DATASET = "CONCEPTLAB_DEFAULT_DATASET"
BUILTIN_BACKBONE = "zoo:shapes-clip"
BUILTIN_DATASET = ("test", APP_SIZES["test"], APP_SEED)
MAX_SIZE = 20000

#: session-state key of each selection field
KEYS = {"backbone": "cl.backbone", "split": "cl.split", "size": "cl.size", "seed": "cl.seed", "dataset_spec": "cl.dataset_spec"}
SOURCES = ("ShapesWorld (embedded)", "Your own data")


@dataclass(frozen=True)
class Selection:
    """What every page works on: one backbone spec and one ShapesWorld slice."""

    backbone: str
    split: str
    size: int
    seed: int
    dataset_spec: str = ""  # the user's own data; empty: the ShapesWorld slice

    @property
    def dataset_label(self) -> str:
        if self.dataset_spec:
            return f"`{self.dataset_spec}`"
        return f"ShapesWorld {self.split}, {self.size} images, seed {self.seed}"

    @property
    def is_shapesworld(self) -> bool:
        return not self.dataset_spec


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


def _is_spec(text: str) -> bool:
    return text.split(":", 1)[0] in dataset_kind_usage() and ":" in text


def check_spec(spec: str) -> str:
    """A dataset spec's form checked (kind, options) without loading it; ValueError says what is wrong."""
    try:
        parse_dataset_spec(spec)
    except DatasetError as error:
        raise ValueError(str(error)) from None
    return spec


def default_selection() -> Selection:
    """The selection a fresh session starts with (environment, else built-in defaults)."""
    backbone = os.environ.get(ENV_BACKBONE, "").strip() or BUILTIN_BACKBONE
    text = os.environ.get(ENV_DATASET, "").strip()
    if text and _is_spec(text):
        return Selection(backbone, *BUILTIN_DATASET, dataset_spec=check_spec(text))
    split, size, seed = _parse_dataset(text) if text else BUILTIN_DATASET
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
        help="Any backbone spec:\n\n" + "\n\n".join(f"- `{form}`" for form in scheme_usage().values()),
    ).strip()
    bar.caption(f"Default: `{BUILTIN_BACKBONE}`")
    bar.subheader("Dataset")
    source = bar.radio("Images", SOURCES, index=1 if current.dataset_spec else 0, key="cl.source_input", horizontal=True)
    spec = ""
    if source == SOURCES[1]:
        typed = bar.text_input(
            "Dataset spec", value=current.dataset_spec or st.session_state.get("cl.last_spec", ""), key="cl.spec_input",
            placeholder="folder:/path/to/images",
            help="Your images, labels and concept annotations:\n\n" + "\n\n".join(f"- `{form}`" for form in dataset_kind_usage().values()),
        ).strip()
        try:
            spec = check_spec(typed) if typed else ""
        except ValueError as error:
            bar.error(str(error).splitlines()[0], icon=":material/error:")
        if spec:
            st.session_state["cl.last_spec"] = spec
        else:
            bar.caption("Type a spec; until then the pages use the ShapesWorld slice below.")
    split = bar.selectbox("ShapesWorld split", SPLITS, index=SPLITS.index(current.split), key="cl.split_input", disabled=bool(spec))
    size = bar.number_input("Images", 1, MAX_SIZE, int(current.size), step=100, key="cl.size_input", disabled=bool(spec))
    seed = bar.number_input("Seed", 0, 2**31 - 1, int(current.seed), step=1, key="cl.seed_input", disabled=bool(spec))
    selection = Selection(backbone or current.backbone, split, int(size), int(seed), dataset_spec=spec)
    for field, key in KEYS.items():
        st.session_state[key] = getattr(selection, field)
    return selection
