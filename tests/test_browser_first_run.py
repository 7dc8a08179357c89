"""`conceptlab demo` as `make app` runs it, in a real browser: the app is served while the first run
embeds in the background, Home shows it, and the default pages then read what it stored (no page
embeds again on its first visit)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

expect = pytest.importorskip("playwright.sync_api").expect

from conceptlab import zoo  # noqa: E402
from conceptlab.experiments import read_status  # noqa: E402
from conceptlab.store import ActivationStore  # noqa: E402
from tests.test_browser import (  # noqa: E402  (fixtures and helpers, not tests)
    ROOT,
    _free_port,
    _healthy,
    browser,  # noqa: F401  (a fixture)
    page,  # noqa: F401  (a fixture)
    screenshot,
    settle,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(zoo.available().get("shapes-clip") is None, reason="the demo runs on the shipped zoo:shapes-clip"),
]
#: the pages' sizes made small, as a quick demo may; the first run embeds exactly what they read
SIZES = {"CONCEPTLAB_CBM_SIZES": "200:100", "CONCEPTLAB_DISCOVERY_TRAIN": "200"}


@pytest.fixture()
def demo(tmp_path):
    port = _free_port()
    home = tmp_path / "home"
    env = {**os.environ, "CONCEPTLAB_HOME": str(home), "HF_HUB_OFFLINE": "1", **SIZES}
    log = (tmp_path / "demo.log").open("w")
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "-m", "conceptlab.cli", "demo", "--port", str(port), "--no-probes"],
                               cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    while not _healthy(url):
        if process.poll() is not None or time.monotonic() - started > 180:
            log.flush()
            pytest.fail(f"the demo did not serve the app:\n{(tmp_path / 'demo.log').read_text()[-3000:]}")
        time.sleep(0.5)
    yield {"url": url, "store": ActivationStore(home / "store"), "started": started, "process": process}
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


def test_demo_serves_home_first_and_pages_read_what_it_stored(demo, page):  # noqa: F811
    page.goto(demo["url"])
    expect(page.get_by_text("Activation store")).to_be_visible()
    screenshot(page, "first-run-home")
    print(f"Home rendered {time.monotonic() - demo['started']:.1f} s after `conceptlab demo` started")
    # the first run finishes in the background; Home then says so
    deadline = time.monotonic() + 600
    while (status := read_status(demo["store"])) is None or status["alive"]:
        assert time.monotonic() < deadline, "the first run did not finish"
        time.sleep(2)
    assert status["state"] == "finished", status
    page.reload()
    expect(page.get_by_text("entries the default pages and probes read are stored")).to_be_visible()
    screenshot(page, "first-run-home-done")
    stored = {e["key"] for e in demo["store"].entries()}
    assert len(stored) == 4  # test 500, train 200, val 100, shifted 100
    for name, marker in (("Embeddings", "Score a concept"), ("Concept_bottleneck", "Model")):
        page.goto(f"{demo['url']}/{name}")
        expect(page.get_by_text(marker).first).to_be_visible()
        settle(page)
        screenshot(page, f"first-run-{name.lower()}")
    assert {e["key"] for e in demo["store"].entries()} == stored  # the pages embedded nothing new
