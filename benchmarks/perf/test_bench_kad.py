"""KAD at scale: ours (blocked, memory O(block²)) vs a dense torch transcription of kadtk's formula.

Workload: reference frames x ~ N(0, I) and generated frames y ~ N(0.15, 1.05² I), 128-d float32, n frames
a side (seeded) — MusicCaps' 5,521 clips × 10 VGGish frames ≈ 55,000 frames a side.

- ``dense_kadtk`` — kadtk's ``calc_kernel_audio_distance`` as written there (no cache): float32,
  ``torch.pdist`` + ``torch.median`` for σ, the full m×m, n×n and m×n Gram, distance and kernel matrices
  (≈10 live n×n float32 matrices at its peak: ≈16 GB at 20,000 frames, ≈120 GB at 55,000).
- ours — ``metrics.kad.kernel_audio_distance`` in float64 (the default) and float32 (kadtk's precision,
  float64 sums).

Peak memory is the process RSS sampled every 5 ms during the call, above the RSS just before it
(torch's large buffers are mmap'd and go back to the OS when freed, so the baseline resets). The dense
peer runs only where this machine has the memory for it right now (``MemAvailable`` > 1.3 × its
estimated peak), else it is skipped with the numbers. Correctness gates: ours equals the dense
value to 1e-4 relative (the dense one rounds in float32) and the population MMD² of the two Gaussians
(closed form at the measured σ) within 5 % (sampling error at these n is ≈1 %).
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest
import torch

from metrics.kad import kernel_audio_distance

DIM, SHIFT, SCALE_Y = 128, 0.15, 1.05
DENSE_SIZES = [int(v) for v in os.environ.get("KAD_BENCH_DENSE_N", "5000,20000").split(",")]
LARGE = int(os.environ.get("KAD_BENCH_LARGE_N", "55000"))


def frames(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, DIM), dtype=np.float32)
    y = (rng.standard_normal((n, DIM), dtype=np.float32) * SCALE_Y + SHIFT).astype(np.float32)
    return x, y


def population_kad(sigma: float) -> float:
    """100 · MMD² of N(0, I) and N(μ, s² I) under exp(−γ‖a − b‖²): E exp(−γ‖z‖²), z ~ N(m, v I), in closed form."""
    g = 1 / (2 * sigma**2 + 1e-8)

    def e(m2: float, v: float) -> float:
        return (1 + 2 * g * v) ** (-DIM / 2) * np.exp(-g * m2 / (1 + 2 * g * v))

    return 100 * (e(0, 2) + e(0, 2 * SCALE_Y**2) - 2 * e(DIM * SHIFT**2, 1 + SCALE_Y**2))


def dense_kadtk(x: torch.Tensor, y: torch.Tensor) -> float:
    """kadtk/kad.py: calc_kernel_audio_distance (gaussian, bandwidth None, float32, no cache), verbatim in substance."""
    x, y = x.to(torch.float32), y.to(torch.float32)
    bandwidth = torch.median(torch.pdist(y)).item()
    m, n = x.shape[0], y.shape[0]
    gamma = 1 / (2 * bandwidth**2 + 1e-8)
    xx = x @ x.T
    x_sqnorms = torch.diagonal(xx)
    d2_xx = x_sqnorms.unsqueeze(1) + x_sqnorms.unsqueeze(0) - 2 * xx
    k_xx = torch.exp(-gamma * d2_xx)
    k_xx = k_xx - torch.diag(torch.diagonal(k_xx))
    k_xx_mean = k_xx.sum() / (m * (m - 1))
    yy = y @ y.T
    y_sqnorms = torch.diagonal(yy)
    d2_yy = y_sqnorms.unsqueeze(1) + y_sqnorms.unsqueeze(0) - 2 * yy
    k_yy = torch.exp(-gamma * d2_yy)
    k_yy = k_yy - torch.diag(torch.diagonal(k_yy))
    k_yy_mean = k_yy.sum() / (n * (n - 1))
    xy = x @ y.T
    d2_xy = x_sqnorms.unsqueeze(1) + y_sqnorms.unsqueeze(0) - 2 * xy
    k_xy = torch.exp(-gamma * d2_xy)
    k_xy_mean = k_xy.mean()
    return float((k_xx_mean + k_yy_mean - 2 * k_xy_mean) * 100)


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def mem_available() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def measured(fn, *args) -> tuple[object, float, int]:
    """(result, wall seconds, peak RSS above the start in bytes) of one call."""
    base, peak, stop = rss(), [0], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.005)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    t0 = time.perf_counter()
    try:
        out = fn(*args)
    finally:
        elapsed = time.perf_counter() - t0
        stop.set()
        t.join()
    return out, elapsed, max(peak[0], rss()) - base


@pytest.mark.parametrize("n", DENSE_SIZES)
def test_kad_blocked_vs_dense(benchmark, n):
    x, y = frames(n)
    ours = {}
    for precision in ("float32", "float64"):  # float64 (the default) is the call pytest-benchmark records
        run = benchmark.pedantic if precision == "float64" else (lambda f, args, **_: f(*args))
        (value, sigma), secs, peak = run(measured, args=(kernel_audio_distance, x, y, None, 2048, "cpu", precision),
                                         rounds=1, iterations=1)
        ours[precision] = {"value": value, "sigma": sigma, "seconds": secs, "peak_bytes": peak}
    target = population_kad(ours["float64"]["sigma"])
    assert abs(ours["float64"]["value"] - target) <= 0.05 * target, (ours, target)
    assert abs(ours["float32"]["value"] - ours["float64"]["value"]) <= 1e-6 * abs(ours["float64"]["value"])
    estimated_dense_peak = 10 * n * n * 4
    info = {"n": n, "dim": DIM, "ours": ours, "population_kad": target, "dense_estimated_peak_bytes": estimated_dense_peak}
    if mem_available() > 1.3 * estimated_dense_peak:
        dense, secs, peak = measured(dense_kadtk, torch.from_numpy(x), torch.from_numpy(y))
        assert abs(dense - ours["float64"]["value"]) <= 1e-4 * abs(ours["float64"]["value"]), (dense, ours)
        info["dense"] = {"value": dense, "seconds": secs, "peak_bytes": peak}
        info["time_ratio_dense_over_ours_float64"] = secs / ours["float64"]["seconds"]
        info["memory_ratio_dense_over_ours_float64"] = peak / max(ours["float64"]["peak_bytes"], 1)
    else:
        info["dense"] = f"skipped: {mem_available() / 2**30:.1f} GiB available < 1.3 × {estimated_dense_peak / 2**30:.1f} GiB"
    benchmark.extra_info.update(info)


def test_kad_blocked_at_musiccaps_scale(benchmark):
    """55,000 frames a side, where dense needs ≈36 GB for its three kernel matrices alone."""
    x, y = frames(LARGE, seed=1)
    (value, sigma), secs, peak = benchmark.pedantic(measured, args=(kernel_audio_distance, x, y), rounds=1, iterations=1)
    target = population_kad(sigma)
    assert abs(value - target) <= 0.05 * target, (value, target)
    benchmark.extra_info.update({"n": LARGE, "dim": DIM, "value": value, "sigma": sigma, "population_kad": target,
                                 "seconds": secs, "peak_bytes": peak, "dense_kernel_matrices_bytes": 3 * LARGE * LARGE * 4})
