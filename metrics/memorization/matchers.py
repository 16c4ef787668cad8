"""The two matchers the audit runs side by side, behind one small interface.

* :class:`OTScorer` (``semantic-ot``) — the paper's criterion on semantic tokens: exact window
  copies by hashing, otherwise the optimal-transport cost between the windows' token histograms
  (batched Sinkhorn, :mod:`metrics.sinkhorn`). Its *bound* is the distance between the windows'
  mean centroids: the ground cost is the Euclidean distance between centroids, so for any transport
  plan the cost is ≥ ‖Σ a_i c_i − Σ b_j c_j‖ (Jensen); pairs whose bound is ≥ τ can never match
  and are not solved (exact pruning, not a heuristic).
* :class:`EmbeddingMatcher` (``embedding-<name>``) — any registered embedder: cosine distance
  1 − cos between the unit-normalized mean embeddings of two windows. Its bound *is* its cost.

Every matcher gives: ``check`` (validate sequences), ``windows`` (cut + ``vec``), ``bound`` (a
block ``[n, m]`` ≤ cost), ``pair_costs`` (aligned pairs), ``align`` (per-frame distance, to pin a
copy's lag) and ``slack`` (numerical margin added to every pruning threshold, so float32 bounds
and Sinkhorn's marginal tolerance can never prune a pair that brute force would keep).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from metrics.memorization.registry import FRAME_RATE, WINDOW_TOKENS, MemorizationError
from metrics.memorization.windows import Windows, check_frames, check_tokens, cut_windows
from metrics.sinkhorn import DEFAULT_EPS, DEFAULT_TOL, ground_cost, sinkhorn_pairs, sparse_from_tokens

POOLINGS = ("centred", "frames", "mean")  # EmbeddingMatcher window representations (see its docstring)
DEFAULT_POOLING = "centred"
MIN_ENTROPY_BITS = 1.0  # query windows below this token entropy are not compared (see OTScorer.informative)


def _sq_dist_block(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """‖a_i − b_j‖ for blocks (float32 GEMM: the bound scan is the audit's only O(N·M) step)."""
    a32, b32 = a.astype(np.float32, copy=False), b.astype(np.float32, copy=False)
    d = (a32 * a32).sum(1)[:, None] + (b32 * b32).sum(1)[None, :] - 2.0 * (a32 @ b32.T)
    return np.sqrt(np.maximum(d, 0.0, out=d), out=d)


class OTScorer:
    """Histogram OT between token windows with one tokenizer's centroids (the ``semantic-ot`` matcher).

    Histograms are token counts / window length (mass 1). Ground cost = Euclidean distance between
    the centroids of the tokens present, divided by the mean off-diagonal centroid distance of the
    whole vocabulary (one constant per tokenizer, so ε and τ are in comparable units).
    """

    name = "semantic-ot"
    exact_by_hash = True

    def __init__(self, centroids: np.ndarray, vocab_size: int | None = None, eps: float = DEFAULT_EPS, device: str = "cpu",
                 chunk: int | None = None, frame_rate: float = FRAME_RATE, min_entropy_bits: float = MIN_ENTROPY_BITS):
        c = np.asarray(centroids, dtype=np.float64)
        if vocab_size is not None and (c.ndim != 2 or c.shape[0] != vocab_size):
            raise MemorizationError(f"vocabulary mismatch: vocab_size={vocab_size} but centroids have shape {c.shape}")
        self.cost, self.scale = ground_cost(c)
        self.centroids = c / self.scale  # so mean-embedding distances are in cost units
        self.vocab_size = len(c)
        self.eps, self.device, self.chunk = eps, device, chunk
        self.min_entropy_bits = float(min_entropy_bits)
        self.frame_rate = float(frame_rate)
        self.default_window = WINDOW_TOKENS
        # Sinkhorn's plan meets its marginals to DEFAULT_TOL (L1), so its cost may undercut the bound by
        # ≤ tol · max cost; float32 distances add ~1e-5. Pruning keeps every pair with bound < τ + slack.
        self.slack = float(DEFAULT_TOL * self.cost.max() + 1e-4)
        self._cost32 = self.cost.astype(np.float32)

    def config(self) -> dict:
        return {"matcher": self.name, "eps": self.eps, "cost_scale": self.scale, "vocab_size": self.vocab_size,
                "frame_rate": self.frame_rate, "min_entropy_bits": self.min_entropy_bits}

    def informative(self, w: Windows) -> np.ndarray:
        """Query windows that can carry evidence: token entropy ≥ ``min_entropy_bits``. A window of (nearly)
        one token — silence, a held chord to a coarse tokenizer — has the same histogram as any other such
        window and would match it, exactly or approximately, whatever the music around it."""
        if self.min_entropy_bits <= 0 or w.tokens is None or not len(w):
            return np.ones(len(w), bool)
        h = sparse_from_tokens(w.tokens, self.vocab_size).w
        ent = -(h * np.log2(np.where(h > 0, h, 1.0))).sum(1)
        return ent >= self.min_entropy_bits

    def check(self, seqs: Mapping[str, np.ndarray], what: str, min_len: int) -> dict[str, np.ndarray]:
        return check_tokens(seqs, self.vocab_size, what, min_len)

    def windows(self, seqs: Mapping[str, np.ndarray], window: int, hop: int) -> Windows:
        return cut_windows(seqs, window, hop, frames={k: self.centroids[np.asarray(s)] for k, s in seqs.items()})

    def mean_embedding(self, tokens: np.ndarray) -> np.ndarray:
        """Mean scaled centroid of each window [N, W] → [N, D]."""
        return self.centroids[np.asarray(tokens)].mean(1)

    def lower_bound(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Aligned token windows: ‖mean_a − mean_b‖ ≤ OT cost (exact pruning bound, see module docstring)."""
        return np.linalg.norm(self.mean_embedding(a) - self.mean_embedding(b), axis=1)

    def bound(self, a_vec: np.ndarray, b_vec: np.ndarray) -> np.ndarray:
        return _sq_dist_block(a_vec, b_vec)

    def costs(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Sinkhorn cost for aligned pairs of token windows ``a[i]``, ``b[i]`` (``a`` may be one window)."""
        if len(b) == 0:
            return np.zeros(0)
        ha = sparse_from_tokens(np.atleast_2d(a), self.vocab_size)
        hb = sparse_from_tokens(np.atleast_2d(b), self.vocab_size)
        return sinkhorn_pairs(ha, hb, self.cost, eps=self.eps, device=self.device, chunk=self.chunk)

    def pair_costs(self, gw: Windows, gi: np.ndarray, tw: Windows, ti: np.ndarray) -> np.ndarray:
        return self.costs(gw.tokens[gi], tw.tokens[ti])

    def tighter_bound(self, gw: Windows, gi: np.ndarray, tw: Windows, ti: np.ndarray, chunk: int = 512) -> np.ndarray:
        """Relaxed OT bound for aligned pairs (Kusner et al. 2015, "relaxed WMD"): drop one marginal
        constraint and each bin ships all its mass to the nearest bin of the other support, so
        max(Σ_i a_i min_j C_ij, Σ_j b_j min_i C_ij) ≤ exact OT ≤ the Sinkhorn cost. Tighter than the
        centroid distance, and O(S_a·S_b) per pair instead of hundreds of Sinkhorn iterations."""
        out = np.empty(len(gi))
        for s in range(0, len(gi), chunk):
            ha = sparse_from_tokens(gw.tokens[gi[s : s + chunk]], self.vocab_size)
            hb = sparse_from_tokens(tw.tokens[ti[s : s + chunk]], self.vocab_size)
            c = self._cost32[ha.ids[:, :, None], hb.ids[:, None, :]]
            c[np.broadcast_to((hb.w == 0)[:, None, :], c.shape)] = np.inf
            ab = (ha.w * np.where(ha.w > 0, c.min(2), 0.0)).sum(1)
            c[np.broadcast_to((hb.w == 0)[:, None, :], c.shape)] = 0.0
            c[np.broadcast_to((ha.w == 0)[:, :, None], c.shape)] = np.inf
            ba = (hb.w * np.where(hb.w > 0, c.min(1), 0.0)).sum(1)
            out[s : s + chunk] = np.maximum(ab, ba)
        return out

    def align(self, gw: Windows, gi: np.ndarray, tw: Windows, ti: np.ndarray) -> np.ndarray:
        return frame_distance(self, gw.tokens[gi], tw.tokens[ti])


def frame_distance(scorer: OTScorer, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean per-frame centroid distance of aligned window pairs [N, W] (cost units): unlike the
    histogram cost it grows with every frame of misalignment, so it pins the lag of a copy."""
    return np.linalg.norm(scorer.centroids[a] - scorer.centroids[b], axis=-1).mean(-1)


class EmbeddingMatcher:
    """Cosine distance between windows of embedding frames (``embedding-<name>``).

    Sequences are ``[frames, dim]`` embeddings at ``frame_rate`` frames per second (any registered
    embedder's output); a 5 s window is ``round(5 · frame_rate)`` frames. ``pooling``:

    * ``centred`` (default) — per-window mean normalization: each dimension's mean over the window's
      W frames is subtracted (cepstral mean normalization, Atal 1974, applied per window), and the
      centred ``[W, dim]`` block, flattened, is scaled to unit norm; 1 − ⟨u, v⟩ is one minus the
      correlation of the two windows' spectro-temporal courses. Why: in log-spectral features a gain
      change and a stationary noise floor are (nearly) a per-band constant over a few seconds, which
      this removes exactly or largely, while a band the noise swamps becomes flat and so contributes
      ~0 instead of a large common offset. Measured on the real-music set (docs/protocol.md): 20 dB-SNR
      copies keep costs ≤ 0.12 against null minima ≥ 0.3, where ``frames`` lets them reach 0.7.
    * ``frames`` — the window vector is its unit-norm frames (after centring on the training set's
      mean frame, :meth:`fit`), concatenated and divided by √W, so 1 − ⟨u, v⟩ is the mean per-frame
      cosine distance of the two aligned frame sequences (the previous default).
    * ``mean`` — the unit-norm mean embedding of the window (cheaper, shift-tolerant, far less specific:
      mean-pooled windows of two orchestral pieces are within ~0.001 of each other).

    The bound is the cost itself, so the blockwise scan is the whole (exact) search."""

    exact_by_hash = False
    center: np.ndarray | None = None

    def __init__(self, name: str, frame_rate: float, dim: int | None = None, window_s: float = 5.0,
                 pooling: str = DEFAULT_POOLING):
        if not frame_rate > 0:
            raise MemorizationError(f"embedding matcher {name!r}: frame rate must be > 0, got {frame_rate}")
        if pooling not in POOLINGS:
            raise MemorizationError(f"embedding matcher pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
        self.name = f"embedding-{name}"
        self.frame_rate = float(frame_rate)
        self.dim = dim
        self.pooling = pooling
        self.default_window = max(1, int(round(window_s * self.frame_rate)))
        self.slack = 1e-5  # float32 dot products

    def config(self) -> dict:
        return {"matcher": self.name, "frame_rate": self.frame_rate, "dim": self.dim, "pooling": self.pooling,
                "centred": self.center is not None}

    def shard_frames(self, window: int, budget_bytes: float = 256e6) -> int:
        """Training frames per shard so that one shard's window vectors (float32) stay within ``budget_bytes``."""
        per = 4 * (self.dim or 1) * (1 if self.pooling == "mean" else window)
        return max(window + 1, int(budget_bytes // per))

    def check(self, seqs: Mapping[str, np.ndarray], what: str, min_len: int) -> dict[str, np.ndarray]:
        out = check_frames(seqs, self.dim, what, min_len, self.frame_rate)
        self.dim = next(iter(out.values())).shape[1]
        return out

    def fit(self, train: Mapping[str, np.ndarray]) -> None:
        """Centre on the mean training frame (from the training set only, so no null or generated clip leaks in)."""
        n = sum(len(v) for v in train.values())
        self.center = sum(np.asarray(v, np.float64).sum(0) for v in train.values()) / max(n, 1)

    def _centred(self, f) -> np.ndarray:
        f = np.asarray(f, dtype=np.float64)
        return f - self.center if self.center is not None else f

    def windows(self, seqs: Mapping[str, np.ndarray], window: int, hop: int) -> Windows:
        seqs = {k: self._centred(v) for k, v in seqs.items()}
        if self.pooling == "mean":
            w = cut_windows(seqs, window, hop, frames=seqs)
            w.vec = w.vec / np.maximum(np.linalg.norm(w.vec, axis=1, keepdims=True), 1e-12)
            return w
        if self.pooling == "centred" and window < 2:
            raise MemorizationError(f"{self.name}: centred pooling needs windows of >= 2 frames, got {window} "
                                    f"({window / self.frame_rate:g} s at {self.frame_rate:g} frames/s)")
        w = cut_windows(seqs, window, hop)
        vecs = []
        for i, cid in enumerate(w.ids):
            f = seqs[cid]
            if self.pooling == "frames":
                f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
            win = np.lib.stride_tricks.sliding_window_view(f, window, axis=0)[w.offset[w.clip == i]]  # [n, dim, W]
            if self.pooling == "centred":
                win = win - win.mean(-1, keepdims=True)
                v = win.transpose(0, 2, 1).reshape(len(win), -1)
                v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)  # a flat window: 0, cost 1
                vecs.append(v.astype(np.float32))
                continue
            vecs.append(np.ascontiguousarray(win.transpose(0, 2, 1)).reshape(len(win), -1).astype(np.float32) / np.sqrt(window))
        w.vec = np.concatenate(vecs)
        return w

    def bound(self, a_vec: np.ndarray, b_vec: np.ndarray) -> np.ndarray:
        return 1.0 - a_vec.astype(np.float32, copy=False) @ b_vec.astype(np.float32, copy=False).T

    def pair_costs(self, gw: Windows, gi: np.ndarray, tw: Windows, ti: np.ndarray) -> np.ndarray:
        a, b = gw.vec[gi].astype(np.float64), tw.vec[ti].astype(np.float64)
        return np.maximum(1.0 - (a * b).sum(1), 0.0)

    def align(self, gw: Windows, gi: np.ndarray, tw: Windows, ti: np.ndarray) -> np.ndarray:
        return self.pair_costs(gw, gi, tw, ti)


def embedder_frame_rate(embedder) -> float:
    """Frames per second of an embedder, measured: frames of 12 s minus frames of 8 s, over 4 s.

    Why measured: the :class:`metrics.embedders.Embedder` protocol has no hop attribute, and every
    embedder (mel, VGGish, TRILL, torch checkpoints) emits frames at a fixed hop."""
    sr = int(embedder.sample_rate)
    rng = np.random.default_rng(0)
    n = [len(embedder.embed(rng.normal(0, 0.1, int(s * sr)).astype(np.float32))) for s in (8.0, 12.0)]
    if n[1] <= n[0]:
        raise MemorizationError(f"embedder {getattr(embedder, 'name', embedder)!r}: frame count does not grow with "
                                "duration; cannot window it")
    return (n[1] - n[0]) / 4.0
