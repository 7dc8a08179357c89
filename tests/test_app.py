"""The Streamlit app's logic, through streamlit.testing's AppTest (no browser)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("streamlit")
import workbench  # noqa: E402  (dashboards/workbench: pytest's pythonpath)
from streamlit.testing.v1 import AppTest  # noqa: E402

DASHBOARDS = Path(__file__).resolve().parents[1] / "dashboards"
HOME = str(DASHBOARDS / "Home.py")
EMBEDDINGS = str(DASHBOARDS / "pages" / "1_Embeddings.py")
SIZE = 64
CONCEPT = "a red shape"
SCORED = re.compile(r"^([+-]\d+\.\d+) · #(\d+) ")
PLAIN = re.compile(r"^#(\d+) ")


@pytest.fixture()
def app_env(isolated_home, tiny_clip_dir, monkeypatch):
    """Point the app at the tiny CLIP and a 64-image test split, with empty caches."""
    import streamlit as st

    spec = f"local-dir:{tiny_clip_dir}"
    monkeypatch.setenv(workbench.ENV_BACKBONE, spec)
    monkeypatch.setenv(workbench.ENV_DATASET, f"test:{SIZE}:0")
    st.cache_data.clear()
    st.cache_resource.clear()
    yield spec
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


def captions(app: AppTest) -> list[str]:
    return [caption for image in app.image for caption in image.captions]


def reference_scores(spec: str, text: str) -> np.ndarray:
    """Zero-shot scores computed straight from the backbone, without the store or the app."""
    from conceptlab.backbones import load
    from conceptlab.data import ShapesWorld

    backbone = load(spec, device="cpu")
    dataset = ShapesWorld("test", size=SIZE, seed=0)
    images = torch.nn.functional.normalize(backbone.encode_images([dataset.image(i) for i in range(SIZE)]), dim=1)
    concept = torch.nn.functional.normalize(backbone.encode_texts([text]), dim=1)[0]
    return (images @ concept).numpy()


# -- Home ---------------------------------------------------------------------------------------

def test_home_shows_selection_and_empty_store(app_env):
    app = run(HOME)
    assert any(app_env in t for t in texts(app.markdown))
    assert any(f"ShapesWorld test, {SIZE} images, seed 0" in t for t in texts(app.markdown))
    assert any("store is empty" in t for t in texts(app.info))
    assert any("Not computed yet" in t for t in texts(app.info))
    assert not app.error


def test_home_computes_and_lists_store_entry(app_env):
    from conceptlab.backbones import load
    from conceptlab.data import ShapesWorld
    from conceptlab.store import ActivationStore

    app = run(HOME)
    app.button[0].click().run()  # "Compute them now"
    assert not app.exception
    key = ActivationStore().key(load(app_env), ShapesWorld("test", size=SIZE, seed=0))
    assert any(key[:12] in t for t in texts(app.success))
    table = app.dataframe[0].value
    assert len(table) == 1
    row = table.iloc[0]
    assert row["key"] == key[:12] and row["selected"] and row["complete"]
    assert row["backbone"] == app_env and f"n={SIZE}" in row["dataset"]
    assert (row["rows"], row["dim"]) == (SIZE, 32)


def test_home_lists_pages(app_env):
    app = run(HOME)
    labels = [link.proto.label for link in app.get("page_link")]
    assert "Embeddings" in labels


def test_sidebar_selection_survives_page_switch(app_env):
    app = run(HOME)
    app.sidebar.number_input(key="cl.size_input").set_value(32).run()
    assert app.session_state["cl.size"] == 32
    app.switch_page("pages/1_Embeddings.py").run()
    assert not app.exception
    assert any("32 × 32 embeddings" in t for t in texts(app.caption))
    assert app.sidebar.number_input(key="cl.size_input").value == 32


@pytest.mark.parametrize("page", [HOME, EMBEDDINGS])
def test_missing_backbone_is_a_clear_error(app_env, tmp_path, page):
    app = run(page, **{"cl.backbone": f"local-dir:{tmp_path / 'nowhere'}"})
    errors = texts(app.error)
    assert errors and "no checkpoint directory" in errors[0] and "local-dir:" in errors[0]
    assert not app.get("plotly_chart")


def test_unbuilt_zoo_model_says_how_to_build_it(app_env):
    from conceptlab import zoo

    if zoo.available()["shapes-clip"] is not None:
        pytest.skip("zoo:shapes-clip is built on this machine, so it cannot fail to load")
    app = run(EMBEDDINGS, **{"cl.backbone": "zoo:shapes-clip"})
    assert "conceptlab zoo build shapes-clip" in texts(app.error)[0]


# -- Embeddings ----------------------------------------------------------------------------------

def test_embeddings_page_without_concept_shows_grid_and_map(app_env):
    app = run(EMBEDDINGS)
    shown = captions(app)
    assert len(shown) == 24 and all(PLAIN.match(c) for c in shown)
    assert [int(PLAIN.match(c).group(1)) for c in shown] == list(range(24))
    assert len(app.get("plotly_chart")) == 1  # the map only
    assert any("Type a concept" in t for t in texts(app.info))


def test_typed_concept_shows_chart_and_true_top_images(app_env):
    app = run(EMBEDDINGS)
    app.text_input(key="cl.embeddings.concept").input(CONCEPT).run()
    assert not app.exception and not app.error
    charts = app.get("plotly_chart")
    assert len(charts) == 2 and CONCEPT in charts[0].proto.spec
    k = app.slider(key="cl.embeddings.top_k").value
    scored = [SCORED.match(c) for c in captions(app) if SCORED.match(c)]
    assert len(scored) == 2 * k
    shown_index = np.array([int(m.group(2)) for m in scored])
    shown_score = np.array([float(m.group(1)) for m in scored])

    truth = reference_scores(app_env, CONCEPT)
    expected = np.sort(truth)[::-1]
    np.testing.assert_allclose(truth[shown_index[:k]], expected[:k], atol=1e-6)  # the top k, best first
    np.testing.assert_allclose(truth[shown_index[k:]], expected[::-1][:k], atol=1e-6)  # the bottom k, worst first
    np.testing.assert_allclose(shown_score, truth[shown_index], atol=5e-5)  # captions show the real scores
    assert len(set(shown_index[:k])) == k


def test_filters_reduce_grid_to_matching_images(app_env):
    from conceptlab.data import ShapesWorld

    attributes = ShapesWorld("test", size=SIZE, seed=0).attributes
    app = run(EMBEDDINGS)
    app.multiselect(key="cl.embeddings.filter.color").set_value(["red"]).run()
    red = np.flatnonzero(attributes["color"] == "red")
    assert 0 < len(red) < SIZE
    assert any(f"**{len(red)}** of {SIZE}" in t for t in texts(app.markdown))
    grid = [int(PLAIN.match(c).group(1)) for c in captions(app)]
    assert grid == list(red[:24])

    app.text_input(key="cl.embeddings.concept").input("striped").run()  # scores rank the filtered images only
    ranked = [int(m.group(2)) for c in captions(app) if (m := SCORED.match(c))]
    assert ranked and set(ranked) <= set(red)

    app.multiselect(key="cl.embeddings.filter.shape").set_value(["circle"]).run()
    both = np.flatnonzero((attributes["color"] == "red") & (attributes["shape"] == "circle"))
    assert [int(PLAIN.match(c).group(1)) for c in captions(app) if PLAIN.match(c)] == list(both[:24])


def test_filters_matching_nothing_warn(app_env):
    app = run(EMBEDDINGS)
    app.multiselect(key="cl.embeddings.filter.class_name").set_value(["ruby disc"]).run()
    app.multiselect(key="cl.embeddings.filter.color").set_value(["blue"]).run()
    assert any("No image matches" in t for t in texts(app.warning))
    assert not app.image


def test_widget_moves_never_recompute_embeddings(app_env, monkeypatch):
    from conceptlab.store import ActivationStore

    calls = []
    original = ActivationStore.get_or_compute
    monkeypatch.setattr(ActivationStore, "get_or_compute", lambda self, *a, **kw: calls.append(1) or original(self, *a, **kw))
    app = run(EMBEDDINGS)
    app.text_input(key="cl.embeddings.concept").input(CONCEPT).run()
    app.slider(key="cl.embeddings.top_k").set_value(12).run()
    app.slider(key="cl.embeddings.grid_size").set_value(16).run()
    app.selectbox(key="cl.embeddings.map_colour").set_value("concept score").run()
    assert not app.exception
    assert len(calls) == 1
    assert len(captions(app)) == 16 + 2 * 12


def test_map_colours_by_any_attribute_with_hover(app_env):
    app = run(EMBEDDINGS)
    for colour in ("shape", "color", "fill", "position"):
        app.selectbox(key="cl.embeddings.map_colour").set_value(colour).run()
        assert not app.exception
        spec = app.get("plotly_chart")[-1].proto.spec
        assert '"legendgroup":"' in spec and f"{colour}=" in spec
    assert "hovertemplate" in spec and "class=" in spec and "background=" in spec and "image=" in spec
