"""Simulated listening studies with a planted metric–listener agreement, for tests, coverage runs and planning.

Why: whether ``human_eval.agreement`` recovers an agreement, and whether its intervals cover it, can only be
checked where the truth is known. The generative model (documented in docs/protocol.md, "Metric–human
agreement"):

- systems s have fixed effects μ_s (evenly spaced over ``system_spread``); a clip of system s for caption c
  has latent quality q_sc = μ_s + clip_sd · z_sc;
- the *planted* metric is m_sc = ρ · (q_sc − q̄)/sd_q + √(1 − ρ²) · ε_sc (per-clip correlation ρ with the
  latent quality, higher is better); the *independent* metric is pure noise ε'_sc (no system offset), so
  its true pair agreement is ½ and its true system-level τ is 0;
- each trial (caption × system pair) is rated by ``ratings_per_trial`` distinct raters drawn from ``raters``;
  rater r has a bias b_r ~ N(0, rater_bias_sd²) toward the pair's first system and a noise scale
  σ_r = noise_sd · exp(0.3 · N(0, 1)); the rating's utility is u = q_a − q_b + b_r + σ_r · N(0, 1), answered
  "no preference" when |u| < tie_band, strong when |u| > strong_band, weak otherwise.

The planted agreement (the estimand) is the population value P(metric points to the preferred clip |
preference stated) over new captions, clips, raters and noise, every system pair weighted equally as in the
balanced design; ``population_agreement`` computes it by a large Monte Carlo draw (common random numbers, so
``rho_for_agreement`` can bisect on it). ``write_simulated_ratings`` puts such raters into a study database
(labelled ``SIMULATED``), which is what the demo does with its generated pairs.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from metrics.errors import InputError

SIM_LABEL = "SIMULATED rater"  # every simulated rater's label: never mistaken for a listener


@dataclass(frozen=True)
class SimulationSpec:
    """One simulated study's design and generative settings (see the module docstring)."""

    systems: int = 4
    captions: int = 30
    raters: int = 12
    ratings_per_trial: int = 3
    rho: float = 0.6  # per-clip correlation of the planted metric with the latent quality
    system_spread: float = 1.0  # μ evenly spaced over [−spread/2, spread/2]
    clip_sd: float = 1.0
    rater_bias_sd: float = 0.3
    noise_sd: float = 1.0
    tie_band: float = 0.25
    strong_band: float = 1.5

    def mu(self) -> np.ndarray:
        return np.linspace(-self.system_spread / 2, self.system_spread / 2, self.systems)

    def quality_sd(self) -> float:
        return float(math.sqrt(self.mu().var() + self.clip_sd**2))


@dataclass
class SimulatedStudy:
    """Kept pair ratings (the columns ``human_eval.agreement`` reads), per-clip metric values and the truth."""

    spec: SimulationSpec
    systems: list[str]
    ratings: pd.DataFrame  # rater_id, trial_id, item_id, system_a, system_b, score
    per_clip: pd.DataFrame  # system, ytid, planted, independent
    quality: np.ndarray  # [S, C] latent quality


def system_names(n: int) -> list[str]:
    return [f"sys{i}" for i in range(n)]


def caption_ids(n: int) -> list[str]:
    return [f"cap{i:04d}" for i in range(n)]


def planted_metric(spec: SimulationSpec, q: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """m = ρ · standardized quality + √(1 − ρ²) · noise (per clip)."""
    z = (q - spec.mu().mean()) / spec.quality_sd()
    return spec.rho * z + math.sqrt(max(0.0, 1 - spec.rho**2)) * rng.standard_normal(q.shape)


def answers(spec: SimulationSpec, diff: np.ndarray, bias: np.ndarray, scale: np.ndarray,
            rng: np.random.Generator) -> np.ndarray:
    """Scores on −2…+2 for the first clip from quality differences and the raters' bias and noise scale."""
    u = diff + bias + scale * rng.standard_normal(diff.shape)
    return (np.sign(u) * np.where(np.abs(u) > spec.strong_band, 2, 1) * (np.abs(u) >= spec.tie_band)).astype(np.int64)


def rater_traits(spec: SimulationSpec, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(bias toward the first system, noise scale) for ``n`` raters."""
    return rng.normal(0, spec.rater_bias_sd, n), spec.noise_sd * np.exp(0.3 * rng.standard_normal(n))


def simulate_study(spec: SimulationSpec, seed: int = 0) -> SimulatedStudy:
    """One study of the balanced design: every caption × system pair rated by ``ratings_per_trial`` raters."""
    if spec.ratings_per_trial > spec.raters:
        raise InputError(f"ratings_per_trial {spec.ratings_per_trial} > raters {spec.raters}: a rater rates a trial once")
    rng = np.random.default_rng(seed)
    S, C = spec.systems, spec.captions
    q = spec.mu()[:, None] + spec.clip_sd * rng.standard_normal((S, C))
    planted = planted_metric(spec, q, rng)
    independent = rng.standard_normal((S, C))
    bias, scale = rater_traits(spec, spec.raters, rng)
    pairs = list(itertools.combinations(range(S), 2))
    a = np.array([p[0] for p in pairs] * C)
    b = np.array([p[1] for p in pairs] * C)
    c = np.repeat(np.arange(C), len(pairs))
    k = spec.ratings_per_trial
    who = np.argsort(rng.random((len(a), spec.raters)), axis=1)[:, :k]  # k distinct raters per trial
    trial = np.repeat(np.arange(len(a)), k)
    r = who.ravel()
    score = answers(spec, (q[a, c] - q[b, c])[trial], bias[r], scale[r], rng)
    names, caps = system_names(S), caption_ids(C)
    ratings = pd.DataFrame({"rater_id": r, "trial_id": trial, "item_id": np.array(caps)[c[trial]],
                            "system_a": np.array(names)[a[trial]], "system_b": np.array(names)[b[trial]],
                            "score": score})
    per_clip = pd.DataFrame({"system": np.repeat(names, C), "ytid": caps * S, "planted": planted.ravel(),
                             "independent": independent.ravel()})
    return SimulatedStudy(spec, names, ratings, per_clip, q)


def population_agreement(spec: SimulationSpec, n_captions: int = 100_000, seed: int = 12345) -> float:
    """The planted pair-level agreement: P(sign of the metric difference = sign of a stated preference) over
    new captions, clips, raters and noise, pairs weighted equally (Monte Carlo; SE ≈ 0.5/√(n_captions·pairs))."""
    rng = np.random.default_rng(seed)
    S = spec.systems
    q = spec.mu()[:, None] + spec.clip_sd * rng.standard_normal((S, n_captions))
    m = planted_metric(spec, q, rng)
    agree = decided = 0.0
    for a, b in itertools.combinations(range(S), 2):
        bias, scale = rater_traits(spec, n_captions, rng)  # a fresh rater for every rating
        s = answers(spec, q[a] - q[b], bias, scale, rng)
        d = s != 0
        agree += float((np.sign(m[a] - m[b])[d] == np.sign(s[d])).sum())
        decided += float(d.sum())
    return agree / decided


def rho_for_agreement(target: float, spec: SimulationSpec = SimulationSpec(), n_captions: int = 40_000) -> float:
    """The per-clip correlation ρ whose planted agreement is ``target`` (bisection; agreement rises with ρ).

    The design's sizes do not enter the population value, so the answer is cached per generative setting."""
    return _rho_for_agreement(float(target), replace(spec, captions=1, raters=1, ratings_per_trial=1, rho=0.0),
                              int(n_captions))


@functools.lru_cache(maxsize=32)
def _rho_for_agreement(target: float, spec: SimulationSpec, n_captions: int) -> float:
    hi_agreement = population_agreement(replace(spec, rho=1.0), n_captions)
    if not 0.5 <= target <= hi_agreement:
        raise InputError(f"agreement {target} is not reachable under this simulation: between 0.5 (independent "
                         f"metric) and {hi_agreement:.3f} (metric = latent quality, listeners' noise as set)")
    lo, hi = 0.0, 1.0
    for _ in range(30):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if population_agreement(replace(spec, rho=mid), n_captions) < target else (lo, mid)
        if hi - lo < 1e-4:
            break
    return (lo + hi) / 2


def write_simulated_ratings(url: str, quality: dict[tuple[str, str], float], raters: int = 8,
                            ratings_per_trial: int | None = None, seed: int = 0,
                            spec: SimulationSpec = SimulationSpec()) -> int:
    """Add ``raters`` simulated raters (labelled ``SIMULATED rater k``) who rate the study's pair trials with
    preferences from ``quality[(system, item_id)]`` (latent quality in the units of ``spec``'s noise) plus their
    bias and noise; every trial gets ``ratings_per_trial`` of them (default: all). Returns ratings written.

    The rows go straight into the database (assignment done + rating), not through the app: no audio is
    played, which is the point of a simulation. Use a copy of a study database, never one listeners use.
    """
    from sqlalchemy import select
    from sqlalchemy.orm import aliased

    from human_eval import db

    k = raters if ratings_per_trial is None else min(ratings_per_trial, raters)
    rng = np.random.default_rng(seed)
    bias, scale = rater_traits(spec, raters, rng)
    engine = db.open_db(url)
    n = 0
    try:
        with db.sessions(engine).begin() as s:
            study = db.the_study(s)
            SA, SB = aliased(db.System), aliased(db.System)
            CA, CB = aliased(db.Clip), aliased(db.Clip)
            trials = s.execute(select(db.Trial.id, db.Trial.item_id, db.Trial.clip_a_id, db.Trial.clip_b_id,
                                      SA.name, SB.name)
                               .join(CA, CA.id == db.Trial.clip_a_id).join(CB, CB.id == db.Trial.clip_b_id)
                               .join(SA, SA.id == CA.system_id).join(SB, SB.id == CB.system_id)
                               .where(db.Trial.kind == "pair").order_by(db.Trial.id)).all()
            missing = sorted({(x, t.item_id) for t in trials for x in (t[4], t[5]) if (x, t.item_id) not in quality})
            if missing:
                raise InputError(f"{db.redact(url)}: no simulated quality for {len(missing)} clip(s), e.g. {missing[:3]}")
            rows = [db.Rater(study_id=study.id, token_hash=None, label=f"{SIM_LABEL} {i + 1}") for i in range(raters)]
            s.add_all(rows)
            s.flush()
            position = [0] * raters
            for t in trials:
                diff = np.full(k, quality[t[4], t.item_id] - quality[t[5], t.item_id])
                who = rng.permutation(raters)[:k]
                scores = answers(spec, diff, bias[who], scale[who], rng)
                lefts = rng.random(k) < 0.5
                for r, score, left in zip(who, scores, lefts, strict=True):
                    a = db.Assignment(rater_id=rows[r].id, trial_id=t.id, position=position[r], a_on_left=bool(left),
                                      salt=int(rng.integers(1 << 30)), shown_at=db.utcnow(), done=True)
                    position[r] += 1
                    s.add(a)
                    s.flush()
                    lc, rc = (t.clip_a_id, t.clip_b_id) if left else (t.clip_b_id, t.clip_a_id)
                    s.add(db.Rating(assignment_id=a.id, rater_id=rows[r].id, trial_id=t.id, left_clip_id=lc,
                                    right_clip_id=rc, answer=int(score if left else -score), score=int(score)))
                    n += 1
            for r in rows:
                r.completed_at = db.utcnow()
    finally:
        engine.dispose()
    return n
