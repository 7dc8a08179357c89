"""The user's own data in a real headless Chromium: pick "Your own data" on Home, type a folder
spec, then open the Concept bottleneck page in the same session; screenshots of both pages land in
``artifacts/screenshots/``."""

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
    pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"needs Debian's chromium at {CHROMIUM} (apt-get install chromium)"),
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from conceptlab.data import ShapesWorld, export_dataset

    return export_dataset(ShapesWorld("test", size=80, seed=2), tmp_path_factory.mktemp("own-browser") / "shapes", progress=False)


@pytest.fixture(scope="module")
def app_url(tmp_path_factory, request):
    return start_app(request, tmp_path_factory, "browser-own-data", CONCEPTLAB_CBM_SIZES="300:100")


def test_pick_a_folder_on_home_then_train_a_cbm_on_it(page, app_url, folder):  # noqa: F811  (page is the imported fixture)
    page.goto(app_url["url"])
    page.get_by_text("Embeddings of this selection").first.wait_for()
    sidebar = page.locator('[data-testid="stSidebar"]')
    sidebar.get_by_text("Your own data").click()
    spec_box = sidebar.get_by_role("textbox", name="Dataset spec")
    spec_box.fill(f"folder:{folder}")
    spec_box.press("Enter")
    expect(page.get_by_text(f"folder:{folder}").first).to_be_visible(timeout=60_000)
    expect(page.get_by_text("80 images").first).to_be_visible()
    expect(page.get_by_text("No concept annotations").first).to_be_visible()
    settle(page)
    screenshot(page, "Own_data_Home")

    sidebar.get_by_role("link", name="Concept bottleneck").click()  # in-app navigation keeps the session's selection
    page.get_by_text("Prune spurious concepts").first.wait_for(timeout=180_000)
    settle(page)
    expect(page.get_by_text("your data has no shifted split").first).to_be_visible()
    expect(page.get_by_text("trained on 56 train images").first).to_be_visible()  # 70 % of the 80 images
    contributions = page.locator(".js-plotly-plot").filter(has_text="contributions to its logit")
    expect(contributions).to_have_count(1)
    assert screenshot(page, "Own_data_Concept_bottleneck").stat().st_size > 10_000
