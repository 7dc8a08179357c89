"""The Concept vectors & TCAV page in a real headless Chromium: a TCAV run on ShapesWorld concept columns
renders the CAV accuracy bars, the TCAV bars with the random band and the verdict table; the screenshot
lands in ``artifacts/screenshots/TCAV.png``."""

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

    if zoo.available()["shapes-clip"] is None:
        pytest.skip("zoo:shapes-clip is not built")
    return start_app(request, tmp_path_factory, "browser-tcav-home", CONCEPTLAB_TCAV_BACKBONE="zoo:shapes-clip", CONCEPTLAB_TCAV_RUNS="10")


def test_tcav_page(page, app_url):  # noqa: F811  (page is the imported fixture)
    page.goto(f"{app_url['url']}/TCAV")
    page.get_by_role("button", name="Run TCAV").click()
    page.get_by_text("Against the class rules").first.wait_for(timeout=600_000)
    settle(page)
    expect(page.locator(".js-plotly-plot").filter(has_text="Held-out accuracy")).to_have_count(1)
    bars = page.locator(".js-plotly-plot").filter(has_text="TCAV sign count")
    expect(bars).to_have_count(1)
    expect(bars.locator("g.barlayer path").first).to_be_attached()
    expect(page.locator('[data-testid="stDataFrame"]')).to_have_count(2)
    assert screenshot(page, "TCAV").stat().st_size > 10_000
