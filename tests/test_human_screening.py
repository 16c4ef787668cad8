"""Headphone screening (Woods et al. 2017 antiphase test): the stimuli do what the test rests on (a loudspeaker
listener picks the antiphase tone, a headphone listener the quiet one), seeded balanced orders, answers stored as
they come and resumed, and the page asks for it before the first trial."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from human_fixtures import make_study
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from human_eval import db, screening

APP = str(Path(__file__).resolve().parents[1] / "human_eval" / "app.py")


def segment_levels(x: np.ndarray, sr: int, listen) -> list[float]:
    """Level in dB of each of the three tones as a listener model hears the stereo signal."""
    n, gap = int(screening.TONE_S * sr), int(screening.GAP_S * sr)
    return [10 * np.log10(np.mean(listen(x[i * (n + gap): i * (n + gap) + n]) ** 2) + 1e-20) for i in range(3)]


def headphones(seg: np.ndarray) -> np.ndarray:
    return seg[:, 0]  # each ear gets its own channel: the left ear's level


def loudspeakers(seg: np.ndarray) -> np.ndarray:
    # two speakers at equal distance: the channels add in the air before reaching either ear
    return 0.5 * (seg[:, 0] + seg[:, 1])


def test_stimuli_separate_headphone_from_loudspeaker_listeners():
    sr = 16000
    assert np.array_equal(screening.tone("antiphase", sr)[:, 1], -screening.tone("antiphase", sr)[:, 0])
    assert np.array_equal(screening.tone("in-phase", sr)[:, 1], screening.tone("in-phase", sr)[:, 0])
    loud, quiet = screening.tone("in-phase", sr)[:, 0], screening.tone("quiet", sr)[:, 0]
    assert 20 * np.log10(np.sqrt(np.mean(quiet**2)) / np.sqrt(np.mean(loud**2))) == pytest.approx(-6.0, abs=1e-9)
    orders = screening.trial_orders(seed=3, rater_id=7)
    picks = {"headphones": [], "loudspeakers": []}
    for order in orders:
        x = screening.trial_stimulus(order, sr)
        assert x.shape == (int((3 * screening.TONE_S + 2 * screening.GAP_S) * sr), 2) and np.abs(x).max() < 0.3
        for name, model in (("headphones", headphones), ("loudspeakers", loudspeakers)):
            picks[name].append(int(np.argmin(segment_levels(x, sr, model))) + 1)
    assert screening.score(picks["headphones"], orders) == (6, True)
    n_speaker, passed = screening.score(picks["loudspeakers"], orders)
    assert n_speaker == 0 and not passed  # over speakers the antiphase tone is (nearly) silent: always picked


def test_orders_are_seeded_and_balanced():
    a = screening.trial_orders(1, 2)
    assert a == screening.trial_orders(1, 2) != screening.trial_orders(1, 3)
    assert sorted(screening.correct_answer(o) for o in a) == [1, 1, 2, 2, 3, 3]
    assert all(sorted(o) == sorted(screening.KINDS) for o in a)
    assert screening.score([screening.correct_answer(o) for o in a[:5]] + [0], a) == (5, True)
    assert screening.score([screening.correct_answer(o) for o in a[:4]] + [0, 0], a) == (4, False)


def test_answers_are_stored_as_they_come_and_resume(tmp_path):
    url, c = make_study(tmp_path, ratings_per_pair=2, raters=1, trials_per_rater=1, attention_checks=0,
                        headphone_check=True)
    S = db.sessions(db.open_db(url))
    orders = screening.trial_orders(3, 1)  # make_study's seed is 3; the first rater's id is 1
    assert screening.state(S, 1) == (0, None)
    with pytest.raises(ValueError, match="must be 1, 2 or 3"):
        screening.answer(S, 1, 0, 4)
    for i, o in enumerate(orders[:3]):
        assert screening.answer(S, 1, i, screening.correct_answer(o)) == (i + 1, None)
    assert screening.answer(S, 1, 1, 1) == (3, None)  # a repeated (stale) position changes nothing
    assert screening.state(S, 1) == (3, None)  # a reload resumes at the fourth trial
    wrong = [next(k for k in (1, 2, 3) if k != screening.correct_answer(o)) for o in orders[3:]]
    for i, w in zip(range(3, 6), wrong):
        screening.answer(S, 1, i, w)
    with S() as s:
        row = s.scalars(select(db.Screening)).one()
        assert (row.test, row.n_trials, row.n_correct, row.passed) == ("woods2017-antiphase", 6, 3, False)
        assert row.finished_at is not None
    assert screening.answer(S, 1, 6, 1) == (6, False)  # finished: nothing more is taken
    S.kw["bind"].dispose()


def test_page_shows_the_check_before_the_first_trial(tmp_path, monkeypatch):
    url, c = make_study(tmp_path, ratings_per_pair=2, raters=1, trials_per_rater=1, attention_checks=0,
                        headphone_check=True)
    monkeypatch.setenv(db.ENV_DB, url)
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["token"] = c.tokens[0]
    at.run()
    assert not at.exception and at.title[0].value == "Sound check"
    at.radio[0].set_value("Earbuds / in-ear").run()
    assert any("Sound check 1 of 6" in str(p.proto) for p in at.get("progress"))
    answer = next(r for r in at.radio if r.label == "Which tone was the quietest?")
    assert answer.disabled  # unlocked only once the sound was played to the end
    S = db.sessions(db.open_db(url))
    with S() as s:
        assert s.get(db.Rater, 1).device == "Earbuds / in-ear"
    for i in range(6):
        screening.answer(S, 1, i, 1)
    at.run()
    assert at.title[0].value == "Which clip fits the description better?"
    S.kw["bind"].dispose()
