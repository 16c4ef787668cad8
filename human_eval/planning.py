"""Study planning and sequential stopping, by simulation under the study's own analysis.

Effect model. ``effect`` is the probability that a rating prefers the better system of a pair among ratings
that prefer either (the win rate the analysis reports); ``ties`` is the share of "no preference" answers and
``strong`` the share of decided answers that are strong (±2). With raters, each rater's own win probability is
``σ(logit(effect) + u_r)``, u_r ~ N(0, rater_sd²): raters differ, and the rater-aware test has to carry that.

Analysis simulated. Without raters: the pooled Wilcoxon signed-rank test (tie-corrected normal p, which the
exact p matches closely at the sizes planned), Bonferroni over the N(N−1)/2 pairs — the study's default
analysis. With raters: the rater sign-flip test (``stats.rater_sign_flip_p``), Bonferroni likewise.

Sequential stopping. Looks at equal information fractions t_k = k/K of the planned ratings per pair. Error
spending: Lan & DeMets (1983) O'Brien–Fleming-type, α(t) = 2 − 2Φ(z_{1−α/2} / √t), two-sided, with α the
per-pair level after Bonferroni. Boundaries c_k are chosen so that under H0 the chance of first crossing at
look k is α(t_k) − α(t_{k−1}); they are computed by simulating the z-statistic as Brownian motion,
corr(Z_j, Z_k) = √(t_j/t_k) (seeded, 400,000 paths). A pair is decided at the first look whose |z| ≥ c_k,
where z = Φ⁻¹(1 − p/2) of the primary test on the ratings collected by that look (in submission order).
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats as sps

from human_eval.stats import rater_sign_flip_p
from metrics.errors import InputError

SPENDING = ("Lan-DeMets O'Brien-Fleming-type alpha spending, alpha(t) = 2 - 2*Phi(z_{1-alpha/2}/sqrt(t)), two-sided, "
            "looks at t = k/K of the planned ratings per pair, alpha = per-pair level after Bonferroni")


class PlanError(InputError):
    """A plan that cannot be met as asked; the message says why and what would work."""


def obf_spending(t: np.ndarray | float, alpha: float) -> np.ndarray:
    """α spent by information fraction t (O'Brien–Fleming-type, Lan–DeMets)."""
    t = np.clip(np.asarray(t, dtype=np.float64), 1e-12, 1.0)
    return 2 - 2 * sps.norm.cdf(sps.norm.ppf(1 - alpha / 2) / np.sqrt(t))


def boundaries(looks: int, alpha: float, n_paths: int = 400_000, seed: int = 0) -> np.ndarray:
    """Two-sided |z| boundaries c_1..c_K for K equally spaced looks under O'Brien–Fleming-type spending."""
    return np.array(_boundaries(int(looks), float(alpha), int(n_paths), int(seed)))


@functools.lru_cache(maxsize=64)
def _boundaries(looks: int, alpha: float, n_paths: int, seed: int) -> tuple[float, ...]:
    if looks < 1:
        raise PlanError(f"looks must be at least 1, not {looks}")
    t = np.arange(1, looks + 1) / looks
    spend = np.diff(np.concatenate([[0.0], obf_spending(t, alpha)]))
    c = np.empty(looks)
    c[0] = sps.norm.ppf(1 - spend[0] / 2)
    if looks == 1:
        return (float(c[0]),)
    rng = np.random.default_rng(seed)
    w = np.cumsum(rng.standard_normal((n_paths, looks)) * np.sqrt(1 / looks), axis=1)
    z = np.abs(w / np.sqrt(t))
    alive = z[:, 0] < c[0]
    for k in range(1, looks):
        zk = np.sort(z[alive, k])[::-1]  # the surviving paths' |z|, largest first
        m = int(round(spend[k] * n_paths))  # that many of all paths should first cross here
        c[k] = zk[m - 1] if 0 < m <= len(zk) else (np.inf if m == 0 else zk[-1])
        alive &= z[:, k] < c[k]
    return tuple(float(v) for v in c)


def p_to_z(p: np.ndarray | float) -> np.ndarray:
    return sps.norm.isf(np.clip(np.asarray(p, dtype=np.float64), 1e-300, 1.0) / 2)


def simulate_scores(rng: np.random.Generator, n_sim: int, n: int, effect: float, ties: float, strong: float,
                    raters: int | None = None, rater_sd: float = 0.0) -> tuple[np.ndarray, np.ndarray | None]:
    """(scores [n_sim, n] on −2…+2, rater index [n] or None): rating i is by rater i mod R (raters go evenly)."""
    if raters:
        who = np.arange(n) % raters
        u = rng.standard_normal((n_sim, raters)) * rater_sd
        p_win = 1 / (1 + np.exp(-(math.log(effect / (1 - effect)) + u)))[:, who]
    else:
        who, p_win = None, np.full((n_sim, n), effect)
    decided = rng.random((n_sim, n)) >= ties
    sign = np.where(rng.random((n_sim, n)) < p_win, 1, -1)
    size = np.where(rng.random((n_sim, n)) < strong, 2, 1)
    return decided * sign * size, who


def wilcoxon_p_batch(scores: np.ndarray) -> np.ndarray:
    """Tie-corrected normal Wilcoxon p per row (zeros dropped), vectorized for scores in {−2…2}."""
    a = np.abs(scores)
    n1, n2 = (a == 1).sum(axis=1), (a == 2).sum(axis=1)
    n = n1 + n2
    r1, r2 = (n1 + 1) / 2, n1 + (n2 + 1) / 2  # mid-ranks of |1| and |2|
    w_plus = r1 * ((scores == 1).sum(axis=1)) + r2 * ((scores == 2).sum(axis=1))
    var = n * (n + 1) * (2 * n + 1) / 24 - ((n1**3 - n1) + (n2**3 - n2)) / 48
    z = np.divide(w_plus - n * (n + 1) / 4, np.sqrt(np.maximum(var, 1e-300)), out=np.zeros(len(n)), where=var > 0)
    return np.minimum(1.0, 2 * sps.norm.sf(np.abs(z)))


def _p_values(scores: np.ndarray, who: np.ndarray | None, raters: int | None, seed: int) -> np.ndarray:
    if not raters:
        return wilcoxon_p_batch(scores)
    sums = np.zeros((len(scores), raters))
    for r in range(raters):
        sums[:, r] = scores[:, who == r].sum(axis=1)
    return rater_sign_flip_p(sums, n_perm=2000, seed=seed)


def power(n: int, effect: float, alpha: float, ties: float = 0.2, strong: float = 0.5, raters: int | None = None,
          rater_sd: float = 0.3, looks: int = 1, n_sim: int = 1000, seed: int = 0) -> float:
    """Chance that one pair with ``n`` ratings is found significant at per-pair level ``alpha`` (any look)."""
    rng = np.random.default_rng([seed, n])
    scores, who = simulate_scores(rng, n_sim, n, effect, ties, strong, raters, rater_sd)
    c = boundaries(looks, alpha)
    hit = np.zeros(n_sim, dtype=bool)
    for k in range(1, looks + 1):
        m = int(math.ceil(k * n / looks))
        hit |= p_to_z(_p_values(scores[:, :m], None if who is None else who[:m], raters, seed)) >= c[k - 1]
    return float(hit.mean())


@dataclass
class Plan:
    systems: int
    pairs: int
    effect: float
    power_target: float
    alpha: float
    alpha_per_pair: float
    raters: int | None
    ratings_per_pair: int
    ratings_per_rater: int | None
    ratings_total: int
    power: float  # simulated at ratings_per_pair
    power_se: float
    looks: int
    analysis: str
    assumptions: dict

    def to_dict(self) -> dict:
        return asdict(self)


def plan(systems: int, effect: float = 0.6, target_power: float = 0.8, raters: int | None = None, alpha: float = 0.05,
         ties: float = 0.2, strong: float = 0.5, rater_sd: float = 0.3, looks: int = 1, n_sim: int = 1000,
         seed: int = 0, max_per_pair: int = 20_000) -> Plan:
    """Smallest ratings per pair reaching ``target_power`` for every pair (a bisection on simulated power)."""
    if systems < 2:
        raise PlanError(f"--systems must be at least 2 (sources compared, the reference included), not {systems}")
    if not 0.5 < effect < 1:
        raise PlanError(f"--effect is the better system's win rate among decided ratings: in (0.5, 1), not {effect}")
    if not 0 < target_power < 1 or not 0 <= ties < 1 or not 0 <= strong <= 1:
        raise PlanError("--power must be in (0, 1), --ties in [0, 1), --strong in [0, 1]")
    pairs = systems * (systems - 1) // 2
    a = alpha / pairs
    if raters is not None:
        if raters < 2:
            raise PlanError(f"--raters must be at least 2, not {raters}")
        smallest = 2.0 / 2**raters if raters <= 16 else 0.0
        if smallest > a:
            need = next(r for r in range(2, 40) if 2.0 / 2**r <= a)
            raise PlanError(f"with {raters} raters the rater sign-flip test cannot reach p <= {a:.4g} (alpha {alpha} / "
                            f"{pairs} pairs): its smallest p is 2/2^{raters} = {smallest:.4g}; use at least {need} raters")
    step = raters or 1

    def pw(n: int) -> float:
        return power(n, effect, a, ties, strong, raters, rater_sd, looks, n_sim, seed)

    lo, hi = 0, step * max(1, math.ceil(8 / step))
    while pw(hi) < target_power:
        lo, hi = hi, hi * 2
        if hi > max_per_pair:
            raise PlanError(f"more than {max_per_pair} ratings per pair would be needed (effect {effect}, "
                            f"{raters or 'pooled'} raters, rater_sd {rater_sd}); add raters or plan for a larger effect")
    while hi - lo > step:  # power rises with n: bisect on multiples of the number of raters
        mid = lo + max(step, (hi - lo) // (2 * step) * step)
        lo, hi = (lo, mid) if pw(mid) >= target_power else (mid, hi)
    got = pw(hi)
    return Plan(systems, pairs, effect, target_power, alpha, a, raters, hi,
                None if raters is None else math.ceil(hi * pairs / raters), hi * pairs, got,
                math.sqrt(got * (1 - got) / n_sim), looks,
                "rater sign-flip test" if raters else "pooled Wilcoxon signed-rank (normal approximation)",
                {"ties": ties, "strong": strong, "rater_sd": rater_sd if raters else None, "n_sim": n_sim,
                 "seed": seed, "correction": "Bonferroni over pairs", "spending": SPENDING if looks > 1 else None})


def sequential_decision(p_at_looks: list[float], alpha: float, looks: int) -> dict:
    """Whether a pair is decided: the first look whose z crosses its boundary, given the p-values at looks 1..k."""
    c = boundaries(looks, alpha)
    z = p_to_z(np.asarray(p_at_looks, dtype=np.float64)) if p_at_looks else np.array([])
    cross = [k for k in range(len(z)) if z[k] >= c[k]]
    return {"looks_done": len(z), "looks": looks, "boundary_z": [float(v) for v in c],
            "z_at_looks": [float(v) for v in z], "decided": bool(cross), "decided_at_look": cross[0] + 1 if cross else None}

