"""Assignment and submission: no trial twice, orientation undone, idempotent/atomic submits, 50 concurrent
raters on SQLite and PostgreSQL (a throwaway server the tests start, or ``MUSICLM_EVAL_PG_URL``), a killed server
loses nothing."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from human_fixtures import make_study, rate_everything
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from human_eval import assign, db

ROOT = Path(__file__).resolve().parents[1]


def counts(Session_) -> dict:
    with Session_() as s:
        return {
            "ratings": s.scalar(select(func.count()).select_from(db.Rating)),
            "dup_rater_trial": s.execute(select(db.Rating.rater_id, db.Rating.trial_id).group_by(
                db.Rating.rater_id, db.Rating.trial_id).having(func.count() > 1)).all(),
            "done_without_rating": s.scalar(select(func.count()).select_from(db.Assignment).where(
                db.Assignment.done, db.Assignment.id.not_in(select(db.Rating.assignment_id)))),
            "rating_not_done": s.scalar(select(func.count()).select_from(db.Rating).join(
                db.Assignment, db.Assignment.id == db.Rating.assignment_id).where(~db.Assignment.done)),
            "over_rated": s.execute(select(db.Rating.trial_id).join(db.Trial, db.Trial.id == db.Rating.trial_id).where(
                db.Trial.kind == "pair").group_by(db.Rating.trial_id, db.Trial.required).having(
                func.count() > db.Trial.required)).all(),
        }


def rater_ids(Session_, tokens: list[str]) -> list[int]:
    with Session_() as s:
        return [assign.rater_by_token(s, t).id for t in tokens]


def test_sequence_no_trial_twice_and_orientation(tmp_path):
    url, c = make_study(tmp_path, ratings_per_pair=6, raters=2, trials_per_rater=5, attention_checks=2)
    Session_ = db.sessions(db.open_db(url))
    rid = rater_ids(Session_, c.tokens)[0]
    seen, positions = [], []
    while (view := assign.view_for(Session_, rid)) is not None:
        assert view.done == len(seen) and view.total == 7
        positions.append(view.position)
        res = assign.submit_rating(Session_, rid, view.assignment_id, 2)  # "Clip A (left) much better"
        with Session_() as s:
            a = s.get(db.Assignment, view.assignment_id)
            r = s.get(db.Rating, res.rating_id)
            left = s.get(db.Clip, r.left_clip_id)
            assert left.opaque_id == view.left_opaque  # the clip shown on the left is recorded as left
            assert r.answer == 2 and r.score == (2 if a.a_on_left else -2)  # score is for clip_a: swap undone
            assert (r.left_clip_id == a.trial.clip_a_id) == a.a_on_left
            assert r.seconds_spent is not None and r.seconds_spent >= 0
            seen.append((a.trial_id, a.trial.kind))
    assert positions == list(range(7))
    assert len({t for t, _ in seen}) == 7  # no trial twice
    assert sum(k == "attention" for _, k in seen) == 2 and seen[0][1] == "pair"
    with Session_() as s:
        assert s.get(db.Rater, rid).completed_at is not None
        scores = {r.score for r in s.scalars(select(db.Rating))}
    assert scores == {2, -2}  # both orientations occurred and were undone


def test_submit_is_idempotent_and_checked(tmp_path):
    url, c = make_study(tmp_path, ratings_per_pair=3, raters=2, attention_checks=0)
    Session_ = db.sessions(db.open_db(url))
    r1, r2 = rater_ids(Session_, c.tokens)
    view = assign.view_for(Session_, r1)
    first = assign.submit_rating(Session_, r1, view.assignment_id, 1)
    again = assign.submit_rating(Session_, r1, view.assignment_id, -2)  # resubmit with another answer
    assert first.created and not again.created and again.rating_id == first.rating_id and again.score == first.score
    with pytest.raises(assign.AccessError, match=f"assignment {view.assignment_id} does not belong to rater {r2}"):
        assign.submit_rating(Session_, r2, view.assignment_id, 1)
    with pytest.raises(ValueError, match=r"answer must be one of \(2, 1, 0, -1, -2\), not 3"):
        assign.submit_rating(Session_, r1, view.assignment_id, 3)
    assert counts(Session_)["ratings"] == 1


def test_reload_and_restart_resume_the_same_trial(tmp_path):
    url, c = make_study(tmp_path, ratings_per_pair=4, raters=1, attention_checks=1)
    engine = db.open_db(url)
    Session_ = db.sessions(engine)
    rid = rater_ids(Session_, c.tokens)[0]
    v1 = assign.view_for(Session_, rid)
    assign.submit_rating(Session_, rid, v1.assignment_id, -1)
    v2 = assign.view_for(Session_, rid)
    assert assign.view_for(Session_, rid) == v2  # a reload shows the same trial, same clips, same salt
    engine.dispose()  # "restart": a new engine, nothing kept in memory
    Session2 = db.sessions(db.open_db(url))
    assert assign.view_for(Session2, rid) == v2
    assert counts(Session2)["ratings"] == 1


def test_trial_audio_differs_per_assignment_and_keeps_the_clip(tmp_path):
    url, c = make_study(tmp_path, n_items=2, ratings_per_pair=2, attention_checks=0)
    opaque = next(c.store.iterdir()).stem
    stored, _ = sf.read(c.store / f"{opaque}.wav", dtype="int16")
    served = [assign.trial_audio(str(c.store), opaque, salt, "A") for salt in range(20)]
    assert len(set(served)) == 20  # distinct salts < 4,096 always give distinct paddings
    assert assign.trial_audio(str(c.store), opaque, 5, "A") == served[5]  # stable on reload
    for b in served[:5]:
        wave, _ = sf.read(io.BytesIO(b), dtype="int16")
        start = int(np.flatnonzero(wave)[0]) - int(np.flatnonzero(stored)[0])
        assert 0 <= start < assign.MAX_PAD_SAMPLES and 0 <= len(wave) - start - len(stored) < assign.MAX_PAD_SAMPLES
        np.testing.assert_array_equal(wave[start:start + len(stored)], stored)


def test_prolific_access_needs_the_configured_study(tmp_path):
    url, c = make_study(tmp_path, ratings_per_pair=2, prolific_study_id="STUDY123", attention_checks=0)
    Session_ = db.sessions(db.open_db(url))
    with Session_.begin() as s:
        assert assign.rater_for_prolific(s, "PID1", "OTHER", "S1") is None
        assert assign.rater_for_prolific(s, None, "STUDY123", "S1") is None
        a = assign.rater_for_prolific(s, "PID1", "STUDY123", "S1").id
    with Session_.begin() as s:
        assert assign.rater_for_prolific(s, "PID1", "STUDY123", "S2").id == a
        assert assign.rater_for_prolific(s, "PID2", "STUDY123", "S3").id != a


# ---- concurrency -------------------------------------------------------------------------------

N_RATERS, PER_RATER = 50, 1


def concurrent_study(tmp_path, url: str | None = None):
    from human_fixtures import make_sources

    from human_eval.design import create_study

    dirs, ref, captions = make_sources(tmp_path, n_items=4, seconds=0.2)
    url = url or f"sqlite:///{tmp_path / 'study.db'}"
    return url, create_study(url, dirs, captions, reference=ref, store=tmp_path / "store", ratings_per_pair=17,
                             raters=N_RATERS, trials_per_rater=PER_RATER, attention_checks=1, sample_rate=16000,
                             playback_min_fraction=None)  # submissions under load; the gate has its own tests


def run_concurrent_raters(url: str, tokens: list[str]) -> list[tuple]:
    """50 rater threads at once; every answer is submitted twice at the same moment (a double click)."""
    Session_ = db.sessions(db.open_db(url))
    ids = rater_ids(Session_, tokens)
    double = ThreadPoolExecutor(2 * N_RATERS)

    def one_rater(rid: int) -> list[tuple]:
        out = []
        while (view := assign.view_for(Session_, rid)) is not None:
            f1 = double.submit(assign.submit_rating, Session_, rid, view.assignment_id, 1)
            f2 = double.submit(assign.submit_rating, Session_, rid, view.assignment_id, 1)
            out.append((f1.result(), f2.result()))
        return out

    with ThreadPoolExecutor(N_RATERS) as pool:
        results = [r for rs in pool.map(one_rater, ids) for r in rs]
    double.shutdown()
    c = counts(Session_)
    assert c["ratings"] == N_RATERS * (PER_RATER + 1)  # nothing lost
    assert c["dup_rater_trial"] == [] and c["over_rated"] == []  # no duplicate, no trial over-filled
    assert c["done_without_rating"] == 0 and c["rating_not_done"] == 0  # atomic
    for a, b in results:
        assert a.rating_id == b.rating_id and a.created != b.created  # exactly one of the double click stored
    with Session_() as s:
        assert s.scalar(select(func.count()).select_from(db.Rater).where(db.Rater.completed_at.is_(None))) == 0
    return results


def test_50_concurrent_raters_sqlite(tmp_path):
    url, c = concurrent_study(tmp_path)
    run_concurrent_raters(url, c.tokens)


@pytest.fixture
def pg_url(pg_server_url):
    """A fresh database on the session's server (conftest: $MUSICLM_EVAL_PG_URL or a throwaway server)."""
    base = pg_server_url
    name = f"musiclm_eval_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(base).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.mark.postgres
def test_50_concurrent_raters_postgres(tmp_path, pg_url):
    url, c = concurrent_study(tmp_path, pg_url)
    run_concurrent_raters(url, c.tokens)


CHILD = textwrap.dedent("""
    import sys, threading
    from human_eval import assign, db
    url, tokens = sys.argv[1], sys.argv[2].split(",")
    Session_ = db.sessions(db.open_db(url))
    lock = threading.Lock()
    def run(token):
        with Session_() as s:
            rid = assign.rater_by_token(s, token).id
        while (view := assign.view_for(Session_, rid)) is not None:
            res = assign.submit_rating(Session_, rid, view.assignment_id, -1)
            with lock:
                print("ACK", res.rating_id, flush=True)
    threads = [threading.Thread(target=run, args=(t,)) for t in tokens]
    [t.start() for t in threads]
    [t.join() for t in threads]
    print("DONE", flush=True)
""")


def test_killed_server_loses_no_acknowledged_rating(tmp_path):
    url, c = concurrent_study(tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, url, ",".join(c.tokens)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    acked = []
    for line in proc.stdout:
        if line.startswith("ACK"):
            acked.append(int(line.split()[1]))
        elif line.startswith("DONE"):
            break
        if len(acked) >= 30:
            os.kill(proc.pid, signal.SIGKILL)  # mid-study, mid-transaction for many threads
            break
    proc.wait(timeout=30)
    assert 30 <= len(acked) < N_RATERS * (PER_RATER + 1), "the child finished before it could be killed"
    Session_ = db.sessions(db.open_db(url))  # the restart
    with Session_() as s:
        stored = set(s.scalars(select(db.Rating.id)))
    assert set(acked) <= stored
    c0 = counts(Session_)
    assert c0["dup_rater_trial"] == [] and c0["done_without_rating"] == 0 and c0["rating_not_done"] == 0
    for rid in rater_ids(Session_, c.tokens):  # everyone resumes and finishes
        rate_everything(Session_, rid)
    c1 = counts(Session_)
    assert c1["ratings"] == N_RATERS * (PER_RATER + 1) and c1["dup_rater_trial"] == [] and c1["over_rated"] == []


def test_pg_helper_skips_only_without_server_binaries(monkeypatch):
    import pg_server

    monkeypatch.delenv(pg_server.ENV_URL, raising=False)
    monkeypatch.setattr(pg_server, "server_bin", lambda: None)
    reasons = []
    assert list(pg_server.session_server(reasons.append)) == [] and "no PostgreSQL server binaries" in reasons[0]
    monkeypatch.setenv(pg_server.ENV_URL, "postgresql+psycopg://u@h:1/x")  # the environment's server wins
    assert list(pg_server.session_server(reasons.append)) == ["postgresql+psycopg://u@h:1/x"] and len(reasons) == 1
