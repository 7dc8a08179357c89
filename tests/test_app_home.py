"""Home: the first run's progress while it embeds, and deleting store entries by key (AppTest)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
import workbench  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402
from workbench.store_panel import DELETE_KEY  # noqa: E402

from conceptlab.backbones import load  # noqa: E402
from conceptlab.data import ShapesWorld  # noqa: E402
from conceptlab.experiments.precompute import STATUS_NAME  # noqa: E402
from conceptlab.store import ActivationStore  # noqa: E402

HOME = str(Path(__file__).resolve().parents[1] / "dashboards" / "Home.py")


@pytest.fixture()
def home_env(isolated_home, tiny_clip_dir, monkeypatch):
    import streamlit as st

    spec = f"local-dir:{tiny_clip_dir}"
    monkeypatch.setenv(workbench.ENV_BACKBONE, spec)
    monkeypatch.setenv(workbench.ENV_DATASET, "test:16:0")
    st.cache_data.clear()
    st.cache_resource.clear()
    store = ActivationStore(isolated_home / "store")
    backbone = load(spec)
    keys = {}
    for split in ("test", "val", "shifted"):
        dataset = ShapesWorld(split, size=8)
        store.get_or_compute(backbone, dataset, progress=False, num_workers=0)
        keys[split] = store.key(backbone, dataset)
    yield store, keys
    st.cache_data.clear()
    st.cache_resource.clear()


def run(app) -> AppTest:
    """Run an AppTest, or the app of a widget just changed; fail on any exception the page shows."""
    app = app.run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def test_home_deletes_exactly_the_chosen_entry(home_env):
    store, keys = home_env
    app = run(AppTest.from_file(HOME, default_timeout=120))
    picker = app.multiselect(key=DELETE_KEY)
    assert any(option.startswith(keys["val"][:12]) for option in picker.options)  # labelled by key prefix
    app = run(picker.select(keys["val"]))
    assert app.button(key=f"{DELETE_KEY}.button").disabled  # not before the confirmation
    app = run(app.checkbox(key=f"{DELETE_KEY}.confirm").check())
    app = run(app.button(key=f"{DELETE_KEY}.button").click())
    assert not store.contains(keys["val"])
    assert store.contains(keys["test"]) and store.contains(keys["shifted"])
    assert any(f"Deleted {keys['val'][:12]}" in str(s.value) for s in app.success)
    assert app.multiselect(key=DELETE_KEY).value == []  # the choice does not carry over to the changed list


def test_home_shows_the_first_runs_progress(home_env):
    store, _ = home_env
    status = {
        "pid": os.getpid(), "state": "running", "started": time.time(), "updated": time.time(),
        "items": [{"label": "a (app)", "rows": 100, "done": 100, "state": "computed"}, {"label": "b (app)", "rows": 300, "done": 50, "state": "computing"}],
    }
    (store.root / STATUS_NAME).write_text(json.dumps(status))
    app = run(AppTest.from_file(HOME, default_timeout=120))
    bars = [str(p.proto.text) for p in app.get("progress")]
    assert any("150 / 400 images" in text and "b (app): 50 / 300" in text for text in bars), bars
    status.update(state="failed", error="OSError: disk full")
    (store.root / STATUS_NAME).write_text(json.dumps(status))
    app = run(AppTest.from_file(HOME, default_timeout=120))
    assert any("stopped (OSError: disk full) with 1 entry left" in str(w.value) for w in app.warning)
