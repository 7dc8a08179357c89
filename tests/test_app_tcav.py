"""The Concept vectors & TCAV page through AppTest: the numbers it shows are the library's."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402
from workbench import tcav as tc  # noqa: E402  (dashboards/workbench: pytest's pythonpath)

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

PAGE = str(Path(__file__).resolve().parents[1] / "dashboards" / "pages" / "7_TCAV.py")


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    import streamlit as st

    from conceptlab import zoo

    if zoo.available()["shapes-clip"] is None:
        pytest.skip("zoo:shapes-clip is not built")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CONCEPTLAB_HOME", str(tmp_path_factory.mktemp("tcav-home")))
        patch.setenv(tc.ENV_BACKBONE, "zoo:shapes-clip")
        st.cache_data.clear()
        st.cache_resource.clear()
        page = AppTest.from_file(PAGE, default_timeout=600)
        page.run()
        assert not page.exception, [e.value for e in page.exception]
        page.multiselect(key="cl.tcav.concepts").set_value(["color:red", "shape:square"])
        page.multiselect(key="cl.tcav.classes").set_value(["ruby disc"])
        page.slider(key="cl.tcav.n_random").set_value(10)
        page.slider(key="cl.tcav.n_examples").set_value(40)
        page.slider(key="cl.tcav.n_inputs").set_value(10)
        page.run()
        page.button(key="cl.tcav.run").click().run()
        assert not page.exception, [e.value for e in page.exception]
        yield page
        st.cache_data.clear()
        st.cache_resource.clear()


def test_page_shows_the_librarys_tcav(app):
    from conceptlab.backbones import load
    from conceptlab.vectors import shapes_tcav_study

    shown = app.dataframe[0].value.set_index("concept")  # the verdict table (AppTest drops dataframe keys)
    assert list(app.dataframe[1].value["procedure"])[0].startswith("default")  # the grading table
    study = shapes_tcav_study(load("zoo:shapes-clip"), layer="visual.layer4", pool="mean", concepts=["color:red", "shape:square"], classes=["ruby disc"],
                              n_random=10, n_examples=40, n_inputs=10, world_size=1500)
    table = study.result.table
    expected = table[(table["target"] == "ruby disc") & (table["score"] == "sign_count")].set_index("concept")
    for concept in ("color:red", "shape:square"):
        assert shown.loc[concept, "concept_mean"] == pytest.approx(expected.loc[concept, "concept_mean"], abs=1e-9)
        assert shown.loc[concept, "p_value"] == pytest.approx(expected.loc[concept, "p_value"], rel=1e-9)
    assert bool(shown.loc["color:red", "in the class rule"]) and not bool(shown.loc["shape:square", "in the class rule"])
