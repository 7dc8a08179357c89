"""Widgets every page can use: page setup, image grid and captions, attribute filters, store table, page links."""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path

import pandas as pd
import streamlit as st
from PIL import Image

from conceptlab.utils import human_bytes
from workbench.state import Selection, sidebar_selection

__all__ = ["FILTER_COLUMNS", "attribute_filters", "image_caption", "image_grid", "page_links", "page_setup", "store_table"]

PAGES_DIR = Path(__file__).resolve().parents[1] / "pages"
#: ground-truth columns the analyst can filter on, in display order
FILTER_COLUMNS = ("class_name", "shape", "color", "size", "fill", "background", "position")
CURRENT_ROW_STYLE = "background-color: rgba(33, 195, 84, 0.12)"


def page_setup(title: str) -> Selection:
    """Page config, title and the sidebar's workspace controls; returns the selection."""
    st.set_page_config(page_title=f"{title} · conceptlab", page_icon=":material/category:", layout="wide")
    st.title(title)
    return sidebar_selection()


def image_grid(
    images: Sequence[Image.Image], captions: Sequence[str] | None = None, columns: int = 8, pixels: int = 128
) -> None:
    """Images in rows of ``columns``, each with its caption; small images are upscaled crisply."""
    captions = list(captions) if captions is not None else [None] * len(images)
    if len(captions) != len(images):
        raise ValueError(f"{len(captions)} captions for {len(images)} images")
    for start in range(0, len(images), columns):
        row = st.columns(columns)
        for column, image, caption in zip(row, images[start : start + columns], captions[start : start + columns]):
            if image.width < pixels:
                image = image.resize((pixels, pixels * image.height // image.width), Image.NEAREST)
            column.image(image, caption=caption, width="stretch")


def image_caption(index: int, row: Mapping[str, object], score: float | None = None) -> str:
    """``#12 ruby disc · large red solid circle · white, top-left`` (plus the score when given)."""
    look = f"{row['size']} {row['color']} {row['fill']} {row['shape']}"
    where = f"{row['background']}, {row['position']}"
    text = f"#{index} {row['class_name']} · {look} · {where}"
    return text if score is None else f"{score:+.4f} · {text}"


def attribute_filters(attributes: pd.DataFrame, key: str, columns: Sequence[str] = FILTER_COLUMNS) -> dict[str, list[str]]:
    """One multiselect per ground-truth column (empty: any value); returns column -> chosen values."""
    chosen = {}
    slots = st.columns(len(columns))
    for slot, column in zip(slots, columns):
        options = sorted(attributes[column].unique())
        label = "class" if column == "class_name" else column
        chosen[column] = slot.multiselect(label, options, key=f"{key}.{column}", placeholder="any")
    return chosen


def _when(created: str | None) -> str:
    if not created:
        return ""
    try:
        return datetime.fromisoformat(created).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return created


def store_table(entries: list[dict], current_key: str | None = None) -> pd.DataFrame:
    """Show the store's entries (newest first) as a table, the current selection's highlighted.

    Returns the full table (with ``selected``, ``rows`` and ``dim`` columns that are not shown).
    """
    rows = [
        {
            "selected": entry["key"] == current_key,
            "key": entry["key"][:12],
            "backbone": entry.get("backbone", "?"),
            "dataset": entry.get("dataset", "?"),
            "activations": f"{entry.get('capture', '?')} · {entry.get('rows')} × {entry.get('dim')} {entry.get('dtype')}",
            "rows": entry.get("rows"),
            "dim": entry.get("dim"),
            "size": human_bytes(entry["bytes"]),
            "computed": _when(entry.get("created")),
            "complete": bool(entry.get("complete")),
            "problem": entry.get("error", ""),
        }
        for entry in reversed(entries)
    ]
    table = pd.DataFrame(rows)
    shown = [c for c in table.columns if c not in ("selected", "rows", "dim") and (c != "problem" or any(table[c]))]
    styled = table.style.apply(lambda row: [CURRENT_ROW_STYLE if row["selected"] else ""] * len(row), axis=1)
    st.dataframe(
        styled,
        hide_index=True,
        column_order=shown,
        column_config={
            "key": st.column_config.TextColumn("key", help="first 12 hex digits of the content key", width=110),
            "backbone": st.column_config.TextColumn("backbone", width=170),
            "dataset": st.column_config.TextColumn("dataset", width=170),
            "activations": st.column_config.TextColumn("activations", width=160),
            "size": st.column_config.TextColumn("size", width="small"),
            "computed": st.column_config.TextColumn("computed", width=125),
            "complete": st.column_config.CheckboxColumn("complete", width="small"),
        },
    )
    if table["selected"].any():
        st.caption("The highlighted row holds the current selection's embeddings.")
    return table


def _page_order(path: Path) -> tuple[int, str]:
    number, _, rest = path.stem.partition("_")
    return (int(number), rest) if number.isdigit() and rest else (10**6, path.stem)


def _page_title(path: Path) -> str:
    return _page_order(path)[1].replace("_", " ")


def page_links() -> None:
    """A link and the first docstring line of every page in ``dashboards/pages/``, in file order."""
    for path in sorted(PAGES_DIR.glob("*.py"), key=_page_order):
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        st.page_link(f"pages/{path.name}", label=_page_title(path), icon=":material/arrow_forward:")
        if doc:
            st.caption(doc.strip().splitlines()[0])
