"""MAD (metrics/mad.py) against the peer's own code: mauve-text's ``compute_mauve`` on the same features.

The parity bar of issue #30: −log of ``mauve.compute_mauve(p_features=generated, q_features=reference)`` (what
MAD's ``mad_metric.compute_mad`` returns) within 1e-6, with the same PCA / k-means settings and seed; the
frontier and area on the same histograms through mauve's own internal functions; the scikit-learn fallback's
quantization on its own; monotonicity in a drift; the Metric route (resamples, intervals, paired tests,
the store through ``compare --mad``).
"""

from __future__ import annotations

import numpy as np
import pytest

from metrics.mad import MAD, MADError, auto_buckets, frontier, histograms, mauve_of_histograms, quantize

mauve = pytest.importorskip("mauve", reason="the optional 'mad' extra (mauve-text) is not installed")
from mauve.compute_mauve import compute_area_under_curve, get_divergence_curve_for_multinomials  # noqa: E402


def sets(seed: int, n_p: int, n_q: int, d: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n_p, d)) + shift, rng.standard_normal((n_q, d))


def metric_of(p: np.ndarray, q: np.ndarray, **kw) -> MAD:
    """A MAD state fed one pooled vector per clip (a [1, d] frame array: the max over one frame is the vector)."""
    m = MAD("test", **kw)
    m.update("reference", {f"r{i:03d}": v[None] for i, v in enumerate(q)})
    m.update("generated", {f"g{i:03d}": v[None] for i, v in enumerate(p)})
    return m


@pytest.mark.parametrize("seed,n_p,n_q,d,shift,buckets", [(0, 120, 100, 24, 0.3, "auto"), (1, 60, 80, 16, 0.0, "auto"),
                                                          (2, 90, 90, 40, 1.0, 7), (3, 35, 50, 8, 0.5, "auto")])
def test_mad_equals_minus_log_of_mauve_compute_mauve(seed, n_p, n_q, d, shift, buckets):
    p, q = sets(seed, n_p, n_q, d, shift)
    peer = mauve.compute_mauve(p_features=p, q_features=q, num_buckets=buckets)
    res = metric_of(p, q, num_buckets=buckets, n_boot=0).compute()
    assert abs(res.value - (-np.log(peer.mauve))) <= 1e-6
    assert res.extra["num_buckets_used"] == peer.num_buckets
    np.testing.assert_array_equal(res.extra["p_hist"], peer.p_hist)  # same labels: same histograms
    np.testing.assert_array_equal(res.extra["q_hist"], peer.q_hist)
    assert res.extra["kmeans_backend"].startswith("faiss") and res.per_item == {} and "set-level" in res.extra["per_clip"]


def test_frontier_and_area_match_mauve_on_the_same_histograms():
    """Our vectorized frontier and area against mauve's own loop (zero buckets on either side included)."""
    rng = np.random.default_rng(4)
    rows = []
    for k in (2, 5, 13, 40):
        for zeros in (0, 1, 3):
            p, q = rng.random(k) ** 3, rng.random(k)
            p[:min(zeros, k - 1)] = 0
            q[k - min(zeros, k - 1):] = 0
            p, q = p / p.sum(), q / q.sum()
            curve = get_divergence_curve_for_multinomials(p, q, np.linspace(1e-6, 1 - 1e-6, 25), 5)
            x, y = curve.T
            i, j = np.argsort(x), np.argsort(y)
            peer = 0.5 * (compute_area_under_curve(x[i], y[i]) + compute_area_under_curve(y[j], x[j]))
            ox, oy = frontier(p, q)
            np.testing.assert_allclose(np.sort(ox), np.sort(x), rtol=0, atol=1e-12)
            np.testing.assert_allclose(np.sort(oy), np.sort(y), rtol=0, atol=1e-12)
            assert abs(float(mauve_of_histograms(p, q)) - peer) <= 1e-12
            if k == 13:
                rows.append((p, q, peer))
    batched = mauve_of_histograms(np.stack([r[0] for r in rows]), np.stack([r[1] for r in rows]))
    np.testing.assert_allclose(batched, [r[2] for r in rows], rtol=0, atol=1e-12)
    assert float(mauve_of_histograms(rows[0][0], rows[0][0])) == pytest.approx(1.0, abs=1e-12)


def test_scikit_learn_fallback_finds_separated_clusters(monkeypatch):
    """Without faiss, scikit-learn's k-means (k-means++ starts): the planted partition of well-separated clusters.

    Not compared with faiss here: faiss starts from random points, and on this set all 5 of mauve's restarts
    (seed 27) end in one local optimum that merges two clusters; that is mauve's quantization, kept as it is."""
    rng = np.random.default_rng(5)
    centres = rng.standard_normal((4, 12)) * 20
    p = np.concatenate([c + rng.standard_normal((15, 12)) * 0.1 for c in centres])
    q = np.concatenate([c + rng.standard_normal((10, 12)) * 0.1 for c in centres])
    monkeypatch.setitem(__import__("sys").modules, "faiss", None)  # `import faiss` raises ImportError
    sp, sq, info = quantize(p, q, 4)
    assert info["kmeans_backend"].startswith("scikit-learn") and info["pca_dim"] == 3
    labels = np.concatenate([sq, sp])
    truth = np.concatenate([np.repeat(np.arange(4), 10), np.repeat(np.arange(4), 15)])
    assert len(set(zip(truth, labels))) == 4 == len(set(labels))  # a bijection: each planted cluster one bucket


def test_mad_grows_as_the_generated_set_drifts():
    """Mean MAD over 5 sample pairs rises with the drift of p along one axis (one pair alone is within the
    quantization's noise at a small step: 0.070 at no drift, 0.067 at a drift of 1 sd for one seed)."""
    shifts = (0.0, 1.0, 2.0, 4.0, 8.0)
    values = np.zeros(len(shifts))
    for rep in range(5):
        q = np.random.default_rng(100 + rep).standard_normal((150, 16))
        base = np.random.default_rng(200 + rep).standard_normal((150, 16))
        values += [metric_of(base + s * np.eye(16)[0], q, n_boot=0).compute().value / 5 for s in shifts]
    assert values[0] < 0.2 and all(b > a for a, b in zip(values, values[1:])), values


def test_resampling_keeps_the_buckets_and_intervals_cover_the_value():
    p, q = sets(8, 40, 30, 6, 0.7)
    m = metric_of(p, q, n_boot=200, seed=3)
    res = m.compute()
    assert res.value == pytest.approx(m.value_on(m.ids("reference"), m.ids("generated")), abs=1e-12)
    lo, hi = res.ci95
    assert 0.0 <= lo <= res.value <= hi
    # a resample by hand: re-count each clip's bucket with its draws, then mauve's own formula
    q_lab, p_lab, k, _ = m._quantization()
    rng = np.random.default_rng(0)
    rc, gc = rng.multinomial(30, np.ones(30) / 30), rng.multinomial(40, np.ones(40) / 40)
    ph = np.bincount(np.repeat(p_lab, gc), minlength=k) / 40
    qh = np.bincount(np.repeat(q_lab, rc), minlength=k) / 30
    curve = get_divergence_curve_for_multinomials(ph, qh, np.linspace(1e-6, 1 - 1e-6, 25), 5)
    x, y = curve.T
    i, j = np.argsort(x), np.argsort(y)
    peer = 0.5 * (compute_area_under_curve(x[i], y[i]) + compute_area_under_curve(y[j], x[j]))
    assert float(m.value_on_counts(rc[None], gc[None])[0]) == pytest.approx(-np.log(peer), abs=1e-12)
    assert np.isnan(m.value_on_counts(np.zeros((1, 30)), gc[None])[0])  # no reference clip drawn: no histogram


def test_paired_test_ranks_a_drifted_system_worse():
    from metrics.intervals import paired_comparison

    rng = np.random.default_rng(9)
    ids = [f"c{i:02d}" for i in range(60)]
    ref = {i: rng.standard_normal((3, 8)) for i in ids}
    states = []
    for shift in (0.0, 2.0):
        m = MAD("test", n_boot=100, seed=0)
        m.update("reference", ref)
        m.update("generated", {i: rng.standard_normal((3, 8)) + shift for i in ids})
        states.append(m)
    row = paired_comparison(states[0], states[1], n_boot=100, seed=0)
    assert row["diff"] < 0 and row["ci95"][1] < 0 and row["p_value"] < 0.05


def test_merge_pooling_and_errors():
    rng = np.random.default_rng(10)
    frames = {f"c{i}": rng.standard_normal((4, 5)) for i in range(30)}
    ref = {f"r{i}": rng.standard_normal((4, 5)) for i in range(30)}
    whole = MAD("e", n_boot=0)
    whole.update("reference", ref)
    whole.update("generated", frames)
    a, b = MAD("e", n_boot=0), MAD("e", n_boot=0)
    a.update("reference", ref)
    a.update("generated", dict(list(frames.items())[:12]))
    b.update("generated", dict(list(frames.items())[12:]))
    assert a.merge(b).compute().value == whole.compute().value
    pooled = MAD("e", n_boot=0)
    pooled.update("reference", {i: v.max(0)[None] for i, v in ref.items()})
    pooled.update("generated", {i: v.max(0)[None] for i, v in frames.items()})
    assert pooled.compute().value == whole.compute().value  # aggregation "max": MAD's max over time
    assert MAD("e", aggregation="mean", n_boot=0).config()["aggregation"] == "mean"
    assert auto_buckets(35, 50) == 4 and auto_buckets(12, 400) == 2
    np.testing.assert_array_equal(histograms(np.array([0, 2, 2]), 3), [1 / 3, 0, 2 / 3])
    with pytest.raises(MADError, match="aggregation must be one of max, mean"):
        MAD(aggregation="median")
    with pytest.raises(MADError, match="num_buckets must be 'auto' or an integer >= 2"):
        MAD(num_buckets=1)
    short = MAD("e", n_boot=0)
    short.update("reference", {"r": np.ones((2, 5))})
    short.update("generated", {"g": np.ones((2, 5))})
    with pytest.raises(MADError, match="at least 2 clips a side"):
        short.compute()
    odd = MAD("e", n_boot=0)
    odd.update("reference", ref)
    odd.update("generated", {"x": np.ones((2, 4)), "y": np.zeros((2, 4))})
    with pytest.raises(MADError, match="reference dim 5 != generated dim 4"):
        odd.compute()
    assert not whole.comparable_to_paper() and "not comparable" in whole.compute().extra["paper_note"]
    assert MAD("mert-v1-330m-L24-0123abcd").comparable_to_paper()


def test_compare_mad_writes_values_intervals_and_paired_tests(small_corpus, tmp_path):
    """``compare --mad`` on the mel embedder: the store holds mad_mel per system with its interval, direction,
    settings and the paired test of the two systems."""
    import json

    from click.testing import CliRunner

    from benchmarks.cli import main
    from metrics.audio import load_dir, save_audio

    ref, a, b = tmp_path / "ref", tmp_path / "a", tmp_path / "b"
    ref.mkdir()
    for p in sorted(small_corpus.glob("*.wav"))[:12]:
        (ref / p.name).write_bytes(p.read_bytes())
    rng = np.random.default_rng(11)
    for clip in load_dir(ref).clips:
        for d, level in ((a, 0.003), (b, 0.2)):
            save_audio(d / f"{clip.id}.wav", clip.wave + level * rng.standard_normal(len(clip.wave)).astype(np.float32), clip.sr)
    out = tmp_path / "store"
    r = CliRunner().invoke(main, ["compare", "--system", f"a={a}", "--system", f"b={b}", "--reference", str(ref),
                                  "--captions", str(small_corpus / "captions.csv"), "--out", str(out), "--embedders", "mel",
                                  "--classifier", "none", "--joint", "none", "--mad", "--bootstrap", "50", "--no-cache"])
    assert r.exit_code == 0, r.output
    data = json.loads((out / "results.json").read_text())
    for name in ("a", "b"):
        m = data["systems"][name]["metrics"]["mad_mel"]
        assert m["higher_is_better"] is False and m["value"] >= 0 and m["ci95"][0] <= m["value"] <= m["ci95"][1]
    assert data["metadata"]["config"]["mad"] is True
    mad = {n: data["systems"][n]["metrics"]["mad_mel"] for n in ("a", "b")}
    assert mad["b"]["value"] > mad["a"]["value"], mad  # the noisier copy is further from the reference
    rows = [p for p in data["metadata"].get("pairwise") or data.get("pairwise") or [] if p["metric"] == "mad_mel"]
    assert len(rows) == 1 and rows[0]["diff"] is not None
