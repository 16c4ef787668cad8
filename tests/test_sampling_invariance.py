"""Batch-invariant, reproducible sampling: a caption's tokens and audio do not depend on what else is generated.

Three layers, each checked where it can fail: the Transformer's batched float math (``batch_invariant``:
fixed-shape row tiles or, with ``row_tile=0``, per-item matrix products; bit-equal logits, and the tile
kernel's assumption checked directly on the tiny and paper shapes), the random streams (one generator per item from
(seed, item key), never shared), and the pipeline/CLI end to end on the shipped tiny checkpoint set
(a caption alone, inside a batch of 3 at another position, with ``--limit`` and ``--batch-size 1``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from benchmarks.cli import main
from musiclm_ref.pipeline import MusicLM, PipelineError, item_keys
from musiclm_ref.sampling import SamplingConfig, generate, item_generator
from musiclm_ref.transformer import ROW_TILE, KVCache, Transformer, preset, tiled_matmul

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model() -> Transformer:
    torch.manual_seed(0)
    m = Transformer(preset("tiny", 60, depth=2, dim=32, heads=4, ff_dim=48, clock=True)).eval()
    m.set_clock({i: 2 for i in range(10, 60)}, [2])
    with torch.no_grad():
        m.to_logits.weight.mul_(20)  # sharper than a fresh init: samples are not uniform noise
    return m


def _logits(model: Transformer, tokens: torch.Tensor, steps: int) -> torch.Tensor:
    """Row 0's logits for a prompt forward and ``steps`` KV-cached steps."""
    cache = KVCache()
    out = [model(tokens[:, :-steps], cache)[0]]
    for j in range(tokens.shape[1] - steps, tokens.shape[1]):
        out.append(model(tokens[:, j : j + 1], cache)[0])
    return torch.cat(out)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("d,k", [(128, 384), (128, 128), (256, 128), (128, 300), (128, 1100), (1024, 3072),
                                 (4096, 1024), (1024, 2000), (32, 96)])
def test_a_tiled_row_does_not_depend_on_its_tile_position_or_neighbours(d, k, threads):
    """The one assumption of ``tiled_matmul``: within a fixed-shape GEMM, a row's result depends only on
    that row (not on its position, the other rows or how many tiles there are)."""
    g = torch.Generator().manual_seed(d + k)
    w, x = torch.randn(d, k, generator=g) * 0.05, torch.randn(2 * ROW_TILE + 3, d, generator=g)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        alone = tiled_matmul(x[:1], w, ROW_TILE)[0]
        for pos in range(x.shape[0]):
            y = x.clone()
            y[pos] = x[0]
            assert torch.equal(tiled_matmul(y, w, ROW_TILE)[pos], alone), pos
            assert torch.equal(tiled_matmul(y[: pos + 1], w, ROW_TILE)[pos], alone), pos
    finally:
        torch.set_num_threads(before)
    torch.testing.assert_close(alone, x[0] @ w, atol=1e-5, rtol=1e-5)  # the product itself


@pytest.mark.parametrize("row_tile", [ROW_TILE, 0])
def test_batch_invariant_logits_are_bit_equal_to_the_row_computed_alone(model, row_tile):
    g = torch.Generator().manual_seed(1)
    row = torch.randint(3, 60, (1, 30), generator=g)
    others = torch.randint(3, 60, (7, 30), generator=g)
    model.batch_invariant, model.row_tile = True, row_tile
    try:
        alone = _logits(model, row, 10)
        for b in (2, 3, 8):
            assert torch.equal(_logits(model, torch.cat([row, others[: b - 1]]), 10), alone), b
    finally:
        model.batch_invariant, model.row_tile = False, ROW_TILE
    # the same function as the folded GEMM path that training uses (to float tolerance)
    torch.testing.assert_close(_logits(model, torch.cat([row, others[:2]]), 10), alone, atol=1e-4, rtol=1e-4)
    assert model.batch_invariant is False and set(model.state_dict()) == set(Transformer(model.config).state_dict())


@pytest.mark.parametrize("row_tile", [ROW_TILE, 0])
def test_batch_invariance_holds_at_the_paper_width(row_tile):
    torch.manual_seed(0)
    m = Transformer(preset("paper", 2000, depth=1)).eval()  # width 1024, 16 heads, FFN 4096
    g = torch.Generator().manual_seed(2)
    rows = torch.randint(3, 2000, (5, 24), generator=g)
    m.batch_invariant, m.row_tile = True, row_tile
    with torch.no_grad():
        alone = _logits(m, rows[:1], 4)
        assert torch.equal(_logits(m, rows, 4), alone) and torch.equal(_logits(m, rows[:2], 4), alone)


def test_the_tiled_route_and_the_item_by_item_fallback_compute_the_same_function(model):
    tokens = torch.randint(3, 60, (3, 30), generator=torch.Generator().manual_seed(4))
    model.batch_invariant = True
    try:
        model.row_tile = 0
        items = _logits(model, tokens, 10)
        model.row_tile = ROW_TILE
        tiled = _logits(model, tokens, 10)
    finally:
        model.batch_invariant = False
    torch.testing.assert_close(tiled, items, atol=1e-5, rtol=1e-5)
    assert not torch.equal(tiled, items)  # two kernels: equal to float tolerance, not bit for bit
    with pytest.raises(ValueError, match="row_tile must be ≥ 0"):
        model.row_tile = -1


def test_item_generators_are_keyed_by_seed_key_and_stream():
    draw = lambda *a: torch.rand(4, generator=item_generator(*a))  # noqa: E731
    assert torch.equal(draw(0, "ytid-1", "coarse"), draw(0, "ytid-1", "coarse"))
    for other in [(1, "ytid-1", "coarse"), (0, "ytid-2", "coarse"), (0, "ytid-1", "semantic")]:
        assert not torch.equal(draw(0, "ytid-1", "coarse"), draw(*other))
    assert item_keys(["a", "b", "a"]) == ["a", "b", "a#2"]  # a repeated caption is a new sample
    assert item_keys(["x", "y"], ids=["id1", "id2"]) == ["id1", "id2"]
    with pytest.raises(PipelineError, match="item ids must be unique; repeated: id1"):
        item_keys(["x", "y"], ids=["id1", "id1"])
    with pytest.raises(PipelineError, match="got 1 ids for 2 captions"):
        item_keys(["x", "y"], ids=["id1"])


@pytest.mark.parametrize("cfg", [SamplingConfig(temperature=1.0), SamplingConfig(temperature=0.95, top_k=5),
                                 SamplingConfig(temperature=0.7, top_p=0.9), SamplingConfig(cfg_scale=2.5)])
def test_a_row_samples_the_same_tokens_alone_and_inside_any_batch(model, cfg):
    ranges = [(10, 30), (30, 60)] * 15
    prompts = torch.tensor([[5, 6, 7, 8], [8, 7, 6, 5], [4, 4, 4, 4]])
    uncond = torch.full_like(prompts, 1) if cfg.cfg_scale is not None else None
    gens = lambda keys: [item_generator(3, k) for k in keys]  # noqa: E731
    run = lambda idx, keys: generate(model, prompts[idx], ranges, cfg, gens(keys),  # noqa: E731
                                     uncond_prompt=uncond[idx] if uncond is not None else None)
    alone = run([1], ["b"])
    batch = run([0, 1, 2], ["a", "b", "c"])
    assert model.row_tile == ROW_TILE and not model.batch_invariant  # generate restores the model's settings
    fallback = generate(model, prompts, ranges, cfg, gens(["a", "b", "c"]), row_tile=0,
                        uncond_prompt=uncond)  # the item-by-item route: its own kernels, the same invariance
    assert torch.equal(generate(model, prompts[[1]], ranges, cfg, gens(["b"]), row_tile=0,
                                uncond_prompt=uncond[[1]] if uncond is not None else None)[0], fallback[1])
    assert torch.equal(batch[1], alone[0])
    assert torch.equal(run([2, 1], ["c", "b"])[1], alone[0])  # another position, other neighbours
    assert torch.equal(run([2], ["c"])[0], batch[2])
    assert not torch.equal(run([1], ["other key"])[0], alone[0])  # the key does select the stream
    with pytest.raises(ValueError, match="got 2 generators for a batch of 3 rows"):
        generate(model, prompts, ranges, cfg, gens(["a", "b"]), uncond_prompt=uncond)


@pytest.fixture(scope="module")
def shipped() -> MusicLM:
    return MusicLM.from_pretrained()


def test_pipeline_audio_is_identical_alone_in_a_batch_of_three_and_with_batch_size_one(shipped):
    caps = ["a calm solo piano melody", "loud rock drums and distorted guitar", "an ambient synth pad"]
    seconds = 1.2  # the fine stage works in two chunks (crop 1 s), so per-chunk streams are covered
    alone = shipped.generate([caps[1]], seconds=seconds, seed=7)
    three = shipped.generate(caps, seconds=seconds, seed=7)
    reordered = shipped.generate([caps[2], caps[1]], seconds=seconds, seed=7, batch=1)
    assert np.abs(alone).max() > 0.01  # real audio, not silence
    assert np.array_equal(three[1], alone[0]) and np.array_equal(reordered[1], alone[0])
    assert np.array_equal(reordered[0], three[2])
    assert not np.array_equal(three[0], three[1])
    assert not np.array_equal(shipped.generate([caps[1]], seconds=seconds, seed=8)[0], alone[0])



def test_one_melody_per_caption_in_a_batch_gives_each_clip_what_it_gets_alone(shipped):
    """``generate(melody=[one wave per caption])``: a row conditioned on its own melody inside a batch is
    bit-equal to that caption, id and melody generated alone (the list form and the 2-D array form)."""
    t = np.arange(24000) / 24000
    mels = [(0.3 * np.sin(2 * np.pi * f * t)).astype(np.float32) for f in (220.0, 311.1)]
    caps, ids, seconds = ["a flute melody", "a flute melody"], ["m0", "m1"], 0.4
    both = shipped.generate(caps, seconds=seconds, seed=2, melody=mels, ids=ids)
    alone = shipped.generate(caps[1:], seconds=seconds, seed=2, melody=mels[1], ids=ids[1:])[0]
    assert np.array_equal(both[1], alone)
    same = shipped.generate(caps, seconds=seconds, seed=2, melody=np.stack([mels[1], mels[1]]), ids=ids)
    assert np.array_equal(same[1], alone)
    assert not np.array_equal(both[0], same[0])  # row 0 did get its own melody, not row 1's
    with pytest.raises(PipelineError, match="got 3 melodies for 2 captions"):
        shipped.generate(caps, seconds=seconds, melody=mels + mels[:1], ids=ids)

def _wav_bytes(d) -> dict[str, bytes]:
    return {p.stem: p.read_bytes() for p in sorted(d.glob("*.wav"))}


def test_cli_generate_gives_a_caption_the_same_wav_alone_in_a_batch_and_with_limit(tmp_path):
    rows = [("yt-a", "a calm solo piano melody"), ("yt-b", "loud rock drums"), ("yt-c", "an ambient synth pad")]
    full, alone = tmp_path / "all.csv", tmp_path / "alone.csv"
    full.write_text("ytid,caption\n" + "".join(f"{i},{c}\n" for i, c in rows))
    alone.write_text(f"ytid,caption\n{rows[1][0]},{rows[1][1]}\n")

    def gen(out, *args):
        r = CliRunner().invoke(main, ["generate", "--seconds", "0.4", "--seed", "5", "--clips", str(tmp_path / out), *args])
        assert r.exit_code == 0, r.output
        return _wav_bytes(tmp_path / out)

    batch3 = gen("batch3", "--captions", str(full), "--batch-size", "3")
    limited = gen("limit", "--captions", str(full), "--limit", "2", "--batch-size", "1")
    single = gen("alone", "--captions", str(alone))
    assert set(batch3) == {"yt-a", "yt-b", "yt-c"} and set(limited) == {"yt-a", "yt-b"} and set(single) == {"yt-b"}
    assert batch3["yt-b"] == limited["yt-b"] == single["yt-b"]
    assert batch3["yt-a"] == limited["yt-a"] and batch3["yt-a"] != batch3["yt-b"]
    # --text: the caption is the key, so its position among the --text options does not matter
    texts = gen("texts", "--text", rows[0][1], "--text", rows[1][1], "--text", rows[2][1])
    one = gen("text1", "--text", rows[1][1])
    assert texts["text-001"] == one["text-000"]
