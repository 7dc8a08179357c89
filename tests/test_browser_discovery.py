"""The Discovered concepts page in a real headless Chromium: the feature table, the activation
histogram and the top-image grid render, and a screenshot lands in
``artifacts/screenshots/Discovered_concepts.png``.

The browser, page and screenshot helpers come from ``test_browser``; the server fixture is its
own so that it can shrink the page's train split (``CONCEPTLAB_DISCOVERY_TRAIN``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

expect = pytest.importorskip("playwright.sync_api").expect

from tests.test_browser import (  # noqa: E402  (fixtures and helpers, not tests)
    CHROMIUM,
    ROOT,
    START_TIMEOUT_S,
    _free_port,
    _healthy,
    browser,  # noqa: F401  (a fixture)
    page,  # noqa: F401  (a fixture)
    screenshot,
    settle,
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
    from conceptlab import zoo

    home = tmp_path_factory.mktemp("browser-dn-home")
    built = zoo.available()["shapes-clip"] is not None
    spec = "zoo:shapes-clip" if built else f"local-dir:{request.getfixturevalue('tiny_clip_dir')}"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "CONCEPTLAB_HOME": str(home),
        "HF_HUB_OFFLINE": "1",
        "CONCEPTLAB_DEFAULT_BACKBONE": spec,
        "CONCEPTLAB_DEFAULT_DATASET": f"test:{SHOWN}:0",
        "CONCEPTLAB_DISCOVERY_TRAIN": str(TRAIN),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
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
