"""The Fréchet step at d = 128, 512, 2048: ours vs the routes users would otherwise run, same data, same run.

Workload: two (μ, Σ) pairs, each from 2·d frames of correlated Gaussian embeddings (X = Z·A/√d, Z and A
standard normal), float64. Peers, written out here so the suite needs none of their packages:

- ``sqrtm_route`` — Google's FAD (``fad_utils.frechet_distance``) and gudgud96's ``frechet_audio_distance``:
  ``scipy.linalg.sqrtm(Σ1 Σ2)`` (a Schur decomposition of a non-symmetric matrix), real part of its trace.
- ``fadtk_route`` — fadtk's ``calc_frechet_distance``: it computes ``sqrtm(Σ1 Σ2)`` (kept as a cross-check)
  *and* ``eig(Σ1 Σ2)``, then V·√D·V⁻¹, and uses the trace of the latter.
- ``previous_route`` — this project's previous implementation (``eigh`` of Σ1, Σ1^½ Σ2 Σ1^½, ``eigvalsh``),
  kept as the before/after record of the Cholesky + ``sygv`` change in ``metrics.fad``.

Each peer is timed with ``perf_counter`` (best of a few rounds; one at d = 2048, where ``sqrtm`` alone
takes tens of seconds); ours goes through pytest-benchmark. Ratios (peer best / our best) land in
``extra_info``. The correctness gate: ours must equal the sqrtm route to 1e-9 relative, or no figure.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import scipy.linalg

from metrics.fad import _zero_noise, frechet_distance

DIMS = [128, 512, 2048]
OUR_ROUNDS = {128: 30, 512: 10, 2048: 3}
PEER_ROUNDS = {128: 5, 512: 2, 2048: 1}
TARGET_RATIO = 10


def _finish(mu1, sigma1, mu2, sigma2, tr_covmean) -> float:
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)


def sqrtm_route(mu1, sigma1, mu2, sigma2) -> float:
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    return _finish(mu1, sigma1, mu2, sigma2, np.trace(covmean).real)


def fadtk_route(mu1, sigma1, mu2, sigma2) -> float:
    product = sigma1 @ sigma2
    scipy.linalg.sqrtm(product)  # computed and only compared against in fadtk; part of its cost
    w, v = scipy.linalg.eig(product)
    covmean = (v * np.sqrt(w)) @ scipy.linalg.inv(v)
    return _finish(mu1, sigma1, mu2, sigma2, np.trace(covmean).real)


def previous_route(mu1, sigma1, mu2, sigma2) -> float:
    w, v = np.linalg.eigh(sigma1)
    root1 = (v * np.sqrt(_zero_noise(w, "sigma1"))) @ v.T
    inner = root1 @ sigma2 @ root1
    eig = np.linalg.eigvalsh((inner + inner.T) / 2)
    return _finish(mu1, sigma1, mu2, sigma2, np.sqrt(_zero_noise(eig, "inner")).sum())


def stats_pair(d: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(2):
        x = rng.standard_normal((2 * d, d)) @ rng.standard_normal((d, d)) / np.sqrt(d)
        out += [x.mean(0), np.cov(x, rowvar=False)]
    return out


def best_time(fn, args, rounds: int) -> tuple[float, float]:
    """(best wall seconds, value) over ``rounds`` calls."""
    best, value = float("inf"), float("nan")
    for _ in range(rounds):
        t0 = time.perf_counter()
        value = fn(*args)
        best = min(best, time.perf_counter() - t0)
    return best, value


@pytest.mark.parametrize("d", DIMS)
def test_frechet_vs_peers(benchmark, d):
    args = stats_pair(d)
    peers = {name: best_time(fn, args, PEER_ROUNDS[d])
             for name, fn in (("sqrtm", sqrtm_route), ("fadtk", fadtk_route), ("previous", previous_route))}
    benchmark.group = f"frechet d={d}"
    value = benchmark.pedantic(frechet_distance, args=args, rounds=OUR_ROUNDS[d], iterations=1, warmup_rounds=1)
    reference = peers["sqrtm"][1]
    assert abs(value - reference) <= 1e-9 * abs(reference), (value, reference)
    ours = benchmark.stats.stats.min
    benchmark.extra_info.update({
        "d": d, "frames_per_side": 2 * d, "ours_best_s": ours, "target_ratio": TARGET_RATIO,
        **{f"{name}_best_s": t for name, (t, _) in peers.items()},
        **{f"ratio_vs_{name}": t / ours for name, (t, _) in peers.items()},
        **{f"rel_diff_vs_{name}": abs(value - v) / abs(v) for name, (_, v) in peers.items()},
    })
