"""The exact search equals brute force; per-clip calibration holds its false-alarm rate where a per-pair τ does not.

Same synthetic vocabulary as test_memorization: each clip draws tokens from its own palette.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

os.environ.setdefault("POT_BACKEND_DISABLE_TENSORFLOW", "1")

from test_memorization import centroids, noisy, style_clip  # noqa: E402

from metrics.memorization import (  # noqa: E402
    EmbeddingMatcher,
    FewNegativesWarning,
    OTScorer,
    audit,
    audit_shard,
    calibrate_tau,
    clip_minima,
    leave_one_out_nulls,
    shards_by_size,
)


def _brute_pairs(gw, tw, sc, tau):
    """Every (generated window, training window) pair solved: exact copies by equality, else Sinkhorn."""
    gi, ti = np.divmod(np.arange(len(gw) * len(tw)), len(tw))
    c = sc.costs(gw.tokens[gi], tw.tokens[ti])
    same = (gw.tokens[gi] == tw.tokens[ti]).all(1)
    return gi, ti, np.where(same, 0.0, c), same


@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(11)
    c = centroids()
    train = {f"t{i}": style_clip(rng, 150, 12, segment=25) for i in range(4)}
    gen = {"copy": train["t1"][10:140].copy(), "near": noisy(rng, train["t2"][0:130], c, 0.15),
           "novel": style_clip(rng, 130, 12, segment=25)}
    return c, train, gen


def test_pruned_search_equals_brute_force(small):
    c, train, gen = small
    sc = OTScorer(c)
    gw, tw = sc.windows(gen, 125, 3), sc.windows(train, 125, 2)
    tau = 0.45
    got = audit_shard(gw, train, sc, tau, 125, 2)
    gi, ti, cost, same = _brute_pairs(gw, tw, sc, tau)
    # exact windows keep their earliest identical training window; every other window: all pairs below τ
    exact_g = set(np.unique(gi[same]).tolist())
    want = {(int(g), tw.ids[tw.clip[t]], int(tw.offset[t])) for g, t, co in zip(gi, ti, cost)
            if g not in exact_g and co < tau}
    want |= {(g, tw.ids[tw.clip[ti[gi == g][same[gi == g]][0]]], int(tw.offset[ti[gi == g][same[gi == g]][0]]))
             for g in exact_g}
    have = set(zip(got.g.tolist(), got.train_id.tolist(), got.train_offset.tolist()))
    assert have == want and len(want) > len(exact_g) > 0
    assert got.n_solved < len(gi) // 3  # the bounds pruned most pairs (τ is loose here)


def test_clip_minima_equal_brute_force_for_the_ranks_that_set_tau(small):
    c, train, _ = small
    sc = OTScorer(c)
    rng = np.random.default_rng(3)
    nulls = {f"n{i}": style_clip(rng, 130, 12, segment=25) for i in range(6)}
    qw = sc.windows(nulls, 125, 3)
    tw = sc.windows(train, 125, 2)
    gi, ti, cost, _ = _brute_pairs(qw, tw, sc, np.inf)
    brute = np.array([cost[qw.clip[gi] == k].min() for k in range(6)])
    shards = shards_by_size(train, 300)  # two shards: the bound carries over between them
    assert len(shards) == 2
    for rank in (1, 3):
        got, solved = clip_minima(qw, qw.clip, 6, shards, sc, 125, 2, rank)
        # costs agree to the solver's tolerance: the ε schedule starts at the largest cost of each batch
        assert np.sort(got)[:rank] == pytest.approx(np.sort(brute)[:rank], rel=1e-4)
        assert np.all(got >= brute * (1 - 1e-4))  # the others are upper bounds
        assert solved < len(gi)


def test_embedding_matcher_search_equals_brute_force():
    rng = np.random.default_rng(5)
    train = {f"t{i}": rng.normal(size=(40, 16)) + rng.normal(size=16) for i in range(5)}
    gen = {"copy": train["t3"][7:30] + 0.05 * rng.normal(size=(23, 16)), "novel": rng.normal(size=(25, 16))}
    m = EmbeddingMatcher("toy", frame_rate=2.0)
    m.check(train, "train", 10)
    gw, tw = m.windows(gen, 10, 1), m.windows(train, 10, 1)
    tau = 0.02
    got = audit_shard(gw, train, m, tau, 10, 1)
    full = 1 - gw.vec @ tw.vec.T
    want = {(int(g), tw.ids[tw.clip[t]], int(tw.offset[t])) for g, t in zip(*np.nonzero(full < tau))}
    assert set(zip(got.g.tolist(), got.train_id.tolist(), got.train_offset.tolist())) == want
    assert {tw.ids[tw.clip[t]] for _, t in zip(*np.nonzero(full < tau))} == {"t3"}


def test_leave_one_out_nulls_exclude_their_source():
    train = {"a": np.arange(300), "b": np.arange(200), "c": np.arange(100)}
    nulls, excl = leave_one_out_nulls(train, 100, max_null=10, groups={"a": "g", "b": "g"})
    assert sorted(nulls) == ["a@0", "a@100", "a@200", "b@0", "b@100", "c@0"]
    assert excl["a@100"] == {"a", "b"} and excl["c@0"] == {"c"}
    assert nulls["a@200"].tolist() == list(range(200, 300))


def test_per_clip_false_alarms_hold_where_a_per_pair_tau_does_not():
    """Coverage by simulation. Exact minima of 60 novel clips of one kind over the training set; 400
    random splits into 20 calibration nulls (τ = their smallest minimum) and 40 fresh clips: the mean
    fraction of fresh clips reported is the rank rule's 1/21. The audit reports exactly the clips whose
    minimum is below its τ. A τ calibrated per *window pair* at the same rate reports most clips (the bug)."""
    rng = np.random.default_rng(8)
    c = centroids()
    sc = OTScorer(c)
    train = {f"t{i}": style_clip(rng, 250, 12, segment=25) for i in range(4)}
    clips = {f"n{i:03d}": style_clip(rng, 150, 12, segment=25) for i in range(60)}
    qw = sc.windows(clips, 125, 25)
    minima, _ = clip_minima(qw, qw.clip, 60, [train], sc, 125, 5, rank=60)  # every minimum exact
    fa = []
    for _ in range(400):
        perm = rng.permutation(60)
        fa.append(np.mean(minima[perm[20:]] < minima[perm[:20]].min()))
    assert np.mean(fa) == pytest.approx(1 / 21, abs=0.015)
    ids = sorted(clips)
    null, fresh = {k: clips[k] for k in ids[:20]}, {k: clips[k] for k in ids[20:]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FewNegativesWarning)
        res = audit(fresh, train, c, fpr=0.05, gen_hop=25, train_hop=5, null=null, seed=0)
    m = {k: minima[ids.index(k)] for k in fresh}
    reported = {k for k, v in res.best_cost.items() if v < np.inf}
    clear = {k for k in fresh if abs(m[k] - res.tau) > 1e-4 * res.tau}  # ties within the solver's tolerance aside
    assert reported & clear == {k for k in clear if m[k] < res.tau}
    fw, tw = sc.windows(fresh, 125, 25), sc.windows(train, 125, 5)
    i, j = rng.integers(0, len(fw), 4000), rng.integers(0, len(tw), 4000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FewNegativesWarning)
        pair_tau = calibrate_tau(sc, fw.tokens[i], tw.tokens[j], fpr=0.05).tau
    assert np.mean(minima < pair_tau) > 0.3 > 5 * 0.05  # per pair: several times the requested per-clip rate


def test_too_few_nulls_warn_and_extrapolate(small):
    """24 nulls cannot express a 1 % per-clip rate: τ comes from the normal tail (its 95 % lower tolerance
    bound by default, the fitted quantile with ``tau_confidence=0``; below the smallest null minimum either
    way), and the warning says how many held-out nulls would certify it; with 6 nulls no tail is fitted."""
    c, train, gen = small
    rng = np.random.default_rng(9)
    null = {f"n{i:02d}": style_clip(rng, 130, 12, segment=25) for i in range(24)}
    with pytest.warns(FewNegativesWarning, match=r"cannot certify a per-clip false-alarm rate of 0.01.*need about 381"):
        res = audit(gen, train, c, fpr=0.01, gen_hop=3, train_hop=2, null=null)
    cal = res.calibration
    assert cal.tail == "normal-tolerance" and cal.n_calibration == 12 and not cal.certified
    assert 0 < cal.tau <= min(cal.null_minima)
    with pytest.warns(FewNegativesWarning):
        expected = audit(gen, train, c, fpr=0.01, gen_hop=3, train_hop=2, null=null, tau_confidence=0).calibration
    assert expected.tail == "normal" and expected.confidence is None and 0 < expected.tau <= min(expected.null_minima)
    assert "copy" in {k for k, v in res.best_cost.items() if v < np.inf}
    with pytest.warns(FewNegativesWarning, match="1st smallest of 3 null minima"):
        few = audit(gen, train, c, fpr=0.01, gen_hop=3, train_hop=2, null=dict(list(null.items())[:6]))
    assert few.calibration.tail == "empirical-confident" and few.tau == pytest.approx(min(few.calibration.null_minima))


def test_nulls_needed_and_best_certifiable_rate_invert_the_wilson_bound():
    """What a null set can certify: the Wilson 95 % upper bound of 0 false alarms in n held-out nulls
    (metrics.intervals.wilson_ci, an independent formula) reaches fpr first at n = nulls_needed(fpr)."""
    from metrics.intervals import wilson_ci
    from metrics.memorization.calibration import best_certifiable, nulls_needed

    for n in (1, 11, 100, 381, 1000):
        assert abs(best_certifiable(n) - wilson_ci(0, n)[1]) < 1e-8
    for fpr in (0.05, 0.02, 0.01):
        n = nulls_needed(fpr)
        assert wilson_ci(0, n)[1] <= fpr < wilson_ci(0, n - 1)[1]
    assert nulls_needed(0.01) == 381
