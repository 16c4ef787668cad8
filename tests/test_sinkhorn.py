"""Batched Sinkhorn vs POT: parity with exact OT at small ε, zero self-cost, symmetry, restricted support."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("POT_BACKEND_DISABLE_TENSORFLOW", "1")
import ot  # noqa: E402  (declared dependencies: an ImportError fails the suite)
import torch  # noqa: E402

from metrics.sinkhorn import (  # noqa: E402
    CACHE_BYTES,
    SinkhornError,
    chunk_pairs,
    ground_cost,
    sinkhorn_one_to_many,
    sinkhorn_pairs,
    sparse_from_dense,
    sparse_from_tokens,
)

K, D = 48, 6


@pytest.fixture
def problem():
    rng = np.random.default_rng(7)
    cost, _ = ground_cost(rng.normal(size=(K, D)))
    toks = rng.integers(0, K, size=(9, 30))  # 30-token windows: sparse histograms over 48 bins
    return cost, toks


def dense(toks):
    return np.stack([np.bincount(t, minlength=K) / len(t) for t in np.atleast_2d(toks)])


def test_ground_cost_is_normalized_distance():
    c = np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 4.0]])
    m, scale = ground_cost(c)
    assert scale == pytest.approx((5 + 4 + 3) / 3)
    assert m[0, 1] == pytest.approx(5 / scale)
    assert np.allclose(m, m.T) and np.allclose(np.diag(m), 0)


def test_agrees_with_emd_at_small_eps(problem):
    """Stated tolerance: at ε = 0.01 the entropic plan's cost is within 2% (+1e-3) of exact OT, and never below it."""
    cost, toks = problem
    h = dense(toks)
    ours = sinkhorn_one_to_many(h[0], h[1:5], cost, eps=0.01, tol=1e-5)
    exact = np.array([ot.emd2(h[0], b, cost) for b in h[1:5]])
    assert np.all(ours >= exact - 1e-4)
    assert np.all(ours - exact <= 0.02 * exact + 1e-3)


def test_error_shrinks_with_eps(problem):
    cost, toks = problem
    h = dense(toks)
    exact = ot.emd2(h[0], h[1], cost)
    gaps = [sinkhorn_one_to_many(h[0], h[1:2], cost, eps=e, tol=1e-5)[0] - exact for e in (0.1, 0.03, 0.01)]
    assert gaps[0] > gaps[1] > gaps[2] >= -1e-4


def test_matches_pot_sinkhorn_on_restricted_support(problem):
    """Same entropic problem as ot.sinkhorn2 on the non-zero bins only (the paper's restricted support).

    ε = 0.1 so that both solvers converge to 1e-6 on the cost in a few hundred iterations (at ε = 0.05
    on these near-tied costs 5,000 POT iterations still leave ~7e-6)."""
    cost, toks = problem
    h = dense(toks)
    for b in h[1:4]:
        ia, ib = np.flatnonzero(h[0]), np.flatnonzero(b)
        ref = ot.sinkhorn2(h[0][ia], b[ib], cost[np.ix_(ia, ib)], 0.1, method="sinkhorn_log", stopThr=1e-10, numItermax=5000)
        ours = sinkhorn_one_to_many(h[0], b[None], cost, eps=0.1, tol=1e-9, max_iter=5000)[0]
        assert ours == pytest.approx(float(ref), abs=1e-5)


def test_zero_mass_bins_do_not_change_the_cost(problem):
    """Full K×K problem with zero-mass bins (POT, dense) = restricted problem (ours)."""
    cost, toks = problem
    h = dense(toks)
    ref = ot.sinkhorn2(h[0], h[1], cost, 0.1, method="sinkhorn_log", stopThr=1e-10, numItermax=5000)
    ours = sinkhorn_one_to_many(h[0], h[1:2], cost, eps=0.1, tol=1e-9, max_iter=5000)[0]
    assert ours == pytest.approx(float(ref), abs=1e-5)


def test_identical_histograms_cost_zero_and_symmetric(problem):
    cost, toks = problem
    s = sparse_from_tokens(toks, K)
    same = sinkhorn_pairs(s[:3], s[:3], cost)
    assert np.all(np.abs(same) < 1e-8)
    ab = sinkhorn_pairs(s[:4], s[1:5], cost, tol=1e-5)
    ba = sinkhorn_pairs(s[1:5], s[:4], cost, tol=1e-5)
    assert np.allclose(ab, ba, atol=1e-4)  # symmetric up to the solver tolerance
    assert np.all(ab > 0.05)


def test_log_domain_and_scaling_solvers_agree(problem):
    cost, toks = problem
    s = sparse_from_tokens(toks, K)
    a = sinkhorn_pairs(s[:1], s[1:4], cost, eps=0.05, tol=1e-9, max_iter=5000)
    b = sinkhorn_pairs(s[:1], s[1:4], cost, eps=0.05, tol=1e-9, max_iter=5000, log_domain=True)
    assert np.allclose(a, b, atol=1e-5)


def test_float32_and_eps_scaling_agree_with_float64(problem):
    """Stated accuracy of the fast path: float32 + ε-scaling within 1e-4 relative of plain float64 Sinkhorn."""
    cost, toks = problem
    s = sparse_from_tokens(toks, K)
    ref = sinkhorn_pairs(s[:1], s[1:9], cost, tol=1e-8, max_iter=20000, eps_scaling=False)
    fast = sinkhorn_pairs(s[:1], s[1:9], cost, dtype=torch.float32)
    assert np.all(np.abs(fast / ref - 1) <= 1e-4)


def test_cache_sized_chunks_and_early_exit_give_the_per_pair_costs(problem):
    """Chunking (and pairs leaving a chunk as they converge) changes nothing but speed: every chunk size gives
    each pair the cost it gets solved alone, to the solver's tolerance."""
    cost, toks = problem
    s = sparse_from_tokens(toks, K)
    alone = np.array([sinkhorn_pairs(s[:1], s[i : i + 1], cost)[0] for i in range(1, 9)])
    for chunk in (None, 1, 3, 8):
        assert np.allclose(sinkhorn_pairs(s[:1], s[1:9], cost, chunk=chunk), alone, rtol=2e-4, atol=1e-6), chunk
    n = chunk_pairs(125, 125, 4)
    assert 2 * n * 125 * 125 * 4 <= CACHE_BYTES < 2 * (n + 1) * 125 * 125 * 4
    assert chunk_pairs(5000, 5000, 8) == 1


def test_tiny_eps_falls_back_to_log_domain_without_nan(problem):
    """At ε = 1e-4 a kernel row underflows in float64; the pair is redone in the log domain."""
    cost, toks = problem
    s = sparse_from_tokens(toks, K)
    out = sinkhorn_pairs(s[:1], s[1:3], cost * 20, eps=1e-3, max_iter=300)
    assert np.all(np.isfinite(out)) and np.all(out > 0)


def test_sparse_from_tokens_matches_dense(problem):
    _, toks = problem
    s = sparse_from_tokens(toks, K)
    back = np.zeros((len(toks), K))
    np.add.at(back, (np.arange(len(toks))[:, None].repeat(s.ids.shape[1], 1), s.ids), s.w)
    assert np.allclose(back, dense(toks))
    d = sparse_from_dense(dense(toks) * 125)
    assert np.allclose(np.sort(d.w, 1), np.sort(s.w, 1))


def test_bad_input_errors(problem):
    cost, toks = problem
    with pytest.raises(SinkhornError, match="token id 48 outside the vocabulary"):
        sparse_from_tokens(np.array([[1, 48]]), K)
    with pytest.raises(SinkhornError, match="histogram 1 is empty"):
        sparse_from_dense(np.array([[1.0, 0.0], [0.0, 0.0]]))
    with pytest.raises(SinkhornError, match="ground cost covers 10 tokens"):
        sinkhorn_pairs(sparse_from_tokens(toks[:1], K), sparse_from_tokens(toks[1:2], K), cost[:10, :10])
    with pytest.raises(SinkhornError, match="size mismatch"):
        sinkhorn_one_to_many(np.ones(K), np.ones((2, K - 1)), cost)
