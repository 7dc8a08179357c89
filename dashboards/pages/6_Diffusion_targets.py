"""Diffusion targets: watch an image form step by step (x_t beside the model's target x̂0), see when
base and distilled models fix the structure, mix them (hybrid sampling), and count how diverse each
is in ground-truth attribute space."""

import streamlit as st
from workbench import diffusion as dd

from conceptlab.diffusion import SCHEDULERS, convergence_figure, dt_grid, free_families, histogram_figure, images_of, tile

st.set_page_config(page_title="Diffusion targets · conceptlab", page_icon=":material/category:", layout="wide")
st.title("Diffusion targets")
base_default, distilled_default = dd.default_specs()
base_spec = st.sidebar.text_input("Base model", value=base_default, key="cl.dt.base", help="`zoo:shapes-ddpm` or a model folder (`local-dir:PATH`)").strip()
distilled_spec = st.sidebar.text_input("Distilled model", value=distilled_default, key="cl.dt.distilled", help="`zoo:shapes-ddpm-distilled` or a model folder").strip()
scheduler = st.sidebar.selectbox("Base scheduler", [s for s in SCHEDULERS if s != "lcm"], key="cl.dt.scheduler")
base_steps = st.sidebar.slider("Base steps", 4, 50, 25, key="cl.dt.steps")
base_guidance = st.sidebar.slider("Base guidance (CFG)", 0.0, 6.0, 2.0, 0.5, key="cl.dt.guidance", help="≤ 1: no guidance (the conditional prediction alone)")
try:
    base, distilled = dd.pipelines(base_spec, distilled_spec, scheduler, base_steps, base_guidance)
    reader = dd.reader(base_spec)
except (OSError, ValueError) as error:
    st.error(f"Cannot load the models: {error}", icon=":material/error:")
    st.stop()
st.sidebar.caption(f"base: {base}  \ndistilled: {distilled}")
key = (base_spec, distilled_spec, scheduler, base_steps, base_guidance)
st.markdown(
    "At every step a diffusion model predicts the clean image **x̂0** it is heading for, its *diffusion target* "
    "(Gandikota & Bau). The recorder wraps the scheduler's `step` and keeps it. Distilled models commit to the "
    "structure at their first step; the base model settles later, which is why running the base model for the "
    "first step and the distilled model after (**hybrid**) brings diversity back."
)

left, right = st.columns([2, 1])
condition = left.selectbox("Condition", dd.CONDITIONS + ["a shape", "a large striped shape", "a red shape on a black background"], key="cl.dt.condition")
seed = right.number_input("Seed", 0, 10_000, 0, key="cl.dt.seed")
free = free_families(condition)
st.caption("Left to the model: " + (", ".join(free) if free else "nothing"))

# -- 1. DT grid -----------------------------------------------------------------------------------
st.header("Step by step")
frames, curve, steps = dd.recorded(key, condition, tuple(range(int(seed), int(seed) + 4)), base, distilled, reader)
grid = dt_grid({"base": frames["base"], "distilled": frames["distilled"]}, index=0, size=64, gap=4)  # the first seed
share = st.slider("% of steps done", 1, 100, 100, key="cl.dt.share")
columns = st.columns(4)
for (name, model_frames), (a, b) in zip(frames.items(), [(columns[0], columns[1]), (columns[2], columns[3])]):
    frame = min(model_frames, key=lambda f: abs(f.share * 100 - share))
    a.image(tile(frame.x_t_vp()[0], 160), caption=f"{name} x_t · step {frame.step + 1}/{frame.num_steps} · t={frame.timestep:.0f}")
    b.image(tile(frame.x0[0], 160), caption=f"{name} x̂0 · step {frame.step + 1}/{frame.num_steps}")
with st.expander("The whole grid (rows: base, distilled; each cell x_t | x̂0)"):
    st.image(grid)

# -- 2. convergence ---------------------------------------------------------------------------------
st.header("When is the structure fixed?")
metric = st.radio("Measure", ["clip_distance", "pixel_distance", "attributes_match", "spread"], horizontal=True, key="cl.dt.metric",
                  help="spread: how different the targets of different seeds are (needs more than one seed)")
st.plotly_chart(convergence_figure(curve, metric), key="cl.dt.curve")
st.caption(f"mean over seeds {int(seed)}–{int(seed) + 3}; the step images above show seed {int(seed)}")
st.dataframe(steps.round(3), hide_index=True, key="cl.dt.steps_table")

# -- 3. hybrid ------------------------------------------------------------------------------------
st.header("Hybrid sampling")
a, b = st.columns(2)
switch_at = a.slider("Base model runs the first k steps", 0, distilled.num_inference_steps, 1, key="cl.dt.switch")
hybrid_guidance = b.slider("Base guidance in the hybrid", 0.0, 6.0, 0.0, 0.5, key="cl.dt.hybrid_guidance")
shown = tuple(range(int(seed), int(seed) + 8))
images, ran_base, ran_distilled = dd.hybrid(key, condition, shown, switch_at, hybrid_guidance, base, distilled)
st.caption(f"base at t = {[int(t) for t in ran_base]}, distilled at t = {[int(t) for t in ran_distilled]} (seeds {shown[0]}–{shown[-1]})")
cells = st.columns(len(shown))
for cell, image, s in zip(cells, images_of(images), shown):
    cell.image(image.resize((96, 96)), caption=f"seed {s}")

# -- 4. diversity ---------------------------------------------------------------------------------
st.header("Diversity across seeds")
n_seeds = st.slider("Seeds", 4, 128, dd.default_seeds(), 4, key="cl.dt.n_seeds")
table, histograms, settings = dd.diversity(key, condition, n_seeds, switch_at, hybrid_guidance, base, distilled, reader)
st.caption(
    "coverage: distinct values of the free families / values that exist · entropy in bits · faithful: share showing every "
    "requested attribute · clip_pairwise: mean 1 − cos in zoo-CLIP space · vendi: Vendi score (q = 1)"
)
st.dataframe(table.set_index("model").drop(columns=["condition"]).round(3), key="cl.dt.diversity")
for column, family in zip(st.columns(max(1, len(histograms))), histograms):
    column.plotly_chart(histogram_figure(histograms[family], family), key=f"cl.dt.hist.{family}")
