"""Sampling: paper defaults, vocabulary ranges, cache equivalence, greedy = temperature→0, seeds."""

from __future__ import annotations

import pytest
import torch

from musiclm_ref.sampling import DEFAULT_TEMPERATURES, SamplingConfig, default_config, generate, sample_logits
from musiclm_ref.transformer import Transformer, preset


@pytest.fixture(scope="module")
def model() -> Transformer:
    torch.manual_seed(0)
    m = Transformer(preset("tiny", 50, depth=2, dim=32, heads=4, ff_dim=48)).eval()
    with torch.no_grad():  # sharper than a fresh init so that samples are not uniform noise
        m.to_logits.weight.mul_(20)
    return m


PROMPT = torch.tensor([[1, 2, 3, 4], [4, 3, 2, 1]])
RANGES = [(10, 20), (20, 50)] * 12


def test_paper_defaults_have_no_topk_topp_or_guidance():
    assert DEFAULT_TEMPERATURES == {"semantic": 1.0, "coarse": 0.95, "fine": 0.4}
    for stage in DEFAULT_TEMPERATURES:
        c = default_config(stage)
        assert (c.top_k, c.top_p, c.cfg_scale, c.greedy) == (None, None, None, False)
        assert c.temperature == DEFAULT_TEMPERATURES[stage]
    with pytest.raises(ValueError, match="unknown stage 'medium'"):
        default_config("medium")
    with pytest.raises(ValueError, match="temperature must be ≥ 0"):
        SamplingConfig(temperature=-1)


def test_samples_stay_in_the_range_of_each_step(model):
    out = generate(model, PROMPT, RANGES, SamplingConfig(temperature=1.0), torch.Generator().manual_seed(0))
    assert out.shape == (2, len(RANGES))
    for i, (lo, hi) in enumerate(RANGES):
        assert ((out[:, i] >= lo) & (out[:, i] < hi)).all()


@pytest.mark.parametrize("cfg", [SamplingConfig(temperature=1.0), SamplingConfig(temperature=0.95, top_k=5),
                                 SamplingConfig(temperature=0.4, top_p=0.9), SamplingConfig(greedy=True)])
def test_kv_cached_sampling_equals_uncached_sampling(model, cfg):
    a = generate(model, PROMPT, RANGES, cfg, torch.Generator().manual_seed(7), use_cache=True)
    b = generate(model, PROMPT, RANGES, cfg, torch.Generator().manual_seed(7), use_cache=False)
    assert torch.equal(a, b)


def test_temperature_to_zero_equals_greedy(model):
    greedy = generate(model, PROMPT, RANGES, SamplingConfig(greedy=True))
    assert torch.equal(generate(model, PROMPT, RANGES, SamplingConfig(temperature=0.0)), greedy)
    cold = generate(model, PROMPT, RANGES, SamplingConfig(temperature=1e-4), torch.Generator().manual_seed(3))
    assert torch.equal(cold, greedy)
    hot = generate(model, PROMPT, RANGES, SamplingConfig(temperature=1.0), torch.Generator().manual_seed(3))
    assert not torch.equal(hot, greedy)


def test_same_seed_same_tokens_different_seed_different_tokens(model):
    run = lambda s: generate(model, PROMPT, RANGES, SamplingConfig(), torch.Generator().manual_seed(s))  # noqa: E731
    assert torch.equal(run(11), run(11))
    assert not torch.equal(run(11), run(12))


def test_sample_frequencies_follow_the_tempered_softmax():
    logits = torch.tensor([[0.0, 1.0, 2.0, -10.0]]).repeat(20000, 1)
    g = torch.Generator().manual_seed(0)
    for t in (1.0, 0.4):
        freq = torch.bincount(sample_logits(logits, SamplingConfig(temperature=t), g), minlength=4).float() / 20000
        torch.testing.assert_close(freq, (logits[0] / t).softmax(-1), atol=0.015, rtol=0)


def test_top_k_and_top_p_restrict_the_support():
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0, -1.0]]).repeat(5000, 1)
    g = torch.Generator().manual_seed(0)
    assert set(sample_logits(logits, SamplingConfig(top_k=2), g).tolist()) == {0, 1}
    p = logits[0].softmax(-1)  # [0.636, 0.234, 0.086, ...]: top_p 0.8 keeps {0, 1}
    assert p[0] < 0.8 < p[0] + p[1]
    assert set(sample_logits(logits, SamplingConfig(top_p=0.8), g).tolist()) == {0, 1}


def test_classifier_free_guidance_is_opt_in_and_checked(model):
    with pytest.raises(ValueError, match="needs an uncond_prompt"):
        generate(model, PROMPT, RANGES, SamplingConfig(cfg_scale=3.0))
    uncond = torch.zeros_like(PROMPT)
    scale1 = generate(model, PROMPT, RANGES, SamplingConfig(cfg_scale=1.0, greedy=True), uncond_prompt=uncond)
    assert torch.equal(scale1, generate(model, PROMPT, RANGES, SamplingConfig(greedy=True)))  # s=1 → conditional


def test_per_row_uniforms_are_the_draws_a_shared_generator_would_make():
    logits = torch.randn(6, 9, generator=torch.Generator().manual_seed(0))
    cfg = SamplingConfig(temperature=0.8)
    u = torch.rand(6, generator=torch.Generator().manual_seed(4))
    assert torch.equal(sample_logits(logits, cfg, uniforms=u), sample_logits(logits, cfg, torch.Generator().manual_seed(4)))
    # row i's token depends on row i's logits and uniform only
    assert torch.equal(sample_logits(logits[2:3], cfg, uniforms=u[2:3]), sample_logits(logits, cfg, uniforms=u)[2:3])
