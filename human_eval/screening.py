"""Headphone screening: the antiphase test of Woods, Siegel, Traer & McDermott (2017), stimuli made here.

Woods et al., "Headphone screening to facilitate web-based auditory experiments", Attention, Perception, &
Psychophysics 79:2064–2072. Each trial plays three 200 Hz tones; the listener says which was the quietest.
One tone is 6 dB quieter than the other two; one of the two loud tones is in antiphase between the ears
(right = −left). Over headphones the antiphase tone sounds as loud as the in-phase one, so the quiet tone is
easy to find; over loudspeakers the two channels of the antiphase tone cancel in the air and it sounds the
quietest, so speaker listeners pick it. Six trials, pass = at least five correct (the published criterion).

Our stimulus parameters (tone 1 s, 100 ms raised-cosine ramps, 0.5 s gaps, loud tones at −12 dBFS peak) are
recorded in docs/protocol.md. The trial order is drawn from (study seed, rater id), so a reload resumes the
same test, and the answers are stored as they come.
"""

from __future__ import annotations

import io
import json

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from human_eval import db

TEST = "woods2017-antiphase"
N_TRIALS = 6
PASS_MIN = 5
TONE_HZ = 200.0
TONE_S, RAMP_S, GAP_S = 1.0, 0.1, 0.5
LOUD_DBFS, QUIET_DB = -12.0, -6.0
KINDS = ("in-phase", "antiphase", "quiet")  # the three tones of a trial, in some order


def tone(kind: str, sr: int) -> np.ndarray:
    """One tone as [samples, 2]: in-phase and antiphase at LOUD_DBFS, quiet 6 dB lower (in phase)."""
    t = np.arange(int(TONE_S * sr)) / sr
    ramp = int(RAMP_S * sr)
    env = np.ones(len(t))
    env[:ramp] = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
    env[len(t) - ramp:] = env[:ramp][::-1]
    gain = 10 ** ((LOUD_DBFS + (QUIET_DB if kind == "quiet" else 0.0)) / 20)
    x = gain * env * np.sin(2 * np.pi * TONE_HZ * t)
    return np.stack([x, -x if kind == "antiphase" else x], axis=1)


def trial_stimulus(order: tuple[str, ...], sr: int) -> np.ndarray:
    """The three tones of a trial with gaps between them, stereo float."""
    gap = np.zeros((int(GAP_S * sr), 2))
    parts = []
    for i, kind in enumerate(order):
        parts += ([gap] if i else []) + [tone(kind, sr)]
    return np.concatenate(parts).astype(np.float32)


def trial_wav(order: tuple[str, ...], sr: int) -> bytes:
    import soundfile as sf

    out = io.BytesIO()
    sf.write(out, trial_stimulus(order, sr), sr, subtype="PCM_16", format="WAV")
    return out.getvalue()


def trial_orders(seed: int, rater_id: int, n: int = N_TRIALS) -> list[tuple[str, ...]]:
    """A seeded random order of the three tones per trial; the quiet tone's position is balanced across trials."""
    rng = np.random.default_rng([seed, rater_id, 11])
    quiet_at = rng.permutation(np.resize(np.arange(3), n))
    orders = []
    for q in quiet_at:
        loud = list(rng.permutation(["in-phase", "antiphase"]))
        loud.insert(int(q), "quiet")
        orders.append(tuple(loud))
    return orders


def correct_answer(order: tuple[str, ...]) -> int:
    """The quietest tone's position, 1-based (what the rater should answer)."""
    return order.index("quiet") + 1


def score(answers: list[int], orders: list[tuple[str, ...]]) -> tuple[int, bool]:
    """(number correct, passed) for a finished test."""
    n_correct = sum(int(a == correct_answer(o)) for a, o in zip(answers, orders))
    return n_correct, n_correct >= PASS_MIN


def state(Session_: sessionmaker, rater_id: int) -> tuple[int, bool | None]:
    """(trials answered, passed): passed is None while the test is unfinished (or not started)."""
    with Session_() as s:
        row = s.scalars(select(db.Screening).where(db.Screening.rater_id == rater_id)).first()
        return (0, None) if row is None else (len(json.loads(row.answers)), row.passed)


def answer(Session_: sessionmaker, rater_id: int, position: int, value: int) -> tuple[int, bool | None]:
    """Store the answer (1, 2 or 3) to trial ``position``; a repeat of an answered position changes nothing."""
    if value not in (1, 2, 3):
        raise ValueError(f"headphone-check answer must be 1, 2 or 3, not {value!r}")
    with Session_.begin() as s:
        study = db.the_study(s)
        orders = trial_orders(study.seed, rater_id)
        row = s.scalars(select(db.Screening).where(db.Screening.rater_id == rater_id).with_for_update()).first()
        if row is None:
            row = db.Screening(rater_id=rater_id, test=TEST, n_trials=len(orders), n_correct=0, answers="[]")
            s.add(row)
        got = json.loads(row.answers)
        if position == len(got) and row.passed is None:
            got.append([int(value), correct_answer(orders[position])])
            row.answers = json.dumps(got)
            row.n_correct, passed = score([a for a, _ in got], orders)
            if len(got) == len(orders):
                row.passed, row.finished_at = passed, db.utcnow()
        s.flush()
        return len(got), row.passed
