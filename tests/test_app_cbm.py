"""The Concept bottleneck page's logic, through AppTest: what it shows is what the library computes.

The page runs on ``zoo:shapes-clip`` when it is built (its concepts mean something there) and on
the tiny random CLIP otherwise. One store and one set of Streamlit caches serve the whole module,
so the splits are embedded and the model trained once.
"""

from __future__ import annotations

import base64
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

DASHBOARDS = Path(__file__).resolve().parents[1] / "dashboards"
PAGE = str(DASHBOARDS / "pages" / "2_Concept_bottleneck.py")
TRAIN, EVAL, SHOWN = 500, 100, 32
STATE = {"cl.cbm.train_size": TRAIN, "cl.cbm.eval_size": EVAL}
BACKGROUNDS = ["background:white", "background:black", "background:gray", "background:beige"]

sys.path.insert(0, str(DASHBOARDS))
import lib  # noqa: E402


@pytest.fixture(scope="module")
def env(tmp_path_factory, request):
    """One CONCEPTLAB_HOME and backbone for the module; caches cleared before and after."""
    import streamlit as st

    from conceptlab import zoo

    zoo_built = zoo.available()["shapes-clip"] is not None
    spec = "zoo:shapes-clip" if zoo_built else f"local-dir:{request.getfixturevalue('tiny_clip_dir')}"
    home = tmp_path_factory.mktemp("cbm-app-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CONCEPTLAB_HOME", str(home))
        patch.setenv(lib.ENV_BACKBONE, spec)
        patch.setenv(lib.ENV_DATASET, f"shifted:{SHOWN}:0")
        st.cache_data.clear()
        st.cache_resource.clear()
        yield {"spec": spec, "home": home, "zoo": zoo_built}
        st.cache_data.clear()
        st.cache_resource.clear()


def run(**state) -> AppTest:
    app = AppTest.from_file(PAGE, default_timeout=300)
    for key, value in {**STATE, **state}.items():
        app.session_state[key] = value
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    return app


@pytest.fixture(scope="module")
def reference(env):
    """The same splits and model, computed straight from the library (reading the page's store)."""
    from conceptlab.backbones import load
    from conceptlab.cbm import PCBM
    from conceptlab.concepts import text_concepts
    from conceptlab.data import ShapesWorld
    from conceptlab.probes import shapesworld_text_prompts
    from conceptlab.store import ActivationStore

    run()  # let the page fill the store first
    backbone = load(env["spec"], device="cpu")
    store = ActivationStore()
    data = {}
    for split, size in (("train", TRAIN), ("val", EVAL), ("shifted", EVAL)):
        dataset = ShapesWorld(split, size=size, seed=0)
        assert store.contains(store.key(backbone, dataset)), f"the page did not store the {split} split"
        data[split] = (store.get_or_compute(backbone, dataset, progress=False), dataset.labels)
    shown = ShapesWorld("shifted", size=SHOWN, seed=0)
    prompts = shapesworld_text_prompts()
    bank = text_concepts(backbone, list(prompts), prompts=prompts)
    model = PCBM(bank, shown.class_names).fit(*data["train"])
    return {"model": model, "data": data, "shown": (store.get_or_compute(backbone, shown, progress=False), shown)}


def values(data) -> np.ndarray:
    """A plotly JSON array: a plain list, or plotly's typed array {"dtype", "bdata", "shape"}."""
    if isinstance(data, dict) and "bdata" in data:
        array = np.frombuffer(base64.b64decode(data["bdata"]), dtype=np.dtype(data["dtype"]))
        shape = [int(n) for n in str(data.get("shape", len(array))).split(",")]
        return array.reshape(shape)
    return np.asarray(data)


def texts(elements) -> list[str]:
    return [str(e.value) for e in elements]


def chart(app: AppTest, key: str) -> dict:
    for element in app.get("plotly_chart"):
        spec = json.loads(element.proto.spec)
        if element.proto.id.endswith(key):
            return spec
    specs = {c.proto.id: c for c in app.get("plotly_chart")}
    raise AssertionError(f"no chart with key {key!r}; charts: {list(specs)}")


def test_page_shows_model_weights_and_explanation(env, reference):
    app = run()
    assert not app.error
    model = reference["model"]
    metrics = {m.label: m.value for m in app.metric}
    val_x, val_y = reference["data"]["val"]
    shifted_x, shifted_y = reference["data"]["shifted"]
    assert float(metrics["Accuracy on val"]) == pytest.approx(model.score(val_x, val_y), abs=1e-3)
    assert float(metrics["Accuracy on shifted"]) == pytest.approx(model.score(shifted_x, shifted_y), abs=1e-3)

    heatmap = chart(app, "cl.cbm.weights")["data"][0]
    assert heatmap["type"] == "heatmap" and heatmap["x"] == model.concept_names_ and heatmap["y"] == model.class_names_
    np.testing.assert_allclose(values(heatmap["z"]), model.coef_, atol=1e-5)  # the weights it shows are the model's

    embeddings, shown = reference["shown"]
    explanation = model.explain(embeddings[:1])
    bars = chart(app, "cl.cbm.contributions")["data"][0]
    concepts = [c for c in bars["y"] if not c.startswith("(")]
    nonzero = explanation[~explanation["concept"].str.startswith("(") & (explanation["contribution"].abs() > 1e-9)]
    assert concepts == list(nonzero["concept"].head(12))  # the largest non-zero contributions, in order
    expected = dict(zip(explanation["concept"], explanation["contribution"]))
    for name, value in zip(bars["y"], values(bars["x"])):
        assert value == pytest.approx(expected[name], abs=1e-4)
    assert any(f"Prediction: **{explanation.attrs['predicted']}**" in t for t in texts(app.markdown))
    assert len(app.get("plotly_chart")) >= 3  # weights, contributions, class probabilities


def test_sliders_intervene_like_the_library(env, reference):
    app = run()
    model = reference["model"]
    embeddings, _ = reference["shown"]
    slider = app.slider[0]
    concept = slider.label.strip("`")  # concept names are shown as code (a bare "color:blue" is markdown for colour)
    slider.set_value(slider.min).run()
    assert not app.exception
    expected = model.intervene(embeddings[:1], set={concept: slider.min})
    new_class = model.class_names_[int(expected.predictions[0])]
    message = next(t for t in texts(app.markdown) if t.startswith("With "))
    assert f"`{concept}` " in message and f"**{new_class}** ({expected.proba[0].max():.0%})" in message
    after = chart(app, "cl.cbm.intervention_chart")["data"][1]
    for name, p in zip(after["x"], values(after["y"])):
        assert p == pytest.approx(expected.proba[0][model.class_names_.index(name)], abs=1e-5)

    app.button(key="cl.cbm.iv_reset").click().run()
    assert app.slider[0].value == pytest.approx(float(model.transform(embeddings[:1])[0][model.concept_names_.index(concept)]), abs=1e-2)


def test_prune_defaults_to_suggestions_and_reports_the_change(env, reference):
    from conceptlab.cbm.editing import editing_study, suggest_spurious

    app = run()
    model = reference["model"]
    train, val, shifted = (reference["data"][s] for s in ("train", "val", "shifted"))
    prune = next(m for m in app.multiselect if m.label.startswith("Concepts to prune"))
    try:
        suggested = suggest_spurious(model, train[0], shifted[0], top=4, train_labels=train[1], shifted_labels=shifted[1])
    except ValueError:
        suggested = []
    assert prune.value == suggested
    if env["zoo"]:
        assert len(set(suggested) & set(BACKGROUNDS)) >= 3, suggested  # the spurious cue, even from 500 images

    prune.set_value(BACKGROUNDS).run()
    assert not app.exception
    study = editing_study(model, {"val": val, "shifted": shifted}, concepts=BACKGROUNDS)
    metrics = {m.label: m for m in app.metric}
    for split in ("val", "shifted"):
        metric = metrics[f"{split} accuracy after pruning"]
        assert float(metric.value) == pytest.approx(study.accuracy.loc[split, "after"], abs=1e-3)
        assert float(metric.delta) == pytest.approx(study.accuracy.loc[split, "gain"], abs=1e-3)
    if env["zoo"]:
        assert study.gain("shifted") > 0.03  # pruning the backgrounds helps where they mislead

    app.checkbox(key="cl.cbm.renormalize").check().run()
    metric = {m.label: m for m in app.metric}["shifted accuracy after pruning"]
    assert float(metric.value) == pytest.approx(study.accuracy.loc["shifted", "after_normalized"], abs=1e-3)


def test_save_the_edited_model_and_open_it_again(env, reference):
    from conceptlab.cbm import ConceptBottleneckModel

    app = run()
    prune = next(m for m in app.multiselect if m.label.startswith("Concepts to prune"))
    prune.set_value(["background:white", "background:black"]).run()
    app.text_input(key="cl.cbm.save_name").input("edited-test").run()
    app.button(key="cl.cbm.save").click().run()
    assert not app.exception and not app.error
    path = env["home"] / "models" / "edited-test"
    assert any(str(path) in t for t in texts(app.success))
    saved = ConceptBottleneckModel.load(path)
    assert saved.edits_[-1]["op"] == "prune" and saved.edits_[-1]["concepts"] == ["background:white", "background:black"]
    np.testing.assert_array_equal(saved.coef_, reference["model"].prune(["background:white", "background:black"]).coef_)

    app.button(key="cl.cbm.save").click().run()  # a second save must not overwrite silently
    assert any("already exists" in t for t in texts(app.error))

    app.text_input(key="cl.cbm.save_name").input("no spaces please").run()
    app.button(key="cl.cbm.save").click().run()
    assert any("cannot name a model folder" in t for t in texts(app.error))

    app = run(**{"cl.cbm.source": "Saved: edited-test"})
    assert not app.error
    assert any("saved model `edited-test`" in t for t in texts(app.caption))
    heatmap = chart(app, "cl.cbm.weights")["data"][0]
    np.testing.assert_allclose(values(heatmap["z"]), saved.coef_, atol=1e-5)


def test_pcbm_h_trains_and_explains_with_a_residual(env, reference):
    app = run(**{"cl.cbm.source": "Train PCBM-h"})
    assert not app.error
    bars = chart(app, "cl.cbm.contributions")["data"][0]
    assert "(residual)" in bars["y"] and "(intercept)" in bars["y"]
    assert re.search(r"PCBM-h trained on 500 train images", " ".join(texts(app.caption)))
