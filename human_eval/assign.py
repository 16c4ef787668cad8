"""Rater access, trial assignment and rating submission — the whole state machine of a rater.

Everything lives in the database, so a page reload, a second tab or a server restart resumes the
same rater at the same open trial. A rater's sequence has ``trials_per_rater`` pair trials plus
``attention_checks`` gold trials at positions drawn from (study seed, rater id). A pair trial is given
to the raters who need one while it still lacks ratings, counting open assignments younger than
``RESERVATION`` as pending; no rater ever gets a trial twice (unique rater × trial).

Submissions are idempotent and atomic: the rating row and the assignment's ``done`` flag commit
together, and a unique constraint on the assignment turns a double click, a resubmission or a second
tab into the one rating already stored (the first answer wins).

Playback: every report of the page's players becomes a ``PlayEvent``; when the study sets
``playback_min_fraction`` > 0, ``submit_rating`` refuses an answer until both clips of the assignment
were heard to that fraction (by the largest fraction any report gave), so the gate holds for any client,
not only for the page that disables its button.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from human_eval import db
from metrics.errors import AccessError, InputError

RESERVATION = timedelta(minutes=30)
MAX_PAD_SAMPLES = 64


PLAY_TOLERANCE = 0.01  # a clip counts as heard to f when its played share is ≥ f − 1 % (the last frame)
PLAY_KINDS = ("play", "pause", "ended", "sync")  # sync: another player's state, carried by this report


class PlaybackError(InputError):
    """An answer sent before both clips were heard as far as the study requires."""


@dataclass
class TrialView:
    """What a rater's page shows: nothing in here names a system or a source directory."""

    assignment_id: int
    position: int
    total: int
    done: int
    caption: str
    left_opaque: str
    right_opaque: str
    salt: int
    min_fraction: float | None = None  # the study's playback rule (None: plain players, nothing logged)


@dataclass
class SubmitResult:
    rating_id: int
    created: bool
    score: int


def rater_by_token(s: Session, token: str | None) -> db.Rater | None:
    if not token:
        return None
    return s.scalars(select(db.Rater).where(db.Rater.token_hash == db.token_hash(token))).first()


def rater_for_prolific(s: Session, pid: str | None, study_id: str | None, session_id: str | None) -> db.Rater | None:
    """Get or create the rater for a Prolific participant; only when the study was set up for that Prolific study."""
    study = db.the_study(s)
    if not pid or not study.prolific_study_id or study_id != study.prolific_study_id:
        return None
    rater = s.scalars(select(db.Rater).where(db.Rater.study_id == study.id, db.Rater.prolific_pid == pid)).first()
    if rater is None:
        rater = db.Rater(study_id=study.id, prolific_pid=pid, prolific_session_id=session_id, label=f"prolific {pid}")
        s.add(rater)
        try:
            s.flush()
        except IntegrityError:  # the same participant in two tabs at once
            s.rollback()
            rater = s.scalars(select(db.Rater).where(db.Rater.study_id == study.id, db.Rater.prolific_pid == pid)).one()
    return rater


def sequence_length(study: db.Study, n_attention_pool: int) -> int:
    return study.trials_per_rater + min(study.attention_checks, n_attention_pool)


def attention_positions(study: db.Study, rater_id: int, total: int, k: int) -> set[int]:
    """Where a rater's gold trials go: k distinct positions, never the first (let them settle in)."""
    if k == 0 or total < 2:
        return set()
    rng = np.random.default_rng([study.seed, rater_id, 7])
    return {int(p) + 1 for p in rng.choice(total - 1, size=min(k, total - 1), replace=False)}


def _count_done(s: Session, rater_id: int) -> int:
    return s.scalar(select(func.count()).select_from(db.Assignment).where(db.Assignment.rater_id == rater_id,
                                                                          db.Assignment.done)) or 0


def _pick_pair_trial(s: Session, study: db.Study, rater_id: int, rng: np.random.Generator) -> db.Trial | None:
    now = db.utcnow()
    rated = (select(db.Rating.trial_id, func.count().label("n")).group_by(db.Rating.trial_id).subquery())
    pending = (select(db.Assignment.trial_id, func.count().label("n"))
               .where(~db.Assignment.done, db.Assignment.assigned_at > now - RESERVATION)
               .group_by(db.Assignment.trial_id).subquery())
    mine = select(db.Assignment.trial_id).where(db.Assignment.rater_id == rater_id)
    need = db.Trial.required - func.coalesce(rated.c.n, 0) - func.coalesce(pending.c.n, 0)
    rows = s.execute(
        select(db.Trial.id, need.label("need"))
        .outerjoin(rated, rated.c.trial_id == db.Trial.id)
        .outerjoin(pending, pending.c.trial_id == db.Trial.id)
        .where(db.Trial.study_id == study.id, db.Trial.kind == "pair", db.Trial.id.not_in(mine), need > 0)
    ).all()
    if not rows:
        return None
    best = max(r.need for r in rows)
    ids = sorted(r.id for r in rows if r.need == best)
    return s.get(db.Trial, ids[int(rng.integers(len(ids)))])


def _pick_attention_trial(s: Session, study: db.Study, rater_id: int, rng: np.random.Generator) -> db.Trial | None:
    mine = select(db.Assignment.trial_id).where(db.Assignment.rater_id == rater_id)
    ids = sorted(s.scalars(select(db.Trial.id).where(db.Trial.study_id == study.id, db.Trial.kind == "attention",
                                                     db.Trial.id.not_in(mine))))
    return s.get(db.Trial, ids[int(rng.integers(len(ids)))]) if ids else None


def current_assignment(s: Session, rater: db.Rater) -> db.Assignment | None:
    """The rater's open assignment, creating the next one when none is open; None when they are finished.

    Call inside a transaction. The first time an assignment is returned its ``shown_at`` is set.
    """
    study = db.the_study(s)
    open_ = s.scalars(select(db.Assignment).where(db.Assignment.rater_id == rater.id, ~db.Assignment.done)
                      .order_by(db.Assignment.position)).first()
    if open_ is None and rater.completed_at is None:
        open_ = _next_assignment(s, study, rater)
        if open_ is None and _count_done(s, rater.id) > 0:
            rater.completed_at = db.utcnow()
    if open_ is not None and open_.shown_at is None:
        open_.shown_at = db.utcnow()
    return open_


def _next_assignment(s: Session, study: db.Study, rater: db.Rater) -> db.Assignment | None:
    # PostgreSQL: serialize assignment creation on the study row so two raters never both take a trial's
    # last open slot (SQLite already serializes writers with BEGIN IMMEDIATE; it ignores FOR UPDATE).
    s.execute(select(db.Study.id).where(db.Study.id == study.id).with_for_update())
    pool = s.scalar(select(func.count()).select_from(db.Trial).where(db.Trial.kind == "attention")) or 0
    total = sequence_length(study, pool)
    position = s.scalar(select(func.count()).select_from(db.Assignment).where(db.Assignment.rater_id == rater.id)) or 0
    if position >= total:
        return None
    rng = np.random.default_rng([study.seed, rater.id, position])
    gold = attention_positions(study, rater.id, total, min(study.attention_checks, pool))
    trial = _pick_attention_trial(s, study, rater.id, rng) if position in gold else None
    if trial is None:
        trial = _pick_pair_trial(s, study, rater.id, rng)
    if trial is None:
        return None
    # counterbalance repeated ratings of one trial: every other rater sees it the other way round
    n_before = s.scalar(select(func.count()).select_from(db.Assignment).where(db.Assignment.trial_id == trial.id)) or 0
    a_on_left = trial.a_on_left if n_before % 2 == 0 else not trial.a_on_left
    assignment = db.Assignment(rater_id=rater.id, trial_id=trial.id, position=position, a_on_left=a_on_left,
                               salt=int(rng.integers(1, 2**31 - 1)))
    s.add(assignment)
    s.flush()  # IntegrityError here means a second tab took this position first; the caller retries
    return assignment


def progress(s: Session, rater: db.Rater) -> tuple[int, int]:
    """(trials done, trials in this rater's sequence)."""
    study = db.the_study(s)
    pool = s.scalar(select(func.count()).select_from(db.Trial).where(db.Trial.kind == "attention")) or 0
    return _count_done(s, rater.id), sequence_length(study, pool)


def view_for(Session_: sessionmaker, rater_id: int) -> TrialView | None:
    """The rater's current trial as the page shows it, in its own committed transaction (retried once on a race)."""
    for attempt in range(3):
        try:
            with Session_.begin() as s:
                rater = s.get(db.Rater, rater_id)
                a = current_assignment(s, rater)
                if a is None:
                    return None
                done, total = progress(s, rater)
                t = a.trial
                left, right = (t.clip_a, t.clip_b) if a.a_on_left else (t.clip_b, t.clip_a)
                return TrialView(a.id, a.position, max(total, done + 1), done, t.caption,
                                 left.opaque_id, right.opaque_id, a.salt, db.the_study(s).playback_min_fraction)
        except IntegrityError:
            if attempt == 2:
                raise
    return None


def submit_rating(Session_: sessionmaker, rater_id: int, assignment_id: int, answer: int) -> SubmitResult:
    """Store one answer (+2 strong left … −2 strong right) atomically; a repeat returns the stored rating."""
    if answer not in db.ANSWERS:
        raise ValueError(f"answer must be one of {db.ANSWERS}, not {answer!r}")
    try:
        with Session_.begin() as s:
            a = s.get(db.Assignment, assignment_id)
            if a is None or a.rater_id != rater_id:
                raise AccessError(f"assignment {assignment_id} does not belong to rater {rater_id}")
            if a.done:
                existing = s.scalars(select(db.Rating).where(db.Rating.assignment_id == assignment_id)).one()
                return SubmitResult(existing.id, False, existing.score)
            need = db.the_study(s).playback_min_fraction
            if need:
                got = heard(s, a.id)
                short = [f"clip {side} {'not played' if side not in got else f'heard {got[side]:.0%}'}"
                         for side in ("A", "B") if got.get(side, 0.0) < need - PLAY_TOLERANCE]
                if short:
                    raise PlaybackError(f"assignment {a.id}: {', '.join(short)}; both clips must be heard to "
                                        f"{need:.0%} before answering")
            t = a.trial
            left, right = (t.clip_a_id, t.clip_b_id) if a.a_on_left else (t.clip_b_id, t.clip_a_id)
            now = db.utcnow()
            rating = db.Rating(assignment_id=a.id, rater_id=rater_id, trial_id=t.id, left_clip_id=left,
                               right_clip_id=right, answer=answer, score=answer if a.a_on_left else -answer,
                               shown_at=a.shown_at, submitted_at=now,
                               seconds_spent=(now - a.shown_at).total_seconds() if a.shown_at else None)
            s.add(rating)
            a.done = True
            s.flush()
            return SubmitResult(rating.id, True, rating.score)
    except IntegrityError:  # a concurrent submission of the same assignment won
        with Session_() as s:
            existing = s.scalars(select(db.Rating).where(db.Rating.assignment_id == assignment_id)).one()
            return SubmitResult(existing.id, False, existing.score)


def heard(s: Session, assignment_id: int) -> dict[str, float]:
    """The largest share heard so far per side ("A" = left) of one assignment; sides never played are absent."""
    rows = s.execute(select(db.PlayEvent.side, func.max(db.PlayEvent.fraction))
                     .where(db.PlayEvent.assignment_id == assignment_id).group_by(db.PlayEvent.side)).all()
    return {side: float(f) for side, f in rows}


def record_play(Session_: sessionmaker, rater_id: int, assignment_id: int, side: str, kind: str, fraction: float,
                plays: int, env: dict | None = None) -> dict[str, float]:
    """Store one player report of an open assignment (and, the first time, the rater's browser); returns ``heard``.

    Reports for an assignment already answered are ignored (a late pause after the page moved on).
    """
    if side not in ("A", "B") or kind not in PLAY_KINDS:
        raise ValueError(f"play report must have side A|B and kind {'|'.join(PLAY_KINDS)}, not {side!r}, {kind!r}")
    fraction = float(fraction)
    if not 0.0 <= fraction <= 1.0 or int(plays) < 0:
        raise ValueError(f"play report fraction must be in [0, 1] and plays >= 0, not {fraction}, {plays}")
    with Session_.begin() as s:
        a = s.get(db.Assignment, assignment_id)
        if a is None or a.rater_id != rater_id:
            raise AccessError(f"assignment {assignment_id} does not belong to rater {rater_id}")
        if not a.done:
            t = a.trial
            left, right = (t.clip_a_id, t.clip_b_id) if a.a_on_left else (t.clip_b_id, t.clip_a_id)
            s.add(db.PlayEvent(assignment_id=a.id, side=side, clip_id=left if side == "A" else right, kind=kind,
                               fraction=fraction, plays=int(plays)))
        if env:
            record_environment(s, rater_id, env)
        s.flush()
        return heard(s, assignment_id)


def record_report(Session_: sessionmaker, rater_id: int, assignment_id: int, report: dict) -> dict[str, float]:
    """Store one report of the page's players; returns ``heard``.

    Streamlit may deliver only the latest of several quick reports, so each report carries every player's
    state: the reporting player's event is stored as such, and any other player whose share heard or play
    count went past what is stored gets a ``sync`` row — no play is lost to a skipped report.
    """
    side, kind = report.get("side"), report.get("kind")
    states = report.get("clips") or {}
    env = report.get("env") or {}
    with Session_() as s:
        rows = s.execute(select(db.PlayEvent.side, func.max(db.PlayEvent.fraction), func.max(db.PlayEvent.plays))
                         .where(db.PlayEvent.assignment_id == assignment_id).group_by(db.PlayEvent.side)).all()
    stored = {sd: (f, n) for sd, f, n in rows}
    heard_now: dict[str, float] = {}
    for other, st in sorted(states.items()):
        if other == side or other not in ("A", "B"):
            continue
        f, n = _clamp(st.get("fraction")), int(st.get("plays") or 0)
        old_f, old_n = stored.get(other, (0.0, 0))
        if f > old_f + 1e-9 or n > old_n:
            heard_now = record_play(Session_, rater_id, assignment_id, other, "sync", f, n)
    st = states.get(side) or {}
    if side is not None:
        heard_now = record_play(Session_, rater_id, assignment_id, side, kind, _clamp(st.get("fraction")),
                                int(st.get("plays") or 0), env)
    return heard_now


def _clamp(f: object) -> float:
    try:
        return min(1.0, max(0.0, float(f)))
    except (TypeError, ValueError):
        return 0.0


def record_environment(s: Session, rater_id: int, env: dict) -> None:
    """The rater's user agent, audio output rate and (self-reported) device; the first value of each is kept."""
    rater = s.get(db.Rater, rater_id)
    if rater.user_agent is None and env.get("user_agent"):
        rater.user_agent = str(env["user_agent"])[:1000]
    if rater.audio_sample_rate is None and env.get("sample_rate"):
        rater.audio_sample_rate = int(env["sample_rate"])
    if rater.device is None and env.get("device"):
        rater.device = str(env["device"])[:64]


def trial_audio(store_dir: str, opaque_id: str, salt: int, side: str) -> bytes:
    """The clip's WAV bytes for one assignment and side, with 0–63 zero samples before and 0–63 after, by (salt, side).

    Streamlit names media by a hash of the bytes, so without this the same clip would have the same URL
    in every trial it appears in, and a rater could recognize it. 4,096 variants of at most 2.7 ms of
    silence at each end (24 kHz): inaudible, and the same on every reload of the same assignment.
    """
    import soundfile as sf

    # A per-(clip, side) offset plus an odd multiple of the salt, modulo 4,096 (a power of two): distinct
    # salts below 4,096 always give distinct paddings, so a clip's URL never repeats across assignments
    # (a plain hash of the salt collided — birthday odds — about once in 20 studies of 20 trials).
    n = MAX_PAD_SAMPLES * MAX_PAD_SAMPLES
    base = int.from_bytes(hashlib.sha256(f"{side}:{opaque_id}".encode()).digest()[:4], "little")
    h = (base + int(salt) * 2654435761) % n
    lead, trail = h % MAX_PAD_SAMPLES, h // MAX_PAD_SAMPLES
    data, sr = sf.read(f"{store_dir}/{opaque_id}.wav", dtype="int16", always_2d=False)
    out = io.BytesIO()
    padded = np.concatenate([np.zeros(lead, dtype=np.int16), data, np.zeros(trail, dtype=np.int16)])
    sf.write(out, padded, sr, subtype="PCM_16", format="WAV")
    return out.getvalue()
