"""Confidence intervals and paired system tests: one helper per job, every metric through one hook.

Why this module: a set-level metric such as FAD is biased upwards at finite sample size, and a
bootstrap resample (≈63 % unique clips) is biased further, so the plain percentile interval of
the resampled values lies *above* the population value (docs/protocol.md, "Intervals": it covered
a known population Fréchet distance in 0 of 200 simulated replications). The interval here
therefore

- resamples clips of *both* sides (the reference set is a sample too, its variance counts): by clip
  id, once for both sides, when they hold the same ids (reference and generated clip of one caption:
  the caption is the sampling unit, and every system and paired test of a run then reads the same
  draws, ``metrics.resampling``), each side independently when they do not;
- corrects the bias: the default ``method="bca"`` is Efron's bias-corrected and accelerated
  bootstrap (acceleration from a jackknife over the clips of both sides, delete-one up to
  ``JACKKNIFE_GROUPS`` clips per side, else a delete-a-group jackknife over that many groups to
  bound the cost); when the bias is so large, relative to the spread, that a BCa level falls outside
  what ``n_boot`` resamples resolve (FAD at a few thousand frames), the endpoint comes from the
  basic (pivot) interval 2θ̂ − q instead, which is BCa's large-bias limit;
- always contains the point estimate (an endpoint is moved to θ̂ if needed; this widens and never
  shrinks the interval, so it cannot lower coverage). The jackknife interval below does not: see there.

``method="jackknife"`` (what FAD, KAD, KLD and MCC declare, ``Metric.interval_method``) is the
jackknife's bias-corrected Student-t interval θ̂ − b_J ± t_ν · se_J over the same delete-one (or
delete-a-group) rows BCa reads its acceleration from (Efron & Tibshirani 1993, ch. 11; Tukey 1958),
ν by Welch–Satterthwaite over the jackknifed samples. Why, measured where the data are unlike the
Gaussian simulations (issue 27, docs/protocol.md "Intervals"): at 30 clips FAD's bias is ≈5 standard
errors, which the jackknife estimates to a few per cent while the bootstrap's spread is ≈1.6× the
estimator's (the basic fallback over-covered at 1.0); KAD's point value is biased upwards when frames of a
clip are correlated (its within-clip pairs), a 1/n bias the clip jackknife removes and the bootstrap,
whose resamples keep those pairs, cannot see (coverage 0.40); for a mean of per-clip values (KLD, MCC) it
is the Student-t interval and its paired test the paired t-test, whose false-positive rate the
normal-theory BCa exceeded at 30 clips. It is an interval for the population value and is not widened to
contain θ̂: where the bias is several standard errors (FAD at a few dozen clips) the plug-in value lies
above it, as it lies above the population value. Widening it to θ̂ made its upper end θ̂ itself, so only the
lower end could miss and FAD covered at 0.985–1.000 in every condition (1.000 with t₃ frames, whose
jackknife standard error runs large); without it, FAD covers at 0.955–0.985 (docs/protocol.md).

Everything goes through ``Metric.value_on(ref_ids, gen_ids)`` (ids may repeat) and
``Metric.ids(side)``. A metric may offer the batched fast path
``value_on_counts(ref_counts, gen_counts) -> values`` with ``counts`` of shape [B, n_side] aligned
with ``ids(side)`` (a clip drawn k times has count k, a jackknifed clip 0); FAD-like metrics can
then form each resample's mean and covariance as weighted sums of per-clip sums and Gram matrices.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from scipy.special import ndtr, ndtri, stdtr, stdtrit

from metrics.resampling import JACKKNIFE_GROUPS, Job, Resamplable, Resampler, ResamplingPlan, ones

METHODS = ("bca", "basic", "percentile", "jackknife")
# what the report and the dashboard say when a value lies outside its own interval (the jackknife's is bias-corrected)
VALUE_OUTSIDE_INTERVAL_NOTE = (
    "A value outside its own interval is not an error: the intervals of FAD, KAD, KLD and MCC are the jackknife's "
    "bias-corrected intervals of the population value, and at a few dozen clips FAD's plug-in value (the one papers "
    "report) is biased upwards by several standard errors (docs/protocol.md, \"Intervals and paired comparisons\").")
JACKKNIFE_METHODS = ("bca", "jackknife")  # the methods that read the jackknife rows


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


# ----------------------------------------------------------------------------- interval arithmetic


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


def _jackknife(theta: float, jack: list[np.ndarray]) -> tuple[float, float, float]:
    """(θ̂ − b_J, se_J, ν): the jackknife's bias-corrected value, standard error and degrees of freedom.

    Per independent sample k with g_k deletions (clips or groups) θ_(kj): bias (g_k − 1)(θ̄_k − θ̂),
    variance (g_k − 1)/g_k Σ_j (θ_(kj) − θ̄_k)², both summed over samples (Efron & Tibshirani 1993,
    ch. 11; a delete-a-group row removes 1/g of the clips, so the same formulas hold with g).
    ν: Welch–Satterthwaite over the samples' variances, each with g_k − 1 degrees of freedom (one
    sample: g − 1, the paired t-test's). Non-finite deletions are dropped; se 0 when nothing varies."""
    bias, parts = 0.0, []
    for t in jack:
        t = t[np.isfinite(t)]
        if len(t) < 2:
            continue
        g = len(t)
        bias += (g - 1) * (float(t.mean()) - theta)
        parts.append(((g - 1) / g * float(((t - t.mean()) ** 2).sum()), g - 1))
    var = sum(v for v, _ in parts)
    dof = var * var / sum(v * v / d for v, d in parts if v > 0) if var > 0 else math.inf
    return theta - bias, math.sqrt(var), dof


def _interval(theta: float, boot: np.ndarray, jack: list[np.ndarray], method: str,
              alpha: float) -> tuple[float, float]:
    """The (lo, hi) of ``method`` from a point value, its bootstrap values and jackknife values."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    if method == "jackknife":
        centre, se, dof = _jackknife(theta, jack)  # an interval for the population value: θ̂ need not lie in it
        half = float(stdtrit(dof, 1 - alpha / 2)) * se if se > 0 else 0.0
        return float(centre - half), float(centre + half)
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
                       alpha: float = 0.05, jackknife_groups: int = JACKKNIFE_GROUPS, plan: ResamplingPlan | None = None,
                       resampler: Resampler | None = None) -> tuple[float, float]:
    """(lo, hi): a 1 − alpha interval for the metric's population value, always containing its point value.

    Clips of both sides are resampled with replacement (``n_boot`` times, seeded) and the metric
    recomputed through ``value_on``: by clip id, once for both sides, when the two sides hold the same
    ids (``interval_jobs``), else each side independently; paired metrics read only the generated ids.
    ``method``: ``"bca"`` (default, see the module docstring), ``"basic"`` (2θ̂ − q),
    ``"percentile"`` (the old interval, biased for FAD; kept for comparison) or ``"jackknife"`` (the
    bias-corrected t interval of the module docstring, from the jackknife rows alone). A single clip on
    both sides gives the zero-width interval (θ̂, θ̂) (nothing to resample). ``jackknife_groups``
    bounds the acceleration's cost at 2 × that many extra evaluations. ``plan`` and ``resampler``:
    the run's shared draws and values (``metrics.resampling``; they replace n_boot, seed and
    jackknife_groups), so many intervals and paired tests evaluate each resample once.
    """
    return bootstrap_intervals(metric, (method,), n_boot, seed, alpha, jackknife_groups, plan, resampler)[method]


def interval_jobs(metric: Resamplable, plan: ResamplingPlan, bca: bool = True, boot: bool = True) -> list[Job | None]:
    """[bootstrap, reference jackknife, generated jackknife] resamples of ``metric``'s interval (a jackknife
    is None without ``bca`` or with fewer than 2 clips on its side, the bootstrap None without ``boot``:
    the jackknife interval reads no bootstrap); [] when there is nothing to resample.

    When both sides hold the same ids (a paired design: reference and generated clip of one caption),
    the clip ids are drawn once for both sides and the jackknife deletes an id from both (one sample of
    pairs, second entry): the paired tests' draw, so a system's interval and its paired tests read
    the same values."""
    ref_ids, gen_ids = list(metric.ids("reference")), list(metric.ids("generated"))
    n_r, n_g = len(ref_ids), len(gen_ids)
    if n_r <= 1 and n_g <= 1:
        return []
    if ref_ids == gen_ids:
        draw, jack = plan.paired(n_g)
        return [(metric, draw, draw) if boot else None, (metric, jack, jack) if bca else None, None]
    ref, gen, jr, jg = plan.interval(n_r, n_g)
    if not bca:
        return [(metric, ref, gen) if boot else None, None, None]
    return [(metric, ref, gen) if boot else None, (metric, jr, ones(len(jr.counts), n_g)) if n_r > 1 else None,
            (metric, ones(len(jg.counts), n_r), jg) if n_g > 1 else None]


def bootstrap_intervals(metric: Resamplable, methods: Sequence[str] = METHODS, n_boot: int = 1000, seed: int = 0,
                        alpha: float = 0.05, jackknife_groups: int = JACKKNIFE_GROUPS, plan: ResamplingPlan | None = None,
                        resampler: Resampler | None = None) -> dict[str, tuple[float, float]]:
    """``bootstrap_interval`` for several methods from the same resamples: method → (lo, hi)."""
    for method in methods:
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    plan = plan or ResamplingPlan(n_boot, seed, jackknife_groups)
    resampler = resampler or Resampler()
    ref_ids, gen_ids = list(metric.ids("reference")), list(metric.ids("generated"))
    if not gen_ids:
        raise ValueError(f"{metric.name}: no generated clips to resample")
    theta = float(metric.value_on(ref_ids, gen_ids))
    needs_jack, needs_boot = any(m in JACKKNIFE_METHODS for m in methods), any(m != "jackknife" for m in methods)
    jobs = interval_jobs(metric, plan, needs_jack, needs_boot)
    if not jobs:
        return dict.fromkeys(methods, (theta, theta))
    resampler.prefetch([j for j in jobs if j is not None])
    boot = resampler.values(*jobs[0]) if needs_boot else np.zeros(0)
    jack = [resampler.values(*j) if j else np.zeros(0) for j in jobs[1:]] if needs_jack else []
    return {method: _interval(theta, boot, jack, method, alpha) for method in methods}


# ----------------------------------------------------------------------------- two systems


def _p_value(theta: float, boot: np.ndarray, jack: list[np.ndarray], method: str) -> float:
    """Two-sided p-value of H0 "difference = 0": the smallest alpha whose ``method`` interval excludes 0.

    Inverting the interval keeps the test and the reported ci95 consistent (p < 0.05 exactly when 0
    lies outside ci95; for the bootstrap methods up to the point-estimate containment). Resample shares are counted with +1
    in numerator and denominator, so p is never 0.
    """
    if method == "jackknife":  # the t-test of the bias-corrected difference (the paired t-test for a mean)
        centre, se, dof = _jackknife(theta, jack)
        return float(2 * stdtr(dof, -abs(centre) / se)) if se > 0 else float(centre == 0)
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


def paired_jobs(metric_a: Resamplable, metric_b: Resamplable, plan: ResamplingPlan,
                bca: bool = True, boot: bool = True) -> tuple[list[str], list[list[Job | None]]]:
    """(shared ids, per metric [bootstrap, jackknife] resamples) of the paired test of A and B: the
    plan's draw of the shared ids, as counts over each metric's own reference and generated ids (the
    bootstrap None without ``boot``, the jackknife None without ``bca``)."""
    if type(metric_a) is not type(metric_b) or metric_a.config() != metric_b.config():
        raise ValueError(f"cannot compare {type(metric_a).__name__}{metric_a.config()} with "
                         f"{type(metric_b).__name__}{metric_b.config()}: different metrics or settings")
    shared = _shared_ids(metric_a, metric_b)
    if len(shared) < 2:
        raise ValueError(f"{metric_a.name}: the two systems share {len(shared)} clip id(s) with the "
                         "reference; a paired comparison needs at least 2")
    draw, jack = plan.paired(len(shared))
    out = []
    for m in (metric_a, metric_b):
        ref_ids, gen_ids = list(m.ids("reference")), list(m.ids("generated"))
        cr, cg = _columns(ref_ids, shared), _columns(gen_ids, shared)
        out.append([(m, rows.spread(cr, len(ref_ids)), rows.spread(cg, len(gen_ids))) if wanted else None
                    for rows, wanted in ((draw, boot), (jack, bca))])
    return shared, out


def paired_comparison(metric_a: Resamplable, metric_b: Resamplable, n_boot: int = 1000, seed: int = 0,
                      method: str = "bca", alpha: float = 0.05, plan: ResamplingPlan | None = None,
                      resampler: Resampler | None = None) -> dict:
    """A − B over the clip ids both systems (and the reference) share, with a clip-paired bootstrap (or, with
    ``method="jackknife"``, the clip-paired jackknife's t-test: the same ids, each deleted from both systems).

    Each resample draws the shared ids once, with replacement, and uses that same draw for the
    reference side and for both systems' generated sides; set-level metrics (FAD, KAD) are
    recomputed on it, paired metrics (KLD, MCC) average over it. So clip-level variation common to
    both systems (a hard caption) cancels in the difference. The difference on a resample is the
    difference of the two systems' values on it, so with a shared ``plan`` and ``resampler`` each
    system's values serve every pair it is in. Returns ``diff`` (A − B on the shared
    ids), ``ci95`` (``method`` interval at 1 − alpha; it contains ``diff`` except the jackknife's, which is
    bias-corrected), ``p_value`` (two-sided,
    the interval inverted: H0 "no difference"), ``n_pairs`` and ``method``. Lower-is-better or
    higher-is-better is the caller's reading: the sign is A − B.
    """
    plan = plan or ResamplingPlan(n_boot, seed)
    resampler = resampler or Resampler()
    shared, (jobs_a, jobs_b) = paired_jobs(metric_a, metric_b, plan, method in JACKKNIFE_METHODS, method != "jackknife")
    theta = float(metric_a.value_on(shared, shared) - metric_b.value_on(shared, shared))
    resampler.prefetch([j for j in jobs_a + jobs_b if j is not None])
    diffs = [resampler.values(*ja) - resampler.values(*jb) if ja is not None else np.zeros(0)
             for ja, jb in zip(jobs_a, jobs_b)]
    boot, jack = diffs[0], diffs[1:]
    lo, hi = _interval(theta, boot, jack, method, alpha)
    return {"diff": theta, "ci95": [lo, hi], "p_value": _p_value(theta, boot[np.isfinite(boot)], jack, method),
            "n_pairs": len(shared),
            "method": (f"clip-paired jackknife (bias-corrected t, {len(jack[0]) if jack else 0} deletions)"
                       if method == "jackknife" else
                       f"clip-paired bootstrap ({method}, {plan.n_boot} resamples, seed {plan.seed})")}


def prefetch_statistics(resampler: Resampler, plan: ResamplingPlan, intervals: Sequence[Resamplable] = (),
                        pairs: Sequence[tuple[Resamplable, Resamplable]] = ()) -> None:
    """Evaluate every resample that the intervals of ``intervals`` and the paired tests of ``pairs`` need, in
    one batch per metric class (so FAD decomposes each resampled reference once for all systems).

    A pair that cannot be compared is left out here; ``paired_comparison`` raises its error later."""
    jobs: list[Job] = []
    def boot(m: Resamplable) -> bool:  # the jackknife interval and test read no bootstrap resample
        return getattr(m, "interval_method", "bca") != "jackknife"

    for m in intervals:
        jobs += [j for j in interval_jobs(m, plan, boot=boot(m)) if j is not None]
    for a, b in pairs:
        try:
            jobs += [j for per_metric in paired_jobs(a, b, plan, boot=boot(a))[1] for j in per_metric if j is not None]
        except ValueError:
            continue
    by_class: dict[type, list[Job]] = {}
    for job in jobs:
        by_class.setdefault(type(job[0]), []).append(job)
    for group in by_class.values():
        try:
            resampler.prefetch(group)
        except (ValueError, RuntimeError):
            continue  # the interval or test that needs these values raises the error where it is handled


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
