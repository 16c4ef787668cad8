"""The interval-coverage benchmark of the data conditions (benchmarks/interval_coverage.py --conditions) runs, and
what it measures is measured right: its coverage and false-positive tallies on cases whose answer is known,
the population values on generators whose value is known, the run end to end at tiny sizes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import norm

from benchmarks.coverage_data import Condition, World, population_values, structured
from benchmarks.interval_coverage import METRICS, main, rejections, simulate_condition, tally


def test_tally_counts_hits_and_misses_on_each_side_exactly():
    got = tally([(0.0, 1.0), (2.0, 3.0), (-1.0, 0.2), (0.5, 0.5)], truth=0.5)
    assert got["coverage"] == 0.5
    assert got["share_entirely_above"] == 0.25 and got["share_entirely_below"] == 0.25
    assert got["mean_width"] == pytest.approx((1 + 1 + 1.2 + 0) / 4)
    lo, hi = got["coverage_wilson95"]
    assert lo < 0.5 < hi


@pytest.mark.parametrize("level", [0.80, 0.95])
def test_tally_recovers_a_known_coverage(level):
    """z-intervals of a normal mean with known sd cover at exactly ``level``: the estimate lands in its Wilson interval."""
    rng = np.random.default_rng(3)
    x = rng.normal(2.0, 1.0, size=4000)
    z = norm.ppf(0.5 + level / 2)
    got = tally(list(zip(x - z, x + z)), truth=2.0)
    lo, hi = got["coverage_wilson95"]
    assert lo <= level <= hi
    assert got["share_entirely_above"] == pytest.approx((1 - level) / 2, abs=0.02)


def test_rejections_of_uniform_p_values_are_alpha():
    p = np.random.default_rng(4).uniform(size=5000)
    got = rejections(list(p), alpha=0.05)
    lo, hi = got["fpr_wilson95"]
    assert lo <= 0.05 <= hi and got["false_positive_rate"] == pytest.approx(0.05, abs=0.01)
    assert rejections([0.01, 0.2], alpha=0.05)["false_positive_rate"] == 0.5


@pytest.mark.parametrize("cond", [Condition("t", dim=3, tail="t3"), Condition("c", dim=3, clip_share=0.5)])
def test_the_generators_marginal_moments_are_the_populations(cond):
    """FAD's population value is closed-form because the frames' marginal mean and covariance are (μ, Σ) by
    construction, whatever the tails and clip share; and frames of one clip are correlated by the clip share."""
    world = World(cond)
    rng = np.random.default_rng(5)
    x = world.frames(rng, 1, 40000, 2)
    flat = x.reshape(-1, cond.dim)
    assert np.allclose(flat.mean(0), world.mu[1], atol=0.05)
    assert np.allclose(np.cov(flat, rowvar=False), world.cov[1], atol=0.12 if cond.tail == "t3" else 0.05)
    e = structured(rng, 40000, 2, 1, cond)[..., 0]
    assert np.corrcoef(e[:, 0], e[:, 1])[0, 1] == pytest.approx(cond.clip_share, abs=0.03)


def test_population_values_vanish_between_identical_populations():
    """KAD's and FAD's population values of one population against itself are 0 (KAD within its standard error)."""
    world = World(Condition("same", dim=4))
    world.mu, world.cov, world.chol = (world.mu[0],) * 2, (world.cov[0],) * 2, (world.chol[0],) * 2
    got = population_values(world, np.random.default_rng(6), kad_frames=800, kad_blocks=10, pairs=400)
    assert got["fad"]["value"] == pytest.approx(0.0, abs=1e-9)
    assert abs(got["kad"]["value"]) <= 4 * got["kad"]["se"] + 1e-3
    assert set(got) == set(METRICS) and got["mcc"]["se"] > 0


def test_a_condition_runs_end_to_end_at_tiny_sizes(tmp_path):
    cond = Condition("tiny", dim=4, n_ref=14, n_gen=12, tail="t3", clip_share=0.3)
    truth = population_values(World(cond), np.random.default_rng(7), kad_frames=400, kad_blocks=2, pairs=300)
    got = simulate_condition(cond, reps=2, n_boot=40, seed=1, truth=truth)
    assert set(got["metrics"]) == set(METRICS) and got["setup"]["n_gen"] == 12
    for m in got["metrics"].values():
        assert 0.0 <= m["coverage"] <= 1.0 and 0.0 <= m["false_positive_rate"] <= 1.0
        assert m["mean_width"] > 0  # real intervals came back from the pipeline's statistics


def test_the_cli_writes_the_artifact_and_refuses_an_unknown_condition(tmp_path, monkeypatch, capsys):
    import benchmarks.interval_coverage as ic

    small = Condition("gaussian", dim=3, n_ref=10, n_gen=10)
    monkeypatch.setattr(ic, "CONDITIONS", (small,))
    monkeypatch.setattr(ic, "population_values", lambda world, rng: population_values(
        world, rng, kad_frames=300, kad_blocks=2, pairs=200))
    out = tmp_path / "cov.json"
    main(["--conditions", "gaussian", "--reps", "2", "--n-boot", "30", "--out", str(out)])
    doc = json.loads(out.read_text())
    assert doc["complete"] and list(doc["conditions"]) == ["gaussian"]
    assert doc["settings"]["n_boot"] == 30 and "closed form" in doc["settings"]["population_values"]
    with pytest.raises(SystemExit):
        main(["--conditions", "nope", "--out", str(out)])
    assert "unknown nope" in capsys.readouterr().err


def test_merge_orders_the_conditions_and_refuses_other_settings(tmp_path):
    from benchmarks.interval_coverage import CONDITIONS, merge_conditions
    from metrics.errors import InputError

    first, second = CONDITIONS[0].name, CONDITIONS[1].name
    settings = {"replications": 2, "n_boot": 30, "seed": 0}
    paths = []
    for name in (second, first):  # given out of order
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps({"settings": settings, "conditions": {name: {"metrics": {}}}, "complete": True}))
    doc = merge_conditions(paths, tmp_path / "all.json")
    assert list(doc["conditions"]) == [first, second] and not doc["complete"]  # the other conditions are missing
    assert json.loads((tmp_path / "all.json").read_text()) == doc
    paths[1].write_text(json.dumps({"settings": {**settings, "seed": 1}, "conditions": {first: {}}, "complete": True}))
    with pytest.raises(InputError, match="other settings"):
        merge_conditions(paths, tmp_path / "all.json")
