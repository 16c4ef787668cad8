"""Fréchet Audio Distance: the core math, mergeable statistics, FAD∞, per-clip FAD and its CI.

Why not ``scipy.linalg.sqrtm``: it is slow (a Schur decomposition of a non-symmetric product),
its ``disp``/``blocksize`` arguments changed between scipy versions, and on nearly singular
covariances it returns complex matrices whose real part can make FAD negative. Both covariances
are symmetric positive semi-definite, so

    tr (Σ1 Σ2)^½ = tr (Σ1^½ Σ2 Σ1^½)^½ = Σ_i sqrt(λ_i(Σ1^½ Σ2 Σ1^½))

needs only symmetric eigenvalue problems, which are real, fast and stable. Fast path: with the
Cholesky factor Σ1 = L Lᵀ, the same eigenvalues are those of Lᵀ Σ2 L, which LAPACK's generalized
symmetric-definite solver (``sygv``, itype 2) forms and reduces in one call — one Cholesky, one
``sygst`` and one eigenvalues-only tridiagonal solve, ≈10× less work than ``sqrtm``'s Schur form
(docs/performance.md). When Σ1 is not numerically positive definite (fewer frames than dimensions)
the Cholesky fails and the eigh route Σ1^½ = V √Λ Vᵀ takes over, which also handles rank deficiency
exactly. The one "eps": eigenvalues at or below ``d·ε·λ_max`` (ε = float64 machine epsilon, the
tolerance ``numpy.linalg.matrix_rank`` uses) are rounding noise of a (near-)singular covariance and
are set to exactly 0 before any square root. Without that, noise of size ε·λ becomes √ε·λ ≈ 1e-8·λ
per null direction after the root, which is what makes other implementations return negative
FAD for identical singular statistics. No diagonal offset is added, because an offset moves the value.
"""

from __future__ import annotations

import io
import json
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import scipy.linalg

from metrics.errors import ComputeError
from metrics.result import MetricResult

STATS_FORMAT = "musiclm-eval/embedding-stats/1"


class FADError(ComputeError):
    """Inputs FAD cannot be computed from (mismatched dims, non-finite values, mixed embedders)."""


class SingularCovarianceWarning(UserWarning):
    """Fewer frames than dimensions: the covariance is singular and FAD is biased upwards."""


# ----------------------------------------------------------------------------- core math


def _check(mu: np.ndarray, sigma: np.ndarray, which: str) -> tuple[np.ndarray, np.ndarray]:
    mu = np.asarray(mu, dtype=np.float64)
    sigma = np.asarray(sigma, dtype=np.float64)
    if mu.ndim != 1:
        raise FADError(f"mu{which} must be a vector, got shape {mu.shape}")
    if sigma.shape != (len(mu), len(mu)):
        raise FADError(f"sigma{which} has shape {sigma.shape}, expected {(len(mu), len(mu))} to match mu{which}")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise FADError(f"mu{which}/sigma{which} contain NaN or Inf")
    scale = max(float(np.abs(sigma).max(initial=0.0)), 1e-300)
    sym, asymmetry = _symmetrize(sigma)
    if asymmetry > 1e-8 * scale:
        raise FADError(f"sigma{which} is not symmetric")
    return mu, sym


def _symmetrize(sigma: np.ndarray, tile: int = 128) -> tuple[np.ndarray, float]:
    """((Σ + Σᵀ)/2, max |Σ − Σᵀ|), tile by tile.

    Why tiles: ``sigma - sigma.T`` on a whole 2048² matrix walks one operand column-wise and misses
    cache on every element (0.19 s, ~10% of a d = 2048 FAD); 128×128 tiles fit in L2 (0.05 s).
    """
    out = np.empty_like(sigma)
    worst = 0.0
    for i in range(0, len(sigma), tile):
        for j in range(0, i + 1, tile):
            lower, upper_t = sigma[i : i + tile, j : j + tile], sigma[j : j + tile, i : i + tile].T
            worst = max(worst, float(np.abs(lower - upper_t).max(initial=0.0)))
            mean = (lower + upper_t) * 0.5
            out[i : i + tile, j : j + tile] = mean
            out[j : j + tile, i : i + tile] = mean.T
    return out, worst


def _zero_noise(w: np.ndarray, what: str) -> np.ndarray:
    """Eigenvalues at or below d·ε·max|λ| (numpy's rank tolerance) are rounding noise: make them 0.

    A clearly negative eigenvalue (below −1e-8·max|λ|) means the input was not a covariance.
    """
    top = float(np.abs(w).max(initial=0.0))
    if w.size and w.min() < -1e-8 * top:
        raise FADError(f"{what} is not positive semi-definite (eigenvalue {w.min():.3e}, largest {top:.3e})")
    tol = len(w) * np.finfo(np.float64).eps * top
    return np.where(w > tol, w, 0.0)


def _sqrt_psd(sigma: np.ndarray, what: str) -> np.ndarray:
    """Symmetric square root of a PSD matrix via ``eigh``."""
    w, v = np.linalg.eigh(sigma)
    return (v * np.sqrt(_zero_noise(w, what))) @ v.T


def _trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr (Σ1^½ Σ2 Σ1^½)^½ for PSD Σ1, Σ2: the Cholesky fast path, else the eigh route.

    The fast path gives up (and the eigh route decides) when Σ1 has no Cholesky factor or when a
    clearly negative eigenvalue shows an input is not PSD, so the error names the right matrix.
    """
    try:
        # eigenvalues of Σ2 Σ1 = those of Lᵀ Σ2 L (Σ1 = L Lᵀ); "gv" = potrf + sygst + syev(jobz=N)
        eig = scipy.linalg.eigvalsh(sigma2, sigma1, type=2, driver="gv", check_finite=False)
    except np.linalg.LinAlgError:
        eig = None
    if eig is not None and eig.min(initial=0.0) >= -1e-8 * float(np.abs(eig).max(initial=0.0)):
        return float(np.sqrt(_zero_noise(eig, "sigma2 (seen through sigma1)")).sum())
    root1 = _sqrt_psd(sigma1, "sigma1")
    inner = root1 @ sigma2 @ root1
    eig = np.linalg.eigvalsh((inner + inner.T) / 2)
    return float(np.sqrt(_zero_noise(eig, "sigma2 (seen through sigma1)")).sum())


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """‖μ1−μ2‖² + tr Σ1 + tr Σ2 − 2 tr (Σ1^½ Σ2 Σ1^½)^½, in float64.

    Mathematically ≥ 0; a negative value within rounding (≤ 1e-9 of the scale tr Σ1 + tr Σ2 +
    ‖μ1−μ2‖²) is returned as 0.0, anything more negative would be a bug and raises.
    """
    mu1, sigma1 = _check(mu1, sigma1, "1")
    mu2, sigma2 = _check(mu2, sigma2, "2")
    if len(mu1) != len(mu2):
        raise FADError(f"dimension mismatch: reference has dim {len(mu1)}, generated has dim {len(mu2)}")
    tr_covmean = _trace_sqrt_product(sigma1, sigma2)
    diff = mu1 - mu2
    mean_term = float(diff @ diff)
    tr1, tr2 = float(np.trace(sigma1)), float(np.trace(sigma2))
    value = mean_term + tr1 + tr2 - 2.0 * tr_covmean
    scale = mean_term + tr1 + tr2
    if value < 0:
        if value < -1e-9 * max(scale, 1e-300):
            raise FADError(f"Fréchet distance came out negative ({value:.3e}); covariances are not PSD")
        return 0.0
    return value


# ----------------------------------------------------------------------------- statistics


BLOCK_ROWS = 2048  # frames per Gram-matrix block (docs/performance.md: ~matmul rate at d = 128 … 2048)


class EmbeddingStats:
    """One-pass, mergeable mean/covariance of embedding frames (float64 accumulators).

    Holds n, the mean and M2 = Σ (x−mean)(x−mean)ᵀ. Why blocks: embeddings arrive a clip at a time
    (≈10 frames), and folding 10 rows into a d×d matrix is memory-bound — at d = 2048 that ran at
    ~1 GFLOP/s. ``update`` therefore buffers frames and folds them ``BLOCK_ROWS`` at a time, each
    block as one BLAS Gram product xcᵀxc of the block-centred rows merged with Chan et al.'s pairwise
    formula (accurate where the naive Σ x xᵀ − n μ μᵀ loses digits). Memory stays O(d²) (the buffer
    holds < max(BLOCK_ROWS, d)·d values). Blocks are cut at fixed frame offsets, so the result is
    bit-identical however the frames were chunked into ``update`` calls (reading ``mean``/``cov``
    in between flushes the buffer early). ``n_clips`` counts the clips the frames came from.
    """

    def __init__(self, dim: int | None = None, embedder: str = "", config: dict | None = None, n: int = 0,
                 n_clips: int = 0):
        self.dim = dim
        self.embedder = embedder
        self.config = config if config is not None else {}
        self.n_clips = n_clips
        self._n_folded = n
        self._mean_folded: np.ndarray | None = None
        self._m2_folded: np.ndarray | None = None
        self._buffer: np.ndarray | None = None  # [block, d] float64; rows [0, _pending_rows) wait to be folded
        self._pending_rows = 0

    def __repr__(self) -> str:
        return f"EmbeddingStats(dim={self.dim}, embedder={self.embedder!r}, n={self.n}, n_clips={self.n_clips})"

    # n / _mean / _m2 always describe every frame seen (buffered ones included): reading the arrays
    # folds the buffer first, so partial states can be read and written directly (the Ray engine does).
    @property
    def n(self) -> int:
        return self._n_folded + self._pending_rows

    @n.setter
    def n(self, value: int) -> None:
        self._flush()
        self._n_folded = int(value)

    @property
    def _mean(self) -> np.ndarray | None:
        self._flush()
        return self._mean_folded

    @_mean.setter
    def _mean(self, value: np.ndarray | None) -> None:
        self._flush()
        self._mean_folded = value

    @property
    def _m2(self) -> np.ndarray | None:
        self._flush()
        return self._m2_folded

    @_m2.setter
    def _m2(self, value: np.ndarray | None) -> None:
        self._flush()
        self._m2_folded = value

    def _ensure(self, d: int) -> None:
        if self.dim is None:
            self.dim = d
        if d != self.dim:
            raise FADError(f"dimension mismatch: statistics have dim {self.dim}, new embeddings have dim {d}")
        if self._mean_folded is None:
            self._mean_folded = np.zeros(d)
            self._m2_folded = np.zeros((d, d))

    def _fold(self, n_b: int, mean_b: np.ndarray, m2_b: np.ndarray) -> None:
        self._ensure(len(mean_b))
        if n_b == 0:
            return
        n_a, n = self._n_folded, self._n_folded + n_b
        delta = mean_b - self._mean_folded
        self._mean_folded = self._mean_folded + delta * (n_b / n)
        m2 = self._m2_folded + m2_b
        m2 += np.outer(delta, delta * (n_a * n_b / n))
        self._m2_folded = m2
        self._n_folded = n

    def _fold_block(self, x: np.ndarray) -> None:
        x = np.ascontiguousarray(x, dtype=np.float64)  # same layout → same rounding, however it arrived
        mean_b = x.mean(axis=0)
        xc = x - mean_b
        self._fold(len(x), mean_b, xc.T @ xc)  # numpy runs Aᵀ·A as one BLAS syrk

    def _flush(self) -> None:
        if self._pending_rows:
            rows, self._pending_rows = self._pending_rows, 0
            self._fold_block(self._buffer[:rows])

    def update(self, x: np.ndarray, clips: int = 1) -> EmbeddingStats:
        """Add frames ``x`` [n, d] (from ``clips`` clips). Returns self for chaining."""
        x = np.asarray(x)
        if x.ndim != 2:
            raise FADError(f"embeddings must have shape [frames, dim], got {x.shape}")
        if not np.isfinite(x).all():
            raise FADError("embeddings contain NaN or Inf")
        self._ensure(x.shape[1])
        block, start, k = max(BLOCK_ROWS, self.dim), 0, len(x)
        while start < k:
            rows = self._pending_rows
            if rows == 0 and k - start >= block:  # a whole block straight from the input
                self._fold_block(x[start : start + block])
                start += block
                continue
            if self._buffer is None or self._buffer.shape != (block, self.dim):
                self._buffer = np.empty((block, self.dim))
            take = min(block - rows, k - start)
            self._buffer[rows : rows + take] = x[start : start + take]  # a copy: callers may reuse x
            self._pending_rows, start = rows + take, start + take
            if self._pending_rows == block:
                self._flush()
        self.n_clips += clips
        return self

    def partial(self) -> tuple[int, int, np.ndarray | None, np.ndarray | None]:
        """(frames, clips, mean, M2) exactly: what a worker ships so that another process can merge it.

        Statistics that know their ``dim`` but saw no frame ship zeros (an empty partial merges as a no-op)."""
        if self.dim is not None:
            self._ensure(self.dim)
        return self.n, self.n_clips, self._mean, self._m2

    @classmethod
    def from_partial(cls, n: int, n_clips: int, mean: np.ndarray, m2: np.ndarray, **kw) -> EmbeddingStats:
        """The inverse of ``partial`` (``kw``: embedder, config)."""
        s = cls(dim=len(mean), n=int(n), n_clips=int(n_clips), **kw)
        s._mean, s._m2 = mean, m2
        return s

    def merge(self, other: EmbeddingStats) -> EmbeddingStats:
        """Fold another partial state in (e.g. from another worker or shard)."""
        if self.embedder and other.embedder and self.embedder != other.embedder:
            raise FADError(f"cannot merge statistics of different embedders: {self.embedder!r} vs {other.embedder!r}")
        self.embedder = self.embedder or other.embedder
        self._flush()
        if other.n:
            self._fold(other.n, other._mean, other._m2)
        self.n_clips += other.n_clips
        return self

    @property
    def mean(self) -> np.ndarray:
        if not self.n:
            raise FADError("statistics are empty (no frames)")
        return self._mean.copy()

    @property
    def cov(self) -> np.ndarray:
        """Covariance with ddof=1 (as Google's and fadtk's FAD); needs at least two frames."""
        if self.n < 2:
            raise FADError(f"covariance needs at least 2 frames, have {self.n}")
        return self._m2 / (self.n - 1)

    @classmethod
    def from_embeddings(cls, x: np.ndarray | Mapping[str, np.ndarray], embedder: str = "") -> EmbeddingStats:
        """Statistics of an [n, d] array, or of every clip of an id → [frames, d] mapping."""
        s = cls(embedder=embedder)
        if isinstance(x, Mapping):
            if not x:
                raise FADError("no embeddings (empty set of clips)")
            for arr in x.values():
                s.update(arr)
        else:
            s.update(x)
        return s

    def save(self, path: str | Path) -> Path:
        """``.npz`` with ``mu``, ``sigma`` (ddof=1) and metadata; written atomically."""
        from metrics.io import atomic_write_bytes

        buf = io.BytesIO()
        meta = {"format": STATS_FORMAT, "embedder": self.embedder, "config": self.config}
        np.savez(buf, mu=self.mean, sigma=self.cov, n=np.int64(self.n), n_clips=np.int64(self.n_clips),
                 meta=np.array(json.dumps(meta, sort_keys=True)))
        return atomic_write_bytes(Path(path), buf.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> EmbeddingStats:
        """Read statistics written by ``save`` (or any ``.npz`` with ``mu``/``sigma``, n unknown → error)."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
        except FileNotFoundError:
            raise FADError(f"{path}: statistics file not found") from None
        except Exception as e:
            raise FADError(f"{path}: not a readable .npz statistics file ({type(e).__name__}: {e})") from None
        missing = [k for k in ("mu", "sigma") if k not in data]
        if missing:
            raise FADError(f"{path}: missing key(s) {', '.join(missing)} (expected mu, sigma, n)")
        if "n" not in data:
            raise FADError(f"{path}: no frame count 'n'; it is needed to merge and to report n")
        meta = json.loads(str(data["meta"])) if "meta" in data else {}
        mu, sigma = _check(data["mu"], data["sigma"], f" in {path}")
        n = int(data["n"])
        return cls.from_partial(n, int(data.get("n_clips", 0)), mu, sigma * max(n - 1, 0),
                                embedder=meta.get("embedder", ""), config=meta.get("config", {}))


# ----------------------------------------------------------------------------- FAD


Embeddings = np.ndarray | Mapping[str, np.ndarray] | EmbeddingStats


def _as_stats(x: Embeddings, which: str) -> EmbeddingStats:
    if isinstance(x, EmbeddingStats):
        return x
    try:
        return EmbeddingStats.from_embeddings(x)
    except FADError as e:
        raise FADError(f"{which}: {e}") from None


def _warn_if_singular(s: EmbeddingStats, which: str) -> None:
    if s.n <= s.dim:
        warnings.warn(
            f"{which} set has {s.n} frames for {s.dim} dimensions: its covariance is singular and FAD "
            "is biased upwards; use more audio (or FAD∞) before comparing numbers",
            SingularCovarianceWarning,
            stacklevel=3,
        )


def fad(ref: Embeddings, gen: Embeddings, name: str = "fad") -> MetricResult:
    """FAD between reference and generated embeddings (arrays, id → array mappings, or stats)."""
    r, g = _as_stats(ref, "reference"), _as_stats(gen, "generated")
    if r.embedder and g.embedder and r.embedder != g.embedder:
        raise FADError(f"reference statistics come from embedder {r.embedder!r} but generated from {g.embedder!r}")
    if r.dim != g.dim:
        raise FADError(f"dimension mismatch: reference has dim {r.dim}, generated has dim {g.dim}")
    _warn_if_singular(r, "reference")
    _warn_if_singular(g, "generated")
    value = frechet_distance(r.mean, r.cov, g.mean, g.cov)
    extra = {
        "embedder": r.embedder or g.embedder,
        "n_reference": r.n_clips,
        "n_generated": g.n_clips,
        "n_reference_frames": r.n,
        "n_generated_frames": g.n,
        "dim": r.dim,
    }
    return MetricResult(name, value, extra=extra)


def _frames(gen: np.ndarray | Mapping[str, np.ndarray]) -> np.ndarray:
    if isinstance(gen, Mapping):
        if not gen:
            raise FADError("generated: no embeddings (empty set of clips)")
        return np.concatenate([np.asarray(a, dtype=np.float64) for a in gen.values()])
    return np.asarray(gen, dtype=np.float64)


def fad_inf(
    ref: Embeddings,
    gen: np.ndarray | Mapping[str, np.ndarray],
    seed: int = 0,
    steps: int = 25,
    min_n: int | None = None,
) -> tuple[float, float]:
    """FAD∞ (Chong & Forsyth 2020): FAD of seeded subsamples of N generated frames, fitted linearly in
    1/N and extrapolated to 1/N → 0. Returns (intercept, R² of the fit).

    As in fadtk, subsamples are frames drawn without replacement at ``steps`` sizes evenly spaced from
    ``min_n`` (default min(500, n/2)) to all n frames; the reference statistics are used whole.
    """
    r = _as_stats(ref, "reference")
    x = _frames(gen)
    if x.ndim != 2 or x.shape[1] != r.dim:
        raise FADError(f"dimension mismatch: reference has dim {r.dim}, generated embeddings have shape {x.shape}")
    n = len(x)
    min_n = min(500, n // 2) if min_n is None else min_n
    min_n = max(min_n, 2)
    if n < 4 or min_n >= n:
        raise FADError(f"FAD∞ needs more generated frames than min_n={min_n} (have {n})")
    sizes = np.unique(np.linspace(min_n, n, steps).astype(int))
    if len(sizes) < 3:
        raise FADError(f"FAD∞ needs at least 3 distinct subsample sizes, have {len(sizes)} (n={n})")
    rng = np.random.default_rng(seed)
    mu_r, cov_r = r.mean, r.cov
    values = []
    for size in sizes:
        sub = x[rng.choice(n, size=int(size), replace=False)]
        values.append(frechet_distance(mu_r, cov_r, sub.mean(axis=0), np.cov(sub, rowvar=False, ddof=1)))
    xs, ys = 1.0 / sizes, np.asarray(values)
    slope, intercept = np.polyfit(xs, ys, 1)
    resid = ys - (slope * xs + intercept)
    total = ((ys - ys.mean()) ** 2).sum()
    r2 = float(1.0 - (resid**2).sum() / total) if total > 0 else 1.0
    return float(intercept), r2


def per_clip_fad(ref: Embeddings, gen_embs: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Each generated clip's frames against the reference statistics.

    A one-frame clip has no covariance; it is scored as a point mass (Σ_gen = 0), i.e.
    ‖μ_ref − x‖² + tr Σ_ref — the Fréchet distance to a Dirac, not an error.
    """
    r = _as_stats(ref, "reference")
    mu_r, cov_r = r.mean, r.cov
    out = {}
    for cid, emb in gen_embs.items():
        x = np.asarray(emb, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != r.dim or not len(x):
            raise FADError(f"clip {cid}: embeddings have shape {x.shape}, expected [frames>0, {r.dim}]")
        cov = np.cov(x, rowvar=False, ddof=1) if len(x) > 1 else np.zeros((r.dim, r.dim))
        out[cid] = frechet_distance(mu_r, cov_r, x.mean(axis=0), np.atleast_2d(cov))
    return out

