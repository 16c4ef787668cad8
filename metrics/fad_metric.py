"""FAD as a ``Metric``: per-clip frame embeddings of both sides in, FAD (+ FAD∞, per-clip FAD, 95% CI) out.

The math lives in ``metrics.fad`` (Fréchet distance, mergeable ``EmbeddingStats``, FAD∞); this file
is the state the evaluation pipeline fills. The state keeps each clip's frames (small: O(clips ×
frames × dim)) because an honest interval resamples *clips of both sides*
(``metrics.intervals``). For speed, a resample's mean and covariance are weighted sums of per-clip
frame counts, sums and Gram matrices (``value_on_counts``) instead of re-stacking frames; the
point value itself folds the frames in id order exactly as ``musiclm-eval stats`` does.

A reference given as fixed statistics (a ``stats`` ``.npz``) has no clips: then only the generated
side is resampled, and ``extra["reference_resampled"]`` says so.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from metrics.embedders import Embedder
from metrics.extract import preprocessing_key
from metrics.fad import EmbeddingStats, FADError, fad, fad_inf, frechet_distance, per_clip_fad
from metrics.metric import PerClipOutputs
from metrics.result import MetricResult

GRAM_BYTES = 1 << 28  # per side (256 MiB); above it the Grams are rebuilt from the frames, a chunk of clips at a time
CHUNK_BYTES = 1 << 24  # such a chunk's Grams (16 MiB: stays near the cache; larger chunks were slower)


class FAD(PerClipOutputs):
    """Fréchet Audio Distance between the reference and generated clips' frame embeddings."""

    name = "fad"
    output = "embedding"
    higher_is_better = False  # a distance between the two sides' embedding statistics
    bounds = (0.0, None)

    def __init__(self, embedder_id: str = "", inf: bool = False, reference_stats: EmbeddingStats | None = None,
                 n_boot: int = 1000, seed: int = 0):
        self.embedder_id, self.inf, self.reference_stats = embedder_id, inf, reference_stats
        super().__init__(n_boot=n_boot, seed=seed)

    def config(self) -> dict:
        return {"embedder": self.embedder_id, "inf": self.inf, "fixed_reference": self.reference_stats is not None}

    def reset(self) -> None:
        super().reset()
        self._moments: dict[str, tuple] = {}

    def update(self, side: str, outputs) -> None:
        super().update(side, outputs)
        self._moments.pop(side, None)

    # -- statistics -----------------------------------------------------------------------------
    def stats(self, side: str) -> EmbeddingStats:
        """Exact statistics of one side (frames folded in id order), or the fixed reference statistics."""
        if side == "reference" and self.reference_stats is not None:
            return self.reference_stats
        arrays = self.outputs[side]
        if not arrays:
            raise FADError(f"{side}: no embeddings (empty set of clips)")
        s = EmbeddingStats(embedder=self.embedder_id)
        for cid in sorted(arrays):
            s.update(arrays[cid])
        return s

    def ids(self, side: str) -> list[str]:
        if side == "reference" and self.reference_stats is not None:
            return []
        return super().ids(side)

    def _side_moments(self, side: str) -> tuple:
        """(ids, frames per clip, per-clip sums [n, d], per-clip Grams [n, d, d] — or, for large sets, the
        stacked frames [F, d] and each clip's first row in them) in float64."""
        if side not in self._moments:
            ids = self.ids(side)
            arrays = [np.asarray(self.outputs[side][i], dtype=np.float64) for i in ids]
            d = arrays[0].shape[1]
            counts = np.array([len(a) for a in arrays], dtype=np.float64)
            sums = np.stack([a.sum(0) for a in arrays])
            if len(ids) * d * d * 8 <= GRAM_BYTES:
                grams, frames, starts = np.stack([a.T @ a for a in arrays]), None, None
            else:  # MusicCaps-size sets: per-clip Grams would need clips × d² floats; frames are clips × frames × d
                grams, frames = None, np.concatenate(arrays)
                starts = np.concatenate([[0], np.cumsum(counts.astype(np.int64))])
            self._moments[side] = (ids, counts, sums, grams, frames, starts)
        return self._moments[side]

    def _mean_covs(self, side: str, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Means [B, d] and (ddof=1) covariances [B, d, d] of the frames of clips drawn ``weights[b, i]`` times.

        With per-clip Grams, a block of resamples is one GEMM ([B, clips] @ [clips, d²]) that reads the
        Grams once per block, instead of once per resample. Sets too large to keep the Grams rebuild
        them from the frames for each call, a chunk of clips (≤ GRAM_BYTES) at a time: one frames × d²
        pass per block of resamples plus clips × d² per resample, instead of frames × d² per resample
        (about frames-per-clip times fewer operations; the same sums in another order)."""
        _, counts, sums, grams, frames, starts = self._side_moments(side)
        w = np.asarray(weights, dtype=np.float64)
        n = w @ counts
        if (n < 2).any():  # callers drop such rows first (value_on_counts); a direct call is an error
            raise FADError(f"{side}: a resample with {n.min():.0f} frame(s) has no covariance")
        mean = (w @ sums) / n[:, None]
        d = sums.shape[1]
        if grams is not None:
            second = (w @ grams.reshape(len(grams), d * d)).reshape(len(w), d, d)
        else:
            second = np.zeros((len(w), d * d))
            step = max(1, min(GRAM_BYTES, CHUNK_BYTES) // (d * d * 8))
            chunk = np.empty((step, d, d))  # one buffer, reused: no page faults for a fresh array per chunk
            for a in range(0, len(counts), step):
                b = min(a + step, len(counts))
                for j, i in enumerate(range(a, b)):
                    f = frames[starts[i]:starts[i + 1]]
                    np.matmul(f.T, f, out=chunk[j])
                second += w[:, a:b] @ chunk[:b - a].reshape(b - a, d * d)
            second = second.reshape(len(w), d, d)
        cov = (second - n[:, None, None] * mean[:, :, None] * mean[:, None, :]) / (n - 1)[:, None, None]
        return mean, cov

    def value_on_counts(self, ref_counts: np.ndarray, gen_counts: np.ndarray, block: int = 64) -> np.ndarray:
        """FAD on each row of clip counts (rows aligned with ``ids(side)``); the resampling fast path."""
        gen_counts = np.asarray(gen_counts, dtype=np.float64)
        ref_counts = np.asarray(ref_counts, dtype=np.float64)
        fixed = self.reference_stats
        # a resample of fewer than 2 frames on a side has no covariance: NaN, which the intervals drop
        ok = gen_counts @ self._side_moments("generated")[1] >= 2
        if fixed is None:
            ok &= ref_counts @ self._side_moments("reference")[1] >= 2
        out = np.full(len(gen_counts), np.nan)
        rows_ok = np.flatnonzero(ok)
        for start in range(0, len(rows_ok), block):
            rows = rows_ok[start:start + block]
            mu_g, cov_g = self._mean_covs("generated", gen_counts[rows])
            if fixed is None:
                mu_r, cov_r = self._mean_covs("reference", ref_counts[rows])
            for j, row in enumerate(rows):
                if fixed is not None:
                    out[row] = frechet_distance(fixed.mean, fixed.cov, mu_g[j], cov_g[j])
                else:
                    out[row] = frechet_distance(mu_r[j], cov_r[j], mu_g[j], cov_g[j])
        return out

    def value_on(self, ref_ids: Sequence[str], gen_ids: Sequence[str]) -> float:
        def counts(side: str, ids: Sequence[str]) -> np.ndarray:
            c = Counter(ids)
            return np.array([[c.get(i, 0) for i in self.ids(side)]], dtype=np.float64)

        return float(self.value_on_counts(counts("reference", ref_ids), counts("generated", gen_ids))[0])

    # -- result ---------------------------------------------------------------------------------
    def compute(self) -> MetricResult:
        ref, gen = self.stats("reference"), self.stats("generated")
        res = fad(ref, gen, name=self.name)
        extra = {**res.extra, "reference_resampled": self.reference_stats is None}
        if self.inf:
            extra["fad_inf"], extra["fad_inf_r2"] = fad_inf(ref, self.outputs["generated"], seed=self.seed)
        per = per_clip_fad(ref, dict(sorted(self.outputs["generated"].items())))
        return self.result(res.value, per, extra)


def load_reference_stats(path: Path, embedder: Embedder) -> EmbeddingStats:
    """A ``stats`` ``.npz`` as a FAD reference, checked against the embedder and pre-processing of this run."""
    s = EmbeddingStats.load(path)
    if s.embedder != embedder.id:
        raise FADError(f"{path}: statistics were computed with embedder {s.embedder or '(unknown)'!r}, but this run "
                       f"uses {embedder.id!r}; recompute them with `musiclm-eval stats --embedder {embedder.name}`")
    pre = s.config.get("preprocessing")
    if pre is not None and pre != preprocessing_key(embedder):
        raise FADError(f"{path}: statistics used pre-processing {pre!r}, this run uses {preprocessing_key(embedder)!r}")
    return s
