"""The exact search: every window pair below τ, and every null clip's minimum cost, with pruning.

Both searches stream the training set shard by shard (whole clips, a bounded number of windows per
shard), scan the matcher's *bound* in blocks (one float32 GEMM per block) and solve only pairs whose
bound is below the threshold plus the matcher's numerical slack. Because the bound never exceeds
the cost, the result is the brute-force one (tested against solving every pair), and memory is
bounded by the shard and block sizes, not by the training set.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from metrics.memorization.windows import Windows

BLOCK_G, BLOCK_T = 1024, 16384  # bound block: 64 MiB of float32
SOLVE_BATCH = 2048


@dataclass
class PairHits:
    """Matched window pairs (cost < τ) of one shard: generated window index ``g`` (into the shared
    generated :class:`Windows`), training clip id and window offset (frames), cost, exact flag.

    Shard-independent: training windows are named by (clip id, offset), not by a shard-local index,
    so :func:`metrics.memorization.audit.merge_hits` of any partition of the training clips gives the same result."""

    g: np.ndarray
    train_id: np.ndarray  # str
    train_offset: np.ndarray
    cost: np.ndarray
    exact: np.ndarray
    n_solved: int = 0
    align: np.ndarray | None = None  # per-frame alignment distance (matcher.align), set by audit_shard

    @classmethod
    def empty(cls) -> PairHits:
        return cls(np.zeros(0, np.int64), np.zeros(0, dtype=object), np.zeros(0, np.int64), np.zeros(0), np.zeros(0, bool),
                   align=np.zeros(0))

    @classmethod
    def concat(cls, parts: Sequence[PairHits]) -> PairHits:
        parts = [cls.empty(), *parts]
        out = cls(*(np.concatenate([getattr(h, f) for h in parts]) for f in ("g", "train_id", "train_offset", "cost", "exact")),
                  n_solved=sum(h.n_solved for h in parts))
        if all(h.align is not None for h in parts):
            out.align = np.concatenate([h.align for h in parts])
        return out

    def __len__(self) -> int:
        return len(self.g)


def exclusion_mask(gw: Windows, tw: Windows, exclude: Mapping[str, set[str]] | None) -> np.ndarray | None:
    """``[generated clips, training clips]`` True where a pair must not be compared (a null excerpt vs its own source)."""
    if not exclude:
        return None
    col = {t: j for j, t in enumerate(tw.ids)}
    m = np.zeros((len(gw.ids), len(tw.ids)), bool)
    for i, gid in enumerate(gw.ids):
        for t in exclude.get(gid, ()):
            if t in col:
                m[i, col[t]] = True
    return m if m.any() else None


def exact_hits(gw: Windows, tw: Windows, exclude: Mapping[str, set[str]] | None = None) -> PairHits:
    """Generated token windows identical to a training window (hashing); the earliest allowed training window wins."""
    mask = exclusion_mask(gw, tw, exclude)
    index: dict[bytes, list[int]] = {}
    for r in range(len(tw)):
        index.setdefault(tw.tokens[r].tobytes(), []).append(r)
    g, t = [], []
    for i in range(len(gw)):
        rows = index.get(gw.tokens[i].tobytes(), [])
        if mask is not None:
            rows = [r for r in rows if not mask[gw.clip[i], tw.clip[r]]]
        if rows:
            g.append(i)
            t.append(rows[0])
    t = np.asarray(t, dtype=np.int64)
    return PairHits(np.asarray(g, dtype=np.int64), np.asarray(tw.ids, dtype=object)[tw.clip[t]] if len(t) else np.zeros(0, object),
                    tw.offset[t], np.zeros(len(t)), np.ones(len(t), bool))


def _bound_block(matcher, gw: Windows, gs: np.ndarray, tw: Windows, t0: int, t1: int, mask: np.ndarray | None) -> np.ndarray:
    d = matcher.bound(gw.vec[gs], tw.vec[t0:t1])
    if mask is not None:
        d[mask[gw.clip[gs]][:, tw.clip[t0:t1]]] = np.inf
    return d


def _refine(matcher, gw: Windows, gi: np.ndarray, tw: Windows, ti: np.ndarray, thr: np.ndarray | float):
    """Second pruning stage: the matcher's tighter bound (when it has one) against the same threshold."""
    tb = getattr(matcher, "tighter_bound", None)
    if tb is None or not len(gi):
        return np.ones(len(gi), bool)
    return tb(gw, gi, tw, ti) < thr


def candidate_hits(gw: Windows, tw: Windows, matcher, tau: float, skip: np.ndarray | None = None,
                   exclude: Mapping[str, set[str]] | None = None) -> PairHits:
    """*All* window pairs with cost < τ: pairs whose bound is below τ (+ slack) are solved, the rest cannot
    match. ``skip``: generated windows already matched exactly (cost 0)."""
    keep = np.ones(len(gw), bool)
    if skip is not None and len(skip):
        keep[skip] = False
    gsel = np.flatnonzero(keep)
    mask = exclusion_mask(gw, tw, exclude)
    g_parts, t_parts = [], []
    for s in range(0, len(gsel), BLOCK_G):
        gs = gsel[s : s + BLOCK_G]
        for t0 in range(0, len(tw), BLOCK_T):
            d = _bound_block(matcher, gw, gs, tw, t0, min(len(tw), t0 + BLOCK_T), mask)
            gi, ti = np.nonzero(d < tau + matcher.slack)
            g_parts.append(gs[gi])
            t_parts.append(t0 + ti)
    g_idx = np.concatenate(g_parts) if g_parts else np.zeros(0, np.int64)
    t_idx = np.concatenate(t_parts) if t_parts else np.zeros(0, np.int64)
    ok = _refine(matcher, gw, g_idx, tw, t_idx, tau + matcher.slack)
    g_idx, t_idx = g_idx[ok], t_idx[ok]
    c = np.concatenate([matcher.pair_costs(gw, g_idx[s : s + SOLVE_BATCH], tw, t_idx[s : s + SOLVE_BATCH])
                        for s in range(0, len(g_idx), SOLVE_BATCH)]) if len(g_idx) else np.zeros(0)
    hit = c < tau
    return PairHits(g_idx[hit], np.asarray(tw.ids, dtype=object)[tw.clip[t_idx[hit]]], tw.offset[t_idx[hit]], c[hit],
                    np.zeros(int(hit.sum()), bool), n_solved=len(c))


def audit_shard(gw: Windows, train: Mapping[str, np.ndarray], matcher, tau: float, window: int, train_hop: int = 1,
                exclude: Mapping[str, set[str]] | None = None) -> PairHits:
    """All matched window pairs between the generated windows and one shard of *whole* training clips
    (the per-shard step an engine fans out): exact copies by hashing, then the pruned candidate search."""
    tw = matcher.windows(train, window, train_hop)
    ex = exact_hits(gw, tw, exclude) if matcher.exact_by_hash else PairHits.empty()
    cand = candidate_hits(gw, tw, matcher, tau, skip=ex.g, exclude=exclude)
    out = PairHits.concat([ex, cand])
    t_index = {(tw.ids[c], int(o)): r for r, (c, o) in enumerate(zip(tw.clip, tw.offset))}
    rows = np.array([t_index[(str(t), int(o))] for t, o in zip(out.train_id, out.train_offset)], dtype=np.int64)
    out.align = matcher.align(gw, out.g, tw, rows) if len(out) else np.zeros(0)
    return out


def shard_clips(train: Mapping[str, np.ndarray], n_shards: int) -> list[dict]:
    """Whole training clips into ``n_shards`` groups of similar length (greedy, largest first).

    Never splits a clip, so each shard's windows are exactly that clip's windows. Deterministic (ties by id)."""
    n_shards = max(1, min(n_shards, len(train)))
    loads, shards = [0] * n_shards, [{} for _ in range(n_shards)]
    for cid in sorted(train, key=lambda c: (-len(train[c]), c)):
        k = min(range(n_shards), key=lambda i: (loads[i], i))
        shards[k][cid] = train[cid]
        loads[k] += len(train[cid])
    return [s for s in shards if s]


def shards_by_size(train: Mapping[str, np.ndarray], max_frames: int) -> list[dict]:
    """Consecutive (id-ordered) groups of whole clips with at most ``max_frames`` frames each (bounded memory)."""
    out, cur, n = [], {}, 0
    for cid in sorted(train):
        if cur and n + len(train[cid]) > max_frames:
            out.append(cur)
            cur, n = {}, 0
        cur[cid] = train[cid]
        n += len(train[cid])
    return [*out, cur] if cur else out


def _kth(best: np.ndarray, k: int) -> float:
    fin = np.sort(best[np.isfinite(best)])
    return float(fin[k - 1]) if len(fin) >= k else np.inf


def clip_minima(qw: Windows, q_clip: np.ndarray, n_clips: int, shards: Sequence[Mapping[str, np.ndarray]], matcher,
                window: int, train_hop: int, rank: int, exclude: Mapping[str, set[str]] | None = None) -> tuple[np.ndarray, int]:
    """Each query clip's minimum cost over every training window (exact for the ``rank`` smallest).

    ``q_clip[i]``: which query clip window ``i`` belongs to (several phases/windows per clip). Branch
    and bound: per shard, first the bound's nearest neighbour of every window is solved (an upper bound
    for its clip), then pairs in increasing bound order while the bound is below
    min(clip's best, U) + slack, where U is the ``rank``-th smallest best so far. Clips whose minimum
    is ≥ U come back as an upper bound ≥ U; the ``rank`` smallest minima (what τ is) are exact."""
    best = np.full(n_clips, np.inf)
    n_solved = 0
    for train in shards:
        tw = matcher.windows(train, window, train_hop)
        mask = exclusion_mask(qw, tw, exclude)
        keep = np.ones(len(qw), bool)
        if matcher.exact_by_hash:
            ex = exact_hits(qw, tw, exclude)
            np.minimum.at(best, q_clip[ex.g], 0.0)
            keep[ex.g] = False
        gsel = np.flatnonzero(keep & (best[q_clip] > 0))
        cand = []
        for s in range(0, len(gsel), BLOCK_G):  # pass 1: nearest neighbour by bound
            gs = gsel[s : s + BLOCK_G]
            for t0 in range(0, len(tw), BLOCK_T):
                d = _bound_block(matcher, qw, gs, tw, t0, min(len(tw), t0 + BLOCK_T), mask)
                j = d.argmin(1)
                cand.append((gs, t0 + j, d[np.arange(len(gs)), j]))
        if not cand:
            continue
        gi = np.concatenate([c[0] for c in cand])
        ti = np.concatenate([c[1] for c in cand])
        db = np.concatenate([c[2] for c in cand])
        ok = np.isfinite(db)
        gi, ti = gi[ok], ti[ok]
        c = matcher.pair_costs(qw, gi, tw, ti) if len(gi) else np.zeros(0)
        n_solved += len(c)
        np.minimum.at(best, q_clip[gi], c)
        solved = set(zip(gi.tolist(), ti.tolist()))
        u = _kth(best, rank)
        g_parts, t_parts, d_parts = [], [], []
        for s in range(0, len(gsel), BLOCK_G):  # pass 2: every pair that could still lower a relevant minimum
            gs = gsel[s : s + BLOCK_G]
            thr = np.minimum(best[q_clip[gs]], u) + matcher.slack
            for t0 in range(0, len(tw), BLOCK_T):
                d = _bound_block(matcher, qw, gs, tw, t0, min(len(tw), t0 + BLOCK_T), mask)
                a, b = np.nonzero(d < thr[:, None])
                g_parts.append(gs[a])
                t_parts.append(t0 + b)
                d_parts.append(d[a, b])
        gi, ti, db = (np.concatenate(p) for p in (g_parts, t_parts, d_parts))
        order = np.argsort(db, kind="stable")
        gi, ti, db = gi[order], ti[order], db[order]
        for s in range(0, len(gi), SOLVE_BATCH):
            u = _kth(best, rank)
            sl = slice(s, s + SOLVE_BATCH)
            live = db[sl] < np.minimum(best[q_clip[gi[sl]]], u) + matcher.slack
            live &= np.array([(g, t) not in solved for g, t in zip(gi[sl].tolist(), ti[sl].tolist())], bool)
            if not live.any():
                if db[sl][0] >= u + matcher.slack:
                    break  # sorted by bound: nothing later can matter either
                continue
            g_b, t_b = gi[sl][live], ti[sl][live]
            ok = _refine(matcher, qw, g_b, tw, t_b, np.minimum(best[q_clip[g_b]], u) + matcher.slack)
            g_b, t_b = g_b[ok], t_b[ok]
            if not len(g_b):
                continue
            c = matcher.pair_costs(qw, g_b, tw, t_b)
            n_solved += len(c)
            np.minimum.at(best, q_clip[g_b], c)
    return best, n_solved
