"""The playback rule through the Python API and the page (AppTest): answers refused until both clips were heard,
play events stored per assignment and side, the rater's environment kept, logging without gating."""

from __future__ import annotations

from pathlib import Path

import pytest
from human_fixtures import make_study
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from human_eval import assign, db

APP = str(Path(__file__).resolve().parents[1] / "human_eval" / "app.py")


def test_submit_is_refused_until_both_clips_are_heard(tmp_path):
    url, c = make_study(tmp_path, ratings_per_pair=2, raters=2, trials_per_rater=2, attention_checks=0,
                        playback_min_fraction=0.8)
    S = db.sessions(db.open_db(url))
    with S() as s:
        r1, r2 = [r.id for r in s.scalars(select(db.Rater).order_by(db.Rater.id))]
    view = assign.view_for(S, r1)
    assert view.min_fraction == 0.8
    with pytest.raises(assign.PlaybackError, match=rf"assignment {view.assignment_id}: clip A not played, clip B not "
                                                   r"played; both clips must be heard to 80% before answering"):
        assign.submit_rating(S, r1, view.assignment_id, 1)
    assign.record_play(S, r1, view.assignment_id, "A", "play", 0.0, 1, {"user_agent": "UA/1", "sample_rate": 48000})
    assign.record_play(S, r1, view.assignment_id, "A", "ended", 1.0, 1)
    assign.record_play(S, r1, view.assignment_id, "B", "pause", 0.5, 1)
    with pytest.raises(assign.PlaybackError, match="clip B heard 50%"):
        assign.submit_rating(S, r1, view.assignment_id, 1)
    assert assign.record_play(S, r1, view.assignment_id, "B", "ended", 0.795, 2) == {"A": 1.0, "B": 0.795}
    assert assign.submit_rating(S, r1, view.assignment_id, 1).created  # 79.5 % is within the 1 % allowance
    # a late report for an answered assignment is not stored; foreign and malformed reports are refused
    assign.record_play(S, r1, view.assignment_id, "A", "pause", 1.0, 3)
    with pytest.raises(assign.AccessError):
        assign.record_play(S, r2, view.assignment_id, "A", "play", 0.0, 1)
    with pytest.raises(ValueError, match="side A|B and kind"):
        assign.record_play(S, r1, view.assignment_id, "C", "play", 0.0, 1)
    with pytest.raises(ValueError, match=r"fraction must be in \[0, 1\]"):
        assign.record_play(S, r1, view.assignment_id, "A", "play", 1.5, 1)
    with S() as s:
        ev = s.scalars(select(db.PlayEvent).order_by(db.PlayEvent.id)).all()
        assert [(e.side, e.kind, e.fraction, e.plays) for e in ev] == [
            ("A", "play", 0.0, 1), ("A", "ended", 1.0, 1), ("B", "pause", 0.5, 1), ("B", "ended", 0.795, 2)]
        a = s.get(db.Assignment, view.assignment_id)
        left = a.trial.clip_a_id if a.a_on_left else a.trial.clip_b_id
        assert [e.clip_id == left for e in ev] == [True, True, False, False]
        rater = s.get(db.Rater, r1)
        assert (rater.user_agent, rater.audio_sample_rate) == ("UA/1", 48000)
    S.kw["bind"].dispose()


def test_zero_fraction_logs_without_gating_and_none_keeps_plain_players(tmp_path, monkeypatch):
    url, c = make_study(tmp_path / "log", ratings_per_pair=2, raters=1, trials_per_rater=1, attention_checks=0,
                        playback_min_fraction=0.0)
    S = db.sessions(db.open_db(url))
    view = assign.view_for(S, 1)
    assert assign.submit_rating(S, 1, view.assignment_id, -2).created  # nothing played, nothing required
    S.kw["bind"].dispose()
    with pytest.raises(ValueError, match=r"--playback-min-fraction must be in \[0, 1\], not 1.5"):
        make_study(tmp_path / "bad", playback_min_fraction=1.5)


def page(monkeypatch, url: str, token: str) -> AppTest:
    monkeypatch.setenv(db.ENV_DB, url)
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["token"] = token
    return at.run()


def test_page_locks_the_answer_until_the_database_has_both_clips_heard(tmp_path, monkeypatch):
    url, c = make_study(tmp_path, ratings_per_pair=2, raters=1, trials_per_rater=2, attention_checks=0,
                        playback_min_fraction=1.0)
    at = page(monkeypatch, url, c.tokens[0])
    assert not at.exception
    assert not at.get("audio")  # the logging player replaces st.audio
    players = [e for e in at.get("component_instance") if "study_player" in str(e.proto)]
    assert len(players) == 1 and "../../" in str(players[0].proto)
    choice = next(r for r in at.radio if r.label.startswith("Which clip"))
    assert choice.disabled and at.button[0].disabled
    assert "Listen to clip A and clip B to the end" in " ".join(x.value for x in at.caption)
    S = db.sessions(db.open_db(url))
    view = assign.view_for(S, 1)
    for side in "AB":
        assign.record_play(S, 1, view.assignment_id, side, "ended", 1.0, 1)
    at.run()
    choice = next(r for r in at.radio if r.label.startswith("Which clip"))
    assert not choice.disabled and not at.button[0].disabled
    choice.set_value("No preference")
    at.button[0].click()
    at.run()
    assert "Trial 2 of 2" in str(at.get("progress")[0].proto)
    with S() as s:
        assert [r.answer for r in s.scalars(select(db.Rating))] == [0]
    S.kw["bind"].dispose()


def test_admin_line_counts_ratings_heard_in_full(tmp_path, monkeypatch):
    url, c = make_study(tmp_path, ratings_per_pair=2, raters=1, trials_per_rater=2, attention_checks=0,
                        playback_min_fraction=0.0)
    S = db.sessions(db.open_db(url))
    for k in range(2):  # first rating after both clips in full, the second after half of one
        view = assign.view_for(S, 1)
        assign.record_play(S, 1, view.assignment_id, "A", "ended", 1.0, 1)
        assign.record_play(S, 1, view.assignment_id, "B", "ended" if k == 0 else "pause", 1.0 if k == 0 else 0.5, 1)
        assign.submit_rating(S, 1, view.assignment_id, 1)
    S.kw["bind"].dispose()
    monkeypatch.setenv(db.ENV_DB, url)
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["admin"] = "1"
    at.run()
    at.text_input[0].set_value(c.admin_secret).run()
    line = next(x.value for x in at.caption if "LUFS" in x.value)
    assert line.startswith("stimuli matched to -23 LUFS (true peak ≤ -1 dBTP); playback logged, not gated; "
                           "1 of 2 ratings given after hearing both clips to the end; no headphone check")


def test_a_report_carries_the_other_players_state(tmp_path):
    """Only the latest of two quick reports may arrive: the other player's progress in it is stored as 'sync'."""
    url, c = make_study(tmp_path, ratings_per_pair=2, raters=1, trials_per_rater=1, attention_checks=0,
                        playback_min_fraction=1.0)
    S = db.sessions(db.open_db(url))
    view = assign.view_for(S, 1)
    report = {"n": 2, "side": "B", "kind": "play", "env": {"sample_rate": 44100},
              "clips": {"A": {"plays": 1, "fraction": 1.0, "ended": True}, "B": {"plays": 1, "fraction": 0.0}}}
    assert assign.record_report(S, 1, view.assignment_id, report) == {"A": 1.0, "B": 0.0}
    assign.record_report(S, 1, view.assignment_id, {**report, "n": 3, "kind": "pause"})  # A unchanged: no new sync
    with S() as s:
        ev = s.scalars(select(db.PlayEvent).order_by(db.PlayEvent.id)).all()
        assert [(e.side, e.kind, e.fraction) for e in ev] == [("A", "sync", 1.0), ("B", "play", 0.0), ("B", "pause", 0.0)]
        assert s.get(db.Rater, 1).audio_sample_rate == 44100
    S.kw["bind"].dispose()
