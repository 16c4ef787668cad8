"""KLD: the formula, its options, and its behaviour on the corpus with the shipped classifier."""

from __future__ import annotations

import math

import numpy as np
import pytest

from metrics.audio import PairingError
from metrics.kld import clip_distribution, kl_divergence, kld


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """One torch thread: on a shared 2-core machine two threads per process oversubscribe it badly."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_zero_for_identical_distributions(rng):
    p = rng.dirichlet(np.ones(12), size=5)
    p[0, :3] = 0.0  # zeros in both: still exactly zero
    p[0] /= p[0].sum()
    for direction in ("ref||gen", "gen||ref"):
        np.testing.assert_allclose(kl_divergence(p, p.copy(), direction), 0.0, atol=1e-15)


def test_hand_computed_example_and_direction():
    p, q = np.array([0.5, 0.5]), np.array([0.25, 0.75])
    ref_gen = 0.5 * math.log(4 / 3)  # 0.5 ln(0.5/0.25) + 0.5 ln(0.5/0.75)
    gen_ref = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)
    assert kl_divergence(p, q, "ref||gen", eps=0) == pytest.approx(ref_gen, abs=1e-12)
    assert kl_divergence(p, q, "gen||ref", eps=0) == pytest.approx(gen_ref, abs=1e-12)
    assert ref_gen != pytest.approx(gen_ref)
    with pytest.raises(ValueError, match="direction must be one of"):
        kl_divergence(p, q, "ref|gen")


def test_eps_smooths_zeros_to_the_written_formula():
    p, q = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    assert kl_divergence(p, q, eps=0) == math.inf
    e = 1e-6
    # both smoothed to [(1+e)/(1+2e), e/(1+2e)] and its mirror: KL = (1/(1+2e)) ln((1+e)/e)
    expected = (1 / (1 + 2 * e)) * math.log((1 + e) / e)
    assert kl_divergence(p, q, eps=e) == pytest.approx(expected, rel=1e-12)
    assert kl_divergence(p, q, eps=1e-3) < kl_divergence(p, q, eps=1e-6)  # more smoothing, smaller value


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="p_gen: contains negative"):
        kl_divergence(np.array([0.5, 0.5]), np.array([1.5, -0.5]))
    with pytest.raises(ValueError, match="p_ref: contains NaN"):
        kl_divergence(np.array([np.nan, 1.0]), np.array([0.5, 0.5]))
    with pytest.raises(ValueError, match="shapes differ"):
        kl_divergence(np.ones(3) / 3, np.ones(4) / 4)
    with pytest.raises(ValueError, match="sums to zero"):
        kl_divergence(np.zeros(2), np.ones(2) / 2, eps=0)


def test_clip_distribution_modes():
    logits = np.array([[2.0, 0.0, -2.0], [0.0, 0.0, 0.0]])
    sig = 1 / (1 + np.exp(-logits))
    expected = sig.mean(0) / sig.mean(0).sum()
    np.testing.assert_allclose(clip_distribution(logits, "sigmoid"), expected)
    soft = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(clip_distribution(logits, "softmax"), soft.mean(0))
    with pytest.raises(ValueError, match="mode must be"):
        clip_distribution(logits, "relu")


def test_kld_pairs_by_id_and_reports_all_directions(rng):
    ids = [f"id{i}" for i in range(6)]
    ref = {i: rng.dirichlet(np.ones(5)) for i in ids}
    gen = {i: rng.dirichlet(np.ones(5)) for i in reversed(ids)}  # different insertion order
    out = kld(ref, gen, seed=0)
    assert set(out) == {"kld", "kld_ref_gen", "kld_gen_ref", "kld_sym"}
    per = [kl_divergence(ref[i], gen[i]) for i in ids]
    assert out["kld_ref_gen"].value == pytest.approx(np.mean(per))
    assert out["kld"].value == out["kld_ref_gen"].value
    assert out["kld_sym"].value == pytest.approx(0.5 * (out["kld_ref_gen"].value + out["kld_gen_ref"].value))
    lo, hi = out["kld"].ci95
    assert lo <= out["kld"].value <= hi
    assert kld(ref, gen, direction="gen||ref")["kld"].value == out["kld_gen_ref"].value
    with pytest.raises(PairingError, match="generated lacks 1 id"):
        kld(ref, {i: gen[i] for i in ids[1:]})


def test_kld_on_corpus_own_reference_beats_other_style(small_corpus):
    """A lightly noised clip is closer (in class distribution) to its own reference than to a clip of another style."""
    import pandas as pd

    from metrics.audio import load_dir
    from metrics.classifier import load_classifier
    from metrics.kld import class_distributions

    clf = load_classifier(expected="corpus")
    clips = load_dir(small_corpus).clips
    style = pd.read_csv(small_corpus / "labels.csv", dtype=str).set_index("ytid")["style"]
    rng = np.random.default_rng(7)
    ref = class_distributions(clips, clf)
    noisy = [type(c)(c.id, c.wave + 0.003 * rng.standard_normal(len(c.wave)).astype(np.float32), c.sr) for c in clips]
    gen = class_distributions(noisy, clf)
    ids = sorted(ref)
    other = {i: next(j for j in ids if style[j] != style[i]) for i in ids}
    own = kld(ref, gen)["kld"].value
    crossed = kld({i: ref[other[i]] for i in ids}, gen)["kld"].value
    assert own < crossed
