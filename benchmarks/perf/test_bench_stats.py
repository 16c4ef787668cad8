"""FAD statistics throughput (one pass, O(d²) memory) against the machine's matmul rate, and FAD cost growth.

Workload: float32 embedding frames, standard normal, fed **a clip at a time (10 frames, VGGish's count
for a 10 s clip)** — how ``metrics.engine`` and ``fad`` feed ``EmbeddingStats`` — then ``cov`` is read.
d = 128 (VGGish) with 100,000 frames, d = 2048 with 8,192 frames.

Rates are "Gram GFLOP/s": 2·n·d² / seconds, the flops a gemm would spend on Xᵀ X (a syrk does half,
so a BLAS syrk can show more than the machine's gemm peak). The peer is a plain ``X.T @ X`` in float64
(the precision the statistics keep) and float32 on the same data, with no centring and no
streaming — an upper bound, not an alternative. ``previous`` is the per-update Chan fold this project
used before blocking (measured on a prefix: it is ~30× slower at d = 2048).

``bulk_*`` figures: the same frames in one ``update`` call (no per-call Python cost).

``test_fad_cost_growth``: whole FAD (both sides' statistics + Fréchet) at 1k/10k/100k frames per side,
d = 128, and the log-log slope of time against frames.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from metrics.fad import EmbeddingStats, fad, frechet_distance

FRAMES = {128: 100_000, 2048: 8_192}
PREVIOUS_FRAMES = {128: 20_000, 2048: 1_024}
CLIP_FRAMES = 10


def gram_gflop(n: int, d: int) -> float:
    return 2.0 * n * d * d / 1e9


def best_time(fn, rounds: int = 2) -> float:
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def stats_per_clip(x: np.ndarray) -> EmbeddingStats:
    s = EmbeddingStats()
    for i in range(0, len(x), CLIP_FRAMES):
        s.update(x[i : i + CLIP_FRAMES])
    s.cov  # noqa: B018 - reading folds the last partial block, part of the cost
    return s


def previous_per_clip(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The unblocked update (per call: centre, Gram, Chan merge into d×d), for the before/after record."""
    d = x.shape[1]
    n, mean, m2 = 0, np.zeros(d), np.zeros((d, d))
    for i in range(0, len(x), CLIP_FRAMES):
        c = np.asarray(x[i : i + CLIP_FRAMES], dtype=np.float64)
        mb = c.mean(0)
        xc = c - mb
        nb = len(c)
        delta = mb - mean
        mean = mean + delta * (nb / (n + nb))
        m2 = m2 + xc.T @ xc + np.outer(delta, delta) * (n * nb / (n + nb))
        n += nb
    return mean, m2 / (n - 1)


@pytest.mark.parametrize("d", [128, 2048])
def test_stats_throughput(benchmark, d):
    n = FRAMES[d]
    x = np.random.default_rng(d).standard_normal((n, d)).astype(np.float32)
    x64 = x.astype(np.float64)
    t_gemm64 = best_time(lambda: x64.T @ x64)
    t_gemm32 = best_time(lambda: x.T @ x)
    prefix = x[: PREVIOUS_FRAMES[d]]
    t_prev = best_time(lambda: previous_per_clip(prefix), rounds=1)
    t_bulk = best_time(lambda: EmbeddingStats().update(x).cov)  # one update with every frame
    benchmark.group = f"stats d={d}"
    s = benchmark.pedantic(stats_per_clip, args=(x,), rounds=3, iterations=1)
    # correctness gate: the streamed statistics are numpy's mean/cov (ddof=1) of the same frames
    np.testing.assert_allclose(s.mean, x64.mean(0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(s.cov, np.cov(x64, rowvar=False), rtol=0, atol=1e-12)
    ours = benchmark.stats.stats.min
    gf = gram_gflop(n, d)
    benchmark.extra_info.update({
        "d": d, "frames": n, "frames_per_update": CLIP_FRAMES,
        "frames_per_s": n / ours, "gram_gflops": gf / ours,
        "xtx_float64_gflops": gf / t_gemm64, "xtx_float32_gflops": gf / t_gemm32,
        "fraction_of_xtx_float64": t_gemm64 / ours,
        "bulk_update_frames_per_s": n / t_bulk, "bulk_fraction_of_xtx_float64": t_gemm64 / t_bulk,
        "previous_frames_per_s": len(prefix) / t_prev, "speedup_vs_previous": (n / ours) / (len(prefix) / t_prev),
    })


def test_fad_cost_growth(benchmark):
    """Whole FAD at 1k/10k/100k frames per side (d = 128, clip-sized updates); fitted exponent."""
    d, sizes, times, values = 128, [1_000, 10_000, 100_000], [], []
    rng = np.random.default_rng(0)
    data = {n: (rng.standard_normal((n, d)).astype(np.float32), rng.standard_normal((n, d)).astype(np.float32) + 0.1)
            for n in sizes}

    def one(n: int) -> float:
        ref, gen = data[n]
        return fad(stats_per_clip(ref), stats_per_clip(gen)).value

    for n in sizes:
        one(n)  # warm
        t0 = time.perf_counter()
        values.append(one(n))
        times.append(time.perf_counter() - t0)
    slope = float(np.polyfit(np.log(sizes), np.log(times), 1)[0])
    benchmark.pedantic(one, args=(sizes[-1],), rounds=1, iterations=1)
    # correctness gate: the streamed FAD equals the Fréchet distance of numpy's mean/cov of the same frames
    ref, gen = (a.astype(np.float64) for a in data[sizes[-1]])
    direct = frechet_distance(ref.mean(0), np.cov(ref, rowvar=False), gen.mean(0), np.cov(gen, rowvar=False))
    assert abs(values[-1] - direct) <= 1e-9 * direct, (values[-1], direct)
    benchmark.extra_info.update({"d": d, "frames_per_side": sizes, "seconds": times, "fitted_exponent": slope,
                                 "fad_values": values})


def test_fad_resampling_at_musiccaps_scale(benchmark):
    """One block of 64 bootstrap resamples of FAD at MusicCaps size (5,521 clips × 19 frames × 128 per side,
    the mel embedder's shape): per-clip Grams too large to keep, so they are rebuilt from the frames
    a chunk at a time. ``frames_route_s_estimated``: the previous route (every resample re-weights all
    frames) for both sides' second moments alone (no Fréchet step), timed on 8 of the rows and scaled —
    a lower bound on what the previous route spent on this block."""
    import metrics.fad_metric as fm

    n, frames, d = 5521, 19, 128
    rng = np.random.default_rng(0)
    ref = {f"c{i:05d}": rng.standard_normal((frames, d)) for i in range(n)}
    gen = {f"c{i:05d}": rng.standard_normal((frames, d)) + 0.1 for i in range(n)}
    metric = fm.FAD(n_boot=0)
    metric.update("reference", ref)
    metric.update("generated", gen)
    rows = np.random.default_rng(1).multinomial(n, np.full(n, 1 / n), size=64).astype(np.float64)
    assert metric._side_moments("generated")[3] is None  # the large-set route is what is timed
    values = benchmark.pedantic(metric.value_on_counts, args=(rows, rows), rounds=1, iterations=1)

    # the previous route, and the correctness gate against it and against numpy on stacked frames
    stacked = np.concatenate([gen[k] for k in sorted(gen)])
    owner = np.repeat(np.arange(n), frames)
    t0 = time.perf_counter()
    old = [(stacked * row[owner][:, None]).T @ stacked for row in rows[:8]]
    frames_route_s = 2 * (time.perf_counter() - t0) * len(rows) / 8  # two sides
    _, counts, sums, _, _, _ = metric._side_moments("generated")
    for j in range(8):
        m = (rows[j] @ sums) / (rows[j] @ counts)
        _, cov = metric._mean_covs("generated", rows[j:j + 1])
        want = (old[j] - (rows[j] @ counts) * np.outer(m, m)) / (rows[j] @ counts - 1)
        assert np.abs(cov[0] - want).max() <= 1e-9 * np.abs(want).max()
    pick = np.repeat(np.arange(n), rows[0].astype(np.int64))
    g0 = np.concatenate([gen[f"c{i:05d}"] for i in pick])
    r0 = np.concatenate([ref[f"c{i:05d}"] for i in pick])
    direct = frechet_distance(r0.mean(0), np.cov(r0, rowvar=False), g0.mean(0), np.cov(g0, rowvar=False))
    assert abs(values[0] - direct) <= 1e-9 * direct
    benchmark.extra_info.update({"clips": n, "frames_per_clip": frames, "d": d, "resamples": len(rows),
                                 "frames_route_s_estimated": round(frames_route_s, 2),
                                 "speedup_vs_frames_route": round(frames_route_s / benchmark.stats.stats.mean, 2)})


# ----------------------------------------------------------------------------- a run's statistics (issue 28)

DEMO_SYSTEMS = ("musiclm-ref", "musiclm-ref-no-semantic", "unconditional", "retrieval")
# the demo's per-clip output shapes (10 s clips): mel 19 frames × 128, musicnn-mtt 3 patches × 200,
# LEAF 10 windows × 30 labels, musicnn-mtt 3 patches × 50 tags, mulan-ref 10 windows × 128 (+ caption)
DEMO_SHAPES = {"mel": (19, 128), "musicnn_mtt": (3, 200)}
DEMO_CLASSIFIERS = {"": (10, 30), "_musicnn_mtt": (3, 50)}


def _synthetic_run(n_clips: int, systems, shapes=DEMO_SHAPES, classifiers=DEMO_CLASSIFIERS, kad: bool = True,
                   joint_dim: int = 128, seed: int = 0):
    """(ground-truth SourceResult, {system: SourceResult}) with every metric of the demo's Table 1 computed
    (no intervals) on synthetic per-clip outputs of the demo's shapes; systems differ by a shift."""
    from metrics.evaluate import GROUND_TRUTH
    from metrics.fad_metric import FAD
    from metrics.kad import KAD
    from metrics.kld import kld_metrics
    from metrics.mcc import MCC
    from metrics.run_statistics import SourceResult

    rng = np.random.default_rng(seed)
    ids = [f"y{i:05d}" for i in range(n_clips)]

    def clips(shape, shift=0.0):
        return {i: rng.standard_normal(shape).astype(np.float32) + shift for i in ids}

    ref_emb = {k: clips(s) for k, s in shapes.items()}
    ref_logits = {k: clips(s) for k, s in classifiers.items()}
    text = {i: v[0] for i, v in clips((1, joint_dim)).items()}

    def state(metric, ref, gen):
        metric.update("reference", ref)
        metric.update("generated", gen)
        return metric

    def source(name, shift, with_gt=False):
        states = {}
        if not with_gt:
            for k, s in shapes.items():
                gen = clips(s, shift)
                states[f"fad_{k}"] = state(FAD(k, n_boot=0), ref_emb[k], gen)
                if kad:
                    states[f"kad_{k}"] = state(KAD(k, n_boot=0), ref_emb[k], gen)
            for suffix, s in classifiers.items():
                gen = clips(s, shift)
                for key, m in kld_metrics("musiclm", n_boot=0).items():
                    states[key + suffix] = state(m, ref_logits[suffix], gen)
        states["mcc"] = state(MCC("mulan-ref", n_boot=0), text, clips((10, joint_dim), shift))
        res = SourceResult(name, None, dict.fromkeys(ids, ""), states=states)
        res.metrics = {k: m.compute() for k, m in states.items()}
        return res

    gt = source(GROUND_TRUTH, 0.0, with_gt=True)
    return gt, {name: source(name, 0.05 * k) for k, name in enumerate(systems)}


def _gate_shared_equals_alone(gt, results, pairs, keys, n_boot: int, seed: int = 0) -> None:
    """Correctness gate: the shared plan's intervals and paired tests equal each computed alone (its own draws,
    no shared values) to 1e-10, and a FAD resample equals ``frechet_distance`` of the stacked frames."""
    from metrics.intervals import paired_comparison
    from metrics.resampling import ResamplingPlan

    names = sorted(results)
    for key in keys:
        got = results[names[0]].metrics[key].ci95
        alone = results[names[0]].states[key].interval(ResamplingPlan(n_boot, seed))
        assert np.allclose(got, alone, rtol=1e-10, atol=1e-12), (key, got, alone)
        row = next(r for r in pairs if r["metric"] == key and r["system_a"] == names[0] and r["system_b"] == names[-1])
        solo = paired_comparison(results[names[0]].states[key], results[names[-1]].states[key], n_boot, seed)
        assert np.allclose(row["ci95"], solo["ci95"], rtol=1e-10, atol=1e-12), (key, row, solo)
        assert abs(row["p_value"] - solo["p_value"]) <= 1e-10, (key, row["p_value"], solo["p_value"])
    _gate_fad_row(results[names[0]].states[keys[0]], n_boot, seed)


def _gate_fad_row(fad, n_boot: int, seed: int = 0) -> None:
    """A FAD resample of the plan's draw equals ``frechet_distance`` of the stacked frames to 1e-10."""
    from metrics.resampling import ResamplingPlan

    row_r = row_g = ResamplingPlan(n_boot, seed).paired(len(fad.ids("generated")))[0].counts[0]
    r = np.concatenate([fad.outputs["reference"][i] for i in np.repeat(fad.ids("reference"), row_r)]).astype(np.float64)
    g = np.concatenate([fad.outputs["generated"][i] for i in np.repeat(fad.ids("generated"), row_g)]).astype(np.float64)
    want = frechet_distance(r.mean(0), np.cov(r, rowvar=False), g.mean(0), np.cov(g, rowvar=False))
    got = fad.value_on_counts(row_r[None], row_g[None])[0]
    assert abs(got - want) <= 1e-10 * want, (got, want)


def test_demo_table1_statistics(benchmark):
    """The demo's Table-1 statistics: 20 clips × (reference + 4 systems); FAD and KAD on mel and musicnn-mtt,
    KLD (musiclm's three numbers) with LEAF and musicnn-mtt, MCC (+ the ground-truth row); 1000 resamples;
    45 intervals and every pair (66 paired tests), all from one ResamplingPlan (metrics.run_statistics.statistics).
    Target (issue 28): ≤ 30 s on the 2-core machine (the per-test route took ≈230 s)."""
    import os

    from metrics.run_statistics import statistics

    n_boot = 1000
    gt, results = _synthetic_run(20, DEMO_SYSTEMS)
    out = {}

    def run():
        for src in (gt, *results.values()):
            for m in src.metrics.values():
                m.ci95 = None
        out["pairs"] = statistics(gt, results, n_boot, 0)

    load, cpu = os.getloadavg(), time.process_time()
    benchmark.pedantic(run, rounds=1, iterations=1)
    cpu = time.process_time() - cpu
    pairs = out["pairs"]
    n_intervals = sum(m.ci95 is not None for src in (gt, *results.values()) for m in src.metrics.values())
    assert n_intervals == 45 and sum(r.get("p_value") is not None for r in pairs) == 66
    _gate_shared_equals_alone(gt, results, pairs, ["fad_mel", "fad_musicnn_mtt", "kad_mel", "kld_musiclm", "mcc"], n_boot)
    benchmark.extra_info.update({"clips": 20, "sets": 5, "n_boot": n_boot, "intervals": n_intervals,
                                 "paired_tests": len(pairs), "loadavg_before": load, "loadavg_after": os.getloadavg(),
                                 "cpu_s": round(cpu, 2), "target_s": 30, "previous_s_issue_28": 230})


def test_musiccaps_scale_statistics(benchmark):
    """Statistics alone at MusicCaps size: 5,521 clips × 3 sets (reference + 2 systems); FAD on mel (19 × 128)
    and musicnn-mtt (3 × 200), KLD (musiclm's 3 numbers, LEAF shapes), MCC (+ ground truth); 1000 resamples,
    every interval and the pair. KAD is left out: its clips × clips block sums at 105,000 frames a side are
    a point-value cost (minutes), not a resampling one. Gate: a FAD resample against the stacked frames, the
    KLD interval against the one computed alone. Target (issue 28): ≤ 3 min."""
    import os

    from metrics.resampling import ResamplingPlan
    from metrics.run_statistics import statistics

    n_boot = 1000
    gt, results = _synthetic_run(5521, DEMO_SYSTEMS[:2], classifiers={"": (10, 30)}, kad=False)
    out = {}
    load, cpu = os.getloadavg(), time.process_time()
    benchmark.pedantic(lambda: out.setdefault("pairs", statistics(gt, results, n_boot, 0)), rounds=1, iterations=1)
    cpu = time.process_time() - cpu
    n_intervals = sum(m.ci95 is not None for src in (gt, *results.values()) for m in src.metrics.values())
    assert n_intervals == 13 and sum(r.get("p_value") is not None for r in out["pairs"]) == 6
    first = results[DEMO_SYSTEMS[0]]
    _gate_fad_row(first.states["fad_mel"], n_boot)
    alone = first.states["kld_musiclm"].interval(ResamplingPlan(n_boot, 0))
    assert np.allclose(first.metrics["kld_musiclm"].ci95, alone, rtol=1e-10, atol=1e-12)
    benchmark.extra_info.update({"clips": 5521, "sets": 3, "n_boot": n_boot, "intervals": n_intervals, "paired_tests": 6,
                                 "loadavg_before": load, "loadavg_after": os.getloadavg(), "cpu_s": round(cpu, 2),
                                 "target_s": 180, "previous_s_issue_28": 22 * 60})
