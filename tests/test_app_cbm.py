"""The Concept bottleneck page's logic, through AppTest: what it shows is what the library computes.

The page runs on ``zoo:shapes-clip`` when it is built (its concepts mean something there) and on
the tiny random CLIP otherwise. One store and one set of Streamlit caches serve the whole module,
so the splits are embedded and the model trained once.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("streamlit")
import workbench  # noqa: E402  (dashboards/workbench: pytest's pythonpath)
from streamlit.testing.v1 import AppTest  # noqa: E402

DASHBOARDS = Path(__file__).resolve().parents[1] / "dashboards"
PAGE = str(DASHBOARDS / "pages" / "2_Concept_bottleneck.py")
TRAIN, EVAL, SHOWN = 500, 100, 32
STATE = {"cl.cbm.train_size": TRAIN, "cl.cbm.eval_size": EVAL}
BACKGROUNDS = ["background:white", "background:black", "background:gray", "background:beige"]


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
        patch.setenv(workbench.ENV_BACKBONE, spec)
        patch.setenv(workbench.ENV_DATASET, f"shifted:{SHOWN}:0")
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
    from conceptlab.data import ShapesWorld, shapesworld_text_prompts
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


def test_presets_and_custom_values_intervene_like_the_library(env, reference):
    from conceptlab.cbm.explanations import intervention_presets

    app = run()
    model = reference["model"]
    embeddings, _ = reference["shown"]
    presets = intervention_presets(model, reference["data"]["train"][0], embeddings[:1])
    radio = next(r for r in app.radio if r.key and r.key.startswith("cl.cbm.iv_mode."))
    concept = radio.label.strip("`")  # concept names are shown as code (a bare "color:blue" is markdown for colour)
    for preset in ("absent", "present"):
        radio.set_value(preset).run()
        assert not app.exception
        value = float(presets.loc[concept, preset])
        expected = model.intervene(embeddings[:1], set={concept: value})
        new_class = model.class_names_[int(expected.predictions[0])]
        message = next(t for t in texts(app.markdown) if t.startswith("With "))
        assert f"`{concept}` " in message and f"→ {value:.2f}" in message and f"**{new_class}** ({expected.proba[0].max():.0%})" in message
        after = chart(app, "cl.cbm.intervention_chart")["data"][1]
        for name, p in zip(after["x"], values(after["y"])):
            assert p == pytest.approx(expected.proba[0][model.class_names_.index(name)], abs=1e-5)
        radio = app.radio(key=radio.key)

    radio.set_value("custom").run()
    slider = app.slider(key=radio.key.replace("cl.cbm.iv_mode.", "cl.cbm.iv."))
    slider.set_value(slider.min).run()
    expected = model.intervene(embeddings[:1], set={concept: slider.min})
    assert any(f"**{model.class_names_[int(expected.predictions[0])]}**" in t for t in texts(app.markdown) if t.startswith("With "))

    app.button(key="cl.cbm.iv_reset").click().run()
    assert app.radio(key=radio.key).value == "as predicted"
    assert not any(t.startswith("With ") for t in texts(app.markdown))


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


def folder_name(app: AppTest):
    """The save-name box (keyed by the model and its edits, so each model gets its own default)."""
    return next(t for t in app.text_input if t.label == "Folder name")


def test_save_the_edited_model_and_open_it_again(env, reference):
    from conceptlab.cbm import ConceptBottleneckModel

    app = run()
    prune = next(m for m in app.multiselect if m.label.startswith("Concepts to prune"))
    prune.set_value(["background:white", "background:black"]).run()
    folder_name(app).input("edited-test").run()
    app.button(key="cl.cbm.save").click().run()
    assert not app.exception and not app.error
    path = env["home"] / "models" / "edited-test"
    assert any(str(path) in t for t in texts(app.success))
    saved = ConceptBottleneckModel.load(path)
    assert saved.edits_[-1]["op"] == "prune" and saved.edits_[-1]["concepts"] == ["background:white", "background:black"]
    np.testing.assert_array_equal(saved.coef_, reference["model"].prune(["background:white", "background:black"]).coef_)

    app.button(key="cl.cbm.save").click().run()  # a second save must not overwrite silently
    assert any("already exists" in t for t in texts(app.error))

    folder_name(app).input("no spaces please").run()
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


# -- trustworthy CBM panels: intervals, true-value interventions, where it looks, edits side by side --


def test_accuracies_carry_the_librarys_intervals(env, reference):
    from conceptlab.metrics import accuracy_ci

    app = run()
    model = reference["model"]
    caption = next(t for t in texts(app.caption) if t.startswith("95 % bootstrap intervals"))
    for split in ("val", "shifted"):
        x, y = reference["data"][split]
        assert f"{split} {accuracy_ci(y, model.predict(x)).format()}" in caption


def test_true_value_interventions_are_the_librarys(env, reference):
    from conceptlab.cbm.interventions import fit_calibrator, intervene_with_truth, intervention_curves
    from conceptlab.data import ShapesWorld

    app = run(**{"cl.cbm.tv_policy": "weight", "cl.cbm.tv_k": 3})
    model = reference["model"]
    train_ds, val_ds = ShapesWorld("train", size=TRAIN, seed=0), ShapesWorld("val", size=EVAL, seed=0)
    calibrator = fit_calibrator(model, reference["data"]["train"][0], frame(train_ds))
    expected = intervention_curves(model, reference["data"]["val"][0], val_ds.labels, frame(val_ds), calibrator=calibrator, n_random=3, n_boot=500)
    traces = {t["name"]: t for t in chart(app, "cl.cbm.tv_curves")["data"] if t.get("mode") == "lines+markers"}
    assert set(traces) == {"random", "weight", "uncertainty"}
    for policy, trace in traces.items():
        np.testing.assert_allclose(values(trace["y"]), expected.loc[expected["policy"] == policy, "accuracy"], atol=1e-9)
    embeddings, shown = reference["shown"]
    out = intervene_with_truth(model, embeddings[:1], frame(shown).iloc[:1], k=3, policy="weight", calibrator=calibrator)
    message = next(t for t in texts(app.markdown) if t.startswith("This image, weight policy, k = 3"))
    assert f"**{model.class_names_[int(out['predictions'][0])]}**" in message
    assert all(f"`{model.concept_names_[j]}`" in message for j in np.flatnonzero(out["intervened"][0]))


def frame(dataset):
    import pandas as pd

    return pd.DataFrame(dataset.concepts, columns=dataset.concept_names)


def test_where_does_it_look_grades_the_explained_concept(env, reference):
    from conceptlab.backbones import load
    from conceptlab.cbm.grounding import ground_model

    app = run()
    model = reference["model"]
    _, shown = reference["shown"]
    concept = app.selectbox(key="cl.cbm.where_concept.0").value
    panel = chart(app, "cl.cbm.where_panel")
    assert [t["type"] for t in panel["data"]][:2] == ["image", "heatmap"] and sum(t["type"] == "contour" for t in panel["data"]) == 2
    expected = ground_model(load(env["spec"], device="cpu"), model, shown, [0], concepts=[concept], positives_only=False).frame.set_index("method")
    metrics = {m.label: m.value for m in app.metric}
    region = "background" if concept.startswith("background:") else "shape"
    for method, label in (("integrated_gradients", "IG"), ("occlusion", "Occlusion")):
        assert float(metrics[f"{label}: mass in the {region}"]) == pytest.approx(expected.loc[method, "mass"], abs=0.006)
        assert metrics[f"{label}: pointing game"] == ("hit" if expected.loc[method, "hit"] else "miss")
    # every family, graded on the first images of the split shown: the library's table
    app.number_input(key="cl.cbm.where_n").set_value(2).run()
    app.toggle(key="cl.cbm.where_families").set_value(True).run()
    assert not app.exception
    table = next(d.value for d in app.dataframe if "pointing" in d.value.columns)
    library = ground_model(load(env["spec"], device="cpu"), model, shown, range(2), ig={"steps": 8, "n_baselines": 1}).table(n_boot=500)
    np.testing.assert_allclose(table["mass"].to_numpy(), library["mass"].to_numpy(), atol=1e-6)
    assert list(table["family"]) == list(library["family"])


def test_edits_side_by_side_with_intervals(env, reference):
    from conceptlab.cbm.editing import editing_comparison, editing_study

    app = run()
    prune = next(m for m in app.multiselect if m.label.startswith("Concepts to prune"))
    prune.set_value(BACKGROUNDS).run()
    model = reference["model"]
    val, shifted = reference["data"]["val"], reference["data"]["shifted"]
    study = editing_study(model, {"val": val, "shifted": shifted}, concepts=BACKGROUNDS)
    caption = next(t for t in texts(app.caption) if t.startswith("val: before"))
    low, high = study.intervals.loc["shifted", ["after_low", "after_high"]]
    assert f"after [{low:.3f}, {high:.3f}]" in caption and "McNemar p" in caption
    app.toggle(key="cl.cbm.compare_edits").set_value(True).run()
    assert not app.exception
    table = next(d.value for d in app.dataframe if "prune + normalize" in d.value.index)
    expected = editing_comparison(model, reference["data"]["train"], {"val": val, "shifted": shifted}, BACKGROUNDS,
                                  groups=None, test_split="val").table
    assert list(table.index)[:4] == ["original", "prune", "prune + normalize", "refit without"]
    for name in expected.index:
        assert table.loc[name, "shifted"] == pytest.approx(expected.loc[name, "shifted"], abs=1e-9)
        assert table.loc[name, "shifted_low"] == pytest.approx(expected.loc[name, "shifted_low"], abs=1e-9)
    assert "DFR (group-balanced)" in table.index


def test_a_sequential_pcbm_trains_on_the_page_with_concept_labels(env, reference):
    app = run(**{"cl.cbm.source": "Train Sequential PCBM"})
    assert not app.error and not app.exception
    assert any("calibrated concept probabilities" in t for t in texts(app.markdown))
    summary = next(d.value for d in app.dataframe if "uncertainty" in d.value.index)
    assert summary.loc["weight", "all"] >= summary.loc["weight", "k=0"]
