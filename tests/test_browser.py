"""End to end: the real app server, driven in headless Chromium through Playwright.

Screenshots of every page land in ``artifacts/screenshots/<page>.png`` (git-ignored).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

expect = pytest.importorskip("playwright.sync_api").expect

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
SIZE = 128
CONCEPT = "a red shape"
START_TIMEOUT_S = 90
PAGE_TIMEOUT_MS = 120_000

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"needs Debian's chromium at {CHROMIUM} (apt-get install chromium)"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def start_app(request, tmp_path_factory, name: str, **env_overrides: str) -> dict:
    """Start ``streamlit run dashboards/Home.py`` on a free port with a fresh CONCEPTLAB_HOME and
    the given environment; stop it when the requesting fixture's scope ends.

    The backbone is the real zoo model when it is built (screenshots worth looking at), else a
    tiny random CLIP. Returns ``{"url": ..., "zoo": whether the zoo model is used}``.
    """
    from conceptlab import zoo

    home = tmp_path_factory.mktemp(name)
    built = zoo.available()["shapes-clip"] is not None
    spec = "zoo:shapes-clip" if built else f"local-dir:{request.getfixturevalue('tiny_clip_dir')}"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "CONCEPTLAB_HOME": str(home),
        "HF_HUB_OFFLINE": "1",
        "CONCEPTLAB_DEFAULT_BACKBONE": spec,
        **env_overrides,
    }
    log = (home / "streamlit.log").open("w")
    server = subprocess.Popen(
        [
            sys.executable, "-m", "streamlit", "run", "dashboards/Home.py",
            "--server.address", "127.0.0.1", "--server.port", str(port),
            "--server.headless", "true", "--browser.gatherUsageStats", "false",
        ],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )

    def stop() -> None:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()

    request.addfinalizer(stop)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not _healthy(url):
        if server.poll() is not None or time.monotonic() > deadline:
            log.flush()
            pytest.fail(f"the app server did not come up at {url}:\n{(home / 'streamlit.log').read_text()[-3000:]}")
        time.sleep(0.5)
    return {"url": url, "zoo": built}


@pytest.fixture(scope="module")
def app_url(tmp_path_factory, request):
    """The app on the test split, for the Home and Embeddings pages."""
    return start_app(request, tmp_path_factory, "browser-home", CONCEPTLAB_DEFAULT_DATASET=f"test:{SIZE}:0")["url"]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield chromium
        chromium.close()


@pytest.fixture()
def page(browser):
    expect.set_options(timeout=PAGE_TIMEOUT_MS)
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors in the page: {errors}"


def settle(page) -> None:
    """Wait until the script run is over: no 'Running...' status, no spinner."""
    page.wait_for_timeout(500)
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden")
    page.locator('[data-testid="stSpinner"]').first.wait_for(state="hidden")
    assert page.locator('[data-testid="stException"]').count() == 0, page.locator('[data-testid="stException"]').first.inner_text()


def screenshot(page, name: str) -> Path:
    """A full-length screenshot (Streamlit scrolls inside its main block, so grow the viewport)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    height = page.evaluate(
        "() => Math.max(document.body.scrollHeight,"
        " ...Array.from(document.querySelectorAll('[data-testid=\"stMain\"], [data-testid=\"stAppViewContainer\"]'),"
        " e => e.scrollHeight))"
    )
    page.set_viewport_size({"width": 1440, "height": min(int(height) + 40, 8000)})
    page.wait_for_timeout(800)  # let plotly re-lay out to the new size
    page.mouse.move(1435, 5)  # no hover effects in the picture
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def test_home_page(page, app_url):
    page.goto(app_url)
    page.get_by_text("Activation store").first.wait_for()
    settle(page)
    assert page.locator('[data-testid="stSidebar"]').get_by_text("Backbone spec").is_visible()
    assert page.get_by_text(f"ShapesWorld test, {SIZE} images, seed 0").is_visible()
    expect(page.locator('[data-testid="stPageLink"]').get_by_text("Embeddings")).to_be_visible()
    page.get_by_role("button", name="Compute them now").click()
    page.get_by_text("Stored under key").wait_for()
    settle(page)
    expect(page.locator('[data-testid="stDataFrame"]')).to_have_count(1)  # the store now lists the entry
    assert screenshot(page, "Home").stat().st_size > 10_000


def test_embeddings_page_scores_a_typed_concept(page, app_url):
    page.goto(f"{app_url}/Embeddings")
    page.get_by_text("Score a concept").first.wait_for()
    settle(page)
    expect(page.locator('[data-testid="stImage"]')).to_have_count(24)  # the grid, before any concept
    expect(page.locator(".js-plotly-plot")).to_have_count(1)  # the map (plotly loads lazily)

    concept = page.get_by_label("Concept", exact=True)
    concept.fill(CONCEPT)
    concept.press("Enter")
    page.get_by_text("Highest scores").wait_for()
    settle(page)

    expect(page.locator(".js-plotly-plot")).to_have_count(2)  # the score histogram and the map
    histogram = page.locator(".js-plotly-plot").first
    expect(histogram).to_contain_text(CONCEPT)
    expect(histogram.locator("g.barlayer path").first).to_be_attached()
    k = 8
    images = page.locator('[data-testid="stImage"]')
    expect(images).to_have_count(24 + 2 * k)
    scored = [images.nth(i).inner_text().strip() for i in range(24, 24 + 2 * k)]
    assert all(re.match(r"^[+-]\d+\.\d{4} · #\d+ ", text) for text in scored), scored
    first_top = images.nth(24)
    first_top.scroll_into_view_if_needed()
    assert first_top.locator("img").evaluate("img => img.complete && img.naturalWidth > 0")
    assert screenshot(page, "Embeddings").stat().st_size > 10_000
