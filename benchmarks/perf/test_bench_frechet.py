"""The Fréchet step at d = 128, 512, 2048: our eigh route vs the classic scipy ``sqrtm`` route.

Both compute the same number (tests/test_fad_math.py checks parity to 1e-9); this measures the cost
of one FAD given (mu, sigma) pairs. ``pedantic`` with few rounds keeps ``make bench`` under a minute
on a 2-core machine (sqrtm at d=2048 alone takes tens of seconds there).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from metrics.fad import frechet_distance

ROUNDS = {128: 5, 512: 3, 2048: 1}


def sqrtm_frechet(mu1, sigma1, mu2, sigma2):
    diff = mu1 - mu2
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def stats_pair(d: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(2):
        x = rng.standard_normal((2 * d, d)) @ rng.standard_normal((d, d)) / np.sqrt(d)
        out += [x.mean(0), np.cov(x, rowvar=False)]
    return out


@pytest.mark.parametrize("d", [128, 512, 2048])
def test_frechet_eigh(benchmark, d):
    args = stats_pair(d)
    benchmark.group = f"frechet d={d}"
    value = benchmark.pedantic(frechet_distance, args=args, rounds=ROUNDS[d], iterations=1)
    assert np.isfinite(value) and value > 0


@pytest.mark.parametrize("d", [128, 512, 2048])
def test_frechet_scipy_sqrtm(benchmark, d):
    args = stats_pair(d)
    benchmark.group = f"frechet d={d}"
    value = benchmark.pedantic(sqrtm_frechet, args=args, rounds=ROUNDS[d], iterations=1)
    assert np.isfinite(value)
