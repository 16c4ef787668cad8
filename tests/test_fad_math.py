"""FAD core math: parity with the classic sqrtm formula, closed forms, streaming = batch, FAD∞, CIs."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from metrics.fad import (
    EmbeddingStats,
    FADError,
    SingularCovarianceWarning,
    fad,
    fad_inf,
    frechet_distance,
    per_clip_fad,
)


def sqrtm_frechet(mu1, sigma1, mu2, sigma2):
    """Google's ``fad_utils.frechet_distance`` (the scipy sqrtm route), written out."""
    diff = mu1 - mu2
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def random_spd(rng, d):
    a = rng.standard_normal((d, d))
    return a @ a.T / d + 0.5 * np.eye(d)


@pytest.mark.parametrize("d", [2, 16, 128, 1024])
def test_parity_with_sqrtm_formula(d):
    rng = np.random.default_rng(d)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    s1, s2 = random_spd(rng, d), random_spd(rng, d)
    ours, ref = frechet_distance(mu1, s1, mu2, s2), sqrtm_frechet(mu1, s1, mu2, s2)
    assert abs(ours - ref) <= 1e-9 * abs(ref)


def test_closed_form_for_diagonal_covariances(rng):
    # For commuting (diagonal) covariances FD = ‖μ1−μ2‖² + Σ (√a_i − √b_i)².
    a, b = rng.uniform(0.1, 3, 50), rng.uniform(0.1, 3, 50)
    mu1, mu2 = rng.standard_normal(50), rng.standard_normal(50)
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("d", [8, 128, 512])
def test_identical_statistics_give_zero_not_negative(d):
    rng = np.random.default_rng(d)
    mu, sigma = rng.standard_normal(d) * 10, random_spd(rng, d) * 100
    value = frechet_distance(mu, sigma, mu, sigma)
    scale = 2 * np.trace(sigma)
    assert -1e-9 * scale <= value <= 1e-9 * scale


def test_near_singular_covariances_are_finite_symmetric_and_nonnegative():
    # 10 frames in 64 dims: rank-9 covariances, where sqrtm produces complex parts.
    rng = np.random.default_rng(7)
    x, y = rng.standard_normal((10, 64)), rng.standard_normal((10, 64)) + 0.3
    m1, s1, m2, s2 = x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False)
    ab, ba = frechet_distance(m1, s1, m2, s2), frechet_distance(m2, s2, m1, s1)
    assert np.isfinite(ab) and ab > 0
    assert ab == pytest.approx(ba, rel=1e-8)
    assert frechet_distance(m1, s1, m1, s1) == pytest.approx(0.0, abs=1e-9 * 2 * np.trace(s1))


def test_bad_inputs_are_clear_errors(rng):
    s = random_spd(rng, 4)
    with pytest.raises(FADError, match=r"dimension mismatch: reference has dim 4, generated has dim 3"):
        frechet_distance(np.zeros(4), s, np.zeros(3), s[:3, :3])
    with pytest.raises(FADError, match=r"sigma1 has shape \(4, 4\), expected \(3, 3\)"):
        frechet_distance(np.zeros(3), s, np.zeros(3), s[:3, :3])
    bad = s.copy()
    bad[0, 0] = np.nan
    with pytest.raises(FADError, match="mu2/sigma2 contain NaN or Inf"):
        frechet_distance(np.zeros(4), s, np.zeros(4), bad)
    asym = s.copy()
    asym[0, 1] += 1
    with pytest.raises(FADError, match="sigma1 is not symmetric"):
        frechet_distance(np.zeros(4), asym, np.zeros(4), s)
    indefinite = np.diag([1.0, 1.0, 1.0, -0.5])
    with pytest.raises(FADError, match=r"sigma1 is not positive semi-definite \(eigenvalue -5.000e-01"):
        frechet_distance(np.zeros(4), indefinite, np.zeros(4), s)
    with pytest.raises(FADError, match=r"sigma2 \(seen through sigma1\) is not positive semi-definite"):
        frechet_distance(np.zeros(4), s, np.zeros(4), indefinite)


def test_streaming_equals_batch(rng):
    x = rng.standard_normal((1000, 32)) * rng.uniform(0.1, 10, 32) + 5
    s = EmbeddingStats()
    cuts = np.sort(rng.choice(np.arange(1, 1000), 12, replace=False))
    for chunk in np.split(x, cuts):
        s.update(chunk)
    s.update(x[:0])  # an empty chunk changes nothing
    np.testing.assert_allclose(s.mean, x.mean(0), rtol=0, atol=1e-10)
    np.testing.assert_allclose(s.cov, np.cov(x, rowvar=False, ddof=1), rtol=0, atol=1e-10)
    assert s.n == 1000


def test_merge_equals_batch_and_is_stable_with_large_offsets(rng):
    # Naive Σxxᵀ − nμμᵀ loses every digit at an offset of 1e6 with unit variance; Chan's merge does not.
    x = rng.standard_normal((600, 8)) + 1e6
    parts = [EmbeddingStats().update(p) for p in np.array_split(x, 5)]
    merged = parts[0]
    for p in parts[1:]:
        merged.merge(p)
    centred = x - 1e6
    np.testing.assert_allclose(merged.cov, np.cov(centred, rowvar=False), rtol=1e-8, atol=1e-8)
    assert merged.n == 600 and merged.n_clips == 5


def test_stats_save_load_roundtrip(tmp_path, rng):
    s = EmbeddingStats(embedder="mel-abc", config={"sr": 16000}).update(rng.standard_normal((50, 6)), clips=3)
    path = s.save(tmp_path / "ref.npz")
    with np.load(path) as z:
        assert {"mu", "sigma", "n"} <= set(z.files)
        np.testing.assert_array_equal(z["mu"], s.mean)
        np.testing.assert_array_equal(z["sigma"], s.cov)
    back = EmbeddingStats.load(path)
    assert (back.embedder, back.config, back.n, back.n_clips, back.dim) == ("mel-abc", {"sr": 16000}, 50, 3, 6)
    np.testing.assert_allclose(back.cov, s.cov, rtol=1e-15)
    # a loaded state still merges exactly
    more = rng.standard_normal((30, 6))
    both = np.concatenate([rng.standard_normal((0, 6)), more])
    back.merge(EmbeddingStats(embedder="mel-abc").update(both))
    assert back.n == 80


def test_stats_load_errors(tmp_path):
    np.savez(tmp_path / "nomu.npz", sigma=np.eye(2), n=3)
    with pytest.raises(FADError, match=r"nomu.npz: missing key\(s\) mu"):
        EmbeddingStats.load(tmp_path / "nomu.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(FADError, match="junk.npz: not a readable .npz statistics file"):
        EmbeddingStats.load(tmp_path / "junk.npz")
    with pytest.raises(FADError, match="missing.npz: statistics file not found"):
        EmbeddingStats.load(tmp_path / "missing.npz")


def test_fad_from_arrays_stats_and_mappings_agree(rng):
    ref, gen = rng.standard_normal((300, 8)), rng.standard_normal((200, 8)) + 0.5
    direct = frechet_distance(ref.mean(0), np.cov(ref, rowvar=False), gen.mean(0), np.cov(gen, rowvar=False))
    by_map = fad({"a": ref[:100], "b": ref[100:]}, {"x": gen[:50], "y": gen[50:]})
    assert fad(ref, gen).value == pytest.approx(direct, rel=1e-12)
    assert by_map.value == pytest.approx(direct, rel=1e-12)
    assert by_map.extra["n_reference"] == 2 and by_map.extra["n_generated_frames"] == 200 and by_map.extra["dim"] == 8


def test_fad_refuses_mixed_embedders_and_warns_when_singular(rng):
    a = EmbeddingStats(embedder="vggish-1").update(rng.standard_normal((40, 4)))
    b = EmbeddingStats(embedder="trill-2").update(rng.standard_normal((40, 4)))
    with pytest.raises(FADError, match="reference statistics come from embedder 'vggish-1' but generated from 'trill-2'"):
        fad(a, b)
    with pytest.raises(FADError, match="dimension mismatch: reference has dim 4, generated has dim 5"):
        fad(a, rng.standard_normal((40, 5)))
    with pytest.warns(SingularCovarianceWarning, match="generated set has 3 frames for 4 dimensions"):
        fad(a, rng.standard_normal((3, 4)))


def test_fad_inf_is_seeded_and_removes_sample_size_bias():
    rng = np.random.default_rng(3)
    d = 16
    cov = random_spd(rng, d)
    ref = EmbeddingStats()
    ref._ensure(d)
    ref.n, ref._mean, ref._m2 = 10**6, np.zeros(d), cov * (10**6 - 1)  # the true distribution
    gen = rng.multivariate_normal(np.zeros(d), cov, size=2000)
    value, r2 = fad_inf(ref, gen, seed=1)
    assert (value, r2) == fad_inf(ref, gen, seed=1)
    full = fad(ref, gen).value
    assert full > 0.02  # finite-sample bias of the plain estimate
    assert abs(value) < 0.25 * full  # extrapolation removes most of it
    assert r2 > 0.8


def test_per_clip_fad_matches_formula_and_point_mass(rng):
    ref = EmbeddingStats().update(rng.standard_normal((100, 5)))
    clip = rng.standard_normal((7, 5)) + 1
    one = rng.standard_normal((1, 5))
    out = per_clip_fad(ref, {"c": clip, "one": one})
    assert out["c"] == pytest.approx(frechet_distance(ref.mean, ref.cov, clip.mean(0), np.cov(clip, rowvar=False)))
    assert out["one"] == pytest.approx(((ref.mean - one[0]) ** 2).sum() + np.trace(ref.cov), rel=1e-12)
    with pytest.raises(FADError, match=r"clip bad: embeddings have shape \(4, 3\), expected \[frames>0, 5\]"):
        per_clip_fad(ref, {"bad": np.zeros((4, 3))})


def test_the_old_baseline_interval_is_seeded_and_narrows_with_more_clips():
    """The coverage benchmark's old interval (benchmarks/interval_coverage.py) still behaves as documented."""
    from benchmarks.interval_coverage import bootstrap_fad_ci

    rng = np.random.default_rng(11)
    ref = EmbeddingStats().update(rng.standard_normal((2000, 4)))
    small = {f"c{i}": rng.standard_normal((5, 4)) + 0.5 for i in range(10)}
    large = {f"c{i}": rng.standard_normal((5, 4)) + 0.5 for i in range(160)}
    lo, hi = bootstrap_fad_ci(ref, small, n_boot=100, seed=0)
    assert (lo, hi) == bootstrap_fad_ci(ref, small, n_boot=100, seed=0)
    assert 0 <= lo < hi
    lo2, hi2 = bootstrap_fad_ci(ref, large, n_boot=100, seed=0)
    assert hi2 - lo2 < (hi - lo) / 2
    assert lo2 <= fad(ref, large).value <= hi2


def test_cholesky_fast_path_and_eigh_route_agree_on_a_singular_side():
    # Σ1 of rank 20 in 48 dims has no Cholesky factor (eigh route); swapped, Σ2 = Σ1' is PD (fast path).
    rng = np.random.default_rng(11)
    low = rng.standard_normal((21, 48))
    s_singular, s_full = np.cov(low, rowvar=False), random_spd(rng, 48)
    with pytest.raises(np.linalg.LinAlgError):
        np.linalg.cholesky(s_singular)
    mu1, mu2 = rng.standard_normal(48), rng.standard_normal(48)
    ab, ba = frechet_distance(mu1, s_singular, mu2, s_full), frechet_distance(mu2, s_full, mu1, s_singular)
    assert ab == pytest.approx(ba, rel=1e-10)
    assert ab == pytest.approx(sqrtm_frechet(mu1, s_singular, mu2, s_full), rel=1e-8)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_blocked_update_is_bit_identical_for_any_chunking(monkeypatch, dtype):
    # Blocks are cut at fixed frame offsets: per-clip updates, one big update and odd chunks agree exactly.
    import metrics.fad as fad_module

    monkeypatch.setattr(fad_module, "BLOCK_ROWS", 64)
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((1000, 32)) * rng.uniform(0.1, 10, 32) + 3).astype(dtype)
    whole = EmbeddingStats().update(x)
    per_clip = EmbeddingStats()
    for clip in np.array_split(x, 100):  # 10 frames a clip, as embedders deliver them
        per_clip.update(clip)
    odd = EmbeddingStats()
    for chunk in np.split(x, [1, 63, 64, 200, 201, 777]):
        odd.update(chunk)
    for s in (per_clip, odd):
        assert s.n == 1000 and np.array_equal(s.mean, whole.mean) and np.array_equal(s.cov, whole.cov)
    np.testing.assert_allclose(whole.cov, np.cov(x.astype(np.float64), rowvar=False), rtol=1e-12, atol=1e-12)
    assert per_clip.n_clips == 100


def test_update_copies_buffered_frames(rng):
    # Frames wait in a buffer until a block fills; a caller reusing its array must not change them.
    x = rng.standard_normal((10, 4))
    s = EmbeddingStats().update(x)
    expected = x.mean(0)
    x[:] = 1e9
    np.testing.assert_allclose(s.mean, expected, rtol=1e-15)


@pytest.mark.parametrize("d", [1, 5, 128, 300])
def test_tiled_symmetrize_equals_the_plain_formula(d):
    from metrics.fad import _symmetrize

    rng = np.random.default_rng(d)
    s = rng.standard_normal((d, d))
    sym, asym = _symmetrize(s)
    np.testing.assert_array_equal(sym, (s + s.T) / 2)
    assert asym == np.abs(s - s.T).max()
