"""The Concept set page through AppTest: candidates shown, drops reach the refit bank, the shown
accuracy is the model's own score."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("streamlit")
import workbench  # noqa: E402  (dashboards/workbench: pytest's pythonpath)
from streamlit.testing.v1 import AppTest  # noqa: E402
from workbench import cbm  # noqa: E402

DASHBOARDS = Path(__file__).resolve().parents[1] / "dashboards"
PAGE = str(DASHBOARDS / "pages" / "4_Concept_set.py")
TRAIN, EVAL = 300, 100


@pytest.fixture(scope="module")
def env(tmp_path_factory, request):
    import streamlit as st

    from conceptlab import zoo

    spec = "zoo:shapes-clip" if zoo.available()["shapes-clip"] is not None else f"local-dir:{request.getfixturevalue('tiny_clip_dir')}"
    home = tmp_path_factory.mktemp("concept-set-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CONCEPTLAB_HOME", str(home))
        patch.setenv(workbench.ENV_BACKBONE, spec)
        patch.setenv(cbm.ENV_SIZES, f"{TRAIN}:{EVAL}")
        st.cache_data.clear()
        st.cache_resource.clear()
        yield {"spec": spec}
        st.cache_data.clear()
        st.cache_resource.clear()


def run() -> AppTest:
    app = AppTest.from_file(PAGE, default_timeout=300)
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def shown_accuracy(app) -> str:
    return next(m.value for m in app.metric if m.label.startswith("Accuracy (val)"))


def val_split():
    import os

    from conceptlab.backbones import load
    from conceptlab.data import ShapesWorld
    from conceptlab.store import ActivationStore

    backbone = load(os.environ[workbench.ENV_BACKBONE], device="cpu")
    dataset = ShapesWorld("val", size=EVAL, seed=0)
    return ActivationStore().get_or_compute(backbone, dataset, progress=False), np.asarray(dataset.labels)


def test_page_shows_candidates_filters_and_selection(env):
    from conceptlab.concepts.language import shapesworld_concept_set

    app = run()
    candidates = app.dataframe[0].value
    expected = shapesworld_concept_set()
    assert len(candidates) == sum(len(expected[c]) for c in expected.classes)
    assert set(candidates["concept"]) == set(expected.unique())
    removed = app.dataframe[1].value
    assert {"concept", "filter", "reason"} <= set(removed.columns) and len(removed) > 0
    assert "ruby disc" in set(removed["concept"])  # a class name is never a concept
    working = app.session_state["cl.cs.working"]
    assert set(working) == set(expected.classes) and all(len(v) <= 5 for v in working.values())


def test_drop_refits_without_the_concept_and_accuracy_is_the_models(env):
    app = run()
    model = app.session_state["cl.cs.model"]
    X, y = val_split()
    assert shown_accuracy(app) == f"{model.score(X, y):.3f}"
    cls = next(c for c, v in app.session_state["cl.cs.working"].items() if len(v) >= 2)
    dropped = app.session_state["cl.cs.working"][cls][0]
    assert dropped in model.concept_names_
    app.multiselect(key=f"cl.cs.keep.{cls}").unselect(dropped).run()
    assert not app.exception
    refit = app.session_state["cl.cs.model"]
    assert dropped not in refit.concept_names_ and len(refit.bank) == len(model.bank) - 1
    assert shown_accuracy(app) == f"{refit.score(X, y):.3f}"


def test_add_and_rename(env):
    app = run()
    app.selectbox(key="cl.cs.add_class").select("ruby disc")
    app.text_input(key="cl.cs.add_text").input("shiny crimson thing")
    app.button(key="cl.cs.add").click().run()
    assert not app.exception
    assert "shiny crimson thing" in app.session_state["cl.cs.model"].concept_names_
    assert "shiny crimson thing" in app.multiselect(key="cl.cs.keep.ruby disc").value  # shown as a chip, not an unticked option
    assert [s.value for s in app.success] == ["Added “shiny crimson thing” to class ruby disc."]
    app.text_input(key="cl.cs.add_text").input("shiny crimson thing")
    app.button(key="cl.cs.add").click().run()
    assert [w.value for w in app.warning] == ["“shiny crimson thing” is already present in class ruby disc; nothing changed."]
    old = app.session_state["cl.cs.working"]["ruby block"][0]
    app.selectbox(key="cl.cs.rename_from").select(f"ruby block :: {old}")
    app.text_input(key="cl.cs.rename_to").input("boxy red")
    app.button(key="cl.cs.rename").click().run()
    assert not app.exception
    model = app.session_state["cl.cs.model"]
    names = model.concept_names_
    assert "boxy red" in names and "shiny crimson thing" in names
    keep = app.multiselect(key="cl.cs.keep.ruby block").value
    assert "boxy red" in keep and old not in keep
    logged = model.bank.provenance["concept_set"]["edits"]  # the edit log travels with the model (saved with it)
    assert [(e["op"], e["class"]) for e in logged] == [("add", "ruby disc"), ("rename", "ruby block")]


def test_saved_labo_model_opens_on_the_concept_bottleneck_page(env):
    app = run()
    model = app.session_state["cl.cs.model"]
    app.text_input(key="cl.cs.save_name").input("labo-from-set")
    app.button(key="cl.cs.save").click().run()
    assert not app.exception and app.success, [e.value for e in app.error]
    assert (cbm.models_root() / "labo-from-set" / "config.json").is_file()

    page = AppTest.from_file(str(DASHBOARDS / "pages" / "2_Concept_bottleneck.py"), default_timeout=300)
    page.session_state["cl.cbm.source"] = "Saved: labo-from-set"
    page.run()
    assert not page.exception, [e.value for e in page.exception]
    assert "LaBo" in " ".join(c.value for c in page.caption)
    # the page's val accuracy is the LaBo model's own, on the same val split
    X, y = val_split()
    shown = next(m.value for m in page.metric if m.label == "Accuracy on val")
    assert shown == f"{model.score(X, y):.3f}"
