"""Home's store panel: the first run's progress (``conceptlab demo`` embeds in the background while
the app is served) and deleting store entries by their key."""

from __future__ import annotations

import time

import streamlit as st

from conceptlab.experiments import read_status
from conceptlab.store import ActivationStore
from conceptlab.utils import human_bytes
from workbench.loaders import clear_caches

__all__ = ["delete_entries", "first_run_progress"]

#: seconds between refreshes of the progress panel while the first run is embedding
REFRESH_S = 2.0
DELETE_KEY = "cl.home.delete"


def first_run_progress(store: ActivationStore) -> None:
    """The first run's progress, refreshed every REFRESH_S seconds while it runs (nothing when
    there was no first run in this store)."""
    status = read_status(store)
    if status is None:
        return
    if status["alive"]:
        _live_progress(store)
        return
    pending = [i["label"] for i in status["items"] if i.get("state") not in ("stored", "computed")]
    if status.get("state") == "finished":
        took = status.get("finished_at", status["updated"]) - status["started"]
        st.caption(f"First run: the {len(status['items'])} entries the default pages and probes read are stored (prepared in {took:.0f} s).")
    elif pending:
        st.warning(
            f"The first run stopped ({status.get('error') or status.get('state')}) with {len(pending)} entr{'y' if len(pending) == 1 else 'ies'} "
            "left; a page computes what it needs on its first visit, and `make app` resumes the rest.", icon=":material/warning:",
        )


@st.fragment(run_every=REFRESH_S)
def _live_progress(store: ActivationStore) -> None:
    status = read_status(store)
    if status is None or not status["alive"]:
        st.rerun()  # finished (or stopped): redraw the whole page once, with the store's new entries
        return
    share = status["done_rows"] / max(status["total_rows"], 1)
    current = next((i for i in status["items"] if i.get("state") == "computing"), None)
    doing = f" · now {current['label']}: {current['done']} / {current['rows']}" if current else ""
    st.progress(min(share, 1.0), text=f"First run: embedding what the pages read in the background, {status['done_rows']} / {status['total_rows']} images{doing}")
    st.caption("Pages work meanwhile; a page that needs an entry still being written waits for it.")


def delete_entries(store: ActivationStore, entries: list[dict]) -> None:
    """Pick entries by key and delete them, after a confirmation. The picker's options are the
    full keys (stable ids), so a deletion never hits another entry when the list changes."""
    by_key = {e["key"]: e for e in entries}
    with st.expander("Delete store entries", expanded=False):
        chosen = st.multiselect(
            "Entries to delete", list(by_key), key=DELETE_KEY,
            format_func=lambda key: f"{key[:12]} · {by_key[key].get('dataset', '?')} · {human_bytes(by_key[key]['bytes'])}",
        )
        chosen = [key for key in chosen if key in by_key]
        if not chosen:
            st.caption("Deleted entries are computed again when a page needs them.")
            return
        total = sum(by_key[k]["bytes"] for k in chosen)
        confirm = st.checkbox(f"Yes, delete {len(chosen)} entr{'y' if len(chosen) == 1 else 'ies'} ({human_bytes(total)})", key=f"{DELETE_KEY}.confirm")
        if st.button("Delete", type="primary", disabled=not confirm, key=f"{DELETE_KEY}.button"):
            deleted = []
            for key in chosen:
                try:
                    store.delete(key)
                except KeyError:  # deleted meanwhile (another tab, the CLI)
                    continue
                deleted.append(key[:12])
            for widget in (DELETE_KEY, f"{DELETE_KEY}.confirm"):
                st.session_state.pop(widget, None)
            clear_caches()  # no page keeps serving a deleted entry from memory
            st.session_state["cl.home.deleted"] = (deleted, time.time())
            st.rerun()
