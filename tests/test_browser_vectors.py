"""The Concept vectors (LM) page in a real headless Chromium: the ranked vectors, the layer x
score map and the validation bars render; an unlearning run shows its diff; screenshots land in
``artifacts/screenshots/Concept_vectors_LM.png`` and ``Concept_vectors_LM_unlearned.png``.

Browser, page and screenshot helpers come from ``test_browser``; the server runs on the shipped
``zoo:facts-gpt2``.
"""

from __future__ import annotations

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

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"needs Debian's chromium at {CHROMIUM} (apt-get install chromium)"),
]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory, request):
    from conceptlab import zoo

    if zoo.available()["facts-gpt2"] is None:
        pytest.skip("zoo:facts-gpt2 is not built")
    return start_app(request, tmp_path_factory, "browser-vectors-home", CONCEPTLAB_LM_BACKBONE="zoo:facts-gpt2")


def test_concept_vectors_page(page, app_url):  # noqa: F811  (page is the imported fixture)
    page.goto(f"{app_url['url']}/Concept_vectors_LM")
    page.get_by_text("target accuracy drop").first.wait_for(timeout=300_000)
    settle(page)
    # QA accuracy, ranked vectors, every answer (in an expander); the Steer section's answers and sweep table (in an expander)
    expect(page.locator('[data-testid="stDataFrame"]')).to_have_count(5)
    score_map = page.locator(".js-plotly-plot").filter(has_text="score of every value vector")
    expect(score_map).to_have_count(1)
    expect(score_map.locator("g.heatmaplayer image, g.heatmaplayer path, .hm image").first).to_be_attached()
    bars = page.locator(".js-plotly-plot").filter(has_text="unrelated")
    expect(bars.first.locator("g.barlayer path").first).to_be_attached()
    assert screenshot(page, "Concept_vectors_LM").stat().st_size > 10_000

    page.get_by_role("button", name="Run unlearning").click()
    page.get_by_text("cosine(v, v′)").first.wait_for(timeout=300_000)
    settle(page)
    expect(page.get_by_text("top tokens before:")).to_be_visible()
    assert screenshot(page, "Concept_vectors_LM_unlearned").stat().st_size > 10_000
