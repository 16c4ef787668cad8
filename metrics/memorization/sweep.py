"""The paper's memorization protocol (MusicLM §5): prompt with the first T semantic tokens of a
training example, greedy-decode 125 tokens (5 s at 25 Hz), compare with the true continuation —
exact match (all tokens equal) or approximate match (OT cost between token histograms below τ).

Each continuation is compared with exactly one target, so here a per-pair false-positive rate *is*
a per-clip rate; τ comes from :func:`metrics.memorization.calibration.calibrate_tau` on negatives
(continuation of example i vs target of example j ≠ i, same T).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from metrics.cache import EmbeddingCache, array_sha256, cached_array
from metrics.intervals import wilson_ci
from metrics.memorization.calibration import Calibration, _count_below, calibrate_tau, negative_pairs
from metrics.memorization.matchers import OTScorer
from metrics.memorization.registry import DEFAULT_FPR, FRAME_RATE, PROMPT_LENGTHS, WINDOW_TOKENS, MemorizationError
from metrics.memorization.windows import check_tokens, entropy_bits
from metrics.sinkhorn import DEFAULT_EPS


@dataclass
class Example:
    """One training example: its conditioning tokens (MuLan audio tokens M_A) and its semantic tokens."""

    id: str
    cond: np.ndarray
    semantic: np.ndarray


ContinueFn = Callable[[np.ndarray, np.ndarray, int], np.ndarray]

CONTINUATION_VERSION = "memorization-sweep-continuation.v1"  # bump when CachedContinuation's key or entry changes


class CachedContinuation:
    """``continue_fn`` reading and writing the verified embedding cache, so a sweep killed part-way and rerun
    on the same cache recomputes only the continuations it had not finished (the cached ones are the same
    bytes, so the result is the uninterrupted run's).

    Key (``EmbeddingCache.key``): the sha256 of the prompt tokens (dtype, length and values: T and the
    example's tokens), ``model_id`` (the model's weights, whatever else decides its output) and the sha256 of
    the conditioning tokens, ``n_new`` and ``settings`` (decoding, device, …). Entry code version: ``code``
    (the caller's continuation code) and :data:`CONTINUATION_VERSION`: other code is a miss, never a number.
    ``cached`` / ``computed`` count the continuations read and computed; ``cache=None``: ``continue_fn`` alone."""

    def __init__(self, continue_fn: ContinueFn, cache: EmbeddingCache | None, model_id: str, code: str,
                 settings: Mapping | None = None):
        self.fn, self.cache, self.model_id = continue_fn, cache, model_id
        self.code, self.settings = f"{code}|{CONTINUATION_VERSION}", dict(settings or {})
        self.cached = self.computed = 0

    def __call__(self, cond: np.ndarray, prompt: np.ndarray, n_new: int) -> np.ndarray:
        cond, prompt = np.asarray(cond), np.asarray(prompt)
        pre = json.dumps({**self.settings, "cond_sha256": array_sha256(cond), "n_new": int(n_new)}, sort_keys=True)
        key = EmbeddingCache.key(array_sha256(prompt), self.model_id, pre)
        out, hit = cached_array(self.cache, key, self.code, lambda: self.fn(cond, prompt, n_new))
        self.cached, self.computed = self.cached + hit, self.computed + (not hit)
        return out


def select_examples(examples: Sequence[Example], n: int | None, seed: int = 0) -> list[Example]:
    """``n`` examples drawn without replacement (seeded); all of them, in id order, when ``n`` is None or ≥ len."""
    ex = sorted(examples, key=lambda e: e.id)
    if n is None or n >= len(ex):
        return ex
    idx = np.sort(np.random.default_rng(seed).choice(len(ex), n, replace=False))
    return [ex[i] for i in idx]


@dataclass
class SweepResult:
    tau: float
    fpr: float
    exact_rate: float
    approx_rate: float
    calibration: Calibration
    rows: list[dict]
    matches: list[dict]
    entropy_all_bits: float
    entropy_matched_bits: float | None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"tau": self.tau, "fpr": self.fpr, "exact_rate": self.exact_rate, "approx_rate": self.approx_rate,
                "entropy_all_bits": self.entropy_all_bits, "entropy_matched_bits": self.entropy_matched_bits,
                "calibration": self.calibration.to_dict(), "rows": self.rows, **self.extra}


def _rate(k: int, n: int) -> dict:
    lo, hi = wilson_ci(k, n)
    return {"rate": k / n, "ci95": [lo, hi], "count": k}


def prompt_sweep(examples: Sequence[Example], continue_fn: ContinueFn, centroids: np.ndarray,
                 prompt_lengths: Sequence[int] = PROMPT_LENGTHS, n_new: int = WINDOW_TOKENS, fpr: float = DEFAULT_FPR,
                 eps: float = DEFAULT_EPS, seed: int = 0, max_negatives: int = 200_000, device: str = "cpu",
                 tau: float | None = None) -> SweepResult:
    """The paper's memorization protocol on token sequences.

    For each T: continuation = ``continue_fn(cond, semantic[:T], n_new)`` (greedy), target =
    ``semantic[T:T+n_new]``. Exact match: all ``n_new`` tokens equal. Approximate match: OT cost < τ,
    τ calibrated on negatives (continuation of example i vs target of example j ≠ i, same T).
    ``approx_rate`` counts exact matches too (their cost is 0).
    """
    if not examples:
        raise MemorizationError("prompt sweep: empty set of training examples")
    lengths = sorted({int(t) for t in prompt_lengths})
    if not lengths or lengths[0] < 0:
        raise MemorizationError(f"prompt lengths must be non-negative token counts, got {list(prompt_lengths)}")
    scorer = OTScorer(centroids, eps=eps, device=device)
    need = lengths[-1] + n_new
    sems = check_tokens({e.id: e.semantic for e in examples}, scorer.vocab_size, "training examples", need)
    conts, targets, t_of, ex_of = [], [], [], []
    for t in lengths:
        for i, e in enumerate(examples):
            out = np.asarray(continue_fn(np.asarray(e.cond), sems[e.id][:t], n_new))
            if out.shape != (n_new,):
                raise MemorizationError(f"continue_fn returned shape {out.shape} for example {e.id} at T={t}; expected ({n_new},)")
            conts.append(out.astype(np.int64))
            targets.append(sems[e.id][t : t + n_new])
            t_of.append(t)
            ex_of.append(i)
    conts_a = np.stack(conts)
    check_tokens({"continuations": conts_a.ravel()}, scorer.vocab_size, "continue_fn output", 0)
    targ_a, t_of, ex_of = np.stack(targets), np.asarray(t_of), np.asarray(ex_of)

    exact = (conts_a == targ_a).all(1)
    # negatives: continuation i vs target j of another example at the same prompt length
    rng = np.random.default_rng(seed)
    ne = len(examples)
    per_t = max(1, max_negatives // len(lengths))
    ia, ib = [], []
    for ti in range(len(lengths)):
        i, j = negative_pairs(ne, np.arange(ne), per_t, rng)
        ia.append(ti * ne + i)
        ib.append(ti * ne + j)
    ia, ib = np.concatenate(ia), np.concatenate(ib)
    if tau is None:
        cal = calibrate_tau(scorer, conts_a[ia], targ_a[ib], fpr, seed=seed)
    else:
        fp, _ = _count_below(scorer, conts_a[ia], targ_a[ib], tau)
        cal = Calibration(tau, fpr, float("nan"), fp / len(ia), wilson_ci(fp, len(ia)), 0, len(ia), float("nan"),
                          wilson_ci(fp, len(ia))[1] <= fpr, 0)
    cost = np.full(len(conts_a), np.inf)
    cost[exact] = 0.0
    cand = np.flatnonzero(~exact & (scorer.lower_bound(conts_a, targ_a) < cal.tau))
    cost[cand] = scorer.costs(conts_a[cand], targ_a[cand])
    approx = cost < cal.tau
    ent = np.array([entropy_bits(c) for c in conts_a])

    rows, matches = [], []
    for t in lengths:
        m = t_of == t
        n = int(m.sum())
        rows.append({"prompt_tokens": t, "prompt_s": t / FRAME_RATE, "n": n,
                     "exact_rate": exact[m].mean(), "exact_ci95": list(wilson_ci(int(exact[m].sum()), n)),
                     "approx_rate": approx[m].mean(), "approx_ci95": list(wilson_ci(int(approx[m].sum()), n)),
                     "entropy_all_bits": float(ent[m].mean()),
                     "entropy_matched_bits": float(ent[m & approx].mean()) if (m & approx).any() else None})
    for i in np.flatnonzero(approx):
        e = examples[ex_of[i]]
        matches.append({"generated_id": f"{e.id}@T{t_of[i]}", "train_id": e.id, "gen_offset_s": 0.0,
                        "train_offset_s": t_of[i] / FRAME_RATE, "cost": float(cost[i]), "exact": bool(exact[i]),
                        "prompt_tokens": int(t_of[i])})
    for r in rows:
        r["exact_rate"], r["approx_rate"] = float(r["exact_rate"]), float(r["approx_rate"])
    return SweepResult(tau=cal.tau, fpr=cal.fpr_heldout, exact_rate=float(exact.mean()), approx_rate=float(approx.mean()),
                       calibration=cal, rows=rows, matches=matches, entropy_all_bits=float(ent.mean()),
                       entropy_matched_bits=float(ent[approx].mean()) if approx.any() else None,
                       extra={"n_examples": ne, "n_new": n_new, "eps": eps, "cost_scale": scorer.scale,
                              "exact_ci95": list(wilson_ci(int(exact.sum()), len(exact))),
                              "approx_ci95": list(wilson_ci(int(approx.sum()), len(approx)))})

