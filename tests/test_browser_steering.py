"""The Steer section of the Concept vectors (LM) page in a real headless Chromium: the dose-response
and coherence curves render with the coherent span, the slider moves the numbers; a screenshot
lands in ``artifacts/screenshots/Concept_vectors_LM_steering.png``."""

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
    return start_app(request, tmp_path_factory, "browser-steering-home", CONCEPTLAB_LM_BACKBONE="zoo:facts-gpt2")


def test_steering_curves(page, app_url):  # noqa: F811  (page is the imported fixture)
    page.goto(f"{app_url['url']}/Concept_vectors_LM")
    page.get_by_text("repeat share").first.wait_for(timeout=300_000)
    settle(page)
    curves = page.locator(".js-plotly-plot").filter(has_text="coherence")
    expect(curves).to_have_count(1)
    expect(curves.locator("g.scatterlayer path.js-line").first).to_be_attached()
    expect(page.get_by_text("Works from ×")).to_be_visible()
    target = page.locator('[data-testid="stMetric"]').filter(has_text="target rate")
    expect(target).to_have_count(1)
    before = target.inner_text()
    assert screenshot(page, "Concept_vectors_LM_steering").stat().st_size > 10_000
    slider = page.get_by_role("slider", name="Multiplier")
    slider.focus()
    for _ in range(2):  # 1.0 -> 1.5 in steps of 0.25: the target rate rises (0.48 -> 0.98 measured)
        slider.press("ArrowRight")
    settle(page)
    expect(target).not_to_have_text(before, timeout=120_000)
