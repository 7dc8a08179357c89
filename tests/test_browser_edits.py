"""Edits that must stick, in a real headless Chromium: the sequences of issue 10, replayed.

- Concept set: an added concept shows as a chip, the bank grows by one and stays so after an
  unrelated click; a rename replaces the old chip for good; empty and duplicate adds say so; all of
  it (and half-typed text) survives a trip to another page.
- Discovered concepts: a click on a table row opens that latent; renaming it twice renames that
  latent twice (never the table's first latent), and the saved run on disk says so; the open
  latent survives a trip to another page.

One app server serves the module (both pages, a small train split); screenshots land in
``artifacts/screenshots/edits-*.png``.
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

TRAIN, SHOWN = 300, 96
LOAD_TIMEOUT_MS = 300_000
#: a viewport as tall as the pages: Streamlit draws elements out of view as placeholders only
TALL = {"width": 1440, "height": 6000}

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"needs Debian's chromium at {CHROMIUM} (apt-get install chromium)"),
]


@pytest.fixture(scope="module")
def app(tmp_path_factory, request):
    home = tmp_path_factory.mktemp("browser-edits-home")
    started = start_app(request, tmp_path_factory, "browser-edits", CONCEPTLAB_HOME=str(home), CONCEPTLAB_DEFAULT_DATASET=f"test:{SHOWN}:0",
                        CONCEPTLAB_DISCOVERY_TRAIN=str(TRAIN), CONCEPTLAB_CBM_SIZES="300:100")
    return {**started, "home": home}


# -- helpers ------------------------------------------------------------------------------------------


def go_to(view, title: str, ready: str) -> None:
    """Switch page through the sidebar (same session, unlike page.goto) and wait for ``ready``."""
    view.locator('[data-testid="stSidebarNav"] a').filter(has_text=title).first.click()
    view.get_by_text(ready).first.wait_for(timeout=LOAD_TIMEOUT_MS)
    settle(view)


def bank_size(view) -> int:
    metric = view.locator('[data-testid="stMetric"]').filter(has_text="Concepts in the bank")
    return int(metric.locator('[data-testid="stMetricValue"]').inner_text())


def chips(view, class_name: str) -> list[str]:
    box = view.locator('[data-testid="stMultiSelect"]').filter(has=view.get_by_text(class_name, exact=True)).first
    box.wait_for()
    tags = box.locator("[data-tag]")
    return [tags.nth(i).get_attribute("aria-label") for i in range(tags.count())]


def type_and_click(view, label: str, text: str, button: str) -> None:
    box = view.get_by_label(label, exact=True)
    box.fill(text)
    box.press("Tab")  # commit the text (a rerun) before the click
    settle(view)
    view.get_by_role("button", name=button, exact=True).click()
    settle(view)


def unrelated_click(view) -> None:
    view.get_by_text("overwrite", exact=True).click()  # the save form's checkbox: reruns the page, edits nothing
    settle(view)


def open_latent(view) -> tuple[int, str]:
    heading = view.locator("h3").filter(has_text=re.compile(r"^Latent \d+: ")).first.inner_text()
    match = re.match(r"Latent (\d+): “(.*)”", heading)
    return int(match.group(1)), match.group(2)


def click_table_row(view, row: int) -> None:
    """Click data row ``row`` (0-based) of the features table (a canvas grid: click by position)."""
    grid = view.locator('[data-testid="stDataFrame"]').first
    grid.scroll_into_view_if_needed()
    row_height = 35  # Streamlit's default row (and header) height
    grid.click(position={"x": 12, "y": row_height * (row + 1) + row_height / 2})  # the row-selection column
    settle(view)


# -- the concept set ------------------------------------------------------------------------------------


def test_concept_set_edits_stick_and_say_what_happened(page, app):  # noqa: F811  (page is the imported fixture)
    page.set_default_timeout(LOAD_TIMEOUT_MS)  # a busy 2-core machine: embedding, filters and LaBo fits take minutes
    page.set_viewport_size(TALL)
    page.goto(f"{app['url']}/Concept_set")
    page.get_by_text("LaBo on this set").first.wait_for(timeout=LOAD_TIMEOUT_MS)
    settle(page)
    start = bank_size(page)
    added_to = page.get_by_label("Add to class", exact=True).input_value()

    type_and_click(page, "New concept", "shiny crimson thing", "Add concept")
    expect(page.get_by_text("Added “shiny crimson thing”")).to_be_visible()
    assert "shiny crimson thing" in chips(page, added_to)
    assert bank_size(page) == start + 1
    unrelated_click(page)
    assert "shiny crimson thing" in chips(page, added_to), "the added concept vanished after an unrelated click"
    assert bank_size(page) == start + 1

    type_and_click(page, "New concept", "shiny crimson thing", "Add concept")
    expect(page.get_by_text("is already present in class")).to_be_visible()
    type_and_click(page, "New concept", "   ", "Add concept")
    expect(page.get_by_text("The name is empty; nothing changed.")).to_be_visible()
    assert bank_size(page) == start + 1

    old = page.get_by_label("Rename", exact=True).input_value()  # the rename picker's first "class :: concept"
    cls, old_name = old.split(" :: ", 1)
    type_and_click(page, "New name", "glossy red thing", "Rename concept")
    expect(page.get_by_text(f"Renamed “{old_name}” to “glossy red thing”")).to_be_visible()
    assert "glossy red thing" in chips(page, cls) and old_name not in chips(page, cls)
    unrelated_click(page)
    assert "glossy red thing" in chips(page, cls) and old_name not in chips(page, cls), "the rename did not stick"
    assert bank_size(page) == start + 1  # a rename keeps the count
    screenshot(page, "edits-concept-set")
    page.set_viewport_size(TALL)

    typed = page.get_by_label("New concept", exact=True)
    typed.fill("half typed")
    typed.press("Tab")
    settle(page)
    go_to(page, "Embeddings", "Score a concept")
    go_to(page, "Concept set", "LaBo on this set")
    assert "shiny crimson thing" in chips(page, added_to) and "glossy red thing" in chips(page, cls)
    assert old_name not in chips(page, cls)
    assert bank_size(page) == start + 1
    expect(page.get_by_label("New concept", exact=True)).to_have_value("half typed")
    screenshot(page, "edits-concept-set-after-page-switch")


# -- discovered concepts ------------------------------------------------------------------------------


def test_renaming_a_latent_twice_renames_that_latent(page, app):  # noqa: F811
    from conceptlab.discovery import DiscoveryRun

    page.set_default_timeout(LOAD_TIMEOUT_MS)
    page.set_viewport_size(TALL)
    page.goto(f"{app['url']}/Discovered_concepts")
    page.get_by_text("Aligned text concepts").first.wait_for(timeout=LOAD_TIMEOUT_MS)
    settle(page)
    first, first_name = open_latent(page)  # the table's first row (best AUROC) opens by default

    click_table_row(page, 1)
    target, _ = open_latent(page)
    assert target != first, "a click on the second row did not open its latent"
    expect(page.get_by_label("Latent", exact=True)).to_have_value(re.compile(rf"^{target} · "))  # the picker follows the click

    type_and_click(page, "New name", "my first name", "Rename")
    assert open_latent(page) == (target, "my first name")
    expect(page.get_by_text(f"Renamed latent {target} from")).to_be_visible()
    expect(page.get_by_text("1 unsaved rename(s)")).to_be_visible()
    type_and_click(page, "New name", "my second name", "Rename")
    assert open_latent(page) == (target, "my second name"), "the second rename went to another latent"
    screenshot(page, "edits-discovered-concepts")
    page.set_viewport_size(TALL)

    go_to(page, "Concept set", "LaBo on this set")
    go_to(page, "Discovered concepts", "Aligned text concepts")
    assert open_latent(page) == (target, "my second name"), "the open latent or its rename was lost on a page switch"

    page.get_by_label("Folder name", exact=True).fill("edited-run")
    page.get_by_label("Folder name", exact=True).press("Tab")
    settle(page)
    page.get_by_role("button", name="Save", exact=True).click()
    settle(page)
    expect(page.get_by_text("Saved to")).to_be_visible()
    saved = DiscoveryRun.load(app["home"] / "discovery" / "edited-run")
    assert saved.names[target] == "my second name"
    assert saved.renamed == {target: {"name": "my second name", "auto_name": saved.names.table.loc[target, "auto_name"], "by": "analyst"}}
    assert saved.names[first] == first_name and not saved.names.table.loc[first, "renamed"]
    screenshot(page, "edits-discovered-concepts-saved")


def test_training_shows_steps_and_can_be_cancelled(page, app):  # noqa: F811
    page.set_default_timeout(LOAD_TIMEOUT_MS)
    page.set_viewport_size(TALL)
    page.goto(f"{app['url']}/Discovered_concepts")
    page.get_by_text("Aligned text concepts").first.wait_for(timeout=LOAD_TIMEOUT_MS)
    settle(page)
    page.get_by_text("Training settings").click()
    steps = page.get_by_label("Steps", exact=True)
    steps.fill("5000")  # long enough to be caught mid-way
    steps.press("Enter")
    progress = page.get_by_text(re.compile(r"step \d+ of 5000 · loss .* s left"))
    progress.wait_for()
    page.get_by_role("button", name="Cancel training").first.click()  # one widget id; a stale copy may linger while the page reruns
    expect(page.get_by_text(re.compile(r"Training cancelled after step \d+ of 5000; the partial SAE was discarded"))).to_be_visible()
    settle(page)
    assert page.get_by_text("Aligned text concepts").count() == 0  # nothing half-trained is shown
    screenshot(page, "edits-training-cancelled")
