"""Widget values that survive a page switch.

Streamlit forgets a widget's value when a run does not draw the widget: switching to another page
(or stopping a page early) wipes what the analyst typed. :func:`remember` keeps a shadow copy of
each widget value under ``_kept.<key>`` (a plain session-state key, which Streamlit never wipes)
and puts it back the next time the page runs. Call it at the top of a page, before its widgets::

    workbench.remember("cl.embeddings.", exclude=("cl.embeddings.map_chart",))

Buttons, charts with selections and file uploaders cannot be set through session state: list
their keys in ``exclude``.
"""

from __future__ import annotations

from collections.abc import Iterable

import streamlit as st

__all__ = ["SHADOW", "remember"]

SHADOW = "_kept."


def remember(prefix: str, exclude: Iterable[str] = ()) -> None:
    """Keep every widget value whose key starts with ``prefix`` across page switches (module docstring)."""
    excluded = set(exclude)
    state = st.session_state
    for key in [k for k in state if isinstance(k, str) and k.startswith(prefix) and k not in excluded]:
        state[SHADOW + key] = state[key]
    for shadow in [k for k in state if isinstance(k, str) and k.startswith(SHADOW + prefix)]:
        key = shadow[len(SHADOW):]
        if key not in state and key not in excluded:
            state[key] = state[shadow]
