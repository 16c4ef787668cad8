"""The statistics of the A-vs-B study as plain functions on arrays (no database), so tests can hand-check them.

Scores are preferences for a pair's first system on the 5-point scale: +2 strong, +1 weak, 0 none,
−1 weak, −2 strong for the other one. A win is any nonzero score.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats as sps

EXACT_MAX_N = 300  # exact conditional Wilcoxon p-values up to this many nonzero scores, normal above


@dataclass
class WilcoxonResult:
    """Wilcoxon signed-rank test of scores against 0.

    Zero handling: Wilcoxon's rule (``zero_method='wilcox'`` in scipy) — no-preference answers are
    dropped before ranking; ``n`` counts the rest. Tied |scores| get mid-ranks. ``p_exact`` is the exact
    two-sided p-value of W+ conditional on the observed (tied) ranks, every sign pattern equally likely
    under H0; ``p_normal`` is the tie-corrected normal approximation without continuity correction
    (scipy's ``method='approx', correction=False``). ``p`` is the exact one when computed.
    """

    n: int
    w_plus: float
    w_minus: float
    statistic: float  # min(W+, W−), as scipy reports it
    z: float
    p_normal: float
    p_exact: float | None
    p: float

    def to_dict(self) -> dict:
        return asdict(self)


def wilcoxon_signed_rank(scores: np.ndarray | list[float]) -> WilcoxonResult:
    x = np.asarray(scores, dtype=np.float64)
    d = x[x != 0]
    n = len(d)
    if n == 0:
        return WilcoxonResult(0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0)
    ranks = sps.rankdata(np.abs(d))  # mid-ranks for ties
    w_plus, w_minus = float(ranks[d > 0].sum()), float(ranks[d < 0].sum())
    mean = n * (n + 1) / 4
    _, t = np.unique(np.abs(d), return_counts=True)
    var = n * (n + 1) * (2 * n + 1) / 24 - float((t**3 - t).sum()) / 48
    z = (w_plus - mean) / np.sqrt(var) if var > 0 else 0.0
    p_normal = float(min(1.0, 2 * sps.norm.sf(abs(z))))
    p_exact = _exact_p(ranks, w_plus) if n <= EXACT_MAX_N else None
    return WilcoxonResult(n, w_plus, w_minus, min(w_plus, w_minus), float(z), p_normal, p_exact,
                          p_exact if p_exact is not None else p_normal)


def _exact_p(ranks: np.ndarray, w_plus: float) -> float:
    """P(|W+ − E| ≥ |w − E|) over all 2^n sign patterns, by dynamic programming on doubled (integer) ranks."""
    r2 = np.rint(2 * ranks).astype(np.int64)
    dist = np.zeros(int(r2.sum()) + 1)
    dist[0] = 1.0
    for r in r2:
        shifted = np.zeros_like(dist)
        shifted[r:] = dist[:-r] if r else dist
        dist = 0.5 * (dist + shifted)
    centre = r2.sum() / 2
    obs = abs(2 * w_plus - centre)
    sums = np.arange(len(dist))
    return float(min(1.0, dist[np.abs(sums - centre) >= obs - 1e-9].sum()))


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact binomial test of wins vs losses at p = ½; ties are left out (as in the Wilcoxon)."""
    if wins + losses == 0:
        return 1.0
    return float(sps.binomtest(int(wins), int(wins + losses), 0.5, alternative="two-sided").pvalue)


def bonferroni(p: np.ndarray | list[float]) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    return np.minimum(1.0, p * len(p))


def bradley_terry(wins: np.ndarray, prior: float = 0.1, iters: int = 100, tol: float = 1e-10) -> np.ndarray:
    """Log-strengths β (mean 0) maximizing Σ w_ij log σ(β_i − β_j) for a win matrix ``wins[i, j]`` = times i beat j.

    Newton's method with step halving on this concave log-likelihood (the Hessian is a weighted graph
    Laplacian; its null direction, a common shift, is fixed by the mean-0 constraint). ``prior`` adds that
    many virtual wins each way to every pair compared at all, so a system that never won still gets a
    finite strength (negligible against hundreds of ratings).
    """
    w = np.asarray(wins, dtype=np.float64).copy()
    w = w + prior * ((w + w.T) > 0)
    n = w + w.T
    k = len(w)
    fix = np.ones((k, k)) / k  # adds the constraint direction, making the Laplacian invertible

    def loglik(b: np.ndarray) -> float:
        return float((w * -np.logaddexp(0, -(b[:, None] - b[None, :]))).sum())

    beta = np.zeros(k)
    ll = loglik(beta)
    for _ in range(iters):
        p = 1 / (1 + np.exp(-(beta[:, None] - beta[None, :])))
        grad = w.sum(axis=1) - (n * p).sum(axis=1)
        h = n * p * (1 - p)
        lap = np.diag(h.sum(axis=1)) - h
        step = np.linalg.lstsq(lap + fix, grad, rcond=None)[0]
        step -= step.mean()
        t = 1.0
        while t > 1e-6:
            cand = beta + t * step
            new_ll = loglik(cand)
            if new_ll >= ll - 1e-12:
                break
            t /= 2
        beta, ll = cand - cand.mean(), new_ll
        if np.max(np.abs(t * step)) < tol:
            break
    return beta


def bootstrap_bradley_terry(per_rater: np.ndarray, n_boot: int = 1000, seed: int = 0,
                            alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Percentile CIs of the log-strengths, resampling raters with replacement (a rater's ratings stay together).

    ``per_rater[r, i, j]`` = times rater r judged i better than j. Returns (low, high), each of length S.
    """
    rng = np.random.default_rng(seed)
    r = len(per_rater)
    draws = np.empty((n_boot, per_rater.shape[1]))
    for b in range(n_boot):
        counts = np.bincount(rng.integers(0, r, size=r), minlength=r)
        draws[b] = bradley_terry(np.tensordot(counts, per_rater, axes=1))
    lo, hi = np.quantile(draws, [alpha / 2, 1 - alpha / 2], axis=0)
    return lo, hi


def krippendorff_alpha_interval(units: list[np.ndarray]) -> float:
    """Krippendorff's α with the interval metric; units with fewer than two values are not pairable.

    α = 1 − D_o / D_e, D_o the mean squared difference within units (each unit weighted by 1/(m_u − 1)),
    D_e over all pairable values. NaN when nothing is pairable or every value is the same.
    """
    units = [np.asarray(u, dtype=np.float64) for u in units if len(u) >= 2]
    if not units:
        return float("nan")
    n = sum(len(u) for u in units)

    def sq(v: np.ndarray) -> float:  # sum over ordered pairs i != j of (v_i - v_j)^2
        return 2 * (len(v) * float((v**2).sum()) - float(v.sum()) ** 2)

    d_o = sum(sq(u) / (len(u) - 1) for u in units) / n
    d_e = sq(np.concatenate(units)) / (n * (n - 1))
    return float("nan") if d_e == 0 else float(1 - d_o / d_e)


# ---- rater-aware inference: raters, not ratings, are the independent units ------------------------

EXACT_FLIP_MAX_RATERS = 16  # all 2^R sign patterns up to this many raters, Monte Carlo above


def sign_patterns(r: int, n_perm: int = 10_000, seed: int = 0) -> np.ndarray:
    """±1 patterns over ``r`` raters: all 2^r when r ≤ EXACT_FLIP_MAX_RATERS, else ``n_perm`` seeded random ones
    (the identity first, so the Monte Carlo p-value counts the observed statistic, (1 + k) / (1 + n))."""
    if r <= EXACT_FLIP_MAX_RATERS:
        bits = (np.arange(2**r)[:, None] >> np.arange(r)[None, :]) & 1
        return (1 - 2 * bits).astype(np.float64)
    rng = np.random.default_rng(seed)
    return np.vstack([np.ones((1, r)), rng.choice([-1.0, 1.0], size=(n_perm, r))])


def rater_sign_flip_p(per_rater_sums: np.ndarray, n_perm: int = 10_000, seed: int = 0) -> np.ndarray:
    """Two-sided p of the total score when each rater's scores flip sign together (a rater-stratified permutation).

    ``per_rater_sums[..., r]`` = rater r's summed scores for the pair (a batch over leading axes is allowed).
    Under H0 every rater's total is symmetric about 0 — the raters' own leanings included, as long as they
    are symmetric across raters — so the test holds its level however strongly a rater prefers one side,
    where the pooled tests, counting each rating as independent, do not.
    """
    s = np.asarray(per_rater_sums, dtype=np.float64)
    flips = sign_patterns(s.shape[-1], n_perm, seed)
    t_obs = np.abs(s.sum(axis=-1, keepdims=True))
    t = np.abs(s @ flips.T)
    return (t >= t_obs - 1e-9).mean(axis=-1)


@dataclass
class ClusterBootstrap:
    """Percentile intervals from resampling raters with replacement (each rater's ratings stay together)."""

    n_raters: int
    mean_score: float
    mean_score_ci: tuple[float, float]
    win_rate: float | None  # wins / (wins + losses) for the pair's first system
    win_rate_ci: tuple[float, float] | None


def cluster_bootstrap(scores: np.ndarray, raters: np.ndarray, n_boot: int = 1000, seed: int = 0,
                      alpha: float = 0.05) -> ClusterBootstrap:
    """Mean score and win rate of one pair with rater-cluster bootstrap CIs (NaN bounds when n_boot = 0 or 1 rater)."""
    x = np.asarray(scores, dtype=np.float64)
    ids, inv = np.unique(np.asarray(raters), return_inverse=True)
    r = len(ids)
    tot = np.bincount(inv, weights=x, minlength=r)
    cnt = np.bincount(inv, minlength=r).astype(np.float64)
    win = np.bincount(inv, weights=(x > 0), minlength=r)
    loss = np.bincount(inv, weights=(x < 0), minlength=r)
    decided = win.sum() + loss.sum()
    win_rate = float(win.sum() / decided) if decided else None
    nan2 = (float("nan"), float("nan"))
    if n_boot <= 0 or r < 2:
        return ClusterBootstrap(r, float(x.mean()), nan2, win_rate, nan2 if win_rate is not None else None)
    rng = np.random.default_rng(seed)
    w = np.stack([np.bincount(rng.integers(0, r, size=r), minlength=r) for _ in range(n_boot)]).astype(np.float64)
    means = (w @ tot) / (w @ cnt)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    wr_ci = None
    if win_rate is not None:
        d = w @ (win + loss)
        rates = np.divide(w @ win, d, out=np.full(n_boot, np.nan), where=d > 0)
        wr_ci = tuple(float(v) for v in np.nanquantile(rates, [alpha / 2, 1 - alpha / 2]))
    return ClusterBootstrap(r, float(x.mean()), (float(lo), float(hi)), win_rate, wr_ci)
