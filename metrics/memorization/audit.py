"""The model-agnostic audit: which generated clips copy a training clip, where, and how closely.

Steps, each public so an engine can run the middle one per shard of training clips
(:mod:`metrics.memorization.ray` does):

1. :func:`prepare_audit` — validate, window the generated clips, cut the training set into shards of
   whole clips (bounded memory), calibrate τ per clip on null clips (:func:`calibrate_clips`).
2. per shard :func:`metrics.memorization.search.audit_shard` — every window pair below τ.
3. :func:`finish_audit` — :func:`merge_hits`: one row per (generated clip, training clip).

A generated clip is *reported* when its minimum cost over the whole training set is below τ; τ is a
quantile of the same statistic on null clips, so ``--fpr`` is the fraction of novel clips reported.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from metrics.intervals import wilson_ci
from metrics.memorization.calibration import (
    DEFAULT_SEARCH_CORRECTION,
    DEFAULT_TAU_CONFIDENCE,
    ClipCalibration,
    check_confidence,
    clip_rank,
    clip_tau,
    finish_clip_calibration,
    fixed_clip_calibration,
    needs_tail,
    null_level,
    split_nulls,
)
from metrics.memorization.matchers import OTScorer
from metrics.memorization.registry import DEFAULT_CLIP_FPR, MemorizationError
from metrics.memorization.search import PairHits, audit_shard, clip_minima, shards_by_size
from metrics.memorization.windows import Windows, first_phase, phases_of, window_starts
from metrics.sinkhorn import DEFAULT_EPS

SHARD_FRAMES = 200_000  # training frames per shard: bounds the memory of one shard's windows


@dataclass
class AuditResult:
    tau: float
    fpr: float  # measured per-clip false-alarm rate on held-out nulls
    exact_rate: float  # fraction of generated clips with an exact window copy
    approx_rate: float  # fraction of generated clips reported (min cost < τ, exact included)
    calibration: ClipCalibration
    matches: list[dict]  # one row per (generated clip, training clip): the best window pair
    n_pairs: int  # window pairs covered (solved or pruned)
    n_solved: int
    n_matched_pairs: int
    best_cost: dict[str, float]  # per generated clip: its minimum cost when below τ (inf when none)
    pairs_by_clip: dict[str, tuple[int, int]] = field(default_factory=dict)  # id -> (window pairs, matched pairs)
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        c = self.calibration
        return {"tau": self.tau, "fpr": self.fpr, "fpr_target": c.fpr_target, "exact_rate": self.exact_rate,
                "approx_rate": self.approx_rate, "clip_false_alarm_rate": c.clip_false_alarm_rate,
                "clip_false_alarm_ci95": list(c.clip_false_alarm_ci95), "window_false_alarm_rate": c.window_false_alarm_rate,
                "n_null_calibration": c.n_calibration, "n_null_heldout": c.n_heldout, "certified": c.certified,
                "calibration": c.to_dict(), "n_pairs": self.n_pairs, "n_solved": self.n_solved,
                "n_matched_pairs": self.n_matched_pairs,
                "matched_pair_rate": self.n_matched_pairs / self.n_pairs if self.n_pairs else 0.0,
                "n_matches": len(self.matches), "pairs_by_clip": {k: list(v) for k, v in self.pairs_by_clip.items()},
                "best_cost": {k: (v if math.isfinite(v) else None) for k, v in self.best_cost.items()},
                "best_cost_null_means": "no window pair below tau (clip not reported)", **self.extra}


def leave_one_out_nulls(train: Mapping[str, np.ndarray], length: int, max_null: int, seed: int = 0,
                        groups: Mapping[str, str] | None = None) -> tuple[dict[str, np.ndarray], dict[str, set[str]]]:
    """Null clips cut from the training set itself: non-overlapping excerpts of ``length`` frames, each
    compared with every training clip *except its source* (and clips of the same ``groups`` value, e.g.
    other excerpts of one recording). Returns nulls by id (``<clip>@<offset>``) and their exclusions."""
    cands = [(cid, o) for cid in sorted(train) for o in range(0, len(train[cid]) - length + 1, length)]
    if len(cands) > max_null:
        keep = np.sort(np.random.default_rng(seed).choice(len(cands), max_null, replace=False))
        cands = [cands[i] for i in keep]
    by_group: dict[str, set[str]] = {}
    for cid in train:
        by_group.setdefault((groups or {}).get(cid, cid), set()).add(cid)
    nulls, exclude = {}, {}
    for cid, o in cands:
        nid = f"{cid}@{o}"
        nulls[nid] = np.asarray(train[cid])[o : o + length]
        exclude[nid] = by_group[(groups or {}).get(cid, cid)]
    return nulls, exclude


def _by_phase_key(exclude: Mapping[str, set[str]] | None, phase_of: Mapping[str, tuple[str, float]]) -> dict[str, set[str]]:
    return {k: set(exclude.get(cid, ())) for k, (cid, _) in phase_of.items()} if exclude else {}


def calibrate_clips(null: Mapping[str, np.ndarray | Sequence[np.ndarray]], shards: Sequence[Mapping[str, np.ndarray]], matcher,
                    fpr: float = DEFAULT_CLIP_FPR, window: int | None = None, gen_hop: int = 25, train_hop: int = 1,
                    heldout: float = 0.5, seed: int = 0, source: str = "null",
                    exclude: Mapping[str, set[str]] | None = None,
                    confidence: float | None = DEFAULT_TAU_CONFIDENCE,
                    search_correction: bool = DEFAULT_SEARCH_CORRECTION) -> ClipCalibration:
    """τ = a quantile of calibration nulls' minimum costs over the training shards; the per-clip (and
    per-window) false-alarm rate re-measured on held-out nulls. ``exclude``: null id → training ids it
    must not be compared with (its own source, for leave-one-out nulls). ``confidence``: the probability
    over calibration draws that τ's per-clip rate is ≤ ``fpr`` (None: on average; see
    :mod:`metrics.memorization.calibration`). ``search_correction``: τ at the level that accounts for the
    training windows an excluded null did not search (:func:`searched_share`, :func:`null_level`)."""
    if not 0 < fpr < 1:
        raise MemorizationError(f"fpr must be in (0, 1), got {fpr}")
    confidence = check_confidence(confidence)
    window = window or matcher.default_window
    seqs, phase_of = phases_of(null)
    seqs = matcher.check(seqs, "null", window)
    excl = _by_phase_key(exclude, phase_of)
    cal_ids, held_ids = split_nulls(sorted({c for c, _ in phase_of.values()}), heldout, seed)
    cal_seqs = {k: v for k, v in seqs.items() if phase_of[k][0] in set(cal_ids)}
    qw = informative(matcher, matcher.windows(cal_seqs, window, gen_hop))
    index = {cid: i for i, cid in enumerate(cal_ids)}
    q_clip = np.array([index[phase_of[qw.ids[c]][0]] for c in qw.clip], dtype=np.int64)
    searched = searched_share(cal_ids, shards, window, train_hop, exclude) if search_correction else None
    level = null_level(fpr, searched)
    rank = (len(cal_ids) if needs_tail(level, len(cal_ids), confidence)  # the tail fit needs all minima
            else max(1, clip_rank(level, len(cal_ids), confidence)))
    minima, n_solved = clip_minima(qw, q_clip, len(cal_ids), shards, matcher, window, train_hop, rank, excl)
    tau, _ = clip_tau(minima, level, confidence)
    hw = informative(matcher, matcher.windows({k: v for k, v in seqs.items() if phase_of[k][0] in set(held_ids)}, window,
                                              gen_hop))
    hits = PairHits.concat([audit_shard(hw, s, matcher, tau, window, train_hop, excl) for s in shards])
    flagged = {phase_of[hw.ids[hw.clip[g]]][0] for g in hits.g}
    wflags = np.zeros(len(hw), bool)
    wflags[hits.g] = True
    return finish_clip_calibration(minima, fpr, source, np.array([c in flagged for c in held_ids]), wflags,
                                   n_solved + hits.n_solved, confidence=confidence, searched=searched)


def searched_share(null_ids: Sequence[str], shards: Sequence[Mapping[str, np.ndarray]], window: int, train_hop: int,
                   exclude: Mapping[str, set[str]] | None) -> np.ndarray:
    """Per null, M'/M: the training windows it is compared with (its ``exclude`` clips left out) over all of
    them, which an audited clip is compared with."""
    n_win = {cid: len(window_starts(len(v), window, train_hop)) for s in shards for cid, v in s.items()}
    total = sum(n_win.values())
    if not total:
        return np.ones(len(null_ids))
    return np.array([1.0 - sum(n_win.get(t, 0) for t in (exclude or {}).get(n, ())) / total for n in null_ids])


def informative(matcher, w: Windows) -> Windows:
    """The query windows the matcher can use as evidence (all of them unless it says otherwise)."""
    keep = matcher.informative(w) if hasattr(matcher, "informative") else None
    return w if keep is None or keep.all() else w.take(np.flatnonzero(keep))


@dataclass
class AuditPlan:
    """Everything the per-shard step needs, built once on the driver by :func:`prepare_audit`."""

    matcher: object
    gw: Windows
    phase_of: dict[str, tuple[str, float]]
    shards: list[dict]
    calibration: ClipCalibration
    window: int
    gen_hop: int
    train_hop: int
    n_train: int
    n_train_windows: int


def prepare_audit(generated, train, centroids=None, fpr: float = DEFAULT_CLIP_FPR, window: int | None = None,
                  gen_hop: int | None = None, train_hop: int = 1, eps: float = DEFAULT_EPS, seed: int = 0, device: str = "cpu",
                  tau: float | None = None, *, matcher=None, null=None, null_exclude: Mapping[str, set[str]] | None = None,
                  heldout: float = 0.5, max_null: int = 200, groups: Mapping[str, str] | None = None,
                  shard_frames: int = SHARD_FRAMES, null_source: str = "null",
                  tau_confidence: float | None = DEFAULT_TAU_CONFIDENCE,
                  search_correction: bool = DEFAULT_SEARCH_CORRECTION) -> AuditPlan:
    """Validate, window, shard and calibrate (see :func:`audit` for the arguments)."""
    if matcher is None:
        if centroids is None:
            raise MemorizationError("audit: give the tokenizer's centroids or a matcher")
        matcher = OTScorer(centroids, eps=eps, device=device)
    window = window or matcher.default_window
    gen_hop = gen_hop or max(1, int(round(matcher.frame_rate)))  # 1 s
    matcher.check(first_phase(generated), "generated", window)  # errors name the clip, not its phase
    seqs, phase_of = phases_of(generated)
    gen = matcher.check(seqs, "generated", window)
    trn = matcher.check(train, "train", window)
    if hasattr(matcher, "fit") and getattr(matcher, "center", None) is None:
        matcher.fit(trn)  # embedding matchers centre on the training set's mean frame
    if hasattr(matcher, "shard_frames"):  # embedding windows can be large vectors: a memory budget per shard
        shard_frames = min(shard_frames, matcher.shard_frames(window))
    shards = shards_by_size(trn, shard_frames)
    if tau is not None:
        cal = fixed_clip_calibration(tau, fpr)
    else:
        source = null_source
        if null is None:  # excerpts of the training set as long as the generated clips (median), own source excluded
            length = max(window, int(np.median([len(v) for v in first_phase(generated).values()])))
            null, null_exclude = leave_one_out_nulls(trn, length, max_null, seed, groups)
            source = "leave-one-out"
        cal = calibrate_clips(null, shards, matcher, fpr, window, gen_hop, train_hop, heldout, seed, source, null_exclude,
                              tau_confidence, search_correction)
    gw = informative(matcher, matcher.windows(gen, window, gen_hop))
    n_tw = sum(len(window_starts(len(v), window, train_hop)) for v in trn.values())
    return AuditPlan(matcher, gw, phase_of, shards, cal, window, gen_hop, train_hop, len(trn), n_tw)


def run_shard(plan: AuditPlan, shard: Mapping[str, np.ndarray]) -> PairHits:
    """The per-shard step of a plan (what an engine fans out)."""
    return audit_shard(plan.gw, shard, plan.matcher, plan.calibration.tau, plan.window, plan.train_hop)


def finish_audit(plan: AuditPlan, hits: PairHits) -> AuditResult:
    fr = plan.matcher.frame_rate
    n_ph = max(1, len(plan.phase_of) // max(1, len({v[0] for v in plan.phase_of.values()})))
    return merge_hits(hits, plan.gw, plan.phase_of, plan.n_train_windows, plan.n_train, plan.calibration, fr,
                      extra={"window_s": plan.window / fr, "gen_hop_s": plan.gen_hop / fr, "train_hop_s": plan.train_hop / fr,
                             "phases": n_ph, **plan.matcher.config()})


def audit(generated: Mapping[str, np.ndarray | Sequence[np.ndarray]], train: Mapping[str, np.ndarray], centroids=None,
          fpr: float = DEFAULT_CLIP_FPR, window: int | None = None, gen_hop: int | None = None, train_hop: int = 1,
          eps: float = DEFAULT_EPS, seed: int = 0, device: str = "cpu", tau: float | None = None, **kw) -> AuditResult:
    """Which generated clips copy a training clip, where, and how closely.

    ``generated[id]``: a sequence (tokens, or ``[frames, dim]`` embeddings for an embedding matcher)
    or a list of sub-frame phase featurizations. Windows of ``window`` frames (default 5 s): generated
    every ``gen_hop`` (default 1 s), training every ``train_hop``. τ: per clip at ``fpr`` on ``null``
    clips (``{id: sequence}``, audio known not to be in ``train``) or, when none are given, on
    leave-one-out excerpts of ``train`` (``groups``: clip → group whose clips all leave together);
    ``heldout`` of the nulls measure the false-alarm rate; ``tau_confidence``: the probability over the
    draw of calibration nulls that the per-clip rate is ≤ ``fpr`` (default 0.95; None or 0: on average,
    the earlier rule); ``search_correction`` (default on): τ accounts for the training windows a
    leave-one-out null did not search (:mod:`metrics.memorization.calibration`). ``matcher``: an :class:`OTScorer`
    (default, built from ``centroids``) or :class:`~metrics.memorization.matchers.EmbeddingMatcher`."""
    plan = prepare_audit(generated, train, centroids, fpr, window, gen_hop, train_hop, eps, seed, device, tau, **kw)
    return finish_audit(plan, PairHits.concat([run_shard(plan, s) for s in plan.shards]))


def merge_hits(hits: PairHits, gw: Windows, phase_of: Mapping[str, tuple[str, float]], n_train_windows: int,
               n_train: int, cal: ClipCalibration, frame_rate: float, extra: dict | None = None) -> AuditResult:
    """One row per (generated clip, training clip): the lag (phase + whole frames) with exact pairs
    first, then the largest share of that phase's generated windows matched (a share, not a count: a
    later phase starts up to a frame later, so it can have one window fewer), then the lowest mean
    alignment distance (the histogram cost barely changes over a few frames of shift), then the lowest
    mean cost — reported at its lowest-cost window pair. Deterministic for any order of ``hits``."""
    n_win: dict[tuple[str, float], int] = {}
    for c in gw.clip:
        n_win[phase_of[gw.ids[c]]] = n_win.get(phase_of[gw.ids[c]], 0) + 1
    groups: dict[tuple[str, str], dict[tuple[float, int], list]] = {}
    align = hits.align if hits.align is not None else np.zeros(len(hits))
    for g, tid, to, c, ex, al in zip(hits.g, hits.train_id, hits.train_offset, hits.cost, hits.exact, align):
        cid, phase = phase_of[gw.ids[gw.clip[g]]]
        lag_key = (phase, int(to) - int(gw.offset[g]))
        groups.setdefault((cid, str(tid)), {}).setdefault(lag_key, []).append(
            (float(c), int(gw.offset[g]), int(to), bool(ex), float(al)))
    matches = []
    for (cid, tid), by_lag in groups.items():
        def rank(item, cid=cid):
            (phase, lag), rows = item
            return (not any(r[3] for r in rows), -len({r[1] for r in rows}) / n_win[(cid, phase)],
                    float(np.mean([r[4] for r in rows])),
                    float(np.mean([r[0] for r in rows])), phase, lag)

        (phase, _), rows = min(by_lag.items(), key=rank)
        c, go, to, ex, _ = min(rows, key=lambda r: (not r[3], r[0], r[1]))
        matches.append({"generated_id": cid, "train_id": tid, "gen_offset_s": round((go + phase) / frame_rate, 4),
                        "train_offset_s": round(to / frame_rate, 4), "cost": c, "exact": ex,
                        "n_windows": len({r[1] for r in rows}),
                        "min_cost": min(float(r[0]) for lag_rows in by_lag.values() for r in lag_rows)})
    matches.sort(key=lambda m: (m["generated_id"], m["cost"], m["train_id"]))
    clip_ids = sorted({v[0] for v in phase_of.values()})
    best_cost = {cid: math.inf for cid in clip_ids}
    exact_clips = set()
    for m in matches:
        best_cost[m["generated_id"]] = min(best_cost[m["generated_id"]], m["min_cost"])
        if m["exact"]:
            exact_clips.add(m["generated_id"])
    n_gen = len(clip_ids)
    win_clip = np.array([phase_of[gw.ids[c]][0] for c in gw.clip], dtype=object)
    hit_clip = win_clip[hits.g] if len(hits) else np.zeros(0, object)
    pairs_by_clip = {cid: (int((win_clip == cid).sum()) * n_train_windows, int((hit_clip == cid).sum())) for cid in clip_ids}
    n_flag = sum(1 for v in best_cost.values() if v < math.inf)
    n_pairs = len(gw) * n_train_windows
    return AuditResult(
        tau=cal.tau, fpr=cal.clip_false_alarm_rate, exact_rate=len(exact_clips) / n_gen, approx_rate=n_flag / n_gen,
        calibration=cal, matches=matches, n_pairs=n_pairs, n_solved=hits.n_solved + cal.n_solved,
        n_matched_pairs=len(hits), best_cost=best_cost, pairs_by_clip=pairs_by_clip,
        extra={"n_generated": n_gen, "n_train": n_train, "n_generated_windows": len(gw), "n_train_windows": n_train_windows,
               "exact_ci95": list(wilson_ci(len(exact_clips), n_gen)), "approx_ci95": list(wilson_ci(n_flag, n_gen)),
               **(extra or {})})
