"""The rating app under Streamlit's AppTest: token access, rating through the page with orientation undone,
blinding of everything rendered, Prolific completion, and the admin view behind its secret."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from human_fixtures import SYSTEMS, make_study
from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest

from human_eval import db
from human_eval.app import OPTIONS

APP = str(Path(__file__).resolve().parents[1] / "human_eval" / "app.py")
FORBIDDEN = (*SYSTEMS, "reference", "ground_truth")


def app(monkeypatch, url: str, **params) -> AppTest:
    monkeypatch.setenv(db.ENV_DB, url)
    at = AppTest.from_file(APP, default_timeout=60)
    for k, v in params.items():
        at.query_params[k] = v
    return at.run()


def walk(node):
    yield node
    for child in getattr(node, "children", {}).values():
        yield from walk(child)


def rendered(at: AppTest) -> str:
    """Every proto the page rendered, as text: labels, markdown, options, media URLs."""
    return "\n".join(str(n.proto) for n in walk(at._tree) if getattr(n, "proto", None) is not None)


def audio_urls(at: AppTest) -> list[str]:
    return [a.proto.url for a in at.get("audio")]


def rate_current(at: AppTest, label: str) -> AppTest:
    at.radio[0].set_value(label)
    at.button[0].click()
    return at.run()


@pytest.fixture
def study(tmp_path):
    return make_study(tmp_path, ratings_per_pair=4, raters=2, trials_per_rater=3, attention_checks=1,
                      prolific_study_id="PSTUDY", completion_code="C0DE42")


def test_rater_with_token_completes_and_answers_land_oriented(monkeypatch, study):
    url, c = study
    at = app(monkeypatch, url, token=c.tokens[0])
    assert not at.exception
    pages, urls = [], []
    while at.radio:
        assert at.progress[0].proto.text == f"Trial {len(pages) + 1} of 4"
        assert len(at.get("audio")) == 2
        pages.append(rendered(at))
        urls += audio_urls(at)
        at = rate_current(at, "Clip A fits the description much better")
        assert not at.exception
    assert len(pages) == 4 and at.title[0].value == "Thank you!"
    assert "completion code" not in rendered(at)  # token raters are not sent to Prolific
    engine = db.open_db(url)
    with db.sessions(engine)() as s:
        ratings = s.scalars(select(db.Rating)).all()
        assert len(ratings) == 4
        for r in ratings:
            a = s.get(db.Assignment, r.assignment_id)
            assert r.answer == 2 and r.score == (2 if a.a_on_left else -2)
    engine.dispose()
    # blinding: no system or source name anywhere on a rater's pages or in a media URL
    for text in pages:
        for name in FORBIDDEN:  # whole words: "No preference" contains "reference"
            assert not re.search(rf"\b{name}\b", text), name
    assert all(u.startswith("/mock/media/") for u in urls) and len(set(urls)) == len(urls)


def test_no_or_bad_token_gets_no_trial(monkeypatch, study):
    url, _ = study
    for params in ({}, {"token": "not-a-token"}, {"PROLIFIC_PID": "p1", "STUDY_ID": "WRONG", "SESSION_ID": "s"}):
        at = app(monkeypatch, url, **params)
        assert not at.exception
        assert "needs your personal study link" in at.error[0].value
        assert not at.radio and not at.get("audio") and not at.button
    engine = db.open_db(url)
    with db.sessions(engine)() as s:
        assert s.scalar(select(func.count()).select_from(db.Assignment)) == 0
    engine.dispose()


def test_submit_without_an_answer_stores_nothing_and_reload_resumes(monkeypatch, study):
    url, c = study
    at = app(monkeypatch, url, token=c.tokens[1])
    first = at.info[0].value
    at.button[0].click()
    at = at.run()
    assert "choose one of the five answers" in at.warning[0].value
    again = app(monkeypatch, url, token=c.tokens[1])  # a new browser session = a reload
    assert again.info[0].value == first and again.progress[0].proto.text == "Trial 1 of 4"
    again = rate_current(again, "No preference")
    assert again.progress[0].proto.text == "Trial 2 of 4"


def test_prolific_participant_gets_code_and_redirect(monkeypatch, study):
    url, _ = study
    params = {"PROLIFIC_PID": "5f0c0ffee0000000000000aa", "STUDY_ID": "PSTUDY", "SESSION_ID": "sess1"}
    at = app(monkeypatch, url, **params)
    n = 0
    while at.radio:
        at = rate_current(at, list(OPTIONS)[n % 5])
        n += 1
    assert n == 4
    assert any("**C0DE42**" in m.value for m in at.markdown)
    assert "https://app.prolific.com/submissions/complete?cc=C0DE42" in rendered(at)


def test_admin_requires_the_secret(monkeypatch, study):
    url, c = study
    at = app(monkeypatch, url, admin="1")
    assert not at.dataframe and not at.get("download_button") and "Enter the admin secret" in at.info[0].value
    at.text_input[0].set_value("wrong").run()
    assert at.error[0].value == "Wrong admin secret." and not at.dataframe
    at.text_input[0].set_value(c.admin_secret).run()
    assert not at.exception
    assert len(at.dataframe) == 3 and len(at.get("download_button")) == 1
    assert SYSTEMS[0] in rendered(at)  # the admin, unlike a rater, sees system names
