"""The Diffusion targets page through AppTest, on tiny diffusion models built in code: the step
slider picks the frame it names, the hybrid caption lists the timesteps the library ran, and the
diversity table is the library's own ``diversity_study`` for the same settings."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("streamlit")
pytest.importorskip("diffusers")
from streamlit.testing.v1 import AppTest  # noqa: E402
from workbench import diffusion as dd  # noqa: E402  (dashboards/workbench: pytest's pythonpath)

from conceptlab.diffusion import diversity_study, hybrid_sample, load_pipeline, load_reader  # noqa: E402
from conceptlab.zoo.shapes_ddpm import AttributeReader, save_shapes_model  # noqa: E402
from tests.test_diffusion import tiny_model  # noqa: E402  (the tiny models built in code)

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:The 'utils' module has been deprecated:DeprecationWarning")]

PAGE = str(Path(__file__).resolve().parents[1] / "dashboards" / "pages" / "6_Diffusion_targets.py")
SEEDS = 4


def save_tiny_models(root: Path, backbone) -> tuple[str, str]:
    """A tiny base (with an attribute reader on ``backbone``) and a tiny LCM student, as model folders."""
    save_shapes_model(tiny_model(0), root / "base")
    AttributeReader.fit(backbone, n_images=48, seed=3).save(root / "base")
    save_shapes_model(tiny_model(1, sampler={"name": "lcm", "num_inference_steps": 4, "guidance_scale": 1.0}), root / "student")
    return f"local-dir:{root / 'base'}", f"local-dir:{root / 'student'}"


@pytest.fixture(scope="module")
def env(tmp_path_factory, tiny_backbone):
    import streamlit as st

    root = tmp_path_factory.mktemp("diffusion-app")
    base, student = save_tiny_models(root, tiny_backbone)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CONCEPTLAB_HOME", str(root / "home"))
        patch.setenv(dd.ENV_BASE, base)
        patch.setenv(dd.ENV_DISTILLED, student)
        patch.setenv(dd.ENV_SEEDS, str(SEEDS))
        st.cache_data.clear()
        st.cache_resource.clear()
        yield {"base": base, "student": student}
        st.cache_data.clear()
        st.cache_resource.clear()


def run(app: AppTest | None = None, **state) -> AppTest:
    if app is None:
        app = AppTest.from_file(PAGE, default_timeout=300)
        app.session_state["cl.dt.steps"] = 5
        for key, value in state.items():
            app.session_state[key] = value
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def captions(app: AppTest) -> list[str]:
    return [caption for image in app.image for caption in image.captions]


def test_page_shows_frames_hybrid_and_the_librarys_diversity(env, one_thread):
    app = run()
    assert any("base x̂0 · step 5/5" in c for c in captions(app)) and any("distilled x̂0 · step 4/4" in c for c in captions(app))
    app.slider(key="cl.dt.share").set_value(20)
    app = run(app)
    assert any("base x̂0 · step 1/5" in c for c in captions(app)) and any("distilled x_t · step 1/4" in c for c in captions(app))

    base = load_pipeline(env["base"], scheduler="ddim", num_inference_steps=5, guidance_scale=2.0)
    distilled = load_pipeline(env["student"])
    hybrid = hybrid_sample(base, distilled, "a red circle", range(8), switch_at=1, base_guidance=0.0)
    caption = next(c.value for c in app.caption if c.value.startswith("base at t ="))
    assert caption.startswith(f"base at t = {[int(t) for t in hybrid.base_timesteps]}, distilled at t = {[int(t) for t in hybrid.distilled_timesteps]}")

    shown = next(frame.value for frame in app.dataframe if "vendi" in frame.value.columns)
    study = diversity_study(base, distilled, ["a red circle"], SEEDS, load_reader(env["base"]), hybrid={"switch_at": 1, "base_guidance": 0.0}, progress=False)
    expected = study.table.set_index("model").drop(columns=["condition"]).round(3)
    assert list(shown.index) == ["base", "distilled", "hybrid"]
    assert shown["vendi"].tolist() == expected["vendi"].tolist() and shown["entropy"].tolist() == expected["entropy"].tolist()
    assert len([c for c in app.get("plotly_chart")]) == 1 + 4  # the convergence curve and one histogram per free family


def test_a_bad_model_spec_is_a_clear_error(env, tmp_path):
    app = run(**{"cl.dt.base": f"local-dir:{tmp_path / 'nothing'}"})
    assert any("Cannot load the models" in e.value for e in app.error)
