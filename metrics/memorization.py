"""Memorization: does a model reproduce its training data? (MusicLM §5 protocol + a model-agnostic audit).

Everything here works on *semantic token sequences* and the tokenizer's k-means centroids, so it can
be tested and used without any model:

* ``prompt_sweep`` — the paper's protocol: prompt with the first T tokens of a training example,
  greedy-decode 125 tokens (5 s at 25 Hz), compare with the true continuation (exact match; optimal
  transport cost between token histograms below τ = approximate match).
* ``audit`` — for any model's generated audio: slide 5 s windows over generated and training token
  sequences, find exact copies by hashing, prune the rest with a lower bound, confirm with Sinkhorn.
* ``calibrate_tau`` — τ from the empirical quantile of negative-pair costs at a requested FPR,
  checked on held-out negatives.

Why the lower bound is exact pruning, not a heuristic: the ground cost is the Euclidean distance
between centroids, so for any transport plan the cost is ≥ ‖Σ a_i c_i − Σ b_j c_j‖ (Jensen). The
Sinkhorn cost is the cost of a (feasible) plan, hence ≥ that distance between the windows' mean
centroids. Pairs whose bound is ≥ τ can never match and are not solved.

``metrics`` must not import ``musiclm_ref``: a tokenizer is anything with the :class:`Tokenizer`
attributes, and the reference one is resolved lazily by name (``semantic-ref``).
"""

from __future__ import annotations

import csv
import importlib
import json
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from metrics.result import wilson_ci
from metrics.sinkhorn import DEFAULT_EPS, ground_cost, sinkhorn_pairs, sparse_from_tokens

FRAME_RATE = 25
WINDOW_TOKENS = 125  # 5 s at 25 Hz, the paper's continuation length
PROMPT_LENGTHS = tuple(range(0, 251, 25))  # 0–10 s
DEFAULT_FPR = 1e-4  # paper: < 0.01 %

TOKENIZERS: dict[str, str] = {
    # name -> "module:callable(path=None)"; resolved only when asked for (metrics/ imports no model code)
    "semantic-ref": "musiclm_ref.semantic:load_tokenizer",
}


class MemorizationError(ValueError):
    """Input that the memorization audit cannot use; the message names the clip/file and the problem."""


class FewNegativesWarning(UserWarning):
    """Too few negative pairs to certify the requested false-positive rate."""


@runtime_checkable
class Tokenizer(Protocol):
    """What the audit needs from a semantic tokenizer."""

    id: str
    frame_rate: int
    centroids: np.ndarray  # [K, D]

    @property
    def vocab_size(self) -> int: ...

    def tokenize(self, wave: np.ndarray, sr: int) -> np.ndarray: ...


def get_tokenizer(name_or_path: str | Path = "semantic-ref") -> Tokenizer:
    """A registered name (``semantic-ref``), ``module:callable``, or a checkpoint path for the reference loader."""
    spec = str(name_or_path)
    path = None
    if spec in TOKENIZERS:
        target = TOKENIZERS[spec]
    elif ":" in spec and not Path(spec).exists() and "/" not in spec:
        target = spec
    else:
        path = Path(spec)
        if not path.exists():
            raise MemorizationError(f"{path}: tokenizer checkpoint not found (or use one of {', '.join(TOKENIZERS)})")
        target = TOKENIZERS["semantic-ref"]
    module, attr = target.split(":")
    try:
        loader = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise MemorizationError(f"tokenizer {spec!r}: cannot import {target} ({e})") from None
    tok = loader(path) if path is not None else loader()
    check_tokenizer(tok, spec)
    return tok


def check_tokenizer(tok, name: str = "tokenizer") -> None:
    missing = [a for a in ("id", "frame_rate", "centroids", "vocab_size", "tokenize") if not hasattr(tok, a)]
    if missing:
        raise MemorizationError(f"{name}: not a tokenizer (missing {', '.join(missing)})")
    c = np.asarray(tok.centroids)
    if c.ndim != 2 or c.shape[0] != tok.vocab_size:
        raise MemorizationError(f"{name}: vocabulary mismatch: vocab_size={tok.vocab_size} but centroids have shape {c.shape}")


# -- tokens, windows, histograms ---------------------------------------------------------------


def check_tokens(seqs: Mapping[str, np.ndarray], vocab_size: int, what: str, min_len: int) -> dict[str, np.ndarray]:
    """Validate a set of token sequences: non-empty, 1-D integer, ids in the vocabulary, long enough."""
    if not seqs:
        raise MemorizationError(f"{what}: empty set (no token sequences)")
    out = {}
    for cid, s in seqs.items():
        a = np.asarray(s)
        if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer):
            raise MemorizationError(f"{what}/{cid}: tokens must be a 1-D integer array, got {a.dtype} {a.shape}")
        if len(a) < min_len:
            raise MemorizationError(f"{what}/{cid}: {len(a)} tokens is shorter than a window of {min_len} tokens "
                                    f"({min_len / FRAME_RATE:g} s at {FRAME_RATE} Hz)")
        if len(a) and (a.min() < 0 or a.max() >= vocab_size):
            bad = int(a.max()) if a.max() >= vocab_size else int(a.min())
            raise MemorizationError(f"{what}/{cid}: token id {bad} outside the vocabulary [0, {vocab_size}) "
                                    "(vocabulary mismatch between tokenizer and histograms?)")
        out[str(cid)] = a.astype(np.int64)
    return out


@dataclass
class Windows:
    """Sliding windows over named token sequences: ``tokens[i]`` is clip ``ids[clip[i]]`` from ``offset[i]``."""

    ids: list[str]
    clip: np.ndarray
    offset: np.ndarray
    tokens: np.ndarray  # [N, W]

    def __len__(self) -> int:
        return len(self.clip)


def cut_windows(seqs: Mapping[str, np.ndarray], window: int, hop: int) -> Windows:
    """Windows of ``window`` tokens every ``hop`` tokens; the last window is flush with the end of each sequence."""
    if window < 1 or hop < 1:
        raise MemorizationError(f"window and hop must be >= 1 token, got window={window}, hop={hop}")
    ids, clips, offs, toks = list(seqs), [], [], []
    for i, cid in enumerate(ids):
        s = seqs[cid]
        starts = list(range(0, len(s) - window + 1, hop))
        if starts[-1] != len(s) - window:
            starts.append(len(s) - window)
        st = np.asarray(starts)
        clips.append(np.full(len(st), i))
        offs.append(st)
        toks.append(np.lib.stride_tricks.sliding_window_view(s, window)[st])
    return Windows(ids, np.concatenate(clips), np.concatenate(offs), np.concatenate(toks))


def entropy_bits(tokens: np.ndarray) -> float:
    """Shannon entropy (bits) of the empirical token distribution of one sequence."""
    _, counts = np.unique(np.asarray(tokens), return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


class OTScorer:
    """Histogram OT between token windows with one tokenizer's centroids.

    Histograms are token counts / window length (mass 1). Ground cost = Euclidean distance between
    the centroids of the tokens present, divided by the mean off-diagonal centroid distance of the
    whole vocabulary (one constant per tokenizer, so ε and τ are in comparable units).
    """

    def __init__(self, centroids: np.ndarray, vocab_size: int | None = None, eps: float = DEFAULT_EPS, device: str = "cpu",
                 chunk: int = 256):
        c = np.asarray(centroids, dtype=np.float64)
        if vocab_size is not None and (c.ndim != 2 or c.shape[0] != vocab_size):
            raise MemorizationError(f"vocabulary mismatch: vocab_size={vocab_size} but centroids have shape {c.shape}")
        self.cost, self.scale = ground_cost(c)
        self.centroids = c / self.scale  # so mean-embedding distances are in cost units
        self.vocab_size = len(c)
        self.eps, self.device, self.chunk = eps, device, chunk

    def mean_embedding(self, tokens: np.ndarray) -> np.ndarray:
        """Mean scaled centroid of each window [N, W] → [N, D]."""
        return self.centroids[np.asarray(tokens)].mean(1)

    def lower_bound(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Aligned pairs: ‖mean_a − mean_b‖ ≤ OT cost (exact pruning bound, see module docstring)."""
        return np.linalg.norm(self.mean_embedding(a) - self.mean_embedding(b), axis=1)

    def costs(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Sinkhorn cost for aligned pairs of token windows ``a[i]``, ``b[i]`` (``a`` may be one window)."""
        if len(b) == 0:
            return np.zeros(0)
        ha = sparse_from_tokens(np.atleast_2d(a), self.vocab_size)
        hb = sparse_from_tokens(np.atleast_2d(b), self.vocab_size)
        return sinkhorn_pairs(ha, hb, self.cost, eps=self.eps, device=self.device, chunk=self.chunk)


# -- τ calibration ------------------------------------------------------------------------------


@dataclass
class Calibration:
    tau: float
    fpr_target: float
    fpr_calibration: float  # empirical FPR on the negatives τ was chosen on (≤ target by construction)
    fpr_heldout: float  # measured on held-out negatives
    fpr_heldout_ci95: tuple[float, float]
    n_calibration: int
    n_heldout: int
    resolution: float  # 1 / n_calibration: the smallest FPR the calibration set can express
    certified: bool  # Wilson upper bound on held-out FPR ≤ target
    n_solved: int  # Sinkhorn problems actually solved (the rest were pruned by the lower bound)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["fpr_heldout_ci95"] = list(self.fpr_heldout_ci95)
        return d


def _smallest_costs(scorer: OTScorer, a: np.ndarray, b: np.ndarray, k: int, batch: int = 256) -> tuple[np.ndarray, int]:
    """The ``k`` smallest OT costs among aligned pairs, solving pairs in lower-bound order until no
    unsolved pair can beat the current k-th smallest (its bound is already ≥ it)."""
    lb = scorer.lower_bound(a, b)
    order = np.argsort(lb, kind="stable")
    found = np.empty(0)
    solved = 0
    for s in range(0, len(order), batch):
        if len(found) >= k and lb[order[s]] >= found[k - 1]:
            break
        idx = order[s : s + batch]
        found = np.sort(np.concatenate([found, scorer.costs(a[idx], b[idx])]))[: max(k, 1)]
        solved += len(idx)
    return found[:k], solved


def _count_below(scorer: OTScorer, a: np.ndarray, b: np.ndarray, tau: float) -> tuple[int, int]:
    lb = scorer.lower_bound(a, b)
    cand = np.flatnonzero(lb < tau)
    if len(cand) == 0:
        return 0, 0
    return int((scorer.costs(a[cand], b[cand]) < tau).sum()), len(cand)


def calibrate_tau(scorer: OTScorer, neg_a: np.ndarray, neg_b: np.ndarray, fpr: float = DEFAULT_FPR,
                  heldout: float = 0.5, seed: int = 0) -> Calibration:
    """τ such that at most ``fpr`` of the calibration negatives have cost < τ; FPR re-measured on held-out ones.

    ``neg_a[i]``/``neg_b[i]`` are windows that must *not* match (e.g. a continuation and the target of
    another example). τ is the (⌊fpr·n⌋+1)-th smallest calibration cost, so a match is ``cost < τ``.
    """
    if not 0 < fpr < 1:
        raise MemorizationError(f"fpr must be in (0, 1), got {fpr}")
    n = len(neg_a)
    if n != len(neg_b):
        raise MemorizationError(f"negative pairs misaligned: {len(neg_a)} vs {len(neg_b)}")
    if n < 4:
        raise MemorizationError(f"only {n} negative pairs: need at least 4 to calibrate τ (more examples or clips)")
    perm = np.random.default_rng(seed).permutation(n)
    n_held = int(round(n * heldout))
    held, cal = perm[:n_held], perm[n_held:]
    k = int(math.floor(fpr * len(cal)))
    smallest, solved = _smallest_costs(scorer, neg_a[cal], neg_b[cal], k + 1)
    tau = float(smallest[k])
    fp_cal = int((smallest < tau).sum())
    fp_held, solved_h = _count_below(scorer, neg_a[held], neg_b[held], tau) if n_held else (0, 0)
    ci = wilson_ci(fp_held, n_held) if n_held else (0.0, 1.0)
    cal_res = Calibration(tau=tau, fpr_target=fpr, fpr_calibration=fp_cal / len(cal),
                          fpr_heldout=fp_held / n_held if n_held else float("nan"), fpr_heldout_ci95=ci,
                          n_calibration=len(cal), n_heldout=n_held, resolution=1.0 / len(cal),
                          certified=bool(n_held and ci[1] <= fpr), n_solved=solved + solved_h)
    if 1.0 / len(cal) > fpr or not cal_res.certified:
        warnings.warn(f"{len(cal)} calibration / {n_held} held-out negatives cannot certify FPR {fpr:g} "
                      f"(resolution {1 / len(cal):.2g}, held-out FPR 95% CI up to {ci[1]:.2g}); "
                      f"need about {math.ceil(3.7 / fpr)} held-out negatives with none below τ", FewNegativesWarning,
                      stacklevel=2)
    return cal_res


def _negative_pairs(n_items: int, group: np.ndarray, max_pairs: int, rng: np.random.Generator,
                    other: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i, j) with ``group[i] != other_group[j]``: all of them if few, else a uniform sample."""
    og = group if other is None else other
    n_other = len(og)
    total = n_items * n_other
    if total <= max_pairs:
        i, j = np.divmod(np.arange(total), n_other)
    else:
        i = rng.integers(0, n_items, size=int(max_pairs * 1.2))
        j = rng.integers(0, n_other, size=len(i))
    keep = group[i] != og[j]
    i, j = i[keep][:max_pairs], j[keep][:max_pairs]
    return i, j


# -- the paper's protocol: prompt-length sweep ----------------------------------------------------


@dataclass
class Example:
    """One training example: its conditioning tokens (MuLan audio tokens M_A) and its semantic tokens."""

    id: str
    cond: np.ndarray
    semantic: np.ndarray


ContinueFn = Callable[[np.ndarray, np.ndarray, int], np.ndarray]


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
        i, j = _negative_pairs(ne, np.arange(ne), per_t, rng)
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


# -- model-agnostic audit -----------------------------------------------------------------------


@dataclass
class AuditResult:
    tau: float
    fpr: float
    exact_rate: float  # fraction of generated clips with an exact window copy
    approx_rate: float  # fraction of generated clips with any match (cost < τ, exact included)
    calibration: Calibration
    matches: list[dict]  # one row per (generated clip, training clip): the best window pair
    n_pairs: int  # window pairs covered (solved or pruned)
    n_solved: int
    n_matched_pairs: int
    best_cost: dict[str, float]  # per generated clip: lowest cost found below τ (inf when none)
    pairs_by_clip: dict[str, tuple[int, int]] = field(default_factory=dict)  # id -> (window pairs, matched pairs)
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"tau": self.tau, "fpr": self.fpr, "exact_rate": self.exact_rate, "approx_rate": self.approx_rate,
                "calibration": self.calibration.to_dict(), "n_pairs": self.n_pairs, "n_solved": self.n_solved,
                "n_matched_pairs": self.n_matched_pairs,
                "matched_pair_rate": self.n_matched_pairs / self.n_pairs if self.n_pairs else 0.0,
                "n_matches": len(self.matches), "pairs_by_clip": {k: list(v) for k, v in self.pairs_by_clip.items()},
                "best_cost": self.best_cost, **self.extra}


def _phases(generated: Mapping[str, np.ndarray | Sequence[np.ndarray]]) -> tuple[dict[str, np.ndarray], dict[str, tuple[str, float]]]:
    """Generated tokens → one sequence per (clip, sub-frame phase); a clip may give a list of phase
    tokenizations (entry p starts p/P of a frame later, see :func:`tokenize_clip`)."""
    seqs, meta = {}, {}
    for cid, v in generated.items():
        ph = list(v) if isinstance(v, (list, tuple)) else [v]
        for p, toks in enumerate(ph):
            key = str(cid) if len(ph) == 1 else f"{cid}#{p}"
            seqs[key] = toks
            meta[key] = (str(cid), p / len(ph))
    return seqs, meta


@dataclass
class PairHits:
    """Matched window pairs (cost < τ) of one shard: generated window index ``g`` (into the shared
    generated :class:`Windows`), training clip id and window offset (tokens), cost, exact flag.

    Shard-independent: training windows are named by (clip id, offset), not by a shard-local index,
    so :func:`merge_hits` of any partition of the training clips gives the same result."""

    g: np.ndarray
    train_id: np.ndarray  # str
    train_offset: np.ndarray
    cost: np.ndarray
    exact: np.ndarray
    n_solved: int = 0
    align: np.ndarray | None = None  # per-frame alignment distance (see :func:`frame_distance`), set by audit_shard

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


def exact_hits(gw: Windows, tw: Windows) -> PairHits:
    """Generated windows identical to a training window (hashing); the earliest training window wins."""
    index: dict[bytes, int] = {}
    for r in range(len(tw) - 1, -1, -1):
        index[tw.tokens[r].tobytes()] = r
    g, t = [], []
    for i in range(len(gw)):
        r = index.get(gw.tokens[i].tobytes())
        if r is not None:
            g.append(i)
            t.append(r)
    t = np.asarray(t, dtype=np.int64)
    return PairHits(np.asarray(g, dtype=np.int64), np.asarray(tw.ids, dtype=object)[tw.clip[t]] if len(t) else np.zeros(0, object),
                    tw.offset[t], np.zeros(len(t)), np.ones(len(t), bool))


def candidate_hits(gw: Windows, tw: Windows, scorer: OTScorer, tau: float, max_candidates: int = 8, block: int = 2048,
                   skip: np.ndarray | None = None) -> PairHits:
    """Lower-bound candidates, confirmed by Sinkhorn: per (generated window, training clip) the
    ``max_candidates`` training windows with the lowest bound below τ. ``skip``: generated windows
    already matched exactly."""
    mg, mt = scorer.mean_embedding(gw.tokens), scorer.mean_embedding(tw.tokens)
    skip_set = np.zeros(len(gw), bool) if skip is None else np.isin(np.arange(len(gw)), skip)
    out, n_solved = [], 0
    step = max(1, block * block // max(1, len(tw)) // 16)
    for s in range(0, len(gw), step):
        gs = np.arange(s, min(len(gw), s + step))
        gs = gs[~skip_set[gs]]
        if len(gs) == 0:
            continue
        d = np.sqrt(np.maximum(((mg[gs, None, :] - mt[None, :, :]) ** 2).sum(-1), 0.0))
        gi, ti = np.nonzero(d < tau)
        if len(gi) == 0:
            continue
        order = np.lexsort((tw.offset[ti], d[gi, ti], tw.clip[ti], gi))
        gi, ti = gi[order], ti[order]
        grp = np.r_[True, (gi[1:] != gi[:-1]) | (tw.clip[ti[1:]] != tw.clip[ti[:-1]])]
        start_of = np.maximum.accumulate(np.where(grp, np.arange(len(gi)), 0))
        keep = (np.arange(len(gi)) - start_of) < max_candidates
        g_idx, t_idx = gs[gi[keep]], ti[keep]
        c = scorer.costs(gw.tokens[g_idx], tw.tokens[t_idx])
        n_solved += len(c)
        hit = c < tau
        out.append(PairHits(g_idx[hit], np.asarray(tw.ids, dtype=object)[tw.clip[t_idx[hit]]], tw.offset[t_idx[hit]],
                            c[hit], np.zeros(int(hit.sum()), bool)))
    res = PairHits.concat(out)
    res.n_solved = n_solved
    return res


def frame_distance(scorer: OTScorer, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean per-frame centroid distance of aligned window pairs [N, W] (cost units): unlike the
    histogram cost it grows with every frame of misalignment, so it pins the lag of a copy."""
    return np.linalg.norm(scorer.centroids[a] - scorer.centroids[b], axis=-1).mean(-1)


def _refine_lag(gw, tw, scorer, gc, tid, lag, t_index, radius) -> int:
    """The lag within ±``radius`` frames of ``lag`` with the smallest summed frame distance over the clip's windows."""
    g_rows = np.flatnonzero(gw.clip == gc)
    best = (math.inf, lag)
    for cand in range(lag - radius, lag + radius + 1):
        pairs = [(g, t_index.get((tid, int(gw.offset[g]) + cand))) for g in g_rows]
        pairs = [(g, r) for g, r in pairs if r is not None]
        if len(pairs) < len(g_rows):
            continue  # compare lags on the same windows only
        gi, ri = np.array(pairs).T
        best = min(best, (float(frame_distance(scorer, gw.tokens[gi], tw.tokens[ri]).mean()), cand))
    return best[1]


def offset_search(gw: Windows, tw: Windows, scorer: OTScorer, tau: float, hits: PairHits, max_lags: int = 8,
                  radius: int = 12) -> PairHits:
    """Offset search: for each (generated clip phase, training clip) and each of its ``max_lags``
    lowest-cost matched lags — plus the lag within ±``radius`` frames of it with the smallest
    :func:`frame_distance` — solve *every* generated window of that clip at that lag.

    Why: the lower bound ranks windows by mean centroid only, so on self-similar music a copy's
    aligned window can fall outside the per-window candidates; a copy, unlike a chance match, matches
    at one consistent lag across its windows, which :func:`merge_hits` then prefers."""
    if len(hits) == 0:
        return PairHits.empty()
    t_index = {(tw.ids[c], int(o)): r for r, (c, o) in enumerate(zip(tw.clip, tw.offset))}
    lags: dict[tuple[int, str], dict[int, float]] = {}
    for g, tid, to, c in zip(hits.g, hits.train_id, hits.train_offset, hits.cost):
        d = lags.setdefault((int(gw.clip[g]), str(tid)), {})
        lag = int(to) - int(gw.offset[g])
        d[lag] = min(d.get(lag, math.inf), float(c))
    done = {(int(g), str(t), int(o)) for g, t, o in zip(hits.g, hits.train_id, hits.train_offset)}
    gs, ts = [], []
    for (gc, tid), d in sorted(lags.items()):
        top = sorted(d, key=lambda k: (d[k], k))[:max_lags]
        for lag in sorted(set(top) | {_refine_lag(gw, tw, scorer, gc, tid, lag, t_index, radius) for lag in top}):
            for g in np.flatnonzero(gw.clip == gc):
                r = t_index.get((tid, int(gw.offset[g]) + lag))
                if r is not None and (int(g), tid, int(gw.offset[g]) + lag) not in done:
                    gs.append(int(g))
                    ts.append(r)
    if not gs:
        return PairHits.empty()
    gs, ts = np.asarray(gs), np.asarray(ts)
    c = scorer.costs(gw.tokens[gs], tw.tokens[ts])
    hit = c < tau
    return PairHits(gs[hit], np.asarray(tw.ids, dtype=object)[tw.clip[ts[hit]]], tw.offset[ts[hit]], c[hit],
                    np.zeros(int(hit.sum()), bool), n_solved=len(c))


def audit_shard(gw: Windows, train: Mapping[str, np.ndarray], scorer: OTScorer, tau: float, window: int = WINDOW_TOKENS,
                train_hop: int = 1, max_candidates: int = 8, max_lags: int = 8) -> PairHits:
    """All matched window pairs between the generated windows and one shard of *whole* training clips."""
    tw = cut_windows(train, window, train_hop)
    ex = exact_hits(gw, tw)
    cand = candidate_hits(gw, tw, scorer, tau, max_candidates, skip=ex.g)
    both = PairHits.concat([ex, cand])
    out = PairHits.concat([both, offset_search(gw, tw, scorer, tau, both, max_lags)])
    t_index = {(tw.ids[c], int(o)): r for r, (c, o) in enumerate(zip(tw.clip, tw.offset))}
    rows = np.array([t_index[(str(t), int(o))] for t, o in zip(out.train_id, out.train_offset)], dtype=np.int64)
    out.align = frame_distance(scorer, gw.tokens[out.g], tw.tokens[rows]) if len(out) else np.zeros(0)
    return out


def calibrate_audit(train: Mapping[str, np.ndarray], scorer: OTScorer, fpr: float = DEFAULT_FPR, window: int = WINDOW_TOKENS,
                    gen_hop: int = 25, train_hop: int = 1, seed: int = 0, max_negatives: int = 100_000) -> Calibration:
    """τ from training windows (hop ``gen_hop``) vs training windows of *other* clips (hop ``train_hop``):
    what a novel clip looks like to the audit."""
    tw = cut_windows(train, window, train_hop)
    probe = cut_windows(train, window, gen_hop)
    i, j = _negative_pairs(len(probe), probe.clip, max_negatives, np.random.default_rng(seed), other=tw.clip)
    return calibrate_tau(scorer, probe.tokens[i], tw.tokens[j], fpr, seed=seed)


def merge_hits(hits: PairHits, gw: Windows, phase_of: Mapping[str, tuple[str, float]], n_train_windows: int,
               n_train: int, cal: Calibration, extra: dict | None = None) -> AuditResult:
    """One row per (generated clip, training clip): the lag (phase + whole frames) with exact pairs
    first, then the most matched generated windows, then the lowest mean :func:`frame_distance` (the
    histogram cost barely changes over a few frames of shift), then the lowest mean cost — reported at
    its lowest-cost window pair. Deterministic for any order of ``hits``."""
    groups: dict[tuple[str, str], dict[tuple[float, int], list]] = {}
    align = hits.align if hits.align is not None else np.zeros(len(hits))
    for g, tid, to, c, ex, al in zip(hits.g, hits.train_id, hits.train_offset, hits.cost, hits.exact, align):
        key = gw.ids[gw.clip[g]]
        cid, phase = phase_of[key]
        lag_key = (phase, int(to) - int(gw.offset[g]))
        groups.setdefault((cid, str(tid)), {}).setdefault(lag_key, []).append(
            (float(c), int(gw.offset[g]), int(to), bool(ex), float(al)))
    matches = []
    for (cid, tid), by_lag in groups.items():
        def rank(item):
            (phase, lag), rows = item
            return (not any(r[3] for r in rows), -len({r[1] for r in rows}), float(np.mean([r[4] for r in rows])),
                    float(np.mean([r[0] for r in rows])), phase, lag)

        (phase, _), rows = min(by_lag.items(), key=rank)
        c, go, to, ex, _ = min(rows, key=lambda r: (not r[3], r[0], r[1]))
        matches.append({"generated_id": cid, "train_id": tid, "gen_offset_s": round((go + phase) / FRAME_RATE, 4),
                        "train_offset_s": round(to / FRAME_RATE, 4), "cost": c, "exact": ex,
                        "n_windows": len({r[1] for r in rows})})
    matches.sort(key=lambda m: (m["generated_id"], m["cost"], m["train_id"]))
    clip_ids = sorted({v[0] for v in phase_of.values()})
    best_cost = {cid: math.inf for cid in clip_ids}
    exact_clips = set()
    for m in matches:
        best_cost[m["generated_id"]] = min(best_cost[m["generated_id"]], m["cost"])
        if m["exact"]:
            exact_clips.add(m["generated_id"])
    n_gen = len(clip_ids)
    win_clip = np.array([phase_of[gw.ids[c]][0] for c in gw.clip], dtype=object)
    hit_clip = win_clip[hits.g] if len(hits) else np.zeros(0, object)
    pairs_by_clip = {cid: (int((win_clip == cid).sum()) * n_train_windows, int((hit_clip == cid).sum())) for cid in clip_ids}
    n_flag = sum(1 for v in best_cost.values() if v < math.inf)
    n_pairs = len(gw) * n_train_windows
    return AuditResult(
        tau=cal.tau, fpr=cal.fpr_heldout, exact_rate=len(exact_clips) / n_gen, approx_rate=n_flag / n_gen,
        calibration=cal, matches=matches, n_pairs=n_pairs, n_solved=hits.n_solved + cal.n_solved,
        n_matched_pairs=len(hits), best_cost=best_cost, pairs_by_clip=pairs_by_clip,
        extra={"n_generated": n_gen, "n_train": n_train, "n_generated_windows": len(gw), "n_train_windows": n_train_windows,
               "exact_ci95": list(wilson_ci(len(exact_clips), n_gen)), "approx_ci95": list(wilson_ci(n_flag, n_gen)),
               "expected_false_pairs": n_pairs * cal.fpr_target, **(extra or {})})


def audit(generated: Mapping[str, np.ndarray | Sequence[np.ndarray]], train: Mapping[str, np.ndarray], centroids: np.ndarray,
          fpr: float = DEFAULT_FPR, window: int = WINDOW_TOKENS, gen_hop: int = 25, train_hop: int = 1,
          eps: float = DEFAULT_EPS, seed: int = 0, max_negatives: int = 100_000, device: str = "cpu",
          tau: float | None = None, max_candidates: int = 8, max_lags: int = 8) -> AuditResult:
    """Which generated clips copy a training clip, where, and how closely.

    ``generated[id]`` is a token sequence or a list of sub-frame phase tokenizations (see
    :func:`tokenize_clip`). Windows: generated every ``gen_hop`` tokens, training every ``train_hop``.
    Steps (each a public function, so an engine can run them per shard of training clips):
    :func:`calibrate_audit` (τ) → per shard :func:`audit_shard` (:func:`exact_hits` by hashing,
    :func:`candidate_hits` by the lower bound + Sinkhorn, :func:`offset_search`) → :func:`merge_hits`.
    """
    vocab = len(np.asarray(centroids))
    first = {cid: (v[0] if isinstance(v, (list, tuple)) and v else v) for cid, v in generated.items()}
    check_tokens(first, vocab, "generated", window)  # errors name the clip, not its phase
    seqs, phase_of = _phases(generated)
    gen = check_tokens(seqs, vocab, "generated", window)
    trn = check_tokens(train, vocab, "train", window)
    scorer = OTScorer(centroids, eps=eps, device=device)
    if tau is None:
        cal = calibrate_audit(trn, scorer, fpr, window, gen_hop, train_hop, seed, max_negatives)
    else:
        cal = Calibration(float(tau), fpr, float("nan"), float("nan"), (0.0, 1.0), 0, 0, float("nan"), False, 0)
    gw = cut_windows(gen, window, gen_hop)
    hits = audit_shard(gw, trn, scorer, cal.tau, window, train_hop, max_candidates, max_lags)
    n_tw = len(cut_windows(trn, window, train_hop))
    return merge_hits(hits, gw, phase_of, n_tw, len(trn), cal,
                      extra={"window_s": window / FRAME_RATE, "gen_hop_s": gen_hop / FRAME_RATE,
                             "train_hop_s": train_hop / FRAME_RATE, "eps": eps, "cost_scale": scorer.scale,
                             "phases": max(1, len(seqs) // max(1, len({v[0] for v in phase_of.values()})))})


# -- audio in, files out ------------------------------------------------------------------------


@dataclass(frozen=True)
class LevelConfig:
    """Loudness normalization applied to every clip (generated and training) before tokenizing.

    ``mode``: ``agc`` divides each sample by the RMS of the ``window_s`` around it (short-term level),
    ``rms`` by the whole clip's RMS, ``none`` leaves the audio as is; the level is brought to
    ``ref_dbfs``. Why ``agc``: a copy is usually an excerpt, whose whole-clip RMS differs from its
    source's, while the short-term level inside the excerpt is exactly the source's times the gain —
    so a gain change cancels exactly, away from the excerpt's first/last ``window_s / 2``. Why a low
    ``ref_dbfs`` (−50): the reference log-mel tokenizer floors band energies at 1e-5, so quiet detail
    more than ~50 dB below the short-term level (a 40 dB-SNR noise floor, reverb tails) sinks under
    that floor instead of moving tokens. ``floor_db``: short-term levels more than this far below the
    clip RMS are not amplified (silence stays silence)."""

    mode: str = "agc"
    ref_dbfs: float = -50.0
    window_s: float = 1.0
    floor_db: float = 60.0

    def __post_init__(self):
        if self.mode not in ("agc", "rms", "none"):
            raise MemorizationError(f"level mode must be agc, rms or none, got {self.mode!r}")
        if self.window_s <= 0:
            raise MemorizationError(f"level window must be > 0 s, got {self.window_s}")


def normalize_level(wave: np.ndarray, sr: int, level: LevelConfig = LevelConfig()) -> np.ndarray:
    """Apply :class:`LevelConfig` to a mono float wave (float32 out)."""
    w = np.asarray(wave, dtype=np.float64)
    if level.mode == "none" or len(w) == 0:
        return w.astype(np.float32)
    ref = 10 ** (level.ref_dbfs / 20)
    clip_ms = float(np.mean(w * w))
    if clip_ms <= 0:
        return w.astype(np.float32)  # digital silence: nothing to normalize
    floor = clip_ms * 10 ** (-level.floor_db / 10)
    if level.mode == "rms":
        return (w * ref / math.sqrt(clip_ms)).astype(np.float32)
    half = max(1, int(round(level.window_s * sr / 2)))
    cs = np.concatenate([[0.0], np.cumsum(w * w)])
    i = np.arange(len(w))
    lo, hi = np.clip(i - half, 0, len(w)), np.clip(i + half + 1, 0, len(w))
    ms = (cs[hi] - cs[lo]) / (hi - lo)
    return (w * ref / np.sqrt(np.maximum(ms, floor))).astype(np.float32)


def tokenize_clip(wave: np.ndarray, sr: int, tokenizer: Tokenizer, level: LevelConfig = LevelConfig(),
                  phases: int = 1) -> np.ndarray | list[np.ndarray]:
    """Level-normalized tokens of one clip; with ``phases`` P > 1, P tokenizations, the p-th starting
    p/P of a token frame later (offset search below one frame: a copy cut at a fractional frame is
    matched at the nearest phase, within 1/(2P) frame, instead of straddling two frames)."""
    if phases < 1:
        raise MemorizationError(f"phases must be >= 1, got {phases}")
    w = normalize_level(wave, sr, level)
    if phases == 1:
        return np.asarray(tokenizer.tokenize(w, sr), dtype=np.int64)
    frame = sr / int(tokenizer.frame_rate)
    return [np.asarray(tokenizer.tokenize(w[int(round(p * frame / phases)):], sr), dtype=np.int64) for p in range(phases)]


def tokenize_dir(directory: str | Path, tokenizer: Tokenizer, on_error: str = "raise", level: LevelConfig = LevelConfig(),
                 phases: int = 1) -> tuple[dict[str, np.ndarray | list[np.ndarray]], list[str]]:
    """Tokenize every clip of a folder (decoded by ``metrics.audio.load_dir``); returns tokens by id and skip notes."""
    from metrics.audio import load_dir

    report = load_dir(directory, on_error=on_error)
    if not report.clips:
        raise MemorizationError(f"{directory}: no usable audio clips" +
                                (f" ({len(report.skipped)} skipped)" if report.skipped else ""))
    toks = {c.id: tokenize_clip(c.wave, c.sr, tokenizer, level, phases) for c in report.clips}
    return toks, [f"{s.path}: {s.reason}" for s in report.skipped]


MATCH_COLUMNS = ["generated_id", "train_id", "gen_offset_s", "train_offset_s", "cost", "exact"]


def write_outputs(out_dir: str | Path, summary: dict, matches: Sequence[dict], plot: Callable[[Path], None]) -> dict[str, Path]:
    """``memorization.json``, ``matches.csv`` and the PNG, written to ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "memorization.json", "csv": out / "matches.csv"}
    paths["json"].write_text(json.dumps(_jsonable(summary), indent=2, allow_nan=False) + "\n")
    extra_cols = sorted({k for m in matches for k in m} - set(MATCH_COLUMNS))
    with paths["csv"].open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=MATCH_COLUMNS + extra_cols)
        w.writeheader()
        for m in matches:
            w.writerow(m)
    paths["png"] = plot(out)
    return paths


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def plot_match_rate(result: SweepResult, out_dir: Path) -> Path:
    """The paper's Figure 3: exact and approximate match rate vs prompt length, with Wilson 95% CIs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [r["prompt_s"] for r in result.rows]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for key, label in (("exact", "exact"), ("approx", f"approximate (τ={result.tau:.3g})")):
        y = np.array([r[f"{key}_rate"] for r in result.rows])
        ci = np.array([r[f"{key}_ci95"] for r in result.rows])
        ax.errorbar(x, y, yerr=[y - ci[:, 0], ci[:, 1] - y], marker="o", capsize=3, label=label)
    ax.set_xlabel("semantic prompt length (s)")
    ax.set_ylabel("fraction of matches")
    ax.set_ylim(bottom=0)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(out_dir) / "match_rate.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_audit(result: AuditResult, out_dir: Path) -> Path:
    """Per generated clip: best match cost (capped display for 'no match'), with τ."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ids = sorted(result.best_cost)
    vals = np.array([result.best_cost[i] for i in ids])
    fig, ax = plt.subplots(figsize=(max(4, 0.25 * len(ids) + 2), 3.5))
    shown = np.where(np.isfinite(vals), vals, result.tau * 1.5 if result.tau > 0 else 1.0)
    colors = ["tab:red" if np.isfinite(v) else "tab:gray" for v in vals]
    ax.bar(range(len(ids)), shown, color=colors)
    ax.axhline(result.tau, color="k", ls="--", label=f"τ = {result.tau:.3g}")
    ax.set_xticks(range(len(ids)), ids if len(ids) <= 40 else [""] * len(ids), rotation=90, fontsize=6)
    ax.set_ylabel("best match cost (gray: none < τ)")
    ax.set_title(f"matched {result.approx_rate:.0%} of generated clips")
    ax.legend()
    fig.tight_layout()
    path = Path(out_dir) / "match_rate.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
