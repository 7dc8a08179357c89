"""The Discovered concepts page through AppTest: the top images shown are the SAE's true top
activations, a rename persists (in the session and in the saved run), and search filters the table.

Runs on ``zoo:shapes-clip`` when built, else on the tiny random CLIP; a small train split and a
short SAE keep it light. One CONCEPTLAB_HOME and one set of Streamlit caches serve the module.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("streamlit")
import workbench  # noqa: E402  (dashboards/workbench: pytest's pythonpath)
from streamlit.testing.v1 import AppTest  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:The 'utils' module has been deprecated:DeprecationWarning")

DASHBOARDS = Path(__file__).resolve().parents[1] / "dashboards"
PAGE = str(DASHBOARDS / "pages" / "3_Discovered_concepts.py")
TRAIN, SHOWN = 300, 48
STATE = {"cl.dn.train_size": TRAIN, "cl.dn.latents": 32, "cl.dn.steps": 60}


@pytest.fixture(scope="module")
def env(tmp_path_factory, request):
    import streamlit as st

    from conceptlab import zoo

    built = zoo.available()["shapes-clip"] is not None
    spec = "zoo:shapes-clip" if built else f"local-dir:{request.getfixturevalue('tiny_clip_dir')}"
    home = tmp_path_factory.mktemp("dn-app-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CONCEPTLAB_HOME", str(home))
        patch.setenv(workbench.ENV_BACKBONE, spec)
        patch.setenv(workbench.ENV_DATASET, f"test:{SHOWN}:0")
        st.cache_data.clear()
        st.cache_resource.clear()
        yield {"spec": spec, "home": home}
        st.cache_data.clear()
        st.cache_resource.clear()


def run(app: AppTest | None = None, **state) -> AppTest:
    if app is None:
        app = AppTest.from_file(PAGE, default_timeout=300)
        for key, value in {**STATE, **state}.items():
            app.session_state[key] = value
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def shown_indices(app: AppTest) -> list[int]:
    captions = [caption for image in app.image for caption in image.captions]
    return [int(re.search(r"#(\d+) ", c).group(1)) for c in captions if re.search(r"#(\d+) ", c)]


def feature_frame(app: AppTest):
    return next(frame.value for frame in app.dataframe if "best_concept" in frame.value.columns)


def test_top_images_are_the_true_top_activations(env):
    from conceptlab.backbones import load
    from conceptlab.data import ShapesWorld
    from conceptlab.discovery import DiscoveryRun, activation_bands, grade_latents
    from conceptlab.store import ActivationStore

    app = run()
    latent = int(app.selectbox(key="cl.dn.latent").value)
    app.text_input(key="cl.dn.save_name").input("run-a")
    app.button(key="cl.dn.save").click()
    app = run(app)
    assert any("Saved to" in str(s.value) for s in app.success)
    saved = DiscoveryRun.load(env["home"] / "discovery" / "run-a")
    assert saved.sae.center and saved.settings["n_latents"] == 32 and saved.provenance["backbone"] == env["spec"]
    backbone = load(env["spec"], device="cpu")
    X = ActivationStore().get_or_compute(backbone, ShapesWorld("test", size=SHOWN, seed=0), progress=False).numpy()
    z = saved.encode(X).numpy()[:, latent]
    test = ShapesWorld("test", size=SHOWN, seed=0)
    report = grade_latents(saved.encode(X), test.concepts, test.concept_names, saved.names)
    shown = {metric.label: metric.value for metric in app.metric}
    assert shown["Naming precision"] == f"{report.naming_precision:.2f}"  # the library's numbers, not the page's
    assert shown["Concepts recovered"] == f"{report.recovery} / {report.n_concepts}"
    expected = [int(i) for i in np.argsort(-z, kind="stable")[:16] if z[i] > 0]
    shown = shown_indices(app)
    assert shown[: len(expected)] == expected  # the "top" band first
    scores = [float(c.split(" · ")[0]) for image in app.image for c in image.captions]
    np.testing.assert_allclose(scores, z[shown], atol=5e-5)  # captions show the real activations
    assert len(expected) > 0 and (z[shown] > 0).all()  # the quantile bands and random examples fire too
    bands = activation_bands(z)
    assert shown == [int(i) for band in bands for i in band.indices]  # the library's bands, in order


def test_rename_persists_in_the_session_and_in_the_saved_run(env):
    from conceptlab.discovery import LatentNames

    app = run()
    latent = int(app.selectbox(key="cl.dn.latent").value)
    app.text_input(key=f"cl.dn.rename.{latent}").input("my  special concept")
    app.button(key=f"cl.dn.rename_button.{latent}").click()
    app = run(app)
    frame = feature_frame(app)
    assert frame.set_index("latent").loc[latent, "name"] == "my special concept"
    assert bool(frame.set_index("latent").loc[latent, "renamed"])
    app.selectbox(key="cl.dn.latent").set_value(latent)
    app = run(app)  # another rerun: the rename is still there
    assert feature_frame(app).set_index("latent").loc[latent, "name"] == "my special concept"
    app.text_input(key="cl.dn.save_name").input("run-renamed")
    app.button(key="cl.dn.save").click()
    app = run(app)
    names = LatentNames.load(env["home"] / "discovery" / "run-renamed" / "names")
    assert names[latent] == "my special concept" and names.table.loc[latent, "renamed_by"] == "analyst"
    assert names.table.loc[latent, "auto_name"] != "my special concept"


def test_search_filters_the_table(env):
    app = run()
    full = feature_frame(app)
    word = str(full["name"].iloc[0])
    app.text_input(key="cl.dn.search").input(word)
    app = run(app)
    filtered = feature_frame(app)
    assert 0 < len(filtered) <= len(full)
    hay = (filtered["name"] + "|" + filtered["auto_name"] + "|" + filtered["best_concept"]).str.lower()
    assert hay.str.contains(word.lower(), regex=False).all()
    app.text_input(key="cl.dn.search").input("no-such-concept-zzz")
    app = run(app)
    assert any("No latent matches" in str(i.value) for i in app.info)


def test_unsaved_renames_survive_a_new_session_and_can_be_discarded(env):
    app = run()
    latent = int(app.selectbox(key="cl.dn.latent").value)
    app.text_input(key=f"cl.dn.rename.{latent}").input("draft name")
    app.button(key=f"cl.dn.rename_button.{latent}").click()
    app = run(app)
    assert any("1 unsaved rename(s)" in str(w.value) for w in app.warning)
    fresh = run()  # a refresh: a new session, the same trained run
    assert any("Restored 1 unsaved rename(s)" in str(i.value) for i in fresh.info)
    assert feature_frame(fresh).set_index("latent").loc[latent, "name"] == "draft name"
    fresh.button(key="cl.dn.discard").click()
    fresh = run(fresh)
    assert feature_frame(fresh).set_index("latent").loc[latent, "name"] != "draft name"
    assert not any("unsaved rename" in str(w.value) for w in fresh.warning)
    assert not any("Restored" in str(i.value) for i in run().info)  # the draft is gone too
