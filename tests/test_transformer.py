"""Decoder-only Transformer: parameter count, causality, KV-cache equivalence, relative bias."""

from __future__ import annotations

import pytest
import torch

from musiclm_ref.transformer import (
    KVCache,
    Transformer,
    TransformerConfig,
    clock_times,
    count_parameters,
    preset,
    relative_bucket,
)


def tiny(vocab: int = 64, **kw) -> Transformer:
    torch.manual_seed(0)
    return Transformer(preset("tiny", vocab, depth=2, dim=32, heads=4, ff_dim=48, **kw)).eval()


def test_paper_config_has_about_430m_parameters_per_stage():
    # coarse-stage vocabulary: 12x1024 MuLan tokens + 1024 semantic + 4x1024 coarse acoustic + specials
    cfg = preset("paper", 12 * 1024 + 1024 + 4 * 1024 + 3)
    assert (cfg.depth, cfg.heads, cfg.dim, cfg.ff_dim, cfg.dropout) == (24, 16, 1024, 4096, 0.1)
    n = count_parameters(cfg)
    assert 400e6 < n < 460e6, n


def test_unknown_preset_and_bad_shapes_are_clear_errors():
    with pytest.raises(ValueError, match="unknown transformer preset 'huge'"):
        preset("huge", 10)
    with pytest.raises(ValueError, match="not divisible by heads"):
        TransformerConfig(vocab_size=10, dim=30, heads=4)
    m = tiny(16)
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 16\), got \[0, 16\]"):
        m(torch.tensor([[0, 16]]))


def test_changing_future_tokens_never_changes_past_outputs():
    m = tiny()
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 64, (3, 40), generator=g)
    for t in (0, 5, 39):
        y = x.clone()
        y[:, t + 1 :] = torch.randint(0, 64, y[:, t + 1 :].shape, generator=g)
        a, b = m(x), m(y)
        torch.testing.assert_close(a[:, : t + 1], b[:, : t + 1], rtol=0, atol=1e-6)
        if t < 39:
            assert not torch.allclose(a[:, t + 1 :], b[:, t + 1 :])


def test_kv_cache_gives_the_same_logits_as_the_full_forward():
    m = tiny().double()
    x = torch.randint(0, 64, (2, 33), generator=torch.Generator().manual_seed(2))
    full = m(x)
    cache = KVCache()
    parts = [m(x[:, :10], cache)] + [m(x[:, i : i + 1], cache) for i in range(10, 20)] + [m(x[:, 20:], cache)]
    assert cache.length == 33
    torch.testing.assert_close(torch.cat(parts, 1), full, rtol=0, atol=1e-10)


def clocked(vocab: int = 64) -> Transformer:
    """Ids 10–19 tick 4 (a 25 Hz stream), 20–29 tick 2 (50 Hz), 2 resets the clock."""
    m = tiny(vocab, clock=True)
    m.set_clock({**{i: 4 for i in range(10, 20)}, **{i: 2 for i in range(20, 30)}}, [2])
    return m


def test_clock_times_follow_ticks_and_restart_at_resets():
    # cond cond | S S S | SEP | A A A A   (S ticks 4, A ticks 2; SEP resets)
    ticks = torch.tensor([[0, 0, 4, 4, 4, 0, 2, 2, 2, 2]])
    resets = torch.tensor([[0, 0, 0, 0, 0, 1, 0, 0, 0, 0]], dtype=torch.bool)
    times, nxt = clock_times(ticks, resets, torch.tensor([0]))
    assert times.tolist() == [[0, 0, 0, 4, 8, 12, 0, 2, 4, 6]] and nxt.tolist() == [8]
    # the same sequence fed in two pieces, carrying the clock, gives the same times
    a, carry = clock_times(ticks[:, :7], resets[:, :7], torch.tensor([0]))
    b, nxt2 = clock_times(ticks[:, 7:], resets[:, 7:], carry)
    assert torch.cat([a, b], 1).tolist() == times.tolist() and nxt2.tolist() == [8]


def test_clock_model_kv_cache_matches_full_forward_and_stays_causal():
    m = clocked().double()
    x = torch.randint(0, 64, (2, 40), generator=torch.Generator().manual_seed(3))
    x[:, 15] = 2  # a reset inside the sequence
    full = m(x)
    cache = KVCache()
    parts = [m(x[:, :12], cache)] + [m(x[:, i : i + 1], cache) for i in range(12, 30)] + [m(x[:, 30:], cache)]
    torch.testing.assert_close(torch.cat(parts, 1), full, rtol=0, atol=1e-10)
    y = x.clone()
    y[:, 25:] = (y[:, 25:] + 7) % 64
    torch.testing.assert_close(m(y)[:, :25], full[:, :25], rtol=0, atol=1e-10)
    # the model sees the clock: without it (ticks zeroed) the outputs after the first tick differ
    ticked = int((m.ticks[x[0]] > 0).nonzero()[0])
    m.set_clock({}, [2])
    assert not torch.allclose(m(x)[0, ticked + 1 :], full[0, ticked + 1 :])


def test_relative_buckets_are_exact_near_and_log_spaced_far():
    rel = -torch.arange(0, 1000)
    b = relative_bucket(rel, 32, 128)
    assert b[:16].tolist() == list(range(16))  # exact buckets for small distances
    assert (b.diff() >= 0).all()  # monotone in distance
    assert int(b[128:].min()) == int(b.max()) == 31  # everything beyond max_distance shares the last bucket
    assert relative_bucket(torch.tensor([5]), 32, 128).item() == 0  # future keys: masked anyway


def test_relative_bias_depends_only_on_the_distance():
    """No absolute positions anywhere: the bias of a window is the same wherever the window sits, which
    is what windowed long generation relies on."""
    m = tiny()
    assert not any("pos" in n and "rel_pos" not in n for n, _ in m.named_parameters())
    q, k = torch.arange(10, 20), torch.arange(0, 20)
    torch.testing.assert_close(m.rel_pos(q, k), m.rel_pos(q + 500, k + 500), rtol=0, atol=0)
    bias = m.rel_pos(q, k)
    assert torch.isinf(bias[:, 0, 11:]).all() and torch.isfinite(bias[:, 0, :11]).all()  # causal


def test_checkpoint_dict_round_trip_is_exact(tmp_path):
    m = tiny()
    torch.save(m.to_dict(), tmp_path / "t.pt")
    m2 = Transformer.from_dict(torch.load(tmp_path / "t.pt", weights_only=True))
    x = torch.randint(0, 64, (2, 9))
    assert torch.equal(m(x), m2(x))
