"""The searched-windows correction of τ (metrics/memorization/calibration.py, ``search_correction``): a
leave-one-out null searches the training set less its own recording (M' windows), an audited clip all M of
them, so τ set at ``fpr`` on null minima reports novel clips more often than ``fpr``; at the level
1 − (1 − fpr)^(M'/M) it holds the rate. Checked by simulation with recordings of independent, identically
distributed minima (where the max-of-n scaling is exact), and through the audit's leave-one-out path."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy.stats import norm

from metrics.memorization import FewNegativesWarning, audit
from metrics.memorization.calibration import clip_tau, null_level
from metrics.memorization.matchers import EmbeddingMatcher


def test_null_level_is_the_max_of_n_scaling():
    assert null_level(0.01) == 0.01 and null_level(0.01, np.ones(5)) == 0.01  # every null searched everything
    assert null_level(0.01, [0.5]) == pytest.approx(1 - 0.99**0.5)
    assert null_level(0.01, [0.5, 0.75]) == pytest.approx(((1 - 0.99**0.5) + (1 - 0.99**0.75)) / 2)
    assert null_level(0.01, [23 / 24]) == pytest.approx(0.01 * 23 / 24, rel=0.01)  # ≈ fpr·M'/M at small fpr


def _novel_rate(tau: float, recordings: int) -> float:
    """Exact share of novel clips reported: each recording's best window cost is N(0.5, 0.1), independent."""
    return 1 - (1 - norm.cdf(tau, 0.5, 0.1)) ** recordings


@pytest.mark.parametrize("recordings", [2, 4])
def test_expected_rate_rule_holds_fpr_only_with_the_correction(recordings):
    """999 leave-one-out null minima per draw (each the minimum over the other recordings - 1), 300 draws:
    the uncorrected rank τ reports about 1 − 0.99^(R/(R−1)) of novel clips, the corrected one about 1 % (at most)."""
    rng = np.random.default_rng(0)
    ratio = (recordings - 1) / recordings
    level = null_level(0.01, np.full(999, ratio))
    rates = {False: [], True: []}
    for _ in range(300):
        minima = rng.normal(0.5, 0.1, size=(999, recordings - 1)).min(1)
        for corr in rates:
            rates[corr].append(_novel_rate(clip_tau(minima, level if corr else 0.01)[0], recordings))
    assert 0.0085 < np.mean(rates[True]) < 0.0107  # the rank ⌊level·(n + 1)⌋ rounds down: at most 1 %
    assert np.mean(rates[False]) == pytest.approx(1 - 0.99 ** (1 / ratio), abs=0.001)
    assert np.mean(rates[False]) > 0.0115


def test_confident_rule_holds_the_rate_across_draws_only_with_the_correction():
    """Two recordings (M'/M = 1/2), 36 normal null minima per draw as the Wesnoth folds have: with γ = 0.95
    the corrected τ's true novel rate exceeds 1 % in ≤ 5 % of 2000 draws; the uncorrected one in about 1 in 6."""
    rng = np.random.default_rng(1)
    draws = rng.normal(0.5, 0.1, size=(2000, 36))
    level = null_level(0.01, np.full(36, 0.5))
    over = {corr: np.mean([_novel_rate(clip_tau(d, level if corr else 0.01, 0.95)[0], 2) > 0.01 for d in draws])
            for corr in (False, True)}
    assert over[True] <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 2000)
    assert over[False] > 0.1  # about 0.16: twice the chances at the level the tolerance bound holds


def test_leave_one_out_audit_records_and_applies_the_searched_share():
    """Four equal training clips in two recordings: a null searches half the windows (ratio 1/2), τ is set at
    1 − 0.99^½ and is no higher than without the correction; nulls given from outside search everything."""
    rng = np.random.default_rng(2)
    train = {f"{p}{i}": rng.normal(size=(40, 8)) + rng.normal(size=8) for p in "ab" for i in range(2)}
    gen = {f"g{i}": rng.normal(size=(20, 8)) for i in range(3)}
    groups = {k: k[0] for k in train}
    kw = {"window": 10, "gen_hop": 2, "train_hop": 1, "fpr": 0.01, "groups": groups, "tau_confidence": None}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FewNegativesWarning)
        on = audit(gen, train, matcher=EmbeddingMatcher("toy", 2.0), **kw).calibration
        off = audit(gen, train, matcher=EmbeddingMatcher("toy", 2.0), search_correction=False, **kw).calibration
        ext = audit(gen, train, matcher=EmbeddingMatcher("toy", 2.0), null={f"n{i}": rng.normal(size=(20, 8)) for i in range(8)},
                    **kw).calibration
    assert on.source == "leave-one-out" and on.searched_ratio == pytest.approx(0.5)
    assert on.null_fpr == pytest.approx(1 - 0.99**0.5)
    assert off.searched_ratio == 1.0 and off.null_fpr == 0.01
    assert on.null_minima == off.null_minima and on.tau <= off.tau
    assert ext.searched_ratio == 1.0 and ext.null_fpr == 0.01
