"""The memorization audit at scale: 10⁶ training windows vs 1,000 generated clips, and its cost growth.

Workload (seeded, synthetic tokens so that it needs no data): the shipped tokenizer's 256 centroids
(128-d; seeded random ones if it is absent); training clips of 45 s (1,124 tokens, hop 1 → 1,000
windows each); each clip draws its tokens from its own palette of 12 *neighbouring* centroids (a
piece's timbre occupies one region of feature space), 4 of them re-drawn every second (so windows of
one clip differ). With palettes of *random* tokens the centroid bound prunes almost nothing (their means
all sit near the vocabulary's mean) and every pair goes to the per-pair relaxed bound: see
docs/performance.md. Generated: 1,000 clips of 10 s (6 windows at 1 s hop), 10 of
them copies of training excerpts, the rest novel. τ per clip on 100 null clips (same kind, not in the
training set). Correctness gate: every planted copy found at its training clip and lag, no novel clip
reported beyond the calibrated rate. Memory is bounded by the shard size (200k training frames), not by
the training set: peak RSS is recorded in ``extra_info``.
"""

from __future__ import annotations

import resource
import time
import warnings

import numpy as np

from metrics.memorization import FewNegativesWarning, audit

K, D = 256, 128
CLIP_TOKENS = 1124  # 1,000 windows of 125 tokens at hop 1
GEN_TOKENS = 250


def _centroids(rng) -> np.ndarray:
    try:
        from metrics.memorization import get_tokenizer

        return np.asarray(get_tokenizer("semantic-ref").centroids, dtype=np.float64)
    except Exception:  # no shipped tokenizer: the same shape, seeded
        return rng.normal(size=(K, D))


def _palette(rng, cent: np.ndarray) -> np.ndarray:
    d = np.linalg.norm(cent - cent[int(rng.integers(0, len(cent)))], axis=1)
    return np.argsort(d)[:12]


def _clip(rng, n, cent):
    pal = _palette(rng, cent)
    return np.concatenate([rng.choice(pal, 4, replace=False)[rng.integers(0, 4, 25)] for _ in range(-(-n // 25))])[:n]


def _workload(n_train_windows: int, n_gen: int, n_null: int = 100, seed: int = 0):
    rng = np.random.default_rng(seed)
    cent = _centroids(rng)
    n_clips = max(1, n_train_windows // (CLIP_TOKENS - 124))
    train = {f"t{i:05d}": _clip(rng, CLIP_TOKENS, cent) for i in range(n_clips)}
    gen, truth = {}, {}
    for i in range(min(10, n_gen)):
        src, t0 = f"t{int(rng.integers(0, n_clips)):05d}", int(rng.integers(0, CLIP_TOKENS - GEN_TOKENS))
        gen[f"copy{i}"] = train[src][t0 : t0 + GEN_TOKENS].copy()
        truth[f"copy{i}"] = (src, t0 / 25)
    for i in range(n_gen - len(gen)):
        gen[f"novel{i:04d}"] = _clip(rng, GEN_TOKENS, cent)
    null = {f"n{i:03d}": _clip(rng, GEN_TOKENS, cent) for i in range(n_null)}
    return cent, train, gen, null, truth


def _run(cent, train, gen, null):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FewNegativesWarning)
        return audit(gen, train, cent, fpr=0.02, gen_hop=25, train_hop=1, null=null, seed=0)


def _check(res, truth):
    for gid, (src, lag) in truth.items():
        rows = [m for m in res.matches if m["generated_id"] == gid and m["train_id"] == src]
        assert rows and abs(rows[0]["train_offset_s"] - rows[0]["gen_offset_s"] - lag) <= 0.25, gid
    novel = [k for k, v in res.best_cost.items() if k.startswith("novel") and v < np.inf]
    assert len(novel) <= 0.1 * len(res.best_cost), novel


def test_bench_audit_million_windows(benchmark):
    cent, train, gen, null, truth = _workload(1_000_000, 1000)
    res = benchmark.pedantic(_run, args=(cent, train, gen, null), rounds=1, iterations=1)
    _check(res, truth)
    secs = benchmark.stats.stats.mean
    n_tw = res.extra["n_train_windows"]
    benchmark.extra_info.update({
        "workload": f"{n_tw} training windows (hop 1) x {len(gen)} generated clips ({res.extra['n_generated_windows']} windows), "
                    f"{len(null)} null clips, K={K}, D={D}",
        "train_windows": n_tw, "generated_clips": len(gen), "seconds": secs,
        "train_windows_per_s": n_tw / secs, "window_pairs_per_s": res.n_pairs / secs,
        "pairs_solved": res.n_solved, "pairs_total": res.n_pairs, "solved_fraction": res.n_solved / res.n_pairs,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "tau": res.tau, "reported": sum(v < np.inf for v in res.best_cost.values()),
    })


def test_bench_audit_cost_growth(benchmark):
    """The whole audit (calibration on 100 nulls + search) at 10⁴ / 10⁵ / 10⁶ training windows vs 100 generated
    clips, each timed itself; the exponent is the slope of log time vs log windows (1 = linear)."""
    sizes, times = [10_000, 100_000, 1_000_000], []
    for n in sizes[:-1]:
        cent, train, gen, null, truth = _workload(n, 100, seed=1)
        t0 = time.perf_counter()
        res = _run(cent, train, gen, null)
        times.append(time.perf_counter() - t0)
        _check(res, truth)
    cent, train, gen, null, truth = _workload(sizes[-1], 100, seed=1)
    res = benchmark.pedantic(_run, args=(cent, train, gen, null), rounds=1, iterations=1)
    _check(res, truth)
    times.append(benchmark.stats.stats.mean)
    slope = float(np.polyfit(np.log(sizes), np.log(times), 1)[0])
    benchmark.extra_info.update({"train_windows": sizes, "seconds": times, "fitted_exponent": slope,
                                 "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})
