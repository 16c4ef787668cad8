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
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import numpy as np

from metrics.embedders import Embedder
from metrics.extract import preprocessing_key
from metrics.fad import EmbeddingStats, FADError, fad, fad_inf, frechet_distance, per_clip_fad
from metrics.metric import PerClipOutputs
from metrics.result import MetricResult

GRAM_BYTES = 1 << 28  # per side (256 MiB); above it the Grams are rebuilt from the frames, a chunk of clips at a time
CHUNK_BYTES = 1 << 24  # such a chunk's Grams (16 MiB: stays near the cache; larger chunks were slower)
EPS = np.finfo(np.float64).eps


def _frechet_rows(mu_r: np.ndarray, tr_r: np.ndarray, mu_g: np.ndarray, tr_g: np.ndarray, inner: np.ndarray, d: int,
                  failed: np.ndarray, exact: Callable[[int], float]) -> np.ndarray:
    """``frechet_distance`` of each row from the means, the covariance traces and ``inner``, a matrix with the
    nonzero eigenvalues of Σ_r Σ_g (Wᵀ Σ_g W for a factor Σ_r = W Wᵀ, or (A_g W)ᵀ(A_g W) for Σ_g = A_gᵀ A_g).

    tr (Σ_r^½ Σ_g Σ_r^½)^½ = Σ √λ(inner): all rows in one batched ``eigvalsh``. Rounding noise is zeroed
    as ``metrics.fad`` does (eigenvalues ≤ d·ε·max), so the values equal ``frechet_distance``'s to
    rounding. A row that ``frechet_distance`` would treat otherwise (a flagged factor, a clearly
    negative eigenvalue, a clearly negative value) comes from ``exact(row)``, which calls it and so
    gives its result or raises its error."""
    eig = np.linalg.eigvalsh(inner)
    top = np.abs(eig).max(axis=1, initial=0.0)
    bad = failed | (eig.min(axis=1, initial=0.0) < -1e-8 * top)
    root = np.sqrt(np.where(eig > d * EPS * top[:, None], eig, 0.0)).sum(axis=1)
    diff = mu_r - mu_g
    scale = (diff * diff).sum(axis=1) + tr_r + tr_g
    value = scale - 2.0 * root
    bad |= value < -1e-9 * np.maximum(scale, 1e-300)
    value = np.maximum(value, 0.0)
    for row in np.flatnonzero(bad):
        value[row] = exact(int(row))
    return value


class FAD(PerClipOutputs):
    """Fréchet Audio Distance between the reference and generated clips' frame embeddings."""

    name = "fad"
    output = "embedding"
    higher_is_better = False  # a distance between the two sides' embedding statistics
    # its 1/n bias is ≈5 standard errors at 30 clips: the jackknife estimates it, the bootstrap over-spreads
    interval_method = "jackknife"
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

    def value_on_counts(self, ref_counts: np.ndarray, gen_counts: np.ndarray) -> np.ndarray:
        """FAD on each row of clip counts (rows aligned with ``ids(side)``); the resampling fast path."""
        return self.values_shared([(self, ref_counts, gen_counts, None)])[0]

    def _reference_key(self) -> tuple:
        """Which reference side this is: the same clips' arrays (or fixed statistics) give the same resamples."""
        if self.reference_stats is not None:
            return ("fixed", id(self.reference_stats))
        ref = self.outputs["reference"]
        return ("clips", tuple((cid, id(ref[cid])) for cid in sorted(ref)))

    def _small_frames(self, side: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(stacked frames [F, d], each frame's clip index) when the side has F ≤ d frames, else None."""
        ids, counts, sums, *_ = self._side_moments(side)
        if counts.sum() > sums.shape[1]:
            return None
        x = np.concatenate([np.asarray(self.outputs[side][i], np.float64) for i in ids])
        return x, np.repeat(np.arange(len(ids)), counts.astype(np.int64))

    def _resampled(self, side: str, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
        """(means [B, d], covariance traces [B], A [B, F, d] with Σ = AᵀA or None, covariances [B, d, d] or None).

        A side with no more frames than dimensions (a singular Σ) keeps its weighted, centred frames A
        (row f: √(u_f / (N − 1)) (x_f − μ), u_f = the draws of its clip) instead of a d × d covariance:
        smaller, and a factor of Σ without any decomposition. Other sides: the covariances."""
        frames = self._small_frames(side)
        if frames is None:
            mu, cov = self._mean_covs(side, counts)
            return mu, np.trace(cov, axis1=1, axis2=2), None, cov
        x, owner = frames
        u = counts[:, owner]
        n = u.sum(axis=1)
        mu = (u @ x) / n[:, None]
        a = (x[None, :, :] - mu[:, None, :]) * np.sqrt(u / (n - 1)[:, None])[:, :, None]
        return mu, (a * a).sum(axis=(1, 2)), a, None

    @staticmethod
    def _factors(cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(W [B, d, d] with cov[b] = W[b] W[b]ᵀ, rows whose factor failed): Cholesky, or V√Λ from ``eigh``
        where Cholesky fails (rank deficiency); a covariance that is not PSD is flagged."""
        failed = np.zeros(len(cov), bool)
        try:
            return np.linalg.cholesky(cov), failed
        except np.linalg.LinAlgError:
            pass
        out = np.empty_like(cov)
        for b, c in enumerate(cov):
            try:
                out[b] = np.linalg.cholesky(c)
            except np.linalg.LinAlgError:
                w, v = np.linalg.eigh(c)
                top = float(np.abs(w).max(initial=0.0))
                failed[b] = w.min() < -1e-8 * top
                out[b] = v * np.sqrt(np.where(w > len(w) * EPS * top, w, 0.0))
        return out, failed

    @classmethod
    def values_shared(cls, jobs: Sequence[tuple[FAD, np.ndarray, np.ndarray, object]], block: int = 64) -> list[np.ndarray]:
        """FAD of each job (metric, reference counts, generated counts, key of the reference draw) on each row.

        Why a factor: tr (Σ_r^½ Σ_g Σ_r^½)^½ = Σ √λ(Wᵀ Σ_g W) for any W with Σ_r = W Wᵀ, so one factor
        per resampled reference serves every system. Jobs whose metrics share a reference side
        (``_reference_key``) and whose reference draws have one key share each row's reference
        statistics and factor: the weighted, centred frames themselves when the reference has no more
        frames than dimensions (``_resampled``), else Cholesky (``_factors``). Per system a resample
        then costs Wᵀ Σ_g W (or (A_g W)ᵀ(A_g W) for a side kept as frames) and its eigenvalues. A key of
        None is never shared. A row with fewer than 2 frames on a side has no covariance: NaN, which the
        intervals drop."""
        out = [np.full(len(g), np.nan) for _, _, g, _ in jobs]
        groups: dict[tuple, list[int]] = {}
        for k, (m, _, _, key) in enumerate(jobs):
            groups.setdefault((m._reference_key(), k if key is None else key), []).append(k)
        for members in groups.values():
            first = jobs[members[0]][0]
            ref_counts = np.asarray(jobs[members[0]][1], dtype=np.float64)
            gen_counts = {k: np.asarray(jobs[k][2], dtype=np.float64) for k in members}  # converted once, not per block
            fixed = first.reference_stats
            ref_ok = np.ones(len(ref_counts), bool) if fixed is not None else \
                ref_counts @ first._side_moments("reference")[1] >= 2
            for start in range(0, len(ref_counts), block):
                rows = np.arange(start, min(start + block, len(ref_counts)))[ref_ok[start:start + block]]
                if not len(rows):
                    continue
                if fixed is not None:
                    mu_r, cov_r = np.repeat(fixed.mean[None], len(rows), 0), np.repeat(fixed.cov[None], len(rows), 0)
                    tr_r, a_r = np.trace(cov_r, axis1=1, axis2=2), None
                else:
                    mu_r, tr_r, a_r, cov_r = first._resampled("reference", ref_counts[rows])
                factor, failed = (np.swapaxes(a_r, 1, 2), np.zeros(len(rows), bool)) if a_r is not None else cls._factors(cov_r)
                for k in members:
                    m, gen = jobs[k][0], gen_counts[k][rows]
                    ok = gen @ m._side_moments("generated")[1] >= 2
                    mu_g, tr_g, a_g, cov_g = m._resampled("generated", gen[ok])
                    w = factor[ok]
                    if a_g is None:
                        inner = np.swapaxes(w, 1, 2) @ cov_g @ w
                    else:
                        prod = a_g @ w  # [B, F_g, k]: the smaller Gram of it has the same nonzero eigenvalues
                        inner = prod @ np.swapaxes(prod, 1, 2) if prod.shape[1] < prod.shape[2] else np.swapaxes(prod, 1, 2) @ prod
                    sel = rows[ok]
                    exact = partial(cls._exact, first, m, ref_counts[sel], gen[ok])
                    out[k][sel] = _frechet_rows(mu_r[ok], tr_r[ok], mu_g, tr_g, inner, mu_r.shape[1], failed[ok], exact)
        return out

    @staticmethod
    def _exact(ref: FAD, gen: FAD, ref_rows: np.ndarray, gen_rows: np.ndarray, j: int) -> float:
        """``frechet_distance`` of row j from its exact statistics (the rows the batched step leaves to it)."""
        if ref.reference_stats is not None:
            mu1, cov1 = ref.reference_stats.mean, ref.reference_stats.cov
        else:
            mu, cov = ref._mean_covs("reference", ref_rows[j][None])
            mu1, cov1 = mu[0], cov[0]
        mu2, cov2 = gen._mean_covs("generated", gen_rows[j][None])
        return frechet_distance(mu1, cov1, mu2[0], cov2[0])

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
