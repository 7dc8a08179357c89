"""The Concept vectors (LM) page through AppTest: the numbers it shows are the library's.

Runs on the shipped ``zoo:facts-gpt2``: the ranked vectors equal ``scan_vocabulary``'s, the
validation metrics equal ``causal_validate``'s, and one unlearning run's diff equals
``unlearning_table``'s; bad input is a message, not a traceback.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402
from workbench import vectors as cv  # noqa: E402  (dashboards/workbench: pytest's pythonpath)

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

PAGE = str(Path(__file__).resolve().parents[1] / "dashboards" / "pages" / "5_Concept_vectors_LM.py")
SPEC = "zoo:facts-gpt2"


@pytest.fixture(scope="module")
def env():
    import streamlit as st

    from conceptlab import zoo

    if zoo.available()["facts-gpt2"] is None:
        pytest.skip("zoo:facts-gpt2 is not built")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(cv.ENV_LM, SPEC)
        st.cache_data.clear()
        st.cache_resource.clear()
        yield
        st.cache_data.clear()
        st.cache_resource.clear()


@pytest.fixture(scope="module")
def app(env):
    page = AppTest.from_file(PAGE, default_timeout=300)
    page.run()
    assert not page.exception, [e.value for e in page.exception]
    return page


def _metric(app: AppTest, label: str) -> str:
    return next(m.value for m in app.metric if m.label == label)


def test_page_shows_the_librarys_scan_and_validation(app):
    from conceptlab.backbones import load
    from conceptlab.vectors import GaussianNoise, causal_validate, scan_vocabulary
    from conceptlab.zoo import zoo_path
    from conceptlab.zoo.facts_gpt2 import evaluate_qa, world_of

    lm = load(SPEC)
    world = world_of(zoo_path("facts-gpt2"))
    entity = app.selectbox(key="cl.cv.entity").value
    assert entity == world.names[0]
    shown_qa = app.dataframe[0].value
    expected_qa = evaluate_qa(lm, world)
    assert {str(k): float(v) for k, v in shown_qa.iloc[:, 0].items()} == pytest.approx(expected_qa)
    scan = scan_vocabulary(lm, world.terms(entity), k=10, progress=False)
    table = next(d.value for d in app.dataframe if "tokens" in d.value.columns)
    assert list(table["layer"][:5]) == list(scan.table["layer"][:5]) and list(table["index"][:5]) == list(scan.table["index"][:5])
    assert table["tokens"].iloc[0] == " ".join(scan.table["tokens"].iloc[0])
    layer, index = int(scan.table.iloc[0]["layer"]), int(scan.table.iloc[0]["index"])
    result = causal_validate(lm, layer, index, world.questions([entity], form="qa"), world.unrelated(entity, form="qa"), GaussianNoise(std=5.0, relative=True))
    summary = result.summary()
    assert _metric(app, "target accuracy drop") == f"{summary['target_accuracy_drop']:+.2f}"
    assert _metric(app, "unrelated accuracy drop") == f"{summary['unrelated_accuracy_drop']:+.2f}"


def test_custom_terms_and_bad_terms(app):
    app.text_input(key=f"cl.cv.terms.{app.selectbox(key='cl.cv.entity').value}").set_value("zzz qqq").run()
    assert not app.exception
    assert any("none of the terms" in e.value for e in app.error)


def test_unlearning_shows_the_librarys_diff(env):
    from conceptlab.backbones import load
    from conceptlab.vectors import unlearning_table
    from conceptlab.zoo import zoo_path
    from conceptlab.zoo.facts_gpt2 import world_of

    page = AppTest.from_file(PAGE, default_timeout=300)
    page.run()
    page.selectbox(key="cl.cv.method").set_value("needle")
    page.button(key="cl.cv.run").click().run()
    assert not page.exception, [e.value for e in page.exception]
    spec, entity, layer, index, method, k = page.session_state["cl.cv.unlearn"]
    lm, world = load(SPEC), world_of(zoo_path("facts-gpt2"))
    table, _ = unlearning_table(lm, world, entity, layer, index, methods=["needle"], k=k, progress=False)
    assert _metric(page, "cosine(v, v′)") == f"{table.iloc[0]['cosine']:.3f}"
    shown = next(d.value for d in page.dataframe if "seen" in d.value.columns)
    assert list(shown["after"]) == pytest.approx(list(table["after"]))
