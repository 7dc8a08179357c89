"""The Concept bottleneck page in a real headless Chromium: the heatmap and the contribution chart
render, pruning shows the accuracy change, and a screenshot lands in
``artifacts/screenshots/Concept_bottleneck.png``.

The browser, page and screenshot helpers come from ``test_browser``; the server (``start_app``)
is started with its own environment so that it can shrink the page's training splits (``CONCEPTLAB_CBM_SIZES``).
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

SIZES = "600:200"  # train : val/shifted images the page trains and evaluates on
SHOWN = 64

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"needs Debian's chromium at {CHROMIUM} (apt-get install chromium)"),
]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory, request):
    """``streamlit run dashboards/Home.py`` on a free port, with small CBM splits."""
    return start_app(request, tmp_path_factory, "browser-cbm-home", CONCEPTLAB_DEFAULT_DATASET=f"shifted:{SHOWN}:0", CONCEPTLAB_CBM_SIZES=SIZES)


def test_concept_bottleneck_page(page, app_url):  # noqa: F811  (page is the imported fixture)
    page.goto(f"{app_url['url']}/Concept_bottleneck")
    page.get_by_text("Prune spurious concepts").first.wait_for()
    settle(page)
    assert page.get_by_text("Accuracy on shifted").first.is_visible()

    plots = page.locator(".js-plotly-plot")
    expect(plots.first).to_be_attached()
    heatmap = plots.nth(0)
    heatmap.scroll_into_view_if_needed()
    expect(heatmap.locator("g.heatmaplayer image, g.hm image").first).to_be_attached()  # the class × concept grid
    expect(heatmap).to_contain_text("Concept weights")
    expect(heatmap).to_contain_text("ruby disc")

    contributions = plots.filter(has_text="contributions to its logit")
    expect(contributions).to_have_count(1)
    expect(contributions.locator("g.barlayer path").first).to_be_attached()
    expect(contributions).to_contain_text("(intercept)")
    expect(page.get_by_text("Prediction:").first).to_be_visible()

    if app_url["zoo"]:  # the suggested backgrounds are pruned by default, with their accuracy change
        editing = plots.filter(has_text="before and after pruning")
        expect(editing).to_have_count(1)
        expect(page.locator('[data-testid="stMetric"]').filter(has_text="shifted accuracy after pruning")).to_have_count(1)
    assert screenshot(page, "Concept_bottleneck").stat().st_size > 10_000


def test_trustworthy_panels_render(page, app_url):  # noqa: F811  (page is the imported fixture)
    """Intervals under the accuracies, the intervention curves per policy, and "Where does it look"
    with its image, attribution maps and mask outline, as a person sees them."""
    page.goto(f"{app_url['url']}/Concept_bottleneck")
    page.get_by_text("Prune spurious concepts").first.wait_for()
    settle(page)
    expect(page.get_by_text("95 % bootstrap intervals over the images").first).to_be_visible()
    plots = page.locator(".js-plotly-plot")
    curves = plots.filter(has_text="take their true value")
    expect(curves).to_have_count(1)
    for policy in ("random", "weight", "uncertainty"):
        expect(curves).to_contain_text(policy)
    expect(curves.locator("g.scatterlayer path.js-line").first).to_be_attached()
    where = plots.filter(has_text="looks (outline")
    expect(where).to_have_count(1)
    where.scroll_into_view_if_needed()
    expect(where.locator("g.heatmaplayer image, g.hm image").first).to_be_attached()  # the attribution maps
    expect(where.locator("g.contourlayer path, g.contour path").first).to_be_attached()  # the mask's outline
    expect(page.locator('[data-testid="stMetric"]').filter(has_text="pointing game")).to_have_count(2)
    assert screenshot(page, "Concept_bottleneck_trustworthy").stat().st_size > 10_000
