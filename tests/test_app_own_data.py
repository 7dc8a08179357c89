"""The app on the user's own data: a folder picked on Home, the Embeddings page on it, bad specs."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("streamlit")
import workbench  # noqa: E402  (dashboards/workbench: pytest's pythonpath)
from streamlit.testing.v1 import AppTest  # noqa: E402

from conceptlab import zoo  # noqa: E402
from conceptlab.data import ShapesWorld, export_dataset  # noqa: E402

DASHBOARDS = Path(__file__).resolve().parents[1] / "dashboards"
HOME = str(DASHBOARDS / "Home.py")
EMBEDDINGS = str(DASHBOARDS / "pages" / "1_Embeddings.py")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    world = ShapesWorld("test", size=40, seed=5)
    return export_dataset(world, tmp_path_factory.mktemp("own") / "shapes", format="folder", progress=False)


@pytest.fixture()
def app_env(isolated_home, tiny_clip_dir, monkeypatch, folder):
    import streamlit as st

    monkeypatch.setenv(workbench.ENV_BACKBONE, f"local-dir:{tiny_clip_dir}")
    monkeypatch.setenv(workbench.ENV_DATASET, f"folder:{folder}")
    st.cache_data.clear()
    st.cache_resource.clear()
    yield folder
    st.cache_data.clear()
    st.cache_resource.clear()


def run(path: str, **state) -> AppTest:
    app = AppTest.from_file(path, default_timeout=120)
    for key, value in state.items():
        app.session_state[key] = value
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def texts(elements) -> list[str]:
    return [str(e.value) for e in elements]


def test_home_reads_the_folder_and_says_what_it_lacks(app_env):
    app = run(HOME)
    assert any(f"folder:{app_env}" in t for t in texts(app.markdown))
    assert any("40 images" in t for t in texts(app.caption))
    assert any("No concept annotations" in t for t in texts(app.info))
    assert app.sidebar.radio[0].value == "Your own data" and app.sidebar.text_input[1].value == f"folder:{app_env}"


def test_a_bad_spec_says_why_and_keeps_shapesworld(app_env):
    app = run(HOME)
    app.sidebar.text_input[1].input("s3://bucket").run()
    assert any("unknown dataset kind 's3'" in t for t in texts(app.sidebar.error))
    assert any("ShapesWorld test, 500 images" in t for t in texts(app.markdown))
    app.sidebar.text_input[1].input(f"folder:{app_env / 'nowhere'}").run()
    assert any("no such folder" in t for t in texts(app.error))


def test_embeddings_page_runs_on_the_folder(app_env):
    app = run(EMBEDDINGS)
    assert any("40 images match" in t for t in texts(app.markdown))
    assert [m.label for m in app.multiselect] == ["class"]  # no ShapesWorld attributes to filter by
    app.text_input(key="cl.embeddings.concept").input("a red shape").run()
    assert not app.exception and len(app.get("plotly_chart")) == 2  # the score histogram and the map
    assert all(caption.startswith("#") for image in app.image for caption in image.captions)


def test_discovered_concepts_page_runs_ungraded_on_the_folder(app_env, monkeypatch):
    monkeypatch.setenv("CONCEPTLAB_DISCOVERY_TRAIN", "100")
    app = AppTest.from_file(str(DASHBOARDS / "pages" / "3_Discovered_concepts.py"), default_timeout=300)
    app.session_state["cl.dn.steps"] = 30
    app.session_state["cl.dn.latents"] = 16
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    assert any("no concept annotations" in t for t in texts(app.info))
    assert [m.value for m in app.metric][4:6] == ["—", "—"]  # naming precision and recovery need ground truth


def test_concept_set_page_asks_for_the_classes_concepts(app_env, tmp_path, monkeypatch):
    from conceptlab.data import shapesworld_concepts

    if zoo.available()["shapes-clip"] is None:
        pytest.skip("zoo:shapes-clip is not built")
    monkeypatch.setenv(workbench.ENV_BACKBONE, "zoo:shapes-clip")  # a random tiny CLIP's text space filters every candidate out
    monkeypatch.setenv("CONCEPTLAB_CBM_SIZES", "100:50")
    page = str(DASHBOARDS / "pages" / "4_Concept_set.py")
    app = run(page)
    assert any("Give them as a JSON file" in t for t in texts(app.info)) and not app.dataframe
    app.text_input(key="cl.cs.source_input").input(str(tmp_path / "none.json")).run()
    assert any("Cannot read" in t for t in texts(app.error))
    path = tmp_path / "concepts.json"
    import json

    path.write_text(json.dumps(shapesworld_concepts()))
    app.text_input(key="cl.cs.source_input").input(str(path)).run()
    assert not app.exception and not app.error, [e.value for e in app.error]
    assert app.session_state["cl.cs.model"].n_classes_ >= 2


def test_concept_bottleneck_page_trains_on_the_folder_without_a_shifted_split(app_env, tmp_path):
    page = str(DASHBOARDS / "pages" / "2_Concept_bottleneck.py")
    app = run(page)
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Accuracy on shifted"] == "—" and 0.0 <= float(metrics["Accuracy on val"]) <= 1.0
    assert any("no shifted split" in t for t in texts(app.info))
    assert any("no ground-truth concepts" in t for t in texts(app.info))
    phrases = tmp_path / "concepts.txt"
    phrases.write_text("a red shape\na circle\na striped shape\n")
    app.text_input(key="cl.cbm.concepts_file").input(str(phrases)).run()
    assert not app.exception, [e.value for e in app.exception]
    assert "Non-zero weights" in {m.label for m in app.metric} and any(m.value.endswith("/ 3") for m in app.metric if m.label == "Concepts used")
