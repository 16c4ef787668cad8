"""The jackknife's bias-corrected t interval (``metrics.intervals``, ``method="jackknife"``): what FAD, KAD, KLD and
MCC report (issue 27). Checked against independent formulations — scipy's Student-t interval and paired t-test
for a mean of per-clip values, a delete-one loop over stacked frames for FAD — and by simulation where FAD's
bias is several standard errors (30 clips a side, the setting BCa over-covered at 1.0 in
docs/figures/interval_coverage_conditions.json before)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from benchmarks.coverage_data import Condition, World
from benchmarks.interval_coverage import BatchedFAD
from metrics.fad import frechet_distance
from metrics.fad_metric import FAD
from metrics.intervals import _jackknife, bootstrap_interval, paired_comparison
from metrics.kad import KAD
from metrics.kld import KLD
from metrics.mcc import MCC


def _mcc(rng, caps, ids, strength):
    m = MCC(n_boot=10)
    m.update("reference", dict(zip(ids, caps)))
    m.update("generated", {i: strength * c + rng.normal(size=(4, len(c))) / 3 for i, c in zip(ids, caps)})
    return m


def test_the_four_metrics_declare_the_jackknife_interval():
    assert {m.interval_method for m in (FAD, KAD, KLD, MCC)} == {"jackknife"}


def test_for_a_mean_it_is_the_student_t_interval_and_the_paired_t_test():
    rng = np.random.default_rng(7)
    ids = [f"c{i:02d}" for i in range(25)]
    caps = rng.normal(size=(25, 8))
    a, b = _mcc(rng, caps, ids, 1.0), _mcc(rng, caps, ids, 0.9)
    cos_a, cos_b = (np.array([m.cosines()[i] for i in ids]) for m in (a, b))
    lo, hi = a.interval()
    ref = stats.t.interval(0.95, len(ids) - 1, loc=cos_a.mean(), scale=stats.sem(cos_a))
    np.testing.assert_allclose((lo, hi), ref, rtol=1e-10)
    out = paired_comparison(a, b, method="jackknife")
    test = stats.ttest_rel(cos_a, cos_b)
    assert out["p_value"] == pytest.approx(test.pvalue, rel=1e-9)
    diff_ci = test.confidence_interval(0.95)
    np.testing.assert_allclose(out["ci95"], (diff_ci.low, diff_ci.high), rtol=1e-9)
    assert (out["p_value"] < 0.05) == (not out["ci95"][0] <= 0 <= out["ci95"][1])
    assert out["method"] == "clip-paired jackknife (bias-corrected t, 25 deletions)"


def test_fad_bias_and_spread_are_a_delete_one_loop_over_each_side():
    """Reference and generated sides of different clips: each side jackknifed on its own, biases and variances
    summed, Welch–Satterthwaite degrees of freedom; every value here from frechet_distance on stacked frames."""
    rng = np.random.default_rng(3)
    ref = {f"r{i:02d}": rng.normal(size=(6, 3)) for i in range(11)}
    gen = {f"g{i:02d}": rng.normal(size=(6, 3)) * 1.3 + 0.8 for i in range(8)}
    m = FAD(n_boot=10)
    m.update("reference", ref)
    m.update("generated", gen)

    def fad(r, g):
        x, y = np.concatenate(r), np.concatenate(g)
        return frechet_distance(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))

    r, g = list(ref.values()), list(gen.values())
    theta = fad(r, g)
    bias, parts = 0.0, []
    for jack in ([fad(r[:k] + r[k + 1:], g) for k in range(len(r))], [fad(r, g[:k] + g[k + 1:]) for k in range(len(g))]):
        t, n = np.array(jack), len(jack)
        bias += (n - 1) * (t.mean() - theta)
        parts.append(((n - 1) / n * ((t - t.mean()) ** 2).sum(), n - 1))
    var = sum(v for v, _ in parts)
    dof = var**2 / sum(v * v / d for v, d in parts)
    half = stats.t.ppf(0.975, dof) * np.sqrt(var)
    lo, hi = theta - bias - half, theta - bias + half  # for the population value: not widened to θ̂
    assert lo > 0  # not moved onto FAD's range: the comparison is of the formula
    np.testing.assert_allclose(m.interval(), (lo, hi), rtol=1e-9)
    assert m.compute().value == pytest.approx(theta, rel=1e-10)  # the point value is untouched


def test_fad_interval_covers_where_its_bias_is_several_standard_errors():
    """30 clips × 10 frames a side, d = 32 (``benchmarks.coverage_data``'s Gaussian condition): FAD's bias is
    ≈5 standard errors, yet θ̂ − b_J ± t·se_J covers the population value in 0.90–0.99 of 200 runs. With
    this bias the plug-in θ̂ lies above the interval in most runs, as it lies above the population value:
    the interval is not widened to θ̂ (widened, its upper end was θ̂ and only its lower end could miss)."""
    world = World(Condition("gaussian"))
    true = frechet_distance(world.mu[0], world.cov[0], world.mu[1], world.cov[1])
    rng = np.random.default_rng(27)
    ids = [f"c{i:02d}" for i in range(30)]
    reps, hits, above_theta, estimates = 200, 0, 0, []
    for _ in range(reps):
        m = BatchedFAD(n_boot=10)
        m.update("reference", dict(zip(ids, world.frames(rng, 0, 30))))
        m.update("generated", dict(zip(ids, world.frames(rng, 1, 30))))
        lo, hi = bootstrap_interval(m, method="jackknife")
        theta = m.value_on(ids, ids)
        jack = [m.value_on_counts(1 - np.eye(30), 1 - np.eye(30))]  # delete one caption from both sides
        centre, se, dof = _jackknife(theta, jack)
        half = stats.t.ppf(0.975, dof) * se
        hits += lo <= true <= hi
        above_theta += theta > hi
        assert lo == pytest.approx(centre - half, rel=1e-12) and hi == pytest.approx(centre + half, rel=1e-12)
        estimates.append(theta)
    assert np.mean(estimates) - true > 3 * np.std(estimates)  # the bias the interval has to remove
    assert 0.90 <= hits / reps <= 0.99, hits / reps
    assert above_theta / reps > 0.5  # the plug-in value above its own interval: the bias, shown
