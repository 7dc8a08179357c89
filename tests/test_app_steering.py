"""The Steer section of the Concept vectors (LM) page through AppTest: the curves and the numbers
at the slider's multiplier are the library's (``dose_response``, ``coherent_range``)."""

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
def app():
    import streamlit as st

    from conceptlab import zoo

    if zoo.available()["facts-gpt2"] is None:
        pytest.skip("zoo:facts-gpt2 is not built")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(cv.ENV_LM, SPEC)
        st.cache_data.clear()
        st.cache_resource.clear()
        page = AppTest.from_file(PAGE, default_timeout=300)
        page.run()
        assert not page.exception, [e.value for e in page.exception]
        yield page
        st.cache_data.clear()
        st.cache_resource.clear()


def _metric(app: AppTest, label: str) -> str:
    return next(m.value for m in app.metric if m.label == label)


def test_steer_section_shows_the_librarys_dose_response(app):
    from conceptlab.backbones import load
    from conceptlab.vectors import build_steering_vector, coherent_range, dose_response, facts_steering_task
    from conceptlab.zoo import zoo_path
    from conceptlab.zoo.facts_gpt2 import world_of

    assert app.selectbox(key="cl.cv.steer.attribute").value == "colour"
    assert app.selectbox(key="cl.cv.steer.value.colour").value == "white"
    app.slider(key="cl.cv.steer.multiplier").set_value(1.5).run()
    assert not app.exception, [e.value for e in app.exception]
    lm, world = load(SPEC), world_of(zoo_path("facts-gpt2"))
    task = facts_steering_task(world, "colour", "white")
    vector = build_steering_vector(lm, task, layer=lm.n_layers - 1)
    row = dose_response(lm, vector, task, [1.5], progress=False).iloc[0]
    assert _metric(app, "target rate") == f"{row['target_rate']:.2f}"
    assert _metric(app, "repeat share") == f"{row['repeat_share']:.2f}"
    assert _metric(app, "held-out NLL") == f"{row['nll']:.3f}"
    shown = next(d.value for d in app.dataframe if "steered" in d.value.columns)
    assert list(shown["steered"]).count("white") >= 6  # measured: 8 of the first 8 prompts answer "white" at x1.5
    table = next(d.value for d in app.dataframe if "repeat_share" in d.value.columns)
    span = coherent_range(table)
    assert any(f"to × {span['high']:g}" in s.value for s in app.success)
