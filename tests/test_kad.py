"""KAD: the blocked computation against an independent dense formulation of kadtk's formula."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist, pdist

from metrics import kad as kad_module
from metrics.kad import KAD, KADError, kad_inf, kernel_audio_distance, median_pairwise_distance
from metrics.metric import MetricError


def dense_kad(x: np.ndarray, y: np.ndarray, sigma: float | None = None) -> tuple[float, float]:
    """kadtk's calc_kernel_audio_distance written densely with scipy, in float64 (independent code)."""
    if sigma is None:
        d = np.sort(pdist(y))
        sigma = d[(len(d) - 1) // 2]  # torch.median: the lower of the two middle values
    gamma = 1 / (2 * sigma**2 + 1e-8)
    kxx, kyy, kxy = (np.exp(-gamma * cdist(a, b, "sqeuclidean")) for a, b in ((x, x), (y, y), (x, y)))
    m, n = len(x), len(y)
    mean_xx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    mean_yy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return 100 * (mean_xx + mean_yy - 2 * kxy.mean()), sigma


def sets(seed: int, m: int, n: int, d: int, shift: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m, d))
    y = rng.standard_normal((n, d)) * 1.1 + shift
    return x, y


@pytest.mark.parametrize("m,n,d,block", [(50, 70, 8, 16), (301, 257, 32, 64), (40, 40, 128, 4096), (2, 3, 4, 1)])
def test_blocked_kad_matches_dense_formula(m, n, d, block):
    x, y = sets(m + n, m, n, d)
    ours, sigma = kernel_audio_distance(x, y, block=block)
    ref, ref_sigma = dense_kad(x, y)
    assert abs(sigma - ref_sigma) <= 1e-12 * ref_sigma
    assert abs(ours - ref) <= 1e-6 * abs(ref)


def test_fixed_bandwidth_and_identical_sets():
    x, y = sets(1, 120, 90, 16)
    assert kernel_audio_distance(x, y, bandwidth=2.5)[0] == pytest.approx(dense_kad(x, y, 2.5)[0], rel=1e-9)
    same = kernel_audio_distance(x, x.copy())[0]
    assert abs(same - dense_kad(x, x.copy())[0]) < 1e-9


def test_kad_grows_with_the_shift():
    values = [kernel_audio_distance(*sets(5, 200, 200, 16, shift), bandwidth=5.0)[0] for shift in (0.0, 0.2, 0.5, 1.0)]
    assert all(a < b for a, b in zip(values, values[1:])), values


def test_median_is_exact_including_refinement_and_ties(monkeypatch):
    rng = np.random.default_rng(7)
    for n in (2, 3, 4, 500):
        x = rng.standard_normal((n, 5))
        d = np.sort(pdist(x))
        assert median_pairwise_distance(x, block=64) == pytest.approx(d[(len(d) - 1) // 2], rel=1e-12)
    monkeypatch.setattr(kad_module, "HIST_BINS", 32)
    monkeypatch.setattr(kad_module, "SELECT_LIMIT", 8)  # forces several refinement passes
    x = rng.standard_normal((400, 6))
    d = np.sort(pdist(x))
    assert median_pairwise_distance(x, block=50) == pytest.approx(d[(len(d) - 1) // 2], rel=1e-12)
    dup = np.repeat(rng.standard_normal((30, 6)), 5, axis=0)  # 300 zero distances among 11,175
    d = np.sort(pdist(dup))
    assert median_pairwise_distance(dup, block=50) == pytest.approx(d[(len(d) - 1) // 2], rel=1e-9)


def test_errors_name_the_problem():
    x, y = sets(0, 10, 10, 4)
    with pytest.raises(KADError, match="dim"):
        kernel_audio_distance(x, y[:, :3])
    bad = y.copy()
    bad[3, 1] = np.nan
    with pytest.raises(KADError, match="generated: contains NaN"):
        kernel_audio_distance(x, bad)
    with pytest.raises(KADError, match="at least 2 frames"):
        kernel_audio_distance(x, y[:1], bandwidth=1.0)


def clips(seed: int, n_clips: int, frames: int, d: int, shift: float) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"c{i:03d}": (rng.standard_normal((frames + i % 3, d)) + shift).astype(np.float32) for i in range(n_clips)}


@pytest.fixture
def filled() -> KAD:
    m = KAD(n_boot=0)
    m.update("reference", clips(1, 12, 4, 8, 0.0))
    m.update("generated", clips(2, 10, 3, 8, 0.4))
    return m


def test_metric_value_per_clip_and_merge(filled):
    res = filled.compute()
    x, y = filled.frames("reference"), filled.frames("generated")
    ref, sigma = dense_kad(x, y)
    assert res.value == pytest.approx(ref, rel=1e-9) and res.extra["bandwidth"] == pytest.approx(sigma, rel=1e-12)
    for cid, arr in filled.outputs["generated"].items():
        assert res.per_item[cid] == pytest.approx(dense_kad(x, arr.astype(np.float64), sigma)[0], rel=1e-9)
    # streaming halves merged = one pass
    a, b = KAD(n_boot=0), KAD(n_boot=0)
    ids = filled.ids("generated")
    a.update("reference", filled.outputs["reference"])
    a.update("generated", {i: filled.outputs["generated"][i] for i in ids[:4]})
    b.update("generated", {i: filled.outputs["generated"][i] for i in ids[4:]})
    assert a.merge(b).compute().value == pytest.approx(res.value, rel=1e-12)
    with pytest.raises(MetricError):
        a.merge(KAD(bandwidth="reference"))


def resampled_kad(metric: KAD, r: list[str], g: list[str]) -> float:
    """The unbiased MMD² of a resample written out frame by frame (independent code): every resampled
    clip's frames tagged with the draw they came from; within a set, two frames are paired when they are
    distinct frames of one draw, or come from draws of two different clips (never two copies of a clip)."""
    gamma = 1 / (2 * metric.sigma() ** 2 + 1e-8)

    def tagged(side: str, ids: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        arrays = [np.asarray(metric.outputs[side][c], np.float64) for c in ids]
        draw = np.concatenate([np.full(len(a), k) for k, a in enumerate(arrays)])
        clip = np.concatenate([np.full(len(a), metric.ids(side).index(c)) for c, a in zip(ids, arrays)])
        return np.concatenate(arrays), draw, clip

    def within(side: str, ids: list[str]) -> float:
        x, draw, clip = tagged(side, ids)
        k = np.exp(-gamma * cdist(x, x, "sqeuclidean"))
        same_draw, same_clip = draw[:, None] == draw[None, :], clip[:, None] == clip[None, :]
        keep = (same_draw & ~np.eye(len(x), dtype=bool)) | ~same_clip
        return k[keep].mean()

    x, y = tagged("reference", r)[0], tagged("generated", g)[0]
    cross = np.exp(-gamma * cdist(x, y, "sqeuclidean")).mean()
    return 100 * (within("reference", r) + within("generated", g) - 2 * cross)


def test_value_on_all_clips_once_is_the_point_value(filled):
    all_r, all_g = filled.ids("reference"), filled.ids("generated")
    point = filled.compute().value
    assert filled.value_on(all_r, all_g) == pytest.approx(point, rel=1e-12, abs=1e-12)
    ones = filled.value_on_counts(np.ones((2, len(all_r))), np.ones((2, len(all_g))))
    np.testing.assert_allclose(ones, point, rtol=1e-12, atol=1e-12)
    assert resampled_kad(filled, all_r, all_g) == pytest.approx(point, rel=1e-9)


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_value_on_resamples_never_pair_a_clip_with_its_copies(filled, seed):
    all_r, all_g = filled.ids("reference"), filled.ids("generated")
    rng = np.random.default_rng(seed)
    r = list(rng.choice(all_r, len(all_r)))
    g = list(rng.choice(all_g, len(all_g)))
    assert len(set(r)) < len(r) and len(set(g)) < len(g)  # the case at stake: clips drawn more than once
    got = filled.value_on(r, g)
    assert got == pytest.approx(resampled_kad(filled, r, g), rel=1e-9)
    # pairing copies (the frames of a resample pooled, as if the copies were new clips) is a different number
    pooled = dense_kad(filled.frames("reference", r), filled.frames("generated", g), filled.sigma())[0]
    assert abs(got - pooled) > 1e-3 * abs(pooled)
    with pytest.raises(MetricError, match="unknown generated clip"):
        filled.value_on(all_r, ["nope"])


def test_resample_of_one_single_frame_clip_has_no_within_set_mean():
    m = KAD(bandwidth=1.0, n_boot=0)
    m.update("reference", {"a": np.zeros((1, 4)), "b": np.ones((1, 4))})
    m.update("generated", {"c": np.zeros((1, 4)), "d": np.ones((1, 4))})
    got = m.value_on_counts(np.array([[2, 0], [1, 1]]), np.array([[1, 1], [1, 1]]))
    assert np.isnan(got[0]) and np.isfinite(got[1])


def test_bandwidth_modes_and_one_frame_clips():
    m = KAD("emb", bandwidth="reference", n_boot=0)
    m.update("reference", clips(1, 8, 4, 8, 0.0))
    m.update("generated", {**clips(2, 6, 3, 8, 0.5), "single": np.zeros((1, 8), np.float32)})
    res = m.compute()
    assert res.extra["bandwidth"] == pytest.approx(median_pairwise_distance(m.frames("reference")), rel=1e-12)
    assert res.value == pytest.approx(dense_kad(m.frames("reference"), m.frames("generated"), res.extra["bandwidth"])[0], rel=1e-9)
    assert "single" not in res.per_item and res.extra["per_clip_skipped"] == ["single"]
    with pytest.raises(KADError, match="bandwidth must be"):
        KAD(bandwidth="median")


def test_kad_inf_follows_kadtk_score_inf():
    x, y = sets(9, 150, 400, 8)
    got = kad_inf(x, y, steps=5, min_n=100, seed=4)
    rng = np.random.default_rng(4)
    ns = [int(v) for v in np.linspace(100, 400, 5)]
    scores = [dense_kad(x, y[rng.choice(400, size=n, replace=True)])[0] for n in ns]  # σ redrawn per draw
    slope, intercept = np.polyfit(1 / np.array(ns), scores, 1)
    assert [p[0] for p in got["kad_inf_points"]] == ns
    assert got["kad_inf"] == pytest.approx(intercept, rel=1e-6, abs=1e-9)
    assert got["kad_inf_slope"] == pytest.approx(slope, rel=1e-6, abs=1e-9)


def test_interval_is_the_jackknife_t_interval_of_a_delete_one_loop(filled):
    """KAD's interval: θ̂ − b_J ± t_ν·se_J from deleting each clip of each side in turn (dense kadtk-style
    KAD at the point value's bandwidth), Welch–Satterthwaite ν; an interval for the population value, so
    not widened to contain θ̂."""
    from scipy import stats

    filled.n_boot = 200
    res = filled.compute()
    ref, gen = filled.outputs["reference"], filled.outputs["generated"]
    sigma = res.extra["bandwidth"]

    def kad(r: dict, g: dict) -> float:
        return dense_kad(np.concatenate(list(r.values())).astype(np.float64),
                         np.concatenate(list(g.values())).astype(np.float64), sigma)[0]

    theta, bias, parts = kad(ref, gen), 0.0, []
    for jack in ([kad({k: v for k, v in ref.items() if k != c}, gen) for c in ref],
                 [kad(ref, {k: v for k, v in gen.items() if k != c}) for c in gen]):
        t, n = np.array(jack), len(jack)
        bias += (n - 1) * (t.mean() - theta)
        parts.append(((n - 1) / n * ((t - t.mean()) ** 2).sum(), n - 1))
    var = sum(v for v, _ in parts)
    half = stats.t.ppf(0.975, var**2 / sum(v * v / d for v, d in parts)) * np.sqrt(var)
    assert res.value == pytest.approx(theta, rel=1e-9)
    np.testing.assert_allclose(res.ci95, (theta - bias - half, theta - bias + half), rtol=1e-7)


def test_float32_precision_is_close_and_named():
    x, y = sets(11, 400, 300, 64)
    ref = dense_kad(x, y)[0]
    assert kernel_audio_distance(x, y, precision="float32")[0] == pytest.approx(ref, rel=1e-5)
    with pytest.raises(KADError, match="precision must be"):
        kernel_audio_distance(x, y, precision="float16")
    assert KAD(precision="float32").config()["precision"] == "float32"


def test_small_blocks_give_the_same_values(filled):
    """Blocks smaller than a clip and straddling clip boundaries (the clip-level tiles of resampling)."""
    big = filled.compute()
    rng = np.random.default_rng(8)
    r, g = list(rng.choice(filled.ids("reference"), 12)), list(rng.choice(filled.ids("generated"), 10))
    expected = filled.value_on(r, g)
    small = KAD(block=5, n_boot=0)
    small.update("reference", filled.outputs["reference"])
    small.update("generated", filled.outputs["generated"])
    res = small.compute()
    assert res.value == pytest.approx(big.value, rel=1e-9)
    assert all(res.per_item[c] == pytest.approx(v, rel=1e-9) for c, v in big.per_item.items())
    assert small.value_on(r, g) == pytest.approx(expected, rel=1e-9)
