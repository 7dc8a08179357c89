"""The Diffusion targets page in a real headless Chromium: the step images, the convergence curve,
the hybrid samples and the diversity histograms render, and a screenshot lands in
``artifacts/screenshots/Diffusion_targets.png``.

It uses the zoo diffusion models when they are built (a screenshot worth looking at), else tiny
random models built in code; the diversity panel starts at a few seeds to stay light.
"""

from __future__ import annotations

import pytest

expect = pytest.importorskip("playwright.sync_api").expect
pytest.importorskip("diffusers")

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

    env = {"CONCEPTLAB_DIFFUSION_SEEDS": "8"}
    if zoo.available()["shapes-ddpm"] is None or zoo.available()["shapes-ddpm-distilled"] is None:
        from tests.test_app_diffusion import save_tiny_models

        backbone = request.getfixturevalue("tiny_backbone")
        base, student = save_tiny_models(tmp_path_factory.mktemp("browser-diffusion-models"), backbone)
        env |= {"CONCEPTLAB_DIFFUSION_BASE": base, "CONCEPTLAB_DIFFUSION_DISTILLED": student}
    return start_app(request, tmp_path_factory, "browser-diffusion-home", **env)


def test_diffusion_targets_page(page, app_url):  # noqa: F811  (page is the imported fixture)
    page.goto(f"{app_url['url']}/Diffusion_targets")
    page.get_by_text("Diversity across seeds").first.wait_for(timeout=300_000)
    settle(page)
    page.locator('[data-testid="stDataFrame"]').nth(1).wait_for(timeout=300_000)  # the diversity table comes last
    settle(page)
    expect(page.locator('[data-testid="stDataFrame"]')).to_have_count(2)  # structure steps, diversity
    curve = page.locator(".js-plotly-plot").filter(has_text="Convergence of the diffusion target")
    expect(curve).to_have_count(1)
    expect(curve.locator("g.scatterlayer path.js-line").first).to_be_attached()
    histograms = page.locator(".js-plotly-plot").filter(has_text="across seeds")
    expect(histograms).to_have_count(4)  # size, fill, background, position are left to the model
    images = page.locator('[data-testid="stImage"]')
    assert images.count() >= 4 + 8  # x_t and x̂0 of both models, eight hybrid samples
    first = images.first
    first.scroll_into_view_if_needed()
    assert first.locator("img").evaluate("img => img.complete && img.naturalWidth > 0")
    assert page.get_by_text("base x̂0 · step").first.is_visible()
    assert screenshot(page, "Diffusion_targets").stat().st_size > 10_000
