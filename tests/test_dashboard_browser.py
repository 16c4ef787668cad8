"""Real browser: start ``musiclm-eval dashboard`` on a free port, switch pages in Debian chromium, play clips.

Leaves ``artifacts/dashboard.png`` (gitignored) behind as a screenshot of the Clips page.
"""

from __future__ import annotations

import os

import pytest
from browser_util import ARTIFACTS, BROWSER_MARKS, CHROMIUM, CHROMIUM_ARGS, free_port, running_server
from dashboard_fixtures import CAPTIONS, SCORES, SYSTEMS, YTIDS, make_demo_store, make_results_dir

from dashboards.formatting import fmt

CHROMIUM_ARGS = [*CHROMIUM_ARGS, "--autoplay-policy=no-user-gesture-required"]

pytestmark = BROWSER_MARKS


def start_dashboard(results, home, cwd=None):
    """``musiclm-eval dashboard`` on a free port (from ``cwd``); yields its URL, stops it afterwards."""
    port = free_port()
    with running_server(["dashboard", "--results", str(results), "--port", str(port)], port, home, "dashboard", cwd) as url:
        yield url


@pytest.fixture
def server(tmp_path):
    yield from start_dashboard(make_results_dir(tmp_path, "run_a"), tmp_path)


@pytest.fixture
def demo_server(tmp_path):
    """The store `make run` writes (audio beside it, recorded relative to it), served from another cwd."""
    store = make_demo_store(tmp_path / "checkout")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    yield from start_dashboard(os.path.relpath(store, elsewhere), tmp_path, cwd=elsewhere)


def test_switch_pages_and_play_a_clip(server):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(server)
            page.get_by_text("Leaderboard", exact=True).first.wait_for(timeout=30_000)
            page.locator("[data-testid='stDataFrame']").first.wait_for(timeout=30_000)

            page.locator("[data-testid='stSidebar']").get_by_text("Memorization", exact=True).click()
            page.get_by_text("Match rate vs prompt length").wait_for(timeout=30_000)

            page.locator("[data-testid='stSidebar']").get_by_text("Clips", exact=True).click()
            page.get_by_text(CAPTIONS[0]).first.wait_for(timeout=30_000)
            # the clip's scores: one table within the page, every value rendered (they used to scroll off-screen)
            scores = page.locator("[data-testid='stTable']").first
            scores.wait_for(timeout=30_000)
            shown = scores.inner_text()
            assert all(fmt(v[0]) in shown for s in SYSTEMS for v in SCORES[s].values()), shown
            box = scores.bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 1400
            page.wait_for_function("document.querySelectorAll('audio').length >= 3", timeout=30_000)
            page.eval_on_selector("audio", "a => a.play()")
            page.wait_for_function("(() => { const a = document.querySelector('audio');"
                                   " return !a.paused && a.currentTime > 0; })()", timeout=15_000)

            ARTIFACTS.mkdir(exist_ok=True)
            shot = ARTIFACTS / "dashboard.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        finally:
            browser.close()


def test_every_clip_of_a_demo_store_plays_from_another_cwd(demo_server):
    sync_api = pytest.importorskip("playwright.sync_api")
    n_players = 1 + len(SYSTEMS)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(demo_server)
            page.locator("[data-testid='stSidebar']").get_by_text("Clips", exact=True).wait_for(timeout=30_000)
            page.locator("[data-testid='stSidebar']").get_by_text("Clips", exact=True).click()
            seen: list[str] = []
            for i, ytid in enumerate(YTIDS):
                if i:  # pick the next caption in the combobox
                    page.get_by_role("combobox", name="Caption").locator("..").get_by_role("button", name="Open").click()
                    page.get_by_role("option").filter(has_text=ytid).first.click()
                page.get_by_text(CAPTIONS[i]).first.wait_for(timeout=30_000)
                # every player has a new source that the server delivers: its metadata loads (a 404 never does)
                page.wait_for_function(
                    """([n, seen]) => { const a = [...document.querySelectorAll('audio')];
                         return a.length === n && a.every(x => x.src.includes('/media/') && !seen.includes(x.src)
                                                             && x.readyState >= 1 && x.duration > 0); }""",
                    arg=[n_players, seen], timeout=30_000)
                seen += page.eval_on_selector_all("audio", "els => els.map(e => e.src)")
                assert page.get_by_text("audio file not found").count() == 0, ytid
            assert len(set(seen)) == len(YTIDS) * n_players
        finally:
            browser.close()
