"""State that sticks and explanations to trust, in a real headless Chromium: the Embeddings and
Concept bottleneck sequences of issue 10, replayed.

- Embeddings: a typed concept and a filter survive a trip to another page and back; a filter that
  matches no image says so and keeps the concept; the concept is graded against its compound
  ground truth ("red AND circle"); a click on the map shows that image beside it.
- Concept bottleneck: a saved LaBo model opens with LaBo's introduction and contributions relative
  to the mean class; a "present" preset intervenes; the save name says labo; an image picked from
  the misclassified list is explained, with the "why not the true class" view.

One app server serves the module; the LaBo model is trained (briefly) and saved into its home
before the page opens it. Screenshots land in ``artifacts/screenshots/trust-*.png``.
"""

from __future__ import annotations

import re

import pytest

expect = pytest.importorskip("playwright.sync_api").expect

from tests.test_browser import (  # noqa: E402  (fixtures and helpers, not tests)
    CHROMIUM,
    browser,  # noqa: F401  (a fixture)
    page,  # noqa: F401  (a fixture)
    screenshot,
    settle,
    start_app,
)

SHOWN, SIZES = 64, "400:100"
CONCEPT = "a red circle"
LABO_NAME = "labo-shapes"
LOAD_TIMEOUT_MS = 300_000

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"needs Debian's chromium at {CHROMIUM} (apt-get install chromium)"),
]


def save_labo(home, spec: str) -> None:
    """A LaBo on the shipped ShapesWorld concept set, trained for a few epochs, saved where the page looks."""
    from conceptlab.backbones import load
    from conceptlab.cbm import LaBo, concept_bank_from_set
    from conceptlab.concepts.language.sets import shapesworld_concept_set
    from conceptlab.data import ShapesWorld

    backbone = load(spec, device="cpu")
    train = ShapesWorld("train", size=int(SIZES.split(":")[0]), seed=0)
    X = backbone.encode_images([train.image(i) for i in range(len(train))])
    bank = concept_bank_from_set(backbone, shapesworld_concept_set())
    model = LaBo(bank, train.class_names, lr=0.05, epochs=20, val_every=5, batch_size=128, device="cpu").fit(X, train.labels)
    model.save(home / "models" / LABO_NAME)


@pytest.fixture(scope="module")
def app(tmp_path_factory, request):
    home = tmp_path_factory.mktemp("browser-trust-home")
    started = start_app(request, tmp_path_factory, "browser-trust", CONCEPTLAB_HOME=str(home), CONCEPTLAB_DEFAULT_DATASET=f"shifted:{SHOWN}:0",
                        CONCEPTLAB_CBM_SIZES=SIZES)
    spec = "zoo:shapes-clip" if started["zoo"] else f"local-dir:{request.getfixturevalue('tiny_clip_dir')}"
    save_labo(home, spec)
    return {**started, "home": home}


# -- helpers ------------------------------------------------------------------------------------------


def go_to(tab, title: str, ready: str) -> None:
    """Switch page through the sidebar (the same session, unlike page.goto) and wait for ``ready``."""
    tab.locator('[data-testid="stSidebarNav"] a').filter(has_text=title).first.click()
    tab.get_by_text(ready).first.wait_for(timeout=LOAD_TIMEOUT_MS)
    settle(tab)


def multiselect(tab, label: str):
    return tab.locator('[data-testid="stMultiSelect"]').filter(has=tab.get_by_text(label, exact=True)).first


def choose(tab, label: str, value: str) -> None:
    """Add ``value`` to the multiselect labelled ``label`` (typing it filters the list; a rerun that
    closes the list before the click gets a second try)."""
    settle(tab)
    box = multiselect(tab, label).get_by_role("combobox")
    option = tab.get_by_role("option", name=value, exact=True)
    for attempt in range(3):
        box.click()
        box.fill(value)
        try:
            option.click(timeout=30_000)
            break
        except Exception:  # noqa: BLE001  (playwright's TimeoutError: the list closed under us)
            if attempt == 2:
                raise
            tab.keyboard.press("Escape")
            settle(tab)
    tab.keyboard.press("Escape")
    settle(tab)


def chips(tab, label: str) -> list[str]:
    """The values chosen in a multiselect (Streamlit's react-aria combo box shows each as a tag)."""
    return [t.strip() for t in multiselect(tab, label).locator(".react-aria-ComboBox [data-tag] span[title]").all_inner_texts()]


def unchoose(tab, label: str, value: str) -> None:
    multiselect(tab, label).locator(".react-aria-ComboBox").get_by_role("button", name=f"Remove {value}").click()
    settle(tab)


def select(tab, label: str, option: str | re.Pattern) -> None:
    """Pick ``option`` in the selectbox labelled ``label``."""
    box = tab.locator('[data-testid="stSelectbox"]').filter(has=tab.get_by_text(label, exact=True)).first
    box.click()
    tab.get_by_role("option", name=option).first.click()
    settle(tab)


def chart(tab, key: str):
    """The plotly chart drawn with ``key`` (its container is classed ``st-key-<key>``, dots as dashes)."""
    return tab.locator(f".st-key-{key.replace('.', '-')} .js-plotly-plot").first


def metric_labels(tab) -> list[str]:
    return tab.locator('[data-testid="stMetricLabel"]').all_inner_texts()


# -- Embeddings -------------------------------------------------------------------------------------------


def test_embeddings_keeps_concept_and_filters_and_grades_compound_truth(page, app):  # noqa: F811  (page is the imported fixture)
    page.set_default_timeout(LOAD_TIMEOUT_MS)
    page.goto(f"{app['url']}/Embeddings")
    page.get_by_text("Score a concept").first.wait_for()
    settle(page)
    concept = page.get_by_label("Concept", exact=True)
    concept.fill(CONCEPT)
    concept.press("Enter")
    page.get_by_text("Highest scores").wait_for()
    settle(page)
    choose(page, "shape", "circle")
    assert chips(page, "shape") == ["circle"]
    histogram = chart(page, "cl.embeddings.score_chart")
    expect(histogram).to_contain_text("coloured by whether an image is red AND circle")
    expect(histogram).to_contain_text("matches")
    assert any(label.startswith("AUROC for red AND circle") for label in metric_labels(page)), metric_labels(page)
    screenshot(page, "trust-embeddings")

    # another page and back: the concept and the filter are still there
    go_to(page, "Home", "Backbone spec")
    go_to(page, "Embeddings", "Score a concept")
    expect(page.get_by_label("Concept", exact=True)).to_have_value(CONCEPT)
    assert chips(page, "shape") == ["circle"]
    page.get_by_text("Highest scores").wait_for()
    expect(chart(page, "cl.embeddings.score_chart")).to_contain_text("Cosine similarity with")

    # a filter that matches nothing: a message, the concept kept, and back again by removing it
    choose(page, "class", "jade spire")  # a green triangle: never a circle
    expect(page.get_by_text("No image matches").first).to_be_visible()
    expect(page.get_by_text("no image matches the filters: remove a filter value").first).to_be_visible()
    expect(page.get_by_label("Concept", exact=True)).to_have_value(CONCEPT)
    screenshot(page, "trust-embeddings-no-match")
    unchoose(page, "class", "jade spire")
    page.get_by_text("Highest scores").wait_for()
    expect(page.get_by_label("Concept", exact=True)).to_have_value(CONCEPT)

    # a click on the map shows that image beside it
    map_chart = chart(page, "cl.embeddings.map_chart")
    expect(map_chart).to_contain_text("PCA of the L2-normalised embeddings")
    map_chart.scroll_into_view_if_needed()
    expect(page.get_by_text("Click a point (or drag a box)")).to_be_visible()
    point = map_chart.locator("g.scatterlayer path.point").first
    point.click(force=True)
    settle(page)
    side = page.locator('[data-testid="stImage"]').last
    expect(side).to_contain_text(re.compile(r"#\d+ .* circle"))
    screenshot(page, "trust-embeddings-map")


# -- Concept bottleneck ---------------------------------------------------------------------------------


def test_labo_model_explains_intervenes_and_saves_as_labo(page, app):  # noqa: F811  (page is the imported fixture)
    page.set_default_timeout(LOAD_TIMEOUT_MS)
    page.goto(f"{app['url']}/Concept_bottleneck")
    page.get_by_text("Prune spurious concepts").first.wait_for()
    settle(page)
    select(page, "Model", f"Saved: {LABO_NAME}")
    page.get_by_text(f"saved model {LABO_NAME}").first.wait_for()
    settle(page)
    expect(page.get_by_text("LaBo (Language in a Bottle)").first).to_be_visible()
    assert page.get_by_text("post-hoc concept bottleneck model** (PCBM) scores").count() == 0
    contributions = chart(page, "cl.cbm.contributions")
    expect(contributions).to_contain_text("relative to the mean class")
    labels = contributions.locator("g.barlayer text").all_text_contents()
    assert any(t.startswith("+") for t in labels) and any(t.startswith("-") or t.startswith("−") for t in labels), labels
    assert all("%" in t for t in labels)  # every bar says its share of the evidence
    folder = page.get_by_label("Folder name", exact=True)
    expect(folder).to_have_value(re.compile(r"^labo-trained-seed\d+$"))

    # a "present" preset moves the concept's score to its 95th train percentile
    preset = page.locator('[data-testid="stRadio"]').filter(has=page.get_by_text(re.compile(r"^present \("))).first
    preset.get_by_text(re.compile(r"^present \(")).click()
    settle(page)
    expect(page.get_by_text(re.compile(r"^With .+ -?\d+\.\d+ → -?\d+\.\d+, the prediction")).first).to_be_visible()

    # an image from the misclassified list, and why not its true class
    page.get_by_text("from the misclassified", exact=True).click()
    settle(page)
    box = page.locator('[data-testid="stSelectbox"]').filter(has_text="Misclassified images")
    expect(box).to_have_count(1)
    box.click()
    options = page.get_by_role("option")
    chosen = options.nth(min(1, options.count() - 1)).inner_text()
    options.nth(min(1, options.count() - 1)).click()
    settle(page)
    match = re.match(r"#(\d+): (.+) → predicted (.+) \(", chosen)
    assert match, chosen
    index, true_class, predicted = int(match.group(1)), match.group(2), match.group(3)
    expect(page.get_by_text(f"Prediction: {predicted}").first).to_be_visible()
    expect(page.get_by_text(f"the true class is {true_class}").first).to_be_visible()
    expect(page.locator('[data-testid="stImage"]').filter(has_text=f"#{index} ").first).to_be_visible()
    why_not = chart(page, "cl.cbm.whynot_chart")
    expect(why_not).to_contain_text(f"Why “{predicted}” and not “{true_class}”")
    expect(why_not.locator("g.barlayer path").first).to_be_attached()
    # the preset chosen for the first image is not carried to this one: it starts "as predicted"
    expect(page.get_by_text("Choose a preset (or a custom value)").first).to_be_visible()
    screenshot(page, "trust-labo")
