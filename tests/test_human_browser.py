"""Real browser: ``musiclm-eval rate serve`` on 127.0.0.1, a rater rates two trials in Debian chromium.

Asserts the database rows (orientation undone), that no system name is in the served HTML or in a media
URL, and leaves ``artifacts/human_rating.png`` (gitignored) as a screenshot of a trial page.
"""

from __future__ import annotations

import re

import pytest
from browser_util import ARTIFACTS, BROWSER_MARKS, CHROMIUM, CHROMIUM_ARGS, free_port, running_server
from human_fixtures import SYSTEMS, make_study
from sqlalchemy import select

from human_eval import db

pytestmark = BROWSER_MARKS


@pytest.fixture
def served_study(tmp_path):
    url, c = make_study(tmp_path, ratings_per_pair=4, raters=1, trials_per_rater=3, attention_checks=0)
    port = free_port()
    with running_server(["rate", "serve", "--db", url, "--port", str(port)], port, tmp_path, "rate serve") as base:
        yield base, url, c


def test_rate_two_trials_in_chromium(served_study):
    sync_api = pytest.importorskip("playwright.sync_api")
    base, url, c = served_study
    answers = ["Clip A fits the description much better", "Clip B fits the description slightly better"]
    seen_html, media, prev = [], [], []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 1100})
            page.on("request", lambda r: media.append(r.url) if "/media/" in r.url else None)
            try:
                page.goto(f"{base}/?token={c.tokens[0]}")
                for i, answer in enumerate(answers):
                    page.get_by_text(f"Trial {i + 1} of 3").wait_for(timeout=90_000)
                    # Streamlit updates elements in place: wait until both players carry this trial's media
                    page.wait_for_function(
                        "prev => { const a = [...document.querySelectorAll('audio')].map(x => x.src);"
                        " return a.length == 2 && a.every(s => s && !prev.includes(s)); }", arg=prev, timeout=30_000)
                    prev = page.eval_on_selector_all("audio", "els => els.map(x => x.src)")
                    seen_html.append(page.content())
                    if i == 0:
                        ARTIFACTS.mkdir(exist_ok=True)
                        shot = ARTIFACTS / "human_rating.png"
                        page.screenshot(path=str(shot), full_page=True)
                        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
                    page.get_by_text(answer, exact=True).click()
                    page.wait_for_function("document.querySelector('input[type=radio]:checked') !== null", timeout=30_000)
                    page.get_by_role("button", name="Submit").click()
                page.get_by_text("Trial 3 of 3").wait_for(timeout=45_000)
                no_token = browser.new_page()
                no_token.goto(base)
                no_token.get_by_text("needs your personal study link").wait_for(timeout=45_000)
                assert no_token.locator("audio").count() == 0
            except Exception:  # leave the page as it was for whoever reads the CI log
                ARTIFACTS.mkdir(exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / "human_rating_failure.png"), full_page=True)
                raise
        finally:
            browser.close()

    srcs = [s for html in seen_html for s in re.findall(r'<audio[^>]*src="([^"]+)"', html)]
    assert len(srcs) == 4 and len(set(srcs)) == 4
    for text in [*seen_html, *srcs, *media]:
        for name in (*SYSTEMS, "ground_truth"):
            assert name not in text
        assert not re.search(r"\breference\b", text)
    engine = db.open_db(url)
    with db.sessions(engine)() as s:
        ratings = s.scalars(select(db.Rating).order_by(db.Rating.id)).all()
        assert [r.answer for r in ratings] == [2, -1]
        for r in ratings:
            a = s.get(db.Assignment, r.assignment_id)
            assert r.score == (r.answer if a.a_on_left else -r.answer)
            assert r.seconds_spent is not None and r.seconds_spent > 0
    engine.dispose()
