"""Memorization core on token sequences: planted copies, calibration, the prompt sweep, bad input.

Synthetic vocabulary: K random centroids; each clip draws its tokens from its own small "style"
subset, so two different clips have clearly different histograms, like two different pieces.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

os.environ.setdefault("POT_BACKEND_DISABLE_TENSORFLOW", "1")

from metrics.intervals import wilson_ci  # noqa: E402
from metrics.memorization import (  # noqa: E402
    Example,
    FewNegativesWarning,
    MemorizationError,
    OTScorer,
    audit,
    calibrate_tau,
    cut_windows,
    entropy_bits,
    prompt_sweep,
)
from metrics.memorization.calibration import tolerance_factor  # noqa: E402

K, D = 64, 8


def centroids(seed=0):
    return np.random.default_rng(seed).normal(size=(K, D))


def style_clip(rng, n, style_size=8, segment=None):
    """Tokens drawn from a clip-specific subset; with ``segment``, each 1 s segment re-draws a 4-token
    sub-palette, so the piece changes over time (windows at different offsets differ)."""
    style = rng.choice(K, style_size, replace=False)
    if segment is None:
        return style[rng.integers(0, style_size, size=n)]
    parts = [rng.choice(style, 4, replace=False)[rng.integers(0, 4, size=segment)] for _ in range(-(-n // segment))]
    return np.concatenate(parts)[:n]


def nearest_other(c):
    d = ((c[:, None] - c[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    return d.argmin(1)


def noisy(rng, toks, c, frac=0.08):
    """Replace a fraction of tokens by the nearest other centroid (a small acoustic change)."""
    out = toks.copy()
    idx = rng.choice(len(out), int(frac * len(out)), replace=False)
    out[idx] = nearest_other(c)[out[idx]]
    return out


def test_windows_and_entropy():
    w = cut_windows({"a": np.arange(10), "b": np.arange(7)}, window=5, hop=3)
    assert w.offset.tolist() == [0, 3, 5, 0, 2]  # last window flush with the end
    assert w.tokens[1].tolist() == [3, 4, 5, 6, 7]
    assert entropy_bits(np.array([1, 1, 2, 2])) == pytest.approx(1.0)
    assert entropy_bits(np.zeros(9, dtype=int)) == 0.0


def test_lower_bound_never_exceeds_cost():
    rng = np.random.default_rng(1)
    sc = OTScorer(centroids())
    a = np.stack([style_clip(rng, 40) for _ in range(12)])
    b = np.stack([style_clip(rng, 40) for _ in range(12)])
    assert np.all(sc.lower_bound(a, b) <= sc.costs(a, b) + 1e-6)


def test_calibration_achieves_requested_fpr_on_heldout():
    rng = np.random.default_rng(2)
    sc = OTScorer(centroids())
    n = 1000
    a = np.stack([style_clip(rng, 30, 12) for _ in range(n)])
    b = np.stack([style_clip(rng, 30, 12) for _ in range(n)])
    cal = calibrate_tau(sc, a, b, fpr=0.05, seed=0)
    assert cal.fpr_calibration <= 0.05
    assert cal.n_heldout == 500 and cal.resolution == pytest.approx(1 / 500)
    lo, hi = cal.fpr_heldout_ci95
    assert lo <= 0.05 <= hi  # the held-out FPR is consistent with the requested one
    assert cal.n_solved < n  # the lower bound pruned the rest


def test_too_few_negatives_warn():
    rng = np.random.default_rng(3)
    sc = OTScorer(centroids())
    a = np.stack([style_clip(rng, 30) for _ in range(40)])
    b = np.stack([style_clip(rng, 30) for _ in range(40)])
    with pytest.warns(FewNegativesWarning, match="cannot certify FPR 0.0001"):
        calibrate_tau(sc, a, b, fpr=1e-4)


def novel_clips(rng, n, length=150, prefix="null"):
    return {f"{prefix}{i:03d}": style_clip(rng, length, 12, segment=25) for i in range(n)}


@pytest.fixture(scope="module")
def planted():
    """12 training clips (10 s) and generated clips with planted copies of four kinds plus novel ones;
    40 null clips (novel pieces of the same kind) calibrate τ per clip."""
    rng = np.random.default_rng(4)
    c = centroids()
    train = {f"tr{i:02d}": style_clip(rng, 250, 12, segment=25) for i in range(12)}
    gen, truth = {}, {}
    for i in range(3):  # exact copies of 6 s starting at a token offset
        src, t0 = f"tr{i:02d}", int(rng.integers(0, 100))
        gen[f"exact{i}"] = train[src][t0 : t0 + 150].copy()
        truth[f"exact{i}"] = (src, t0 / 25)
    for i in range(3):  # shifted: 1-2 s of novel material, then the copy
        src, t0, pad = f"tr{i + 5:02d}", int(rng.integers(0, 100)), int(rng.integers(25, 50))
        gen[f"shift{i}"] = np.concatenate([style_clip(rng, pad, 12, segment=25), train[src][t0 : t0 + 150]])
        truth[f"shift{i}"] = (src, (t0 - pad) / 25)
    for i in range(3):  # lightly changed copies (8% of tokens moved to the nearest centroid)
        src, t0 = f"tr{(i + 3) % 12:02d}", int(rng.integers(0, 100))
        gen[f"noisy{i}"] = noisy(rng, train[src][t0 : t0 + 150], c)
        truth[f"noisy{i}"] = (src, t0 / 25)
    gen.update(novel_clips(rng, 6, prefix="novel"))
    null = novel_clips(rng, 40)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FewNegativesWarning)
        res = audit(gen, train, c, fpr=0.05, gen_hop=25, null=null, seed=0)
    return res, truth


def test_audit_finds_planted_copies_with_id_and_offset(planted):
    res, truth = planted
    missed = []
    for gid, (src, lag) in truth.items():
        rows = [m for m in res.matches if m["generated_id"] == gid and m["train_id"] == src]
        if not rows or abs((rows[0]["train_offset_s"] - rows[0]["gen_offset_s"]) - lag) > 0.08 + 1e-9:  # ≤ 2 frames
            missed.append((gid, src, lag, rows))
    assert not missed, missed
    for i in range(3):
        assert any(m["exact"] for m in res.matches if m["generated_id"] == f"exact{i}")
        assert not any(m["exact"] for m in res.matches if m["generated_id"] == f"noisy{i}")
    assert res.exact_rate == pytest.approx(6 / 15)  # exact and shifted copies contain identical windows


def test_audit_reports_no_novel_clip_and_measures_per_clip_false_alarms(planted):
    res, _ = planted
    assert [k for k, v in res.best_cost.items() if k.startswith("novel") and v < np.inf] == []
    cal = res.calibration
    assert (cal.n_calibration, cal.n_heldout, cal.source) == (20, 20, "null")
    # 20 nulls are too few for a rank to give 5 % with 95 % confidence (that needs 59): the normal tolerance tail
    assert cal.confidence == 0.95 and cal.tail == "normal-tolerance"
    m = np.asarray(cal.null_minima)
    assert cal.tau == pytest.approx(min(m.min(), m.mean() - tolerance_factor(20, 0.05, 0.95) * m.std(ddof=1)))
    assert tuple(cal.clip_false_alarm_ci95) == pytest.approx(wilson_ci(cal.clip_false_alarms, 20))
    d = res.to_dict()
    assert d["clip_false_alarm_rate"] == cal.clip_false_alarm_rate and d["n_null_heldout"] == 20


def test_audit_bad_input():
    c = centroids()
    ok = {"a": np.zeros(130, dtype=np.int64)}
    with pytest.raises(MemorizationError, match="generated: empty set"):
        audit({}, ok, c)
    with pytest.raises(MemorizationError, match=r"train/b: 100 tokens is shorter than a window of 125 tokens \(5 s"):
        audit(ok, {"b": np.zeros(100, dtype=np.int64)}, c)
    with pytest.raises(MemorizationError, match=r"generated/a: token id 64 outside the vocabulary \[0, 64\)"):
        audit({"a": np.full(130, 64)}, ok, c)
    with pytest.raises(MemorizationError, match="vocabulary mismatch: vocab_size=100"):
        OTScorer(c, vocab_size=100)


# -- the prompt sweep with a model whose memorization is known -------------------------------


def memorizer(examples, c, seed=5):
    """Copies the training continuation once the prompt is ≥ 2 s; a lightly changed copy at 1 s; novel at 0."""
    by_prefix = {e.semantic[:25].tobytes(): e for e in examples}
    rng = np.random.default_rng(seed)

    def continue_fn(cond, prompt, n_new):
        t = len(prompt)
        if t == 0:
            return style_clip(rng, n_new)
        e = by_prefix[prompt[:25].tobytes()]
        true = e.semantic[t : t + n_new]
        return true.copy() if t >= 50 else noisy(rng, true, c)

    return continue_fn


def test_prompt_sweep_recovers_the_known_memorization_curve(tmp_path):
    rng = np.random.default_rng(6)
    c = centroids()
    examples = [Example(f"ex{i:02d}", np.arange(12), style_clip(rng, 225)) for i in range(24)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FewNegativesWarning)
        res = prompt_sweep(examples, memorizer(examples, c), c, prompt_lengths=[0, 25, 50, 100], fpr=0.01)
    rates = {r["prompt_tokens"]: (r["exact_rate"], r["approx_rate"]) for r in res.rows}
    assert rates[0] == (0.0, 0.0)
    assert rates[25][0] == 0.0 and rates[25][1] >= 0.95
    assert rates[50] == (1.0, 1.0) and rates[100] == (1.0, 1.0)
    assert res.exact_rate == pytest.approx(0.5)
    assert res.rows[0]["entropy_matched_bits"] is None and res.entropy_matched_bits is not None
    lo, hi = res.rows[2]["exact_ci95"]
    assert (lo, hi) == pytest.approx(wilson_ci(24, 24))


def test_prompt_sweep_bad_input():
    c = centroids()
    ex = [Example("short", np.arange(3), np.zeros(200, dtype=np.int64))]
    with pytest.raises(MemorizationError, match="training examples/short: 200 tokens is shorter than a window of 375"):
        prompt_sweep(ex, lambda c_, p, n: np.zeros(n, dtype=np.int64), c)
    with pytest.raises(MemorizationError, match="empty set of training examples"):
        prompt_sweep([], lambda c_, p, n: p, c)
    ex = [Example(f"e{i}", np.arange(3), np.zeros(400, dtype=np.int64)) for i in range(3)]
    with pytest.raises(MemorizationError, match=r"continue_fn returned shape \(10,\) for example e0 at T=0"):
        prompt_sweep(ex, lambda c_, p, n: np.zeros(10, dtype=np.int64), c)
