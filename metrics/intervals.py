"""Confidence intervals and paired system tests: one helper per job, every metric through one hook.

Why this module: a set-level metric such as FAD is biased upwards at finite sample size, and a
bootstrap resample (≈63 % unique clips) is biased further, so the plain percentile interval of
the resampled values lies *above* the population value (docs/protocol.md, "Intervals": it covered
a known population Fréchet distance in 0 of 200 simulated replications). The interval here
therefore

- resamples clips of *both* sides (the reference set is a sample too, its variance counts);
- corrects the bias: the default ``method="bca"`` is Efron's bias-corrected and accelerated
  bootstrap (acceleration from a jackknife over the clips of both sides, delete-one up to
  ``JACKKNIFE_GROUPS`` clips per side, else a delete-a-group jackknife over that many groups to
  bound the cost); when the bias is so large, relative to the spread, that a BCa level falls outside
  what ``n_boot`` resamples resolve (FAD at a few thousand frames), the endpoint comes from the
  basic (pivot) interval 2θ̂ − q instead, which is BCa's large-bias limit;
- always contains the point estimate (an endpoint is moved to θ̂ if needed; this widens and never
  shrinks the interval, so it cannot lower coverage).

Everything goes through ``Metric.value_on(ref_ids, gen_ids)`` (ids may repeat) and
``Metric.ids(side)``. A metric may offer the batched fast path
``value_on_counts(ref_counts, gen_counts) -> values`` with ``counts`` of shape [B, n_side] aligned
with ``ids(side)`` (a clip drawn k times has count k, a jackknifed clip 0); FAD-like metrics can
then form each resample's mean and covariance as weighted sums of per-clip sums and Gram matrices.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np
from scipy.special import ndtr, ndtri

METHODS = ("bca", "basic", "percentile")
JACKKNIFE_GROUPS = 100  # per side: delete-one up to this many clips, delete-a-group beyond


class Resamplable(Protocol):
    """What an interval needs of a metric (``metrics.metric.Metric`` has it). Declared here, not imported,
    so that this module stays below ``metrics.metric`` (which calls ``bootstrap_interval``): no cycle."""

    def value_on(self, ref_ids: Sequence[str], gen_ids: Sequence[str]) -> float: ...

    def ids(self, side: str) -> list[str]: ...


# ----------------------------------------------------------------------------- item-level helpers


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
    statistic: Callable[[np.ndarray], float] | None = None,
    alpha: float = 0.05,
) -> tuple[float, float]:
    """Percentile bootstrap CI of ``statistic`` (default: mean) over items, resampled with replacement.

    For a mean of per-item values (KLD, MCC per pair) the percentile interval is fine: the mean is
    unbiased. Set-level metrics use ``bootstrap_interval``. Seeded, so the same inputs give the same
    interval.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.ndim == 0 or len(x) == 0:
        raise ValueError("bootstrap_ci needs at least one value")
    if len(x) == 1:
        return float(x[0]), float(x[0])
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(x), size=(n_boot, len(x)))
    if statistic is None:
        stats = x[idx].mean(axis=1)
    else:
        stats = np.array([statistic(x[i]) for i in idx])
    lo, hi = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def wilson_ci(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion; well-behaved at 0 and n."""
    if n <= 0:
        raise ValueError("wilson_ci needs n > 0")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


# ----------------------------------------------------------------------------- resampling plumbing


def _values_on_counts(metric: Resamplable, ref_ids: list[str], gen_ids: list[str], ref_counts: np.ndarray,
                      gen_counts: np.ndarray) -> np.ndarray:
    """The metric on each row of counts: the batched hook when the metric has one, else value_on."""
    fast = getattr(metric, "value_on_counts", None)
    if fast is not None:
        out = np.asarray(fast(ref_counts, gen_counts), dtype=np.float64)
        if out.shape != (len(ref_counts),):
            raise ValueError(f"{type(metric).__name__}.value_on_counts returned shape {out.shape}, "
                             f"expected ({len(ref_counts)},)")
        return out
    r_ids, g_ids = np.asarray(ref_ids, dtype=object), np.asarray(gen_ids, dtype=object)
    return np.array([metric.value_on(list(np.repeat(r_ids, rc)), list(np.repeat(g_ids, gc)))
                     for rc, gc in zip(ref_counts, gen_counts)], dtype=np.float64)


def _multinomial_counts(rng: np.random.Generator, n_boot: int, n: int) -> np.ndarray:
    """[n_boot, n] counts of n draws with replacement from n items (one bootstrap resample per row)."""
    idx = rng.integers(0, n, size=(n_boot, n))
    counts = np.zeros((n_boot, n), dtype=np.int64)
    np.add.at(counts, (np.arange(n_boot)[:, None], idx), 1)
    return counts


def _jackknife_rows(n: int, rng: np.random.Generator, groups: int = JACKKNIFE_GROUPS) -> np.ndarray:
    """[g, n] 0/1 weights: row k deletes clip k (n ≤ groups) or the k-th of ``groups`` seeded groups."""
    if n <= groups:
        return 1 - np.eye(n, dtype=np.int64)
    labels = np.empty(n, dtype=np.int64)
    labels[rng.permutation(n)] = np.arange(n) % groups
    return (labels[None, :] != np.arange(groups)[:, None]).astype(np.int64)


def _acceleration(jack: list[np.ndarray]) -> float:
    """BCa acceleration from jackknife values of each independent sample (Davison & Hinkley 1997, 5.3).

    a = Σ_k Σ_j l_kj³ / n_k³ / (6 (Σ_k Σ_j l_kj² / n_k²)^{3/2}), with the jackknife estimate of the
    empirical influence l_kj = (n_k − 1)(θ̄_k − θ_(kj)) for the n_k deletions (clips or groups) of
    sample k. Zero when nothing varies.
    """
    num = den = 0.0
    for t in jack:
        if len(t) < 2:
            continue
        n = len(t)
        infl = (n - 1) * (t.mean() - t)
        num += float((infl**3).sum()) / n**3
        den += float((infl**2).sum()) / n**2
    return num / (6.0 * den**1.5) if den > 0 else 0.0


def _bias_z0(boot: np.ndarray, theta: float) -> float:
    """z0 = Φ⁻¹(share of resamples below θ̂, ties counted half), kept finite at ±Φ⁻¹(1 − 1/(2B))."""
    b = len(boot)
    share = (np.sum(boot < theta) + 0.5 * np.sum(boot == theta)) / b
    share = min(max(share, 0.5 / b), 1 - 0.5 / b)
    return float(ndtri(share))


def _bca_levels(boot: np.ndarray, theta: float, jack: list[np.ndarray], alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """BCa's adjusted levels for (alpha/2, 1 − alpha/2) and, per endpoint, whether B resamples resolve it.

    A level below 1/B or above 1 − 1/B (or a denominator 1 − a(z0 + z) through zero) asks for a
    quantile the resamples do not contain: with FAD's bias at a few thousand frames, z0 ≈ −2 puts
    the lower level near Φ(−6). That endpoint then comes from the basic interval, which is the
    normal-theory value of the same BCa endpoint (θ̂ − bias − z·sd).
    """
    z0, a = _bias_z0(boot, theta), _acceleration(jack)
    z = ndtri(np.array([alpha / 2, 1 - alpha / 2]))
    denom = 1 - a * (z0 + z)
    with np.errstate(divide="ignore", invalid="ignore"):
        adj = ndtr(z0 + (z0 + z) / denom)
    b = len(boot)
    resolved = (denom > 0) & np.isfinite(adj) & (adj >= 1.0 / b) & (adj <= 1 - 1.0 / b)
    return adj, resolved


def _interval(theta: float, boot: np.ndarray, jack: list[np.ndarray], method: str,
              alpha: float) -> tuple[float, float]:
    """The (lo, hi) of ``method`` from a point value, its bootstrap values and jackknife values."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    boot = boot[np.isfinite(boot)]
    if len(boot) == 0:
        raise ValueError("every bootstrap resample gave a non-finite value")
    q_lo, q_hi = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    if method == "percentile":
        lo, hi = q_lo, q_hi
    else:
        lo, hi = 2 * theta - q_hi, 2 * theta - q_lo
        if method == "bca":
            adj, resolved = _bca_levels(boot, theta, jack, alpha)
            q = np.quantile(boot, np.where(resolved, adj, 0.5))
            lo, hi = (q[0] if resolved[0] else lo), (q[1] if resolved[1] else hi)
    return float(min(lo, theta)), float(max(hi, theta))


# ----------------------------------------------------------------------------- one metric


def bootstrap_interval(metric: Resamplable, n_boot: int = 1000, seed: int = 0, method: str = "bca",
                       alpha: float = 0.05, jackknife_groups: int = JACKKNIFE_GROUPS) -> tuple[float, float]:
    """(lo, hi): a 1 − alpha interval for the metric's population value, always containing its point value.

    Clips of both sides are resampled independently with replacement (``n_boot`` times, seeded) and
    the metric recomputed through ``value_on``; paired metrics read only the generated side's ids.
    ``method``: ``"bca"`` (default, see the module docstring), ``"basic"`` (2θ̂ − q) or
    ``"percentile"`` (the old interval, biased for FAD; kept for comparison). A single clip on
    both sides gives the zero-width interval (θ̂, θ̂) (nothing to resample). ``jackknife_groups``
    bounds the acceleration's cost at 2 × that many extra evaluations.
    """
    return bootstrap_intervals(metric, (method,), n_boot, seed, alpha, jackknife_groups)[method]


def bootstrap_intervals(metric: Resamplable, methods: Sequence[str] = METHODS, n_boot: int = 1000, seed: int = 0,
                        alpha: float = 0.05, jackknife_groups: int = JACKKNIFE_GROUPS) -> dict[str, tuple[float, float]]:
    """``bootstrap_interval`` for several methods from the same resamples: method → (lo, hi)."""
    for method in methods:
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, not {n_boot}")
    ref_ids, gen_ids = list(metric.ids("reference")), list(metric.ids("generated"))
    if not gen_ids:
        raise ValueError(f"{metric.name}: no generated clips to resample")
    theta = float(metric.value_on(ref_ids, gen_ids))
    n_r, n_g = len(ref_ids), len(gen_ids)
    if n_r <= 1 and n_g <= 1:
        return dict.fromkeys(methods, (theta, theta))
    rng = np.random.default_rng(seed)
    ref_counts, gen_counts = _multinomial_counts(rng, n_boot, n_r), _multinomial_counts(rng, n_boot, n_g)
    boot = _values_on_counts(metric, ref_ids, gen_ids, ref_counts, gen_counts)
    jack = []
    if "bca" in methods:
        jr, jg = _jackknife_rows(n_r, rng, jackknife_groups), _jackknife_rows(n_g, rng, jackknife_groups)
        full_r, full_g = np.ones((len(jg), n_r), np.int64), np.ones((len(jr), n_g), np.int64)
        jack = [_values_on_counts(metric, ref_ids, gen_ids, jr, full_g) if n_r > 1 else np.zeros(0),
                _values_on_counts(metric, ref_ids, gen_ids, full_r, jg) if n_g > 1 else np.zeros(0)]
    return {method: _interval(theta, boot, jack, method, alpha) for method in methods}


# ----------------------------------------------------------------------------- two systems


def _p_value(theta: float, boot: np.ndarray, jack: list[np.ndarray], method: str) -> float:
    """Two-sided p-value of H0 "difference = 0": the smallest alpha whose ``method`` interval excludes 0.

    Inverting the interval keeps the test and the reported ci95 consistent (p < 0.05 exactly when 0
    lies outside ci95, up to the point-estimate containment). Resample shares are counted with +1
    in numerator and denominator, so p is never 0.
    """
    b = len(boot)
    if method == "percentile":
        below = (np.sum(boot <= 0) + 1) / (b + 1)
        above = (np.sum(boot >= 0) + 1) / (b + 1)
        return float(min(1.0, 2 * min(below, above)))
    # basic: 0 is outside the level-alpha interval iff 2θ̂ lies outside the resamples' alpha/2 tails
    below = (np.sum(boot <= 2 * theta) + 1) / (b + 1)
    above = (np.sum(boot >= 2 * theta) + 1) / (b + 1)
    p_basic = float(min(1.0, 2 * min(below, above)))
    if method == "basic":
        return p_basic
    if not _bca_levels(boot, theta, jack, 0.05)[1].all():
        return p_basic  # the 95 % interval used the basic endpoint(s): the test follows it
    z0, a = _bias_z0(boot, theta), _acceleration(jack)
    share0 = (np.sum(boot < 0) + 0.5 * np.sum(boot == 0)) / b
    w = float(ndtri(min(max(share0, 0.5 / b), 1 - 0.5 / b))) - z0
    if 1 + a * w <= 0:
        return p_basic
    z_alpha = w / (1 + a * w) - z0  # the level whose BCa endpoint is exactly 0
    return float(min(1.0, 2 * min(ndtr(z_alpha), 1 - ndtr(z_alpha))))


def _shared_ids(metric_a: Resamplable, metric_b: Resamplable) -> list[str]:
    sets = [set(m.ids(s)) for m in (metric_a, metric_b) for s in ("reference", "generated")]
    return sorted(set.intersection(*sets))


def _columns(ids: list[str], shared: list[str]) -> np.ndarray:
    pos = {cid: k for k, cid in enumerate(ids)}
    return np.array([pos[c] for c in shared], dtype=np.int64)


def _spread(counts: np.ndarray, cols: np.ndarray, n: int) -> np.ndarray:
    """Counts over the shared ids → counts over a metric's own ids (absent ids get 0)."""
    out = np.zeros((len(counts), n), dtype=np.int64)
    out[:, cols] = counts
    return out


def paired_comparison(metric_a: Resamplable, metric_b: Resamplable, n_boot: int = 1000, seed: int = 0,
                      method: str = "bca", alpha: float = 0.05) -> dict:
    """A − B over the clip ids both systems (and the reference) share, with a clip-paired bootstrap.

    Each resample draws the shared ids once, with replacement, and uses that same draw for the
    reference side and for both systems' generated sides; set-level metrics (FAD, KAD) are
    recomputed on it, paired metrics (KLD, MCC) average over it. So clip-level variation common to
    both systems (a hard caption) cancels in the difference. Returns ``diff`` (A − B on the shared
    ids), ``ci95`` (``method`` interval at 1 − alpha, containing ``diff``), ``p_value`` (two-sided,
    the interval inverted: H0 "no difference"), ``n_pairs`` and ``method``. Lower-is-better or
    higher-is-better is the caller's reading: the sign is A − B.
    """
    if type(metric_a) is not type(metric_b) or metric_a.config() != metric_b.config():
        raise ValueError(f"cannot compare {type(metric_a).__name__}{metric_a.config()} with "
                         f"{type(metric_b).__name__}{metric_b.config()}: different metrics or settings")
    shared = _shared_ids(metric_a, metric_b)
    if len(shared) < 2:
        raise ValueError(f"{metric_a.name}: the two systems share {len(shared)} clip id(s) with the "
                         "reference; a paired comparison needs at least 2")
    theta = float(metric_a.value_on(shared, shared) - metric_b.value_on(shared, shared))
    rng = np.random.default_rng(seed)
    counts = _multinomial_counts(rng, n_boot, len(shared))
    jrows = _jackknife_rows(len(shared), rng) if method == "bca" else np.zeros((0, len(shared)), np.int64)

    def diffs(rows: np.ndarray) -> np.ndarray:
        out = np.zeros(len(rows))
        for sign, m in ((1.0, metric_a), (-1.0, metric_b)):
            ref_ids, gen_ids = list(m.ids("reference")), list(m.ids("generated"))
            rc = _spread(rows, _columns(ref_ids, shared), len(ref_ids))
            gc = _spread(rows, _columns(gen_ids, shared), len(gen_ids))
            out += sign * _values_on_counts(m, ref_ids, gen_ids, rc, gc)
        return out

    boot = diffs(counts)
    jack = [diffs(jrows)] if method == "bca" else []
    lo, hi = _interval(theta, boot, jack, method, alpha)
    return {"diff": theta, "ci95": [lo, hi], "p_value": _p_value(theta, boot[np.isfinite(boot)], jack, method),
            "n_pairs": len(shared), "method": f"clip-paired bootstrap ({method}, {n_boot} resamples, seed {seed})"}


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values, in the input order (Holm 1979).

    Sorted ascending, p_(i) is multiplied by (m − i + 1), the running maximum keeps them monotone
    and 1 caps them; rejecting where adjusted p < alpha controls the family-wise error at alpha.
    ``None``/NaN entries (a comparison that could not be made) stay ``None`` and do not count in m.
    """
    vals = [None if p is None or (isinstance(p, float) and math.isnan(p)) else float(p) for p in pvalues]
    for p in vals:
        if p is not None and not 0.0 <= p <= 1.0:
            raise ValueError(f"p-values must lie in [0, 1], got {p}")
    order = sorted((p, k) for k, p in enumerate(vals) if p is not None)
    m, running = len(order), 0.0
    out: list[float | None] = [None] * len(vals)
    for i, (p, k) in enumerate(order):
        running = max(running, min(1.0, (m - i) * p))
        out[k] = running
    return out  # type: ignore[return-value]
