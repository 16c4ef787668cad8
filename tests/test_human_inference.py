"""Rater-aware inference, the planner and sequential stopping, checked by simulation and against closed forms."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from human_eval import planning
from human_eval.stats import cluster_bootstrap, rater_sign_flip_p, sign_patterns, wilcoxon_signed_rank


def study_with_rater_effects(rng, n_raters: int, per_rater: int, rater_sd: float, shift: float = 0.0):
    """Scores on the 5-point scale from a latent preference u_r + noise; u_r ~ N(shift, rater_sd²) per rater."""
    u = shift + rater_sd * rng.standard_normal(n_raters)
    latent = np.repeat(u, per_rater) + rng.standard_normal(n_raters * per_rater)
    scores = np.digitize(latent, [-1.5, -0.5, 0.5, 1.5]) - 2
    return scores, np.repeat(np.arange(n_raters), per_rater)


def per_rater_sums(scores, raters):
    return np.bincount(raters, weights=scores)


def test_pooled_tests_inflate_under_rater_effects_and_the_rater_aware_test_holds():
    rng = np.random.default_rng(0)
    reps, alpha = 400, 0.05
    pooled = aware = covered = 0
    for _ in range(reps):  # H0: no preference on average over raters, but each rater leans strongly
        scores, raters = study_with_rater_effects(rng, n_raters=8, per_rater=30, rater_sd=1.0)
        pooled += wilcoxon_signed_rank(scores).p < alpha
        aware += rater_sign_flip_p(per_rater_sums(scores, raters)) < alpha
        lo, hi = cluster_bootstrap(scores, raters, n_boot=300, seed=1).mean_score_ci
        covered += lo <= 0 <= hi
    se = np.sqrt(alpha * (1 - alpha) / reps)
    assert pooled / reps > 0.4  # 240 ratings counted as independent: most null studies look "significant"
    assert aware / reps <= alpha + 3 * se
    assert covered / reps >= 0.85  # percentile cluster bootstrap on 8 raters (slightly liberal, as known)


def test_rater_aware_test_has_power_and_matches_pooled_without_rater_effects():
    rng = np.random.default_rng(1)
    hits_shift = np.mean([rater_sign_flip_p(per_rater_sums(*study_with_rater_effects(rng, 12, 20, 0.3, 0.6))) < 0.05
                          for _ in range(100)])
    assert hits_shift > 0.9
    # no rater effects at all: the sign-flip p and the Wilcoxon p agree closely on the same data
    ps = [(rater_sign_flip_p(per_rater_sums(s, r)), wilcoxon_signed_rank(s).p)
          for s, r in (study_with_rater_effects(rng, 14, 15, 0.0, 0.15) for _ in range(30))]
    a, b = np.array(ps).T
    assert np.corrcoef(sps.norm.isf(a / 2), sps.norm.isf(b / 2))[0, 1] > 0.9


def test_sign_flip_exact_and_monte_carlo():
    flips = sign_patterns(3)
    assert flips.shape == (8, 3) and len({tuple(f) for f in flips}) == 8
    # three raters all positive: the observed |sum| is the largest of 8 patterns, tied with its mirror
    assert rater_sign_flip_p(np.array([1.0, 2.0, 3.0])) == pytest.approx(2 / 8)
    assert rater_sign_flip_p(np.array([3.0, -3.0, 0.0])) == 1.0
    big = np.full(20, 1.0)  # 20 raters: Monte Carlo, identity included, p = (1 + k) / (1 + n)
    assert rater_sign_flip_p(big, n_perm=999, seed=0) == pytest.approx(1 / 1000, abs=2e-3)


def test_cluster_bootstrap_keeps_raters_together():
    scores = np.array([2, 2, 2, -1, -1, -1])
    raters = np.array([0, 0, 0, 1, 1, 1])
    b = cluster_bootstrap(scores, raters, n_boot=2000, seed=0)
    assert b.n_raters == 2 and b.mean_score == pytest.approx(0.5) and b.win_rate == pytest.approx(0.5)
    # resampling whole raters: every draw is all-rater-0 (mean 2), all-rater-1 (−1) or both (0.5)
    assert b.mean_score_ci == pytest.approx((-1.0, 2.0)) and b.win_rate_ci == pytest.approx((0.0, 1.0))
    one = cluster_bootstrap(scores[:3], raters[:3], n_boot=100)
    assert np.isnan(one.mean_score_ci[0])


def test_obf_boundaries_spend_alpha_as_stated():
    assert planning.boundaries(1, 0.05)[0] == pytest.approx(1.959964, abs=1e-6)
    c = planning.boundaries(4, 0.05)
    assert c[0] == pytest.approx(1.959964 / np.sqrt(0.25), abs=1e-6)  # the first look spends α(¼) exactly
    assert np.all(np.diff(c) < 0) and c[-1] > 1.96
    # an independent check: fresh Brownian paths (other seed) cross with total probability α and per look as spent
    rng = np.random.default_rng(99)
    t = np.arange(1, 5) / 4
    z = np.abs(np.cumsum(rng.standard_normal((200_000, 4)) * 0.5, axis=1) / np.sqrt(t))
    first = np.argmax(z >= c, axis=1)
    crossed = (z >= c).any(axis=1)
    assert crossed.mean() == pytest.approx(0.05, abs=0.002)
    spent = np.diff(np.concatenate([[0], planning.obf_spending(t, 0.05)]))
    for k in range(4):
        assert (crossed & (first == k)).mean() == pytest.approx(spent[k], abs=0.0015)


def test_sequential_rule_holds_alpha_on_simulated_studies():
    rng = np.random.default_rng(5)
    looks, alpha, n = 4, 0.05, 200
    scores, _ = planning.simulate_scores(rng, 2000, n, 0.5, 0.2, 0.5)  # H0
    ps = np.stack([planning.wilcoxon_p_batch(scores[:, : n * k // looks]) for k in range(1, looks + 1)], axis=1)
    decided = np.mean([planning.sequential_decision(list(p), alpha, looks)["decided"] for p in ps])
    naive = np.mean((ps < alpha).any(axis=1))  # testing at α at every look
    assert decided <= alpha + 3 * np.sqrt(alpha * (1 - alpha) / 2000)
    assert naive > 0.09


def test_planner_reaches_the_power_it_reports_and_grows_with_demands():
    p = planning.plan(3, effect=0.6, target_power=0.8, n_sim=600)
    assert p.pairs == 3 and p.alpha_per_pair == pytest.approx(0.05 / 3)
    # closed form (normal approximation): with signs independent of strength, W+ = sum of ranks of the wins, so
    # E[W+] - n(n+1)/4 = (p - 1/2) sum(r) and Var = p(1-p) sum(r^2) (0.25 sum(r^2) under H0), at the expected ties
    n_dec = p.ratings_per_pair * 0.8
    n1, n2 = n_dec * 0.5, n_dec * 0.5
    sum_r = n1 * (n1 + 1) / 2 + n2 * (n1 + (n2 + 1) / 2)
    sum_r2 = n1 * ((n1 + 1) / 2) ** 2 + n2 * (n1 + (n2 + 1) / 2) ** 2
    z = sps.norm.isf(p.alpha_per_pair / 2)
    closed = sps.norm.sf((z * 0.5 * np.sqrt(sum_r2) - 0.1 * sum_r) / np.sqrt(0.24 * sum_r2))
    assert closed == pytest.approx(0.8, abs=0.04) and p.power >= 0.8 - 2 * p.power_se
    # an independent simulation at the planned size, other seed
    assert planning.power(p.ratings_per_pair, 0.6, p.alpha_per_pair, n_sim=1000, seed=9) == pytest.approx(0.8, abs=0.05)
    assert planning.plan(5, effect=0.6, n_sim=400).ratings_per_pair > p.ratings_per_pair  # more pairs, stricter α
    assert planning.plan(3, effect=0.7, n_sim=400).ratings_per_pair < p.ratings_per_pair / 2
    r = planning.plan(3, effect=0.6, raters=40, n_sim=400)
    assert r.ratings_per_pair % 40 == 0 and r.ratings_per_rater == r.ratings_per_pair * 3 // 40
    assert r.ratings_per_pair > p.ratings_per_pair  # rater heterogeneity costs ratings


def test_planner_errors_say_what_would_work():
    with pytest.raises(planning.PlanError, match=r"with 5 raters .* smallest p is 2/2\^5 = 0.0625; use at least 7 raters"):
        planning.plan(3, raters=5)
    with pytest.raises(planning.PlanError, match=r"--effect .* in \(0.5, 1\), not 0.4"):
        planning.plan(3, effect=0.4)
    with pytest.raises(planning.PlanError, match="--systems must be at least 2"):
        planning.plan(1)


def test_rate_plan_cli(tmp_path):
    from click.testing import CliRunner

    from benchmarks.cli import main

    runner = CliRunner()
    r = runner.invoke(main, ["rate", "plan", "--systems", "3", "--effect", "0.6", "--power", "0.8", "--raters", "40",
                             "--simulations", "300", "--json", str(tmp_path / "plan.json")])
    assert r.exit_code == 0, r.output
    import json

    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan["raters"] == 40 and plan["ratings_per_rater"] == plan["ratings_per_pair"] * 3 // 40
    assert f"ratings per pair: {plan['ratings_per_pair']}" in r.output and "per rater:" in r.output
    assert f"--raters 40 --trials-per-rater {plan['ratings_per_rater']}" in r.output
    bad = runner.invoke(main, ["rate", "plan", "--systems", "3", "--raters", "4"])
    assert bad.exit_code != 0 and "use at least 7 raters" in bad.output
