"""The Concept bottleneck page in a real headless Chromium: the heatmap and the contribution chart
render, pruning shows the accuracy change, and a screenshot lands in
``artifacts/screenshots/Concept_bottleneck.png``.

The browser, page and screenshot helpers come from ``test_browser``; the server fixture is its
own so that it can shrink the page's training splits (``CONCEPTLAB_CBM_SIZES``).
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

SIZES = "600:200"  # train : val/shifted images the page trains and evaluates on
SHOWN = 64

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"needs Debian's chromium at {CHROMIUM} (apt-get install chromium)"),
]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory, request):
    """``streamlit run dashboards/Home.py`` on a free port, with small CBM splits."""
    from conceptlab import zoo

    home = tmp_path_factory.mktemp("browser-cbm-home")
    built = zoo.available()["shapes-clip"] is not None
    spec = "zoo:shapes-clip" if built else f"local-dir:{request.getfixturevalue('tiny_clip_dir')}"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "CONCEPTLAB_HOME": str(home),
        "HF_HUB_OFFLINE": "1",
        "CONCEPTLAB_DEFAULT_BACKBONE": spec,
        "CONCEPTLAB_DEFAULT_DATASET": f"shifted:{SHOWN}:0",
        "CONCEPTLAB_CBM_SIZES": SIZES,
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
