"""Generation on CPU: KV-cache vs uncached sampling per stage at 10 s of audio, tokens/s, and the full path's RTF.

Workload: one caption's worth of conditioning (12 MuLan tokens), 10 s of audio through the reference
pipeline's own windowing (``MusicLM.semantic_tokens`` / ``coarse_tokens`` / ``fine_tokens``): semantic
250 tokens (25 Hz), coarse 500 frames × 4 levels in overlapping windows, fine 500 frames × 8 levels in
batched 1 s chunks. Stages are the shipped tiny checkpoints (``musiclm_ref/checkpoints/tiny``) when they
load; otherwise the same tiny architecture with seeded random weights (sampling cost does not depend on
the weights; ``extra_info["weights"]`` says which). Both paths run at the same length (nothing
extrapolated); "uncached" is ``sampling.generate(use_cache=False)``: a full forward over the whole
sequence for every new token. Correctness gate: on a 400-token sequence the cached forward (fed in
steps) gives the full forward's logits to 1e-4 — what makes both paths sample the same tokens. Token
agreement itself is reported, not asserted: with random weights the distributions are nearly uniform,
so float-level logit differences can move an inverse-CDF draw across a boundary (trained weights:
tests/test_sampling.py asserts identical tokens).

``test_text_to_audio_rtf``: ``MusicLM.generate([caption], seconds=10)`` end to end (MuLan text tower,
three stages, codec decoder) with the shipped set, or the shipped codec + MuLan around the stages above
when the shipped stages do not load; RTF = wall seconds / 10 s.

``test_clips_per_s_by_batch`` (issue #28 item 3): ``MusicLM.generate`` of 10 s clips at batch 1, 8 and 20,
interleaved on one warm model (alone 0, batch 20, alone 1, batch 8, alone 2, then the item-by-item
fallback ``row_tile=0`` at batch 20), so the load is shared alike; clips/s, wall and ``/proc/loadavg``
before and after each run go to ``extra_info``, with each run's process CPU time (clips per CPU
second: what the run costs on an idle core, far steadier than wall time on the shared machine). Correctness gate: each of the three clips generated
alone equals its row of the batch-8 and batch-20 runs bit for bit (float32 samples, hence WAV bytes),
and batch 8 equals the first 8 rows of batch 20. ``BENCH_GEN_BATCH_SECONDS`` (default 10) sets the clip length.

Duration: the uncached runs dominate (≈ 13 min at 10 s on the loaded 2-core machine: fine alone ≈ 8 min);
``BENCH_GEN_SECONDS=2`` gives a quick run whose ratios are lower (the uncached cost grows quadratically).
"""

from __future__ import annotations

import functools
import os
import time

import numpy as np
import pytest
import torch

import musiclm_ref.pipeline as pipeline
from musiclm_ref.pipeline import SHIPPED_DIR, MusicLM
from musiclm_ref.sampling import generate
from musiclm_ref.stages import Stage, StageConfig, StageError, TokenSpec, load_stage, read_stage_checkpoint
from musiclm_ref.transformer import ROW_TILE, KVCache

SECONDS = float(os.environ.get("BENCH_GEN_SECONDS", "10"))  # the length; smaller = quicker, lower ratio
TARGET_RATIO = 5


@pytest.fixture(scope="module")
def stages() -> tuple[dict[str, Stage], str]:
    try:
        return {s: load_stage(SHIPPED_DIR / f"{s}_stage.pt") for s in ("semantic", "coarse", "fine")}, "shipped tiny"
    except StageError as e:  # same configs (vocabularies, sizes) as the shipped files, seeded random weights
        torch.manual_seed(0)
        return ({s: random_init_like(SHIPPED_DIR / f"{s}_stage.pt") for s in ("semantic", "coarse", "fine")},
                f"random-init tiny (shipped checkpoints did not load: {str(e)[:120]})")


def random_init_like(path) -> Stage:
    c = dict(read_stage_checkpoint(path)["config"])
    return Stage(StageConfig(**{**c, "tokens": TokenSpec(**c["tokens"])})).eval()


def run_stage(model: MusicLM, name: str, cond: torch.Tensor, upstream: dict) -> tuple[torch.Tensor, int]:
    """Tokens of one stage for 10 s, and how many tokens that stage sampled."""
    ts = int(SECONDS * model.spec.semantic_rate)
    if name == "semantic":
        out = model.semantic_tokens([(cond, ts)], seed=0)
        return out, out.numel()
    if name == "coarse":
        out = model.coarse_tokens([(cond, 2 * ts)], upstream["semantic"], 2 * ts, seed=0)
        return out, out.numel()
    out = model.fine_tokens(upstream["coarse"], seed=0)
    return out, out.numel()


def assert_cache_matches_full_forward(stage: Stage, n: int = 400) -> None:
    net = stage.net
    tokens = torch.randint(0, net.config.vocab_size, (1, n), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = net(tokens)
        cache = KVCache()
        steps = [net(tokens[:, :100], cache)] + [net(tokens[:, i : i + 1], cache) for i in range(100, n)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-4, rtol=1e-4)


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


@pytest.mark.parametrize("name", ["semantic", "coarse", "fine"])
def test_kv_cache_vs_uncached(benchmark, monkeypatch, stages, name):
    parts, weights = stages
    model = MusicLM(parts["semantic"], parts["coarse"], parts["fine"], codec=None, mulan=None, mulan_rvq=None)
    cond = torch.randint(0, model.spec.mulan_codebook, (1, model.spec.mulan_levels), generator=torch.Generator().manual_seed(0))
    upstream: dict[str, torch.Tensor] = {}
    for prev in ("semantic", "coarse")[: ("semantic", "coarse", "fine").index(name)]:
        upstream[prev] = run_stage(model, prev, cond, upstream)[0]
    monkeypatch.setattr(pipeline, "generate", functools.partial(generate, use_cache=False))
    (uncached, n_tokens), uncached_s = timed(lambda: run_stage(model, name, cond, upstream))
    monkeypatch.setattr(pipeline, "generate", generate)
    benchmark.group = "generation per stage"
    cached, _ = benchmark.pedantic(run_stage, args=(model, name, cond, upstream), rounds=1, iterations=1)
    assert_cache_matches_full_forward(parts[name])
    cached_s = benchmark.stats.stats.min
    benchmark.extra_info.update({
        "stage": name, "seconds_of_audio": SECONDS, "tokens": n_tokens, "weights": weights,
        "cached_s": cached_s, "uncached_s": uncached_s, "ratio": uncached_s / cached_s, "target_ratio": TARGET_RATIO,
        "tokens_per_s_cached": n_tokens / cached_s, "tokens_per_s_uncached": n_tokens / uncached_s,
        "tokens_identical_fraction": float((cached == uncached).float().mean()),
    })


def full_model(stages) -> tuple[MusicLM, str]:
    """The shipped checkpoint set; if its stages do not load, the shipped codec/MuLan with the tiny stages."""
    try:
        return MusicLM.from_pretrained(), "shipped tiny"
    except StageError:
        from musiclm_ref.codec import load_codec
        from musiclm_ref.mulan import load_mulan
        from musiclm_ref.pipeline import SHIPPED_MULAN, load_mulan_rvq

        parts, weights = stages
        model = MusicLM(parts["semantic"], parts["coarse"], parts["fine"], codec=load_codec(SHIPPED_DIR / "codec.pt"),
                        mulan=load_mulan(SHIPPED_MULAN), mulan_rvq=load_mulan_rvq(SHIPPED_DIR / "mulan_rvq.pt"))
        return model, f"stages: {weights}; shipped codec + MuLan"


def test_text_to_audio_rtf(benchmark, stages):
    model, weights = full_model(stages)
    benchmark.group = "generation end to end"
    audio = benchmark.pedantic(model.generate, args=(["a calm piano melody with soft strings"],),
                               kwargs={"seconds": SECONDS, "seed": 0}, rounds=1, iterations=1)
    assert audio.shape == (1, int(SECONDS * pipeline.SAMPLE_RATE)) and torch.isfinite(torch.from_numpy(audio)).all()
    wall = benchmark.stats.stats.min
    benchmark.extra_info.update({"seconds_of_audio": SECONDS, "wall_s": wall, "rtf": wall / SECONDS, "weights": weights})


BATCH_SECONDS = float(os.environ.get("BENCH_GEN_BATCH_SECONDS", "10"))
BATCH_TARGET = 3  # issue 28: batch 20 at ≥ 3× the clips/s of batch 1, bit-identical output


def _loadavg() -> list[float]:
    return [float(x) for x in open("/proc/loadavg").read().split()[:3]]


def clips_by_batch(model: MusicLM, captions: list[str], ids: list[str]) -> tuple[dict, list[dict]]:
    """Generate in the interleaved order; returns the waves by run name and one timing record per run."""
    order = [("alone-0", 1, 0), ("batch-20", 20, None), ("alone-1", 1, 1), ("batch-8", 8, None), ("alone-2", 1, 2),
             ("batch-20-item-by-item", 20, None)]
    waves, runs = {}, []
    for name, b, i in order:
        rows = slice(i, i + 1) if i is not None else slice(0, b)
        model.row_tile = 0 if name.endswith("item-by-item") else ROW_TILE
        before = _loadavg()
        t0, c0 = time.perf_counter(), time.process_time()
        waves[name] = model.generate(captions[rows], seconds=BATCH_SECONDS, seed=0, batch=b, ids=ids[rows])
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        runs.append({"run": name, "batch": b, "clips": len(waves[name]), "wall_s": wall, "cpu_s": cpu,
                     "clips_per_s": len(waves[name]) / wall, "clips_per_cpu_s": len(waves[name]) / cpu,
                     "loadavg_before": before, "loadavg_after": _loadavg()})
    model.row_tile = ROW_TILE
    return waves, runs


def test_clips_per_s_by_batch(benchmark, stages):
    model, weights = full_model(stages)
    captions = [f"{a} {b}" for a in ("calm", "loud", "slow", "fast", "dark") for b in ("piano", "drums", "synth pad", "guitar")]
    ids = [f"clip-{i:02d}" for i in range(20)]
    benchmark.group = "generation by batch size"
    waves, runs = benchmark.pedantic(clips_by_batch, args=(model, captions, ids), rounds=1, iterations=1)
    for i in range(3):  # the gate: a clip in a batch of 8 or 20 is the clip generated alone, bit for bit
        alone = waves[f"alone-{i}"][0]
        assert np.array_equal(waves["batch-20"][i], alone) and np.array_equal(waves["batch-8"][i], alone), i
    assert np.array_equal(waves["batch-8"], waves["batch-20"][:8])
    assert np.abs(waves["batch-20"]).max() > 0.01  # real audio
    alone = [r for r in runs if r["batch"] == 1]
    batched = [r for r in runs if r["batch"] > 1 and not r["run"].endswith("item-by-item")]
    per_batch = {1: 3 / sum(r["wall_s"] for r in alone), **{r["batch"]: r["clips_per_s"] for r in batched}}
    per_cpu = {1: 3 / sum(r["cpu_s"] for r in alone), **{r["batch"]: r["clips_per_cpu_s"] for r in batched}}
    fallback = next(r for r in runs if r["run"].endswith("item-by-item"))
    benchmark.extra_info.update({
        "seconds_of_audio": BATCH_SECONDS, "weights": weights, "row_tile": ROW_TILE, "runs": runs,
        "clips_per_s": {str(b): v for b, v in sorted(per_batch.items())},
        "ratio_20_over_1": per_batch[20] / per_batch[1], "ratio_8_over_1": per_batch[8] / per_batch[1],
        "clips_per_cpu_s": {str(b): v for b, v in sorted(per_cpu.items())}, "cpu_ratio_20_over_1": per_cpu[20] / per_cpu[1],
        "item_by_item_clips_per_s_20": fallback["clips_per_s"], "target_ratio": BATCH_TARGET,
        "torch_threads": torch.get_num_threads(),
    })
