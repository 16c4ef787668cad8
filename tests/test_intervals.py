"""Intervals and paired tests (metrics.intervals): coverage and error rates proven by simulation.

The FAD simulations need thousands of Fréchet distances per replication, so they use the pipeline's
``metrics.fad_metric.FAD`` with its resamples batched (``benchmarks.interval_coverage.BatchedFAD``:
one Cholesky + one eigvalsh per resample, vectorised over resamples); a test checks the two agree.
"""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.interval_coverage import BatchedFAD
from metrics.fad import frechet_distance
from metrics.fad_metric import FAD
from metrics.intervals import bootstrap_interval, holm, paired_comparison, wilson_ci
from metrics.metric import PerClipOutputs
from metrics.result import MetricResult

# ----------------------------------------------------------------------------- test-local metrics


class MeanScore(PerClipOutputs):
    """A paired metric: the mean of per-clip scalars of the generated side (like KLD/MCC per pair)."""

    name = "mean"

    def value_on(self, ref_ids, gen_ids):
        return float(np.mean([float(self.outputs["generated"][i]) for i in gen_ids]))

    def value_on_counts(self, ref_counts, gen_counts):
        x = np.array([float(self.outputs["generated"][i]) for i in self.ids("generated")])
        w = np.asarray(gen_counts, np.float64)
        return (w @ x) / w.sum(1)

    def compute(self):
        return MetricResult("mean", self.value_on([], self.ids("generated")))


class NoHook(BatchedFAD):
    """The same FAD without the batched hook: intervals must fall back to value_on."""

    value_on_counts = None  # type: ignore[assignment]

    def value_on(self, ref_ids, gen_ids):
        rows = []
        for side, ids in (("reference", ref_ids), ("generated", gen_ids)):
            pos = {c: k for k, c in enumerate(self.ids(side))}
            row = np.zeros((1, len(pos)))
            np.add.at(row[0], [pos[c] for c in ids], 1)
            rows.append(row)
        return float(BatchedFAD.value_on_counts(self, *rows)[0])


def _covariance(rng, d):
    a = rng.normal(size=(d, d)) / np.sqrt(d)
    return a @ a.T + 0.5 * np.eye(d)


def _gaussian_clips(rng, mu, chol, n_clips, frames, prefix="c"):
    x = mu + rng.normal(size=(n_clips, frames, len(mu))) @ chol.T
    return {f"{prefix}{i:04d}": x[i] for i in range(n_clips)}


def _fad_state(rng, pop, n_clips=200, frames=10, cls=BatchedFAD):
    mu1, l1, mu2, l2 = pop
    m = cls(n_boot=0)
    m.update("reference", _gaussian_clips(rng, mu1, l1, n_clips, frames))
    m.update("generated", _gaussian_clips(rng, mu2, l2, n_clips, frames))
    return m


@pytest.fixture(scope="module")
def population():
    """Two Gaussian frame distributions in d = 32 and their closed-form Fréchet distance."""
    rng = np.random.default_rng(2024)
    d = 32
    s1, s2 = _covariance(rng, d), _covariance(rng, d)
    mu1, mu2 = np.zeros(d), rng.normal(size=d) * 0.15
    return (mu1, np.linalg.cholesky(s1), mu2, np.linalg.cholesky(s2)), frechet_distance(mu1, s1, mu2, s2)


# ----------------------------------------------------------------------------- the adapter is FAD


def test_batched_fad_equals_the_pipeline_fad(population):
    pop, _ = population
    rng = np.random.default_rng(5)
    fast = _fad_state(rng, pop, n_clips=30)
    ref = FAD(n_boot=0)
    ref.update("reference", fast.outputs["reference"])
    ref.update("generated", fast.outputs["generated"])
    counts = np.random.default_rng(0).multinomial(30, np.ones(30) / 30, size=(4, 2))
    np.testing.assert_allclose(fast.value_on_counts(counts[:, 0], counts[:, 1]),
                               ref.value_on_counts(counts[:, 0], counts[:, 1]), rtol=1e-9)
    ids = fast.ids("generated")
    assert fast.value_on(ids, ids) == pytest.approx(ref.compute().value, rel=1e-9)
    assert isinstance(fast, FAD)


# ----------------------------------------------------------------------------- coverage by simulation


def test_bca_interval_covers_population_fad(population):
    """≥200 replications, 200 clips × 10 frames per side, d = 32: 95 % BCa covers in 0.90–0.99.

    The old percentile interval over the same resamples lies above the population value almost
    every time (docs/protocol.md, "Intervals", records both, from benchmarks/interval_coverage.py).
    """
    pop, true_fad = population
    rng = np.random.default_rng(17)
    reps, covered, covered_pct, contains = 200, 0, 0, 0
    for r in range(reps):
        m = _fad_state(rng, pop)
        ids = m.ids("generated")
        theta = m.value_on(ids, ids)
        lo, hi = bootstrap_interval(m, n_boot=400, seed=r, jackknife_groups=20)
        covered += lo <= true_fad <= hi
        contains += lo <= theta <= hi
        if r < 20:
            plo, phi = bootstrap_interval(m, n_boot=200, seed=r, method="percentile")
            covered_pct += plo <= true_fad <= phi
    assert contains == reps
    assert 0.90 <= covered / reps <= 0.99, covered / reps
    assert covered_pct / 20 < 0.5  # the bias the BCa interval removes is real at this size


def test_interval_contains_the_estimate_and_is_seeded(population):
    pop, _ = population
    m = _fad_state(np.random.default_rng(3), pop, n_clips=40, frames=10)
    theta = m.value_on(m.ids("reference"), m.ids("generated"))
    for method in ("bca", "basic", "percentile"):
        lo, hi = bootstrap_interval(m, n_boot=200, seed=1, method=method)
        assert lo <= theta <= hi and lo < hi
        assert (lo, hi) == bootstrap_interval(m, n_boot=200, seed=1, method=method)
    assert bootstrap_interval(m, n_boot=200, seed=1) != bootstrap_interval(m, n_boot=200, seed=2)
    with pytest.raises(ValueError, match="method must be one of"):
        bootstrap_interval(m, n_boot=10, method="studentized")


def test_value_on_fallback_gives_the_same_interval(population):
    pop, _ = population
    rng = np.random.default_rng(4)
    fast = _fad_state(rng, pop, n_clips=12, frames=8)
    slow = NoHook(n_boot=0)
    for side in ("reference", "generated"):
        slow.update(side, fast.outputs[side])
    a = bootstrap_interval(fast, n_boot=60, seed=0)
    b = bootstrap_interval(slow, n_boot=60, seed=0)
    np.testing.assert_allclose(a, b, rtol=1e-9)


def test_both_sides_are_resampled(population):
    """Holding the reference fixed understates the spread: the two-sided interval is wider."""
    pop, _ = population
    m = _fad_state(np.random.default_rng(8), pop, n_clips=60)

    class FixedRef(BatchedFAD):
        def value_on_counts(self, ref_counts, gen_counts):
            return super().value_on_counts(np.ones_like(ref_counts), gen_counts)

    f = FixedRef(n_boot=0)
    for side in ("reference", "generated"):
        f.update(side, m.outputs[side])
    lo, hi = bootstrap_interval(m, n_boot=400, seed=0, method="basic")
    flo, fhi = bootstrap_interval(f, n_boot=400, seed=0, method="basic")
    assert (hi - lo) > 1.2 * (fhi - flo)


def test_bca_for_a_mean_agrees_with_scipy():
    """For a paired mean, BCa (delete-one jackknife) matches scipy.stats.bootstrap(method='BCa')."""
    from scipy.stats import bootstrap

    rng = np.random.default_rng(11)
    x = rng.gamma(2.0, 1.0, size=80)  # skewed, so BCa differs from the percentile interval
    m = MeanScore()
    m.update("generated", {f"c{i:03d}": v for i, v in enumerate(x)})
    lo, hi = bootstrap_interval(m, n_boot=4000, seed=0)
    ref = bootstrap((x,), np.mean, n_resamples=4000, method="BCa", random_state=1).confidence_interval
    width = ref.high - ref.low
    assert abs(lo - ref.low) < 0.06 * width and abs(hi - ref.high) < 0.06 * width
    single = MeanScore()
    single.update("generated", {"only": 1.5})
    assert bootstrap_interval(single, n_boot=50) == (1.5, 1.5)


# ----------------------------------------------------------------------------- paired comparisons


def _rejections(make_pair, reps, n_boot):
    rej = 0
    for r in range(reps):
        a, b = make_pair(np.random.default_rng(1000 + r))
        out = paired_comparison(a, b, n_boot=n_boot, seed=r)
        lo, hi = out["ci95"]
        assert lo <= out["diff"] <= hi
        assert (out["p_value"] < 0.05) == (not lo <= 0 <= hi) or abs(out["p_value"] - 0.05) < 0.02
        rej += out["p_value"] < 0.05
    return rej / reps


def _mean_pair(shift):
    def make(rng):
        n = 60
        hard = rng.normal(size=n) * 4.0  # per-caption difficulty shared by both systems
        a, b = MeanScore(), MeanScore()
        for m, s in ((a, shift), (b, 0.0)):
            m.update("reference", {f"c{i:02d}": 0.0 for i in range(n)})
            m.update("generated", {f"c{i:02d}": hard[i] + s + rng.normal() for i in range(n)})
        return a, b

    return make


def _fad_pair(shift):
    rng0 = np.random.default_rng(99)
    d = 8
    s = _covariance(rng0, d)
    chol = np.linalg.cholesky(s)

    def make(rng):
        n = 60
        ref = _gaussian_clips(rng, np.zeros(d), chol, n, 10)
        a, b = BatchedFAD(n_boot=0), BatchedFAD(n_boot=0)
        for m, mu in ((a, np.full(d, 0.25 + shift)), (b, np.full(d, 0.25))):
            m.update("reference", ref)
            m.update("generated", _gaussian_clips(rng, mu, chol, n, 10))
        return a, b

    return make


def test_identical_systems_are_rejected_at_most_at_the_nominal_rate():
    # 200 replications: binomial sd of a 0.05 rate is 0.015; allow 0.05 + 2.5 sd
    assert _rejections(_mean_pair(0.0), 200, 400) <= 0.09
    assert _rejections(_fad_pair(0.0), 200, 300) <= 0.09


def test_a_planted_difference_is_found():
    assert _rejections(_mean_pair(0.6), 60, 400) >= 0.8  # 0.6 = 3.3 paired standard errors
    assert _rejections(_fad_pair(0.12), 60, 300) >= 0.8


def test_pairing_cancels_shared_difficulty():
    """With a large per-caption effect, the paired interval is much narrower than unpaired ones."""
    a, b = _mean_pair(0.5)(np.random.default_rng(0))
    out = paired_comparison(a, b, n_boot=500, seed=0)
    la, ha = bootstrap_interval(a, n_boot=500, seed=0)
    assert out["n_pairs"] == 60 and out["ci95"][1] - out["ci95"][0] < 0.5 * (ha - la)
    assert out["method"].startswith("clip-paired bootstrap (bca")
    with pytest.raises(ValueError, match="different metrics"):
        paired_comparison(a, BatchedFAD(n_boot=0))


def test_paired_comparison_uses_only_shared_ids():
    a, b = _mean_pair(0.0)(np.random.default_rng(1))
    extra = MeanScore()
    for side in ("reference", "generated"):
        extra.update(side, {k: v for k, v in b.outputs[side].items() if k < "c30"})
    out = paired_comparison(a, extra, n_boot=100)
    shared = [f"c{i:02d}" for i in range(30)]
    assert out["n_pairs"] == 30
    assert out["diff"] == pytest.approx(a.value_on([], shared) - extra.value_on([], shared))


# ----------------------------------------------------------------------------- helpers


def test_holm_matches_the_step_down_definition():
    p = [0.01, 0.04, 0.03, 0.005, None, 0.5]
    adj = holm(p)
    # sorted: 0.005, 0.01, 0.03, 0.04, 0.5 (m = 5): ×5, ×4, ×3, ×2, ×1, running max, cap 1
    expected = [max(0.025, 0.04), max(0.025, 0.04, 0.09, 0.08), max(0.025, 0.04, 0.09), 0.025, None, 0.5]
    assert adj[4] is None
    np.testing.assert_allclose([adj[i] for i in (0, 1, 2, 3, 5)], [expected[i] for i in (0, 1, 2, 3, 5)])
    rng = np.random.default_rng(0)
    for _ in range(50):  # rejections at 0.05 = the classic procedure's
        ps = list(rng.uniform(0, 0.1, size=6))
        order = np.argsort(ps)
        reject = np.zeros(6, bool)
        for k, i in enumerate(order):
            if ps[i] >= 0.05 / (6 - k):
                break
            reject[i] = True
        assert ((np.array(holm(ps)) < 0.05) == reject).all()
    with pytest.raises(ValueError, match="must lie in"):
        holm([1.5])


def test_wilson_matches_its_closed_form_at_the_ends():
    # Wilson at 0 of 24 and 24 of 24 against the closed form 1 / (1 + n / z²)
    z2 = 1.959963984540054**2
    assert wilson_ci(0, 24) == pytest.approx((0.0, 1 / (1 + 24 / z2)))
    assert wilson_ci(24, 24) == pytest.approx((1 - 1 / (1 + 24 / z2), 1.0))


# ----------------------------------------------------------------------------- one plan per run (issue 28)


def _stacked_fad(m, ref_ids, gen_ids):
    """FAD of the repeated clips' stacked frames: the definition, independent of the resampling code."""
    r = np.concatenate([m.outputs["reference"][i] for i in ref_ids])
    g = np.concatenate([m.outputs["generated"][i] for i in gen_ids])
    return frechet_distance(r.mean(0), np.cov(r, rowvar=False), g.mean(0), np.cov(g, rowvar=False))


def _previous_route(m, n_boot, seed, value):
    """The interval as metrics.intervals computed it before the shared plan, on the draws the plan makes:
    sides with the same ids drawn once by id (the previous paired test's draw, its delete-one jackknife of
    pairs), other sides drawn independently (the previous interval's draws: reference counts, generated
    counts, then each side's delete-one jackknife); every resample through ``value``; the metric's own
    ``interval_method`` (FAD: the jackknife t interval, the test-local mean: BCa)."""
    from metrics.intervals import _interval

    ref_ids, gen_ids = m.ids("reference"), m.ids("generated")
    rng = np.random.default_rng(seed)
    if ref_ids == gen_ids:
        idx = rng.integers(0, len(ids := gen_ids), size=(n_boot, len(ids)))
        boot = np.array([value(m, *[[ids[i] for i in row]] * 2) for row in idx])
        jack = [np.array([value(m, *[ids[:k] + ids[k + 1:]] * 2) for k in range(len(ids))])]
    else:
        draws = [rng.integers(0, len(ids), size=(n_boot, len(ids))) for ids in (ref_ids, gen_ids)]
        boot = np.array([value(m, [ref_ids[i] for i in r], [gen_ids[i] for i in g]) for r, g in zip(*draws)])
        jack = [np.array([value(m, ref_ids[:k] + ref_ids[k + 1:], gen_ids) for k in range(len(ref_ids))]),
                np.array([value(m, ref_ids, gen_ids[:k] + gen_ids[k + 1:]) for k in range(len(gen_ids))])]
    return _interval(value(m, ref_ids, gen_ids), boot, jack, m.interval_method, 0.05)


def _previous_pair(a, b, n_boot, seed, value):
    from metrics.intervals import _interval, _p_value

    ids = a.ids("generated")  # the systems and the reference share every id here
    idx = np.random.default_rng(seed).integers(0, len(ids), size=(n_boot, len(ids)))

    def diff(sub):
        return value(a, sub, sub) - value(b, sub, sub)

    theta = diff(ids)
    boot = np.array([diff([ids[i] for i in row]) for row in idx])
    jack = [np.array([diff(ids[:k] + ids[k + 1:]) for k in range(len(ids))])]
    return _interval(theta, boot, jack, a.interval_method, 0.05), _p_value(theta, boot, jack, a.interval_method)


def test_one_plan_per_run_gives_each_statistic_its_previous_value():
    """run_statistics.statistics (one ResamplingPlan, values shared across systems and pairs, FAD's reference
    factor shared) = each interval and paired test computed the previous way on the plan's draws,
    resample by resample through the definition (stacked frames), to 1e-10 — for a full-rank FAD
    (Cholesky factor), a singular one (fewer frames than dimensions: the frames factor), a FAD whose
    reference holds 3 more clips than the systems (sides drawn independently) and a paired mean."""
    from metrics.evaluate import GROUND_TRUTH
    from metrics.run_statistics import SourceResult, statistics

    rng = np.random.default_rng(28)
    n, n_boot = 12, 40
    ids = [f"c{i:02d}" for i in range(n)]
    shapes = {"fad_full": (10, 4), "fad_singular": (2, 40), "fad_unpaired": (10, 4)}
    refs = {k: {i: rng.normal(size=s) for i in ids} for k, s in shapes.items()}
    refs["fad_unpaired"].update({f"r{i}": rng.normal(size=(10, 4)) for i in range(3)})
    results = {}
    for name, shift in (("a", 0.0), ("b", 0.3), ("c", 0.6)):
        states = {}
        for key, shape in shapes.items():
            states[key] = FAD(n_boot=0)
            states[key].update("reference", refs[key])
            states[key].update("generated", {i: rng.normal(size=shape) * (1 + shift) + shift for i in ids})
        states["mean"] = MeanScore()
        states["mean"].update("reference", dict.fromkeys(ids, 0.0))
        states["mean"].update("generated", {i: rng.normal() + shift for i in ids})
        results[name] = SourceResult(name, None, dict.fromkeys(ids, ""), states=states,
                                     metrics={k: MetricResult(k, 0.0) for k in states})
    rows = statistics(SourceResult(GROUND_TRUTH, None, {}), results, n_boot, seed=3)

    def mean_value(m, _, gen_ids):
        return m.value_on([], gen_ids)

    for key in (*shapes, "mean"):
        value = _stacked_fad if key in shapes else mean_value
        for name, res in results.items():
            lo, hi = _previous_route(res.states[key], n_boot, 3, value)
            if key in shapes:  # Metric.interval moves endpoints onto FAD's range (≥ 0), then and now
                lo, hi = max(lo, 0.0), max(hi, 0.0)
            np.testing.assert_allclose(res.metrics[key].ci95, (lo, hi), rtol=1e-10, atol=1e-12, err_msg=f"{name} {key}")
        for row in (r for r in rows if r["metric"] == key):
            ci, p = _previous_pair(results[row["system_a"]].states[key], results[row["system_b"]].states[key],
                                   n_boot, 3, value)
            np.testing.assert_allclose(row["ci95"], ci, rtol=1e-10, atol=1e-12, err_msg=f"{row}")
            assert abs(row["p_value"] - p) <= 1e-10, (row, p)
    assert len(rows) == 12 and all(r["p_value"] is not None for r in rows)


def test_the_reference_factor_is_computed_once_per_resample(monkeypatch):
    """Three systems against one reference: each resampled reference covariance is factored once (not once
    per system or per pair), and each system's values on a draw are computed once for all its pairs."""
    import metrics.fad_metric as fm
    from metrics.evaluate import GROUND_TRUTH
    from metrics.resampling import Resampler
    from metrics.run_statistics import SourceResult, statistics

    rng = np.random.default_rng(1)
    ids = [f"c{i:02d}" for i in range(15)]
    ref = {i: rng.normal(size=(6, 3)) for i in ids}
    results = {}
    for name in "abc":
        m = FAD(n_boot=0)
        m.interval_method = "bca"  # the bootstrap draw and the jackknife (FAD's own jackknife interval reads no draw)
        m.update("reference", ref)
        m.update("generated", {i: rng.normal(size=(6, 3)) for i in ids})
        results[name] = SourceResult(name, None, dict.fromkeys(ids, ""), states={"fad": m},
                                     metrics={"fad": MetricResult("fad", 0.0)})
    factored = []
    original = fm.FAD._factors
    monkeypatch.setattr(fm.FAD, "_factors", staticmethod(lambda cov: factored.append(len(cov)) or original(cov)))
    evaluated = []
    original_prefetch = Resampler.prefetch
    monkeypatch.setattr(Resampler, "prefetch", lambda self, jobs: (original_prefetch(self, jobs), evaluated.append(self.evaluated_rows)))
    statistics(SourceResult(GROUND_TRUTH, None, {}), results, 50, 0)
    # resampled references: the one draw of the clip ids (50 rows) and its delete-one jackknife (15), each
    # shared by every interval and paired test; then one point value θ̂ per interval (3) and per system of
    # each pair (6), one row each
    assert sorted(c for c in factored if c > 1) == [15, 50] and factored.count(1) == 3 + 6, factored
    # per system: the draw and the jackknife (50 + 15) for its interval, nothing again for its two pairs
    assert max(evaluated) == 3 * (50 + 15), max(evaluated)


def test_rows_left_to_frechet_distance_get_its_value():
    """The batched FAD step hands a row it would treat otherwise (a failed factor, a negative value) to
    ``frechet_distance`` through ``FAD._exact``: that route gives the batched value on ordinary rows too,
    for a reference kept as frames (fewer frames than dimensions) and one factored by Cholesky."""
    rng = np.random.default_rng(6)
    for frames, d in ((2, 12), (8, 3)):
        m = FAD(n_boot=0)
        m.update("reference", {f"c{i}": rng.normal(size=(frames, d)) for i in range(5)})
        m.update("generated", {f"c{i}": rng.normal(size=(frames, d)) + 0.2 for i in range(5)})
        counts = np.random.default_rng(0).multinomial(5, np.ones(5) / 5, size=(6, 2)).astype(np.float64)
        batched = m.value_on_counts(counts[:, 0], counts[:, 1])
        exact = [FAD._exact(m, m, counts[:, 0], counts[:, 1], j) for j in range(6)]
        np.testing.assert_allclose(batched, exact, rtol=1e-10)
        ids = m.ids("generated")
        assert m.value_on(ids, ids) == pytest.approx(m.compute().value, rel=1e-10)
