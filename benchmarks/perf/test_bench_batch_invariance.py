"""What batch-invariant sampling costs: its batch-independent products (fixed-shape row tiles,
``MusicLM.row_tile``; ``row_tile=0``: one product per item) vs one folded GEMM per layer.

Workload: the shipped tiny stages (seeded random weights of the same shapes if they do not load),
semantic + coarse + fine tokens for ``BENCH_INV_CAPTIONS`` (default 16) items × ``BENCH_INV_SECONDS``
(default 2) s in one batch, with ``MusicLM.batch_invariant`` on (the default) and off. Correctness
gate: with it on, item 0's tokens in the batch equal item 0 generated alone. ``extra_info`` records
both timings and their ratio (the folded path's tokens may differ from the gate's in rare flips;
its agreement is reported, not asserted).
"""

from __future__ import annotations

import os
import time

import torch

from benchmarks.perf.test_bench_generation import stages  # noqa: F401  (fixture: shipped or random-init tiny)
from musiclm_ref.pipeline import MusicLM

N = int(os.environ.get("BENCH_INV_CAPTIONS", "16"))
SECONDS = float(os.environ.get("BENCH_INV_SECONDS", "2"))


def all_tokens(model: MusicLM, cond: torch.Tensor, keys: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    ts = int(SECONDS * model.spec.semantic_rate)
    b = cond.shape[0]
    sem = model.semantic_tokens([(cond, ts)], seed=0, keys=keys)
    coarse = model.coarse_tokens([(cond, 2 * ts)], sem, 2 * ts, seed=0, batch=b, keys=keys)
    return sem, coarse, model.fine_tokens(coarse, seed=0, keys=keys)


def test_batch_invariant_sampling_cost(benchmark, stages):  # noqa: F811
    parts, weights = stages
    model = MusicLM(parts["semantic"], parts["coarse"], parts["fine"], codec=None, mulan=None, mulan_rvq=None)
    g = torch.Generator().manual_seed(0)
    cond = torch.randint(0, model.spec.mulan_codebook, (N, model.spec.mulan_levels), generator=g)
    keys = [f"item-{i}" for i in range(N)]
    model.batch_invariant = False
    t0 = time.perf_counter()
    folded = all_tokens(model, cond, keys)
    folded_s = time.perf_counter() - t0
    model.batch_invariant = True
    benchmark.group = "batch-invariant sampling"
    batched = benchmark.pedantic(all_tokens, args=(model, cond, keys), rounds=1, iterations=1)
    alone = all_tokens(model, cond[:1], keys[:1])
    for x, y in zip(batched, alone):
        assert torch.equal(x[:1], y)  # the gate: in a batch of N, item 0 is what it is alone
    invariant_s = benchmark.stats.stats.min
    benchmark.extra_info.update({
        "items": N, "seconds_of_audio": SECONDS, "weights": weights, "invariant_s": invariant_s, "folded_s": folded_s,
        "cost_ratio": invariant_s / folded_s,
        "folded_tokens_identical_fraction": float(sum((a == b).sum() for a, b in zip(batched, folded))
                                                  / sum(a.numel() for a in batched)),
    })
