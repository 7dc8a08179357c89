"""The Discovered concepts page in a real headless Chromium: the feature table, the activation
histogram and the top-image grid render, and a screenshot lands in
``artifacts/screenshots/Discovered_concepts.png``.

The browser, page and screenshot helpers come from ``test_browser``; the server (``start_app``)
is started with its own environment so that it can shrink the page's train split (``CONCEPTLAB_DISCOVERY_TRAIN``).
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

TRAIN = 300  # train images the page's SAE learns from
SHOWN = 96

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"needs Debian's chromium at {CHROMIUM} (apt-get install chromium)"),
]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory, request):
    """``streamlit run dashboards/Home.py`` on a free port, with a small train split."""
    return start_app(request, tmp_path_factory, "browser-dn-home", CONCEPTLAB_DEFAULT_DATASET=f"test:{SHOWN}:0", CONCEPTLAB_DISCOVERY_TRAIN=str(TRAIN))


def test_discovered_concepts_page(page, app_url):  # noqa: F811  (page is the imported fixture)
    page.goto(f"{app_url['url']}/Discovered_concepts")
    page.get_by_text("Aligned text concepts").first.wait_for(timeout=300_000)  # embeds and trains first
    settle(page)
    assert page.get_by_text("Naming precision").first.is_visible()
    expect(page.locator('[data-testid="stDataFrame"]')).to_have_count(3)  # features, candidates, alignment
    histogram = page.locator(".js-plotly-plot").filter(has_text="Activation of latent")
    expect(histogram).to_have_count(1)
    expect(histogram.locator("g.barlayer path").first).to_be_attached()
    images = page.locator('[data-testid="stImage"]')
    expect(images.first).to_be_attached()
    assert images.count() >= 1
    first = images.first
    first.scroll_into_view_if_needed()
    assert first.locator("img").evaluate("img => img.complete && img.naturalWidth > 0")
    assert screenshot(page, "Discovered_concepts").stat().st_size > 10_000
