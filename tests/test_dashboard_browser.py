"""Real browser: start ``musiclm-eval dashboard`` on a free port, switch pages in Debian chromium, play a clip.

Leaves ``artifacts/dashboard.png`` (gitignored) behind as a screenshot of the Clips page.
"""

from __future__ import annotations

import os
import signal
import subprocess

import pytest
from browser_util import ARTIFACTS, BROWSER_MARKS, CHROMIUM, CHROMIUM_ARGS, cli_command, free_port, wait_until_up
from dashboard_fixtures import CAPTIONS, make_results_dir

CHROMIUM_ARGS = [*CHROMIUM_ARGS, "--autoplay-policy=no-user-gesture-required"]

pytestmark = BROWSER_MARKS


@pytest.fixture
def server(tmp_path):
    results = make_results_dir(tmp_path, "run_a")
    port = free_port()
    cmd = cli_command()
    proc = subprocess.Popen([*cmd, "dashboard", "--results", str(results), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "HOME": str(tmp_path)}, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, proc, "dashboard")
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


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
