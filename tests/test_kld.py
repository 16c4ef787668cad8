"""KLD: the formula, its options, and its behaviour on the corpus with the shipped classifier."""

from __future__ import annotations

import math

import numpy as np
import pytest

from metrics.audio import PairingError
from metrics.kld import clip_distribution, kl_divergence, kld_metrics

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: one torch thread per module


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


def _klds(ref: dict, gen: dict, convention: str = "musiclm", **kw) -> dict:
    """Every number of a convention through the ``KLD`` metrics, the pipeline's only route to a KLD."""
    out = {}
    for key, m in kld_metrics(convention, n_boot=200, seed=0, **kw).items():
        m.update("reference", ref)
        m.update("generated", gen)
        out[key] = m.compute()
    return out


def test_kld_pairs_by_id_and_reports_all_directions(rng):
    ids = [f"id{i}" for i in range(6)]
    ref = {i: rng.normal(size=(3, 5)) for i in ids}
    gen = {i: rng.normal(size=(3, 5)) for i in reversed(ids)}  # different insertion order
    out = _klds(ref, gen)
    assert set(out) == {"kld_musiclm", "kld_musiclm_gen_ref", "kld_musiclm_sym"}
    p, q = {i: clip_distribution(ref[i]) for i in ids}, {i: clip_distribution(gen[i]) for i in ids}
    per = {i: float(kl_divergence(p[i], q[i])) for i in ids}
    assert out["kld_musiclm"].value == pytest.approx(np.mean(list(per.values())))
    assert out["kld_musiclm"].per_item == pytest.approx(per)
    assert out["kld_musiclm_gen_ref"].value == pytest.approx(np.mean([kl_divergence(p[i], q[i], "gen||ref") for i in ids]))
    assert out["kld_musiclm_sym"].value == pytest.approx(
        0.5 * (out["kld_musiclm"].value + out["kld_musiclm_gen_ref"].value))
    lo, hi = out["kld_musiclm"].ci95
    assert 0 <= lo <= out["kld_musiclm"].value <= hi
    shuffled = _klds({i: ref[i] for i in rng.permutation(ids)}, gen)["kld_musiclm"]
    assert (shuffled.value, shuffled.ci95) == (out["kld_musiclm"].value, out["kld_musiclm"].ci95)
    with pytest.raises(PairingError, match="1 generated clip"):
        _klds({i: ref[i] for i in ids[1:]}, gen)


def test_kld_on_corpus_own_reference_beats_other_style(small_corpus):
    """A lightly noised clip is closer (in class distribution) to its own reference than to a clip of another style."""
    import pandas as pd

    from metrics.audio import load_dir
    from metrics.models import ModelSpec

    clf = ModelSpec("leaf-corpus", kind="classifier").build()  # the shipped classifier, as the pipeline builds it
    clips = load_dir(small_corpus, sr=clf.sample_rate).clips
    style = pd.read_csv(small_corpus / "labels.csv", dtype=str).set_index("ytid")["style"]
    rng = np.random.default_rng(7)
    ref = {c.id: clf.embed(c.wave) for c in clips}
    gen = {c.id: clf.embed(c.wave + 0.003 * rng.standard_normal(len(c.wave)).astype(np.float32)) for c in clips}
    ids = sorted(ref)
    other = {i: next(j for j in ids if style[j] != style[i]) for i in ids}
    own = _klds(ref, gen, activation=clf.activation)["kld_musiclm"].value
    crossed = _klds({i: ref[other[i]] for i in ids}, gen, activation=clf.activation)["kld_musiclm"].value
    assert own < crossed


# ----------------------------------------------------------------------------- named conventions
# Each convention is checked against an independent formulation written the way its source writes
# it, in torch on the same logits (float64): audiocraft/metrics/kld.py and stable-audio-metrics'
# src/passt_kld.py (read with the search tools, not copied).


def _logit_sets(rng, n=7, windows=3, classes=11, scale=3.0):
    ids = [f"c{i}" for i in range(n)]
    ref = {i: rng.normal(size=(windows, classes)) * scale for i in ids}
    gen = {i: rng.normal(size=(windows, classes)) * scale for i in ids}
    return ref, gen


def _metric(convention, number, ref, gen, **kw):
    from metrics.kld import KLD

    m = KLD(convention, number, n_boot=200, seed=0, **kw)
    m.update("reference", ref)
    m.update("generated", gen)
    return m.compute()


def test_audiocraft_convention_matches_torch_kl_div(rng):
    import torch
    import torch.nn.functional as F

    ref, gen = _logit_sets(rng)
    ids = sorted(ref)
    eps = 1e-6
    # audiocraft: softmax per window segment, every segment its own row; kl_divergence(pred, target)
    pred = torch.softmax(torch.tensor(np.concatenate([gen[i] for i in ids])), dim=-1)
    target = torch.softmax(torch.tensor(np.concatenate([ref[i] for i in ids])), dim=-1)
    pq = F.kl_div((pred + eps).log(), target, reduction="none").sum(-1)
    qp = F.kl_div((target + eps).log(), pred, reduction="none").sum(-1)
    kld_pq, kld_qp = pq.sum().item() / len(pq), qp.sum().item() / len(qp)
    got = {n: _metric("audiocraft", n, ref, gen) for n in ("kld", "kld_qp", "kld_both")}
    assert got["kld"].value == pytest.approx(kld_pq, abs=1e-6)
    assert got["kld_qp"].value == pytest.approx(kld_qp, abs=1e-6)
    assert got["kld_both"].value == pytest.approx(kld_pq + kld_qp, abs=1e-6)  # a SUM, not a mean
    assert got["kld"].name == "kld_audiocraft" and got["kld_both"].name == "kld_audiocraft_both"
    assert got["kld"].extra["convention"] == "audiocraft" and got["kld"].extra["direction"] == "ref||gen"


def test_audiocraft_weights_clips_by_their_windows(rng):
    """audiocraft averages over window pairs: a 3-window clip counts three times a 1-window clip."""
    import torch
    import torch.nn.functional as F

    ref = {"a": rng.normal(size=(3, 5)) * 2, "b": rng.normal(size=(1, 5)) * 2}
    gen = {"a": rng.normal(size=(3, 5)) * 2, "b": rng.normal(size=(1, 5)) * 2}
    rows = [F.kl_div((torch.softmax(torch.tensor(gen[i]), -1) + 1e-6).log(), torch.softmax(torch.tensor(ref[i]), -1),
                     reduction="none").sum(-1) for i in ("a", "b")]
    expected = torch.cat(rows).mean().item()
    assert _metric("audiocraft", "kld", ref, gen).value == pytest.approx(expected, abs=1e-6)
    per_clip_mean = np.mean([r.mean().item() for r in rows])
    assert abs(expected - per_clip_mean) > 1e-3  # the weighting is visible on this input
    with pytest.raises(ValueError, match="pairs windows one to one"):
        _metric("audiocraft", "kld", ref, {"a": gen["a"][:2], "b": gen["b"]})


@pytest.mark.parametrize("collect", ["mean", "max"])
def test_stable_audio_convention_matches_torch_kl_div(rng, collect):
    import torch
    import torch.nn.functional as F

    ref, gen = _logit_sets(rng, windows=4)
    total = 0.0
    for i in sorted(ref):
        r, g = torch.tensor(ref[i]), torch.tensor(gen[i])
        pool = (lambda z: z.mean(0)) if collect == "mean" else (lambda z: z.max(0).values)
        ref_p, eval_p = F.softmax(pool(r), dim=0), F.softmax(pool(g), dim=0)  # softmax AFTER pooling logits
        total += F.kl_div((ref_p + 1e-6).log(), eval_p, reduction="sum", log_target=False).item()
    got = _metric("stable-audio", "kld", ref, gen, pooling=collect)
    assert got.value == pytest.approx(total / len(ref), abs=1e-6)
    assert got.name == "kld_stable_audio" and got.extra["direction"] == "gen||ref"


def test_musiclm_convention_is_the_documented_default(rng):
    """sigmoid, mean of window probabilities renormalized, eps on both sides; sym = mean of directions."""
    import torch

    ref, gen = _logit_sets(rng)
    e = 1e-6

    def dist(z):
        p = torch.sigmoid(torch.tensor(z)).mean(0)
        p = p / p.sum()
        p = p + e
        return p / p.sum()

    rg = np.mean([torch.sum(dist(ref[i]) * (dist(ref[i]).log() - dist(gen[i]).log())).item() for i in ref])
    gr = np.mean([torch.sum(dist(gen[i]) * (dist(gen[i]).log() - dist(ref[i]).log())).item() for i in ref])
    got = {n: _metric("musiclm", n, ref, gen) for n in ("kld", "kld_gen_ref", "kld_sym")}
    assert got["kld"].value == pytest.approx(rg, abs=1e-6)
    assert got["kld_gen_ref"].value == pytest.approx(gr, abs=1e-6)
    assert got["kld_sym"].value == pytest.approx(0.5 * (rg + gr), abs=1e-6)


def test_conventions_differ_and_name_themselves(rng):
    from metrics.kld import KLD_CONVENTIONS, kld_metrics

    ref, gen = _logit_sets(rng)
    heads = {}
    for conv in KLD_CONVENTIONS:
        metrics = kld_metrics(conv, n_boot=100, seed=0)
        assert all(k.startswith("kld_" + conv.replace("-", "_")) for k in metrics)
        for key, m in metrics.items():
            m.update("reference", ref)
            m.update("generated", gen)
            res = m.compute()
            assert res.name == key and res.extra["convention"] == conv
            lo, hi = res.ci95
            assert lo <= res.value <= hi
        heads[conv] = metrics[next(iter(metrics))].compute().value
    assert len({round(v, 6) for v in heads.values()}) == 3
    assert KLD_CONVENTIONS[0] == "musiclm"
    with pytest.raises(ValueError, match="unknown KLD convention"):
        kld_metrics("audioldm")


def test_kld_metric_state_merges_pairs_by_id_and_resamples(rng):
    from metrics.kld import KLD
    from metrics.metric import MetricError

    ref, gen = _logit_sets(rng, n=10)
    whole = KLD("audiocraft", n_boot=0)
    whole.update("reference", ref)
    whole.update("generated", gen)
    ids = sorted(gen)
    a, b = KLD("audiocraft", n_boot=0), KLD("audiocraft", n_boot=0)
    a.update("reference", ref)
    a.update("generated", {i: gen[i] for i in ids[:4]})
    b.update("generated", {i: gen[i] for i in reversed(ids[4:])})
    assert a.merge(b).compute().value == pytest.approx(whole.compute().value, rel=1e-12)
    # value_on with repeated ids = the weighted mean; the batched hook agrees
    pick = [ids[0], ids[0], ids[3]]
    per = whole.compute().per_item
    assert whole.value_on([], pick) == pytest.approx((2 * per[ids[0]] + per[ids[3]]) / 3, rel=1e-12)
    counts = np.zeros((1, len(ids)))
    counts[0, 0], counts[0, 3] = 2, 1
    assert whole.value_on_counts(counts, counts)[0] == pytest.approx(whole.value_on([], pick), rel=1e-12)
    with pytest.raises(MetricError, match="cannot merge"):
        whole.merge(KLD("stable-audio"))
    lone = KLD()
    lone.update("generated", {"x": gen[ids[0]]})
    with pytest.raises(PairingError, match="no reference clip"):
        lone.compute()
    with pytest.raises(ValueError, match="NaN/Inf"):
        lone.update("reference", {"y": np.array([[np.nan, 1.0]])})


def test_interval_floor_only_where_the_convention_cannot_go_negative(rng):
    """audiocraft puts eps inside one log only: identical softmaxes give about -eps, and its interval must
    contain that value (a floor at 0 would clip it to [0, 0]); musiclm smooths both sides and keeps 0."""
    from metrics.kld import KLD

    logits = {f"c{i}": rng.normal(size=(3, 20)) for i in range(12)}
    acraft = KLD("audiocraft", n_boot=200, seed=0)
    acraft.update("reference", logits)
    acraft.update("generated", {k: v + 1e-9 * rng.normal(size=v.shape) for k, v in logits.items()})
    res = acraft.compute()
    assert -2e-5 < res.value < 0  # sum over classes of -p·log(1 + eps/p) ≈ -eps · (classes with mass)
    lo, hi = res.ci95
    assert lo < 0 and lo <= res.value <= hi
    musiclm = KLD("musiclm", n_boot=200, seed=0)
    musiclm.update("reference", logits)
    musiclm.update("generated", {k: v[::-1] * 0.5 for k, v in logits.items()})
    assert musiclm.compute().ci95[0] >= 0.0
