"""Stage training throughput: target tokens per second of the project's own training loop, per stage.

Workload: ``train.stage.fit_stage`` (batch drawing, forward, loss, backward, gradient clipping, AdamW, the
logged loss) for ``STEPS`` steps on a seeded random token corpus with the preset's vocabulary and
crops — tiny: the shipped set's vocabularies, crops 10 / 2 / 1 s, global batch 8; paper
(``BENCH_TRAIN_PRESET=paper``, a GPU's job): TokenSpec() and 30 / 10 / 3 s, ≈430M parameters per stage.
The cost of a step does not depend on the token values, so random tokens measure the real thing.
Tokens/s counts the *target* tokens the loss is over (semantic: 25 Hz × crop; coarse 4 and fine 8
levels × 50 Hz × crop) per row of the global batch; ``extra_info`` also has whole-sequence tokens/s.

Device and precision: ``--device cpu`` (default) runs fp32; ``--device cuda`` runs fp32 and bf16
autocast, each with and without gradient checkpointing — what a GPU session runs to fill the table in
docs/performance.md (``--benchmark-json docs/figures/training_throughput_cuda.json``).

Correctness gate: the timed steps learn. On random tokens the best possible loss is ln(codebook) of
the target level; a fresh model starts near ln(vocabulary). The gate requires the mean loss of the
last steps to be below the first step's by ``GATE_DROP`` nats — a broken step (no update, wrong
targets, NaNs) fails it.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import replace

import pytest
import torch

from musiclm_ref.presets import PRESETS
from musiclm_ref.stages import Stage, TokenSpec, read_stage_checkpoint, stage_config
from musiclm_ref.token_corpus import TokenCorpus, sample_batch
from musiclm_ref.train.stage import StageTrainConfig, fit_stage

PRESET = os.environ.get("BENCH_TRAIN_PRESET", "tiny")
STEPS = int(os.environ.get("BENCH_TRAIN_STEPS", "6"))
BATCH = int(os.environ.get("BENCH_TRAIN_BATCH", "8"))
GATE_DROP = 0.15


def _spec() -> TokenSpec:
    if PRESET == "paper":
        return TokenSpec()
    from musiclm_ref.pipeline import SHIPPED_DIR

    c = read_stage_checkpoint(SHIPPED_DIR / "coarse_stage.pt")["config"]
    return TokenSpec(**c["tokens"])


def _corpus(spec: TokenSpec, seconds: int, n: int = 16) -> TokenCorpus:
    g = torch.Generator().manual_seed(0)
    return TokenCorpus(
        ids=[f"bench-{i}" for i in range(n)],
        semantic=torch.randint(0, spec.semantic_codebook, (n, seconds * spec.semantic_rate), generator=g),
        acoustic=torch.randint(0, spec.acoustic_codebook, (n, seconds * spec.acoustic_rate, spec.acoustic_levels), generator=g),
        mulan=torch.randint(0, spec.mulan_codebook, (n, spec.mulan_levels), generator=g),
        melody=torch.randint(0, spec.melody_codebook, (n, seconds - 3, spec.melody_levels), generator=g), spec=spec,
        chroma=torch.randint(0, 13, (n, seconds * spec.semantic_rate), generator=g))


def _variants(device: str) -> list[tuple[str, bool]]:
    if device.startswith("cuda"):
        return [("fp32", False), ("bf16", False), ("bf16", True), ("fp32", True)]
    return [("fp32", False)]


def pytest_generate_tests(metafunc):
    if "variant" in metafunc.fixturenames:
        device = metafunc.config.getoption("--device")
        metafunc.parametrize("variant", _variants(device), ids=[f"{p}{'-ckpt' if c else ''}" for p, c in _variants(device)])


@pytest.mark.parametrize("name", ["semantic", "coarse", "fine"])
def test_stage_training_tokens_per_second(benchmark, name, variant, request):
    device = request.config.getoption("--device")
    precision, ckpt = variant
    if device.startswith("cuda") and not torch.cuda.is_available():
        pytest.fail("--device cuda but torch sees no CUDA device")
    spec = _spec()
    crops = PRESETS[PRESET].crops
    corpus = _corpus(spec, int(max(crops.values())) + 2)
    cfg = StageTrainConfig(steps=STEPS, batch=BATCH, warmup=1, lr=5e-3 if PRESET == "tiny" else 3e-4, checkpoint_every=10**9,
                           precision=precision, grad_checkpoint=ckpt)
    runs = []

    def setup():
        torch.manual_seed(0)
        stage = Stage(stage_config(name, PRESET, spec)).to(device)
        runs.append([])
        return (stage,), {}

    walls = []

    def step(stage):
        t0 = time.perf_counter()
        fit_stage(stage, corpus, cfg, progress=False, on_step=lambda s, v: runs[-1].append(v))
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        walls.append(time.perf_counter() - t0)  # also with --benchmark-disable (a quick gate-only run)

    benchmark.pedantic(step, setup=setup, rounds=3 if PRESET == "tiny" else 2, warmup_rounds=0)
    losses = runs[-1]
    assert all(torch.isfinite(torch.tensor(losses))), losses
    assert sum(losses[-2:]) / 2 < losses[0] - GATE_DROP, f"the timed steps did not learn: {losses}"

    probe = Stage(replace(stage_config(name, PRESET, spec), transformer={"depth": 1, "dim": 8, "heads": 1, "ff_dim": 8}))
    cond, targets, ctx = sample_batch(probe, corpus, 1, torch.Generator().manual_seed(0))
    target_tokens = targets[0].numel()
    seq_tokens = probe.prompt(cond, ctx, prefix=targets).shape[1] - 1
    seconds_per_step = statistics.median(walls) / STEPS
    n_params = sum(p.numel() for p in Stage(stage_config(name, PRESET, spec)).net.parameters()) if PRESET == "tiny" else None
    benchmark.extra_info.update({
        "stage": name, "preset": PRESET, "device": device, "precision": precision, "grad_checkpoint": ckpt,
        "global_batch": BATCH, "steps_per_round": STEPS, "crop_seconds": crops[name], "target_tokens_per_row": target_tokens,
        "sequence_tokens_per_row": seq_tokens, "parameters": n_params,
        "target_tokens_per_s": round(BATCH * target_tokens / seconds_per_step, 1),
        "sequence_tokens_per_s": round(BATCH * seq_tokens / seconds_per_step, 1),
        "loss_first": round(losses[0], 4), "loss_last": round(losses[-1], 4)})
