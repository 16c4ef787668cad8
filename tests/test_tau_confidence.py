"""τ chosen with a confidence (``--tau-confidence``, metrics/memorization/calibration.py): over draws of the
calibration nulls, the per-clip false-alarm rate of τ is ≤ fpr with probability ≥ γ, where the earlier rule
holds it only on average. Checked against independent formulations (uniform order statistics are Beta
distributed; Natrella's approximation of the normal tolerance factor) and by simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import beta, norm

from metrics.memorization import MemorizationError
from metrics.memorization.calibration import check_confidence, clip_rank, clip_tau, tolerance_factor


@pytest.mark.parametrize("n", [299, 500, 2000])
def test_confident_rank_is_the_largest_order_statistic_below_the_quantile_with_confidence(n):
    """The j-th smallest of n uniforms is Beta(j, n − j + 1): it is below fpr with probability ≥ γ, the
    (j+1)-th is not."""
    j = clip_rank(0.01, n, 0.95)
    assert j >= 1
    assert beta.cdf(0.01, j, n - j + 1) >= 0.95 > beta.cdf(0.01, j + 1, n - j)


def test_too_few_nulls_for_a_confident_rank():
    assert clip_rank(0.01, 298, 0.95) == 0 and clip_rank(0.01, 299, 0.95) == 1  # 1 − 0.99ⁿ ≥ 0.95 from n = 299
    assert clip_rank(0.01, 200) == 2  # the expected-rate rule: ⌊fpr·(n + 1)⌋


@pytest.mark.parametrize("n", [12, 36, 100])
def test_tolerance_factor_matches_natrella_approximation(n):
    """NIST/SEMATECH e-Handbook 7.2.6.3: k ≈ (z_p + √(z_p² − a·b))/a, a = 1 − z_γ²/(2(n − 1)), b = z_p² − z_γ²/n."""
    zp, zg = norm.ppf(0.99), norm.ppf(0.95)
    a, b = 1 - zg**2 / (2 * (n - 1)), zp**2 - zg**2 / n
    assert tolerance_factor(n, 0.01, 0.95) == pytest.approx((zp + math.sqrt(zp**2 - a * b)) / a, rel=0.03)


def test_confident_tau_holds_the_rate_across_calibration_draws_where_the_expected_rule_does_not():
    """Normal null minima (36 per draw, as 72 leave-one-out nulls half held out give): the true per-clip
    rate of τ exceeds 1 % in ≤ 5 % of draws with γ = 0.95, in about half with the expected-rate rule."""
    rng = np.random.default_rng(0)
    draws = rng.normal(0.5, 0.1, size=(2000, 36))
    rate = {c: np.array([norm.cdf(clip_tau(d, 0.01, c)[0], 0.5, 0.1) for d in draws]) for c in (0.95, None)}
    assert clip_tau(draws[0], 0.01, 0.95)[1] == "normal-tolerance" and clip_tau(draws[0], 0.01)[1] == "normal"
    assert np.mean(rate[0.95] > 0.01) <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 2000)
    assert np.mean(rate[None] > 0.01) > 0.3


def test_confidence_must_be_a_probability():
    assert check_confidence(0) is None and check_confidence(None) is None and check_confidence(0.9) == 0.9
    with pytest.raises(MemorizationError, match=r"tau confidence must be in \(0, 1\).*got 1.5"):
        check_confidence(1.5)


def test_a_normal_bound_below_zero_falls_back_to_the_log_normal_fit():
    """The 36 leave-one-out minima of fold 2 of the Wesnoth rotation (seed 0, 30 s training clips, embedding-mel):
    mean − k·sd < 0 put τ at the 1e-6 floor; the log-normal bound is exp(mean − k·sd) of the logs."""
    m = np.array([0.149, 0.158, 0.169, 0.211, 0.265, 0.274, 0.302, 0.318, 0.332, 0.357, 0.374, 0.385, 0.408, 0.41, 0.415,
                  0.454, 0.465, 0.466, 0.488, 0.506, 0.516, 0.519, 0.525, 0.525, 0.529, 0.531, 0.536, 0.537, 0.545, 0.56,
                  0.627, 0.641, 0.649, 0.666, 0.673, 0.71])
    k = tolerance_factor(36, 0.01, 0.95)
    assert m.mean() - k * m.std(ddof=1) < 0
    tau, tail = clip_tau(m, 0.01, 0.95)
    lm = np.log(m)
    assert tail == "lognormal-tolerance" and tau == pytest.approx(math.exp(lm.mean() - k * lm.std(ddof=1)), rel=1e-12)
    assert 1e-6 < tau < m.min()


def test_log_normal_fallback_holds_the_rate_across_calibration_draws():
    """Log-normal minima with a wide spread (σ of the logs 0.5, where the normal bound is ≤ 0 in most draws):
    the true per-clip rate of τ exceeds 1 % in ≤ 5 % of draws, and τ is never at the floor."""
    rng = np.random.default_rng(2)
    draws = np.exp(rng.normal(math.log(0.45), 0.5, size=(2000, 36)))
    fits = [clip_tau(d, 0.01, 0.95) for d in draws]
    assert np.mean([t == "lognormal-tolerance" for _, t in fits]) > 0.5
    rate = norm.cdf((np.log([tau for tau, _ in fits]) - math.log(0.45)) / 0.5)
    assert np.mean(rate > 0.01) <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 2000)
    assert min(tau for tau, _ in fits) > 1e-3
