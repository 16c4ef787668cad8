"""Real browser: the playback gate. ``rate serve`` on 127.0.0.1 with ``playback_min_fraction=1``; in Debian chromium
the answer cannot be given before both clips were played to the end, seeking ahead does not count, and after
playing both the rating lands together with its play events and the rater's browser environment."""

from __future__ import annotations

import time

import pytest
from browser_util import ARTIFACTS, BROWSER_MARKS, CHROMIUM, CHROMIUM_ARGS, free_port, running_server
from human_fixtures import make_study
from sqlalchemy import func, select

from human_eval import db

pytestmark = BROWSER_MARKS
ARGS = [*CHROMIUM_ARGS, "--autoplay-policy=no-user-gesture-required", "--mute-audio"]


@pytest.fixture
def served_study(tmp_path, request):
    extra = getattr(request, "param", {})
    url, c = make_study(tmp_path, ratings_per_pair=4, raters=1, trials_per_rater=2, attention_checks=0,
                        playback_min_fraction=1.0, **extra)
    port = free_port()
    with running_server(["rate", "serve", "--db", url, "--port", str(port)], port, tmp_path, "rate serve") as base:
        yield base, url, c


def n_ratings(url: str) -> int:
    engine = db.open_db(url)
    with db.sessions(engine)() as s:
        n = s.scalar(select(func.count()).select_from(db.Rating))
    engine.dispose()
    return n


def test_answer_unlocks_only_after_both_clips_played(served_study):
    sync_api = pytest.importorskip("playwright.sync_api")
    base, url, c = served_study
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1100, "height": 1000})
        try:
            page.goto(f"{base}/?token={c.tokens[0]}")
            page.get_by_text("Trial 1 of 2").wait_for(timeout=90_000)
            frame = page.frame_locator("iframe[title*='study_player']")
            audio = frame.locator("audio")
            audio.nth(1).wait_for(state="attached", timeout=30_000)
            submit = page.get_by_role("button", name="Submit")
            answer = page.get_by_text("Clip A fits the description much better", exact=True)
            page.get_by_text("Listen to clip A and clip B").wait_for(timeout=30_000)
            assert submit.is_disabled()
            assert page.locator("input[type=radio][disabled]").count() == 5  # the five answers are locked
            answer.click(force=True)  # a click on a locked answer neither selects nor submits
            submit.click(force=True)
            time.sleep(1.0)
            assert page.locator("input[type=radio]:checked").count() == 0 and n_ratings(url) == 0

            # seeking clip A to 90 % and playing the rest is not "heard to the end", even once B was heard in full
            audio.nth(0).evaluate("a => new Promise(r => { const go = () => { a.currentTime = 0.9 * a.duration;"
                                  " a.addEventListener('ended', r, {once: true}); a.play(); };"
                                  " a.readyState >= 1 ? go() : a.addEventListener('loadedmetadata', go, {once: true}); })")
            audio.nth(1).evaluate("a => new Promise(r => { a.addEventListener('ended', r, {once: true}); a.play(); })")
            page.get_by_text("Listen to clip A to the end").wait_for(timeout=30_000)
            assert submit.is_disabled()
            audio.nth(0).evaluate("a => new Promise(r => { a.currentTime = 0; a.addEventListener('ended', r,"
                                  " {once: true}); a.play(); })")  # now A from the start, to the end
            page.wait_for_function("[...document.querySelectorAll('button')].some(b => b.innerText.includes('Submit')"
                                   " && !b.disabled)", timeout=30_000)
            answer.click()
            page.wait_for_function("document.querySelector('input[type=radio]:checked') !== null", timeout=30_000)
            submit.click()
            page.get_by_text("Trial 2 of 2").wait_for(timeout=45_000)
        except Exception:
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "human_playback_failure.png"), full_page=True)
            raise
        finally:
            browser.close()

    engine = db.open_db(url)
    with db.sessions(engine)() as s:
        ratings = s.scalars(select(db.Rating)).all()
        assert [r.answer for r in ratings] == [2]
        events = s.scalars(select(db.PlayEvent).where(db.PlayEvent.assignment_id == ratings[0].assignment_id)
                           .order_by(db.PlayEvent.id)).all()
        a = s.get(db.Assignment, ratings[0].assignment_id)
        left = a.trial.clip_a_id if a.a_on_left else a.trial.clip_b_id
        by_side = {side: [e for e in events if e.side == side] for side in "AB"}
        # (Streamlit may deliver only the last of two quick reports; the other player's state then arrives as "sync")
        for side in "AB":
            assert "ended" in {e.kind for e in by_side[side]} <= {"play", "pause", "ended", "sync"}
        assert all(e.clip_id == left for e in by_side["A"]) and all(e.clip_id != left for e in by_side["B"])
        # clip A: the 90 % seek first (about a tenth heard), then a replay from the start
        assert all(e.fraction < 0.3 for e in by_side["A"] if e.plays == 1) and by_side["A"][0].plays == 1
        assert max(e.fraction for e in by_side["A"]) >= 0.99 and max(e.plays for e in by_side["A"]) == 2
        assert max(e.fraction for e in by_side["B"]) >= 0.99 and max(e.plays for e in by_side["B"]) == 1
        rater = s.get(db.Rater, ratings[0].rater_id)
        assert "Chrome" in rater.user_agent and rater.audio_sample_rate and rater.audio_sample_rate >= 8000
    engine.dispose()


PLAY_FAST = ("a => new Promise(r => { const go = () => { a.playbackRate = 8; a.addEventListener('ended', r, {once: true});"
             " a.play(); }; a.readyState >= 1 ? go() : a.addEventListener('loadedmetadata', go, {once: true}); })")


LOCKED_AND_UNANSWERED = (
    "[...document.querySelectorAll('button')].some(b => b.innerText.includes('Next') && b.disabled) &&"
    " [...document.querySelectorAll('input[type=radio]:checked')].every(i =>"
    " !['First', 'Second', 'Third'].includes((i.closest('label') || {innerText: ''}).innerText.trim()))")


@pytest.mark.parametrize("served_study", [{"headphone_check": True}], indirect=True)
def test_headphone_check_comes_first_and_is_stored(served_study):
    """A rater who answered four antiphase trials before (stored as they came) reloads: the page resumes at sound 5;
    they answer the device question and the last two sounds (each played to the end first; the share heard does
    not depend on the playback rate, so the test plays them 8x fast), then get trial 1."""
    from human_eval import screening

    sync_api = pytest.importorskip("playwright.sync_api")
    base, url, c = served_study
    orders = screening.trial_orders(3, 1)  # make_study's seed; the only rater's id
    S = db.sessions(db.open_db(url))
    for i, order in enumerate(orders[:4]):  # one wrong answer among them
        screening.answer(S, 1, i, screening.correct_answer(order) if i else 1 + screening.correct_answer(order) % 3)
    S.kw["bind"].dispose()
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1100, "height": 1000})
        try:
            page.goto(f"{base}/?token={c.tokens[0]}")
            page.get_by_text("Sound check", exact=True).wait_for(timeout=90_000)
            page.get_by_text("Headphones (over-ear or on-ear)").click()
            for i, order in list(enumerate(orders))[4:]:
                page.get_by_text(f"Sound check {i + 1} of 6").wait_for(timeout=30_000)
                nxt = page.get_by_role("button", name="Next")
                # the new sound's form replaces the last one (Streamlit swaps elements in place): locked, unanswered
                page.wait_for_function(LOCKED_AND_UNANSWERED, timeout=30_000)
                audio = page.frame_locator("iframe[title*='study_player']").locator("audio")
                audio.wait_for(state="attached", timeout=30_000)
                audio.evaluate(PLAY_FAST)
                page.wait_for_function("[...document.querySelectorAll('button')].some(b => b.innerText.includes('Next')"
                                       " && !b.disabled)", timeout=30_000)
                page.get_by_text(("First", "Second", "Third")[screening.correct_answer(order) - 1], exact=True).click()
                nxt.click()
            page.get_by_text("Trial 1 of 2").wait_for(timeout=45_000)
        except Exception:
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "human_screening_failure.png"), full_page=True)
            raise
        finally:
            browser.close()
    engine = db.open_db(url)
    with db.sessions(engine)() as s:
        row = s.scalars(select(db.Screening)).one()
        assert (row.n_trials, row.n_correct, row.passed) == (6, 5, True)
        rater = s.get(db.Rater, row.rater_id)
        assert rater.device == "Headphones (over-ear or on-ear)" and "Chrome" in rater.user_agent
    engine.dispose()
